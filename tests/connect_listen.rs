//! `socktalk connect -l`: the listening end of the netcat-class client (`nc -l`), over TCP
//! (IPv4 and IPv6), Unix sockets (files and abstract names) and UDP, against plain std socket
//! peers and a Python one that check the exact bytes on the wire. The listener is always
//! started on port 0 (or a fresh path), and its address read back from its `listening on` line
//! on stderr: its stdout carries the peer's bytes.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, UdpSocket};

use common::{IO_TIMEOUT, Proc, fails_with, gbk, len_frame, one_line_error, read_to_end, tcp};

/// Starts `socktalk connect -l ARGS` and waits for its `listening on ADDR` line on stderr.
fn listener(args: &[&str]) -> Proc {
    let mut proc = Proc::start(&[&["connect", "-l"], args].concat());
    let line = proc.next_stderr_line();
    let Some(addr) = line.strip_prefix("listening on ") else {
        let err = proc.stderr_text();
        panic!("expected 'listening on ADDR' on stderr, got {line:?}; then: {err}")
    };
    proc.addr = addr.to_string();
    proc
}

/// Reads exactly `n` bytes of the listener's stdout, within [`IO_TIMEOUT`].
fn stdout_bytes(proc: &mut Proc, n: usize) -> Vec<u8> {
    proc.within(IO_TIMEOUT, |proc| {
        let mut buf = vec![0; n];
        proc.stdout.read_exact(&mut buf).map(|()| buf)
    })
    .expect("read the listener's stdout")
}

/// One exchange each way with a TCP peer, then the listener's stdin ends (a half-close the
/// peer reads as EOF), the peer closes, and the listener exits 0.
fn tcp_round_trip(bind: &str, peer_ip: &str) {
    let mut listener = listener(&[bind]);
    let addr = listener.socket_addr();
    assert_eq!(addr.ip().to_string(), peer_ip, "{}", listener.addr);
    let mut peer = tcp(addr);
    assert_eq!(
        listener.next_stderr_line(),
        format!("connection from {}", peer.local_addr().unwrap())
    );
    peer.write_all(b"hello listener\n").unwrap();
    assert_eq!(listener.next_line(), "hello listener");
    listener.type_line("hello peer");
    let mut got = [0; 11];
    peer.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello peer\n");
    listener.close_stdin();
    assert_eq!(
        read_to_end(&mut peer),
        b"",
        "the listener half-closes at stdin's end"
    );
    drop(peer);
    assert!(listener.wait_exit(IO_TIMEOUT).success());
    assert_eq!(listener.stdout_rest(), "");
}

#[test]
fn tcp_ipv4_one_peer_both_ways() {
    tcp_round_trip("127.0.0.1:0", "127.0.0.1");
}

#[test]
fn tcp_ipv6_one_peer_both_ways() {
    tcp_round_trip("[::1]:0", "::1");
}

#[test]
fn a_dual_stack_listener_takes_an_ipv4_peer_and_shows_it_as_ipv4() {
    let mut listener = listener(&["[::]:0", "--frame", "line"]);
    let port = listener.socket_addr().port();
    let mut peer = tcp(SocketAddr::from(([127, 0, 0, 1], port)));
    assert_eq!(
        listener.next_stderr_line(),
        format!("connection from {}", peer.local_addr().unwrap())
    );
    peer.write_all(b"over v4\n").unwrap();
    assert_eq!(listener.next_line(), "over v4");
}

#[test]
fn a_bare_port_listens_on_localhost_as_echo_does() {
    // Learn a free port, then listen on it by number alone.
    let port = common::closed_tcp_addr("127.0.0.1").port().to_string();
    let listener = listener(&[&port]);
    assert_eq!(listener.addr, format!("tcp://127.0.0.1:{port}"));
    drop(listener);
    // The long name is the same switch, the address still the positional ADDR.
    let mut long = Proc::start(&["connect", "--listen", "udp://127.0.0.1:0"]);
    let line = long.next_stderr_line();
    assert!(line.starts_with("listening on udp://127.0.0.1:"), "{line}");
}

