//! `socktalk connect`: the netcat-class client over TCP, Unix sockets and UDP, against socktalk
//! servers and against plain std socket peers that check the exact bytes on the wire.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixListener;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    FullUnix, IO_TIMEOUT, Proc, Unanswering, closed_tcp_addr, closed_udp_addr, gbk, is_closed,
    len_frame, one_line_error, read_exact, read_to_end, reset, socktalk, tcp_peer, timed_failure,
    took_about,
};

/// Reads everything the client sends (EOF proves it half-closed), then answers `reply` and
/// closes; returns what it received.
fn read_all_then_reply(reply: &'static [u8]) -> impl FnOnce(TcpStream) -> Vec<u8> {
    move |mut stream| {
        let got = read_to_end(&mut stream);
        stream.write_all(reply).unwrap();
        got
    }
}

/// Runs `socktalk connect ARGS` with `stdin`, checks that it exits with `code`, and returns its
/// one-line error.
fn connect_fails(args: &[&str], stdin: impl Into<Vec<u8>>, code: i32) -> String {
    let out = socktalk()
        .arg("connect")
        .args(args)
        .write_stdin(stdin)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(code), "{out:?}");
    one_line_error(&out.stderr)
}

#[test]
fn pipes_stdin_to_an_echo_server_and_prints_the_reply() {
    let server = Proc::server(&["echo", "127.0.0.1:0"]);
    socktalk()
        .args(["connect", &server.addr])
        .write_stdin("hi\n")
        .assert()
        .success()
        .stdout("hi\n")
        .stderr("");
    // The bare host:port form works as well as the tcp:// one the server printed.
    socktalk()
        .args(["connect", &server.socket_addr().to_string()])
        .write_stdin("two\nlines\n")
        .assert()
        .success()
        .stdout("two\nlines\n");
    // Nothing typed: the client half-closes at once and exits when the server closes.
    socktalk()
        .args(["connect", &server.addr])
        .write_stdin("")
        .assert()
        .success()
        .stdout("");
}

#[test]
fn stdin_eof_half_closes_and_the_peer_can_still_answer() {
    let (addr, peer) = tcp_peer("127.0.0.1", read_all_then_reply(b"got it, bye\n"));
    socktalk()
        .args(["connect", &addr.to_string()])
        .write_stdin("first line\nsecond line\n")
        .assert()
        .success()
        .stdout("got it, bye\n");
    assert_eq!(peer.join().unwrap(), b"first line\nsecond line\n");
}

#[test]
fn binary_bytes_pass_through_unchanged_both_ways() {
    let sent: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let reply: Vec<u8> = (0..=255u8).rev().cycle().take(50_000).collect();
    let (addr, peer) = {
        let reply = reply.clone();
        tcp_peer("127.0.0.1", move |mut stream| {
            let got = read_to_end(&mut stream);
            stream.write_all(&reply).unwrap();
            got
        })
    };
    let out = socktalk()
        .args(["connect", &addr.to_string()])
        .write_stdin(sent.clone())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let got = peer.join().unwrap();
    assert_eq!(got.len(), sent.len());
    assert!(got == sent, "the peer received altered bytes");
    assert_eq!(out.stdout.len(), reply.len());
    assert!(out.stdout == reply, "the client printed altered bytes");
}

/// A piped file is read in large pieces: text whose characters straddle every piece still
/// arrives whole, transcoded both ways (utf-8 on stdin and stdout, gbk on the wire).
#[test]
fn a_large_piped_text_is_transcoded_across_read_boundaries() {
    // One ASCII byte first, so that the 2- and 3-byte characters straddle 8 KiB and 64 KiB.
    let text = format!("a{}", "中文ab€".repeat(40_000));
    let reply = format!("b{}", "回复é".repeat(30_000));
    let (addr, peer) = {
        let reply = gbk(&reply);
        tcp_peer("127.0.0.1", move |mut stream| {
            let got = read_to_end(&mut stream);
            stream.write_all(&reply).unwrap();
            got
        })
    };
    let out = socktalk()
        .args(["connect", "--encoding", "gbk", &addr.to_string()])
        .write_stdin(text.clone())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        peer.join().unwrap() == gbk(&text),
        "the peer received altered text"
    );
    assert!(
        out.stdout == reply.as_bytes(),
        "the client printed altered text"
    );
}

