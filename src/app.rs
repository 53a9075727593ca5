//! Runs a parsed command line: builds each command's config and wires endpoint, transport and
//! service together.

use std::io::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::access::Gate;
use crate::bench;
use crate::chat::client::ClientConfig;
use crate::chat::hub::HubConfig;
use crate::chat::session::SessionConfig;
use crate::chat::{self, ChatConfig};
use crate::cli::{
    BenchArgs, BenchMode, ChatArgs, Cli, Command, ConnectArgs, EchoArgs, ServeArgs, TalkArgs,
    seconds,
};
use crate::codec::Framing;
use crate::connect::{self, ConnectConfig};
use crate::endpoint::{Endpoint, Family, Proto};
use crate::error::{Error, Result, stdout_error};
use crate::server;
use crate::service::echo::{self, EchoConfig, Transform};
use crate::talk::{self, TalkConfig};
use crate::transport::dial::dial;
use crate::transport::tls::{Acceptor, Connector};
use crate::transport::{StreamListener, tcp, udp, unix};

/// Runs the command `cli` names until it finishes or, for servers, until SIGINT/SIGTERM.
///
/// # Errors
/// Startup errors (bad options, bind or connect failures) and client I/O errors.
pub async fn run(cli: Cli) -> Result<()> {
    let family = cli.family();
    match cli.command {
        Command::Serve(args) => run_serve(args, family, shutdown_on_signals()).await,
        Command::Chat(args) => run_chat(args, family).await,
        Command::Bench(args) => run_bench(args, family).await,
        Command::Echo(args) => run_echo(args, family, shutdown_on_signals()).await,
        Command::Connect(args) => run_connect(args, family, !cli.quiet).await,
        Command::Talk(args) => run_talk(args, family, !cli.quiet).await,
    }
}

/// A token cancelled by the first SIGINT (Ctrl-C) or SIGTERM. A second signal exits at once,
/// for when draining takes longer than the user wants to wait.
pub fn shutdown_on_signals() -> CancellationToken {
    use tokio::signal::unix::{SignalKind, signal};
    let token = CancellationToken::new();
    let trigger = token.clone();
    // Installed now, before the server binds and prints "listening on": a handler installed
    // later, inside the task, would leave a window in which a signal kills the process.
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return token;
    };
    tokio::spawn(async move {
        for round in 0.. {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            if round > 0 {
                std::process::exit(130);
            }
            tracing::info!("shutting down");
            trigger.cancel();
        }
    });
    token
}

async fn run_echo(args: EchoArgs, family: Family, shutdown: CancellationToken) -> Result<()> {
    let endpoint = args.target.endpoint()?;
    let proto = endpoint.proto(args.target.udp)?;
    let config = Arc::new(EchoConfig {
        transform: if args.upper {
            Transform::Upper
        } else {
            Transform::Echo
        },
        framing: args.frame.framing,
        max_frame: args.frame.max_frame,
        encoding: args.text.encoding,
        greet: args.greet,
        idle_timeout: seconds("--idle-timeout", args.idle_timeout)?,
        access: args.access.policy(),
    });
    let tls = Acceptor::new(&args.tls.options()?)?;
    if proto == Proto::Udp {
        if tls.is_some() {
            return Err(Error::Usage(
                "TLS needs a stream (TCP or a Unix socket); UDP has none".into(),
            ));
        }
        if config.framing != Framing::Raw {
            return Err(Error::Usage(
                "--frame applies to streams; each UDP datagram is already one message".into(),
            ));
        }
        if config.greet.is_some() {
            return Err(Error::Usage(
                "--greet needs a connection to greet; UDP has none".into(),
            ));
        }
        if !config.idle_timeout.is_zero() {
            return Err(Error::Usage(
                "--idle-timeout closes idle connections; UDP has none".into(),
            ));
        }
        let socket = udp::listen(&endpoint, family).await?;
        server::reload_on_sighup(None);
        server::announce(&crate::endpoint::display_addr(
            Proto::Udp,
            socket.local_addr()?,
        ));
        echo::serve_udp(socket, config, shutdown).await;
        return Ok(());
    }
    let entry = server::Entry {
        gate: Gate::new(config.access.clone(), args.max_conns, args.max_conns_per_ip),
        tls,
        refusal: server::RefusalStyle::Line,
    };
    match &endpoint {
        Endpoint::Unix(path) => serve_echo(unix::listen(path)?, entry, config, shutdown).await,
        Endpoint::Inet { .. } => {
            let listener = tcp::listen(&endpoint, family).await?;
            serve_echo(listener, entry, config, shutdown).await
        }
    }
}

