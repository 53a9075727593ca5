//! The command line: clap definitions and their validation into each command's config.
//!
//! Conventions follow nc/ncat: `-u` UDP, `-U PATH` Unix socket, `-4`/`-6` address family, `-k`
//! keep listening, `-v` more logging, `-q` quiet. Usage errors exit with code 2.
//!
//! Every numeric option takes a value that starts with `-` and reads as a number
//! (`allow_negative_numbers`), so `-w -1` is refused for what it is (`--wait -1 is not a number
//! of seconds ≥ 0`) like `--wait=-1`, not as an unknown flag `-1`. Only numbers: `-w -v` is still
//! a missing value, and `-4`/`-6` stay flags where no value is due.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::RangedU64ValueParser;
use clap::{Args, Parser, Subcommand};

use crate::codec::{Framing, WireEncoding};
use crate::endpoint::{Endpoint, Family};
use crate::error::{Error, Result};
use crate::limits;

/// The heading the options every command takes are listed under, after the command's own.
const GLOBAL: &str = "Global options";

/// The most worker threads `--threads` accepts: far more than any machine has cores, so that a
/// typo such as `--threads 100000` is refused instead of running into the process's thread limit.
pub const MAX_THREADS: usize = 1024;

/// socktalk: talk over sockets. A multi-user chat server and its client, echo and upper-case
/// servers, a netcat-class client, one-to-one chat and a load generator, over TCP, UDP and Unix
/// sockets, IPv4 and IPv6, in utf-8, gbk and more.
#[derive(Debug, Parser)]
#[command(name = "socktalk", version, propagate_version = true)]
pub struct Cli {
    /// More logging on stderr: -v connections and errors, -vv more detail (each datagram of
    /// `echo -u`, each member of `serve` coming and going).
    #[arg(short, long, action = clap::ArgAction::Count, global = true, help_heading = GLOBAL)]
    pub verbose: u8,

    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose", help_heading = GLOBAL)]
    pub quiet: bool,

    /// Resolve host names to IPv4 addresses only.
    #[arg(short = '4', global = true, conflicts_with = "ipv6", help_heading = GLOBAL)]
    pub ipv4: bool,

    /// Resolve host names to IPv6 addresses only.
    #[arg(short = '6', global = true, help_heading = GLOBAL)]
    pub ipv6: bool,

    /// Worker threads for the servers and the load generator, 1 to 1024 [default: one per core;
    /// `serve` leaves one core free]. Clients and UDP servers always use one.
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL,
        value_name = "N",
        allow_negative_numbers = true,
        env = "SOCKTALK_THREADS",
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_THREADS as u64)
    )]
    pub threads: Option<usize>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// How many worker threads to run, given the machine's `cores`; `None` for one thread
    /// doing everything (see [`Command::is_single_socket`]).
    pub fn worker_threads(&self, cores: usize) -> Option<usize> {
        if self.command.is_single_socket() {
            return None;
        }
        Some(match (self.threads, &self.command) {
            (Some(threads), _) => threads,
            // The chat server's hub hands every message to all members from one task, and a
            // thread of its own commits history. Measured on two cores shared with the load
            // generator, one worker instead of two cut the server's CPU for a 1,000 x 1,000
            // fan-out by 13-19%: woken on two workers, the sessions writing the same shared
            // chunks contend for them and the workers keep waking each other. On more cores
            // the sessions' writes (and TLS) still spread over all but one.
            (None, Command::Serve(_)) => cores.saturating_sub(1).max(1),
            (None, _) => cores.max(1),
        })
    }

    /// The address family allowed by `-4`/`-6`.
    pub fn family(&self) -> Family {
        match (self.ipv4, self.ipv6) {
            (true, _) => Family::V4,
            (_, true) => Family::V6,
            _ => Family::Any,
        }
    }
}

