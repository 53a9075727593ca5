//! `socktalk bench`: a load generator for any server, socktalk's or not.
//!
//! | mode | what it measures |
//! |---|---|
//! | [`pingpong`] | round trips per second and latency, C connections each sending M bytes and waiting for M back |
//! | [`bulk`] | a stream of chunks one way, MB/s sent and received (an echo server sends it back: both ways at once) |
//! | [`udp`] | datagram ping-pong: round trips per second, latency, datagrams lost |
//! | [`hold`] | how many idle connections a server holds, and with `--pid` its memory per connection |
//! | [`fanout`] | a chat server: R receivers in one room, one sender of K lines: deliveries per second and latency |
//! | [`handshake`] | new connections per second (with `--tls`: TLS handshakes) and their latency |
//!
//! With `--tls` (and `--tls-ca` or `--tls-fingerprint`) the stream modes speak TLS, so the cost
//! of TLS is one flag away from the plain figure.
//!
//! Every run is bounded in time (and `hold`/`fanout` in count) and stops by itself. A progress
//! bar goes to stderr (only on a terminal); the result goes to stdout as a table, or as one JSON
//! object with `--json` ([`report`]). Ctrl-C ([`Interrupt`]) ends a run early with the report of
//! what it measured until then, marked as interrupted.

pub mod bulk;
pub mod cpu;
pub mod fanout;
pub mod handshake;
pub mod hold;
pub mod pingpong;
pub mod report;
pub mod udp;
pub mod ws;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;

use crate::endpoint::{Endpoint, Family};
use crate::error::{Error, Result};
use crate::signals::{self, Signals};
use crate::transport::deadline::Deadline;
use crate::transport::tls::{self, Connector};
use crate::transport::{tcp, unix};

pub use report::{Latency, Report};

/// A connection to the server under test: TCP or Unix, plain or TLS.
pub type Conn = tls::Conn<Either<tokio::net::TcpStream, tokio::net::UnixStream>>;

/// Where and how the stream modes connect.
#[derive(Debug, Clone)]
pub struct Dialer {
    /// The server.
    pub target: Endpoint,
    /// Address family for name resolution.
    pub family: Family,
    /// TLS, when on.
    pub tls: Option<Connector>,
    /// How long one connection's connect and TLS handshake may take (`-w`; zero: no limit).
    pub wait: Duration,
}

impl Dialer {
    /// The URL of the WebSocket at `path` on the server: `ws://HOST:PORT/PATH`, `wss://…` when
    /// TLS is on.
    pub fn websocket_url(&self, path: &str) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        format!("{scheme}://{}{path}", self.target.authority())
    }

    /// Connects to the server over TCP or a Unix socket, with the TLS handshake when TLS is on.
    ///
    /// # Errors
    /// As [`tcp::connect_within`] and [`unix::connect_once`] (a full accept queue is an error,
    /// counted, not waited out), and a failed handshake; [`crate::Error::TimedOut`] past `wait`.
    pub async fn connect(&self) -> Result<Conn> {
        let deadline = Deadline::after(self.wait, "-w");
        let stream = match &self.target {
            Endpoint::Unix(path) => Either::Right(unix::connect_once(path)?),
            Endpoint::Inet { .. } => {
                Either::Left(tcp::connect_within(&self.target, self.family, deadline).await?)
            }
        };
        match &self.tls {
            Some(tls) => {
                tls.connect_within(&self.target.host_name(), stream, deadline)
                    .await
            }
            None => Ok(tls::Conn::Plain(stream)),
        }
    }
}

/// What a timed benchmark (pingpong, bulk, udp) loads a server with.
#[derive(Debug, Clone)]
pub struct Load {
    /// The server, and how to connect to it.
    pub dialer: Dialer,
    /// Connections (or sockets), all at once; at least 1.
    pub conns: usize,
    /// Message, chunk or datagram size in bytes; at least 1.
    pub size: usize,
    /// Time run before measuring.
    pub warmup: Duration,
    /// Time measured.
    pub duration: Duration,
    /// The server's process id, for the CPU it uses while measuring.
    pub server: Option<u32>,
    /// Ctrl-C: ends the run early.
    pub interrupt: Interrupt,
}

impl Load {
    /// The run's window: warm up, then measure, unless interrupted.
    pub fn window(&self) -> Window {
        Window::new(self.warmup, self.duration, self.interrupt.clone())
    }
}

/// How long a run may take to report once interrupted, before the process gives up on it and
/// exits without a report: a phase that does not watch for the interrupt (a host name still
/// resolving) must not make Ctrl-C hang.
pub const INTERRUPT_GRACE: Duration = Duration::from_secs(2);

