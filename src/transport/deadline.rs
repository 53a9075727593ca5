//! [`WriteDeadline`]: a stream whose writes give up when the peer stops reading.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

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
    use tokio::io::AsyncWriteExt;

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