/// socktalk's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Chat server: rooms, nicks, private messages, history (the main job).
    #[command(after_help = "Examples:\n  \
        socktalk serve                                   # 127.0.0.1:7878, history in ./socktalk.db\n  \
        socktalk serve --tcp '[::]:7878' --unix /tmp/chat.sock --db :memory:\n  \
        socktalk serve 7000                              # as --tcp 127.0.0.1:7000 (no web chat)\n  \
        socktalk serve --tcp '[::]:7878' --http '[::]:8443' --tls-cert cert.pem --tls-key key.pem\n  \
        socktalk serve --deny 203.0.113.0/24 --max-conns-per-ip 16\n  \
        nc 127.0.0.1 7878                                # then type /help")]
    Serve(ServeArgs),

    /// Terminal chat client for `socktalk serve`.
    #[command(after_help = "Examples:\n  \
        socktalk chat --nick ann                 # 127.0.0.1:7878\n  \
        socktalk chat '[::1]:7878' --nick bob\n  \
        socktalk chat -U /tmp/chat.sock")]
    Chat(ChatArgs),

    /// Load generator: measure any server (pingpong, bulk, udp, hold, fanout, handshake).
    #[command(after_help = "Examples:\n  \
        socktalk bench pingpong 127.0.0.1:7000 --conns 50 --size 64\n  \
        socktalk bench bulk 127.0.0.1:7000 --duration 10\n  \
        socktalk bench udp 127.0.0.1:7000\n  \
        socktalk bench hold 127.0.0.1:7878 --conns 19000 --pid $(pidof socktalk)\n  \
        socktalk bench fanout 127.0.0.1:7878 --conns 100 --lines 1000 --pid $(pidof socktalk)\n  \
        socktalk bench handshake 127.0.0.1:7000 --conns 4 --tls --tls-fingerprint AB:CD:…")]
    Bench(BenchArgs),

    /// Echo server: send every message back (--upper: upper-cased).
    #[command(after_help = "Examples:\n  \
        socktalk echo 127.0.0.1:7000\n  \
        socktalk echo --upper -u '[::1]:7000'\n  \
        socktalk echo -U /tmp/echo.sock --frame line --greet 'welcome'\n  \
        socktalk echo 127.0.0.1:7000 --tls-self-signed --allow 127.0.0.0/8")]
    Echo(EchoArgs),

    /// Netcat-style client (-l: listener): stdin to the socket, the socket to stdout.
    #[command(after_help = "Examples:\n  \
        printf 'hi\\n' | socktalk connect 127.0.0.1:7000\n  \
        socktalk connect -l 7000 > received.bin           # wait for one peer on 127.0.0.1:7000\n  \
        socktalk connect -l -k '[::]:7000'                 # serve peers one after another\n  \
        socktalk connect -u 127.0.0.1:7000\n  \
        socktalk connect --frame len --encoding gbk localhost:7000\n  \
        socktalk connect 127.0.0.1:7000 --tls-fingerprint 9B:40:…:6E:12\n  \
        socktalk connect -w 3 -i 60 example.org:7000     # give up after 3 s; close after 60 s idle\n  \
        socktalk connect -U @echo                        # an abstract Unix socket")]
    Connect(ConnectArgs),

    /// One-to-one chat, full duplex; a line 'bye' ends it.
    #[command(after_help = "Examples:\n  \
        socktalk talk --listen 127.0.0.1:7000      # wait for a peer\n  \
        socktalk talk 127.0.0.1:7000               # call it\n  \
        socktalk talk -u --listen 127.0.0.1:9001 127.0.0.1:9002   # UDP, both bind a port")]
    Talk(TalkArgs),
}

impl Command {
    /// Whether the command works one socket at a time (a UDP server, a client), so one thread
    /// serves it best.
    pub fn is_single_socket(&self) -> bool {
        match self {
            Command::Echo(args) => {
                args.target.udp
                    || matches!(
                        &args.target.addr,
                        Some(Endpoint::Inet {
                            scheme: Some(crate::endpoint::Proto::Udp),
                            ..
                        })
                    )
            }
            Command::Connect(_) | Command::Talk(_) | Command::Chat(_) => true,
            Command::Serve(_) | Command::Bench(_) => false,
        }
    }
}

/// Where a server listens or a client connects: an address or `--unix PATH`, exactly one of
/// them (the group makes the usage line say so: `<ADDR|--unix <PATH>>`).
#[derive(Debug, Args)]
#[group(skip)]
#[command(group = clap::ArgGroup::new("target").args(["addr", "unix"]).required(true))]
pub struct TargetArgs {
    /// Address: HOST:PORT, [IPv6]:PORT, PORT, tcp://…, udp://…, unix:PATH or unix:@NAME (an
    /// abstract Unix socket).
    #[arg(value_name = "ADDR")]
    pub addr: Option<Endpoint>,

    /// Use the Unix stream socket at PATH (@NAME: the abstract socket NAME, no file).
    #[arg(short = 'U', long = "unix", value_name = "PATH")]
    pub unix: Option<PathBuf>,

    /// Use UDP instead of TCP.
    #[arg(short = 'u', long = "udp")]
    pub udp: bool,
}

impl TargetArgs {
    /// The endpoint typed, `-U PATH` included.
    pub fn endpoint(&self) -> Result<Endpoint> {
        match (&self.addr, &self.unix) {
            (_, Some(path)) => Ok(Endpoint::Unix(path.clone())),
            (Some(addr), None) => Ok(addr.clone()),
            (None, None) => Err(Error::Usage("an address or -U PATH is required".into())),
        }
    }
}

