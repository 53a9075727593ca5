//! Access control on every server: `--allow`/`--deny` address ranges, `--max-conns` and
//! `--max-conns-per-ip`. A refused client always gets one `refused: …` line (an HTTP error on
//! the web listener) and a clean close, never a hang, and the clients let in carry on.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{ChatClient, IO_TIMEOUT, Proc, chat_server, fails_with, read_exact, tcp, udp_for};

/// Everything the server sends before closing, within the IO timeout.
fn refusal(addr: SocketAddr) -> String {
    let mut stream = tcp(addr);
    let mut got = Vec::new();
    stream
        .read_to_end(&mut got)
        .expect("a clean close after the reason");
    String::from_utf8(got).unwrap()
}

/// Sends `text` and reads its echo.
fn echoes(stream: &mut TcpStream, text: &str) {
    stream.write_all(text.as_bytes()).unwrap();
    assert_eq!(read_exact(stream, text.len()), text.as_bytes());
}

/// A TCP connection to `addr` from the loopback address `from` (127.0.0.2, say).
fn tcp_from(from: &str, addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: SocketAddr = format!("{from}:0").parse().unwrap();
    socket.bind(&local.into()).unwrap();
    socket.connect(&addr.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

#[test]
fn a_denied_address_is_told_why_and_closed() {
    let server = Proc::server(&["echo", "127.0.0.1:0", "--deny", "127.0.0.0/8"]);
    assert_eq!(
        refusal(server.socket_addr()),
        "refused: 127.0.0.1 is not allowed here (--allow/--deny)\n"
    );
}

/// Refusals are logged one line a second at most, and the end of a burst is summed up a second
/// later even if no refusal follows it: three refused back to back are logged as 1, then 2 (or,
/// on a machine slow enough to spread them over seconds, in more lines, but all three).
#[test]
fn the_end_of_a_burst_of_refusals_is_logged_too() {
    let mut server = Proc::server(&["echo", "127.0.0.1:0", "--deny", "127.0.0.0/8"]);
    for _ in 0..3 {
        assert!(refusal(server.socket_addr()).starts_with("refused: 127.0.0.1 is not allowed"));
    }
    let mut logged = 0;
    while logged < 3 {
        let line = server.next_stderr_line();
        let count: usize = line
            .split("refused ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a refusal summary: {line}"));
        assert!(
            line.contains("connection(s); the last: refused: 127.0.0.1 is not allowed"),
            "{line}"
        );
        logged += count;
    }
    assert_eq!(logged, 3);
}

#[test]
fn allow_lets_in_only_its_ranges_and_deny_wins() {
    let outside = Proc::server(&["echo", "127.0.0.1:0", "--allow", "198.51.100.0/24"]);
    assert!(refusal(outside.socket_addr()).starts_with("refused: 127.0.0.1 is not allowed"));

    let server = Proc::server(&[
        "echo",
        "127.0.0.1:0",
        "--allow",
        "127.0.0.0/8",
        "--deny",
        "127.0.0.2",
    ]);
    let mut inside = tcp(server.socket_addr());
    echoes(&mut inside, "let in\n");
    let mut denied = tcp_from("127.0.0.2", server.socket_addr());
    let mut got = String::new();
    denied.read_to_string(&mut got).unwrap();
    assert!(
        got.starts_with("refused: 127.0.0.2 is not allowed"),
        "{got}"
    );
    // The client let in never noticed.
    echoes(&mut inside, "still here\n");
}

#[test]
fn ipv6_and_dual_stack_clients_are_matched_by_their_real_address() {
    let v6 = Proc::server(&["echo", "[::1]:0", "--deny", "::1"]);
    assert!(refusal(v6.socket_addr()).starts_with("refused: ::1 is not allowed"));
    // On a dual-stack listener an IPv4 client arrives as ::ffff:127.0.0.1 and is matched as
    // 127.0.0.1.
    let dual = Proc::server(&["echo", "[::]:0", "--deny", "127.0.0.0/8"]);
    let port = dual.socket_addr().port();
    let v4: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(refusal(v4).starts_with("refused: 127.0.0.1 is not allowed"));
    let mut six = tcp(format!("[::1]:{port}").parse().unwrap());
    echoes(&mut six, "v6 is fine\n");
}

/// A range written as IPv4-mapped IPv6 addresses (`::ffff:0:0/96`, every IPv4 client) keeps
/// out the IPv4 clients it names, as the IPv4 range would.
#[test]
fn mapped_ipv6_ranges_keep_out_ipv4_clients() {
    let dual = Proc::server(&["echo", "[::]:0", "--deny", "::ffff:127.0.0.0/104"]);
    let port = dual.socket_addr().port();
    let v4: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(refusal(v4).starts_with("refused: 127.0.0.1 is not allowed"));
    let mut six = tcp(format!("[::1]:{port}").parse().unwrap());
    echoes(&mut six, "v6 is fine\n");

    let allowed = Proc::server(&["echo", "127.0.0.1:0", "--allow", "::ffff:127.0.0.1"]);
    echoes(&mut tcp(allowed.socket_addr()), "let in\n");
}

#[test]
fn the_per_address_cap_refuses_one_more_and_frees_places() {
    let server = Proc::server(&["echo", "127.0.0.1:0", "--max-conns-per-ip", "2"]);
    let addr = server.socket_addr();
    let mut first = tcp(addr);
    let mut second = tcp(addr);
    echoes(&mut first, "1\n");
    echoes(&mut second, "2\n");
    assert_eq!(
        refusal(addr),
        "refused: too many connections from 127.0.0.1 (--max-conns-per-ip 2)\n"
    );
    // Another address has places of its own.
    let mut other = tcp_from("127.0.0.3", addr);
    echoes(&mut other, "3\n");
    // A closed connection gives its place back.
    drop(first);
    let deadline = std::time::Instant::now() + IO_TIMEOUT;
    loop {
        let mut next = tcp(addr);
        next.write_all(b"again\n").unwrap();
        let mut got = [0u8; 6];
        if next.read_exact(&mut got).is_ok() && &got == b"again\n" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the place never came back"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn max_conns_refuses_with_a_reason() {
    let server = Proc::server(&["echo", "127.0.0.1:0", "--max-conns", "1"]);
    let mut held = tcp(server.socket_addr());
    echoes(&mut held, "mine\n");
    assert_eq!(
        refusal(server.socket_addr()),
        "refused: server full (--max-conns 1)\n"
    );
    echoes(&mut held, "still mine\n");
}

#[test]
fn the_chat_server_caps_connections_per_address() {
    let server = chat_server(":memory:", &["--max-conns-per-ip", "2"]);
    let addr = server.socket_addr();
    let mut ann = ChatClient::login(addr, "ann");
    let _bob = ChatClient::login(addr, "bob");
    assert_eq!(
        refusal(addr),
        "refused: too many connections from 127.0.0.1 (--max-conns-per-ip 2)\n"
    );
    assert_eq!(ann.say("unbothered"), "[#lobby] <ann> unbothered");
}

/// Browsers are refused in HTTP: a 503 with the reason as its body.
#[test]
fn the_web_listener_refuses_in_http() {
    let mut server = chat_server(
        ":memory:",
        &["--http", "127.0.0.1:0", "--max-conns-per-ip", "1"],
    );
    let url = server.next_line();
    let web: SocketAddr = url
        .strip_prefix("listening on http://")
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap()
        .parse()
        .unwrap();
    // The TCP listener's member holds 127.0.0.1's one place, for the web listener too.
    let _member = ChatClient::login(server.socket_addr(), "ann");
    let mut browser = tcp(web);
    browser
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = String::new();
    browser.read_to_string(&mut got).unwrap();
    assert!(
        got.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{got}"
    );
    assert!(
        got.ends_with(
            "\r\n\r\nrefused: too many connections from 127.0.0.1 (--max-conns-per-ip 1)\n"
        ),
        "{got}"
    );
}

#[test]
fn udp_echo_ignores_senders_it_does_not_allow() {
    let denied = Proc::server(&["echo", "-u", "127.0.0.1:0", "--deny", "127.0.0.1"]);
    let socket = udp_for(denied.socket_addr());
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    socket.send_to(b"anyone?", denied.socket_addr()).unwrap();
    let mut buf = [0u8; 64];
    assert!(
        socket.recv(&mut buf).is_err(),
        "a denied sender got a reply"
    );

    let allowed = Proc::server(&["echo", "-u", "127.0.0.1:0", "--allow", "127.0.0.1"]);
    let socket = udp_for(allowed.socket_addr());
    socket.send_to(b"me", allowed.socket_addr()).unwrap();
    let n = socket.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"me");
}

#[test]
fn talk_turns_away_denied_callers() {
    let listener = Proc::server(&["talk", "--listen", "127.0.0.1:0", "--deny", "127.0.0.1"]);
    assert!(refusal(listener.socket_addr()).starts_with("refused: 127.0.0.1 is not allowed"));
}

/// `talk -u --listen` without a PEER takes the first sender as its peer: one it does not allow
/// is ignored, and cannot become the peer.
#[test]
fn udp_talk_ignores_senders_it_does_not_allow() {
    let mut talker = Proc::server(&[
        "talk",
        "-u",
        "--listen",
        "127.0.0.1:0",
        "--deny",
        "127.0.0.2",
    ]);
    let to = talker.socket_addr();
    let denied = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
    denied.send_to(b"let me in", to).unwrap();
    let allowed = udp_for(to);
    allowed.send_to(b"hello", to).unwrap();
    let me = allowed.local_addr().unwrap();
    assert_eq!(talker.next_line(), format!("<{me}> hello"));
    talker.type_line("hi, friend");
    let mut buf = [0u8; 64];
    let n = allowed.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hi, friend");
}

#[test]
fn bad_ranges_are_usage_errors() {
    for bad in ["198.51.100.0/33", "nonsense", "::1/129", ""] {
        let line = fails_with(&["echo", "127.0.0.1:0", "--allow", bad], 2);
        assert!(
            line.contains("address range") || line.contains("allow"),
            "{bad}: {line}"
        );
    }
}
