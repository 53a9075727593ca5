//! Every limit socktalk enforces, in one place.
//!
//! Each constant is the default of a command-line flag of the same name (`MAX_FRAME` is
//! `--max-frame`). The README's "Limits" table lists them; keep the two in step.

use std::time::Duration;

/// `--max-frame`: the largest message a `line` or `len` framed connection may send, in bytes.
/// A longer line, or a length prefix above it, closes that connection with a logged reason.
pub const MAX_FRAME: usize = 64 * 1024;

/// `--max-conns`: connections a stream server serves at once. Connections beyond it are accepted
/// and closed at once (logged), so clients see a clean close rather than a hang.
pub const MAX_CONNS: usize = 10_000;

/// `--idle-timeout`: how long a stream server waits for bytes from a client before closing the
/// connection. Zero (the default for `echo`) waits forever, as classic echo servers do.
pub const IDLE_TIMEOUT: Duration = Duration::ZERO;

/// How long a server, once told to stop, lets its connections finish before it exits anyway.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How many bytes one read asks the kernel for at most; also the largest raw chunk.
pub const READ_CHUNK: usize = 64 * 1024;

/// The largest UDP payload over IPv4 (65,535 minus the IPv4 and UDP headers): the largest
/// message that fits in one datagram whatever the family.
pub const MAX_DATAGRAM: usize = 65_507;

/// The largest UDP payload over IPv6 (65,535 minus the UDP header: IPv6 does not count its own
/// header in the length). Buffers for received datagrams are this big, so none is ever cut short.
pub const MAX_DATAGRAM_V6: usize = 65_527;

/// `--linger`: after stdin ends, how long `connect -u` waits for replies still owed.
pub const UDP_LINGER: Duration = Duration::from_secs(2);

/// How often a stream client whose peer is done looks again whether piped stdin has gone
/// silent, when `--linger` is shorter (`--linger 0` would otherwise wake it without end while
/// a write to a slow peer is blocked).
pub const LINGER_TICK_MIN: Duration = Duration::from_millis(50);

/// The backlog passed to `listen(2)`; the kernel caps it at `net.core.somaxconn` (4096 by
/// default since Linux 5.4). Connections past it are dropped and retried by the client's
/// kernel a second, then three, seven… later: 10,000 chat clients connecting at once were all
/// in within 0.9 s with 4096, and 1.5 s with 1024.
pub const LISTEN_BACKLOG: i32 = 4096;

/// The most requests one chat member may have waiting for its earlier ones to take effect (a
/// `/part` typed right after a message waits until the message is committed and delivered,
/// and so does all the member types after it). Past it, a request is dropped and the member
/// told; only a member flooding with `--max-rate 0` can reach it.
pub const MAX_HELD_REQUESTS: usize = 1024;

/// How long the accept loop backs off after an error such as running out of file descriptors,
/// doubling up to [`ACCEPT_BACKOFF_MAX`].
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);

/// The longest accept back-off.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// `serve --max-line`: the longest line a chat client may send, in bytes. A longer line is
/// refused with an error and skipped; the session goes on.
pub const MAX_LINE: usize = 8 * 1024;

/// The smallest line a reply to one chat member (`/who`, `/rooms`, `/history`) is weighed in:
/// such a reply counts against the member's `--outbox` as the lines it holds, or as its bytes
/// divided by `--max-line` if that is more, and `--max-line` counts as at least this much, so
/// that a tiny `--max-line` does not make a modest reply weigh like a flood (at most half the
/// outbox either way).
pub const MIN_REPLY_LINE: usize = 1024;

/// `serve --max-rate`: chat messages per second per connection before the server reads that
/// client more slowly (TCP pushes back; nothing is dropped). `0` turns it off.
pub const MAX_RATE: f64 = 20.0;

/// `serve --burst`: chat messages a client may send at once before `--max-rate` applies.
pub const BURST: f64 = 40.0;

/// `serve --idle-timeout`: a chat client that sends no complete line this long is disconnected
/// (bytes of an unfinished line don't count, so a client trickling half a line is idle too).
pub const CHAT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// `serve --ws-ping`: how often each WebSocket is pinged; one that answers nothing for two
/// intervals (a laptop asleep, a dropped network) is closed, freeing its nick long before
/// `--idle-timeout`.
pub const WS_PING: Duration = Duration::from_secs(30);

/// `chat --keepalive`: how often the terminal client sends an empty line while the user types
/// nothing, so that someone who only reads is not closed by the server's `--idle-timeout`.
pub const CHAT_KEEPALIVE: Duration = Duration::from_secs(60);

