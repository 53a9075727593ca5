//! `socktalk talk`: one-to-one chat over TCP and UDP, between two socktalk processes and
//! against raw std socket peers.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};

use common::{
    IO_TIMEOUT, Proc, closed_tcp_addr, is_closed, one_line_error, read_exact, read_to_end,
    socktalk, tcp,
};

/// `<NAME> text` → `(NAME, text)`.
fn split_message(line: &str) -> (&str, &str) {
    let rest = line
        .strip_prefix('<')
        .unwrap_or_else(|| panic!("not a message line: {line:?}"));
    rest.split_once("> ")
        .unwrap_or_else(|| panic!("not a message line: {line:?}"))
}

/// A TCP listener and a dialer, after one line each way; returns them with the name the
/// listener shows for the dialer.
fn tcp_conversation(extra: &[&str]) -> (Proc, Proc, String) {
    let mut args = vec!["talk", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut listener = Proc::server(&args);
    assert!(
        listener.addr.starts_with("tcp://127.0.0.1:"),
        "{}",
        listener.addr
    );
    let mut dialer = Proc::start(&["talk", &listener.addr]);
    dialer.type_line("hello from the dialer");
    let line = listener.next_line();
    let (name, text) = split_message(&line);
    assert!(name.starts_with("127.0.0.1:"), "{line}");
    assert_eq!(text, "hello from the dialer");
    let name = name.to_string();
    listener.type_line("hello from the listener");
    assert_eq!(
        dialer.next_line(),
        format!("<{}> hello from the listener", listener.socket_addr())
    );
    (listener, dialer, name)
}

#[test]
fn lines_cross_both_ways_full_duplex() {
    let (mut listener, mut dialer, name) = tcp_conversation(&[]);
    let listener_name = listener.socket_addr().to_string();
    // Both sides type at once, neither waiting for the other.
    for i in 0..5 {
        listener.type_line(&format!("from listener {i}"));
        dialer.type_line(&format!("from dialer {i}"));
    }
    for i in 0..5 {
        assert_eq!(listener.next_line(), format!("<{name}> from dialer {i}"));
        assert_eq!(
            dialer.next_line(),
            format!("<{listener_name}> from listener {i}")
        );
    }
    // Text that merely contains "bye" does not end anything; unicode passes intact.
    dialer.type_line("goodbye is not bye, 你好 é");
    assert_eq!(
        listener.next_line(),
        format!("<{name}> goodbye is not bye, 你好 é")
    );
    listener.type_line("");
    assert_eq!(dialer.next_line(), format!("<{listener_name}> "));
    assert!(listener.child.try_wait().unwrap().is_none());
    assert!(dialer.child.try_wait().unwrap().is_none());
}

#[test]
fn bye_from_the_dialer_ends_both_sides() {
    let (mut listener, mut dialer, name) = tcp_conversation(&[]);
    dialer.type_line("bye");
    assert_eq!(listener.next_line(), format!("<{name}> bye"));
    assert!(dialer.wait_exit(IO_TIMEOUT).success());
    assert!(listener.wait_exit(IO_TIMEOUT).success());
    // Status lines went to stderr; stdout holds only the conversation.
    assert_eq!(listener.stdout_rest(), "");
    assert_eq!(dialer.stdout_rest(), "");
    let listener_err = listener.stderr_text();
    assert!(
        listener_err.contains("* connected with 127.0.0.1:"),
        "{listener_err}"
    );
    assert!(listener_err.contains("said bye"), "{listener_err}");
    let dialer_err = dialer.stderr_text();
    assert!(
        dialer_err.contains("* connected to 127.0.0.1:"),
        "{dialer_err}"
    );
    assert!(dialer_err.contains("you said bye"), "{dialer_err}");
}

#[test]
fn bye_from_the_listener_ends_both_sides_whatever_its_case() {
    let (mut listener, mut dialer, _) = tcp_conversation(&[]);
    listener.type_line("  Bye ");
    assert_eq!(
        dialer.next_line(),
        format!("<{}>   Bye ", listener.socket_addr())
    );
    assert!(listener.wait_exit(IO_TIMEOUT).success());
    assert!(dialer.wait_exit(IO_TIMEOUT).success());
}

#[test]
fn quiet_talk_prints_no_status_lines() {
    let mut listener = Proc::server(&["-q", "talk", "--listen", "127.0.0.1:0"]);
    let mut dialer = Proc::start(&["-q", "talk", &listener.addr]);
    dialer.type_line("shh");
    assert!(listener.next_line().ends_with("> shh"));
    dialer.type_line("bye");
    assert!(listener.next_line().ends_with("> bye"));
    assert!(dialer.wait_exit(IO_TIMEOUT).success());
    assert!(listener.wait_exit(IO_TIMEOUT).success());
    assert_eq!(listener.stderr_text(), "");
    assert_eq!(dialer.stderr_text(), "");
}

#[test]
fn keep_listening_takes_the_next_peer_after_bye() {
    let (mut listener, mut first, name) = tcp_conversation(&["-k"]);
    first.type_line("bye");
    assert_eq!(listener.next_line(), format!("<{name}> bye"));
    assert!(first.wait_exit(IO_TIMEOUT).success());
    assert!(
        listener.child.try_wait().unwrap().is_none(),
        "-k listener left"
    );
    for round in 0..2 {
        let mut next = Proc::start(&["talk", &listener.addr]);
        next.type_line(&format!("peer {round} here"));
        let line = listener.next_line();
        assert!(line.ends_with(&format!("> peer {round} here")), "{line}");
        listener.type_line(&format!("welcome {round}"));
        assert_eq!(
            next.next_line(),
            format!("<{}> welcome {round}", listener.socket_addr())
        );
        next.type_line("bye");
        assert!(listener.next_line().ends_with("> bye"));
        assert!(next.wait_exit(IO_TIMEOUT).success());
    }
    assert!(listener.child.try_wait().unwrap().is_none());
}

#[test]
fn a_third_peer_is_told_busy_and_the_conversation_goes_on() {
    let (mut listener, mut dialer, name) = tcp_conversation(&[]);
    let mut intruder = tcp(listener.socket_addr());
    // Not naming the peer: that is nobody else's business.
    let busy = "* busy: in a conversation already; try later\n";
    assert_eq!(
        String::from_utf8(read_exact(&mut intruder, busy.len())).unwrap(),
        busy
    );
    assert!(is_closed(&mut intruder));
    dialer.type_line("still here?");
    assert_eq!(listener.next_line(), format!("<{name}> still here?"));
    listener.type_line("yes");
    assert_eq!(
        dialer.next_line(),
        format!("<{}> yes", listener.socket_addr())
    );
}

#[test]
fn a_raw_peer_sending_without_newline_is_displayed() {
    // As a classic Python exercise's client: conn.send(input().encode()), no newline.
    let mut listener = Proc::server(&["talk", "--listen", "127.0.0.1:0"]);
    let mut peer = tcp(listener.socket_addr());
    let name = peer.local_addr().unwrap().to_string();
    peer.write_all(b"hello from python").unwrap();
    assert_eq!(listener.next_line(), format!("<{name}> hello from python"));
    listener.type_line("hi python");
    assert_eq!(read_exact(&mut peer, 10), b"hi python\n");
    peer.write_all(b"second message").unwrap();
    assert_eq!(listener.next_line(), format!("<{name}> second message"));
    // Invalid utf-8 is shown replaced, never fatal; \r\n is trimmed.
    peer.write_all(b"bad \xff bytes\r\n").unwrap();
    assert_eq!(listener.next_line(), format!("<{name}> bad \u{fffd} bytes"));
    // The peer hanging up without bye ends the conversation cleanly.
    drop(peer);
    assert!(listener.wait_exit(IO_TIMEOUT).success());
    assert!(listener.stderr_text().contains(&format!("{name} left")));
}

#[test]
fn dialling_a_raw_server_peer() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let mut talker = Proc::start(&["talk", &addr.to_string()]);
    let (mut peer, _) = server.accept().unwrap();
    peer.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    peer.write_all(b"no newline here").unwrap();
    assert_eq!(talker.next_line(), format!("<{addr}> no newline here"));
    talker.type_line("answer");
    assert_eq!(read_exact(&mut peer, 7), b"answer\n");
    peer.write_all(b"two\nlines\n").unwrap();
    assert_eq!(talker.next_line(), format!("<{addr}> two"));
    assert_eq!(talker.next_line(), format!("<{addr}> lines"));
    talker.type_line("bye");
    assert_eq!(read_exact(&mut peer, 4), b"bye\n");
    // Saying bye closes our side of the connection.
    assert!(is_closed(&mut peer));
    assert!(talker.wait_exit(IO_TIMEOUT).success());
}

