//! The accept loop every stream server shares: access control and connection limits (with a
//! one-line reason for every refused client), TLS handshakes, back-off on accept errors,
//! graceful shutdown.
//!
//! Each accepted connection runs in its own task with its own child [`CancellationToken`]; the
//! loop stops accepting when `shutdown` is cancelled, then gives the tasks
//! [`DRAIN_TIMEOUT`](crate::limits::DRAIN_TIMEOUT) to finish before returning.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::access::{Admission, Gate, Refusal};
use crate::limits::{
    ACCEPT_BACKOFF_MAX, ACCEPT_BACKOFF_MIN, DRAIN_TIMEOUT, LOG_EVERY, REFUSAL_LINGER,
    REFUSALS_AT_ONCE,
};
use crate::transport::tls::{Acceptor, Conn};
use crate::transport::{Peek, Peer, Readiness, StreamListener};

/// How a listener lets connections in: who may ([`Gate`]), whether they speak TLS, and how a
/// refusal is worded on the wire.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Access rules and connection limits, shared by all of a server's listeners.
    pub gate: Arc<Gate>,
    /// TLS, when on: the handshake runs in the connection's own task.
    pub tls: Option<Acceptor>,
    /// A refused client is told why as a text line, or as an HTTP response.
    pub refusal: RefusalStyle,
}

impl Entry {
    /// Plain connections, at most `max_conns` at once, from anyone.
    pub fn plain(max_conns: usize) -> Self {
        Self {
            gate: Gate::with_max_conns(max_conns),
            tls: None,
            refusal: RefusalStyle::Line,
        }
    }
}

/// How a refused client is told why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalStyle {
    /// One text line, `refused: …\n`.
    Line,
    /// An HTTP error response carrying that line, for browsers.
    Http,
}

impl RefusalStyle {
    /// The bytes sent to a client refused for `refusal`.
    pub fn render(self, refusal: &Refusal) -> Vec<u8> {
        let line = format!("{refusal}\n");
        match self {
            RefusalStyle::Line => line.into_bytes(),
            RefusalStyle::Http => {
                let status = match refusal {
                    Refusal::Denied(_) => "403 Forbidden",
                    Refusal::Full(_) | Refusal::PerIp(..) => "503 Service Unavailable",
                };
                format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\n\
                     connection: close\r\ncontent-length: {}\r\n\r\n{line}",
                    line.len()
                )
                .into_bytes()
            }
        }
    }
}

/// The wait after a failed `accept` (out of file descriptors, a caller gone before it was
/// accepted): logged, then doubled each time from [`ACCEPT_BACKOFF_MIN`] up to
/// [`ACCEPT_BACKOFF_MAX`], so a listener neither spins on a lasting error nor ends on one.
#[derive(Debug)]
pub struct AcceptBackoff(Duration);

impl Default for AcceptBackoff {
    fn default() -> Self {
        Self(ACCEPT_BACKOFF_MIN)
    }
}

impl AcceptBackoff {
    /// Logs `err` and waits before the next `accept`, longer each time.
    pub async fn wait(&mut self, err: &std::io::Error) {
        tracing::warn!("accept failed: {err}; retrying in {:?}", self.0);
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(ACCEPT_BACKOFF_MAX);
    }
}