/// `--allow`/`--deny`: which client addresses a server lets in.
#[derive(Debug, Args)]
pub struct AccessArgs {
    /// Let in only clients in CIDR (repeatable): 192.0.2.0/24, 2001:db8::/32, or one address.
    #[arg(long, value_name = "CIDR", value_parser = parse_net)]
    pub allow: Vec<ipnet::IpNet>,

    /// Keep out clients in CIDR (repeatable; wins over --allow).
    #[arg(long, value_name = "CIDR", value_parser = parse_net)]
    pub deny: Vec<ipnet::IpNet>,
}

impl AccessArgs {
    /// The rules as a policy.
    pub fn policy(&self) -> crate::access::AccessPolicy {
        crate::access::AccessPolicy {
            allow: self.allow.clone(),
            deny: self.deny.clone(),
        }
    }
}

fn parse_net(text: &str) -> std::result::Result<ipnet::IpNet, String> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("'{text}' is not an address range like 192.0.2.0/24 or ::1/128"))
}

/// `bench fanout --ws PATH`: the path part of a URL, as the upgrade request sends it.
fn websocket_path(text: &str) -> std::result::Result<String, String> {
    if !text.starts_with('/') || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "'{text}' is not a URL path like /ws (a leading '/', no spaces)"
        ));
    }
    Ok(text.to_string())
}

/// TLS on a server: `--tls-cert`/`--tls-key` or `--tls-self-signed`, and `--tls-client-ca`.
#[derive(Debug, Args)]
pub struct TlsServerArgs {
    /// Serve TLS with this certificate chain (PEM, leaf first).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Serve TLS with a certificate made at start; its SHA-256 fingerprint is printed for
    /// clients to pin with --tls-fingerprint.
    #[arg(long, conflicts_with = "tls_cert")]
    pub tls_self_signed: bool,

    /// Require client certificates issued by a CA in FILE (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,

    /// Close a client that has not finished its TLS handshake after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = limits::HANDSHAKE_TIMEOUT.as_secs_f64(), allow_negative_numbers = true)]
    pub tls_handshake_timeout: f64,
}

impl TlsServerArgs {
    /// The options as the TLS layer takes them.
    pub fn options(&self) -> Result<crate::transport::tls::ServerOptions> {
        if self.tls_client_ca.is_some() && self.tls_cert.is_none() && !self.tls_self_signed {
            return Err(Error::Usage(
                "--tls-client-ca needs TLS on: --tls-cert/--tls-key or --tls-self-signed".into(),
            ));
        }
        let handshake_timeout = seconds("--tls-handshake-timeout", self.tls_handshake_timeout)?;
        if handshake_timeout.is_zero() {
            return Err(Error::Usage(
                "--tls-handshake-timeout 0 would close every client mid-handshake; give seconds > 0"
                    .into(),
            ));
        }
        Ok(crate::transport::tls::ServerOptions {
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            self_signed: self.tls_self_signed,
            client_ca: self.tls_client_ca.clone(),
            handshake_timeout,
        })
    }
}

/// TLS on a client: `--tls`, how to verify the server, and an optional client certificate.
#[derive(Debug, Args)]
pub struct TlsClientArgs {
    /// Speak TLS, verifying the server against the system's CA certificates.
    #[arg(long)]
    pub tls: bool,

    /// Verify the server against the CA certificates in FILE (PEM) instead (implies --tls).
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,

    /// Trust only the server certificate with this SHA-256 fingerprint, e.g. a self-signed one
    /// (hex, colons optional; implies --tls).
    #[arg(long, value_name = "HEX", conflicts_with = "tls_ca")]
    pub tls_fingerprint: Option<String>,

    /// Present this client certificate (PEM) to servers that ask for one.
    #[arg(long, value_name = "FILE", requires = "tls_client_key")]
    pub tls_client_cert: Option<PathBuf>,

    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_client_cert")]
    pub tls_client_key: Option<PathBuf>,
}

impl TlsClientArgs {
    /// The first client TLS option given, as typed (`--tls-client-cert`), for an error that
    /// names it; `None` when there is none.
    pub fn first_given(&self) -> Option<&'static str> {
        [
            (self.tls, "--tls"),
            (self.tls_ca.is_some(), "--tls-ca"),
            (self.tls_fingerprint.is_some(), "--tls-fingerprint"),
            (self.tls_client_cert.is_some(), "--tls-client-cert"),
            (self.tls_client_key.is_some(), "--tls-client-key"),
        ]
        .into_iter()
        .find_map(|(given, name)| given.then_some(name))
    }

    /// The options as the TLS layer takes them.
    pub fn options(&self) -> crate::transport::tls::ClientOptions {
        crate::transport::tls::ClientOptions {
            enabled: self.tls || self.tls_client_cert.is_some(),
            ca: self.tls_ca.clone(),
            fingerprint: self.tls_fingerprint.clone(),
            cert: self.tls_client_cert.clone(),
            key: self.tls_client_key.clone(),
        }
    }
}