#[test]
fn gbk_talk_carries_chinese_intact() {
    let mut listener = Proc::server(&["talk", "--encoding", "gbk", "--listen", "127.0.0.1:0"]);
    let mut dialer = Proc::start(&["talk", "--encoding", "gbk", &listener.addr]);
    dialer.type_line("你好");
    assert!(listener.next_line().ends_with("> 你好"));
    listener.type_line("再见 world");
    assert_eq!(
        dialer.next_line(),
        format!("<{}> 再见 world", listener.socket_addr())
    );
}

#[test]
fn gbk_talk_puts_gbk_bytes_on_the_wire() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let mut talker = Proc::start(&["talk", "--encoding", "gbk", &addr.to_string()]);
    let (mut peer, _) = server.accept().unwrap();
    peer.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    talker.type_line("你好");
    assert_eq!(read_exact(&mut peer, 5), b"\xc4\xe3\xba\xc3\n");
    peer.write_all(b"\xd4\xd9\xbc\xfb\n").unwrap();
    assert_eq!(talker.next_line(), format!("<{addr}> 再见"));
    // A character split across two writes is still one character.
    peer.write_all(b"\xca").unwrap();
    peer.flush().unwrap();
    peer.write_all(b"\xc0\xbd\xe7\n").unwrap();
    assert_eq!(talker.next_line(), format!("<{addr}> 世界"));
    // Bytes that are not gbk are replaced, not fatal.
    peer.write_all(b"ok\xff\n").unwrap();
    assert_eq!(talker.next_line(), format!("<{addr}> ok\u{fffd}"));
}

