//! Time limits on connections.
//!
//! - [`WriteDeadline`]: a stream whose writes give up when the peer stops reading.
//! - [`Deadline`]: one point in time a whole task (a client's name resolution, connect and TLS
//!   handshake under `-w`) must be done by.
//! - [`IdleClock`]: when a connection last carried anything, for closing it once it has been
//!   idle too long (`echo --idle-timeout`, `connect --idle-timeout`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The moment a task must be done by, or none; with the limit it came from and the flag that
/// set it, for error messages ("no answer within 2s (-w)").
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Option<Instant>,
    limit: Duration,
    flag: &'static str,
}

impl Deadline {
    /// `limit` from now, set by `flag`; a zero `limit` is no deadline, and neither is one too
    /// far off for the clock to hold (`-w 1e19`).
    pub fn after(limit: Duration, flag: &'static str) -> Self {
        Self {
            at: (!limit.is_zero())
                .then(|| Instant::now().checked_add(limit))
                .flatten(),
            limit,
            flag,
        }
    }

    /// No deadline: wait as long as it takes.
    pub fn none() -> Self {
        Self::after(Duration::ZERO, "")
    }

    /// Whether there is a deadline at all.
    pub fn is_set(&self) -> bool {
        self.at.is_some()
    }

    /// The time left (zero once passed); `None` without a deadline.
    pub fn remaining(&self) -> Option<Duration> {
        self.at
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// An equal share of the time left for each of `parts` tries still to come; `None` without
    /// a deadline.
    pub fn share(&self, parts: usize) -> Option<Duration> {
        let parts = u32::try_from(parts.max(1)).unwrap_or(u32::MAX);
        self.remaining().map(|left| left / parts)
    }

    /// Runs `task` until it ends or the deadline passes (`None`).
    pub async fn within<F: Future>(&self, task: F) -> Option<F::Output> {
        match self.at {
            Some(at) => tokio::time::timeout_at(at, task).await.ok(),
            None => Some(task.await),
        }
    }

    /// The limit as an error message gives it: `2s (-w)`.
    pub fn describe(&self) -> String {
        if self.flag.is_empty() {
            format!("{:?}", self.limit)
        } else {
            format!("{:?} ({})", self.limit, self.flag)
        }
    }
}

/// When a connection last carried anything, shared by whoever reads and writes it: a clone
/// [`touch`](IdleClock::touch)ed by one direction keeps the other from timing out too.
/// Touching costs one atomic store, with no timer to reset; [`expired`](IdleClock::expired)
/// sleeps until the limit could have passed and looks again.
#[derive(Debug, Clone)]
pub struct IdleClock {
    limit: Duration,
    start: Instant,
    /// Milliseconds from `start` to the last touch.
    last: Arc<AtomicU64>,
}

impl IdleClock {
    /// A clock that runs out `limit` after the last touch (zero: never), started now.
    pub fn new(limit: Duration) -> Self {
        Self {
            limit,
            start: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The limit it was made with.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// Whether it can run out at all.
    pub fn is_on(&self) -> bool {
        !self.limit.is_zero()
    }

    /// Notes activity now.
    pub fn touch(&self) {
        if self.is_on() {
            let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.last.store(now, Ordering::Relaxed);
        }
    }

    /// Completes once nothing has touched the clock for its limit; never when it is off.
    /// Cancel-safe.
    pub async fn expired(&self) {
        if !self.is_on() {
            return std::future::pending().await;
        }
        loop {
            let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
            // A limit too far off for the clock to hold never runs out.
            let end = last
                .checked_add(self.limit)
                .and_then(|after| self.start.checked_add(after));
            let Some(end) = end else {
                return std::future::pending().await;
            };
            if Instant::now() >= end {
                return;
            }
            tokio::time::sleep_until(end).await;
        }
    }
}

/// A stream whose reads and writes that move bytes touch an [`IdleClock`].
pub struct Idle<S> {
    inner: S,
    clock: IdleClock,
}

impl<S> Idle<S> {
    /// `stream`, touching `clock` on every read and write that moves bytes.
    pub fn new(stream: S, clock: IdleClock) -> Self {
        Self {
            inner: stream,
            clock,
        }
    }

    /// Passes a write's `poll` through, touching the clock if it wrote anything.
    fn touched_by(&self, poll: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.touch();
        }
        poll
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Idle<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.clock.touch();
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Idle<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.touched_by(poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.touched_by(poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Wraps a stream so that a write (or flush, or shutdown) that makes no progress for `limit`
/// fails with `TimedOut`. A client that stops reading then cannot hold its connection, and its
/// place under `--max-conns`, for as long as it likes; one that reads slowly is never cut off,
/// since every bit of progress restarts the clock.
pub struct WriteDeadline<S> {
    inner: S,
    limit: Duration,
    timer: Pin<Box<Sleep>>,
    /// The timer runs: a write is waiting.
    is_armed: bool,
}

impl<S> WriteDeadline<S> {
    /// `stream`, whose writes may wait at most `limit` for progress (zero: forever).
    pub fn new(stream: S, limit: Duration) -> Self {
        Self {
            inner: stream,
            limit,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            is_armed: false,
        }
    }

    /// Passes `poll` through, starting the clock when it waits and failing it once the clock
    /// runs out.
    fn guard<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() || self.limit.is_zero() {
            self.is_armed = false;
            return poll;
        }
        if !self.is_armed {
            self.timer.as_mut().reset(Instant::now() + self.limit);
            self.is_armed = true;
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the peer read nothing for {:?}", self.limit),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.guard(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.guard(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.guard(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.guard(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_deadline_shares_what_is_left() {
        let deadline = Deadline::after(Duration::from_secs(9), "-w");
        assert_eq!(deadline.share(3), Some(Duration::from_secs(3)));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(deadline.share(2), Some(Duration::from_secs(2)));
        assert_eq!(deadline.describe(), "9s (-w)");
        assert_eq!(deadline.within(std::future::pending::<()>()).await, None);
        assert_eq!(Deadline::none().share(2), None);
        assert_eq!(Deadline::none().within(async { 7 }).await, Some(7));
    }

    #[tokio::test(start_paused = true)]
    async fn traffic_either_way_keeps_the_idle_clock_from_running_out() {
        let clock = IdleClock::new(Duration::from_secs(5));
        let (client, mut server) = tokio::io::duplex(64);
        let mut idle = Idle::new(client, clock.clone());
        let watch = tokio::spawn({
            let clock = clock.clone();
            async move {
                clock.expired().await;
                Instant::now()
            }
        });
        let start = Instant::now();
        tokio::time::sleep(Duration::from_secs(4)).await;
        idle.write_all(b"out").await.unwrap();
        tokio::time::sleep(Duration::from_secs(4)).await;
        server.write_all(b"in").await.unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(idle.read(&mut buf).await.unwrap(), 2);
        let ran_out = watch.await.unwrap();
        // The last traffic was at 8 s: the clock runs out at 13 s, not 5 s.
        assert!(
            ran_out - start >= Duration::from_secs(13),
            "{:?}",
            ran_out - start
        );
        assert!(
            ran_out - start < Duration::from_secs(14),
            "{:?}",
            ran_out - start
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_clock_that_is_off_never_runs_out() {
        let clock = IdleClock::new(Duration::ZERO);
        let got = tokio::time::timeout(Duration::from_secs(86_400), clock.expired()).await;
        assert!(got.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn limits_beyond_the_clock_are_no_limit_not_a_panic() {
        let huge = Duration::MAX;
        let clock = IdleClock::new(huge);
        clock.touch();
        let got = tokio::time::timeout(Duration::from_secs(86_400), clock.expired()).await;
        assert!(got.is_err());
        let deadline = Deadline::after(huge, "-w");
        assert!(!deadline.is_set());
        assert_eq!(deadline.within(async { 1 }).await, Some(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_nobody_reads_times_out() {
        let (client, _server) = tokio::io::duplex(16);
        let mut guarded = WriteDeadline::new(client, Duration::from_secs(5));
        let err = guarded.write_all(&[0u8; 64]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_is_not_cut_off() {
        let (client, mut server) = tokio::io::duplex(16);
        let mut guarded = WriteDeadline::new(client, Duration::from_secs(5));
        let reader = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 8];
            let mut total = 0;
            while total < 64 {
                tokio::time::sleep(Duration::from_secs(3)).await;
                total += server.read(&mut buf).await.unwrap();
            }
        });
        guarded.write_all(&[0u8; 64]).await.unwrap();
        reader.await.unwrap();
    }
}
