//! Fan-out: R receivers and one sender in a chat server's room; the sender writes K lines, each
//! carrying its sequence number and send time, and every receiver records when each arrives.
//!
//! Works with any chat server that relays lines to the others (socktalk's `serve`,
//! `ncat --chat`, …): receivers look for the marker `fanout:SEQ:NANOS` anywhere in a line.
//! Before sending, the sender repeats a `fanout-ready` probe until every receiver has seen one,
//! so nobody misses the start. Against `socktalk serve`, run the server with `--max-rate 0`, or
//! its flood limit paces the sender.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio_util::codec::FramedRead;

use super::{Latency, Report, clock_ns, connect, histogram, progress};
use crate::codec::{FrameCodec, Framing};
use crate::endpoint::{Endpoint, Family};
use crate::error::{Error, Result};

const MARK: &[u8] = b"fanout:";
const READY: &[u8] = b"fanout-ready";

/// Longest line a receiver accepts from the server.
const MAX_LINE: usize = 1024 * 1024;

/// Parses `fanout:SEQ:NANOS` out of a line.
fn parse_mark(line: &[u8]) -> Option<(u64, u64)> {
    let at = memchr::memmem::find(line, MARK)? + MARK.len();
    let rest = std::str::from_utf8(&line[at..]).ok()?;
    let mut parts = rest.split(|c: char| !c.is_ascii_digit());
    let seq = parts.next()?.parse().ok()?;
    let sent = parts.next()?.parse().ok()?;
    Some((seq, sent))
}

/// Runs the fan-out benchmark.
///
/// # Errors
/// A connection could not be made, or the receivers never saw the sender's probe.
pub async fn run(
    target: &Endpoint,
    family: Family,
    receivers: usize,
    lines: u64,
    timeout: Duration,
) -> Result<Report> {
    super::hold::raise_fd_limit();
    let ready = Arc::new(AtomicUsize::new(0));
    let delivered = Arc::new(AtomicU64::new(0));
    let last_delivery = Arc::new(AtomicU64::new(0));
    let bar = progress(receivers as u64 * lines, "fanout");
    let mut tasks = Vec::with_capacity(receivers);
    for _ in 0..receivers {
        let stream = connect(target, family).await?;
        let (ready, delivered, last_delivery, bar) = (
            ready.clone(),
            delivered.clone(),
            last_delivery.clone(),
            bar.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut frames = FramedRead::new(stream, FrameCodec::new(Framing::Line, MAX_LINE));
            let mut latencies = histogram();
            let mut is_ready = false;
            let mut got = 0u64;
            while got < lines {
                let Some(Ok(line)) = frames.next().await else {
                    break;
                };
                if let Some((_, sent)) = parse_mark(&line) {
                    let now = clock_ns();
                    let _ = latencies.record(now.saturating_sub(sent).max(1));
                    got += 1;
                    delivered.fetch_add(1, Ordering::Relaxed);
                    last_delivery.fetch_max(now, Ordering::Relaxed);
                    if got.is_multiple_of(256) {
                        bar.inc(256);
                    }
                } else if !is_ready && memchr::memmem::find(&line, READY).is_some() {
                    is_ready = true;
                    ready.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        }));
    }

    let mut sender = connect(target, family).await?;
    let slowed = Arc::new(AtomicU64::new(0));
    // The sender's own incoming lines (its echo, server notices) are read and dropped.
    sender_probe_ready(&mut sender, &ready, receivers, timeout).await?;
    let (sender_rx, mut sender_tx) = tokio::io::split(sender);
    let drain = {
        let slowed = slowed.clone();
        tokio::spawn(async move {
            let mut frames = FramedRead::new(sender_rx, FrameCodec::new(Framing::Line, MAX_LINE));
            while let Some(Ok(line)) = frames.next().await {
                if memchr::memmem::find(&line, b"slow down").is_some() {
                    slowed.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let first_send = clock_ns();
    let mut out = BytesMut::with_capacity(64);
    for seq in 0..lines {
        out.clear();
        out.extend_from_slice(format!("fanout:{seq}:{}\n", clock_ns()).as_bytes());
        sender_tx.write_all(&out).await?;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut all = histogram();
    let mut errors = 0;
    for task in tasks {
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(latencies)) => {
                all.add(&latencies).ok();
            }
            _ => errors += 1,
        }
    }
    bar.finish_and_clear();
    let _ = sender_tx.shutdown().await;
    drain.abort();
    if slowed.load(Ordering::Relaxed) > 0 {
        tracing::warn!(
            "the server slowed the sender down: run it with --max-rate 0 to measure fan-out"
        );
    }
    let ops = delivered.load(Ordering::Relaxed);
    let secs = (last_delivery
        .load(Ordering::Relaxed)
        .saturating_sub(first_send)) as f64
        / 1e9;
    Ok(Report {
        mode: "fanout",
        target: target.to_string(),
        conns: Some(receivers),
        size: None,
        duration_s: secs,
        ops: Some(ops),
        ops_per_s: Some(if secs > 0.0 { ops as f64 / secs } else { 0.0 }),
        latency_us: Some(Latency::from_nanos(&all)),
        lost: Some(receivers as u64 * lines - ops),
        errors,
        ..Report::default()
    })
}

/// Sends `fanout-ready` probes every 50 ms until every receiver has seen one.
async fn sender_probe_ready(
    sender: &mut super::Conn,
    ready: &AtomicUsize,
    receivers: usize,
    timeout: Duration,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut round = 0u64;
    while ready.load(Ordering::Relaxed) < receivers {
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "only {} of {receivers} receivers saw the sender's lines; is this a chat server relaying lines?",
                    ready.load(Ordering::Relaxed)
                ),
            )));
        }
        sender
            .write_all(format!("fanout-ready {round}\n").as_bytes())
            .await?;
        round += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_found_in_any_server_format() {
        assert_eq!(
            parse_mark(b"[#lobby] <guest1> fanout:7:123456"),
            Some((7, 123456))
        );
        assert_eq!(parse_mark(b"<user5> fanout:0:99\r"), Some((0, 99)));
        assert_eq!(parse_mark(b"fanout-ready 3"), None);
        assert_eq!(parse_mark(b"no mark"), None);
    }
}