/// A `talk -u` process bound to an ephemeral loopback port.
fn udp_talker(extra: &[&str]) -> Proc {
    let mut args = vec!["talk", "-u", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let talker = Proc::server(&args);
    assert!(
        talker.addr.starts_with("udp://127.0.0.1:"),
        "{}",
        talker.addr
    );
    talker
}

#[test]
fn udp_talk_the_caller_speaks_first_then_both_ways_then_bye() {
    // B either binds no port in particular or one of its own: both work.
    for b_binds in [false, true] {
        let mut a = udp_talker(&[]);
        let a_addr = a.socket_addr().to_string();
        let mut b = if b_binds {
            let b = Proc::server(&["talk", "-u", "--listen", "127.0.0.1:0", &a_addr]);
            assert!(b.addr.starts_with("udp://127.0.0.1:"), "{}", b.addr);
            b
        } else {
            Proc::start(&["talk", "-u", &a_addr])
        };
        b.type_line("hello A");
        let line = a.next_line();
        let (b_name, text) = split_message(&line);
        assert!(b_name.starts_with("127.0.0.1:"), "{line}");
        assert_eq!(text, "hello A");
        let b_name = b_name.to_string();
        if b_binds {
            // A bound B talks from the port it announced.
            assert_eq!(b_name, b.socket_addr().to_string());
        }
        a.type_line("hello B, 你好");
        assert_eq!(b.next_line(), format!("<{a_addr}> hello B, 你好"));
        b.type_line("again");
        assert_eq!(a.next_line(), format!("<{b_name}> again"));
        b.type_line("bye");
        assert_eq!(a.next_line(), format!("<{b_name}> bye"));
        assert!(b.wait_exit(IO_TIMEOUT).success());
        assert!(a.wait_exit(IO_TIMEOUT).success());
        assert!(a.stderr_text().contains("said bye"));
    }
}

#[test]
fn udp_listener_with_no_peer_yet_drops_what_is_typed_and_says_so() {
    let mut a = udp_talker(&[]);
    a.type_line("too early");
    assert!(
        a.next_stderr_line().contains("nobody to talk to yet"),
        "no status line"
    );
    let mut b = Proc::start(&["talk", "-u", &a.socket_addr().to_string()]);
    b.type_line("now me");
    assert!(a.next_line().ends_with("> now me"));
    a.type_line("now you");
    // The early line was never sent: the first thing B hears is the answer.
    assert_eq!(b.next_line(), format!("<{}> now you", a.socket_addr()));
    a.type_line("bye");
    assert!(b.next_line().ends_with("> bye"));
    assert!(a.wait_exit(IO_TIMEOUT).success());
    assert!(b.wait_exit(IO_TIMEOUT).success());
}

#[test]
fn udp_with_a_known_peer_socktalk_may_speak_first_and_ignores_strangers() {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let mut talker = udp_talker(&[&peer_addr.to_string()]);
    let talker_addr = talker.socket_addr();
    talker.type_line("me first");
    let mut buf = [0u8; 2048];
    let (len, from) = peer.recv_from(&mut buf).unwrap();
    // One datagram per line, without a newline, from the port it announced.
    assert_eq!(&buf[..len], b"me first");
    assert_eq!(from, talker_addr);
    peer.send_to(b"got you", talker_addr).unwrap();
    assert_eq!(talker.next_line(), format!("<{peer_addr}> got you"));
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    stranger.send_to(b"intruder", talker_addr).unwrap();
    peer.send_to(b"still me\n", talker_addr).unwrap();
    assert_eq!(talker.next_line(), format!("<{peer_addr}> still me"));
    peer.send_to(b"bye", talker_addr).unwrap();
    assert_eq!(talker.next_line(), format!("<{peer_addr}> bye"));
    assert!(talker.wait_exit(IO_TIMEOUT).success());
    assert_eq!(talker.stdout_rest(), "");
}

/// A peer learnt from its first datagram that starts again (a student's client, run once
/// more) speaks from a new port; what it sends is ignored, and the talk says so instead of
/// dropping it without a word.
#[test]
fn udp_messages_from_a_new_port_are_ignored_with_a_word() {
    let mut talker = udp_talker(&[]);
    let talker_addr = talker.socket_addr();
    let first = UdpSocket::bind("127.0.0.1:0").unwrap();
    first.send_to(b"hello", talker_addr).unwrap();
    assert_eq!(
        talker.next_line(),
        format!("<{}> hello", first.local_addr().unwrap())
    );
    let again = UdpSocket::bind("127.0.0.1:0").unwrap();
    again.send_to(b"me again", talker_addr).unwrap();
    let said = talker.next_stderr_line();
    assert!(said.contains("talking with"), "{said}");
    let said = talker.next_stderr_line();
    assert_eq!(
        said,
        format!(
            "* ignored a message from {}: talking with {}",
            again.local_addr().unwrap(),
            first.local_addr().unwrap()
        )
    );
}

#[test]
fn udp_gbk_datagrams() {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let peer_addr: SocketAddr = peer.local_addr().unwrap();
    let mut talker = udp_talker(&["--encoding", "gbk", &peer_addr.to_string()]);
    talker.type_line("你好");
    let mut buf = [0u8; 2048];
    let (len, from) = peer.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..len], b"\xc4\xe3\xba\xc3");
    peer.send_to(b"\xd4\xd9\xbc\xfb", from).unwrap();
    assert_eq!(talker.next_line(), format!("<{peer_addr}> 再见"));
}