/// TCP keepalive on chat connections: a member's machine that vanished without a word (a laptop
/// asleep, a dropped network) is probed after this long of silence, every
/// [`CHAT_TCP_KEEPALIVE_INTERVAL`], and its connection closed after
/// [`CHAT_TCP_KEEPALIVE_PROBES`] probes go unanswered: its nick is free again within two
/// minutes, not at `--idle-timeout`.
pub const CHAT_TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// See [`CHAT_TCP_KEEPALIVE`].
pub const CHAT_TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// See [`CHAT_TCP_KEEPALIVE`].
pub const CHAT_TCP_KEEPALIVE_PROBES: u32 = 6;

/// `TCP_USER_TIMEOUT` on chat connections: keepalive probes are sent only while nothing the
/// server sent is waiting to be acknowledged, so a member that vanished while messages were
/// going to it would otherwise hold its nick until the kernel's retransmissions give up (about
/// 15 minutes). Data unacknowledged this long, or a receive window shut this long, closes the
/// connection.
pub const CHAT_TCP_USER_TIMEOUT: Duration = Duration::from_secs(120);

/// `serve --max-rooms`: rooms one chat member may be in at once.
pub const MAX_ROOMS: usize = 20;

/// `serve --history`: messages replayed to a member joining a room.
pub const HISTORY_REPLAY: usize = 20;

/// `serve --outbox`: lines queued for a chat member before it is disconnected as not reading.
/// A member is warned when its queue passes half of this. A quarter of it is the most a fan-out
/// round carries (see the hub), and each round walks and wakes every member of the room: a
/// 1,000-line burst to 1,000 members cost 15% more server CPU at 1,024 (256-line rounds) than at
/// 2,048, and about 10% more at 2,048 than at 4,096, where it fits one round (BENCHMARKS.md).
/// In a flood, a 1,024-line outbox cut off members that kept reading but were not scheduled for
/// ~10 ms; 4,096 lines give them ~40 ms. Queued lines are shared chunks, so an idle member costs
/// nothing for it.
pub const OUTBOX: usize = 4096;

/// `serve --announce-limit`: rooms with more members than this don't announce joins, parts,
/// quits and nick changes to everyone, only to the member concerned.
pub const ANNOUNCE_LIMIT: usize = 100;

/// The chat server's default web address (page and WebSocket), for the main job.
pub const HTTP_ADDR: &str = "127.0.0.1:8080";

/// The chat server's default TCP address.
pub const CHAT_ADDR: &str = "127.0.0.1:7878";

/// `--tls-handshake-timeout`: how long a TLS handshake may take (servers; `bench` uses the same
/// bound, and the other clients their `-w`). A client that stalls in the handshake (a slowloris on TLS) holds its connection
/// only this long. The web server gives a client as long (the flag's value, TLS or not) to send
/// each request's head.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// `-w`/`--wait` of the clients (`connect`, `chat`, `talk PEER`): how long resolving the
/// server's name, connecting and the TLS handshake may take together before the client gives up
/// (exit code 3). A name of several addresses gives each an equal share of the time left.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `bench pingpong` and `bulk --size`: the largest message or chunk, in bytes. Each pingpong
/// connection holds a message and its reply this big; a size past the machine's memory aborted
/// the load generator instead of saying so.
pub const BENCH_MAX_SIZE: usize = 64 * 1024 * 1024;

/// `bench --duration`, `--warmup`, `--hold`, `fanout --timeout`: the longest each may be, about 31 years
/// ("until Ctrl-C"). A time past the clock's range (`--warmup 1e19`) panicked the load generator.
pub const BENCH_MAX_TIME: Duration = Duration::from_secs(1_000_000_000);

/// `connect --idle-timeout`: a connection that carries nothing either way this long is closed
/// and the client exits with code 3. Zero (the default) waits forever, as `nc` does without `-i`.
pub const CONNECT_IDLE_TIMEOUT: Duration = Duration::ZERO;

/// How long a Unix socket client first waits before trying again when the server's accept
/// queue is full (`EAGAIN`), doubling up to [`UNIX_RETRY_MAX`], within `-w`.
pub const UNIX_RETRY_MIN: Duration = Duration::from_millis(5);

/// The longest wait between two tries of a Unix socket connect; see [`UNIX_RETRY_MIN`].
pub const UNIX_RETRY_MAX: Duration = Duration::from_millis(200);

/// `serve --max-conns-per-ip`: connections one client address may hold at once (0: no cap).
/// Beyond it a connection gets a one-line `refused:` reason and is closed.
pub const CHAT_MAX_CONNS_PER_IP: usize = 64;

/// `echo --max-conns-per-ip`: as for `serve`, off by default: echo servers are test peers that
/// load generators open many connections to.
pub const ECHO_MAX_CONNS_PER_IP: usize = 0;

/// How long a refused connection is kept to deliver its `refused:` line (and read what the
/// client already sent, so the close is clean rather than a reset).
pub const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// A TLS server warns at start (and on each SIGHUP reload) when its certificate expires within
/// this long, as it does for one already expired or not yet valid.
pub const CERT_EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 60 * 60);