/// Output still going out keeps a connection from being idle: a peer sends 1 MB and closes,
/// and stdout's reader takes 64 KiB every quarter of a second, so the last of it is printed
/// seconds after the socket went quiet. With `-i 1` all of it arrives and the client exits 0,
/// instead of timing out with the rest unprinted.
#[test]
fn output_going_out_to_a_slow_stdout_is_not_idleness() {
    const PIECE: usize = 64 * 1024;
    let payload: Vec<u8> = (0..=255u8).cycle().take(16 * PIECE).collect();
    let (addr, peer) = {
        let payload = payload.clone();
        tcp_peer("127.0.0.1", move |mut stream| {
            stream.write_all(&payload).unwrap();
        })
    };
    let mut proc = Proc::start(&["connect", "-i", "1", &addr.to_string()]);
    proc.close_stdin();
    let mut got = Vec::new();
    let mut piece = vec![0; PIECE];
    while got.len() < payload.len() {
        // The slow reader of stdout.
        thread::sleep(Duration::from_millis(250));
        if proc.stdout.read_exact(&mut piece).is_err() {
            break;
        }
        got.extend_from_slice(&piece);
    }
    let status = proc.wait_exit(IO_TIMEOUT);
    assert!(status.success(), "{status:?}: {}", proc.stderr_text());
    assert_eq!(got.len(), payload.len());
    assert!(got == payload, "the client printed altered bytes");
    peer.join().unwrap();
}

#[test]
fn frame_line_sends_lines_and_prints_lines() {
    let (addr, peer) = tcp_peer(
        "127.0.0.1",
        read_all_then_reply(b"a\r\nb\n\nlast without newline"),
    );
    socktalk()
        .args(["connect", "--frame", "line", &addr.to_string()])
        .write_stdin("one\ntwo\r\n\nthree without newline")
        .assert()
        .success()
        .stdout("a\nb\n\nlast without newline\n");
    // Each stdin line is one \n-terminated line on the wire (\r\n normalised, the last line
    // terminated too).
    assert_eq!(peer.join().unwrap(), b"one\ntwo\n\nthree without newline\n");
}

#[test]
fn frame_len_sends_each_line_as_one_length_prefixed_frame() {
    let mut reply = len_frame(b"x");
    reply.extend(len_frame(b"multi word reply"));
    reply.extend(len_frame(b""));
    reply.extend(len_frame(b"end"));
    let (addr, peer) = {
        let reply = reply.clone();
        tcp_peer("127.0.0.1", move |mut stream| {
            let got = read_to_end(&mut stream);
            // Split across writes: the client must reassemble frames, not trust reads.
            for piece in reply.chunks(3) {
                stream.write_all(piece).unwrap();
            }
            got
        })
    };
    socktalk()
        .args(["connect", "--frame", "len", &addr.to_string()])
        .write_stdin("hello\n\nworld\n")
        .assert()
        .success()
        .stdout("x\nmulti word reply\n\nend\n");
    let mut expected = Vec::new();
    expected.extend([0, 0, 0, 5]);
    expected.extend(b"hello");
    expected.extend([0, 0, 0, 0]);
    expected.extend([0, 0, 0, 5]);
    expected.extend(b"world");
    assert_eq!(peer.join().unwrap(), expected);
}