#[test]
fn raw_bytes_pass_unchanged_both_ways() {
    // Every byte value, many times over (more than a pipe or socket buffer holds), each way.
    let to_peer: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let from_peer: Vec<u8> = (0..=255u8).rev().cycle().take(200_000).collect();
    let mut listener = listener(&["127.0.0.1:0"]);
    let mut stdin = listener.stdin.take().unwrap();
    let feeder = {
        let to_peer = to_peer.clone();
        std::thread::spawn(move || stdin.write_all(&to_peer).unwrap())
    };
    let peer = tcp(listener.socket_addr());
    let sender = {
        let mut peer = peer.try_clone().unwrap();
        let from_peer = from_peer.clone();
        std::thread::spawn(move || {
            peer.write_all(&from_peer).unwrap();
            peer.shutdown(Shutdown::Write).unwrap();
        })
    };
    let got = read_to_end(&mut &peer);
    feeder.join().unwrap();
    assert!(got == to_peer, "the peer got {} altered bytes", got.len());
    // Read before the sender is joined: it waits for the listener, which waits for us.
    let printed = stdout_bytes(&mut listener, from_peer.len());
    sender.join().unwrap();
    assert!(printed == from_peer, "the listener printed altered bytes");
    assert!(listener.wait_exit(IO_TIMEOUT).success());
    assert_eq!(listener.stdout_rest(), "");
}

#[test]
fn a_python_client_talks_to_it_byte_for_byte() {
    let mut listener = listener(&["127.0.0.1:0", "-q"]);
    let port = listener.socket_addr().port().to_string();
    let reply = b"from socktalk \x00\xff\r\n";
    let stdin = listener.stdin.as_mut().unwrap();
    stdin.write_all(reply).unwrap();
    listener.close_stdin();
    let out = common::python(
        r#"
import socket, sys
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10)
s.sendall(bytes(range(256)) + 'héllo 你好\n'.encode())
s.shutdown(socket.SHUT_WR)
data = b''
while True:
    chunk = s.recv(1024)
    if not chunk:
        break
    data += chunk
s.close()
print(data.hex())
"#,
        &[&port],
    );
    let mut sent: Vec<u8> = (0..=255u8).collect();
    sent.extend_from_slice("héllo 你好\n".as_bytes());
    let hex: String = reply.iter().map(|byte| format!("{byte:02x}")).collect();
    assert_eq!(out.trim(), hex, "what python received");
    assert!(listener.wait_exit(IO_TIMEOUT).success());
    let printed = read_to_end(&mut listener.stdout);
    assert_eq!(printed, sent);
    // -q: nothing but the address on stderr.
    assert_eq!(listener.stderr_text(), "");
}

#[test]
fn unix_socket_file_replaces_a_stale_one_and_is_removed_at_exit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("listen.sock");
    // A socket file nobody answers on: what a crashed server leaves.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let text = path.to_str().unwrap();
    let mut listener = listener(&["-U", text]);
    assert_eq!(listener.addr, format!("unix:{text}"));
    let mut peer = common::unix(&path);
    assert!(
        listener
            .next_stderr_line()
            .starts_with("connection from unix:pid=")
    );
    peer.write_all(b"\x00unix\xff").unwrap();
    assert_eq!(stdout_bytes(&mut listener, 6), b"\x00unix\xff");
    listener.type_line("back");
    listener.close_stdin();
    assert_eq!(read_to_end(&mut peer), b"back\n");
    drop(peer);
    assert!(listener.wait_exit(IO_TIMEOUT).success());
    assert!(!path.exists(), "the socket file is removed at exit");
}

#[test]
fn a_signal_ends_a_unix_listener_and_removes_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signalled.sock");
    let mut first = listener(&[&format!("unix:{}", path.display())]);
    assert!(path.exists());
    first.signal("TERM");
    let status = first.wait_exit(IO_TIMEOUT);
    // As the shell reports a process the signal killed: 128 + SIGTERM.
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{status:?}");
    assert!(!path.exists(), "the socket file is removed");
    // And the path can be listened on again at once.
    let again = listener(&["-U", path.to_str().unwrap()]);
    assert_eq!(again.addr, format!("unix:{}", path.display()));
}