/// The most of a plain-text HTTP request's head a TLS web listener reads, to name its `Host` in
/// the `400` that says to use `https://`.
pub const PLAIN_REQUEST_HEAD: usize = 8 * 1024;

/// The most often a server logs one kind of warning that clients' traffic causes (refused
/// connections; WebSocket upgrades refused for their `Origin`; `echo -u --upper` replies too
/// big for a datagram): the first is logged at once, the rest within this long are counted and
/// the count told on the next line, so a flood cannot fill the disk with a line for each
/// connection, request or datagram.
pub const LOG_EVERY: Duration = Duration::from_secs(1);

/// Refused connections lingering at once; beyond this (a flood) the reason line is written
/// only if the socket takes it without waiting, and the connection is closed at once.
pub const REFUSALS_AT_ONCE: usize = 64;

/// `serve --max-mail`: private messages kept for one registered nick while it is offline. A
/// sender whose message would pass it gets an error; the mailbox empties when its owner logs in.
pub const MAX_MAIL: usize = 100;

/// The shortest password `/register` and `/password` accept, in characters.
pub const MIN_PASSWORD: usize = 8;

/// The longest password accepted, in bytes: hashing cost grows with length, and no one types
/// more. A longer one is refused with an error before any hashing.
pub const MAX_PASSWORD: usize = 1024;

/// Failed logins for one nick from one client address within [`LOGIN_WINDOW`] after which
/// further `/login`s for it from there are refused ("too many failed logins; try again in Ns")
/// without checking the password, until the window ends. Slows password guessing against one
/// account to this many a window per address, while its owner, elsewhere, can still log in.
pub const LOGIN_FAILURES_PER_NICK: u32 = 5;

/// Failed logins for one nick from all addresses together within [`LOGIN_WINDOW`] after which
/// its logins are refused from everywhere: bounds guessing spread over many addresses. High
/// enough that one address (capped by [`LOGIN_FAILURES_PER_SOURCE`]) cannot lock the owner out.
pub const LOGIN_FAILURES_PER_NICK_TOTAL: u32 = 50;

/// Failed logins from one client address (an IPv4 address, an IPv6 /64, or the Unix socket as a
/// whole) within [`LOGIN_WINDOW`] after which further logins from it are refused until the
/// window ends. Higher than the per-nick limit because many people may share one address.
/// Every `/register` and every `/password` counts here too, failed or not: each costs argon2
/// work, and this bounds how much one address can ask for.
pub const LOGIN_FAILURES_PER_SOURCE: u32 = 20;

/// The window the login failure limits count in: it starts at the first failure and, once
/// over, the count starts again.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(60);

/// Password hashes (argon2: deliberately slow, about 19 MiB each) computed at once, on blocking
/// threads, never on the hub or a runtime worker. A login flood queues behind these instead of
/// exhausting memory and CPU.
pub const HASH_CONCURRENCY: usize = 2;

/// Password checks waiting for a hashing slot at most; past it `/login`, `/register` and
/// `/password` are refused with "the server is busy" until the queue shrinks.
pub const HASH_QUEUE: usize = 64;

/// How long closing a connection may wait on the client (a TLS `close_notify` queued behind data
/// it never read; a chat member's last word; its input, read and dropped so that the close is
/// not a reset): a client that stopped reading cannot hold its connection open past it.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a chat server shutting down waits for its WebSocket sessions to say goodbye (their
/// last events, then a close frame with code 1001, each bounded by [`CLOSE_TIMEOUT`]) before
/// it exits under them.
pub const WS_DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// `serve --db-max-size`: the largest the history database file may grow, in bytes; `0` (the
/// default) is no cap. Once a commit would pass it, new messages are refused with an error to
/// their sender and a log line, never lost silently. The `-wal` file is not counted.
pub const DB_MAX_SIZE: u64 = 0;

/// The smallest `--db-max-size` accepted (other than `0`): room for the schema and some history.
pub const DB_MAX_SIZE_MIN: u64 = 64 * 1024;

/// The most messages one `/history N` returns.
pub const MAX_HISTORY: usize = 1000;

/// `socktalk chat`: the longest line accepted from the server (a history batch is one line).
pub const MAX_SERVER_LINE: usize = 16 * 1024 * 1024;

/// `socktalk chat`: how long the server has to answer `/json` with its first `state` event; one
/// that does not is not a socktalk chat server (an echo server, for one, sends the client's own
/// requests back), and the client exits 1.
pub const GREETING_TIMEOUT: Duration = Duration::from_secs(5);

/// `talk --listen --tls`: TLS handshakes run at once while it waits for a caller; callers beyond
/// are closed at once.
pub const HANDSHAKES_AT_ONCE: usize = 16;

/// `talk`: how long a piece of a line waits for the rest, from a peer that ends its lines with
/// `\n`, before it is shown as it is.
pub const PARTIAL_LINE_WAIT: Duration = Duration::from_millis(500);