/// Message framing options.
#[derive(Debug, Args)]
pub struct FrameArgs {
    /// Message framing on streams: raw bytes, \n-terminated lines, or 4-byte big-endian length
    /// prefixes.
    #[arg(long = "frame", value_enum, default_value_t = Framing::Raw)]
    pub framing: Framing,

    /// Largest line or length-prefixed frame accepted, in bytes.
    #[arg(long, value_name = "BYTES", value_parser = RangedU64ValueParser::<usize>::new().range(1..), default_value_t = limits::MAX_FRAME, allow_negative_numbers = true)]
    pub max_frame: usize,
}

/// Text encoding option.
#[derive(Debug, Args)]
pub struct EncodingArgs {
    /// Text encoding on the wire (utf-8, gbk, gb18030, big5, shift_jis, latin1, …); the
    /// terminal stays utf-8.
    #[arg(long, value_name = "LABEL", default_value = "utf-8")]
    pub encoding: WireEncoding,
}

/// `socktalk echo`.
#[derive(Debug, Args)]
pub struct EchoArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    /// Reply upper-cased (as text in --encoding) instead of unchanged.
    #[arg(long)]
    pub upper: bool,

    #[command(flatten)]
    pub frame: FrameArgs,

    #[command(flatten)]
    pub text: EncodingArgs,

    /// Text sent to each TCP/Unix client when it connects.
    #[arg(long, value_name = "TEXT")]
    pub greet: Option<String>,

    /// Most connections served at once; more are told why and closed.
    #[arg(long, value_name = "N", default_value_t = limits::MAX_CONNS, allow_negative_numbers = true)]
    pub max_conns: usize,

    /// Most connections from one client address at once (0: no cap).
    #[arg(long, value_name = "N", default_value_t = limits::ECHO_MAX_CONNS_PER_IP, allow_negative_numbers = true)]
    pub max_conns_per_ip: usize,

    #[command(flatten)]
    pub access: AccessArgs,

    /// Close a connection after this many seconds without input (0: never).
    #[arg(long, value_name = "SECS", default_value_t = limits::IDLE_TIMEOUT.as_secs_f64(), allow_negative_numbers = true)]
    pub idle_timeout: f64,

    #[command(flatten)]
    pub tls: TlsServerArgs,
}

/// `socktalk connect`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    #[command(flatten)]
    pub frame: FrameArgs,

    #[command(flatten)]
    pub text: EncodingArgs,

    /// UDP: seconds to wait for outstanding replies after stdin ends (with --listen: for the
    /// peer's silence). TCP: once the peer has finished sending, seconds piped stdin may stay
    /// silent before the client exits.
    #[arg(long, value_name = "SECS", default_value_t = limits::UDP_LINGER.as_secs_f64(), allow_negative_numbers = true)]
    pub linger: f64,

    /// Close the connection and exit (code 3) when nothing is sent or received for SECS
    /// (TCP and Unix; 0: never). With -l -k, the next peer is served instead of exiting.
    #[arg(short = 'i', long, value_name = "SECS", default_value_t = limits::CONNECT_IDLE_TIMEOUT.as_secs_f64(), allow_negative_numbers = true)]
    pub idle_timeout: f64,

    /// Give up (exit code 3) if resolving, connecting and the TLS handshake take longer than
    /// SECS in all (0: no limit); not with --listen.
    #[arg(short = 'w', long = "wait", value_name = "SECS", default_value_t = limits::CONNECT_TIMEOUT.as_secs_f64(), conflicts_with = "listen", allow_negative_numbers = true)]
    pub wait: f64,

    /// Listen on ADDR instead (as nc -l): wait for one peer, then pump stdin and the socket as
    /// a client does (UDP: the first sender is the peer).
    #[arg(short = 'l', long = "listen")]
    pub listen: bool,

    /// With --listen over TCP or Unix sockets: after a peer ends, wait for the next one.
    #[arg(short = 'k', long = "keep-open", requires = "listen")]
    pub keep_open: bool,

    #[command(flatten)]
    pub tls: TlsClientArgs,

    #[command(flatten)]
    pub tls_server: TlsServerArgs,
}

/// `socktalk talk`.
#[derive(Debug, Args)]
pub struct TalkArgs {
    /// The peer to call (TCP/Unix), or to send to (UDP).
    #[arg(value_name = "PEER", required_unless_present = "listen")]
    pub peer: Option<Endpoint>,

    /// Wait for a peer on ADDR (UDP: bind ADDR; with PEER too, talk to PEER from ADDR).
    #[arg(short, long, value_name = "ADDR")]
    pub listen: Option<Endpoint>,