async fn serve_echo<L: StreamListener>(
    listener: L,
    entry: server::Entry,
    config: Arc<EchoConfig>,
    shutdown: CancellationToken,
) -> Result<()> {
    server::reload_on_sighup(entry.tls.as_ref());
    server::announce(&listener.local_display());
    server::announce_tls(entry.tls.as_ref());
    server::run(listener, entry, shutdown, move |conn, peer, _, shutdown| {
        echo::serve_stream(conn, peer.name, config.clone(), shutdown)
    })
    .await;
    Ok(())
}

async fn run_connect(args: ConnectArgs, family: Family, is_chatty: bool) -> Result<()> {
    let endpoint = args.target.endpoint()?;
    let config = ConnectConfig {
        framing: args.frame.framing,
        max_frame: args.frame.max_frame,
        encoding: args.text.encoding,
        linger: seconds("--linger", args.linger)?,
        idle_timeout: seconds("--idle-timeout", args.idle_timeout)?,
        is_listening: args.listen,
    };
    let server_tls = args.tls_server.options()?;
    if args.listen {
        return run_connect_listen(&args, &endpoint, family, config, is_chatty).await;
    }
    if server_tls.is_on() {
        return Err(Error::Usage(
            "--tls-cert/--tls-self-signed are for connect --listen; a client uses --tls".into(),
        ));
    }
    let wait = seconds("--wait", args.wait)?;
    let tls = Connector::new(&args.tls.options())?;
    match (endpoint.proto(args.target.udp)?, &endpoint) {
        (_, Endpoint::Unix(_)) | (Proto::Tcp, _) => {
            let (conn, _) = dial(&endpoint, family, tls.as_ref(), wait).await?;
            connect::stream(conn, &config).await
        }
        (Proto::Udp, _) if tls.is_some() => Err(Error::Usage(
            "TLS needs a stream (TCP or a Unix socket); UDP has none".into(),
        )),
        (Proto::Udp, _) => {
            if config.framing == Framing::Len {
                return Err(Error::Usage(
                    "--frame len applies to streams; each UDP datagram is already one message"
                        .into(),
                ));
            }
            if !config.idle_timeout.is_zero() {
                return Err(Error::Usage(
                    "--idle-timeout closes an idle connection; UDP has none (--linger bounds the wait for replies)"
                        .into(),
                ));
            }
            connect::udp(udp::resolve_peer(&endpoint, family).await?, &config).await
        }
    }
}