#[test]
fn talk_usage_and_connect_errors() {
    for (args, code) in [
        (&["talk"][..], 2),
        (&["talk", "-k", "127.0.0.1:1"], 2),
        (&["talk", "--listen", "127.0.0.1:0", "127.0.0.1:1"], 2),
        (&["talk", "127.0.0.1:99999"], 2),
        (&["talk", "--encoding", "klingon", "127.0.0.1:1"], 2),
        (&["talk", "-u", "tcp://127.0.0.1:1"], 2),
        // Families that cannot reach each other, found before anything is announced.
        (&["talk", "-u", "--listen", "127.0.0.1:0", "[::1]:9"], 2),
        (&["talk", "-u", "--listen", "[::1]:0", "127.0.0.1:9"], 2),
    ] {
        let out = socktalk().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {out:?}");
        one_line_error(&out.stderr);
    }
    let addr = closed_tcp_addr("127.0.0.1");
    let out = socktalk()
        .args(["talk", &addr.to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(one_line_error(&out.stderr).contains("connection refused"));
    // A listener whose port is taken.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let out = socktalk()
        .args(["talk", "--listen", &taken.local_addr().unwrap().to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(one_line_error(&out.stderr).contains("already in use"));
    // The taken port's owner is undisturbed.
    assert!(TcpStream::connect(taken.local_addr().unwrap()).is_ok());
    // A UDP PEER the kernel will not connect to (a broadcast address, without SO_BROADCAST) is
    // named in the error, from an ephemeral port or from a --listen address.
    for args in [
        &["talk", "-u", "255.255.255.255:9"][..],
        &["talk", "-u", "--listen", "127.0.0.1:0", "255.255.255.255:9"],
    ] {
        let out = socktalk().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        let error = one_line_error(&out.stderr);
        assert!(
            error.contains("cannot connect to udp://255.255.255.255:9"),
            "{args:?}: {error}"
        );
    }
}

#[test]
fn lines_piped_before_the_peer_arrives_are_delivered() {
    // As `printf 'hello\n' | socktalk talk --listen …`: stdin has ended before anyone calls.
    let mut listener = Proc::start(&["talk", "--listen", "127.0.0.1:0"]);
    listener.type_line("hello early");
    listener.type_line("and again");
    listener.close_stdin();
    let announce = listener.next_line();
    let addr: SocketAddr = announce
        .strip_prefix("listening on tcp://")
        .unwrap_or_else(|| panic!("{announce:?}"))
        .parse()
        .unwrap();
    let mut peer = tcp(addr);
    // Everything typed, then EOF: the listener has nothing more to say.
    assert_eq!(read_to_end(&mut peer), b"hello early\nand again\n");
    drop(peer);
    assert!(listener.wait_exit(IO_TIMEOUT).success());

    // The same for a caller whose stdin ends at once.
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut caller = Proc::start(&["talk", &server.local_addr().unwrap().to_string()]);
    caller.type_line("one-shot");
    caller.close_stdin();
    let (mut peer, _) = server.accept().unwrap();
    peer.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    assert_eq!(read_to_end(&mut peer), b"one-shot\n");
    drop(peer);
    assert!(caller.wait_exit(IO_TIMEOUT).success());
}

#[test]
fn unix_socket_talk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("talk.sock");
    let addr = format!("unix:{}", path.display());
    let mut listener = Proc::server(&["talk", "--listen", &addr]);
    assert_eq!(listener.addr, addr);
    let mut dialer = Proc::start(&["talk", &addr]);
    dialer.type_line("over unix");
    let line = listener.next_line();
    let (name, text) = split_message(&line);
    assert!(name.starts_with("unix:"), "{line}");
    assert_eq!(text, "over unix");
    listener.type_line("back over unix");
    assert_eq!(dialer.next_line(), format!("<{addr}> back over unix"));
    listener.type_line("bye");
    assert_eq!(dialer.next_line(), format!("<{addr}> bye"));
    assert!(listener.wait_exit(IO_TIMEOUT).success());
    assert!(dialer.wait_exit(IO_TIMEOUT).success());
    // The listener cleaned up its socket file.
    assert!(!path.exists());
}

#[test]
fn udp_keep_listening_takes_the_next_peer_after_bye() {
    let mut a = udp_talker(&["-k"]);
    let a_addr = a.socket_addr();
    for round in 0..2 {
        let peer = common::udp_for(a_addr);
        let peer_addr = peer.local_addr().unwrap();
        peer.send_to(format!("peer {round}").as_bytes(), a_addr)
            .unwrap();
        assert_eq!(a.next_line(), format!("<{peer_addr}> peer {round}"));
        a.type_line(&format!("hello {round}"));
        let mut buf = [0u8; 256];
        let (len, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(from, a_addr);
        assert_eq!(&buf[..len], format!("hello {round}").as_bytes());
        peer.send_to(b"bye", a_addr).unwrap();
        assert_eq!(a.next_line(), format!("<{peer_addr}> bye"));
    }
    assert!(a.child.try_wait().unwrap().is_none(), "-k talker left");
}

#[test]
fn udp_to_a_port_nobody_listens_on_is_reported_and_the_talk_goes_on() {
    let closed = common::closed_udp_addr("127.0.0.1");
    let mut a = udp_talker(&[&closed.to_string()]);
    a.type_line("anyone?");
    let status = a.next_stderr_line();
    assert!(
        status.contains(&format!("{closed} is not listening (port unreachable)")),
        "{status}"
    );
    // Still talking: a peer that comes later on another port is a stranger, but the talker
    // is alive and still answers bye.
    a.type_line("bye");
    assert!(a.wait_exit(IO_TIMEOUT).success());
}

/// Lines pasted at once to a peer not listening yet: each send after the first hears of the
/// one before it (ICMP port unreachable), and the talk reports it and goes on, as it does for
/// one line, until the peer comes.
#[test]
fn udp_lines_pasted_to_a_peer_not_there_yet_are_reported_and_the_talk_goes_on() {
    let closed = common::closed_udp_addr("127.0.0.1");
    let mut a = udp_talker(&[&closed.to_string()]);
    a.type_line("one\ntwo\nthree");
    let status = a.next_stderr_line();
    assert!(
        status.contains(&format!("{closed} is not listening (port unreachable)")),
        "{status}"
    );
    // The peer starts on that port; the talk is still there for it.
    let peer = UdpSocket::bind(closed).unwrap();
    peer.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    a.type_line("four");
    let mut buf = [0u8; 64];
    loop {
        // A line the peer's port got just as it started is fine too; "four" must come.
        let (len, _) = peer.recv_from(&mut buf).expect("the talk's next line");
        if &buf[..len] == b"four" {
            break;
        }
    }
    peer.send_to(b"bye", a.socket_addr()).unwrap();
    assert_eq!(a.next_line(), format!("<{closed}> bye"));
    assert!(a.wait_exit(IO_TIMEOUT).success());
}

/// A message too big for one datagram is not sent, and the talk says so and goes on.
#[test]
fn udp_a_message_too_big_for_a_datagram_is_reported_and_the_talk_goes_on() {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut a = udp_talker(&[&peer.local_addr().unwrap().to_string()]);
    a.type_line(&"x".repeat(70_000));
    let status = a.next_stderr_line();
    assert!(
        status.contains(
            "not sent: a 70000-byte message does not fit in one datagram (at most 65507 bytes)"
        ),
        "{status}"
    );
    a.type_line("bye");
    let mut buf = [0u8; 64];
    let (len, _) = peer.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..len], b"bye");
    assert!(a.wait_exit(IO_TIMEOUT).success());
}

/// A dual-stack `[::]` talker hears an IPv4 peer, which its socket sees as
/// `[::ffff:127.0.0.1]`, and shows it as the IPv4 address it is.
#[test]
fn udp_on_a_dual_stack_socket_hears_an_ipv4_peer() {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let mut a = Proc::server(&["talk", "-u", "--listen", "[::]:0", &peer_addr.to_string()]);
    let port = a.socket_addr().port();
    a.type_line("hi");
    let mut buf = [0u8; 64];
    let (len, _) = peer.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..len], b"hi");
    peer.send_to(b"hello back", ("127.0.0.1", port)).unwrap();
    assert_eq!(a.next_line(), format!("<{peer_addr}> hello back"));
    peer.send_to(b"bye", ("127.0.0.1", port)).unwrap();
    assert_eq!(a.next_line(), format!("<{peer_addr}> bye"));
    assert!(a.wait_exit(IO_TIMEOUT).success());
}