    /// After a conversation ends, wait for the next peer.
    #[arg(short = 'k', long = "keep-listening", requires = "listen")]
    pub keep_listening: bool,

    /// Use UDP: each line is one datagram; either side may speak first.
    #[arg(short = 'u', long = "udp")]
    pub udp: bool,

    /// Send each line typed without its newline, as a Python exercise's
    /// `conn.send(input().encode())` does (TCP and Unix; a UDP datagram never has one).
    #[arg(long)]
    pub no_newline: bool,

    /// Give up (exit code 3) if resolving, connecting and the TLS handshake take longer than
    /// SECS in all (0: no limit); not with --listen.
    #[arg(short = 'w', long = "wait", value_name = "SECS", default_value_t = limits::CONNECT_TIMEOUT.as_secs_f64(), conflicts_with = "listen", allow_negative_numbers = true)]
    pub wait: f64,

    #[command(flatten)]
    pub text: EncodingArgs,

    #[command(flatten)]
    pub access: AccessArgs,

    #[command(flatten)]
    pub tls_server: TlsServerArgs,

    #[command(flatten)]
    pub tls_client: TlsClientArgs,
}

/// `socktalk serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where to listen, as --tcp ADDR (a port alone: 127.0.0.1:PORT), or as --unix for a
    /// unix:PATH address.
    #[arg(value_name = "ADDR")]
    pub listen: Vec<Endpoint>,

    /// Listen for TCP clients on ADDR (repeatable; default 127.0.0.1:7878 unless --unix is given).
    #[arg(long = "tcp", value_name = "ADDR")]
    pub tcp: Vec<Endpoint>,

    /// Listen for clients on a Unix socket at PATH (@NAME: the abstract socket NAME, no file).
    #[arg(long = "unix", short = 'U', value_name = "PATH")]
    pub unix: Option<PathBuf>,

    /// History database file (SQLite); ':memory:' keeps no history across restarts.
    #[arg(long, value_name = "FILE", default_value = "socktalk.db")]
    pub db: String,

    /// How each commit is synced to disk: normal survives the process crashing; full also
    /// survives power loss (slower).
    #[arg(long, value_name = "MODE", value_enum, default_value_t = crate::chat::history::Sync::Normal)]
    pub db_sync: crate::chat::history::Sync,

    /// Text encoding a connection starts in (each client can change it with /encoding).
    #[arg(long, value_name = "LABEL", default_value = "utf-8")]
    pub encoding: WireEncoding,

    /// Longest line a client may send, in bytes.
    #[arg(long, value_name = "BYTES", value_parser = RangedU64ValueParser::<usize>::new().range(1..), default_value_t = limits::MAX_LINE, allow_negative_numbers = true)]
    pub max_line: usize,

    /// Messages per second per connection; above it the client is read more slowly (0: off).
    #[arg(long, value_name = "N", default_value_t = limits::MAX_RATE, allow_negative_numbers = true)]
    pub max_rate: f64,

    /// Messages a client may send in a burst before --max-rate applies.
    #[arg(long, value_name = "N", default_value_t = limits::BURST, allow_negative_numbers = true)]
    pub burst: f64,

    /// Most connections served at once (all listeners together); more are told why and closed.
    #[arg(long, value_name = "N", default_value_t = limits::MAX_CONNS, allow_negative_numbers = true)]
    pub max_conns: usize,

    /// Most connections from one client address at once, all listeners together (0: no cap).
    #[arg(long, value_name = "N", default_value_t = limits::CHAT_MAX_CONNS_PER_IP, allow_negative_numbers = true)]
    pub max_conns_per_ip: usize,

    #[command(flatten)]
    pub access: AccessArgs,

    #[command(flatten)]
    pub tls: TlsServerArgs,

    /// Disconnect a client that sends no complete line for this many seconds (0: never).
    #[arg(long, value_name = "SECS", default_value_t = limits::CHAT_IDLE_TIMEOUT.as_secs_f64(), allow_negative_numbers = true)]
    pub idle_timeout: f64,

    /// Rooms one member may be in at once.
    #[arg(long, value_name = "N", value_parser = RangedU64ValueParser::<usize>::new().range(1..), default_value_t = limits::MAX_ROOMS, allow_negative_numbers = true)]
    pub max_rooms: usize,

    /// Messages replayed to a member joining a room (and /history's default).
    #[arg(long, value_name = "N", default_value_t = limits::HISTORY_REPLAY, allow_negative_numbers = true)]
    pub history: usize,

    /// Rooms with more members than this don't announce joins, parts, quits and nick changes.
    #[arg(long, value_name = "N", default_value_t = limits::ANNOUNCE_LIMIT, allow_negative_numbers = true)]
    pub announce_limit: usize,

    /// Serve the web chat (page and WebSocket) on ADDR, or 'off'. Default: 127.0.0.1:8080 when
    /// no --tcp/--unix is given (the main job), else off.
    #[arg(long, value_name = "ADDR|off")]
    pub http: Option<String>,

    /// Also let pages from ORIGIN (e.g. https://chat.example.org) open the WebSocket; '*' for
    /// any. By default only pages served by this server may.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allow_origins: Vec<String>,

    /// Ping each WebSocket this often, and close one that answers nothing for two intervals
    /// (0: never).
    #[arg(long, value_name = "SECS", default_value_t = limits::WS_PING.as_secs_f64(), allow_negative_numbers = true)]
    pub ws_ping: f64,

    /// Lines queued for a member before it is disconnected as not reading.
    #[arg(long, value_name = "LINES", value_parser = RangedU64ValueParser::<usize>::new().range(1..), default_value_t = limits::OUTBOX, allow_negative_numbers = true)]
    pub outbox: usize,

    /// Private messages kept per registered nick while it is offline (0: keep none).
    #[arg(long, value_name = "N", default_value_t = limits::MAX_MAIL, allow_negative_numbers = true)]
    pub max_mail: usize,

    /// Largest size of the history database file, in bytes (0: no cap). Once reached, new
    /// messages are refused ("not sent") and logged, never lost silently.
    #[arg(long, value_name = "BYTES", default_value_t = limits::DB_MAX_SIZE, allow_negative_numbers = true)]
    pub db_max_size: u64,
}