#[test]
fn abstract_unix_socket() {
    let name = common::abstract_name("connect-listen");
    let mut listener = listener(&[&format!("unix:@{name}"), "--frame", "line"]);
    assert_eq!(listener.addr, format!("unix:@{name}"));
    let mut peer = common::unix_abstract(&name);
    peer.write_all(b"abstract hello\n").unwrap();
    assert_eq!(listener.next_line(), "abstract hello");
    listener.type_line("abstract reply");
    listener.close_stdin();
    assert_eq!(read_to_end(&mut peer), b"abstract reply\n");
    drop(peer);
    assert!(listener.wait_exit(IO_TIMEOUT).success());
}

#[test]
fn udp_the_first_sender_is_the_peer_and_others_are_ignored() {
    let mut listener = listener(&["-u", "127.0.0.1:0", "--frame", "line", "--linger", "1"]);
    assert!(
        listener.addr.starts_with("udp://127.0.0.1:"),
        "{}",
        listener.addr
    );
    let addr = listener.socket_addr();
    let first = common::udp_for(addr);
    let second = common::udp_for(addr);
    first.send_to(b"first one", addr).unwrap();
    assert_eq!(listener.next_line(), "first one");
    let first_addr = first.local_addr().unwrap();
    assert_eq!(
        listener.next_stderr_line(),
        format!("connection from {first_addr}")
    );
    second.send_to(b"a stranger", addr).unwrap();
    assert_eq!(
        listener.next_stderr_line(),
        format!(
            "ignored a datagram from {}: the peer is {first_addr}",
            second.local_addr().unwrap()
        )
    );
    // Each stdin line is one datagram, to the first sender only.
    listener.type_line("to the first");
    let mut buf = [0; 64];
    let (len, from) = first.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..len], b"to the first");
    assert_eq!(from, addr);
    second.set_nonblocking(true).unwrap();
    let nothing = second
        .recv_from(&mut buf)
        .map(|(len, _)| buf[..len].to_vec());
    assert_eq!(
        nothing.map_err(|err| err.kind()),
        Err(std::io::ErrorKind::WouldBlock),
        "the stranger got something"
    );
    first.send_to(b"", addr).unwrap();
    first.send_to("second, é".as_bytes(), addr).unwrap();
    assert_eq!(listener.next_line(), "");
    assert_eq!(listener.next_line(), "second, é");
    // Stdin's end, then a second of the peer's silence, ends it.
    listener.close_stdin();
    assert!(listener.wait_exit(IO_TIMEOUT).success());
    assert_eq!(listener.stdout_rest(), "");
}

/// A peer that has gone (a datagram to it comes back: ICMP port unreachable) ends the UDP
/// listener with an error, as a closed port ends the client, on one address or a wildcard; a
/// stranger that has gone, sent nothing, changes nothing.
#[test]
fn udp_a_peer_that_has_gone_ends_it_with_an_error() {
    for (bind, to) in [
        ("127.0.0.1:0", "127.0.0.1"),
        ("0.0.0.0:0", "127.0.0.1"),
        ("[::1]:0", "::1"),
        ("[::]:0", "::1"),
    ] {
        let mut listener = listener(&["-u", bind, "--frame", "line"]);
        let addr = SocketAddr::new(to.parse().unwrap(), listener.socket_addr().port());
        let peer = common::udp_for(addr);
        let peer_addr = peer.local_addr().unwrap();
        peer.send_to(b"hello", addr).unwrap();
        assert_eq!(listener.next_line(), "hello", "{bind}");
        let stranger = common::udp_for(addr);
        stranger.send_to(b"intruder", addr).unwrap();
        drop(stranger);
        listener.type_line("still there?");
        let mut buf = [0; 64];
        let (len, _) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"still there?", "{bind}");
        drop(peer);
        listener.type_line("are you there?");
        let status = listener.wait_exit(IO_TIMEOUT);
        assert_eq!(status.code(), Some(1), "{bind}: {status:?}");
        let said = listener.stderr_text();
        let error = said.lines().last().unwrap_or_default();
        assert_eq!(
            error,
            format!(
                "socktalk: error: the peer udp://{peer_addr} is not listening any more \
                 (port unreachable); a datagram to it was lost"
            ),
            "{bind}: {said}"
        );
        assert!(!said.contains("panicked"), "{said}");
    }
}

