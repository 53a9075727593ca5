//! Fan-out: R receivers and one sender in a chat server's room; the sender writes K lines, each
//! carrying its sequence number and send time, and every receiver records when each arrives.
//!
//! Works with any chat server that relays lines to the others (socktalk's `serve`,
//! `ncat --chat`, …): receivers look for the marker `TAG:SEQ:NANOS` anywhere in a line (`TAG`
//! is new each run). Before sending, the sender repeats a `TAG-ready` probe until every
//! receiver has seen one,
//! so nobody misses the start. Against `socktalk serve`, run the server with `--max-rate 0`, or
//! its flood limit paces the sender.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use futures_util::StreamExt;
use memchr::memmem;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::FramedRead;

use super::cpu::Stopwatch;
use super::{Dialer, Latencies, Latency, Report, clock_ns, progress};
use crate::codec::{FrameCodec, Framing};
use crate::error::{Error, Result};

/// Every run marks its lines with its own tag, so lines of an earlier run (a chat server
/// replays recent history on join) are not counted.
fn run_tag() -> String {
    format!(
        "fanout{:x}",
        u64::from(std::process::id()) ^ clock_ns() ^ now_nanos()
    )
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Longest line a receiver accepts from the server.
const MAX_LINE: usize = 1024 * 1024;

/// A receiver's read buffer, and what it grows by.
const RECEIVE_BUFFER: usize = 32 * 1024;

/// A receiver's read buffer, its pages touched before the run: 1,000 receivers faulting in
/// fresh pages during the burst was a sixth of the load generator's time, on the cores the
/// server needs.
fn receive_buffer() -> BytesMut {
    let mut buf = BytesMut::zeroed(RECEIVE_BUFFER);
    buf.clear();
    buf
}

/// Every `TAG:SEQ:NANOS;` in `lines` (`mark` finds `TAG:`), as `(SEQ, NANOS)`. The finder is
/// built once per receiver: building one per line was a third of the load generator's time.
fn marks<'a>(
    lines: &'a [u8],
    mark: &'a memmem::Finder<'_>,
) -> impl Iterator<Item = (u64, u64)> + 'a {
    let skip = mark.needle().len();
    mark.find_iter(lines).filter_map(move |at| {
        let after = &lines[at + skip..];
        let (seq, used) = digits(after)?;
        let rest = after[used..].strip_prefix(b":")?;
        let (sent, used) = digits(rest)?;
        // The closing ';' proves the mark arrived whole (a relay may cut a line in two).
        (rest.get(used) == Some(&b';')).then_some((seq, sent))
    })
}

/// A decimal number of up to 19 digits at the start of `bytes`, and how many bytes it took.
/// One pass: this runs twice for every line delivered.
fn digits(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    let mut used = 0;
    for &byte in bytes {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            break;
        }
        if used == 19 {
            return None;
        }
        value = value * 10 + u64::from(digit);
        used += 1;
    }
    (used > 0).then_some((value, used))
}