#[test]
fn many_lines_go_through_in_batches_not_a_write_per_line() {
    // 100,000 lines, each way through an echo server, whole and in order.
    let lines: String = (0..100_000).map(|i| format!("line {i}\n")).collect();
    for framing in ["line", "len"] {
        let server = Proc::server(&["echo", "--frame", framing, "127.0.0.1:0"]);
        socktalk()
            .args(["connect", "--frame", framing, &server.addr])
            .write_stdin(lines.clone())
            .assert()
            .success()
            .stdout(lines.clone());
    }
    // And in batches (a system call per line, as they once were written, took over 10 s): 24
    // reads at the peer here, where a write per line would need a read for every few lines at
    // most. Counted, not timed: a busy machine only merges reads further.
    let (addr, peer) = tcp_peer("127.0.0.1", |mut stream| {
        let (mut got, mut reads) = (Vec::new(), 0);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match stream.read(&mut buf).expect("the client's lines") {
                0 => return (got, reads),
                n => {
                    reads += 1;
                    got.extend_from_slice(&buf[..n]);
                }
            }
        }
    });
    socktalk()
        .args(["connect", "--frame", "line", &addr.to_string()])
        .write_stdin(lines.clone())
        .assert()
        .success();
    let (got, reads) = peer.join().unwrap();
    assert!(
        got == lines.as_bytes(),
        "{} of {} bytes",
        got.len(),
        lines.len()
    );
    assert!(reads < 5_000, "100,000 lines came in {reads} reads");
}

#[test]
fn frame_len_round_trips_through_a_len_echo_server() {
    let server = Proc::server(&["echo", "127.0.0.1:0", "--frame", "len"]);
    socktalk()
        .args(["connect", "--frame", "len", &server.addr])
        .write_stdin("alpha\nbeta gamma\n")
        .assert()
        .success()
        .stdout("alpha\nbeta gamma\n");
}

#[test]
fn a_len_frame_above_max_frame_exits_1_with_one_line() {
    let (addr, peer) = tcp_peer("127.0.0.1", |mut stream| {
        let mut bad = vec![0, 0, 0, 100];
        bad.extend([b'z'; 20]);
        stream.write_all(&bad).unwrap();
        is_closed(&mut stream)
    });
    let out = socktalk()
        .args(["connect", "--frame", "len", "--max-frame", "10"])
        .arg(addr.to_string())
        .write_stdin("")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let line = one_line_error(&out.stderr);
    assert!(line.contains("100 bytes"), "{line}");
    assert!(line.contains("--max-frame"), "{line}");
    assert!(out.stdout.is_empty());
    assert!(peer.join().unwrap(), "the client did not close");
}

#[test]
fn a_len_client_turned_away_by_a_full_server_says_so() {
    let server = Proc::server(&["echo", "--frame", "len", "--max-conns", "1", "127.0.0.1:0"]);
    // The one place, taken: an answer proves the server counts it.
    let mut holder = common::tcp(server.socket_addr());
    holder.write_all(&len_frame(b"mine")).unwrap();
    assert_eq!(common::read_len_frame(&mut holder), b"mine");
    // Its refusal is a line of text, whatever the framing: read as a length prefix, "refu"
    // announced a frame of 1.9 GB.
    let line = connect_fails(&["--frame", "len", &server.addr], "hi\n", 1);
    assert!(
        line.ends_with("the server refused the connection: server full (--max-conns 1)"),
        "{line}"
    );
}

#[test]
fn a_len_client_of_a_tls_server_is_told_to_use_tls() {
    let server = Proc::server(&["echo", "--frame", "len", "--tls-self-signed", "127.0.0.1:0"]);
    // A socktalk server answers plain bytes with a `refused:` line of text, whatever the
    // framing (read as a length prefix it would announce 1.9 GB).
    let line = connect_fails(&["--frame", "len", &server.addr], "hi\n", 1);
    assert!(
        line.ends_with(
            "the server refused the connection: this port speaks TLS; connect with --tls \
             (socktalk), ncat --ssl or openssl s_client"
        ),
        "{line}"
    );
}

#[test]
fn a_len_client_of_another_tls_server_is_told_to_use_tls() {
    // Another TLS server answers plain bytes with a TLS alert, 15 03 03 00 02 …: a 352 MB
    // length prefix.
    let (addr, peer) = tcp_peer("127.0.0.1", |mut stream| {
        // The whole frame ("hi\n" after its 4-byte length) is read first, and what follows
        // till the client closes: unread input would make our close a reset.
        let mut frame = [0u8; 7];
        let _ = stream.read_exact(&mut frame);
        let _ = stream.write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32]);
        let _ = read_to_end(&mut stream);
    });
    let line = connect_fails(&["--frame", "len", &addr.to_string()], "hi\n", 1);
    assert!(
        line.contains("the server answered in TLS: connect with --tls"),
        "{line}"
    );
    peer.join().unwrap();
}