/// A signal during a run (Ctrl-C, SIGTERM as `timeout` sends, SIGHUP): the run stops
/// measuring at once and reports what it measured so far, marked as interrupted (`socktalk`
/// then exits with the shell's code for the signal, 130 for Ctrl-C).
#[derive(Debug, Clone, Default)]
pub struct Interrupt {
    token: CancellationToken,
    /// When, and by which signal.
    by: Arc<OnceLock<(Instant, i32)>>,
}

impl Interrupt {
    /// An interrupt set by the first of SIGINT, SIGTERM or SIGHUP from now on; a second signal
    /// ends the process at once, for a run that takes too long to wrap up.
    pub fn on_signals() -> Self {
        let interrupt = Self::default();
        let Ok(mut caught) = Signals::install() else {
            return interrupt;
        };
        let trigger = interrupt.clone();
        tokio::spawn(async move {
            trigger.interrupt(caught.recv().await);
            let number = caught.recv().await;
            std::process::exit(signals::exit_status(number).into());
        });
        interrupt
    }

    /// Interrupts the run now, as signal `number` does (the first call counts).
    pub fn interrupt(&self, number: i32) {
        self.by.get_or_init(|| (Instant::now(), number));
        self.token.cancel();
    }

    /// When the run was interrupted, if it was.
    pub fn at(&self) -> Option<Instant> {
        self.by.get().map(|&(at, _)| at)
    }

    /// Whether the run was interrupted.
    pub fn is_interrupted(&self) -> bool {
        self.by.get().is_some()
    }

    /// A token cancelled by the interrupt, for one task: each task polls its own, so the
    /// connections' tasks never contend for one lock.
    pub fn token(&self) -> CancellationToken {
        self.token.child_token()
    }

    /// Waits for the interrupt.
    pub async fn wait(&self) {
        self.token.cancelled().await;
    }

    /// The error that ends the command, interrupted: `what` says what was cut short.
    pub fn error(&self, what: &str) -> Error {
        let signal = self.by.get().map_or(libc::SIGINT, |&(_, number)| number);
        Error::Interrupted {
            signal,
            message: format!("interrupted ({}){what}", signals::name(signal)),
        }
    }

    /// The error for a run interrupted before it had anything to report.
    pub fn too_early(&self) -> Error {
        self.error(" before anything was measured")
    }
}

/// CPU used by the load generator and the server (`Load::server`) during the measured part of
/// `window`, counted in a task of its own: `(client ms, server ms)`.
pub fn measure_cpu(
    window: Window,
    server: Option<u32>,
) -> tokio::task::JoinHandle<(Option<f64>, Option<f64>)> {
    tokio::spawn(async move {
        tokio::select! {
            () = tokio::time::sleep_until(window.measure_from) => {}
            () = window.interrupt.wait() => return (None, None),
        }
        let watch = cpu::Stopwatch::start(server);
        tokio::select! {
            () = tokio::time::sleep_until(window.end) => {}
            () = window.interrupt.wait() => {}
        }
        watch.elapsed_ms()
    })
}

/// What a round-trip mode (pingpong, udp, handshake) counted over its window.
#[derive(Debug)]
pub struct Counted {
    /// Round trips (or connections set up) measured.
    pub ops: u64,
    /// Failures.
    pub errors: u64,
    /// Their latencies.
    pub latencies: Latencies,
    /// `(client ms, server ms)` of CPU, as [`measure_cpu`] gives.
    pub cpu: (Option<f64>, Option<f64>),
}

impl Counted {
    /// What was counted: operations, failures, their latencies and the CPU used.
    pub fn new(
        ops: u64,
        errors: u64,
        latencies: Latencies,
        cpu: (Option<f64>, Option<f64>),
    ) -> Self {
        Self {
            ops,
            errors,
            latencies,
            cpu,
        }
    }
}

impl Load {
    /// The report of a round-trip mode on this load (`size` is the load's).
    pub fn report(&self, mode: &'static str, window: &Window, counted: Counted) -> Report {
        Report {
            mode,
            target: self.dialer.target.to_string(),
            conns: Some(self.conns),
            size: Some(self.size),
            duration_s: window.seconds(),
            interrupted: window.cut_short(),
            ops: Some(counted.ops),
            ops_per_s: Some(report::rate(counted.ops, window.seconds())),
            latency_us: Latency::of(counted.ops, &counted.latencies.histogram()),
            errors: counted.errors,
            ..Report::default()
        }
        .with_cpu(counted.cpu)
    }
}

