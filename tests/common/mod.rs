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

/// Makes `command`'s process start with SIGINT, SIGTERM and SIGHUP at their defaults, whatever
/// the test run inherited: socktalk leaves a signal that was ignored on entry ignored (as under
/// `nohup`, or a background job of a non-interactive shell, which a CI runner may be), and the
/// tests that send one must not depend on how the suite was started.
pub fn default_signals(command: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec only `signal`, which is async-signal-safe, is called.
    unsafe {
        command.pre_exec(|| {
            for number in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                libc::signal(number, libc::SIG_DFL);
            }
            Ok(())
        })
    }
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
        let mut child = default_signals(&mut command)
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

/// A one-connection TCP peer on `ip`: `serve` gets the accepted stream (with timeouts) and its
/// result comes back through the handle.
pub fn tcp_peer<T: Send + 'static>(
    ip: &str,
    serve: impl FnOnce(TcpStream) -> T + Send + 'static,
) -> (SocketAddr, std::thread::JoinHandle<T>) {
    let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        serve(stream)
    });
    (addr, handle)
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

// ----------------------------------------------------------------------------------------------
// The chat server (`socktalk serve`): a line-oriented client that waits for expected lines.
// ----------------------------------------------------------------------------------------------

/// Starts `socktalk serve --tcp 127.0.0.1:0 --db DB EXTRA…` and waits for its address.
pub fn chat_server(db: &str, extra: &[&str]) -> Proc {
    let mut args = vec!["serve", "--tcp", "127.0.0.1:0", "--db", db];
    args.extend_from_slice(extra);
    Proc::server(&args)
}

/// Every row of a chat history database's `messages` table, oldest first, read with Python's
/// standard `sqlite3` module (an independent reader), as JSON objects with the keys `id`,
/// `kind`, `room`, `nick`, `recipient` and `text`.
pub fn db_messages(db: &Path) -> Vec<serde_json::Value> {
    let program = "import json, sqlite3, sys\n\
        conn = sqlite3.connect(sys.argv[1])\n\
        keys = ['id', 'kind', 'room', 'nick', 'recipient', 'text']\n\
        rows = conn.execute('SELECT id, kind, room, nick, recipient, text FROM messages ORDER BY id')\n\
        print(json.dumps([dict(zip(keys, row)) for row in rows]))\n";
    let out = python(program, &[db.to_str().expect("utf-8 path")]);
    match serde_json::from_str(&out).expect("python printed JSON") {
        serde_json::Value::Array(rows) => rows,
        other => panic!("not a list of rows: {other}"),
    }
}

/// Asserts that every message text in `seen` (what clients received) is stored in the chat
/// database `db`, and returns the stored rows.
pub fn assert_all_stored(
    seen: &std::collections::HashSet<String>,
    db: &Path,
) -> Vec<serde_json::Value> {
    let rows = db_messages(db);
    let stored: std::collections::HashSet<&str> =
        rows.iter().map(|r| r["text"].as_str().unwrap()).collect();
    let lost: Vec<&String> = seen
        .iter()
        .filter(|t| !stored.contains(t.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} received messages are not in the database, e.g. {:?}",
        lost.len(),
        seen.len(),
        lost.iter().take(5).collect::<Vec<_>>()
    );
    rows
}

/// A chat connection over TCP or a Unix socket.
pub enum ChatConn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl ChatConn {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        match self {
            ChatConn::Tcp(s) => s.set_read_timeout(timeout),
            ChatConn::Unix(s) => s.set_read_timeout(timeout),
        }
    }

    /// Another handle on the same connection (to write from one thread and read in another).
    pub fn try_clone(&self) -> ChatConn {
        match self {
            ChatConn::Tcp(s) => ChatConn::Tcp(s.try_clone().expect("clone")),
            ChatConn::Unix(s) => ChatConn::Unix(s.try_clone().expect("clone")),
        }
    }
}

impl Read for ChatConn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            ChatConn::Tcp(s) => s.read(buf),
            ChatConn::Unix(s) => s.read(buf),
        }
    }
}

impl Write for ChatConn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            ChatConn::Tcp(s) => s.write(buf),
            ChatConn::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            ChatConn::Tcp(s) => s.flush(),
            ChatConn::Unix(s) => s.flush(),
        }
    }
}

/// What one bounded read of a line found.
#[derive(Debug)]
pub enum Read1 {
    /// A whole line, without its `\n`.
    Line(Vec<u8>),
    /// The server closed the connection (EOF or reset); the bytes of an unfinished last line.
    Closed(Vec<u8>),
}