/// `socktalk chat`.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// The chat server.
    #[arg(
        value_name = "ADDR",
        default_value = "127.0.0.1:7878",
        conflicts_with = "unix"
    )]
    pub addr: Endpoint,

    /// Connect to the chat server's Unix socket at PATH (@NAME: the abstract socket NAME).
    #[arg(short = 'U', long = "unix", value_name = "PATH")]
    pub unix: Option<PathBuf>,

    /// The nick to use.
    #[arg(short, long, value_name = "NAME")]
    pub nick: Option<String>,

    /// Colour the output.
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    pub color: Color,

    /// While nothing is typed, send an empty line this often, so that the server's
    /// --idle-timeout does not close a member who only reads (0: never).
    #[arg(long, value_name = "SECS", default_value_t = limits::CHAT_KEEPALIVE.as_secs_f64(), allow_negative_numbers = true)]
    pub keepalive: f64,

    /// Give up (exit code 3) if resolving, connecting and the TLS handshake take longer than
    /// SECS in all (0: no limit).
    #[arg(short = 'w', long = "wait", value_name = "SECS", default_value_t = limits::CONNECT_TIMEOUT.as_secs_f64(), allow_negative_numbers = true)]
    pub wait: f64,

    #[command(flatten)]
    pub tls: TlsClientArgs,
}

/// `socktalk bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The benchmark to run.
    #[command(subcommand)]
    pub mode: BenchMode,
}

/// Flags every benchmark takes.
#[derive(Debug, Args)]
pub struct BenchCommon {
    /// The server to measure: HOST:PORT, [IPv6]:PORT, unix:PATH (not for udp/hold).
    #[arg(value_name = "ADDR")]
    pub addr: Endpoint,

    /// Print the result as one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Count a connection as an error if its connect and TLS handshake take longer than SECS
    /// (0: no limit; the modes over streams).
    #[arg(short = 'w', long = "wait", value_name = "SECS", default_value_t = limits::CONNECT_TIMEOUT.as_secs_f64(), allow_negative_numbers = true)]
    pub wait: f64,
}

/// `--ws [PATH]` of `fanout` and `hold`.
#[derive(Debug, Args)]
pub struct BenchWebSocket {
    /// Speak WebSocket: upgrade every connection at PATH (`serve --http`'s is /ws, the
    /// default); `fanout` sends each line as a text message `{"type":"say","text":…}`.
    #[arg(long = "ws", value_name = "PATH", num_args = 0..=1, default_missing_value = "/ws", value_parser = websocket_path)]
    pub path: Option<String>,
}

