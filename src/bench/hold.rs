//! Hold: open N idle connections and keep them, to see how many a server can hold and, given
//! its process id, what each costs it in memory.
//!
//! - The open-file limit is raised to its hard maximum first; when it is still what stops the
//!   run, the report says so (`stopped_by`).
//! - Against an IPv4 loopback server, source addresses are spread over 127.0.0.0/8
//!   (`IP_BIND_ADDRESS_NO_PORT`), so the run is not limited to one address pair's ephemeral
//!   ports.
//! - Each connection's incoming bytes (a chat server's greeting) are read and dropped, so the
//!   server never sees a member that stopped reading.
//! - With `--tls` each connection makes its TLS handshake first, and holds its session: what an
//!   idle TLS client costs a server is its TLS state on top of the connection's.
//! - With `--ws PATH` each connection is upgraded to a WebSocket first, as a browser's is, and
//!   its pings are answered (over TLS: `wss://`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;

use super::{Dialer, Interrupt, Report, progress, ws};
use crate::error::{Error, Result};
use crate::transport::deadline::Deadline;
use crate::transport::tls;

/// Raises this process's open-file soft limit to the hard limit; returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// A process's resident memory in bytes, from its `/proc/PID/status` file, opened once: when
/// the open-file limit is what stops `hold`, the file could no longer be opened.
pub fn rss_bytes(status_file: &mut std::fs::File) -> Option<u64> {
    use std::io::{Read, Seek};
    status_file.rewind().ok()?;
    let mut status = String::new();
    status_file.read_to_string(&mut status).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The `i`-th source address for a connection to `server`: 127.0.0.1 is left alone, then
/// 127.1.0.1, 127.1.0.2, … one per 16,000 connections.
fn source_for(server: SocketAddr, i: usize) -> Option<SocketAddr> {
    let SocketAddr::V4(v4) = server else {
        return None;
    };
    if !v4.ip().is_loopback() {
        return None;
    }
    let n = (i / 16_000) as u32 + 1;
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 1, 0, 0)) + n);
    Some(SocketAddr::new(IpAddr::V4(ip), 0))
}

/// Opens one connection to `server` from `source`, by `deadline`.
async fn open(
    server: SocketAddr,
    source: Option<SocketAddr>,
    deadline: &Deadline,
) -> std::io::Result<TcpStream> {
    let connected = async {
        let socket = if server.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(source) = source {
            // Defer choosing the port to connect(), so ports are unique per 4-tuple, not per
            // source.
            let one: libc::c_int = 1;
            // SAFETY: a valid socket fd and a pointer to a c_int of the size given.
            unsafe {
                libc::setsockopt(
                    socket.as_raw_fd(),
                    libc::IPPROTO_IP,
                    libc::IP_BIND_ADDRESS_NO_PORT,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
            socket.bind(source)?;
        }
        socket.connect(server).await
    };
    deadline.within(connected).await.unwrap_or_else(|| {
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {}", deadline.describe()),
        ))
    })
}

/// One held connection: TCP, with TLS when on, upgraded to a WebSocket with `--ws`.
type Held = Either<tls::Conn<TcpStream>, ws::Lines<tls::Conn<TcpStream>>>;

/// Opens the `i`-th connection as `dialer` says (its TLS and `-w`), upgraded to a WebSocket at
/// `websocket` (a path) when given: the upgrade has its own `-w`, as in `fanout`.
async fn open_held(
    dialer: &Dialer,
    server: SocketAddr,
    websocket: Option<&str>,
    i: usize,
) -> Result<Held> {
    let deadline = Deadline::after(dialer.wait, "-w");
    let target = &dialer.target;
    let stream = open(server, source_for(server, i), &deadline)
        .await
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::TimedOut {
                Error::TimedOut(format!("cannot connect to {target}: {source}"))
            } else {
                Error::Connect {
                    endpoint: target.to_string(),
                    source,
                }
            }
        })?;
    let stream = match &dialer.tls {
        Some(tls) => {
            tls.connect_within(&target.host_name(), stream, deadline)
                .await?
        }
        None => tls::Conn::Plain(stream),
    };
    Ok(match websocket {
        None => Either::Left(stream),
        Some(path) => {
            let url = dialer.websocket_url(path);
            Either::Right(ws::Lines::connect(stream, &url, dialer.wait).await?)
        }
    })
}