/// Opens `conns` connections to `target`, all before any is used. Fails only if the first
/// fails; later failures are counted and returned beside the connections made.
///
/// # Errors
/// The first connection could not be made.
/// [`Interrupt::too_early`] when interrupted meanwhile.
pub async fn connect_all(
    dialer: &Dialer,
    conns: usize,
    interrupt: &Interrupt,
) -> Result<(Vec<Conn>, u64)> {
    let mut streams = Vec::with_capacity(conns);
    let mut errors = 0;
    let mut first_failure = None;
    for index in 0..conns {
        let connected = tokio::select! {
            connected = dialer.connect() => connected,
            () = interrupt.wait() => return Err(interrupt.too_early()),
        };
        match connected {
            Ok(stream) => streams.push(stream),
            Err(err) if streams.is_empty() => return Err(err),
            Err(err) => {
                // Numbered in the order they were opened, not by those made before it: that
                // gave every failure after the last success the same number.
                tracing::info!("connection {} failed: {err}", index + 1);
                first_failure.get_or_insert(err);
                errors += 1;
            }
        }
    }
    if let Some(err) = first_failure {
        // The report counts them as errors; this says how many connections the run really has.
        let limit = if is_out_of_files(&err) {
            format!(
                " (the open-file limit, ulimit -n = {})",
                hold::raise_fd_limit()
            )
        } else {
            String::new()
        };
        tracing::warn!(
            "only {} of {conns} connections were made; the first failure: {err}{limit}",
            streams.len()
        );
    }
    Ok((streams, errors))
}

/// Whether `err` is, or was caused by, this process running out of file descriptors (EMFILE,
/// which `ulimit -n` sets); the whole system running out (ENFILE) is not.
fn is_out_of_files(err: &Error) -> bool {
    let emfile = |io: &std::io::Error| io.raw_os_error() == Some(libc::EMFILE);
    if let Error::ConnectEach { attempts, .. } = err {
        return !attempts.is_empty() && attempts.iter().all(|(_, io)| emfile(io));
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if cause.downcast_ref::<std::io::Error>().is_some_and(emfile) {
            return true;
        }
        source = cause.source();
    }
    false
}

/// A fresh latency histogram in nanoseconds, 1 ns to 100 s, 3 significant digits.
pub fn histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 100_000_000_000, 3)
        .expect("static bounds are valid")
}

/// One latency histogram for a whole run, filled by many tasks through [`Recorder`]s.
///
/// A histogram of this range is about 230 KB of counters. One per connection was fine for 50
/// connections, but 1,000 fan-out receivers faulted in a quarter of a gigabyte during the
/// measurement and spent a tenth of the load generator's time merging them afterwards.
#[derive(Debug, Clone)]
pub struct Latencies(Arc<Mutex<hdrhistogram::Histogram<u64>>>);

impl Default for Latencies {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(histogram())))
    }
}

impl Latencies {
    /// A recorder for one task.
    pub fn recorder(&self) -> Recorder {
        Recorder {
            shared: self.clone(),
            batch: Vec::with_capacity(Recorder::BATCH),
        }
    }

    /// Everything recorded so far (recorders add theirs when full and when dropped).
    pub fn histogram(&self) -> hdrhistogram::Histogram<u64> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A task's end of [`Latencies`]: samples gather in a small buffer and go into the shared
/// histogram a batch at a time, so recording takes no lock and the lock is rarely contended.
#[derive(Debug)]
pub struct Recorder {
    shared: Latencies,
    batch: Vec<u64>,
}

impl Recorder {
    /// Samples kept before they are added to the shared histogram (2 KB: fresh pages for
    /// 1,000 receivers' buffers are faulted in during the measurement).
    const BATCH: usize = 256;

