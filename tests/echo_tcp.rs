//! The echo and upper-case servers over TCP, IPv4 and IPv6.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::thread;

use common::{Proc, is_closed, read_exact, reset, tcp};

#[test]
fn echoes_bytes_back_and_reports_the_bound_port() {
    let server = Proc::server(&["echo", "127.0.0.1:0"]);
    assert!(
        server.addr.starts_with("tcp://127.0.0.1:"),
        "{}",
        server.addr
    );
    assert_ne!(server.socket_addr().port(), 0);
    let mut client = tcp(server.socket_addr());
    client.write_all(b"hello\n").unwrap();
    assert_eq!(read_exact(&mut client, 6), b"hello\n");
    // Binary data, invalid as text, comes back byte for byte.
    let binary: Vec<u8> = (0..=255).collect();
    client.write_all(&binary).unwrap();
    assert_eq!(read_exact(&mut client, 256), binary);
}

#[test]
fn serves_many_clients_at_once_independently() {
    let server = Proc::server(&["echo", "127.0.0.1:0"]);
    let addr = server.socket_addr();
    // Every client connects before any sends, so all are open together.
    let clients: Vec<_> = (0..50).map(|_| tcp(addr)).collect();
    let handles: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut client)| {
            thread::spawn(move || {
                for round in 0..20 {
                    let msg = format!("client {i} round {round}\n");
                    client.write_all(msg.as_bytes()).unwrap();
                    assert_eq!(read_exact(&mut client, msg.len()), msg.as_bytes());
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
}

#[test]
fn a_client_that_resets_mid_message_does_not_disturb_others() {
    let server = Proc::server(&["echo", "127.0.0.1:0", "--frame", "line"]);
    let addr = server.socket_addr();
    let mut steady = tcp(addr);
    steady.write_all(b"before\n").unwrap();
    assert_eq!(read_exact(&mut steady, 7), b"before\n");
    for _ in 0..20 {
        let mut crasher = tcp(addr);
        crasher.write_all(b"half a line with no end").unwrap();
        reset(crasher);
        let quitter = tcp(addr);
        drop(quitter);
    }
    steady.write_all(b"after\n").unwrap();
    assert_eq!(read_exact(&mut steady, 6), b"after\n");
    // And new clients are still served.
    let mut late = tcp(addr);
    late.write_all(b"late\n").unwrap();
    assert_eq!(read_exact(&mut late, 5), b"late\n");
}

#[test]
fn half_close_gets_everything_then_eof() {
    let server = Proc::server(&["echo", "127.0.0.1:0"]);
    let mut client = tcp(server.socket_addr());
    let payload = vec![b'x'; 300_000];
    let writer = {
        let mut client = client.try_clone().unwrap();
        let payload = payload.clone();
        thread::spawn(move || {
            client.write_all(&payload).unwrap();
            client.shutdown(std::net::Shutdown::Write).unwrap();
        })
    };
    let mut echoed = Vec::new();
    client.read_to_end(&mut echoed).unwrap();
    writer.join().unwrap();
    assert_eq!(echoed.len(), payload.len());
    assert!(echoed == payload);
}

#[test]
fn upper_cases_text_like_python_str_upper() {
    let server = Proc::server(&["echo", "--upper", "127.0.0.1:0", "--frame", "line"]);
    let mut client = tcp(server.socket_addr());
    client.write_all("hello, straße é\n".as_bytes()).unwrap();
    let expected = "HELLO, STRASSE É\n".as_bytes();
    assert_eq!(read_exact(&mut client, expected.len()), expected);
    // Invalid utf-8 is replaced, never fatal.
    client.write_all(b"ok\xff\n").unwrap();
    let expected = "OK\u{fffd}\n".as_bytes();
    assert_eq!(read_exact(&mut client, expected.len()), expected);
}

#[test]
fn greets_each_client_on_connect() {
    let server = Proc::server(&["echo", "127.0.0.1:0", "--greet", "welcome to socktalk"]);
    for _ in 0..2 {
        let mut client = tcp(server.socket_addr());
        assert_eq!(read_exact(&mut client, 20), b"welcome to socktalk\n");
        client.write_all(b"ping").unwrap();
        assert_eq!(read_exact(&mut client, 4), b"ping");
    }
}

#[test]
fn ipv6_loopback() {
    let server = Proc::server(&["echo", "[::1]:0"]);
    assert!(server.addr.starts_with("tcp://[::1]:"), "{}", server.addr);
    let mut client = tcp(server.socket_addr());
    client.write_all(b"six").unwrap();
    assert_eq!(read_exact(&mut client, 3), b"six");
}

#[test]
fn dual_stack_any_accepts_ipv4_and_ipv6_clients() {
    let server = Proc::server(&["echo", "[::]:0"]);
    let port = server.socket_addr().port();
    for addr in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        let mut client = tcp(addr.parse::<SocketAddr>().unwrap());
        client.write_all(b"both").unwrap();
        assert_eq!(read_exact(&mut client, 4), b"both");
    }
}

#[test]
fn localhost_binds_ipv4_first_for_af_inet_clients() {
    let server = Proc::server(&["echo", "localhost:0"]);
    assert!(
        server.addr.starts_with("tcp://127.0.0.1:"),
        "{}",
        server.addr
    );
}

#[test]
fn max_conns_closes_the_extra_connection_cleanly() {
    let server = Proc::server(&["echo", "127.0.0.1:0", "--max-conns", "2"]);
    let addr = server.socket_addr();
    let mut first = tcp(addr);
    let mut second = tcp(addr);
    for client in [&mut first, &mut second] {
        client.write_all(b"in").unwrap();
        assert_eq!(read_exact(client, 2), b"in");
    }
    let mut third = tcp(addr);
    let _ = third.write_all(b"knock");
    assert!(is_closed(&mut third));
    drop(first);
    // The freed slot serves the next client (it may take a moment for the server to notice the
    // close, so retry a few connections rather than sleeping).
    let served = (0..200).any(|_| {
        let mut next = tcp(addr);
        next.write_all(b"ok").is_ok() && {
            let mut buf = [0u8; 2];
            next.read_exact(&mut buf).is_ok() && &buf == b"ok"
        }
    });
    assert!(served);
}

#[test]
fn idle_timeout_closes_silent_clients_only() {
    let server = Proc::server(&["echo", "127.0.0.1:0", "--idle-timeout", "0.3"]);
    let mut silent = tcp(server.socket_addr());
    assert!(is_closed(&mut silent));
}

#[test]
fn raw_upper_turns_a_character_cut_off_by_the_end_into_u_fffd() {
    let server = Proc::server(&["echo", "--upper", "127.0.0.1:0"]);
    for (sent, expected) in [
        (&b"abc\xe2"[..], "ABC\u{fffd}"),
        (b"\xe2\x82", "\u{fffd}"),
        (b"whole \xc3\xa9", "WHOLE \u{c9}"),
    ] {
        let mut client = tcp(server.socket_addr());
        client.write_all(sent).unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let mut echoed = Vec::new();
        client.read_to_end(&mut echoed).unwrap();
        assert_eq!(String::from_utf8_lossy(&echoed), expected, "{sent:?}");
    }
}
