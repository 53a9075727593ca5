//! Fan-out: R receivers and one sender in a chat server's room; the sender writes K lines, each
//! carrying its sequence number and send time, and every receiver records when each arrives.
//!
//! Works with any chat server that relays lines to the others (socktalk's `serve`,
//! `ncat --chat`, …): receivers look for the marker `TAG:SEQ:NANOS;` anywhere in a line (`TAG`
//! is new each run, `NANOS` is always 16 digits). Before sending, the sender repeats a
//! `TAG-ready` probe until every receiver has seen one, so nobody misses the start. Against
//! `socktalk serve`, run the server with `--max-rate 0`, or its flood limit paces the sender.
//!
//! With `--ws PATH` every connection is a WebSocket instead ([`super::ws::Lines`]): the same
//! run over a chat server's browser path, or against a WebSocket relay.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use futures_util::StreamExt;
use memchr::memmem;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::FramedRead;
use tokio_util::either::Either;

use super::cpu::Stopwatch;
use super::{Conn, Dialer, Interrupt, Latencies, Latency, Report, clock_ns, progress, ws};
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

/// A receiver's read buffer.
const RECEIVE_BUFFER: usize = 32 * 1024;

/// What a receive buffer is filled with before the run, to fault its pages in.
const PREFAULT: u8 = b'.';

/// How many digits a mark's send time has: zero-padded, so a receiver reads it in two 8-byte
/// steps. Nanoseconds since the load generator started; 16 digits last 115 days.
const TIME_DIGITS: usize = 16;

/// Every `TAG:SEQ:NANOS;` in `lines` (`mark` finds `TAG:`), as its `NANOS`. The finder is
/// built once per receiver: building one per line was a third of the load generator's time.
fn marks<'a>(lines: &'a [u8], mark: &'a memmem::Finder<'_>) -> impl Iterator<Item = u64> + 'a {
    let skip = mark.needle().len();
    mark.find_iter(lines).filter_map(move |at| {
        let after = &lines[at + skip..];
        let seq = after.iter().take_while(|b| b.is_ascii_digit()).count();
        let rest = after.get(seq..)?.strip_prefix(b":").filter(|_| seq > 0)?;
        // The closing ';' proves the mark arrived whole (a relay may cut a line in two).
        match rest.get(..=TIME_DIGITS)?.split_last()? {
            (&b';', time) => time_digits(time.try_into().ok()?),
            _ => None,
        }
    })
}

/// The 16-digit decimal number in `text`, eight digits at a time: with one multiply-add per
/// digit this was an eighth of the load generator's time, as it runs for every line delivered.
fn time_digits(text: &[u8; TIME_DIGITS]) -> Option<u64> {
    let (high, low) = text.split_at(8);
    Some(eight_digits(high.try_into().ok()?)? * 100_000_000 + eight_digits(low.try_into().ok()?)?)
}

/// Eight ASCII digits as their value, or `None` if any byte is not a digit. Each step joins
/// neighbouring groups: digits into pairs, pairs into fours, fours into the eight.
fn eight_digits(text: &[u8; 8]) -> Option<u64> {
    const ZEROS: u64 = u64::from_le_bytes([b'0'; 8]);
    const HIGH_NIBBLES: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    let word = u64::from_le_bytes(*text);
    // A digit's high nibble is 3, and stays 3 after adding 6 (anything above '9' carries).
    let digits = word & HIGH_NIBBLES == ZEROS & HIGH_NIBBLES
        && word.wrapping_add(0x0606_0606_0606_0606) & HIGH_NIBBLES == ZEROS & HIGH_NIBBLES;
    if !digits {
        return None;
    }
    let value = word - ZEROS;
    // The first digit is the lowest byte: each group's value is its left half * base + right.
    let value = (value.wrapping_mul(10) + (value >> 8)) & 0x00FF_00FF_00FF_00FF;
    let value = (value.wrapping_mul(100) + (value >> 16)) & 0x0000_FFFF_0000_FFFF;
    Some((value.wrapping_mul(10_000) + (value >> 32)) & 0xFFFF_FFFF)
}

/// A receiver's or the sender's connection: lines over a stream, or over a WebSocket.
type Link = Either<Conn, ws::Lines<Conn>>;

/// Connects, and upgrades to a WebSocket at `websocket` (a path) when given.
async fn connect(dialer: &Dialer, websocket: Option<&str>) -> Result<Link> {
    let stream = dialer.connect().await?;
    Ok(match websocket {
        None => Either::Left(stream),
        Some(path) => {
            let url = dialer.websocket_url(path);
            Either::Right(ws::Lines::connect(stream, &url, dialer.wait).await?)
        }
    })
}

