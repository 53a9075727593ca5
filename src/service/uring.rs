//! The echo servers' data path on io_uring (Linux), for plain TCP and Unix connections.
//!
//! The tokio accept loop still admits every connection ([`crate::server::run`]: access rules,
//! limits, logging); an admitted connection's socket is then handed to one of a few pump
//! threads, each with a ring of its own. A pump keeps one operation in flight per connection (a
//! receive, or a send of the replies to what was received) and reaps every connection's
//! completions with one system call, where the tokio loop needs a `read`, a `write` and an
//! `epoll_wait` per message. The frames and their replies are [`EchoConn`]'s, as in the tokio
//! loop, so the two paths answer byte for byte alike.
//!
//! The connection's task stays in tokio, parked until the pump is done with the socket: it owns
//! the idle timeout and the server's shutdown, and ends the connection early by shutting the
//! socket down, which completes whatever the pump has in flight on it.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use io_uring::{IoUring, opcode, squeue, types};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::echo::{EchoConfig, EchoConn};

/// Entries of each pump's submission queue; the completion queue is twice as long. A pump
/// submits whenever its queue fills, so this bounds a batch, not the connections.
const RING_ENTRIES: u32 = 1024;

/// `user_data` of the pump's wake-up read. A connection's operations carry its slot, shifted
/// left by one, with the low bit set for a send.
const WAKE: u64 = u64::MAX;
const SEND: u64 = 1;

/// The pump threads of one server, and which one gets the next connection.
pub struct Pumps {
    pumps: Vec<Pump>,
    next: AtomicUsize,
    config: Arc<EchoConfig>,
}

/// One pump thread: its inbox of new connections and the eventfd that wakes its ring.
struct Pump {
    inbox: Arc<Mutex<Inbox>>,
    wake: Arc<OwnedFd>,
}

#[derive(Default)]
struct Inbox {
    conns: VecDeque<Handoff>,
    quit: bool,
}

/// A connection on its way to a pump.
struct Handoff {
    socket: Arc<Socket>,
    peer: String,
    done: oneshot::Sender<()>,
}

/// The socket of a connection, shared by the pump and the connection's task, so that the task
/// can shut it down while the pump still has operations in flight on it. It is closed when
/// both let go.
struct Socket {
    fd: OwnedFd,
    /// Set by the task before it shuts the socket down: the pump then writes nothing more.
    is_stopped: AtomicBool,
    /// When input last arrived, in nanoseconds since [`epoch`] (for the idle timeout).
    last_input: AtomicU64,
}

impl Socket {
    fn stop(&self) {
        self.is_stopped.store(true, Ordering::Release);
        // SAFETY: the descriptor is open for as long as `self` is.
        unsafe { libc::shutdown(self.fd.as_raw_fd(), libc::SHUT_RDWR) };
    }
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn since_epoch() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

impl Pumps {
    /// Starts `threads` pumps for a server set up as `config`.
    ///
    /// # Errors
    /// The kernel refuses io_uring (too old, disabled by `kernel.io_uring_disabled`, or blocked
    /// by a seccomp filter, as in many containers), or a thread could not start.
    pub fn start(threads: usize, config: Arc<EchoConfig>) -> io::Result<Self> {
        // Built as the pumps start: if one fails, dropping this stops those already started.
        let mut this = Self {
            pumps: Vec::with_capacity(threads),
            next: AtomicUsize::new(0),
            config,
        };
        for index in 0..threads.max(1) {
            // SAFETY: eventfd returns a new descriptor or -1.
            let wake = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
            if wake < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `wake` was just opened and nothing else owns it.
            let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(wake) });
            let inbox = Arc::new(Mutex::new(Inbox::default()));
            let (inbox_, wake_, config_) = (inbox.clone(), wake.clone(), this.config.clone());
            let (started, is_started) = std::sync::mpsc::sync_channel(1);
            // The ring is made on its thread: with the cheapest setup, only the thread that
            // made a ring may submit to it.
            std::thread::Builder::new()
                .name(format!("socktalk-uring-{index}"))
                .spawn(move || match new_ring() {
                    Ok(ring) => {
                        let _ = started.send(Ok(()));
                        Worker::new(ring, inbox_, wake_, config_).run();
                    }
                    Err(err) => {
                        let _ = started.send(Err(err));
                    }
                })?;
            is_started
                .recv()
                .map_err(|_| io::Error::other("io_uring pump thread died"))??;
            this.pumps.push(Pump { inbox, wake });
        }
        Ok(this)
    }

    /// Serves the connection on `fd` until it ends: the peer closes, the framing breaks, the idle
    /// timeout passes or `shutdown` is cancelled.
    pub async fn serve(&self, fd: OwnedFd, peer: String, shutdown: CancellationToken) {
        let socket = Arc::new(Socket {
            fd,
            is_stopped: AtomicBool::new(false),
            last_input: AtomicU64::new(since_epoch()),
        });
        let (done_tx, mut done) = oneshot::channel();
        let pump = &self.pumps[self.next.fetch_add(1, Ordering::Relaxed) % self.pumps.len()];
        {
            let mut inbox = pump.inbox.lock().unwrap_or_else(|e| e.into_inner());
            if inbox.quit {
                return;
            }
            inbox.conns.push_back(Handoff {
                socket: socket.clone(),
                peer: peer.clone(),
                done: done_tx,
            });
        }
        pump.wake();

        let idle = self.config.idle_timeout;
        let has_idle_limit = !idle.is_zero();
        let mut deadline = tokio::time::Instant::now() + idle;
        loop {
            tokio::select! {
                _ = &mut done => return,
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep_until(deadline), if has_idle_limit => {
                    let quiet = Duration::from_nanos(
                        since_epoch().saturating_sub(socket.last_input.load(Ordering::Relaxed)),
                    );
                    if quiet >= idle {
                        tracing::info!(%peer, "closing: idle for {idle:?} (--idle-timeout)");
                        break;
                    }
                    deadline += idle - quiet;
                }
            }
        }
        socket.stop();
        let _ = done.await;
    }
}