/// Serves `listener` until `shutdown` is cancelled, running `handle(conn, peer, admission,
/// shutdown)` in a task per admitted connection, after its TLS handshake when TLS is on.
///
/// A connection the [`Gate`] refuses gets a one-line reason and is closed (at most
/// [`REFUSALS_AT_ONCE`] linger at a time to deliver it cleanly; beyond that, in a flood, the
/// reason is written only if the socket takes it at once, and the connection closed at once). Accept errors (such as running out of file descriptors) are logged and retried with
/// exponential back-off; they never end the server.
///
/// The handler gets the connection's [`Admission`] too, to keep the connection's place for
/// longer than the handler runs (a WebSocket handed over to a task of its own); the loop holds
/// it until the handler returns.
pub async fn run<L, H, F>(listener: L, entry: Entry, shutdown: CancellationToken, handle: H)
where
    L: StreamListener,
    H: Fn(Conn<L::Stream>, Peer, Arc<Admission>, CancellationToken) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let handle = Arc::new(handle);
    let tracker = TaskTracker::new();
    let lingering = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
    let mut backoff = AcceptBackoff::default();
    let mut refusals = Refusals::default();
    loop {
        let summary_due = refusals.due();
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
            () = until(summary_due) => {
                refusals.log_summary();
                continue;
            }
        };
        let (stream, peer) = match accepted {
            Ok(pair) => {
                backoff = AcceptBackoff::default();
                pair
            }
            Err(err) => {
                tokio::select! {
                    () = backoff.wait(&err) => {}
                    () = shutdown.cancelled() => break,
                }
                continue;
            }
        };
        let admission = match entry.gate.admit(peer.ip) {
            Ok(admission) => Arc::new(admission),
            Err(refusal) => {
                refusals.note(&peer, &refusal);
                let text = entry.refusal.render(&refusal);
                if let Ok(place) = lingering.clone().try_acquire_owned() {
                    let tls = entry.tls.clone();
                    let style = entry.refusal;
                    tokio::spawn(async move {
                        turn_away(stream, tls, style, text).await;
                        drop(place);
                    });
                } else if entry.tls.is_none() {
                    // Too many lingering already: the reason still goes out if the socket
                    // takes it at once (a new socket's buffer is empty), then it is closed.
                    let _ = stream.try_write(&text);
                }
                continue;
            }
        };
        tracing::info!(%peer, "connected");
        let handle = handle.clone();
        let tls = entry.tls.clone();
        let style = entry.refusal;
        let token = shutdown.child_token();
        tracker.spawn(async move {
            let conn = match tls {
                None => Conn::Plain(stream),
                Some(tls) => match tls.accept(stream, style).await {
                    Ok(conn) => conn,
                    Err(err) => {
                        tracing::info!(%peer, "TLS handshake failed: {err}");
                        return;
                    }
                },
            };
            handle(conn, peer.clone(), admission.clone(), token).await;
            tracing::info!(%peer, "disconnected");
            drop(admission);
        });
    }
    refusals.log_summary();
    tracker.close();
    drain(&tracker, DRAIN_TIMEOUT).await;
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Ends a connection without a reset: writes `last_word` once the socket has room for it, then
/// the end of the output, while reading and dropping whatever the client still sends, until it
/// ends its side too. Closing a socket that holds unread input makes the kernel answer with a
/// reset, which throws away what the client has not read yet, the last word included.
/// Callers bound it in time: a client may never read, or never close.
pub async fn close_gently<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, last_word: &[u8]) {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let finish = async {
        writer.write_all(last_word).await?;
        writer.shutdown().await
    };
    let drain = async {
        // On the heap, and only now: as an array it was part of every connection's future,
        // idle ones included (bench hold: 3,613 against 3,115 bytes per chat connection).
        let mut sink = vec![0; 1024];
        while let Ok(1..) = reader.read(&mut sink).await {}
    };
    let _ = tokio::join!(finish, drain);
}