/// Flags of the timed benchmarks.
#[derive(Debug, Args)]
pub struct BenchTiming {
    /// Seconds to measure.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 5.0,
        allow_negative_numbers = true
    )]
    pub duration: f64,

    /// Seconds to run before measuring.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 1.0,
        allow_negative_numbers = true
    )]
    pub warmup: f64,

    /// The server's process id, to report the CPU time it (and its child processes) used
    /// while measuring.
    #[arg(long, value_name = "PID", allow_negative_numbers = true)]
    pub pid: Option<u32>,
}

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchMode {
    /// Round trips: each connection sends SIZE bytes and waits for them back.
    Pingpong {
        #[command(flatten)]
        common: BenchCommon,
        #[command(flatten)]
        tls: TlsClientArgs,
        #[command(flatten)]
        timing: BenchTiming,
        /// Connections, all at once.
        #[arg(long, value_name = "N", value_parser = RangedU64ValueParser::<usize>::new().range(1..), default_value_t = 1, allow_negative_numbers = true)]
        conns: usize,
        /// Message size in bytes, at most 64 MiB (67108864).
        #[arg(long, value_name = "BYTES", value_parser = RangedU64ValueParser::<usize>::new().range(1..=limits::BENCH_MAX_SIZE as u64), default_value_t = 64, allow_negative_numbers = true)]
        size: usize,
    },
    /// A stream of chunks; whatever comes back is counted too (an echo server: both ways).
    Bulk {
        #[command(flatten)]
        common: BenchCommon,
        #[command(flatten)]
        tls: TlsClientArgs,
        #[command(flatten)]
        timing: BenchTiming,
        /// Connections, all at once.
        #[arg(long, value_name = "N", value_parser = RangedU64ValueParser::<usize>::new().range(1..), default_value_t = 1, allow_negative_numbers = true)]
        conns: usize,
        /// Chunk size in bytes, at most 64 MiB (67108864).
        #[arg(long, value_name = "BYTES", value_parser = RangedU64ValueParser::<usize>::new().range(1..=limits::BENCH_MAX_SIZE as u64), default_value_t = 65536, allow_negative_numbers = true)]
        size: usize,
        /// Expect the stream back (an echo server) and report it as the result.
        #[arg(long)]
        both: bool,
    },
    /// Datagram ping-pong: round trips, latency, losses.
    Udp {
        #[command(flatten)]
        common: BenchCommon,
        #[command(flatten)]
        timing: BenchTiming,
        /// Sockets, all at once.
        #[arg(long, value_name = "N", value_parser = RangedU64ValueParser::<usize>::new().range(1..), default_value_t = 1, allow_negative_numbers = true)]
        conns: usize,
        /// Datagram size in bytes, 16 to 65507.
        #[arg(long, value_name = "BYTES", value_parser = RangedU64ValueParser::<usize>::new().range(1..), default_value_t = 64, allow_negative_numbers = true)]
        size: usize,
        /// Milliseconds to wait for a reply before counting the datagram lost.
        #[arg(
            long,
            value_name = "MS",
            default_value_t = 200,
            allow_negative_numbers = true
        )]
        timeout: u64,
    },
    /// New connections per second (with --tls: TLS handshakes), each closed at once.
    Handshake {
        #[command(flatten)]
        common: BenchCommon,
        #[command(flatten)]
        tls: TlsClientArgs,
        #[command(flatten)]
        timing: BenchTiming,
        /// Connections being set up at once.
        #[arg(long, value_name = "N", value_parser = RangedU64ValueParser::<usize>::new().range(1..), default_value_t = 1, allow_negative_numbers = true)]
        conns: usize,
    },
    /// Hold idle connections; with --pid, the server's memory per connection.
    Hold {
        #[command(flatten)]
        common: BenchCommon,
        #[command(flatten)]
        tls: TlsClientArgs,
        #[command(flatten)]
        ws: BenchWebSocket,
        /// Connections to open.
        #[arg(long, value_name = "N", value_parser = RangedU64ValueParser::<usize>::new().range(1..), default_value_t = 1000, allow_negative_numbers = true)]
        conns: usize,
        /// The server's process id, to read its memory from /proc.
        #[arg(long, value_name = "PID", allow_negative_numbers = true)]
        pid: Option<u32>,
        /// Seconds to hold them all before measuring.
        #[arg(
            long,
            value_name = "SECS",
            default_value_t = 2.0,
            allow_negative_numbers = true
        )]
        hold: f64,
    },
    /// A chat server: receivers in one room and one sender of LINES lines.
    Fanout {
        #[command(flatten)]
        common: BenchCommon,
        #[command(flatten)]
        tls: TlsClientArgs,
        /// Receivers.
        #[arg(long, value_name = "N", value_parser = RangedU64ValueParser::<usize>::new().range(1..), default_value_t = 100, allow_negative_numbers = true)]
        conns: usize,
        #[command(flatten)]
        ws: BenchWebSocket,
        /// Lines the sender sends.
        #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..), default_value_t = 1000, allow_negative_numbers = true)]
        lines: u64,
        /// Seconds to wait for every delivery before counting the rest lost.
        #[arg(
            long,
            value_name = "SECS",
            default_value_t = 60.0,
            allow_negative_numbers = true
        )]
        timeout: f64,
        /// The server's process id, to report the CPU time it used for the deliveries.
        #[arg(long, value_name = "PID", allow_negative_numbers = true)]
        pid: Option<u32>,
    },
}

