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
        let mut child = Command::new(bin())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn socktalk");
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