/// A UDP talk bound to a wildcard address, without a PEER, answers the peer from the address
/// the peer sent to (here `127.0.0.2`, where the kernel would pick `127.0.0.1`).
#[test]
fn udp_on_a_wildcard_address_answers_from_the_address_the_peer_sent_to() {
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let mut a = Proc::server(&["talk", "-u", "--listen", listen]);
        let to = SocketAddr::from(([127, 0, 0, 2], a.socket_addr().port()));
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let peer_addr = peer.local_addr().unwrap();
        peer.send_to(b"hello", to).unwrap();
        assert_eq!(a.next_line(), format!("<{peer_addr}> hello"));
        for line in ["hi there", "bye"] {
            a.type_line(line);
            let mut buf = [0u8; 64];
            let (len, from) = peer.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..len], line.as_bytes());
            assert_eq!(from, to, "{listen}: sent from an unexpected address");
        }
        assert!(a.wait_exit(IO_TIMEOUT).success());
    }
}

/// A peer on `127.0.0.1` that sends to `127.0.0.2:port` from a socket connected there, as a
/// Python exercise's `s.connect(("127.0.0.2", port))`: it hears only what comes from
/// `127.0.0.2:port`.
fn peer_connected_to_127_0_0_2(port: u16) -> UdpSocket {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    peer.connect(("127.0.0.2", port)).unwrap();
    peer
}