#[test]
fn udp_raw_datagrams_are_printed_as_they_came() {
    let mut listener = listener(&["-u", "[::1]:0", "--linger", "0.5"]);
    let addr = listener.socket_addr();
    let peer = common::udp_for(addr);
    let all: Vec<u8> = (0..=255u8).collect();
    peer.send_to(&all, addr).unwrap();
    assert_eq!(stdout_bytes(&mut listener, 256), all);
    let stdin = listener.stdin.as_mut().unwrap();
    stdin.write_all(b"\x00\xff raw").unwrap();
    let mut buf = [0; 64];
    let (len, _) = peer.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..len], b"\x00\xff raw");
    listener.close_stdin();
    assert!(listener.wait_exit(IO_TIMEOUT).success());
}

#[test]
fn udp_with_stdin_ended_waits_for_a_peer_then_for_its_silence() {
    let mut listener = listener(&["-u", "127.0.0.1:0", "--linger", "0.5", "-q"]);
    listener.close_stdin();
    let addr = listener.socket_addr();
    let peer = common::udp_for(addr);
    // Stdin's end alone does not end it: nobody has spoken yet.
    for datagram in [&b"one "[..], b"two"] {
        peer.send_to(datagram, addr).unwrap();
    }
    assert_eq!(stdout_bytes(&mut listener, 7), b"one two");
    assert!(listener.wait_exit(IO_TIMEOUT).success());
    assert_eq!(listener.stderr_text(), "");
}

#[test]
fn a_len_frame_over_max_frame_from_the_peer_exits_1() {
    let mut listener = listener(&["127.0.0.1:0", "--frame", "len", "--max-frame", "10", "-q"]);
    let mut peer = tcp(listener.socket_addr());
    let mut frames = len_frame(b"fine");
    frames.extend([0, 0, 0, 100]);
    frames.extend([b'z'; 20]);
    peer.write_all(&frames).unwrap();
    assert_eq!(listener.next_line(), "fine");
    let status = listener.wait_exit(IO_TIMEOUT);
    assert_eq!(status.code(), Some(1), "{status:?}");
    let line = one_line_error(listener.stderr_text().as_bytes());
    assert!(line.contains("peer broke the framing"), "{line}");
    assert!(
        line.contains("100 bytes") && line.contains("--max-frame"),
        "{line}"
    );
    assert!(common::is_closed(&mut peer));
}

#[test]
fn gbk_on_the_wire_utf8_on_the_terminal() {
    let mut listener = listener(&["127.0.0.1:0", "--encoding", "gbk"]);
    let mut peer = tcp(listener.socket_addr());
    peer.write_all(&gbk("你好，世界\n")).unwrap();
    assert_eq!(listener.next_line(), "你好，世界");
    listener.type_line("再见");
    listener.close_stdin();
    assert_eq!(read_to_end(&mut peer), gbk("再见\n"));
    drop(peer);
    assert!(listener.wait_exit(IO_TIMEOUT).success());
}