impl Pump {
    fn wake(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer to an eventfd we own.
        unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }
}

impl Drop for Pumps {
    fn drop(&mut self) {
        for pump in &self.pumps {
            pump.inbox.lock().unwrap_or_else(|e| e.into_inner()).quit = true;
            pump.wake();
        }
    }
}

/// A ring with the cheapest setup the kernel offers: completions handled only when the pump
/// asks for them (6.1 and later), else without interrupting the pump (5.19), else plain.
fn new_ring() -> io::Result<IoUring> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(RING_ENTRIES)
        .or_else(|_| IoUring::builder().setup_coop_taskrun().build(RING_ENTRIES))
        .or_else(|_| IoUring::new(RING_ENTRIES))
}

/// A connection as its pump sees it.
struct Conn {
    socket: Arc<Socket>,
    peer: String,
    done: Option<oneshot::Sender<()>>,
    echo: EchoConn,
    input: BytesMut,
    output: BytesMut,
    /// How much of `output` is sent.
    sent: usize,
    /// How much the last receive asked for.
    asked: usize,
    /// What to do once `output` is sent.
    then: Then,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Then {
    Receive,
    /// The peer half-closed: finish our side too.
    HalfClose,
    /// The framing broke (logged): close.
    Close,
}

/// One pump thread's state.
struct Worker {
    ring: IoUring,
    inbox: Arc<Mutex<Inbox>>,
    wake: Arc<OwnedFd>,
    /// The buffer the wake-up read fills; boxed, as the kernel writes to it while the worker moves.
    wake_buf: Box<[u8; 8]>,
    config: Arc<EchoConfig>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// Operations waiting for room in the submission queue.
    queued: Vec<squeue::Entry>,
}

impl Worker {
    fn new(
        ring: IoUring,
        inbox: Arc<Mutex<Inbox>>,
        wake: Arc<OwnedFd>,
        config: Arc<EchoConfig>,
    ) -> Self {
        Self {
            ring,
            inbox,
            wake,
            wake_buf: Box::new([0; 8]),
            config,
            conns: Vec::new(),
            free: Vec::new(),
            queued: Vec::new(),
        }
    }

    fn run(mut self) {
        self.arm_wake();
        let mut reaped = Vec::with_capacity(RING_ENTRIES as usize);
        let mut quitting = false;
        loop {
            self.flush_queued();
            if let Err(err) = self.ring.submit_and_wait(1)
                && err.kind() != io::ErrorKind::Interrupted
            {
                // Nothing can be served without the ring: end every connection.
                tracing::error!("io_uring pump stopped: {err}");
                self.abandon();
                return;
            }
            reaped.clear();
            reaped.extend(self.ring.completion().map(|c| (c.user_data(), c.result())));
            for &(data, result) in &reaped {
                if data == WAKE {
                    quitting |= self.take_inbox();
                    if quitting {
                        self.stop_all();
                    } else {
                        self.arm_wake();
                    }
                    continue;
                }
                self.complete((data >> 1) as usize, data & SEND == SEND, result);
            }
            if quitting && self.conns.iter().all(Option::is_none) {
                return;
            }
        }
    }

    /// Starts the connections handed over since the last wake-up; says whether to quit.
    fn take_inbox(&mut self) -> bool {
        let (handoffs, quit) = {
            let mut inbox = self.inbox.lock().unwrap_or_else(|e| e.into_inner());
            (std::mem::take(&mut inbox.conns), inbox.quit)
        };
        for handoff in handoffs {
            let mut conn = Conn {
                socket: handoff.socket,
                peer: handoff.peer,
                done: Some(handoff.done),
                echo: EchoConn::new(&self.config),
                input: BytesMut::new(),
                output: BytesMut::new(),
                sent: 0,
                asked: 0,
                then: Then::Receive,
            };
            conn.echo.greet(&self.config, &mut conn.output);
            let slot = match self.free.pop() {
                Some(slot) => slot,
                None => {
                    self.conns.push(None);
                    self.conns.len() - 1
                }
            };
            self.conns[slot] = Some(conn);
            self.next_step(slot);
        }
        quit
    }