/// Reads and drops what the server sends until it closes (`true`) or `stop` (`false`).
async fn drain(mut stream: impl AsyncRead + Unpin, stop: CancellationToken) -> bool {
    let mut buf = [0u8; 512];
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => if !matches!(read, Ok(n) if n > 0) { return true },
            () = stop.cancelled() => return false,
        }
    }
}

/// Why opening stopped, in words.
fn explain(err: &Error, fd_limit: u64) -> String {
    let os_error = match err {
        Error::Connect { source, .. } => source.raw_os_error(),
        _ => None,
    };
    match os_error {
        Some(libc::EMFILE) | Some(libc::ENFILE) => {
            format!("the open-file limit (ulimit -n = {fd_limit})")
        }
        Some(libc::EADDRNOTAVAIL) => "no free ephemeral ports".into(),
        _ => err.to_string(),
    }
}

/// Runs the hold benchmark: opens up to `conns` connections as `dialer` says (each given its
/// `-w` to connect, make its TLS handshake and upgrade), holds them `hold` long, reads `pid`'s
/// memory, then closes them all. The interrupt ends the opening or the holding early, and the
/// report says so.
///
/// # Errors
/// The target is not a TCP address or does not resolve; the first connection fails.
pub async fn run(
    dialer: &Dialer,
    websocket: Option<&str>,
    conns: usize,
    pid: Option<u32>,
    hold: Duration,
    interrupt: &Interrupt,
) -> Result<Report> {
    let target = &dialer.target;
    if target.unix_path().is_some() {
        return Err(Error::Usage("bench hold takes a TCP address".into()));
    }
    let server = target.resolve(dialer.family).await?[0];
    let fd_limit = raise_fd_limit();
    let mut status_file =
        pid.and_then(|pid| std::fs::File::open(format!("/proc/{pid}/status")).ok());
    let before = status_file.as_mut().and_then(rss_bytes);
    let bar = progress(conns as u64, "hold");
    let stop = CancellationToken::new();
    let mut readers = Vec::with_capacity(conns);
    let mut stopped_by = None;
    let mut errors = 0;
    let started = tokio::time::Instant::now();
    for i in 0..conns {
        let opened = tokio::select! {
            opened = open_held(dialer, server, websocket, i) => opened,
            () = interrupt.wait() => break,
        };
        match opened {
            Ok(stream) => {
                readers.push(tokio::spawn(drain(stream, stop.clone())));
                bar.inc(1);
            }
            // Not even one: nothing to hold, and nothing to measure.
            Err(err) if i == 0 => {
                bar.finish_and_clear();
                return Err(err);
            }
            Err(err) => {
                errors += 1;
                stopped_by = Some(explain(&err, fd_limit));
                break;
            }
        }
    }
    // Let the server settle (greetings sent, buffers trimmed) before reading its memory.
    tokio::select! {
        () = tokio::time::sleep(hold) => {}
        () = interrupt.wait() => {}
    }
    // A signal from here on cuts nothing short: what was held is counted and measured.
    let interrupted = interrupt.is_interrupted();
    let dropped = readers.iter().filter(|r| r.is_finished()).count();
    let held = readers.len() - dropped;
    if dropped > 0 && stopped_by.is_none() {
        stopped_by = Some(format!("the server closed {dropped} connections"));
    }
    let after = status_file.as_mut().and_then(rss_bytes);
    bar.finish_and_clear();
    stop.cancel();
    for reader in readers {
        let _ = reader.await;
    }
    let bytes_per_conn = match (before, after) {
        (Some(b), Some(a)) if held > 0 => Some(a.saturating_sub(b) as f64 / held as f64),
        _ => None,
    };
    Ok(Report {
        mode: "hold",
        target: target.to_string(),
        duration_s: started.elapsed().as_secs_f64(),
        interrupted,
        held: Some(held),
        wanted: Some(conns),
        stopped_by,
        rss_bytes: after,
        bytes_per_conn,
        errors: errors + dropped as u64,
        ..Report::default()
    })
}
