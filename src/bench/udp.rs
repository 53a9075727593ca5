//! UDP ping-pong: each socket sends a datagram and waits for the reply, counting a datagram as
//! lost when no reply comes within the timeout.
//!
//! The payload starts with a 16-digit upper-case hex sequence number, so replies are matched to
//! their datagram even from an upper-casing server, and late replies are told apart.

use std::io::ErrorKind;
use std::time::Duration;

use tokio::time::Instant;

use super::{Counted, Latencies, Load, Report, tick_until, timed_progress};
use crate::error::{Error, Result};
use crate::limits::{MAX_DATAGRAM, MAX_DATAGRAM_V6};
use crate::transport::udp;

/// Digits of the sequence number that starts every datagram.
const SEQ_DIGITS: usize = 16;

/// Runs the UDP benchmark.
///
/// # Errors
/// The target does not resolve or a socket cannot be bound.
pub async fn run(load: &Load, timeout: Duration) -> Result<Report> {
    let (target, conns, size) = (&load.dialer.target, load.conns, load.size);
    let peer = udp::resolve_peer(target, load.dialer.family).await?;
    let mut sockets = Vec::with_capacity(conns);
    for i in 0..conns {
        // The load generator opens sockets, it does not listen: a socket it cannot open is
        // named as such (it was `cannot listen on udp://0.0.0.0:0`), with the limit if that
        // is what stopped it.
        let socket = udp::connect(peer).await.map_err(|err| match err {
            Error::Bind { source, .. } => {
                let limit = if source.raw_os_error() == Some(libc::EMFILE) {
                    format!(
                        " (the open-file limit, ulimit -n = {})",
                        super::hold::raise_fd_limit()
                    )
                } else {
                    String::new()
                };
                Error::Io(std::io::Error::new(
                    source.kind(),
                    format!(
                        "cannot open UDP socket {} of {conns} (--conns): {}{limit}",
                        i + 1,
                        crate::error::lowercase_io(&source)
                    ),
                ))
            }
            other => other,
        })?;
        sockets.push(socket);
    }
    if !(SEQ_DIGITS..=MAX_DATAGRAM).contains(&size) {
        return Err(Error::Usage(format!(
            "bench udp --size must be {SEQ_DIGITS} to {MAX_DATAGRAM} bytes (a sequence number, in one datagram)"
        )));
    }
    let window = load.window();
    let cpu = super::measure_cpu(window.clone(), load.server);
    let ticker = tick_until(timed_progress("udp"), Instant::now(), &window);
    let latencies = Latencies::default();
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|socket| {
            let mut latencies = latencies.recorder();
            let window = window.clone();
            let interrupted = window.interrupt.token();
            tokio::spawn(async move {
                let mut payload = vec![b'.'; size];
                let mut buf = vec![0u8; MAX_DATAGRAM_V6];
                let (mut ops, mut lost, mut errors) = (0u64, 0u64, 0u64);
                let mut seq = 0u64;
                let mut has_answers = false;
                let datagrams = async {
                    loop {
                        let sent_at = Instant::now();
                        if sent_at >= window.end {
                            break;
                        }
                        seq += 1;
                        payload[..SEQ_DIGITS].copy_from_slice(format!("{seq:016X}").as_bytes());
                        if let Err(err) = socket.send(&payload).await {
                            // Nobody there (ICMP port unreachable) before any reply: say so, rather
                            // than spin through the run counting errors.
                            if err.kind() == ErrorKind::ConnectionRefused && !has_answers {
                                return Err(err);
                            }
                            if errors == 0 {
                                tracing::info!("a datagram could not be sent: {err}");
                            }
                            errors += 1;
                            continue;
                        }
                        let deadline = sent_at + timeout;
                        let answered = loop {
                            match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                                Err(_) => break false,
                                Ok(Err(err)) => {
                                    if err.kind() == ErrorKind::ConnectionRefused && !has_answers {
                                        return Err(err);
                                    }
                                    if errors == 0 {
                                        tracing::info!("a reply could not be received: {err}");
                                    }
                                    errors += 1;
                                    break false;
                                }
                                Ok(Ok(len))
                                    if buf[..len.min(SEQ_DIGITS)] == payload[..SEQ_DIGITS] =>
                                {
                                    has_answers = true;
                                    break true;
                                }
                                // A late reply to an earlier datagram.
                                Ok(Ok(_)) => continue,
                            }
                        };
                        if window.counts(sent_at) {
                            if answered {
                                latencies.record(sent_at.elapsed().as_nanos() as u64);
                                ops += 1;
                            } else {
                                lost += 1;
                            }
                        }
                    }
                    Ok(())
                };
                tokio::select! {
                    biased;
                    done = datagrams => done?,
                    () = interrupted.cancelled() => {}
                }
                Ok((ops, lost, errors))
            })
        })
        .collect();
    let (mut ops, mut lost, mut errors) = (0, 0, 0);
    let mut refused = None;
    for task in tasks {
        match task.await {
            Ok(Ok((o, l, e))) => {
                ops += o;
                lost += l;
                errors += e;
            }
            Ok(Err(err)) => refused = Some(err),
            Err(_) => errors += 1,
        }
    }
    if let Some(source) = refused.filter(|_| ops == 0) {
        ticker.abort();
        return Err(Error::Connect {
            endpoint: crate::endpoint::display_addr(crate::endpoint::Proto::Udp, peer),
            source,
        });
    }
    let _ = ticker.await;
    let counted = Counted::new(ops, errors, latencies, cpu.await.unwrap_or_default());
    Ok(Report {
        size: Some(size),
        lost: Some(lost),
        ..load.report("udp", &window, counted)
    })
}