/// Runs the fan-out benchmark; with `websocket` (a path, `--ws`), over WebSockets.
///
/// # Errors
/// A connection could not be made, or the receivers never saw the sender's probe;
/// [`Interrupt::too_early`] when interrupted before the first line was sent. Interrupted
/// later, the sender stops, the receivers stop waiting, and the report counts what was sent.
pub async fn run(
    dialer: &Dialer,
    websocket: Option<&str>,
    receivers: usize,
    lines: u64,
    timeout: Duration,
    server: Option<u32>,
    interrupt: &Interrupt,
) -> Result<Report> {
    super::hold::raise_fd_limit();
    let tag = run_tag();
    let mark: Arc<[u8]> = format!("{tag}:").into_bytes().into();
    let ready_mark: Arc<[u8]> = format!("{tag}-ready").into_bytes().into();
    let ready = Arc::new(AtomicUsize::new(0));
    // Receivers the server closed before the run, and the first line one of them got (a
    // refusal: --max-conns, --max-conns-per-ip), to say why the run cannot be made.
    let turned_away = Arc::new(TurnedAway::default());
    let delivered = Arc::new(AtomicU64::new(0));
    let last_delivery = Arc::new(AtomicU64::new(0));
    let bar = progress(receivers as u64 * lines, "fanout");
    // At the deadline receivers stop waiting and report what they have.
    let stop = tokio_util::sync::CancellationToken::new();
    let latencies = Latencies::default();
    let mut tasks = Vec::with_capacity(receivers);
    for _ in 0..receivers {
        let stream = tokio::select! {
            stream = connect(dialer, websocket) => stream?,
            () = interrupt.wait() => return Err(interrupt.too_early()),
        };
        let (mark, ready_mark, stop) = (mark.clone(), ready_mark.clone(), stop.clone());
        let mut latencies = latencies.recorder();
        let (ready, turned_away, delivered, last_delivery, bar) = (
            ready.clone(),
            turned_away.clone(),
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
            // One buffer for the whole run, its pages touched before the burst: faulting in
            // fresh pages for every receiver during the burst was a fifth of the load
            // generator's time, on the cores the server needs. (Not zeros: a zeroed buffer
            // comes from calloc, whose pages are touched only when first written.)
            let mut buf = vec![PREFAULT; RECEIVE_BUFFER];
            let mut filled = 0;
            let mut is_ready = false;
            // What the server said first, kept until the run begins: a refusal, if it closes.
            let mut said_first: Option<String> = None;
            let mut got = 0u64;
            while got < lines {
                if filled == buf.len() {
                    if buf.len() >= MAX_LINE {
                        break;
                    }
                    buf.resize((buf.len() * 2).min(MAX_LINE), PREFAULT);
                }
                let read = tokio::select! {
                    read = stream.read(&mut buf[filled..]) => read,
                    () = stop.cancelled() => break,
                };
                match read {
                    Ok(0) | Err(_) => {
                        if !is_ready {
                            let said = said_first.take();
                            turned_away.note(said.unwrap_or_else(|| first_line(&buf[..filled])));
                        }
                        break;
                    }
                    Ok(read) => filled += read,
                }
                let now = clock_ns();
                let before = got;
                // Whole lines only: a line still arriving waits for the next read. One search
                // over them all for the marks (a line holds one) costs far less than
                // splitting lines and searching each.
                let whole = memchr::memrchr(b'\n', &buf[..filled]).map_or(0, |at| at + 1);
                for sent in marks(&buf[..whole], &mark) {
                    latencies.record(now.saturating_sub(sent));
                    got += 1;
                }
                if !is_ready && said_first.is_none() && whole > 0 {
                    said_first = Some(first_line(&buf[..whole]));
                }
                if !is_ready && ready_mark.find(&buf[..whole]).is_some() {
                    is_ready = true;
                    ready.fetch_add(1, Ordering::Relaxed);
                }
                if whole > 0 {
                    buf.copy_within(whole..filled, 0);
                    filled -= whole;
                }
                if got > before {
                    delivered.fetch_add(got - before, Ordering::Relaxed);
                    last_delivery.fetch_max(now, Ordering::Relaxed);
                    bar.inc(got - before);
                }
            }
        }));
    }

    let mut sender = tokio::select! {
        sender = connect(dialer, websocket) => sender?,
        () = interrupt.wait() => return Err(interrupt.too_early()),
    };
    let slowed = Arc::new(AtomicU64::new(0));
    // The sender's own incoming lines (its echo, server notices) are read and dropped.
    let probe = sender_probe_ready(&mut sender, &tag, &ready, &turned_away, receivers, timeout);
    tokio::select! {
        probed = probe => probed?,
        () = interrupt.wait() => return Err(interrupt.too_early()),
    }
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
    let (stopped, sent) = (interrupt.clone(), Arc::new(AtomicU64::new(0)));
    let counted = sent.clone();
    let sending = tokio::task::spawn_blocking(move || {
        handle.block_on(send_lines(sender_tx, &tag, lines, &stopped, &counted))
    });
    let mut errors = 0;
    // A server that stops reading the sender blocks its writes: after --timeout without a line
    // taken, or at Ctrl-C, the run stops waiting for the sender (its thread is left behind).
    let mut sender_tx = tokio::select! {
        biased;
        joined = sending => Some(joined.map_err(|err| Error::Io(std::io::Error::other(err)))??),
        () = stalled(&sent, timeout) => {
            tracing::warn!(
                "the server took none of the sender's lines for {}s (--timeout); {} of {lines} were sent",
                timeout.as_secs_f64(),
                sent.load(Ordering::Relaxed)
            );
            errors += 1;
            None
        }
        () = async { interrupt.wait().await; tokio::time::sleep(SENDER_GRACE).await } => None,
    };
    let sent = sent.load(Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + timeout;
    let stopper = {
        let (stop, interrupt) = (stop.clone(), interrupt.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {}
                () = interrupt.wait() => {}
            }
            stop.cancel();
        })
    };
    for task in tasks {
        if task.await.is_err() {
            errors += 1;
        }
    }
    // Every receiver is done: an interrupt from now on (the wrap-up) cuts nothing short.
    let cut_short = interrupt
        .at()
        .is_some_and(|at| at < tokio::time::Instant::now());
    let cpu = cpu.elapsed_ms();
    stopper.abort();
    bar.finish_and_clear();
    if let Some(sender_tx) = sender_tx.as_mut() {
        let _ = sender_tx.shutdown().await;
    }
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
        interrupted: cut_short,
        ops: Some(ops),
        ops_per_s: Some(super::report::rate(ops, secs)),
        latency_us: Latency::of(ops, &latencies.histogram()),
        // Interrupted, what was not delivered yet may still have been on its way.
        lost: (!cut_short).then(|| (receivers as u64 * sent).saturating_sub(ops)),
        errors,
        ..Report::default()
    }
    .with_cpu(cpu))
}