#[test]
fn keep_open_serves_peers_one_after_another() {
    let mut listener = listener(&["-k", "127.0.0.1:0", "--linger", "0.2"]);
    let addr = listener.socket_addr();
    let mut first = tcp(addr);
    assert_eq!(
        listener.next_stderr_line(),
        format!("connection from {}", first.local_addr().unwrap())
    );
    // The second waits in the accept backlog: nothing is written to it meanwhile.
    let mut second = tcp(addr);
    listener.type_line("for the first");
    let mut got = [0; 14];
    first.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"for the first\n");
    second.set_nonblocking(true).unwrap();
    let early = second.read(&mut got).map_err(|err| err.kind());
    assert_eq!(early, Err(std::io::ErrorKind::WouldBlock));
    second.set_nonblocking(false).unwrap();
    first.write_all(b"from the first\n").unwrap();
    assert_eq!(listener.next_line(), "from the first");
    drop(first);
    // Its peer gone and stdin silent for --linger, the first session ends; the next begins.
    assert_eq!(
        listener.next_stderr_line(),
        format!("connection from {}", second.local_addr().unwrap())
    );
    listener.type_line("for the second");
    let mut got = [0; 15];
    second.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"for the second\n");
    second.write_all(b"from the second\n").unwrap();
    assert_eq!(listener.next_line(), "from the second");
    // Stdin is read once: once it has ended, each later peer reads EOF at once.
    listener.close_stdin();
    assert_eq!(read_to_end(&mut second), b"");
    drop(second);
    let mut third = tcp(addr);
    assert_eq!(read_to_end(&mut third), b"");
    assert_eq!(
        listener.next_stderr_line(),
        format!("connection from {}", third.local_addr().unwrap())
    );
    drop(third);
    // Still listening: only a signal ends -k.
    let mut fourth = tcp(addr);
    assert_eq!(read_to_end(&mut fourth), b"");
    listener.signal("INT");
    let status = listener.wait_exit(IO_TIMEOUT);
    assert_eq!(status.code(), Some(128 + libc::SIGINT), "{status:?}");
}

#[test]
fn keep_open_goes_on_after_a_peer_breaks_the_framing() {
    let mut listener = listener(&["-k", "127.0.0.1:0", "--frame", "line", "--max-frame", "8"]);
    let addr = listener.socket_addr();
    let mut bad = tcp(addr);
    bad.write_all(b"far too long a line\n").unwrap();
    assert!(common::is_closed(&mut bad));
    let mut good = tcp(addr);
    good.write_all(b"short\n").unwrap();
    assert_eq!(listener.next_line(), "short");
    assert!(
        listener.child.try_wait().unwrap().is_none(),
        "still running"
    );
}

#[test]
fn restarts_on_the_same_port_right_after_the_first_exits() {
    // The listener closes first (stdin's end), so its side of the connection is left in
    // TIME_WAIT on the port: without SO_REUSEADDR the second bind would fail.
    let mut first = listener(&["127.0.0.1:0"]);
    let addr = first.socket_addr();
    let mut peer = tcp(addr);
    first.type_line("closing first");
    first.close_stdin();
    assert_eq!(read_to_end(&mut peer), b"closing first\n");
    drop(peer);
    assert!(first.wait_exit(IO_TIMEOUT).success());
    let mut second = listener(&[&addr.to_string()]);
    assert_eq!(second.socket_addr(), addr);
    let mut peer = tcp(addr);
    peer.write_all(b"second life").unwrap();
    peer.shutdown(Shutdown::Write).unwrap();
    second.close_stdin();
    assert_eq!(read_to_end(&mut peer), b"");
    assert!(second.wait_exit(IO_TIMEOUT).success());
    assert_eq!(second.stdout_rest(), "second life");
}

#[test]
fn idle_timeout_ends_a_silent_peer_with_exit_code_3() {
    let mut listener = listener(&["127.0.0.1:0", "-i", "0.5", "-q"]);
    let mut peer = tcp(listener.socket_addr());
    let status = listener.wait_exit(IO_TIMEOUT);
    assert_eq!(status.code(), Some(3), "{status:?}");
    let line = one_line_error(listener.stderr_text().as_bytes());
    assert!(line.contains("--idle-timeout"), "{line}");
    assert!(common::is_closed(&mut peer));
}

#[test]
fn tls_listener_with_a_self_signed_certificate() {
    let mut listener = listener(&["127.0.0.1:0", "--tls-self-signed"]);
    let line = listener.next_stderr_line();
    let fingerprint = line
        .strip_prefix("tls certificate sha256 ")
        .unwrap_or_else(|| panic!("expected the fingerprint, got {line:?}"))
        .to_string();
    listener.type_line("secret reply");
    listener.close_stdin();
    common::socktalk()
        .args(["connect", &listener.addr, "--tls-fingerprint", &fingerprint])
        .write_stdin("secret hello\n")
        .assert()
        .success()
        .stdout("secret reply\n");
    assert!(listener.wait_exit(IO_TIMEOUT).success());
    assert_eq!(listener.stdout_rest(), "secret hello\n");
}