/// `connect -l`: listens on `endpoint` for one peer (`-k`: one after another).
async fn run_connect_listen(
    args: &ConnectArgs,
    endpoint: &Endpoint,
    family: Family,
    config: ConnectConfig,
    is_chatty: bool,
) -> Result<()> {
    if let Some(option) = args.tls.first_given() {
        return Err(Error::Usage(format!(
            "{option} is for connecting to a server; connect --listen serves TLS with --tls-cert/--tls-key or --tls-self-signed, and asks peers for certificates with --tls-client-ca"
        )));
    }
    let proto = endpoint.proto(args.target.udp)?;
    let server_tls = args.tls_server.options()?;
    if proto == Proto::Udp {
        let refusal = if server_tls.is_on() {
            Some("TLS needs a stream (TCP or a Unix socket); UDP has none")
        } else if config.framing == Framing::Len {
            Some("--frame len applies to streams; each UDP datagram is already one message")
        } else if !config.idle_timeout.is_zero() {
            Some(
                "--idle-timeout closes an idle connection; UDP has none (--linger ends the wait once stdin is done)",
            )
        } else if args.keep_open {
            Some(
                "-k takes the next peer when a connection ends; UDP has none (its first sender stays the peer)",
            )
        } else {
            None
        };
        if let Some(refusal) = refusal {
            return Err(Error::Usage(refusal.into()));
        }
        let listen = connect::listen::ListenConfig {
            keep_open: false,
            is_chatty,
            tls: None,
        };
        let socket = udp::listen(endpoint, family).await?;
        return connect::listen::udp(socket, &config, &listen).await;
    }
    let listen = connect::listen::ListenConfig {
        keep_open: args.keep_open,
        is_chatty,
        tls: Acceptor::new(&server_tls)?,
    };
    match endpoint {
        Endpoint::Unix(path) => {
            connect::listen::streams(unix::listen(path)?, &config, &listen).await
        }
        Endpoint::Inet { .. } => {
            let listener = tcp::listen(endpoint, family).await?;
            connect::listen::streams(listener, &config, &listen).await
        }
    }
}

async fn run_talk(args: TalkArgs, family: Family, is_chatty: bool) -> Result<()> {
    let config = TalkConfig {
        encoding: args.text.encoding,
        keep_listening: args.keep_listening,
        is_chatty,
        newline: !args.no_newline,
    };
    let is_udp = args.udp
        || [&args.listen, &args.peer]
            .into_iter()
            .flatten()
            .any(|e| matches!(e.proto(false), Ok(Proto::Udp)));
    let acceptor = Acceptor::new(&args.tls_server.options()?)?;
    let connector = Connector::new(&args.tls_client.options())?;
    if is_udp {
        if acceptor.is_some() || connector.is_some() {
            return Err(Error::Usage(
                "TLS needs a stream (TCP or a Unix socket); UDP has none".into(),
            ));
        }
        return talk_udp(&args, family, &config).await;
    }
    match (&args.listen, &acceptor, &connector) {
        (None, Some(_), _) => {
            return Err(Error::Usage(
                "--tls-cert/--tls-self-signed are for talk --listen; a caller uses --tls".into(),
            ));
        }
        (Some(_), _, Some(_)) => {
            return Err(Error::Usage(
                "--tls/--tls-ca/--tls-fingerprint are for calling a peer; talk --listen uses --tls-cert or --tls-self-signed".into(),
            ));
        }
        _ => {}
    }
    let entry = server::Entry {
        gate: Gate::new(args.access.policy(), 1, 0),
        tls: acceptor,
        refusal: server::RefusalStyle::Line,
    };
    match (&args.listen, &args.peer) {
        (Some(_), Some(peer)) => Err(Error::Usage(format!(
            "talk --listen waits for a peer; it takes no PEER ({peer}) over TCP or Unix sockets"
        ))),
        (Some(Endpoint::Unix(path)), None) => {
            let listener = unix::listen(path)?;
            talk::listen(listener, &entry, &mut talk::stdin_lines(), &config).await
        }
        (Some(addr), None) => {
            let listener = tcp::listen(addr, family).await?;
            talk::listen(listener, &entry, &mut talk::stdin_lines(), &config).await
        }
        (None, Some(peer)) => {
            let wait = seconds("--wait", args.wait)?;
            let (conn, name) = dial(peer, family, connector.as_ref(), wait).await?;
            talk::dial(conn, &name, &config).await
        }
        (None, None) => Err(Error::Usage("talk needs a PEER or --listen ADDR".into())),
    }
}