/// Tells a refused client why (after a TLS handshake, if the listener speaks TLS), then closes
/// the connection gently ([`close_gently`]), all within [`REFUSAL_LINGER`].
pub async fn turn_away<S>(stream: S, tls: Option<Acceptor>, style: RefusalStyle, text: Vec<u8>)
where
    S: AsyncRead + AsyncWrite + Peek + Unpin,
{
    let _ = tokio::time::timeout(REFUSAL_LINGER, async move {
        let mut conn = match tls {
            None => Conn::Plain(stream),
            Some(tls) => tls.accept(stream, style).await?,
        };
        close_gently(&mut conn, &text).await;
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// Logs refused connections: the first at once, then at most one summary line a second, so a
/// flood of connection attempts cannot flood the log too. Refusals held back are summed up a
/// second after the last line (the accept loop waits on [`Refusals::due`]), or at shutdown, so
/// the end of a burst is logged even when no refusal follows it.
#[derive(Default)]
struct Refusals {
    /// When the last line was logged.
    logged_at: Option<std::time::Instant>,
    /// Refusals since then.
    unlogged: u64,
    /// The last of them: who, and why.
    last: Option<(Peer, Refusal)>,
}

impl Refusals {
    fn note(&mut self, peer: &Peer, refusal: &Refusal) {
        self.unlogged += 1;
        self.last = Some((peer.clone(), refusal.clone()));
        let now = std::time::Instant::now();
        if self
            .logged_at
            .is_some_and(|at| now.duration_since(at) < LOG_EVERY)
        {
            return;
        }
        self.log_summary();
    }

    /// When the refusals held back are due to be logged; `None` when there are none.
    fn due(&self) -> Option<std::time::Instant> {
        let at = self.logged_at?;
        // What `log_summary` would log: `last`, not the count, so the two never disagree (a
        // time that is due but logs nothing would be due again at once, a busy loop).
        self.last.as_ref().map(|_| at + LOG_EVERY)
    }

    /// Logs the refusals not logged yet, if any, as one line.
    fn log_summary(&mut self) {
        let Some((peer, refusal)) = self.last.take() else {
            return;
        };
        tracing::warn!(last = %peer, "refused {} connection(s); the last: {refusal}", self.unlogged);
        self.logged_at = Some(std::time::Instant::now());
        self.unlogged = 0;
    }
}

/// A warning logged at most once each [`LOG_EVERY`], with a count of those held back.
#[derive(Default)]
pub struct Throttled {
    logged_at: Option<std::time::Instant>,
    held: u64,
}

impl Throttled {
    /// Notes one more occurrence at `now`: `Some(held back since the last line)` if it is to
    /// be logged, `None` if it is held back.
    pub fn note(&mut self, now: std::time::Instant) -> Option<u64> {
        if self
            .logged_at
            .is_some_and(|at| now.duration_since(at) < LOG_EVERY)
        {
            self.held += 1;
            return None;
        }
        self.logged_at = Some(now);
        Some(std::mem::take(&mut self.held))
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
    announce_to(&mut std::io::stdout().lock(), addr, None);
}

/// [`announce`] and [`announce_tls`] on stderr, for a command whose stdout carries the peer's
/// bytes (`connect -l`).
pub fn announce_on_stderr(addr: &str, tls: Option<&Acceptor>) {
    announce_to(&mut std::io::stderr().lock(), addr, tls);
}

fn announce_to(out: &mut impl std::io::Write, addr: &str, tls: Option<&Acceptor>) {
    let _ = writeln!(out, "listening on {addr}");
    if let Some(tls) = tls {
        let _ = writeln!(out, "tls certificate sha256 {}", tls.fingerprint());
    }
    let _ = out.flush();
}

/// Prints, after a TLS listener's address, the SHA-256 fingerprint of its certificate: what a
/// client pins with `--tls-fingerprint` when the certificate is self-signed.
pub fn announce_tls(tls: Option<&Acceptor>) {
    use std::io::Write;
    if let Some(tls) = tls {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "tls certificate sha256 {}", tls.fingerprint());
        let _ = out.flush();
    }
}

/// SIGHUP, the signal that asks a daemon to reload, never kills a server. With a certificate
/// from files it reads them again (a renewed certificate, without a restart): handshakes from
/// then on present the new one, whose fingerprint is printed like the first; one that cannot be
/// read is logged and the current one kept. With nothing to reload it is logged and ignored.
/// Installed at start, before the server announces itself, so a SIGHUP never finds the default
/// action (ending the process, without its graceful shutdown) in place.
pub fn reload_on_sighup(tls: Option<&Acceptor>) {
    use tokio::signal::unix::{SignalKind, signal};
    let tls = tls.filter(|tls| tls.is_reloadable()).cloned();
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        return;
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let Some(tls) = &tls else {
                tracing::info!("SIGHUP: nothing to reload (only a --tls-cert certificate is)");
                continue;
            };
            match tls.reload() {
                Ok(_) => {
                    tracing::info!("reloaded the TLS certificate");
                    announce_tls(Some(tls));
                }
                Err(err) => tracing::error!("kept the current TLS certificate: {err}"),
            }
        }
    });
}