    fn arm_wake(&mut self) {
        let read = opcode::Read::new(
            types::Fd(self.wake.as_raw_fd()),
            self.wake_buf.as_mut_ptr(),
            8,
        )
        .build()
        .user_data(WAKE);
        self.queued.push(read);
    }

    /// Shuts every connection down: their operations in flight complete, and end them.
    fn stop_all(&mut self) {
        for conn in self.conns.iter().flatten() {
            conn.socket.stop();
        }
    }

    /// Ends every connection without waiting for its operations: for a ring that failed,
    /// whose kernel side may still write into their buffers, which are therefore leaked.
    fn abandon(&mut self) {
        for mut conn in std::mem::take(&mut self.conns).into_iter().flatten() {
            if let Some(done) = conn.done.take() {
                let _ = done.send(());
            }
            conn.socket.stop();
            std::mem::forget(conn);
        }
    }

    /// Handles the completion of the one operation in flight on `slot`, a send or a receive.
    fn complete(&mut self, slot: usize, is_send: bool, result: i32) {
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let is_stopped = conn.socket.is_stopped.load(Ordering::Acquire);
        if !is_send {
            let asked = conn.asked;
            if is_stopped {
                return self.finish(slot);
            }
            let got = match usize::try_from(result) {
                Ok(got) => got,
                Err(_) => {
                    let err = io::Error::from_raw_os_error(-result);
                    tracing::info!(peer = %conn.peer, "connection lost: {err}");
                    return self.finish(slot);
                }
            };
            // SAFETY: the kernel wrote `got` bytes into the spare capacity it was given.
            unsafe { conn.input.set_len(conn.input.len() + got) };
            let is_eof = got == 0;
            if is_eof {
                conn.then = Then::HalfClose;
            } else {
                conn.echo.read(asked, got);
                if !self.config.idle_timeout.is_zero() {
                    conn.socket
                        .last_input
                        .store(since_epoch(), Ordering::Relaxed);
                }
            }
            if conn.echo.is_passthrough() {
                // What was read goes back as it is: swap it into the output, whose buffer
                // (empty, as nothing is being sent) takes the next read.
                std::mem::swap(&mut conn.input, &mut conn.output);
            } else if let Err(err) = conn.echo.respond(&mut conn.input, &mut conn.output, is_eof) {
                tracing::warn!(peer = %conn.peer, "closing: {err}");
                conn.then = Then::Close;
            }
        } else {
            let sent = match usize::try_from(result) {
                Ok(sent) if !is_stopped => sent,
                Ok(_) => return self.finish(slot),
                Err(_) => {
                    if !is_stopped {
                        let err = io::Error::from_raw_os_error(-result);
                        tracing::info!(peer = %conn.peer, "connection lost while writing: {err}");
                    }
                    return self.finish(slot);
                }
            };
            conn.sent += sent;
            if conn.sent == conn.output.len() {
                conn.output.clear();
                conn.sent = 0;
            }
        }
        self.next_step(slot);
    }

    /// Queues what `slot` does next: send what it owes, else receive, half-close or close.
    fn next_step(&mut self, slot: usize) {
        let Some(conn) = self.conns[slot].as_mut() else {
            return;
        };
        let fd = types::Fd(conn.socket.fd.as_raw_fd());
        if conn.sent < conn.output.len() {
            let rest = &conn.output[conn.sent..];
            let send = opcode::Send::new(fd, rest.as_ptr(), rest.len() as u32)
                .flags(libc::MSG_NOSIGNAL)
                .build()
                .user_data((slot as u64) << 1 | SEND);
            self.queued.push(send);
            return;
        }
        match conn.then {
            Then::Receive => {
                let asked = conn.echo.reserve(&mut conn.input).min(u32::MAX as usize);
                conn.asked = asked;
                let spare = conn.input.spare_capacity_mut();
                let recv = opcode::Recv::new(fd, spare.as_mut_ptr().cast(), asked as u32)
                    .build()
                    .user_data((slot as u64) << 1);
                self.queued.push(recv);
            }
            Then::HalfClose => {
                // SAFETY: the descriptor is open for as long as `conn.socket` is.
                unsafe { libc::shutdown(fd.0, libc::SHUT_WR) };
                self.finish(slot);
            }
            Then::Close => self.finish(slot),
        }
    }

    /// Ends the connection on `slot`: its task learns it, and the socket closes when the
    /// task lets go of it too.
    fn finish(&mut self, slot: usize) {
        if let Some(mut conn) = self.conns[slot].take() {
            if let Some(done) = conn.done.take() {
                let _ = done.send(());
            }
            self.free.push(slot);
        }
    }

    /// Moves queued operations into the submission queue, submitting when it fills.
    fn flush_queued(&mut self) {
        for entry in self.queued.drain(..) {
            // SAFETY: every buffer an entry points to lives in a connection (or the worker)
            // that stays put, untouched, until the entry's completion is reaped.
            while unsafe { self.ring.submission().push(&entry) }.is_err() {
                if let Err(err) = self.ring.submit() {
                    tracing::warn!("io_uring submit failed: {err}");
                }
            }
        }
    }
}