async fn talk_udp(args: &TalkArgs, family: Family, config: &TalkConfig) -> Result<()> {
    for endpoint in [&args.listen, &args.peer].into_iter().flatten() {
        endpoint.proto(true)?;
    }
    let peer = match &args.peer {
        Some(peer) => Some(udp::resolve_peer(peer, family).await?),
        None => None,
    };
    let socket = match (&args.listen, peer) {
        (Some(local), _) => udp::listen(local, family).await?,
        (None, Some(peer)) => {
            // A caller from an ephemeral port: connected, it sends from the address the kernel
            // picks for the peer, which a server answers, and hears only the peer.
            udp::connect(peer).await?
        }
        (None, None) => return Err(Error::Usage("talk needs a PEER or --listen ADDR".into())),
    };
    if let Some(peer) = peer {
        let local = socket.local_addr()?;
        // A dual-stack [::] reaches IPv4 peers too; any other pair of families cannot talk.
        let can_reach = match (local.ip(), peer.ip()) {
            (IpAddr::V6(ip), IpAddr::V4(_)) => ip.is_unspecified(),
            (local, peer) => local.is_ipv4() == peer.is_ipv4(),
        };
        if !can_reach {
            return Err(Error::Usage(format!(
                "talk -u from {} cannot reach {peer}: give --listen an address of the peer's family (or [::] for both)",
                local.ip()
            )));
        }
    }
    if args.listen.is_some() {
        server::announce(&crate::endpoint::display_addr(
            Proto::Udp,
            socket.local_addr()?,
        ));
    }
    talk::udp(socket, peer, &args.access.policy(), config).await
}

async fn run_serve(args: ServeArgs, family: Family, shutdown: CancellationToken) -> Result<()> {
    let mut tcp = args.tcp;
    let mut unix = args.unix;
    for endpoint in args.listen {
        match endpoint {
            Endpoint::Unix(path) if unix.is_none() => unix = Some(path),
            Endpoint::Unix(_) => {
                return Err(Error::Usage(
                    "serve listens on one Unix socket at most".into(),
                ));
            }
            Endpoint::Inet {
                scheme: Some(Proto::Udp),
                ..
            } => {
                return Err(Error::Usage(
                    "the chat server speaks TCP (and Unix sockets), not UDP".into(),
                ));
            }
            inet @ Endpoint::Inet { .. } => tcp.push(inet),
        }
    }
    // The main job (no listener named) serves people on TCP and browsers on HTTP; once any
    // listener is named, the listeners named are the ones served.
    let is_main_job = tcp.is_empty() && unix.is_none();
    if is_main_job {
        tcp.push(crate::limits::CHAT_ADDR.parse()?);
    }
    let http = match args.http.as_deref() {
        Some("off") => None,
        Some(addr) => Some(addr.parse::<Endpoint>()?),
        None if is_main_job => Some(crate::limits::HTTP_ADDR.parse()?),
        None => None,
    };
    if !(args.max_rate >= 0.0 && args.burst >= 0.0) {
        return Err(Error::Usage("--max-rate and --burst must be ≥ 0".into()));
    }
    if args.db.is_empty() {
        return Err(Error::Usage(
            "--db needs a file name (or :memory: to keep no history)".into(),
        ));
    }
    if args.db_max_size != 0 && args.db_max_size < crate::limits::DB_MAX_SIZE_MIN {
        return Err(Error::Usage(format!(
            "--db-max-size must be 0 (no cap) or at least {} bytes",
            crate::limits::DB_MAX_SIZE_MIN
        )));
    }
    let config = ChatConfig {
        tcp,
        unix,
        db: args.db,
        db_sync: args.db_sync,
        db_max_size: args.db_max_size,
        max_conns: args.max_conns,
        max_conns_per_ip: args.max_conns_per_ip,
        access: args.access.policy(),
        tls: args.tls.options()?,
        session: SessionConfig {
            encoding: args.encoding,
            max_line: args.max_line,
            max_rate: args.max_rate,
            burst: args.burst,
            idle_timeout: seconds("--idle-timeout", args.idle_timeout)?,
            outbox: args.outbox,
        },
        hub: HubConfig {
            history_replay: args.history,
            max_rooms: args.max_rooms.max(1),
            outbox: args.outbox.max(2),
            announce_limit: args.announce_limit,
            max_mail: args.max_mail,
            max_line: args.max_line,
        },
        http,
        allow_origins: args.allow_origins,
        ws_ping: seconds("--ws-ping", args.ws_ping)?,
    };
    chat::run(config, family, shutdown).await
}