#[test]
fn a_peer_closing_mid_len_frame_exits_1() {
    let (addr, peer) = tcp_peer("127.0.0.1", |mut stream| {
        let _ = read_to_end(&mut stream);
        stream.write_all(&[0, 0, 0, 9, b'a', b'b']).unwrap();
    });
    let line = connect_fails(&["--frame", "len", &addr.to_string()], "q\n", 1);
    peer.join().unwrap();
    assert!(line.contains("mid-frame"), "{line}");
}

#[test]
fn a_line_above_max_frame_from_the_peer_exits_1() {
    let (addr, peer) = tcp_peer("127.0.0.1", |mut stream| {
        stream.write_all(b"ok\n").unwrap();
        stream.write_all(&[b'y'; 64]).unwrap();
        is_closed(&mut stream)
    });
    let out = socktalk()
        .args(["connect", "--frame", "line", "--max-frame", "16"])
        .arg(addr.to_string())
        .write_stdin("")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let line = one_line_error(&out.stderr);
    assert!(line.contains("16-byte limit"), "{line}");
    assert_eq!(out.stdout, b"ok\n");
    assert!(peer.join().unwrap());
}

#[test]
fn a_stdin_line_above_max_frame_is_refused_not_hung() {
    let server = Proc::server(&["echo", "127.0.0.1:0", "--frame", "line"]);
    let long = format!("{}\nshort\n", "x".repeat(100));
    let out = socktalk()
        .args([
            "connect",
            "--frame",
            "line",
            "--max-frame",
            "10",
            &server.addr,
        ])
        .write_stdin(long)
        .output()
        .unwrap();
    // The command line was right; the input was not: a runtime error.
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let line = one_line_error(&out.stderr);
    assert!(line.contains("standard input"), "{line}");
    assert!(line.contains("10-byte limit"), "{line}");
}

#[test]
fn unix_socket_by_flag_and_by_address() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("echo.sock");
    let path_text = path.to_str().unwrap();
    let server = Proc::server(&["echo", "-U", path_text]);
    assert_eq!(server.addr, format!("unix:{path_text}"));
    socktalk()
        .args(["connect", "-U", path_text])
        .write_stdin("via -U\n")
        .assert()
        .success()
        .stdout("via -U\n");
    socktalk()
        .args(["connect", &format!("unix:{path_text}")])
        .write_stdin("via unix:\n")
        .assert()
        .success()
        .stdout("via unix:\n");
}

#[test]
fn unix_peer_sees_half_close_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peer.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let peer = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let got = read_to_end(&mut stream);
        stream.write_all(b"unix reply\n").unwrap();
        got
    });
    socktalk()
        .args(["connect", "-U", path.to_str().unwrap()])
        .write_stdin("\x00\x01 unix bytes\n")
        .assert()
        .success()
        .stdout("unix reply\n");
    assert_eq!(peer.join().unwrap(), b"\x00\x01 unix bytes\n");
}

#[test]
fn unix_socket_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nobody.sock");
    let line = connect_fails(&["-U", missing.to_str().unwrap()], "x\n", 1);
    assert!(line.contains("no such socket file"), "{line}");
    // UDP over a Unix stream socket makes no sense: a usage error.
    connect_fails(&["-u", "-U", missing.to_str().unwrap()], "", 2);
}

#[test]
fn udp_each_line_is_one_datagram_against_socktalk_echo() {
    let server = Proc::server(&["echo", "-u", "127.0.0.1:0"]);
    assert!(
        server.addr.starts_with("udp://127.0.0.1:"),
        "{}",
        server.addr
    );
    let started = Instant::now();
    socktalk()
        // A long linger: the client must leave as soon as every datagram has its reply.
        .args(["connect", "-u", "--frame", "line", "--linger", "30"])
        .arg(server.socket_addr().to_string())
        .write_stdin("a\nbb\nccc\n")
        .assert()
        .success()
        .stdout("a\nbb\nccc\n");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The udp:// address the server printed needs no -u.
    socktalk()
        .args(["connect", "--frame", "line", &server.addr])
        .write_stdin("scheme\n")
        .assert()
        .success()
        .stdout("scheme\n");
}

