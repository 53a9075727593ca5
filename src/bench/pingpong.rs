//! Ping-pong: each connection sends `size` bytes and waits for `size` bytes back, again and
//! again. One connection measures latency; many measure how well a server keeps up.
//!
//! Any server that answers a message with the same bytes works: echo, upper-case (the message is
//! lower-case letters, and the reply is compared without case). A reply that differs ends its
//! connection as an error: a server that sends more bytes than it got would otherwise have its
//! surplus read as the start of the next reply, and every round trip would count twice as fast.

use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use tokio::time::Instant;

use super::report::slowest_share;
use super::{
    Counted, Latencies, Load, Recorder, Report, Stream, Window, connect_all, tick_until,
    timed_progress,
};
use crate::error::Result;

/// Runs the ping-pong benchmark.
///
/// # Errors
/// When not even one connection could be made.
pub async fn run(load: &Load) -> Result<Report> {
    let (conns, size) = (load.conns, load.size);
    let (streams, mut errors) = connect_all(&load.dialer, conns, &load.interrupt).await?;
    // Made before the clock starts, once for every connection: a big one takes a while.
    let message: Arc<[u8]> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    let window = load.window();
    let cpu = super::measure_cpu(window.clone(), load.server);
    let ticker = tick_until(timed_progress("pingpong"), Instant::now(), &window);
    let latencies = Latencies::default();
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|stream| {
            let message = message.clone();
            tokio::spawn(ping(stream, message, window.clone(), latencies.recorder()))
        })
        .collect();
    // Each connection's round trips: a server can reach a high total by serving a few
    // connections while the others wait, which the total alone would hide.
    let mut counts = Vec::with_capacity(conns);
    // Open until the CPU is counted: a server that serves each connection from a child
    // process (ncat -e, socat fork) loses the child's time from /proc when it closes.
    let mut open = Vec::with_capacity(conns);
    for task in tasks {
        match task.await {
            Ok((count, failed, stream)) => {
                counts.push(count);
                errors += u64::from(failed);
                open.push(stream);
            }
            Err(_) => errors += 1,
        }
    }
    let cpu = cpu.await.unwrap_or_default();
    drop(open);
    let _ = ticker.await;
    let ops = counts.iter().sum();
    Ok(Report {
        slowest_conn_share: slowest_share(&counts),
        ..load.report(
            "pingpong",
            &window,
            Counted::new(ops, errors, latencies, cpu),
        )
    })
}

/// How long past the end of the measurement a round trip may still take before its
/// connection is counted as failed: a server that never answers must not hang the run.
const LATE_REPLY: Duration = Duration::from_secs(2);

/// Messages up to this size are written whole before their reply is read: the socket buffers
/// on both sides hold them. Bigger ones are written while the reply is read, or an echo server
/// would block writing a reply nobody reads yet while we block writing the rest.
const WRITE_THEN_READ: usize = 64 * 1024;

/// One connection's loop, until the end of the window or the interrupt: returns the round
/// trips counted, whether it failed, and the stream.
async fn ping<S: Stream>(
    mut stream: S,
    message: Arc<[u8]>,
    window: Window,
    mut latencies: Recorder,
) -> (u64, bool, S) {
    let mut count = 0;
    // Polled beside the whole loop, not once per round trip.
    let interrupted = window.interrupt.token();
    let failed = tokio::select! {
        biased;
        failed = rounds(&mut stream, &message, &window, &mut latencies, &mut count) => failed,
        () = interrupted.cancelled() => false,
    };
    (count, failed, stream)
}

/// Round trips on `stream`, each counted in `count`, until the end of the window: returns
/// whether the connection failed (and says why, at `-v`).
async fn rounds<S: Stream>(
    stream: &mut S,
    message: &[u8],
    window: &Window,
    latencies: &mut Recorder,
    count: &mut u64,
) -> bool {
    let mut reply = vec![0u8; message.len()];
    // One timer for the whole loop, not one per round trip (on the hot path).
    let deadline = tokio::time::sleep_until(window.end + LATE_REPLY);
    tokio::pin!(deadline);
    loop {
        let sent_at = Instant::now();
        if sent_at >= window.end {
            return false;
        }
        let result = tokio::select! {
            biased;
            result = round(stream, message, &mut reply) => result,
            () = &mut deadline => {
                tracing::info!(
                    "a connection failed: no reply within {}s of the end of the run",
                    LATE_REPLY.as_secs()
                );
                return true;
            }
        };
        // Taken first: the check below is no part of the round trip (at 64 KiB it is not free).
        let took = sent_at.elapsed();
        if let Err(err) = result {
            tracing::info!("a connection failed: {err}");
            return true;
        }
        // Byte for byte first (a memcmp); without case only when that differs.
        if reply != message && !reply.eq_ignore_ascii_case(message) {
            tracing::info!(
                "a connection failed: its reply differs from the message sent (more, fewer or other bytes)"
            );
            return true;
        }
        if window.counts(sent_at) {
            latencies.record(took.as_nanos() as u64);
            *count += 1;
        }
    }
}

/// Sends `message` and reads the same number of bytes back into `reply`.
async fn round<S: Stream>(stream: &mut S, message: &[u8], reply: &mut [u8]) -> std::io::Result<()> {
    if message.len() <= WRITE_THEN_READ {
        stream.write_all(message).await?;
        stream.flush().await?;
        stream.read_exact(reply).await?;
        return Ok(());
    }
    let (mut reader, mut writer) = tokio::io::split(stream);
    tokio::try_join!(
        async {
            writer.write_all(message).await?;
            writer.flush().await
        },
        reader.read_exact(reply),
    )?;
    Ok(())
}
