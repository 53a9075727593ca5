//! The echo and upper-case servers over UDP: one reply datagram per datagram, to its sender.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::{Proc, fails_with, udp_for};

/// Sends `msg` to `server` and returns the reply, which must come from the server's address.
fn ask(socket: &UdpSocket, server: SocketAddr, msg: &[u8]) -> Vec<u8> {
    socket.send_to(msg, server).expect("send datagram");
    let mut buf = vec![0u8; 65_536];
    let (len, from) = socket.recv_from(&mut buf).expect("reply datagram");
    assert_eq!(from, server, "reply from an unexpected address");
    buf.truncate(len);
    buf
}

#[test]
fn answers_each_datagram_to_its_sender() {
    let server = Proc::server(&["echo", "-u", "127.0.0.1:0"]);
    assert!(
        server.addr.starts_with("udp://127.0.0.1:"),
        "{}",
        server.addr
    );
    let addr = server.socket_addr();
    assert_ne!(addr.port(), 0);
    let client = udp_for(addr);
    assert_eq!(ask(&client, addr, b"hello"), b"hello");
    // Datagrams keep their boundaries: two sends, two replies, never merged.
    client.send_to(b"one", addr).unwrap();
    client.send_to(b"two", addr).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = client.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"one");
    let (n, _) = client.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"two");
    // Binary data, invalid as text, comes back byte for byte.
    let binary: Vec<u8> = (0..=255).collect();
    assert_eq!(ask(&client, addr, &binary), binary);
}

#[test]
fn an_empty_datagram_gets_an_empty_reply() {
    let server = Proc::server(&["echo", "-u", "127.0.0.1:0"]);
    let addr = server.socket_addr();
    let client = udp_for(addr);
    assert_eq!(ask(&client, addr, b""), b"");
    // The empty message did not confuse anything: the next one is answered normally.
    assert_eq!(ask(&client, addr, b"after"), b"after");
}