/// How long, once interrupted, the run waits for a sender to notice before it reports.
const SENDER_GRACE: Duration = Duration::from_millis(200);

/// How often [`stalled`] looks at the sender's count.
const STALL_CHECK: Duration = Duration::from_millis(100);

/// Returns once `sent` has not moved for `timeout`: the server stopped reading the sender.
async fn stalled(sent: &AtomicU64, timeout: Duration) {
    let (mut last, mut since) = (sent.load(Ordering::Relaxed), tokio::time::Instant::now());
    loop {
        tokio::time::sleep(STALL_CHECK).await;
        let now = sent.load(Ordering::Relaxed);
        if now != last {
            (last, since) = (now, tokio::time::Instant::now());
        } else if since.elapsed() >= timeout {
            return;
        }
    }
}

/// Sends the run's lines, each carrying its sequence number and send time, one write each,
/// counting them in `sent`, until the interrupt: returns the writer.
async fn send_lines<W: AsyncWrite + Unpin>(
    mut tx: W,
    tag: &str,
    lines: u64,
    interrupt: &Interrupt,
    sent: &AtomicU64,
) -> Result<W> {
    let mut out = BytesMut::with_capacity(64);
    for seq in 0..lines {
        if interrupt.is_interrupted() {
            break;
        }
        out.clear();
        out.extend_from_slice(format!("{tag}:{seq}:{:016};\n", clock_ns()).as_bytes());
        tx.write_all(&out).await?;
        sent.store(seq + 1, Ordering::Relaxed);
    }
    tx.flush().await?;
    Ok(tx)
}

/// The first line of what a server sent, as text, to quote it.
fn first_line(bytes: &[u8]) -> String {
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    String::from_utf8_lossy(line).trim().to_string()
}

/// Receivers closed by the server before the run began.
#[derive(Default)]
struct TurnedAway {
    count: AtomicUsize,
    /// The first line the first of them got.
    reason: std::sync::Mutex<Option<String>>,
}

