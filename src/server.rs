//! The accept loop every stream server shares: connection limit, back-off on accept errors,
//! graceful shutdown.
//!
//! Each accepted connection runs in its own task with its own child [`CancellationToken`]; the
//! loop stops accepting when `shutdown` is cancelled, then gives the tasks
//! [`DRAIN_TIMEOUT`](crate::limits::DRAIN_TIMEOUT) to finish before returning.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::limits::{ACCEPT_BACKOFF_MAX, ACCEPT_BACKOFF_MIN, DRAIN_TIMEOUT};
use crate::transport::StreamListener;

/// Serves `listener` until `shutdown` is cancelled, running `handle(stream, peer, shutdown)` in a
/// task per connection, at most `max_conns` at once.
///
/// A connection beyond `max_conns` is accepted and closed at once, so its client sees a clean
/// close instead of waiting in the backlog. Accept errors (such as running out of file
/// descriptors) are logged and retried with exponential back-off; they never end the server.
pub async fn run<L, H, F>(listener: L, max_conns: usize, shutdown: CancellationToken, handle: H)
where
    L: StreamListener,
    H: Fn(L::Stream, String, CancellationToken) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    run_limited(
        listener,
        Arc::new(Semaphore::new(max_conns)),
        shutdown,
        handle,
    )
    .await;
}

/// [`run`] with a connection limit shared with other listeners: a server listening on several
/// addresses serves at most `limit`'s permits in all.
pub async fn run_limited<L, H, F>(
    listener: L,
    limit: Arc<Semaphore>,
    shutdown: CancellationToken,
    handle: H,
) where
    L: StreamListener,
    H: Fn(L::Stream, String, CancellationToken) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let tracker = TaskTracker::new();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut refusals = Refusals::default();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => {
                backoff = ACCEPT_BACKOFF_MIN;
                pair
            }
            Err(err) => {
                tracing::warn!("accept failed: {err}; retrying in {backoff:?}");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => break,
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            drop(stream);
            refusals.note(&peer);
            continue;
        };
        tracing::info!(%peer, "connected");
        let task = handle(stream, peer.clone(), shutdown.child_token());
        tracker.spawn(async move {
            task.await;
            tracing::info!(%peer, "disconnected");
            drop(permit);
        });
    }
    tracker.close();
    drain(&tracker, DRAIN_TIMEOUT).await;
}

/// Logs connections refused at the limit: the first at once, then at most one summary line a
/// second, so a flood of connection attempts cannot flood the log too.
#[derive(Default)]
struct Refusals {
    /// When the last line was logged.
    logged_at: Option<std::time::Instant>,
    /// Refusals since then.
    unlogged: u64,
}

impl Refusals {
    fn note(&mut self, peer: &str) {
        self.unlogged += 1;
        let now = std::time::Instant::now();
        if self
            .logged_at
            .is_some_and(|at| now.duration_since(at) < Duration::from_secs(1))
        {
            return;
        }
        tracing::warn!(
            last = %peer,
            "refused {} connection(s): connection limit reached (--max-conns)",
            self.unlogged
        );
        self.logged_at = Some(now);
        self.unlogged = 0;
    }
}

/// Waits up to `timeout` for the tracked tasks to finish.
pub async fn drain(tracker: &TaskTracker, timeout: Duration) {
    if tokio::time::timeout(timeout, tracker.wait()).await.is_err() {
        tracing::warn!(
            "{} connections still open after {timeout:?}; closing them",
            tracker.len()
        );
    }
}

/// Prints the first line a server owes its user: the address it actually bound.
///
/// Tests and scripts read this line instead of guessing when the server is ready, so it is
/// written to stdout and flushed before the server accepts anyone.
pub fn announce(addr: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();
}
