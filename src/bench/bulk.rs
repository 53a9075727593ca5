//! Bulk: a stream of `size`-byte chunks, as fast as the connection takes them, while whatever
//! comes back is read and counted. Against a sink it measures one way; against an echo server
//! (`--both`) both ways at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::{Load, Report, Window, connect_all, progress, tick_until};
use crate::error::Result;

/// Read buffer of the receiving side.
const READ_BUF: usize = 256 * 1024;

/// Runs the bulk benchmark.
///
/// # Errors
/// When not even one connection could be made.
pub async fn run(load: &Load, is_both: bool) -> Result<Report> {
    let (conns, size) = (load.conns, load.size);
    let (streams, mut errors) = connect_all(&load.dialer, conns).await?;
    let window = Window::new(load.warmup, load.duration);
    let cpu = super::measure_cpu(window, load.server);
    let ticker = tick_until(progress(0, "bulk"), Instant::now(), window.end);
    let sent = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for stream in streams {
        let (mut reader, mut writer) = tokio::io::split(stream);
        let sent = sent.clone();
        tasks.push(tokio::spawn(async move {
            let chunk = vec![b'x'; size.max(1)];
            // A server that stops reading (an echo whose own writes are blocked) must not hold
            // the run past its end: every write races the clock.
            let until_end = tokio::time::sleep_until(window.end);
            tokio::pin!(until_end);
            loop {
                tokio::select! {
                    written = writer.write_all(&chunk) => {
                        if written.is_err() {
                            return true;
                        }
                        if window.counts(Instant::now()) {
                            sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                        }
                    }
                    () = &mut until_end => break,
                }
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), writer.shutdown()).await;
            false
        }));
        let received = received.clone();
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; READ_BUF];
            loop {
                let read = tokio::select! {
                    read = reader.read(&mut buf) => read,
                    () = tokio::time::sleep_until(window.end) => return false,
                };
                match read {
                    Ok(0) => return false,
                    Ok(n) => {
                        if window.counts(Instant::now()) {
                            received.fetch_add(n as u64, Ordering::Relaxed);
                        }
                    }
                    Err(_) => return true,
                }
            }
        }));
    }
    for task in tasks {
        if !matches!(task.await, Ok(false)) {
            errors += 1;
        }
    }
    let _ = ticker.await;
    let secs = window.seconds();
    let mb_s = |bytes: &AtomicU64| bytes.load(Ordering::Relaxed) as f64 / secs / 1e6;
    let nothing_back = received.load(Ordering::Relaxed) == 0;
    if is_both && nothing_back {
        tracing::warn!("--both: nothing came back; is the target an echo server?");
        errors += 1;
    }
    let cpu = cpu.await.unwrap_or_default();
    Ok(Report {
        mode: "bulk",
        target: load.dialer.target.to_string(),
        conns: Some(conns),
        size: Some(size),
        duration_s: secs,
        tx_mb_s: Some(mb_s(&sent)),
        rx_mb_s: (is_both || !nothing_back).then(|| mb_s(&received)),
        errors,
        ..Report::default()
    }
    .with_cpu(cpu))
}
