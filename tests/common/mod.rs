//! Shared helpers for the integration tests: start the real `socktalk` binary, learn the
//! address it bound from its first stdout line (never a fixed port, never a sleep), and talk to
//! it through plain blocking std sockets with timeouts, so a bug fails a test instead of
//! hanging it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

/// How long any single socket operation in a test may block before the test fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The path of the binary under test.
pub fn bin() -> std::path::PathBuf {
    assert_cmd::cargo::cargo_bin!("socktalk").to_path_buf()
}

/// An assert_cmd command for the binary, with a timeout so no test can hang.
pub fn socktalk() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(bin());
    cmd.timeout(Duration::from_secs(20));
    cmd
}

/// A running socktalk process (a server, or a `talk` peer) that is killed when dropped.
pub struct Proc {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub stdout: BufReader<ChildStdout>,
    pub stderr: Option<ChildStderr>,
    /// What followed "listening on " on the first line, if the process is a server.
    pub addr: String,
}

impl Proc {
    /// Starts `socktalk ARGS` with piped stdio, without waiting for anything.
    pub fn start(args: &[&str]) -> Proc {
        let mut command = Command::new(bin());
        command.args(args);
        Proc::spawn(command)
    }

    /// Starts any program (a Python peer, say) with piped stdio, killed when dropped.
    pub fn spawn(mut command: Command) -> Proc {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        Proc {
            stdin: child.stdin.take(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
            stderr: child.stderr.take(),
            child,
            addr: String::new(),
        }
    }

    /// Starts a server and waits for its "listening on ADDR" line.
    pub fn server(args: &[&str]) -> Proc {
        let mut proc = Proc::start(args);
        let line = proc.read_line();
        let addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                let err = proc.stderr_text();
                panic!("expected 'listening on ADDR', got {line:?}; stderr: {err}")
            })
            .trim()
            .to_string();
        proc.addr = addr;
        proc
    }

    /// The bound socket address of a tcp:// or udp:// server.
    pub fn socket_addr(&self) -> SocketAddr {
        let text = self
            .addr
            .split_once("://")
            .map_or(self.addr.as_str(), |(_, rest)| rest);
        text.parse()
            .unwrap_or_else(|_| panic!("not a socket address: {}", self.addr))
    }

    /// The next stdout line, without its newline ("" at EOF).
    pub fn read_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read stdout");
        line.trim_end_matches(['\n', '\r']).to_string()
    }

    /// Runs `read` (a blocking read of the process's output), failing the test (the process is
    /// killed, which ends the read) if it takes longer than `timeout`, so a silent peer cannot
    /// hang a test.
    pub fn within<T: std::fmt::Debug>(
        &mut self,
        timeout: Duration,
        read: impl FnOnce(&mut Proc) -> T,
    ) -> T {
        let pid = self.child.id().to_string();
        let (done, wait) = std::sync::mpsc::channel::<()>();
        // The child cannot be reaped while this thread blocks reading it, so the pid the
        // watchdog may kill is still ours.
        let watchdog = std::thread::spawn(move || {
            let fired = wait.recv_timeout(timeout) == Err(RecvTimeoutError::Timeout);
            if fired {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
            }
            fired
        });
        let got = read(self);
        drop(done);
        assert!(
            !watchdog.join().unwrap(),
            "nothing read within {timeout:?} (got {got:?})"
        );
        got
    }

    /// The next stdout line within [`IO_TIMEOUT`].
    pub fn next_line(&mut self) -> String {
        self.within(IO_TIMEOUT, Proc::read_line)
    }

    /// The next stderr line within [`IO_TIMEOUT`], read byte by byte so nothing after it is
    /// consumed ("" at EOF).
    pub fn next_stderr_line(&mut self) -> String {
        self.within(IO_TIMEOUT, |proc| {
            let stderr = proc.stderr.as_mut().expect("stderr open");
            let mut line = Vec::new();
            let mut byte = [0u8; 1];
            while matches!(stderr.read(&mut byte), Ok(1)) && byte[0] != b'\n' {
                line.push(byte[0]);
            }
            String::from_utf8_lossy(&line).into_owned()
        })
    }

    /// Writes to the process's stdin.
    pub fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    /// Closes the process's stdin (EOF).
    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// Sends a signal (`"TERM"`, `"KILL"`, `"INT"`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits for the process to exit, failing the test after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "process did not exit in {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything left on stdout (waits for EOF).
    pub fn stdout_rest(&mut self) -> String {
        let mut out = String::new();
        let _ = self.stdout.read_to_string(&mut out);
        out
    }

    /// Everything on stderr so far (waits for EOF, so only after exit or kill).
    pub fn stderr_text(&mut self) -> String {
        let mut err = String::new();
        if let Some(mut stderr) = self.stderr.take() {
            let _ = self.child.kill();
            let _ = stderr.read_to_string(&mut err);
        }
        err
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP connection with read/write timeouts.
pub fn tcp(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// A Unix stream connection with read/write timeouts.
pub fn unix(path: &Path) -> UnixStream {
    let stream = UnixStream::connect(path).expect("connect unix");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// A UDP socket bound to an ephemeral loopback port of `peer`'s family, with a read timeout.
pub fn udp_for(peer: SocketAddr) -> UdpSocket {
    let local = if peer.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let socket = UdpSocket::bind(local).unwrap();
    socket.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    socket
}

/// Reads exactly `n` bytes.
pub fn read_exact(stream: &mut impl Read, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    stream.read_exact(&mut buf).expect("read_exact");
    buf
}

/// Reads until EOF.
pub fn read_to_end(stream: &mut impl Read) -> Vec<u8> {
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).expect("read_to_end");
    buf
}

/// Whether the peer closed the connection: a read returns EOF or a reset.
pub fn is_closed(stream: &mut impl Read) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// A length-prefixed frame as the `len` framing writes it.
pub fn len_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    frame
}

/// Closes `stream` with a TCP reset (SO_LINGER 0) instead of a FIN, as a crashed client would.
pub fn reset(stream: TcpStream) {
    let socket = socket2::Socket::from(stream);
    socket.set_linger(Some(Duration::ZERO)).unwrap();
    drop(socket);
}

/// Runs a Python 3 program (the classic lessons' way: only the standard library) with `args`,
/// returning its stdout; fails the test with its stderr if it fails.
pub fn python(program: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(program)
        .args(args)
        .output()
        .expect("python3 is on every machine");
    assert!(
        out.status.success(),
        "python failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        program
    );
    String::from_utf8(out.stdout).expect("python printed utf-8")
}

/// Reads one frame of the `len` framing and returns its payload.
pub fn read_len_frame(stream: &mut impl Read) -> Vec<u8> {
    let prefix = read_exact(stream, 4);
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    read_exact(stream, len)
}

/// Runs `socktalk ARGS`, which must exit with `code` and print exactly one line on stderr, a
/// socktalk error; returns that line.
pub fn fails_with(args: &[&str], code: i32) -> String {
    let out = socktalk().args(args).output().expect("run socktalk");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "socktalk {args:?}: {}; stderr: {stderr}",
        out.status
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "socktalk {args:?}: stderr: {stderr:?}");
    assert!(
        lines[0].starts_with("socktalk: error: "),
        "socktalk {args:?}: stderr: {stderr:?}"
    );
    lines[0].to_string()
}