/// Runs the fan-out benchmark.
///
/// # Errors
/// A connection could not be made, or the receivers never saw the sender's probe.
pub async fn run(
    dialer: &Dialer,
    receivers: usize,
    lines: u64,
    timeout: Duration,
    server: Option<u32>,
) -> Result<Report> {
    super::hold::raise_fd_limit();
    let tag = run_tag();
    let mark: Arc<[u8]> = format!("{tag}:").into_bytes().into();
    let ready_mark: Arc<[u8]> = format!("{tag}-ready").into_bytes().into();
    let ready = Arc::new(AtomicUsize::new(0));
    let delivered = Arc::new(AtomicU64::new(0));
    let last_delivery = Arc::new(AtomicU64::new(0));
    let bar = progress(receivers as u64 * lines, "fanout");
    // At the deadline receivers stop waiting and report what they have.
    let stop = tokio_util::sync::CancellationToken::new();
    let latencies = Latencies::default();
    let mut tasks = Vec::with_capacity(receivers);
    for _ in 0..receivers {
        let stream = dialer.connect().await?;
        let (mark, ready_mark, stop) = (mark.clone(), ready_mark.clone(), stop.clone());
        let mut latencies = latencies.recorder();
        let (ready, delivered, last_delivery, bar) = (
            ready.clone(),
            delivered.clone(),
            last_delivery.clone(),
            bar.clone(),
        );
        tasks.push(tokio::spawn(async move {
            // The receivers share the machine with the server: each read's lines are scanned
            // in place, and the clock is read once per read (its lines all arrived together).
            let mut stream = stream;
            let (mark, ready_mark) = (
                memmem::Finder::new(&mark[..]),
                memmem::Finder::new(&ready_mark[..]),
            );
            let mut buf = receive_buffer();
            let mut is_ready = false;
            let mut got = 0u64;
            while got < lines {
                if buf.capacity() - buf.len() < RECEIVE_BUFFER / 4 {
                    buf.reserve(RECEIVE_BUFFER);
                }
                let read = tokio::select! {
                    read = stream.read_buf(&mut buf) => read,
                    () = stop.cancelled() => break,
                };
                match read {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let now = clock_ns();
                let before = got;
                // Whole lines only: a line still arriving waits for the next read. One search
                // over them all for the marks (a line holds one) costs far less than
                // splitting lines and searching each.
                let whole = memchr::memrchr(b'\n', &buf).map_or(0, |at| at + 1);
                for (_, sent) in marks(&buf[..whole], &mark) {
                    latencies.record(now.saturating_sub(sent));
                    got += 1;
                }
                if !is_ready && ready_mark.find(&buf[..whole]).is_some() {
                    is_ready = true;
                    ready.fetch_add(1, Ordering::Relaxed);
                }
                let _ = buf.split_to(whole);
                if buf.len() > MAX_LINE {
                    break;
                }
                if got > before {
                    delivered.fetch_add(got - before, Ordering::Relaxed);
                    last_delivery.fetch_max(now, Ordering::Relaxed);
                    bar.inc(got - before);
                }
            }
        }));
    }

    let mut sender = dialer.connect().await?;
    let slowed = Arc::new(AtomicU64::new(0));
    // The sender's own incoming lines (its echo, server notices) are read and dropped.
    sender_probe_ready(&mut sender, &tag, &ready, receivers, timeout).await?;
    let (sender_rx, sender_tx) = tokio::io::split(sender);
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

    let cpu = Stopwatch::start(server);
    let first_send = clock_ns();
    // The sender runs on a thread of its own: as one task among the receivers' it waited behind
    // every receiver woken by the server's last round before it could send again, so the
    // server got the lines in dribs and drabs and its rounds were paced by the load generator.
    // Each line is still its own write, as a chat client sends it.
    let handle = tokio::runtime::Handle::current();
    let sending =
        tokio::task::spawn_blocking(move || handle.block_on(send_lines(sender_tx, &tag, lines)));
    let mut sender_tx = sending
        .await
        .map_err(|err| Error::Io(std::io::Error::other(err)))??;
    let deadline = tokio::time::Instant::now() + timeout;
    let stopper = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            stop.cancel();
        })
    };
    let mut errors = 0;
    for task in tasks {
        if task.await.is_err() {
            errors += 1;
        }
    }
    let cpu = cpu.elapsed_ms();
    stopper.abort();
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
        target: dialer.target.to_string(),
        conns: Some(receivers),
        size: None,
        duration_s: secs,
        ops: Some(ops),
        ops_per_s: Some(if secs > 0.0 { ops as f64 / secs } else { 0.0 }),
        latency_us: Some(Latency::from_nanos(&latencies.histogram())),
        lost: Some((receivers as u64 * lines).saturating_sub(ops)),
        errors,
        ..Report::default()
    }
    .with_cpu(cpu))
}

/// Sends the run's lines, each carrying its sequence number and send time, one write each.
async fn send_lines<W: AsyncWrite + Unpin>(mut tx: W, tag: &str, lines: u64) -> Result<W> {
    let mut out = BytesMut::with_capacity(64);
    for seq in 0..lines {
        out.clear();
        out.extend_from_slice(format!("{tag}:{seq}:{};\n", clock_ns()).as_bytes());
        tx.write_all(&out).await?;
    }
    tx.flush().await?;
    Ok(tx)
}

/// Sends `fanout-ready` probes every 50 ms until every receiver has seen one.
async fn sender_probe_ready(
    sender: &mut super::Conn,
    tag: &str,
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
            .write_all(format!("{tag}-ready {round}\n").as_bytes())
            .await?;
        sender.flush().await?;
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
        let mark = memmem::Finder::new(b"fanoutab:");
        let found = |line: &[u8]| marks(line, &mark).next();
        assert_eq!(
            found(b"[#lobby] <guest1> fanoutab:7:123456;"),
            Some((7, 123456))
        );
        assert_eq!(found(b"<user5> fanoutab:0:99;\r"), Some((0, 99)));
        // Cut by a relay: the rest of the number is missing, so the mark does not count.
        assert_eq!(found(b"fanoutab:659:10000000<user5> 00659;"), None);
        assert_eq!(found(b"fanoutab:1:2"), None);
        assert_eq!(found(b"fanoutab-ready 3"), None);
        assert_eq!(found(b"fanoutcd:1:2"), None);
        assert_eq!(found(b"no mark"), None);
        let read = b"<a> fanoutab:1:5;\n<b> fanoutab:2:6;\n<c> fanoutab:3:7\n<c> 00;\n";
        assert_eq!(marks(read, &mark).collect::<Vec<_>>(), [(1, 5), (2, 6)]);
        assert_eq!(found(b"fanoutab:1:"), None);
        assert_eq!(found(b"fanoutab:99999999999999999999:1"), None);
    }
}