/// A UDP talk bound to a wildcard address with a PEER sends from the address the peer's
/// datagrams arrive at (`127.0.0.2`, where the kernel would pick `127.0.0.1`), so a peer whose
/// socket is connected to that address hears it; on `[::]` for an IPv4 peer too.
#[test]
fn udp_on_a_wildcard_address_with_a_peer_sends_from_the_address_the_peer_sends_to() {
    for listen in ["0.0.0.0:0", "[::]:0"] {
        // The peer's port is known before the talk starts: bind it first.
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let peer_addr = peer.local_addr().unwrap();
        let mut a = Proc::server(&["talk", "-u", "--listen", listen, &peer_addr.to_string()]);
        let to = SocketAddr::from(([127, 0, 0, 2], a.socket_addr().port()));
        peer.connect(to).unwrap();
        peer.send(b"hello").unwrap();
        assert_eq!(a.next_line(), format!("<{peer_addr}> hello"));
        for line in ["hi there", "bye"] {
            a.type_line(line);
            let mut buf = [0u8; 64];
            let len = peer
                .recv(&mut buf)
                .unwrap_or_else(|err| panic!("{listen}: {line:?} never came: {err}"));
            assert_eq!(&buf[..len], line.as_bytes(), "{listen}");
        }
        assert!(a.wait_exit(IO_TIMEOUT).success());
    }
}

/// A stranger speaking to a wildcard talk with a PEER, at the address the peer uses or
/// another: it is ignored without a word, as with any PEER, and what the talk sends keeps
/// leaving from the peer's `127.0.0.2`.
#[test]
fn udp_on_a_wildcard_address_with_a_peer_ignores_strangers() {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let mut a = Proc::server(&[
        "talk",
        "-u",
        "--listen",
        "0.0.0.0:0",
        &peer_addr.to_string(),
    ]);
    let port = a.socket_addr().port();
    let to = SocketAddr::from(([127, 0, 0, 2], port));
    peer.connect(to).unwrap();
    peer.send(b"one").unwrap();
    assert_eq!(a.next_line(), format!("<{peer_addr}> one"));
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    stranger.send_to(b"intruder", to).unwrap();
    stranger
        .send_to(b"intruder again", ("127.0.0.1", port))
        .unwrap();
    peer.send(b"two").unwrap();
    assert_eq!(a.next_line(), format!("<{peer_addr}> two"));
    a.type_line("still here");
    let mut buf = [0u8; 64];
    let len = peer.recv(&mut buf).expect("the talk's line");
    assert_eq!(&buf[..len], b"still here");
    peer.send(b"bye").unwrap();
    assert_eq!(a.next_line(), format!("<{peer_addr}> bye"));
    assert!(a.wait_exit(IO_TIMEOUT).success());
    assert_eq!(a.stdout_rest(), "");
    let said = a.stderr_text();
    assert!(!said.contains("ignored"), "{said}");
}

/// A wildcard talk with a PEER whose port is closed reports each message lost, as a connected
/// one does, and goes on: the peer, once started, gets the next line from the address it
/// sends to.
#[test]
fn udp_on_a_wildcard_address_with_a_peer_not_listening_says_so_and_goes_on() {
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let closed = common::closed_udp_addr("127.0.0.1");
        let mut a = Proc::server(&["talk", "-u", "--listen", listen, &closed.to_string()]);
        // Pasted: the second send is likely to meet the report of the first.
        a.type_line("anyone?\nhello?");
        for _ in 0..2 {
            let status = a.next_stderr_line();
            assert_eq!(
                status,
                format!("* {closed} is not listening (port unreachable); your message was lost"),
                "{listen}"
            );
        }
        let peer = UdpSocket::bind(closed).unwrap();
        peer.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        peer.connect(("127.0.0.2", a.socket_addr().port())).unwrap();
        peer.send(b"here now").unwrap();
        assert_eq!(a.next_line(), format!("<{closed}> here now"));
        a.type_line("welcome");
        let mut buf = [0u8; 64];
        let len = peer.recv(&mut buf).expect("the talk's line");
        assert_eq!(&buf[..len], b"welcome", "{listen}");
        a.type_line("bye");
        assert!(a.wait_exit(IO_TIMEOUT).success());
        // Two messages lost, two reports: not a third from a send that met one.
        let said = a.stderr_text();
        assert!(!said.contains("not listening"), "{listen}: {said}");
    }
}