impl TurnedAway {
    /// Counts one more, keeping the first `line` it was told if none is kept yet.
    fn note(&self, line: String) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut reason = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if reason.is_none() && !line.is_empty() {
            *reason = Some(line);
        }
    }

    /// The error for a run that cannot be made, if any receiver was turned away.
    fn error(&self, receivers: usize) -> Option<Error> {
        let count = self.count.load(Ordering::Relaxed);
        if count == 0 {
            return None;
        }
        let reason = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        let said = reason
            .as_deref()
            .map_or("nothing".to_string(), |line| format!("'{line}'"));
        Some(Error::Io(std::io::Error::other(format!(
            "the server closed {count} of {receivers} receivers before the run began; it said {said}"
        ))))
    }
}

/// Sends `fanout-ready` probes every 50 ms until every receiver has seen one.
async fn sender_probe_ready(
    sender: &mut (impl AsyncRead + AsyncWrite + Unpin),
    tag: &str,
    ready: &AtomicUsize,
    turned_away: &TurnedAway,
    receivers: usize,
    timeout: Duration,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut round = 0u64;
    while ready.load(Ordering::Relaxed) < receivers {
        if let Some(err) = turned_away.error(receivers) {
            return Err(err);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "only {} of {receivers} receivers saw the sender's lines; is this a chat server relaying lines?",
                    ready.load(Ordering::Relaxed)
                ),
            )));
        }
        let probe = async {
            sender
                .write_all(format!("{tag}-ready {round}\n").as_bytes())
                .await?;
            sender.flush().await
        };
        if let Err(err) = probe.await {
            // What the server said before it closed, if it said anything.
            let mut said = [0u8; 512];
            let read = tokio::time::timeout(Duration::from_millis(200), sender.read(&mut said));
            let said = match read.await {
                Ok(Ok(len)) if len > 0 => {
                    let said = first_line(&said[..len]);
                    let hint = if said.starts_with("HTTP/") {
                        " (a web server: --ws speaks to its WebSocket)"
                    } else {
                        ""
                    };
                    format!("; it said '{said}'{hint}")
                }
                _ => String::new(),
            };
            return Err(Error::Io(std::io::Error::new(
                err.kind(),
                format!(
                    "the server closed the sender's connection before the run began: {}{said}",
                    err.kind()
                ),
            )));
        }
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
            found(b"[#lobby] <guest1> fanoutab:7:0000000000123456;"),
            Some(123_456)
        );
        assert_eq!(found(b"<user5> fanoutab:0:0000000000000099;\r"), Some(99));
        // Cut by a relay: the rest of the number is missing, so the mark does not count.
        assert_eq!(found(b"fanoutab:659:00000000<user5> 00659;"), None);
        assert_eq!(found(b"fanoutab:1:0000000000000002"), None);
        assert_eq!(found(b"fanoutab:1:000000000000002;"), None);
        assert_eq!(found(b"fanoutab:1:00000000000000002;"), None);
        assert_eq!(found(b"fanoutab::0000000000000002;"), None);
        assert_eq!(found(b"fanoutab-ready 3"), None);
        assert_eq!(found(b"fanoutcd:1:0000000000000002;"), None);
        assert_eq!(found(b"no mark"), None);
        let read = b"<a> fanoutab:1:0000000000000005;\n<b> fanoutab:2:0000000000000006;\n\
                     <c> fanoutab:3:00000000000\n<c> 00007;\n";
        assert_eq!(marks(read, &mark).collect::<Vec<_>>(), [5, 6]);
        assert_eq!(found(b"fanoutab:1:"), None);
    }

    #[test]
    fn send_times_read_back_exactly() {
        let mut value = 1u64;
        for _ in 0..2_000 {
            let text = format!("{value:016}");
            assert_eq!(
                time_digits(text.as_bytes().try_into().unwrap()),
                Some(value)
            );
            value = value
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1)
                % 10u64.pow(16);
        }
        assert_eq!(
            time_digits(b"9999999999999999"),
            Some(9_999_999_999_999_999)
        );
        assert_eq!(time_digits(b"0000000000000000"), Some(0));
        // Every position rejects every byte that is not a digit.
        for at in 0..TIME_DIGITS {
            for byte in (0..=255u8).filter(|b| !b.is_ascii_digit()) {
                let mut text = *b"1234567890123456";
                text[at] = byte;
                assert_eq!(time_digits(&text), None, "{:?}", text);
            }
        }
    }
}