#[test]
fn a_plain_listener_says_so_when_its_peer_speaks_tls() {
    let mut listener = listener(&["127.0.0.1:0", "--frame", "len"]);
    let mut peer = tcp(listener.socket_addr());
    // The start of a TLS ClientHello.
    peer.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    let status = listener.wait_exit(IO_TIMEOUT);
    assert_eq!(status.code(), Some(1));
    let stderr = listener.stderr_text();
    let error = stderr.lines().last().unwrap_or_default();
    assert!(
        error.contains("the peer opened with a TLS handshake")
            && error.contains("--tls-self-signed"),
        "{stderr}"
    );
}

#[test]
fn usage_errors() {
    let err = fails_with(&["connect", "-l", "-w", "3", "127.0.0.1:0"], 2);
    assert!(err.contains("--wait") && err.contains("--listen"), "{err}");
    let err = fails_with(&["connect", "-k", "127.0.0.1:1"], 2);
    assert!(err.contains("--listen"), "{err}");
    let err = fails_with(&["connect", "-l", "--tls", "127.0.0.1:0"], 2);
    assert!(err.contains("--tls-self-signed"), "{err}");
    // The client's option that was typed is the one named, and the listener's counterpart.
    let err = fails_with(
        &[
            "connect",
            "-l",
            "--tls-client-cert",
            "c.pem",
            "--tls-client-key",
            "k.pem",
            "127.0.0.1:0",
        ],
        2,
    );
    assert!(
        err.contains("--tls-client-cert is for connecting") && err.contains("--tls-client-ca"),
        "{err}"
    );
    let err = fails_with(
        &["connect", "-l", "--tls-fingerprint", "AB", "127.0.0.1:0"],
        2,
    );
    assert!(err.contains("--tls-fingerprint is for"), "{err}");
    let err = fails_with(&["connect", "--tls-self-signed", "127.0.0.1:1"], 2);
    assert!(err.contains("connect --listen"), "{err}");
    for (args, word) in [
        (&["-u", "-k"][..], "-k"),
        (&["-u", "--frame", "len"], "--frame len"),
        (&["-u", "-i", "5"], "--idle-timeout"),
        (&["-u", "--tls-self-signed"], "TLS"),
    ] {
        let mut argv = vec!["connect", "-l", "127.0.0.1:0"];
        argv.extend_from_slice(args);
        let err = fails_with(&argv, 2);
        assert!(err.contains(word), "{args:?}: {err}");
    }
    let err = fails_with(&["connect", "-l", "-u", "-U", "/tmp/x.sock"], 2);
    assert!(err.contains("Unix"), "{err}");
}

#[test]
fn an_address_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = fails_with(&["connect", "-l", &addr], 1);
    assert!(err.contains("address already in use"), "{err}");
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = fails_with(&["connect", "-l", "-u", &addr], 1);
    assert!(err.contains("address already in use"), "{err}");
}