/// Without a PEER, on a wildcard address, a peer that has gone is reported too.
#[test]
fn udp_on_a_wildcard_address_reports_a_peer_that_left() {
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let mut a = Proc::server(&["talk", "-u", "--listen", listen]);
        let peer = peer_connected_to_127_0_0_2(a.socket_addr().port());
        let peer_addr = peer.local_addr().unwrap();
        peer.send(b"hello").unwrap();
        assert_eq!(a.next_line(), format!("<{peer_addr}> hello"));
        drop(peer);
        a.type_line("are you there?");
        let said = a.next_stderr_line();
        assert!(said.contains("talking with"), "{said}");
        let status = a.next_stderr_line();
        assert_eq!(
            status,
            format!("* {peer_addr} is not listening (port unreachable); your message was lost"),
            "{listen}"
        );
        a.type_line("bye");
        assert!(a.wait_exit(IO_TIMEOUT).success());
    }
}

/// Without a PEER, on one address, a peer that has gone is reported too, once for the message
/// lost; a third party is still ignored with a word, and its going says nothing (nothing was
/// sent to it).
#[test]
fn udp_on_one_address_reports_a_peer_that_left() {
    for listen in ["127.0.0.1:0", "[::1]:0"] {
        let mut a = Proc::server(&["talk", "-u", "--listen", listen]);
        let a_addr = a.socket_addr();
        let peer = UdpSocket::bind((a_addr.ip(), 0)).unwrap();
        let peer_addr = peer.local_addr().unwrap();
        peer.send_to(b"hello", a_addr).unwrap();
        assert_eq!(a.next_line(), format!("<{peer_addr}> hello"));
        let said = a.next_stderr_line();
        assert!(said.contains("talking with"), "{said}");
        let stranger = UdpSocket::bind((a_addr.ip(), 0)).unwrap();
        let stranger_addr = stranger.local_addr().unwrap();
        stranger.send_to(b"intruder", a_addr).unwrap();
        assert_eq!(
            a.next_stderr_line(),
            format!("* ignored a message from {stranger_addr}: talking with {peer_addr}")
        );
        drop(stranger);
        drop(peer);
        a.type_line("are you there?");
        assert_eq!(
            a.next_stderr_line(),
            format!("* {peer_addr} is not listening (port unreachable); your message was lost"),
            "{listen}"
        );
        a.type_line("bye");
        assert!(a.wait_exit(IO_TIMEOUT).success());
        assert_eq!(a.stdout_rest(), "");
        let said = a.stderr_text();
        assert!(!said.contains("not listening"), "{listen}: {said}");
    }
}

/// Over TCP too, an IPv4 caller of a `[::]` listener is shown as `127.0.0.1:PORT`.
#[test]
fn tcp_on_a_dual_stack_listener_shows_an_ipv4_caller_as_ipv4() {
    let mut listener = Proc::server(&["talk", "--listen", "[::]:0"]);
    let port = listener.socket_addr().port();
    let mut caller = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let me = caller.local_addr().unwrap();
    caller.write_all(b"hello\n").unwrap();
    assert_eq!(listener.next_line(), format!("<{me}> hello"));
    caller.write_all(b"bye\n").unwrap();
    assert_eq!(listener.next_line(), format!("<{me}> bye"));
    assert!(listener.wait_exit(IO_TIMEOUT).success());
}

/// Many lines at once (a file piped to the peer) fill whole reads, which end mid-line; each
/// line is still shown whole.
#[test]
fn lines_sent_in_bulk_are_each_shown_whole() {
    let mut listener = Proc::server(&["talk", "--listen", "127.0.0.1:0"]);
    let mut caller = TcpStream::connect(listener.socket_addr()).unwrap();
    let me = caller.local_addr().unwrap();
    let lines: Vec<String> = (0..5000)
        .map(|i| format!("line {i} {}", "x".repeat(100)))
        .collect();
    caller
        .write_all(format!("{}\nbye\n", lines.join("\n")).as_bytes())
        .unwrap();
    let shown = listener.within(IO_TIMEOUT, Proc::stdout_rest);
    assert!(listener.wait_exit(IO_TIMEOUT).success());
    let expected: String = lines
        .iter()
        .chain(std::iter::once(&"bye".to_string()))
        .map(|line| format!("<{me}> {line}\n"))
        .collect();
    assert!(shown == expected, "lines were split or lost");
}

