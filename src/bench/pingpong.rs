//! Ping-pong: each connection sends `size` bytes and waits for `size` bytes back, again and
//! again. One connection measures latency; many measure how well a server keeps up.
//!
//! Any server that answers a message with one of the same length works: echo, upper-case.

use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use tokio::time::Instant;

use super::report::slowest_share;
use super::{
    Counted, Latencies, Load, Recorder, Report, Stream, Window, connect_all, progress, tick_until,
};
use crate::error::Result;

/// Runs the ping-pong benchmark.
///
/// # Errors
/// When not even one connection could be made.
pub async fn run(load: &Load) -> Result<Report> {
    let (conns, size) = (load.conns, load.size);
    let (streams, mut errors) = connect_all(&load.dialer, conns).await?;
    // Made before the clock starts, once for every connection: a big one takes a while.
    let message: Arc<[u8]> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    let window = Window::new(load.warmup, load.duration);
    let cpu = super::measure_cpu(window, load.server);
    let ticker = tick_until(progress(0, "pingpong"), Instant::now(), window.end);
    let latencies = Latencies::default();
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|stream| {
            let message = message.clone();
            tokio::spawn(ping(stream, message, window, latencies.recorder()))
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

/// One connection's loop: returns the round trips counted, whether it failed, and the stream.
async fn ping<S: Stream>(
    mut stream: S,
    message: Arc<[u8]>,
    window: Window,
    mut latencies: Recorder,
) -> (u64, bool, S) {
    let mut reply = vec![0u8; message.len()];
    let mut count = 0;
    // One timer for the whole loop, not one per round trip (on the hot path).
    let deadline = tokio::time::sleep_until(window.end + LATE_REPLY);
    tokio::pin!(deadline);
    loop {
        let sent_at = Instant::now();
        if sent_at >= window.end {
            return (count, false, stream);
        }
        let result = tokio::select! {
            biased;
            result = round(&mut stream, &message, &mut reply) => result,
            () = &mut deadline => return (count, true, stream),
        };
        if result.is_err() {
            return (count, true, stream);
        }
        if window.counts(sent_at) {
            latencies.record(sent_at.elapsed().as_nanos() as u64);
            count += 1;
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