    /// Records one latency in nanoseconds.
    pub fn record(&mut self, nanos: u64) {
        self.batch.push(nanos.max(1));
        if self.batch.len() == Self::BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let mut all = self.shared.0.lock().unwrap_or_else(|p| p.into_inner());
        for &nanos in &self.batch {
            // Beyond 100 s is beyond any run; such a sample is dropped, not clamped.
            let _ = all.record(nanos);
        }
        drop(all);
        self.batch.clear();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Nanoseconds since the first call in this process: a clock both the sender and the
/// receivers of `fanout` read, so a message can carry its send time.
pub fn clock_ns() -> u64 {
    static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
    EPOCH
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
}

/// A progress bar on stderr, drawn only when stderr is a terminal, counting `len` things
/// (connections opened, lines delivered).
pub fn progress(len: u64, what: &str) -> ProgressBar {
    bar_with(
        len,
        &format!("{{spinner}} {what} [{{bar:30}}] {{pos}}/{{len}} {{msg}}"),
    )
}

/// `len` long, drawn with `template`.
fn bar_with(len: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar
}

/// The progress bar of a timed run (`what` names the mode), advanced by [`tick_until`]: it
/// shows the time gone and the whole run's in seconds, and whether it is still warming up.
pub fn timed_progress(what: &str) -> ProgressBar {
    bar_with(0, &format!("{{spinner}} {what} [{{bar:30}}] {{msg}}"))
}

/// Advances `bar` ([`timed_progress`]) a tenth of a second at a time through a timed run
/// (warm-up, then measurement), until `end` or the interrupt: `2.3/6.0 s` (`warming up`
/// before the measurement starts).
pub fn tick_until(
    bar: ProgressBar,
    start: Instant,
    window: &Window,
) -> tokio::task::JoinHandle<()> {
    let (measure_from, end) = (window.measure_from, window.end);
    let interrupt = window.interrupt.clone();
    tokio::spawn(async move {
        let total = end.saturating_duration_since(start);
        bar.set_length(total.as_millis().max(1) as u64);
        loop {
            let now = Instant::now();
            let done = now.saturating_duration_since(start).min(total);
            let phase = if now < measure_from {
                ", warming up"
            } else {
                ""
            };
            bar.set_message(format!(
                "{:.1}/{:.1} s{phase}",
                done.as_secs_f64(),
                total.as_secs_f64()
            ));
            bar.set_position(done.as_millis() as u64);
            if now >= end {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
                () = interrupt.wait() => break,
            }
        }
        bar.finish_and_clear();
    })
}

/// Stream types the timed modes drive.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// Timing shared by the timed modes: warm up, then measure, until the end or an interrupt.
#[derive(Debug, Clone)]
pub struct Window {
    /// Measurement starts here (after the warm-up).
    pub measure_from: Instant,
    /// And ends here, unless interrupted before.
    pub end: Instant,
    /// Ctrl-C: the run's tasks stop, and the measurement ends then.
    pub interrupt: Interrupt,
}

impl Window {
    /// A window that starts measuring after `warmup` and lasts `duration`.
    pub fn new(warmup: Duration, duration: Duration, interrupt: Interrupt) -> Self {
        let measure_from = Instant::now() + warmup;
        Self {
            measure_from,
            end: measure_from + duration,
            interrupt,
        }
    }

    /// Whether `at` falls inside the measurement.
    pub fn counts(&self, at: Instant) -> bool {
        at >= self.measure_from && at < self.end
    }

    /// Whether the interrupt came before the end of the measurement: one after it (during the
    /// wait for a late reply) cut nothing short.
    pub fn cut_short(&self) -> bool {
        self.interrupt.at().is_some_and(|at| at < self.end)
    }

    /// Seconds measured: to the end, or to the interrupt (0 if it came in the warm-up).
    pub fn seconds(&self) -> f64 {
        let end = self.interrupt.at().map_or(self.end, |at| {
            at.clamp(self.measure_from, self.end.max(self.measure_from))
        });
        end.saturating_duration_since(self.measure_from)
            .as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect_error(errno: i32) -> Error {
        Error::Connect {
            endpoint: "127.0.0.1:7".into(),
            source: std::io::Error::from_raw_os_error(errno),
        }
    }

    /// Only this process's open-file limit (EMFILE) is blamed on `ulimit -n`; the system's
    /// table being full (ENFILE, "too many open files in system") is not.
    #[test]
    fn only_emfile_is_the_open_file_limit() {
        assert!(is_out_of_files(&connect_error(libc::EMFILE)));
        assert!(is_out_of_files(&Error::Io(
            std::io::Error::from_raw_os_error(libc::EMFILE)
        )));
        assert!(!is_out_of_files(&connect_error(libc::ENFILE)));
        assert!(!is_out_of_files(&Error::Io(
            std::io::Error::from_raw_os_error(libc::ENFILE)
        )));
        assert!(!is_out_of_files(&connect_error(libc::ECONNREFUSED)));
        let each = |errnos: &[i32]| Error::ConnectEach {
            endpoint: "localhost:7".into(),
            attempts: errnos
                .iter()
                .map(|&e| ("tcp://x".into(), std::io::Error::from_raw_os_error(e)))
                .collect(),
        };
        assert!(is_out_of_files(&each(&[libc::EMFILE, libc::EMFILE])));
        assert!(!is_out_of_files(&each(&[libc::EMFILE, libc::ENFILE])));
    }
}