/// A chat member speaking the text protocol (or JSON lines after [`ChatClient::json`]).
pub struct ChatClient {
    pub stream: BufReader<ChatConn>,
    /// The nick the server gave or confirmed (empty until known).
    pub nick: String,
    /// Bytes of a line not yet complete when a read timed out.
    partial: Vec<u8>,
}

/// `text` in GBK (it must be encodable).
pub fn gbk(text: &str) -> Vec<u8> {
    let (bytes, _, had_errors) = encoding_rs::GBK.encode(text);
    assert!(!had_errors, "{text}");
    bytes.into_owned()
}

impl ChatClient {
    /// Connects over TCP without reading anything.
    pub fn connect(addr: SocketAddr) -> ChatClient {
        ChatClient::over(ChatConn::Tcp(tcp(addr)))
    }

    /// Connects over a Unix socket without reading anything.
    pub fn connect_unix(path: &Path) -> ChatClient {
        ChatClient::over(ChatConn::Unix(unix(path)))
    }

    /// Wraps a connection (with its write timeout already set).
    pub fn over(conn: ChatConn) -> ChatClient {
        ChatClient {
            stream: BufReader::new(conn),
            nick: String::new(),
            partial: Vec::new(),
        }
    }

    /// Connects and waits for the welcome and for this guest's own arrival in #lobby.
    pub fn guest(addr: SocketAddr) -> ChatClient {
        ChatClient::connect(addr).welcomed()
    }

    /// Two members of the server at `addr`: `utf` (utf-8) and a guest that has switched to GBK.
    pub fn utf_and_gbk(addr: SocketAddr) -> (ChatClient, ChatClient) {
        let mut utf = ChatClient::login(addr, "utf");
        let mut gb = ChatClient::guest(addr);
        utf.expect(&format!("* {} joined #lobby", gb.nick));
        gb.send("/encoding gbk");
        gb.expect_next("* your encoding is now GBK");
        (utf, gb)
    }

    /// Reads the welcome line and the member's own join announcement, learning its guest nick.
    pub fn welcomed(mut self) -> ChatClient {
        let welcome = self.expect_line(|l| l.starts_with("* welcome to socktalk, "));
        let nick = welcome["* welcome to socktalk, ".len()..]
            .split('!')
            .next()
            .unwrap()
            .to_string();
        self.expect(&format!("* {nick} joined #lobby"));
        self.nick = nick;
        self
    }

    /// Connects, takes `nick` and waits for the server to confirm it.
    pub fn login(addr: SocketAddr, nick: &str) -> ChatClient {
        let mut client = ChatClient::guest(addr);
        client.set_nick(nick);
        client
    }

    /// `/nick NICK`, waiting for the confirmation.
    pub fn set_nick(&mut self, nick: &str) {
        self.send(&format!("/nick {nick}"));
        self.expect(&format!("* {} is now known as {nick}", self.nick));
        self.nick = nick.to_string();
    }

    /// Sends one line (a newline is added).
    pub fn send(&mut self, line: &str) {
        let mut bytes = line.as_bytes().to_vec();
        bytes.push(b'\n');
        self.send_raw(&bytes);
    }