#[test]
fn udp_peer_gets_one_datagram_per_line_and_replies_are_printed() {
    let peer_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer_socket.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let addr = peer_socket.local_addr().unwrap();
    let peer = thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        for _ in 0..3 {
            let (len, from) = peer_socket.recv_from(&mut buf).unwrap();
            got.push(buf[..len].to_vec());
            let mut reply = b"re:".to_vec();
            reply.extend_from_slice(&buf[..len]);
            peer_socket.send_to(&reply, from).unwrap();
        }
        got
    });
    socktalk()
        .args(["connect", "-u", "--frame", "line", "--linger", "30"])
        .arg(addr.to_string())
        .write_stdin("one\ntwo words\n\u{e9}t\u{e9}\n")
        .assert()
        .success()
        .stdout("re:one\nre:two words\nre:\u{e9}t\u{e9}\n");
    let got = peer.join().unwrap();
    assert_eq!(
        got,
        vec![
            b"one".to_vec(),
            b"two words".to_vec(),
            "\u{e9}t\u{e9}".as_bytes().to_vec()
        ]
    );
}

#[test]
fn udp_raw_each_stdin_write_is_one_whole_datagram_however_many_came_before() {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let addr = peer.local_addr().unwrap().to_string();
    let mut client = Proc::start(&["connect", "-u", "--linger", "30", &addr]);
    let mut buf = vec![0u8; 2048];
    // Each write is read whole and sent alone: past 8 KiB of them, a read into what a stream
    // decoder's buffer had left once cut the next line into two datagrams.
    for i in 0..12 {
        // One write (of less than PIPE_BUF, so the pipe keeps it whole), then its datagram.
        let line = format!("{i:02}{}\n", "x".repeat(997));
        let stdin = client.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).unwrap();
        let (len, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(len, line.len(), "write {i} came as more than one datagram");
        assert_eq!(&buf[..len], line.as_bytes());
        peer.send_to(b"ok\n", from).unwrap();
    }
    client.close_stdin();
    assert!(client.wait_exit(IO_TIMEOUT).success());
    assert_eq!(client.stdout_rest(), "ok\n".repeat(12));
}

#[test]
fn udp_silent_peer_ends_after_linger() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    silent.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let started = Instant::now();
    socktalk()
        .args(["connect", "-u", "--frame", "line", "--linger", "0.3"])
        .arg(silent.local_addr().unwrap().to_string())
        .write_stdin("anyone?\n")
        .assert()
        .success()
        .stdout("");
    assert!(started.elapsed() >= Duration::from_millis(300));
    let mut buf = [0u8; 64];
    let (len, _) = silent.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..len], b"anyone?");
}

#[test]
fn udp_to_a_closed_port_is_an_error() {
    let addr = closed_udp_addr("127.0.0.1");
    let line = connect_fails(&["-u", "--frame", "line", &addr.to_string()], "hello?\n", 1);
    assert!(line.contains(&format!("udp://{addr}")), "{line}");
    assert!(line.contains("connection refused"), "{line}");
}

#[test]
fn udp_refuses_len_framing() {
    let line = connect_fails(&["-u", "--frame", "len", "127.0.0.1:9"], "", 2);
    assert!(line.contains("--frame len"), "{line}");
}

#[test]
fn ipv6_loopback_tcp_and_udp() {
    let server = Proc::server(&["echo", "[::1]:0"]);
    let port = server.socket_addr().port();
    socktalk()
        .args(["connect", &format!("[::1]:{port}")])
        .write_stdin("over six\n")
        .assert()
        .success()
        .stdout("over six\n");
    let (addr, peer) = tcp_peer("::1", read_all_then_reply(b"v6 peer\n"));
    assert!(addr.is_ipv6());
    socktalk()
        .args(["connect", &addr.to_string()])
        .write_stdin("to v6\n")
        .assert()
        .success()
        .stdout("v6 peer\n");
    assert_eq!(peer.join().unwrap(), b"to v6\n");
    let udp = Proc::server(&["echo", "-u", "[::1]:0"]);
    socktalk()
        .args(["connect", "--frame", "line", &udp.addr])
        .write_stdin("dgram six\n")
        .assert()
        .success()
        .stdout("dgram six\n");
}

