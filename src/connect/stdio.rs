//! Standard input and output for the stream pump, each served by a thread of its own.
//!
//! Neither can wait in the runtime: a read from a terminal, or a write to a pipe whose reader is
//! slow, blocks. tokio's `stdin()` and `stdout()` hand every read and every write to a pooled
//! thread and wait for it to come back: for a gigabyte piped through `connect`, tens of
//! thousands of round trips to a thread, five context switches each, and a third as fast as
//! ncat and socat. Here one thread reads stdin ahead of the sender and one writes what the
//! receiver hands it, each a few chunks ahead at most; the runtime waits for them only when it
//! is ahead of them.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::thread::JoinHandle;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::{mpsc, oneshot};

use crate::codec::frame::BATCH_READ;
use crate::transport::deadline::IdleClock;

/// Chunks waiting between a thread and the runtime's side: enough for the thread to keep going
/// while the runtime catches up, few enough that little is in flight (with the chunk each side
/// has in hand, at most six of 64 KiB each way).
const AHEAD: usize = 4;

/// The stdout thread started last: the next waits for it to finish before writing. A session
/// cut short (`connect -l -k -i`) leaves its thread writing what it had received, and the next
/// session's output must come after it, not between its chunks.
static LAST_STDOUT: Mutex<Option<JoinHandle<()>>> = Mutex::new(None);

/// Standard input, read by a thread of its own, a few chunks ([`AHEAD`]) before they are asked
/// for. What has been read is never lost: it waits here for the next reader (`connect -l -k`
/// hands the next peer what the last one could not take).
pub struct StdinThread {
    chunks: mpsc::Receiver<io::Result<Bytes>>,
    /// What is left of the last chunk received.
    chunk: Bytes,
    is_done: bool,
}

impl StdinThread {
    /// Starts the thread. It ends at stdin's end or error, or once this is dropped and it has
    /// read once more (a thread waiting on a terminal ends with the process).
    pub fn spawn() -> Self {
        let (sender, chunks) = mpsc::channel(AHEAD);
        let read = move || {
            // Locked for each read only: stdin is the process's, this thread only borrows it.
            let stdin = io::stdin();
            let mut buf = vec![0; BATCH_READ];
            loop {
                let chunk = match stdin.lock().read(&mut buf) {
                    Ok(0) => return,
                    Ok(len) => Ok(Bytes::copy_from_slice(&buf[..len])),
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(err) => Err(err),
                };
                let is_err = chunk.is_err();
                if sender.blocking_send(chunk).is_err() || is_err {
                    return;
                }
            }
        };
        let thread = std::thread::Builder::new().name("stdin".into());
        if let Err(err) = thread.spawn(read) {
            // No thread, no input: say so at the first read.
            let (sender, chunks) = mpsc::channel(1);
            let _ = sender.try_send(Err(err));
            return Self::from(chunks);
        }
        Self::from(chunks)
    }

    fn from(chunks: mpsc::Receiver<io::Result<Bytes>>) -> Self {
        Self {
            chunks,
            chunk: Bytes::new(),
            is_done: false,
        }
    }
}

impl AsyncRead for StdinThread {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.chunk.is_empty() && !this.is_done {
            match ready!(this.chunks.poll_recv(cx)) {
                Some(Ok(chunk)) => this.chunk = chunk,
                Some(Err(err)) => {
                    this.is_done = true;
                    return Poll::Ready(Err(err));
                }
                None => this.is_done = true,
            }
        }
        let len = this.chunk.len().min(buf.remaining());
        buf.put_slice(&this.chunk[..len]);
        this.chunk.advance(len);
        Poll::Ready(Ok(()))
    }
}

/// Standard output, written by a thread of its own, a few chunks ([`AHEAD`]) behind.
pub struct StdoutThread {
    chunks: Option<mpsc::Sender<Vec<u8>>>,
    /// How the thread ended: every chunk written, or the first error. Taken when heard.
    ended: Option<oneshot::Receiver<io::Result<()>>>,
}

impl StdoutThread {
    /// Starts the thread; it ends at [`finish`](Self::finish), or at its first error. Each
    /// chunk written touches `clock`: output still going out is not idleness, however slowly
    /// stdout's reader takes it.
    pub fn spawn(clock: IdleClock) -> io::Result<Self> {
        let (sender, mut chunks) = mpsc::channel::<Vec<u8>>(AHEAD);
        let (report, ended) = oneshot::channel();
        let mut last = LAST_STDOUT.lock().unwrap_or_else(PoisonError::into_inner);
        let before = last.take();
        let write = move || {
            if let Some(before) = before {
                let _ = before.join();
            }
            let stdout = io::stdout();
            let mut result = Ok(());
            while let Some(chunk) = chunks.blocking_recv() {
                let mut stdout = stdout.lock();
                result = stdout.write_all(&chunk).and_then(|()| stdout.flush());
                if result.is_err() {
                    break;
                }
                clock.touch();
            }
            let _ = report.send(result);
        };
        let thread = std::thread::Builder::new()
            .name("stdout".into())
            .spawn(write)?;
        *last = Some(thread);
        Ok(Self {
            chunks: Some(sender),
            ended: Some(ended),
        })
    }

    /// Hands `chunk` to the thread, waiting while it is [`AHEAD`] chunks behind. An error is
    /// the thread's failure to write an earlier chunk.
    pub async fn write(&mut self, chunk: Vec<u8>) -> io::Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        let sender = self.chunks.as_ref().expect("written to after finish");
        if sender.send(chunk).await.is_ok() {
            return Ok(());
        }
        // The thread has stopped, at an error.
        self.chunks = None;
        self.ended().await
    }

    /// Waits until everything handed over is written.
    pub async fn finish(mut self) -> io::Result<()> {
        self.chunks = None;
        self.ended().await
    }

    /// Resolves when a write has failed, with its error: the thread stops at the first, and
    /// what the receiver goes on handing over goes nowhere. Cancel-safe.
    pub async fn failed(&mut self) -> io::Error {
        match self.ended().await {
            Err(err) => err,
            Ok(()) => io::Error::other("the stdout thread ended early"),
        }
    }

    async fn ended(&mut self) -> io::Result<()> {
        let Some(ended) = self.ended.as_mut() else {
            return std::future::pending().await;
        };
        let result = ended
            .await
            .unwrap_or_else(|_| Err(io::Error::other("the stdout thread ended early")));
        self.ended = None;
        result
    }
}