#[test]
fn several_senders_at_once_each_get_their_own_replies() {
    let server = Proc::server(&["echo", "--upper", "-u", "127.0.0.1:0"]);
    let addr = server.socket_addr();
    let senders = 8;
    let start = Arc::new(Barrier::new(senders));
    let handles: Vec<_> = (0..senders)
        .map(|i| {
            let start = start.clone();
            let socket = udp_for(addr);
            thread::spawn(move || {
                start.wait();
                for round in 0..50 {
                    let msg = format!("sender {i} round {round}");
                    let reply = ask(&socket, addr, msg.as_bytes());
                    assert_eq!(reply, msg.to_uppercase().as_bytes());
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
}

#[test]
fn upper_over_udp_in_utf8() {
    let server = Proc::server(&["echo", "--upper", "-u", "127.0.0.1:0"]);
    let addr = server.socket_addr();
    let client = udp_for(addr);
    assert_eq!(ask(&client, addr, b"hello"), b"HELLO");
    // As Python's str.upper: ß becomes SS, é becomes É, Chinese is unchanged.
    assert_eq!(
        ask(&client, addr, "straße é 你好abc".as_bytes()),
        "STRASSE É 你好ABC".as_bytes()
    );
}

#[test]
fn upper_over_udp_in_gbk() {
    let server = Proc::server(&["echo", "--upper", "-u", "127.0.0.1:0", "--encoding", "gbk"]);
    let addr = server.socket_addr();
    let client = udp_for(addr);
    // '你好abc'.encode('gbk') and '你好ABC'.encode('gbk').
    let hello = b"\xc4\xe3\xba\xc3abc";
    assert_eq!(ask(&client, addr, hello), b"\xc4\xe3\xba\xc3ABC");
    // 0x81 0x61 is one gbk character whose trail byte is ASCII 'a'; it must stay as it is.
    assert_eq!(ask(&client, addr, b"\x81\x61z"), b"\x81\x61Z");
    // An undecodable byte becomes U+FFFD, which gbk lacks, so it comes back as '?'
    // (Python: b'\xff'.decode('gbk', 'replace').upper().encode('gbk', 'replace')).
    assert_eq!(ask(&client, addr, b"x\xff"), b"X?");
}

#[test]
fn upper_gbk_matches_python() {
    let server = Proc::server(&["echo", "--upper", "-u", "127.0.0.1:0", "--encoding", "gbk"]);
    let addr = server.socket_addr();
    let client = udp_for(addr);
    let program = "print(bytes.hex('你好abc'.encode('gbk')), \
                   bytes.hex('你好abc'.upper().encode('gbk')))";
    let out = common::python(program, &[]);
    let (sent, want) = out.trim().split_once(' ').unwrap();
    let reply = ask(&client, addr, &unhex(sent));
    assert_eq!(reply, unhex(want));
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn ipv6_loopback() {
    let server = Proc::server(&["echo", "-u", "[::1]:0"]);
    assert!(server.addr.starts_with("udp://[::1]:"), "{}", server.addr);
    let addr = server.socket_addr();
    assert!(addr.is_ipv6());
    let client = udp_for(addr);
    assert_eq!(ask(&client, addr, b"six"), b"six");
}

/// Bound to `0.0.0.0`, the server hears datagrams sent to any of the host's addresses, and
/// answers each from the address it was sent to: a client that sent to `127.0.0.2` checks the
/// reply comes from there (`ask` does), and a connected one would drop it otherwise.
#[test]
fn a_wildcard_server_replies_from_the_address_each_datagram_was_sent_to() {
    let server = Proc::server(&["echo", "-u", "0.0.0.0:0"]);
    assert!(server.addr.starts_with("udp://0.0.0.0:"), "{}", server.addr);
    let port = server.socket_addr().port();
    let to = |ip: [u8; 4]| SocketAddr::from((ip, port));
    let client = udp_for(to([127, 0, 0, 1]));
    // From the very first datagram on, in any order, the empty one and the largest included.
    assert_eq!(ask(&client, to([127, 0, 0, 2]), b"first"), b"first");
    assert_eq!(ask(&client, to([127, 0, 0, 1]), b"one"), b"one");
    assert_eq!(ask(&client, to([127, 0, 0, 2]), b""), b"");
    assert_eq!(ask(&client, to([127, 0, 0, 3]), b"three"), b"three");
    let largest: Vec<u8> = (0..65_507).map(|i| (i % 251) as u8).collect();
    assert!(ask(&client, to([127, 0, 0, 2]), &largest) == largest);
    // A connected client (`connect -u`, `nc -u`) hears only its server's address.
    let connected = udp_for(to([127, 0, 0, 1]));
    connected.connect(to([127, 0, 0, 2])).unwrap();
    connected.send(b"connected").unwrap();
    let mut buf = [0u8; 64];
    let len = connected
        .recv(&mut buf)
        .expect("a reply the connected client accepts");
    assert_eq!(&buf[..len], b"connected");
}

/// On a dual-stack `[::]` socket, IPv4 clients are answered from the IPv4 address they sent
/// to, IPv6 ones from the IPv6 address.
#[test]
fn a_dual_stack_wildcard_server_replies_from_the_address_sent_to() {
    let server = Proc::server(&["echo", "-u", "--upper", "[::]:0"]);
    assert!(server.addr.starts_with("udp://[::]:"), "{}", server.addr);
    let port = server.socket_addr().port();
    let v4 = |ip: [u8; 4]| SocketAddr::from((ip, port));
    let client = udp_for(v4([127, 0, 0, 1]));
    assert_eq!(ask(&client, v4([127, 0, 0, 2]), b"four"), b"FOUR");
    assert_eq!(ask(&client, v4([127, 0, 0, 1]), b""), b"");
    assert_eq!(ask(&client, v4([127, 0, 0, 4]), b"again"), b"AGAIN");
    let six = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
    let client = udp_for(six);
    assert_eq!(ask(&client, six, b"six"), b"SIX");
    assert_eq!(ask(&client, six, b""), b"");
}

#[test]
fn udp_scheme_without_the_flag() {
    let server = Proc::server(&["echo", "udp://127.0.0.1:0"]);
    assert!(
        server.addr.starts_with("udp://127.0.0.1:"),
        "{}",
        server.addr
    );
    let addr = server.socket_addr();
    let client = udp_for(addr);
    assert_eq!(ask(&client, addr, b"scheme"), b"scheme");
}

#[test]
fn invalid_utf8_is_replaced_and_the_server_keeps_serving() {
    let server = Proc::server(&["echo", "--upper", "-u", "127.0.0.1:0"]);
    let addr = server.socket_addr();
    let client = udp_for(addr);
    assert_eq!(
        ask(&client, addr, b"\xff\xfe"),
        "\u{fffd}\u{fffd}".as_bytes()
    );
    assert_eq!(ask(&client, addr, b"ok\xc3"), "OK\u{fffd}".as_bytes());
    assert_eq!(ask(&client, addr, b"still here"), b"STILL HERE");
    let other = udp_for(addr);
    assert_eq!(ask(&other, addr, b"me too"), b"ME TOO");
}

#[test]
fn a_sender_that_vanishes_before_its_reply_does_not_disturb_the_server() {
    let server = Proc::server(&["echo", "-u", "127.0.0.1:0"]);
    let addr = server.socket_addr();
    // Each reply goes to a closed port, so the kernel answers it with ICMP port unreachable.
    for _ in 0..20 {
        let gone = udp_for(addr);
        gone.send_to(b"nobody will read this", addr).unwrap();
        drop(gone);
    }
    let client = udp_for(addr);
    assert_eq!(ask(&client, addr, b"alive"), b"alive");
}

#[test]
fn large_datagrams_are_echoed_whole() {
    let server = Proc::server(&["echo", "-u", "127.0.0.1:0"]);
    let addr = server.socket_addr();
    let client = udp_for(addr);
    for size in [60_000, 65_507] {
        let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let reply = ask(&client, addr, &payload);
        assert_eq!(reply.len(), size);
        assert!(reply == payload, "a {size}-byte datagram came back changed");
    }
}

/// IPv6 carries 20 bytes more per datagram than IPv4 (its header is not counted in its
/// payload length): the largest, 65,527 bytes, comes back whole too.
#[test]
fn the_largest_ipv6_datagram_is_echoed_whole() {
    let server = Proc::server(&["echo", "-u", "[::1]:0"]);
    let addr = server.socket_addr();
    let client = udp_for(addr);
    let payload: Vec<u8> = (0..65_527).map(|i| (i % 251) as u8).collect();
    let reply = ask(&client, addr, &payload);
    assert_eq!(reply.len(), payload.len());
    assert!(reply == payload, "the datagram came back changed");
}

/// Upper-casing can lengthen text: a reply that no longer fits in a datagram cannot be sent,
/// and the server says so at its default log level, then goes on answering.
#[test]
fn an_upper_cased_reply_too_big_for_a_datagram_is_logged_and_the_server_goes_on() {
    let mut server = Proc::server(&["echo", "-u", "--upper", "127.0.0.1:0"]);
    let addr = server.socket_addr();
    let client = udp_for(addr);
    // ŉ is 2 bytes in UTF-8, and upper-cased (ʼN) 3.
    let message = "ŉ".repeat(30_000);
    client.send_to(message.as_bytes(), addr).unwrap();
    let log = server.next_stderr_line();
    assert!(
        log.contains("reply not sent: upper-cased, a 60000-byte message grew to 90000 bytes"),
        "{log}"
    );
    assert_eq!(ask(&client, addr, b"still here"), b"STILL HERE");
}

/// Such datagrams can come from anywhere, as fast as the network carries them: a flood of
/// them is logged a line a second (`LOG_EVERY`), the next line counting those held back, not a
/// line a datagram.
#[test]
fn a_flood_of_replies_too_big_for_a_datagram_is_logged_a_line_a_second() {
    let mut server = Proc::server(&["echo", "-u", "--upper", "127.0.0.1:0"]);
    let addr = server.socket_addr();
    let client = udp_for(addr);
    let message = "ŉ".repeat(30_000);
    let started = std::time::Instant::now();
    for _ in 0..50 {
        client.send_to(message.as_bytes(), addr).unwrap();
        // Answered in order: once this is back, the big one before it was handled.
        assert_eq!(ask(&client, addr, b"sync"), b"SYNC");
    }
    let first_second = started.elapsed() < std::time::Duration::from_millis(900);
    let log = server.stderr_text();
    let lines = log.matches("reply not sent").count();
    assert!(lines >= 1, "{log}");
    if first_second {
        assert_eq!(lines, 1, "50 replies too big within a second: {log}");
    } else {
        // A slow machine: still far fewer lines than datagrams.
        assert!(lines <= 1 + started.elapsed().as_secs() as usize, "{log}");
    }
    // The next line after a second says how many were held back.
    let mut server = Proc::server(&["echo", "-u", "--upper", "127.0.0.1:0"]);
    let addr = server.socket_addr();
    let client = udp_for(addr);
    for _ in 0..3 {
        client.send_to(message.as_bytes(), addr).unwrap();
    }
    assert_eq!(ask(&client, addr, b"sync"), b"SYNC");
    let first = server.next_stderr_line();
    assert!(first.contains("reply not sent"), "{first}");
    let wait_out = std::time::Instant::now() + std::time::Duration::from_millis(1100);
    while std::time::Instant::now() < wait_out {
        assert_eq!(ask(&client, addr, b"sync"), b"SYNC");
    }
    client.send_to(message.as_bytes(), addr).unwrap();
    let next = server.next_stderr_line();
    assert!(
        next.contains("and 2 more such replies since the last line like this"),
        "{next}"
    );
}

#[test]
fn stream_only_options_with_udp_are_usage_errors() {
    let err = fails_with(&["echo", "-u", "127.0.0.1:0", "--frame", "line"], 2);
    assert!(err.contains("--frame"), "{err}");
    let err = fails_with(&["echo", "-u", "127.0.0.1:0", "--frame", "len"], 2);
    assert!(err.contains("--frame"), "{err}");
    let err = fails_with(&["echo", "-u", "127.0.0.1:0", "--greet", "hi"], 2);
    assert!(err.contains("--greet"), "{err}");
    let err = fails_with(&["echo", "udp://127.0.0.1:0", "--greet", "hi"], 2);
    assert!(err.contains("--greet"), "{err}");
    // Not silently ignored: a UDP server has no connection to close.
    let err = fails_with(&["echo", "-u", "127.0.0.1:0", "--idle-timeout", "5"], 2);
    assert!(err.contains("--idle-timeout"), "{err}");
}

#[test]
fn contradictory_or_bad_addresses_are_usage_errors() {
    let err = fails_with(&["echo", "-u", "tcp://127.0.0.1:0"], 2);
    assert!(err.contains("tcp://"), "{err}");
    let err = fails_with(&["echo", "-u", "127.0.0.1:70000"], 2);
    assert!(err.contains("70000"), "{err}");
    let err = fails_with(&["echo", "ftp://127.0.0.1:1"], 2);
    assert!(err.contains("ftp"), "{err}");
}

#[test]
fn a_udp_port_already_bound_is_refused() {
    let first = Proc::server(&["echo", "-u", "127.0.0.1:0"]);
    let addr = first.socket_addr().to_string();
    let err = fails_with(&["echo", "-u", &addr], 1);
    assert!(err.contains("already in use"), "{err}");
    // The first server is untouched and still the only one answering.
    let client = udp_for(first.socket_addr());
    assert_eq!(ask(&client, first.socket_addr(), b"mine"), b"mine");
}

#[test]
fn sigterm_stops_the_udp_server_with_exit_code_0() {
    let mut server = Proc::server(&["echo", "-u", "127.0.0.1:0"]);
    let addr = server.socket_addr();
    let client = udp_for(addr);
    assert_eq!(ask(&client, addr, b"bye"), b"bye");
    server.signal("TERM");
    let status = server.wait_exit(Duration::from_secs(3));
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn sigterm_stops_the_udp_server_while_it_waits_and_while_it_is_flooded() {
    // Never sent anything: the server is waiting in its receive when the signal comes, on a
    // plain socket and on a wildcard one (which receives with recvmsg).
    for bind in ["[::1]:0", "[::]:0"] {
        let mut idle = Proc::server(&["echo", "-u", bind]);
        idle.signal("TERM");
        assert_eq!(
            idle.wait_exit(Duration::from_secs(3)).code(),
            Some(0),
            "{bind}"
        );
    }

    // Datagrams keep coming while it stops.
    let mut busy = Proc::server(&["echo", "-u", "--upper", "127.0.0.1:0"]);
    let addr = busy.socket_addr();
    let flooder = udp_for(addr);
    assert_eq!(ask(&flooder, addr, b"go"), b"GO");
    let done = Arc::new(AtomicBool::new(false));
    let flood = {
        let done = Arc::clone(&done);
        thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let _ = flooder.send_to(&[b'x'; 512], addr);
            }
        })
    };
    busy.signal("TERM");
    let status = busy.wait_exit(Duration::from_secs(3));
    done.store(true, Ordering::Relaxed);
    flood.join().unwrap();
    assert_eq!(status.code(), Some(0), "{status}");
}