#[test]
fn an_ipv6_address_with_a_zone_is_connected_to_over_tcp_and_udp() {
    // A zone names the link of a link-local address (`[fe80::1%eth0]`); loopback has one
    // too, index 1, which the kernel accepts and ignores.
    let server = Proc::server(&["echo", "[::1]:0"]);
    let port = server.socket_addr().port();
    socktalk()
        .args(["connect", &format!("[::1%1]:{port}")])
        .write_stdin("zoned\n")
        .assert()
        .success()
        .stdout("zoned\n");
    let udp = Proc::server(&["echo", "-u", "[::1]:0"]);
    let port = udp.socket_addr().port();
    socktalk()
        .args(["connect", "-u", &format!("[::1%1]:{port}")])
        .write_stdin("zoned dgram\n")
        .assert()
        .success()
        .stdout("zoned dgram\n");
}

#[test]
fn a_failing_stdin_or_stdout_is_named_in_the_error() {
    let server = Proc::server(&["echo", "127.0.0.1:0"]);
    let run = |stdin: std::fs::File, stdout: std::fs::File| {
        std::process::Command::new(common::bin())
            .args(["connect", &server.addr])
            .stdin(stdin)
            .stdout(stdout)
            .output()
            .unwrap()
    };
    let dir = std::env::temp_dir();
    let out = run(
        std::fs::File::open(&dir).unwrap(),
        std::fs::File::create("/dev/null").unwrap(),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let line = one_line_error(&out.stderr);
    assert!(line.ends_with("standard input: is a directory"), "{line}");
    let out = run(
        std::fs::File::open("/dev/zero").unwrap(),
        std::fs::File::create("/dev/full").unwrap(),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let line = one_line_error(&out.stderr);
    assert!(
        line.ends_with("standard output: no space left on device"),
        "{line}"
    );
}

#[test]
fn connection_refused_exits_1() {
    for ip in ["127.0.0.1", "::1"] {
        let addr = closed_tcp_addr(ip);
        let out = socktalk()
            .args(["connect", &addr.to_string()])
            .write_stdin("x\n")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let line = one_line_error(&out.stderr);
        assert!(line.contains("connection refused"), "{line}");
        assert!(line.contains(&addr.to_string()), "{line}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn the_peer_closing_first_ends_the_client_even_with_stdin_open() {
    let (addr, peer) = tcp_peer("127.0.0.1", |mut stream| {
        stream.write_all(b"go away\n").unwrap();
        stream.shutdown(Shutdown::Both).unwrap();
    });
    // Stdin stays open (a live Proc pipe) and silent: the client must still exit when the peer
    // leaves, once the pipe has been silent for --linger.
    let mut client = Proc::start(&["connect", "--linger", "0.3", &addr.to_string()]);
    assert_eq!(client.next_line(), "go away");
    assert!(client.wait_exit(IO_TIMEOUT).success());
    peer.join().unwrap();
    let mut rest = String::new();
    client.stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "");
}

#[test]
fn udp_lines_up_to_the_largest_datagram_pass_and_longer_ones_are_refused() {
    const MAX_DATAGRAM: usize = 65_507;
    let server = Proc::server(&["echo", "-u", "127.0.0.1:0"]);
    let largest = format!("{}\n", "x".repeat(MAX_DATAGRAM));
    socktalk()
        .args(["connect", "--frame", "line", &server.addr])
        .write_stdin(largest.clone())
        .assert()
        .success()
        .stdout(largest);
    let line = connect_fails(
        &["--frame", "line", &server.addr],
        format!("{}\n", "x".repeat(MAX_DATAGRAM + 1)),
        1,
    );
    assert!(line.contains("65508-byte"), "{line}");
    assert!(line.contains("UDP datagram"), "{line}");
    // The server is unharmed.
    socktalk()
        .args(["connect", "--frame", "line", &server.addr])
        .write_stdin("still here\n")
        .assert()
        .success()
        .stdout("still here\n");
}

#[test]
fn a_peer_reset_ends_the_client_with_code_1_after_what_arrived() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut client = Proc::start(&["connect", &addr.to_string()]);
    let (mut peer, _) = listener.accept().unwrap();
    peer.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    client.type_line("ping");
    assert_eq!(read_exact(&mut peer, 5), b"ping\n");
    peer.write_all(b"partial answer\n").unwrap();
    assert_eq!(client.next_line(), "partial answer");
    reset(peer);
    let status = client.wait_exit(IO_TIMEOUT);
    assert_eq!(status.code(), Some(1));
    let line = one_line_error(client.stderr_text().as_bytes());
    assert!(line.to_lowercase().contains("reset"), "{line}");
}

#[test]
fn piped_stdin_goes_out_in_full_when_the_peer_finishes_first() {
    // The peer says its piece, shuts down its write side, and reads on to the end.
    let (addr, peer) = tcp_peer("127.0.0.1", |mut stream| {
        stream.write_all(b"ready\n").unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        read_to_end(&mut stream)
    });
    let input: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
    socktalk()
        .args(["connect", &addr.to_string()])
        .write_stdin(input.clone())
        .assert()
        .success()
        .stdout("ready\n");
    let got = peer.join().unwrap();
    assert_eq!(got.len(), input.len());
    assert!(got == input, "the bytes differ");
}

#[test]
fn udp_datagrams_without_a_reply_are_counted_in_a_warning() {
    // A peer that takes datagrams and never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let out = socktalk()
        .args(["connect", "-u", "--frame", "line", "--linger", "0.2", &addr])
        .write_stdin("one\ntwo\nthree\n")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("3 of 3 datagrams got no reply"), "{stderr}");
    drop(silent);
}

#[test]
fn wait_gives_up_on_a_server_that_never_answers_with_exit_code_3() {
    let server = Unanswering::bind();
    let addr = server.addr.to_string();
    let (code, err, took) = timed_failure(&["connect", "-w", "1", &addr]);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains(&format!(
            "cannot connect to tcp://{addr}: no answer within 1s (-w)"
        )),
        "{err}"
    );
    took_about(took, 1.0);
    let (code, err, took) = timed_failure(&["connect", "--wait", "1.5", &format!("tcp://{addr}")]);
    assert_eq!(code, Some(3), "{err}");
    took_about(took, 1.5);
}