/// When to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Color {
    /// When stdout is a terminal and NO_COLOR is unset.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

impl Color {
    /// Whether to colour, given where stdout goes.
    pub fn is_on(self) -> bool {
        use std::io::IsTerminal;
        match self {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => {
                std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
            }
        }
    }
}

/// Seconds typed on the command line as a [`Duration`].
///
/// # Errors
/// [`Error::Usage`] for negative or non-finite values, and for more seconds than a
/// [`Duration`] holds.
pub fn seconds(flag: &str, secs: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(secs).map_err(|_| {
        Error::Usage(if secs.is_finite() && secs >= 0.0 {
            format!("{flag} {secs} is too many seconds")
        } else {
            format!("{flag} {secs} is not a number of seconds ≥ 0")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn worker_threads_default_by_command_and_follow_the_option() {
        let threads = |args: &[&str], cores| {
            let cli = Cli::try_parse_from(["socktalk"].iter().chain(args)).unwrap();
            cli.worker_threads(cores)
        };
        assert_eq!(threads(&["serve"], 2), Some(1));
        assert_eq!(threads(&["serve"], 8), Some(7));
        assert_eq!(threads(&["serve"], 1), Some(1));
        assert_eq!(threads(&["serve", "--threads", "2"], 2), Some(2));
        assert_eq!(threads(&["echo", "127.0.0.1:7000"], 2), Some(2));
        assert_eq!(
            threads(&["--threads", "3", "echo", "127.0.0.1:7000"], 2),
            Some(3)
        );
        assert_eq!(
            threads(&["bench", "pingpong", "127.0.0.1:7000"], 4),
            Some(4)
        );
        // One socket: one thread, whatever is asked.
        assert_eq!(
            threads(&["echo", "-u", "127.0.0.1:7000", "--threads", "4"], 2),
            None
        );
        assert_eq!(threads(&["connect", "127.0.0.1:7000"], 2), None);
        for bad in ["0", "1025", "-1", "two"] {
            assert!(Cli::try_parse_from(["socktalk", "serve", "--threads", bad]).is_err());
        }
        assert_eq!(
            threads(&["serve", "--threads", "1024"], 2),
            Some(MAX_THREADS)
        );
    }

    #[test]
    fn parses_a_typical_echo_line() {
        let cli = Cli::try_parse_from([
            "socktalk",
            "-v",
            "echo",
            "--upper",
            "-u",
            "[::1]:0",
            "--encoding",
            "gbk",
        ])
        .unwrap();
        let Command::Echo(args) = cli.command else {
            panic!("not echo")
        };
        assert!(args.upper && args.target.udp);
        assert_eq!(args.text.encoding.name(), "GBK");
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for argv in [
            &["socktalk", "echo", "127.0.0.1:70000"][..],
            &["socktalk", "echo", "127.0.0.1:1", "--frame", "xml"],
            &["socktalk", "connect", "127.0.0.1:1", "--encoding", "nope"],
            &["socktalk", "echo", "127.0.0.1:1", "-U", "/tmp/x"],
            &["socktalk", "talk"],
            &["socktalk", "talk", "-k", "127.0.0.1:1"],
            &["socktalk", "connect", "-k", "127.0.0.1:1"],
            &["socktalk", "connect", "-l", "-w", "1", "127.0.0.1:1"],
            &["socktalk", "serve", "--max-line", "0"],
            &["socktalk", "serve", "--outbox", "0"],
            &["socktalk", "serve", "--max-rooms", "0"],
            &["socktalk", "echo", "127.0.0.1:1", "--max-frame", "0"],
            &[
                "socktalk",
                "bench",
                "pingpong",
                "127.0.0.1:1",
                "--conns",
                "0",
            ],
            &["socktalk", "bench", "bulk", "127.0.0.1:1", "--size", "0"],
            &["socktalk", "bench", "fanout", "127.0.0.1:1", "--lines", "0"],
        ] {
            let err = Cli::try_parse_from(argv).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{argv:?}");
        }
    }

    #[test]
    fn serve_defaults_match_the_docs() {
        let cli = Cli::try_parse_from(["socktalk", "serve"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert!(args.tcp.is_empty() && args.unix.is_none());
        assert_eq!(args.db, "socktalk.db");
        assert_eq!(args.max_line, limits::MAX_LINE);
    }

    #[test]
    fn seconds_rejects_negatives() {
        assert!(seconds("--linger", -1.0).is_err());
        assert_eq!(
            seconds("--linger", 0.5).unwrap(),
            Duration::from_millis(500)
        );
    }
}