#[test]
fn keep_open_ends_when_stdout_fails() {
    // Stdout on a full disk: the first peer's bytes cannot be written, and neither could any
    // later peer's, so -k must not go on accepting callers only to drop what they send.
    let mut command = std::process::Command::new("sh");
    command
        .args(["-c", r#"exec "$0" connect -l -k -q 127.0.0.1:0 >/dev/full"#])
        .arg(common::bin());
    let mut proc = Proc::spawn(command);
    let line = proc.next_stderr_line();
    let addr: SocketAddr = line
        .strip_prefix("listening on tcp://")
        .unwrap_or_else(|| panic!("expected the address, got {line:?}"))
        .parse()
        .unwrap();
    let mut peer = tcp(addr);
    peer.write_all(b"nowhere to go\n").unwrap();
    let status = proc.wait_exit(IO_TIMEOUT);
    assert_eq!(status.code(), Some(1), "{status:?}");
    let error = one_line_error(proc.stderr_text().as_bytes());
    assert!(
        error.contains("standard output: no space left on device"),
        "{error}"
    );
}

#[test]
fn without_keep_open_a_second_caller_is_refused_not_queued() {
    // As ncat -l: once its one peer is accepted the listener is closed, so a second caller is
    // refused at once instead of being left connected, its bytes read by no one.
    {
        let mut listener = listener(&["127.0.0.1:0"]);
        let addr = listener.socket_addr();
        let mut first = tcp(addr);
        assert!(listener.next_stderr_line().starts_with("connection from "));
        let second = std::net::TcpStream::connect(addr).map_err(|err| err.kind());
        assert_eq!(
            second.err(),
            Some(std::io::ErrorKind::ConnectionRefused),
            "a second caller while the first is served"
        );
        // The first session is unharmed.
        first.write_all(b"still here\n").unwrap();
        assert_eq!(listener.next_line(), "still here");
        listener.close_stdin();
        assert_eq!(read_to_end(&mut first), b"");
        drop(first);
        assert!(listener.wait_exit(IO_TIMEOUT).success());
    }
    // A Unix socket's file goes with its listener, as at exit.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("once.sock");
    let mut unix_listener = listener(&["-U", path.to_str().unwrap()]);
    let _first = common::unix(&path);
    assert!(
        unix_listener
            .next_stderr_line()
            .starts_with("connection from ")
    );
    assert!(
        !path.exists(),
        "the socket file is gone once the peer is in"
    );
    assert!(std::os::unix::net::UnixStream::connect(&path).is_err());
}

#[test]
fn keep_open_hands_what_a_session_could_not_send_to_the_next_peer() {
    // A peer that never reads: the listener's write to it stalls until -i ends that session.
    // What stdin gave it and it had not yet written is the next peer's, not lost: the two peers
    // together read stdin exactly.
    let data: Vec<u8> = (0..4_000_000u32).flat_map(|n| n.to_le_bytes()).collect();
    let mut listener = listener(&["-k", "-i", "1", "127.0.0.1:0"]);
    let addr = listener.socket_addr();
    let mut stdin = listener.stdin.take().unwrap();
    let feeder = {
        let data = data.clone();
        std::thread::spawn(move || stdin.write_all(&data).unwrap())
    };
    let mut first = tcp(addr);
    // Queued behind the first, in the backlog.
    let mut second = tcp(addr);
    let next = format!("connection from {}", second.local_addr().unwrap());
    // The first is read only once -i has ended its session and the second's has begun.
    loop {
        let line = listener.next_stderr_line();
        assert!(!line.is_empty(), "the listener's stderr ended");
        if line == next {
            break;
        }
    }
    let mut got = read_to_end(&mut first);
    let taken = got.len();
    assert!(taken < data.len(), "the first peer cannot have it all");
    got.extend(read_to_end(&mut second));
    feeder.join().unwrap();
    assert_eq!(got.len(), data.len(), "the first peer took {taken} bytes");
    assert!(got == data, "the bytes came in another order");
}

#[test]
fn a_peer_that_resets_mid_transfer_is_an_error_whichever_side_notices() {
    // The peer reads a little of what stdin sends, then aborts (RST). Whether the reset reaches
    // the listener's read or its write first is a race; the exit status must not be: the
    // transfer failed, so exit 1, every time.
    let data = vec![b'x'; 4_000_000];
    for round in 0..12 {
        let mut listener = listener(&["-q", "127.0.0.1:0"]);
        let mut stdin = listener.stdin.take().unwrap();
        let feeder = {
            let data = data.clone();
            // Fails once the listener has exited: what it did not take is of no interest.
            std::thread::spawn(move || drop(stdin.write_all(&data)))
        };
        let mut peer = tcp(listener.socket_addr());
        common::read_exact(&mut peer, 1000);
        common::reset(peer);
        let status = listener.wait_exit(IO_TIMEOUT);
        let stderr = listener.stderr_text();
        assert_eq!(status.code(), Some(1), "round {round}: {status:?} {stderr}");
        assert!(stderr.contains("connection reset by peer"), "{stderr}");
        feeder.join().unwrap();
    }
}