async fn run_chat(args: ChatArgs, family: Family) -> Result<()> {
    let config = ClientConfig {
        nick: args.nick,
        is_colored: args.color.is_on(),
        keepalive: seconds("--keepalive", args.keepalive)?,
    };
    let tls = Connector::new(&args.tls.options())?;
    let target = match &args.unix {
        Some(path) => Endpoint::Unix(path.clone()),
        None => args.addr.clone(),
    };
    let wait = seconds("--wait", args.wait)?;
    let (conn, _) = dial(&target, family, tls.as_ref(), wait).await?;
    chat::client::run(conn, &config).await
}

async fn run_bench(args: BenchArgs, family: Family) -> Result<()> {
    use crate::cli::{BenchCommon, BenchTiming, TlsClientArgs};
    // Ctrl-C (or SIGTERM, SIGHUP) ends a run early, with the report of what it measured until
    // then.
    let interrupt = bench::Interrupt::on_signals();
    // Every mode may open many sockets: a soft limit below the hard one (often 1,024) would
    // fail connections the system allows.
    bench::hold::raise_fd_limit();
    // `tls` is `None` for the modes that have no TLS flags (udp).
    let dialer = |common: &BenchCommon, tls: Option<&TlsClientArgs>| -> Result<bench::Dialer> {
        Ok(bench::Dialer {
            target: common.addr.clone(),
            family,
            wait: seconds("--wait", common.wait)?,
            tls: match tls {
                Some(tls) => Connector::new(&tls.options())?,
                None => None,
            },
        })
    };
    let load = |common: &BenchCommon,
                tls: Option<&TlsClientArgs>,
                t: &BenchTiming,
                conns: usize,
                size: usize|
     -> Result<bench::Load> {
        let duration = bench_seconds("--duration", t.duration)?;
        if duration.is_zero() {
            return Err(Error::Usage(
                "--duration must be more than 0 seconds".into(),
            ));
        }
        Ok(bench::Load {
            dialer: dialer(common, tls)?,
            conns: conns.max(1),
            size: size.max(1),
            warmup: bench_seconds("--warmup", t.warmup)?,
            duration,
            server: live_pid(t.pid)?,
            interrupt: interrupt.clone(),
        })
    };
    let run = async {
        Ok::<_, Error>(match args.mode {
            BenchMode::Pingpong {
                common,
                tls,
                timing,
                conns,
                size,
            } => {
                let report =
                    bench::pingpong::run(&load(&common, Some(&tls), &timing, conns, size)?).await?;
                (report, common.json)
            }
            BenchMode::Bulk {
                common,
                tls,
                timing,
                conns,
                size,
                both,
            } => {
                let load = load(&common, Some(&tls), &timing, conns, size)?;
                let report = bench::bulk::run(&load, both).await?;
                (report, common.json)
            }
            BenchMode::Udp {
                common,
                timing,
                conns,
                size,
                timeout,
            } => {
                let timeout = std::time::Duration::from_millis(timeout.max(1));
                let report =
                    bench::udp::run(&load(&common, None, &timing, conns, size)?, timeout).await?;
                (report, common.json)
            }
            BenchMode::Handshake {
                common,
                tls,
                timing,
                conns,
            } => {
                let report =
                    bench::handshake::run(&load(&common, Some(&tls), &timing, conns, 1)?).await?;
                (report, common.json)
            }
            BenchMode::Hold {
                common,
                tls,
                ws,
                conns,
                pid,
                hold,
            } => {
                let hold = bench_seconds("--hold", hold)?;
                let pid = live_pid(pid)?;
                let report = bench::hold::run(
                    &dialer(&common, Some(&tls))?,
                    ws.path.as_deref(),
                    conns,
                    pid,
                    hold,
                    &interrupt,
                )
                .await?;
                (report, common.json)
            }
            BenchMode::Fanout {
                common,
                tls,
                conns,
                ws,
                lines,
                timeout,
                pid,
            } => {
                let timeout = bench_seconds("--timeout", timeout)?;
                let dialer = dialer(&common, Some(&tls))?;
                let pid = live_pid(pid)?;
                let report = bench::fanout::run(
                    &dialer,
                    ws.path.as_deref(),
                    conns.max(1),
                    lines.max(1),
                    timeout,
                    pid,
                    &interrupt,
                )
                .await?;
                (report, common.json)
            }
        })
    };
    // Once interrupted, a run reports within INTERRUPT_GRACE, or the command ends without it.
    let given_up = async {
        interrupt.wait().await;
        tokio::time::sleep(bench::INTERRUPT_GRACE).await;
    };
    let (report, is_json) = tokio::select! {
        outcome = run => outcome?,
        () = given_up => {
            return Err(interrupt.error(&format!(
                "; the run did not wrap up within {} s, no report",
                bench::INTERRUPT_GRACE.as_secs()
            )));
        }
    };
    // Interrupted before the measurement began: there is nothing to report.
    if report.interrupted && report.duration_s <= 0.0 {
        return Err(interrupt.too_early());
    }
    let text = if is_json {
        format!("{}\n", report.to_json())
    } else {
        report.to_table()
    };
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
    // The report shows what failed; the exit code must too, for scripts. A signal decides it
    // even when the report could not be written: SIGHUP is the terminal going away, and the
    // report's terminal (which then fails with EIO) or pipe (whose reader it ended) with it.
    if report.interrupted {
        let measured = bench::report::seconds(report.duration_s);
        return Err(interrupt.error(&match written {
            Ok(()) => format!(": the report covers the {measured} measured before it"),
            Err(err) => format!(
                "; the report of the {measured} measured before it was not written ({})",
                match stdout_error(err) {
                    Error::StdoutClosed => "standard output is closed".to_string(),
                    other => other.to_string(),
                }
            ),
        }));
    }
    // A closed pipe (`… | head`) is not a panic, nor a failure: it ends the command quietly.
    written.map_err(stdout_error)?;
    if report.measured_nothing() {
        return Err(Error::Io(std::io::Error::other(format!(
            "nothing was measured: {}",
            report.why_nothing()
        ))));
    }
    Ok(())
}

/// A time flag of `bench`, at most [`limits::BENCH_MAX_TIME`]: past the clock's range, the
/// end of a run cannot be computed.
fn bench_seconds(flag: &str, secs: f64) -> Result<std::time::Duration> {
    let time = seconds(flag, secs)?;
    if time > crate::limits::BENCH_MAX_TIME {
        return Err(Error::Usage(format!(
            "{flag} {secs} is more than {} seconds (about 31 years), the longest a run may take",
            crate::limits::BENCH_MAX_TIME.as_secs()
        )));
    }
    Ok(time)
}

/// `--pid`, checked: a process that is not there would give no CPU figures, without a word.
fn live_pid(pid: Option<u32>) -> Result<Option<u32>> {
    match pid {
        Some(pid) if !std::path::Path::new(&format!("/proc/{pid}")).exists() => {
            Err(Error::Usage(format!("--pid {pid}: no such process")))
        }
        pid => Ok(pid),
    }
}
