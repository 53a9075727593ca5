//! Connection set-up: each of C workers connects (with `--tls`, also completes the TLS
//! handshake) and closes at once, again and again. Measures new connections per second and
//! how long each took to be ready for data.
//!
//! Each connection is closed with a reset (`SO_LINGER` 0) rather than a FIN, so the benchmark's
//! own side does not pile up `TIME_WAIT` sockets and run out of ports in a long run.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::either::Either;

use super::{Conn, Counted, Latencies, Load, Report, tick_until, timed_progress};
use crate::error::Result;

/// Runs the handshake benchmark.
///
/// # Errors
/// When the first connection cannot be made.
pub async fn run(load: &Load) -> Result<Report> {
    // One connection first: a wrong address or an unverifiable server is an error, not a
    // stream of counted failures.
    let first = tokio::select! {
        first = load.dialer.connect() => first?,
        () = load.interrupt.wait() => return Err(load.interrupt.too_early()),
    };
    abort(first);
    let window = load.window();
    let cpu = super::measure_cpu(window.clone(), load.server);
    let ticker = tick_until(timed_progress("handshake"), Instant::now(), &window);
    let latencies = Latencies::default();
    let tasks: Vec<_> = (0..load.conns)
        .map(|_| {
            let (dialer, window) = (load.dialer.clone(), window.clone());
            let mut latencies = latencies.recorder();
            let interrupted = window.interrupt.token();
            tokio::spawn(async move {
                let (mut count, mut errors) = (0u64, 0u64);
                let connections = async {
                    loop {
                        let started = Instant::now();
                        if started >= window.end {
                            break;
                        }
                        match dialer.connect().await {
                            Ok(conn) => {
                                if window.counts(started) {
                                    latencies.record(started.elapsed().as_nanos() as u64);
                                    count += 1;
                                }
                                abort(conn);
                            }
                            Err(err) => {
                                if errors == 0 {
                                    tracing::info!("a connection failed: {err}");
                                }
                                errors += 1;
                                // A refusing server must not turn this into a busy loop.
                                tokio::time::sleep(Duration::from_millis(1)).await;
                            }
                        }
                    }
                };
                tokio::select! {
                    biased;
                    () = connections => {}
                    () = interrupted.cancelled() => {}
                }
                (count, errors)
            })
        })
        .collect();
    let (mut ops, mut errors) = (0, 0);
    for task in tasks {
        match task.await {
            Ok((count, failed)) => {
                ops += count;
                errors += failed;
            }
            Err(_) => errors += 1,
        }
    }
    let _ = ticker.await;
    let counted = Counted::new(ops, errors, latencies, cpu.await.unwrap_or_default());
    Ok(Report {
        size: None,
        ..load.report("handshake", &window, counted)
    })
}

/// Closes `conn` with a reset.
fn abort(conn: Conn) {
    if let Either::Left(tcp) = conn.get_ref() {
        let _ = socket2::SockRef::from(tcp).set_linger(Some(Duration::ZERO));
    }
}
