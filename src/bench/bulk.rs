//! Bulk: a stream of `size`-byte chunks, as fast as the connection takes them, while whatever
//! comes back is read and counted. Against a sink it measures one way; against an echo server
//! (`--both`) both ways at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::{Load, Report, connect_all, tick_until, timed_progress};
use crate::error::Result;

/// Read buffer of the receiving side.
const READ_BUF: usize = 256 * 1024;

/// Runs the bulk benchmark.
///
/// # Errors
/// When not even one connection could be made.
pub async fn run(load: &Load, is_both: bool) -> Result<Report> {
    let (conns, size) = (load.conns, load.size);
    let (streams, mut errors) = connect_all(&load.dialer, conns, &load.interrupt).await?;
    let window = load.window();
    let cpu = super::measure_cpu(window.clone(), load.server);
    let ticker = tick_until(timed_progress("bulk"), Instant::now(), &window);
    let sent = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    // One chunk for every connection: 1,000 connections of 64 MiB chunks are not 64 GB.
    let chunk: Arc<[u8]> = vec![b'x'; size.max(1)].into();
    // Each connection's writer and reader: a connection that fails both ways is one error.
    let mut tasks = Vec::new();
    for stream in streams {
        let (mut reader, mut writer) = tokio::io::split(stream);
        let (sent, chunk, sending) = (sent.clone(), chunk.clone(), window.clone());
        let interrupted = window.interrupt.token();
        let writing = tokio::spawn(async move {
            let window = sending;
            // A server that stops reading (an echo whose own writes are blocked) must not hold
            // the run past its end: every write races the clock.
            let until_end = tokio::time::sleep_until(window.end);
            tokio::pin!(until_end);
            // One waiter for the whole loop, not one registered and removed per chunk.
            let interrupted = interrupted.cancelled();
            tokio::pin!(interrupted);
            loop {
                tokio::select! {
                    written = writer.write_all(&chunk) => {
                        if let Err(err) = written {
                            tracing::info!("a connection failed sending: {err}");
                            return true;
                        }
                        if window.counts(Instant::now()) {
                            sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                        }
                    }
                    () = &mut until_end => break,
                    () = &mut interrupted => break,
                }
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), writer.shutdown()).await;
            false
        });
        let (received, receiving) = (received.clone(), window.clone());
        let interrupted = window.interrupt.token();
        let reading = tokio::spawn(async move {
            let window = receiving;
            let mut buf = vec![0u8; READ_BUF];
            // One timer and one waiter for the whole loop, not one of each per read.
            let until_end = tokio::time::sleep_until(window.end);
            tokio::pin!(until_end);
            let interrupted = interrupted.cancelled();
            tokio::pin!(interrupted);
            loop {
                let read = tokio::select! {
                    read = reader.read(&mut buf) => read,
                    () = &mut until_end => return false,
                    () = &mut interrupted => return false,
                };
                match read {
                    Ok(0) => return false,
                    Ok(n) => {
                        if window.counts(Instant::now()) {
                            received.fetch_add(n as u64, Ordering::Relaxed);
                        }
                    }
                    Err(err) => {
                        tracing::info!("a connection failed receiving: {err}");
                        return true;
                    }
                }
            }
        });
        tasks.push((writing, reading));
    }
    for (writing, reading) in tasks {
        let (wrote, read) = (writing.await, reading.await);
        if !matches!((wrote, read), (Ok(false), Ok(false))) {
            errors += 1;
        }
    }
    let _ = ticker.await;
    let secs = window.seconds();
    let mb_s = |bytes: &AtomicU64| super::report::rate(bytes.load(Ordering::Relaxed), secs) / 1e6;
    let nothing_back = received.load(Ordering::Relaxed) == 0;
    if is_both && nothing_back && !window.cut_short() {
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
        interrupted: window.cut_short(),
        tx_mb_s: Some(mb_s(&sent)),
        rx_mb_s: (is_both || !nothing_back).then(|| mb_s(&received)),
        errors,
        ..Report::default()
    }
    .with_cpu(cpu))
}