#[test]
fn wait_bounds_the_tls_handshake_too() {
    // A server that accepts and says nothing: the TLS handshake never ends, and -w's time left
    // after the connect, not the fixed handshake limit (10 s), ends it.
    let (addr, holder) = tcp_peer("127.0.0.1", |mut stream| read_to_end(&mut stream));
    let addr = addr.to_string();
    let pin = "00".repeat(32);
    let (code, err, took) =
        timed_failure(&["connect", "-w", "1", "--tls-fingerprint", &pin, &addr]);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("TLS handshake with 127.0.0.1 not done within 1s (-w)"),
        "{err}"
    );
    took_about(took, 1.0);
    // It got the client's hello, then the client's close.
    assert!(!holder.join().unwrap().is_empty());
}

#[test]
fn bad_waits_are_usage_errors() {
    for wait in ["--wait=-1", "-wabc", "--wait=nan"] {
        let err = connect_fails(&[wait, "127.0.0.1:1"], "", 2);
        assert!(err.contains("wait"), "{wait}: {err}");
    }
}

#[test]
fn wait_0_waits_for_as_long_as_it_takes() {
    // -w 0 has no limit: a refused connect still fails at once, with exit code 1 (not 3).
    let addr = closed_tcp_addr("127.0.0.1").to_string();
    let err = connect_fails(&["-w", "0", &addr], "", 1);
    assert!(err.contains("connection refused"), "{err}");
}