/// Starts a Python 3 program that prints the port it bound as its first line (`print(port,
/// flush=True)`), and returns it with that port.
pub fn python_server(program: &str) -> (Proc, u16) {
    let mut command = Command::new("python3");
    command.arg("-c").arg(program);
    let mut proc = Proc::spawn(command);
    let line = proc.next_line();
    let port = line.trim().parse().unwrap_or_else(|_| {
        let err = proc.stderr_text();
        panic!("expected a port from python, got {line:?}; stderr: {err}")
    });
    (proc, port)
}

/// A loopback TCP address nobody listens on: bound, read back and released.
pub fn closed_tcp_addr(ip: &str) -> SocketAddr {
    let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
    listener.local_addr().unwrap()
}

/// A loopback UDP address nobody listens on: bound, read back and released.
pub fn closed_udp_addr(ip: &str) -> SocketAddr {
    let socket = UdpSocket::bind((ip, 0)).unwrap();
    socket.local_addr().unwrap()
}

/// Checks that `stderr` is exactly one `socktalk: error: ...` line with no panic or backtrace,
/// and returns that line.
pub fn one_line_error(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr).into_owned();
    assert!(text.ends_with('\n'), "no final newline: {text:?}");
    let line = text.trim_end_matches('\n');
    assert!(!line.contains('\n'), "more than one line: {text:?}");
    assert!(line.starts_with("socktalk: error: "), "{text:?}");
    for word in ["panicked", "backtrace", "RUST_BACKTRACE"] {
        assert!(!text.contains(word), "{text:?}");
    }
    line.to_string()
}