/// A peer that ends its lines with a newline and sends one line in pieces (a student's
/// `c.send(b'one line sent '); c.send(b'in two parts\n')`) is shown one line, not two.
#[test]
fn a_line_sent_in_pieces_is_shown_whole() {
    let mut listener = Proc::server(&["talk", "--listen", "127.0.0.1:0"]);
    let mut peer = tcp(listener.socket_addr());
    let name = peer.local_addr().unwrap().to_string();
    peer.write_all(b"first\n").unwrap();
    assert_eq!(listener.next_line(), format!("<{name}> first"));
    peer.write_all(b"one line sent ").unwrap();
    // A line typed meanwhile goes out: the talk is not stuck on the piece.
    listener.type_line("go on");
    assert_eq!(read_exact(&mut peer, 6), b"go on\n");
    peer.write_all(b"in two parts\n").unwrap();
    assert_eq!(
        listener.next_line(),
        format!("<{name}> one line sent in two parts")
    );
    // A piece whose rest does not come is shown after a moment, as it is.
    peer.write_all(b"no end").unwrap();
    assert_eq!(listener.next_line(), format!("<{name}> no end"));
    drop(peer);
    assert!(listener.wait_exit(IO_TIMEOUT).success());
}

/// `--no-newline` sends each line as the classic exercise's `conn.send(input().encode())`
/// does, so a student's `recv(1024).decode() == 'bye'` sees exactly `bye`.
#[test]
fn no_newline_sends_each_line_as_it_was_typed() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let mut talker = Proc::start(&["talk", "--no-newline", &addr.to_string()]);
    let (mut peer, _) = server.accept().unwrap();
    peer.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    talker.type_line("hello");
    assert_eq!(read_exact(&mut peer, 5), b"hello");
    talker.type_line("bye");
    assert_eq!(read_to_end(&mut peer), b"bye");
    assert!(talker.wait_exit(IO_TIMEOUT).success());
}

/// A peer cannot write to our terminal: escape sequences and carriage returns it sends are
/// shown as U+FFFD, so it can neither redraw the screen nor overwrite its label with a fake
/// status line. Tabs stay.
#[test]
fn a_peers_control_characters_are_shown_harmless() {
    let mut listener = Proc::server(&["talk", "--listen", "127.0.0.1:0"]);
    let mut peer = tcp(listener.socket_addr());
    let name = peer.local_addr().unwrap().to_string();
    peer.write_all(b"evil \x1b[2J\x1b]0;title\x07\tx \r* fake status\n")
        .unwrap();
    assert_eq!(
        listener.next_line(),
        format!("<{name}> evil \u{fffd}[2J\u{fffd}]0;title\u{fffd}\tx \u{fffd}* fake status")
    );
    drop(peer);
    assert!(listener.wait_exit(IO_TIMEOUT).success());
}

#[test]
fn a_signal_stops_talk_at_once_and_the_peer_reads_the_end() {
    use std::os::unix::process::ExitStatusExt;
    for (name, number) in [("INT", libc::SIGINT), ("TERM", libc::SIGTERM)] {
        let (mut listener, mut dialer, _) = tcp_conversation(&[]);
        dialer.signal(name);
        // Left to the system, as netcat does: the shell reports 128 + the signal's number.
        assert_eq!(
            dialer.wait_exit(IO_TIMEOUT).signal(),
            Some(number),
            "SIG{name}"
        );
        // The kernel closed the dialer's socket: the listener reads end of stream and ends.
        assert!(listener.wait_exit(IO_TIMEOUT).success(), "SIG{name}");
        let said = listener.stderr_text();
        assert!(said.contains(" left"), "{said}");
    }
}

#[test]
fn calling_a_peer_that_never_answers_gives_up_after_wait_with_exit_code_3() {
    let server = common::Unanswering::bind();
    let (code, err, took) =
        common::timed_failure(&["talk", "--wait", "1", &server.addr.to_string()]);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains(&format!(
            "cannot connect to tcp://{}: no answer within 1s (-w)",
            server.addr
        )),
        "{err}"
    );
    common::took_about(took, 1.0);
}

#[test]
fn wait_is_for_calling_not_listening() {
    let err = common::fails_with(&["talk", "--listen", "127.0.0.1:0", "-w", "3"], 2);
    assert!(err.contains("--wait") && err.contains("--listen"), "{err}");
}

#[test]
fn talk_over_an_abstract_unix_socket() {
    let name = common::abstract_name("talk");
    let mut listener = Proc::server(&["talk", "--listen", &format!("unix:@{name}")]);
    assert_eq!(listener.addr, format!("unix:@{name}"));
    let mut caller = Proc::start(&["talk", &format!("unix:@{name}")]);
    caller.type_line("hello listener");
    assert_eq!(
        listener.next_line(),
        format!("<unix:pid={}> hello listener", caller.child.id())
    );
    listener.type_line("hello caller");
    assert_eq!(caller.next_line(), format!("<unix:@{name}> hello caller"));
    caller.type_line("bye");
    assert!(caller.wait_exit(IO_TIMEOUT).success());
    assert!(listener.wait_exit(IO_TIMEOUT).success());
}