    /// Sends bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let conn = self.stream.get_mut();
        conn.write_all(bytes).expect("write to the chat server");
        conn.flush().unwrap();
    }

    /// Sends a message to the current room and waits until it comes back to its sender, which
    /// means it is committed and has been fanned out to every member of the room.
    pub fn say(&mut self, text: &str) -> String {
        self.send(text);
        let mine = format!("<{}> {text}", self.nick);
        self.expect_line(|line| {
            line.split_once(' ').is_some_and(|(place, rest)| {
                place.starts_with("[#") && place.ends_with(']') && rest == mine
            })
        })
    }

    /// `/join ROOM`, waiting for this member's own join announcement.
    pub fn join(&mut self, room: &str) {
        self.send(&format!("/join {room}"));
        self.expect(&format!("* {} joined {room}", self.nick));
    }

    /// One line within `timeout`, or how the connection ended; `None` if `timeout` passed
    /// first (an unfinished line is kept for the next read).
    pub fn poll_line(&mut self, timeout: Duration) -> Option<Read1> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.get_ref().set_read_timeout(Some(left)).unwrap();
            match self.stream.read_until(b'\n', &mut self.partial) {
                Ok(_) if self.partial.ends_with(b"\n") => {
                    let mut line = std::mem::take(&mut self.partial);
                    line.pop();
                    return Some(Read1::Line(line));
                }
                Ok(_) => return Some(Read1::Closed(std::mem::take(&mut self.partial))),
                Err(err)
                    if matches!(
                        err.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(err)
                    if matches!(
                        err.kind(),
                        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    return Some(Read1::Closed(std::mem::take(&mut self.partial)));
                }
                Err(err) => panic!("{}: read failed: {err}", self.nick),
            }
        }
    }

    /// One line within `timeout`, or how the connection ended; panics on a timeout.
    pub fn read_within(&mut self, timeout: Duration) -> Read1 {
        self.poll_line(timeout).unwrap_or_else(|| {
            panic!(
                "{}: no complete line within {timeout:?} (unfinished: {:?})",
                self.nick,
                String::from_utf8_lossy(&self.partial)
            )
        })
    }

    /// The next line as bytes (without `\n`), within [`IO_TIMEOUT`]; panics at EOF.
    pub fn next_raw(&mut self) -> Vec<u8> {
        match self.read_within(IO_TIMEOUT) {
            Read1::Line(line) => line,
            Read1::Closed(rest) => panic!(
                "{}: connection closed while waiting for a line (unfinished: {:?})",
                self.nick,
                String::from_utf8_lossy(&rest)
            ),
        }
    }

    /// The next line (invalid UTF-8 shown as U+FFFD), within [`IO_TIMEOUT`]; panics at EOF.
    pub fn next_line(&mut self) -> String {
        String::from_utf8_lossy(&self.next_raw()).into_owned()
    }

    /// Asserts that the very next line is `line`.
    pub fn expect_next(&mut self, line: &str) {
        let got = self.next_line();
        assert_eq!(got, line, "{}: unexpected next line", self.nick);
    }

    /// Reads lines until one satisfies `wanted` and returns it; fails (listing every line
    /// read) if none does within [`IO_TIMEOUT`] or the connection closes first.
    pub fn expect_line(&mut self, mut wanted: impl FnMut(&str) -> bool) -> String {
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "{}: the expected line did not arrive within {IO_TIMEOUT:?}; got {seen:#?}",
                    self.nick
                );
            }
            match self.poll_line(left) {
                Some(Read1::Line(line)) => {
                    let line = String::from_utf8_lossy(&line).into_owned();
                    if wanted(&line) {
                        return line;
                    }
                    seen.push(line);
                }
                Some(Read1::Closed(rest)) => panic!(
                    "{}: connection closed before the expected line; got {seen:#?} then {:?}",
                    self.nick,
                    String::from_utf8_lossy(&rest)
                ),
                None => panic!(
                    "{}: the expected line did not arrive within {IO_TIMEOUT:?}; got {seen:#?}",
                    self.nick
                ),
            }
        }
    }

    /// Reads lines until exactly `line` arrives.
    pub fn expect(&mut self, line: &str) -> String {
        self.expect_line(|l| l == line)
    }

    /// Reads lines until the server closes the connection (EOF or reset), within `timeout`;
    /// returns every whole line read. Fails if the connection stays open.
    pub fn read_until_closed(&mut self, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{}: still open after {timeout:?}; read {} lines, the last: {:?}",
                self.nick,
                lines.len(),
                lines.iter().rev().take(5).collect::<Vec<_>>()
            );
            match self.poll_line(left) {
                Some(Read1::Line(line)) => lines.push(String::from_utf8_lossy(&line).into_owned()),
                Some(Read1::Closed(_)) => return lines,
                None => panic!(
                    "{}: still open after {timeout:?}; read {} lines, the last: {:?}",
                    self.nick,
                    lines.len(),
                    lines.iter().rev().take(5).collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Another handle on the connection, for writing from another thread.
    pub fn writer(&self) -> ChatConn {
        self.stream.get_ref().try_clone()
    }

    /// Closes the connection with a TCP reset, as a crashed client would.
    pub fn reset(self) {
        match self.stream.into_inner() {
            ChatConn::Tcp(stream) => reset(stream),
            ChatConn::Unix(_) => panic!("only TCP connections can be reset"),
        }
    }

    /// Switches to JSON lines (`/json`) and waits for the first `state` event.
    pub fn json(&mut self) -> serde_json::Value {
        self.send("/json");
        // Text lines sent before the switch may still come first.
        let line = self.expect_line(|line| {
            serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| v["type"] == "state")
        });
        serde_json::from_str(&line).unwrap()
    }

    /// Sends one JSON request.
    pub fn send_json(&mut self, request: &serde_json::Value) {
        self.send(&request.to_string());
    }

    /// The next line, parsed as a JSON event.
    pub fn next_json(&mut self) -> serde_json::Value {
        let line = self.next_line();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
    }

    /// Reads JSON events until one satisfies `wanted`; every line read must be JSON.
    pub fn expect_json(
        &mut self,
        mut wanted: impl FnMut(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let line = self.expect_line(|line| {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
            wanted(&value)
        });
        serde_json::from_str(&line).unwrap()
    }
}

/// A chat server with a TCP listener and the web listener, both on ephemeral loopback ports.
pub struct WebServer {
    /// Killed when dropped.
    pub proc: Proc,
    /// The TCP chat listener.
    pub tcp: SocketAddr,
    /// The web listener (`127.0.0.1:PORT`).
    pub http: SocketAddr,
    /// With `--tls-self-signed`: the certificate's SHA-256 fingerprint (the web listener then
    /// speaks HTTPS).
    pub fingerprint: Option<String>,
}

impl WebServer {
    pub fn start(extra: &[&str]) -> WebServer {
        let mut args = vec![
            "serve",
            "--tcp",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--db",
            ":memory:",
        ];
        args.extend_from_slice(extra);
        let mut proc = Proc::server(&args);
        let tcp = proc.socket_addr();
        let mut line = proc.next_line();
        let fingerprint = line
            .strip_prefix("tls certificate sha256 ")
            .map(str::to_string);
        if fingerprint.is_some() {
            line = proc.next_line();
        }
        let url = line
            .strip_prefix("listening on http://")
            .or_else(|| line.strip_prefix("listening on https://"))
            .unwrap_or_else(|| panic!("expected 'listening on http(s)://…', got {line:?}"));
        let http = url.trim_end_matches('/').parse().expect("an address");
        WebServer {
            proc,
            tcp,
            http,
            fingerprint,
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.http)
    }
}

#[allow(unused_imports)] // used by some test files only, like the rest of this module
pub use socktalk::testing::Unanswering;

/// A Unix socket server whose accept queue is full: a connect to it fails with `EAGAIN` until
/// [`FullUnix::accept_one`] makes room. `path` is a file's path or `@name` (abstract).
pub struct FullUnix {
    listener: std::os::unix::net::UnixListener,
    _queued: Vec<UnixStream>,
}

impl FullUnix {
    /// Binds `path` (a file's, or `@name`) with backlog 0 and fills its queue.
    pub fn new(path: &Path) -> FullUnix {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
        socket.bind(&unix_sock_addr(path)).unwrap();
        socket.listen(0).unwrap();
        let listener: std::os::unix::net::UnixListener = socket.into();
        let mut queued = Vec::new();
        loop {
            let client = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
            client.set_nonblocking(true).unwrap();
            match client.connect(&unix_sock_addr(path)) {
                Ok(()) => queued.push(UnixStream::from(client)),
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(err) => panic!("filling the accept queue of {}: {err}", path.display()),
            }
            assert!(queued.len() < 64, "the accept queue never filled");
        }
        FullUnix {
            listener,
            _queued: queued,
        }
    }

    /// Accepts one queued connection (and keeps it open), making room for one more.
    pub fn accept_one(&mut self) -> UnixStream {
        let (stream, _) = self.listener.accept().unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream
    }
}

/// The socket address of `path`: a file's, or the abstract `@name` (a NUL, then the name).
pub fn unix_sock_addr(path: &Path) -> socket2::SockAddr {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    match bytes.strip_prefix(b"@") {
        Some(name) => {
            let nul_name = [&[0u8][..], name].concat();
            socket2::SockAddr::unix(std::ffi::OsStr::from_bytes(&nul_name)).unwrap()
        }
        None => socket2::SockAddr::unix(path).unwrap(),
    }
}

/// A connection to the abstract Unix socket `name` (without the `@`), with timeouts.
pub fn unix_abstract(name: &str) -> UnixStream {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name).unwrap();
    let stream = UnixStream::connect_addr(&addr).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// An abstract socket name no other test (or run) uses: `socktalk-test-PID-TAG`.
pub fn abstract_name(tag: &str) -> String {
    format!("socktalk-test-{}-{tag}", std::process::id())
}

/// Runs `socktalk ARGS` with empty stdin; returns its exit code, its one-line error and how
/// long it took.
pub fn timed_failure(args: &[&str]) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let out = socktalk().args(args).write_stdin("").output().unwrap();
    let took = started.elapsed();
    (out.status.code(), one_line_error(&out.stderr), took)
}

/// Asserts a timeout of about `wait` seconds: at least most of it, and not wildly more (the
/// bound is generous for a loaded machine).
pub fn took_about(took: Duration, wait: f64) {
    assert!(took >= Duration::from_secs_f64(wait * 0.9), "took {took:?}");
    assert!(took < Duration::from_secs_f64(wait + 8.0), "took {took:?}");
}

/// The server's resident memory (`VmRSS`), in KiB.
pub fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line")
}