#[test]
fn a_unix_client_tries_again_while_the_accept_queue_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.sock");
    let mut server = FullUnix::new(&path);
    let mut client = Proc::start(&["-v", "connect", "-w", "10", "-U", path.to_str().unwrap()]);
    // The client says when it finds the queue full; then room is made for it.
    loop {
        let line = client.next_stderr_line();
        assert!(
            !line.is_empty(),
            "the client ended: {}",
            client.stderr_text()
        );
        if line.contains("the server's accept queue is full; trying again") {
            break;
        }
    }
    drop(server.accept_one());
    let mut conn = server.accept_one();
    client.type_line("made it");
    client.close_stdin();
    assert_eq!(read_to_end(&mut conn), b"made it\n");
    drop(conn);
    assert!(client.wait_exit(IO_TIMEOUT).success());
}

#[test]
fn a_unix_queue_that_stays_full_times_out_with_exit_code_3() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.sock");
    let _server = FullUnix::new(&path);
    let target = format!("unix:{}", path.display());
    let (code, err, took) = timed_failure(&["connect", "-w", "1", &target]);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains(&format!(
            "cannot connect to {target}: the server's accept queue stayed full for 1s (-w)"
        )),
        "{err}"
    );
    took_about(took, 1.0);
}

/// Runs `socktalk connect ARGS` with stdin left open (nothing typed, never closed), until it
/// exits by itself; returns its exit code, stdout, one-line error and how long it took.
fn connect_stdin_open(args: &[&str]) -> (Option<i32>, String, String, Duration) {
    let started = Instant::now();
    let mut client = Proc::start(&[&["connect"], args].concat());
    let status = client.wait_exit(Duration::from_secs(20));
    let took = started.elapsed();
    let stdout = client.stdout_rest();
    let stderr = client.stderr_text();
    (
        status.code(),
        stdout,
        one_line_error(stderr.as_bytes()),
        took,
    )
}

#[test]
fn idle_timeout_closes_a_silent_connection_with_exit_code_3() {
    // Neither side sends: the peer waits for the client to close.
    let (addr, peer) = tcp_peer("127.0.0.1", |mut stream| read_to_end(&mut stream));
    let (code, _, err, took) = connect_stdin_open(&["-i", "1", &addr.to_string()]);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("nothing sent or received for 1s (--idle-timeout)"),
        "{err}"
    );
    took_about(took, 1.0);
    assert_eq!(peer.join().unwrap(), b"");
}

#[test]
fn traffic_keeps_an_idle_timeout_from_closing() {
    // Five lines 400 ms apart: 2 s in all, longer than -i 1, yet no gap reaches it; then
    // silence, until the client closes.
    let (addr, peer) = tcp_peer("127.0.0.1", |mut stream| {
        for n in 0..5 {
            thread::sleep(Duration::from_millis(400));
            stream.write_all(format!("line {n}\n").as_bytes()).unwrap();
        }
        read_to_end(&mut stream)
    });
    let (code, stdout, err, took) = connect_stdin_open(&["--idle-timeout", "1", &addr.to_string()]);
    assert_eq!(code, Some(3), "{err}");
    assert_eq!(stdout, "line 0\nline 1\nline 2\nline 3\nline 4\n");
    assert!(took >= Duration::from_millis(2900), "took {took:?}");
    peer.join().unwrap();
}

#[test]
fn idle_timeout_is_for_streams() {
    let err = connect_fails(&["-u", "-i", "5", "127.0.0.1:9"], "", 2);
    assert!(err.contains("--idle-timeout"), "{err}");
    let err = connect_fails(&["--idle-timeout=-2", "127.0.0.1:9"], "", 2);
    assert!(err.contains("--idle-timeout"), "{err}");
}

#[test]
fn limits_too_far_off_for_the_clock_are_no_limits() {
    let server = Proc::server(&["echo", "127.0.0.1:0"]);
    socktalk()
        .args(["connect", "-w", "1e19", "-i", "1e19", &server.addr])
        .write_stdin("hi\n")
        .assert()
        .success()
        .stdout("hi\n");
}
