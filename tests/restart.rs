//! Stopping and restarting servers: SO_REUSEADDR lets a killed server come back on its port at
//! once, a port a live server holds is refused, and SIGTERM/SIGINT end a server cleanly
//! (exit code 0) even with clients connected.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{Proc, fails_with, is_closed, read_exact, tcp};

/// Connects `n` clients and has each exchange a message, so the server holds established
/// connections that carried data.
fn busy_clients(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let mut client = tcp(addr);
            let msg = format!("client {i}\n");
            client.write_all(msg.as_bytes()).unwrap();
            assert_eq!(read_exact(&mut client, msg.len()), msg.as_bytes());
            client
        })
        .collect()
}

/// Whether a plain bind of `addr` without SO_REUSEADDR fails with "address in use".
fn plain_bind_is_refused(addr: SocketAddr) -> bool {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .unwrap();
    socket.set_reuse_address(false).unwrap();
    if addr.is_ipv6() {
        socket.set_only_v6(false).unwrap();
    }
    match socket.bind(&addr.into()) {
        Ok(()) => false,
        Err(err) => err.kind() == ErrorKind::AddrInUse,
    }
}

#[test]
fn a_killed_server_restarts_on_the_same_port_at_once() {
    for host in ["127.0.0.1", "[::1]"] {
        let mut first = Proc::server(&["echo", &format!("{host}:0")]);
        let addr = first.socket_addr();
        let mut clients = busy_clients(addr, 5);
        first.signal("KILL");
        assert!(first.wait_exit(Duration::from_secs(3)).code().is_none());
        // The kernel closed the dead server's connections (a FIN each) ...
        for client in &mut clients {
            assert!(is_closed(client));
        }
        // ... and once the clients close too, the server's side sits in TIME_WAIT.
        drop(clients);
        // Without SO_REUSEADDR this port could not be bound now: the test's premise.
        assert!(
            plain_bind_is_refused(addr),
            "{addr} is already free; the test proves nothing"
        );

        let port = addr.port().to_string();
        let second = Proc::server(&["echo", &format!("{host}:{port}")]);
        assert_eq!(second.socket_addr(), addr);
        let mut client = tcp(addr);
        client.write_all(b"back again").unwrap();
        assert_eq!(read_exact(&mut client, 10), b"back again");
    }
}

#[test]
fn a_port_held_by_a_live_server_is_refused() {
    let first = Proc::server(&["echo", "127.0.0.1:0"]);
    let addr = first.socket_addr();
    let mut client = tcp(addr);
    let err = fails_with(&["echo", &addr.to_string()], 1);
    assert!(err.contains("already in use"), "{err}");
    assert!(err.contains(&addr.port().to_string()), "{err}");
    // The first server is untouched.
    client.write_all(b"mine").unwrap();
    assert_eq!(read_exact(&mut client, 4), b"mine");
}

#[test]
fn a_dual_stack_server_holds_the_ipv4_port_too() {
    let first = Proc::server(&["echo", "[::]:0"]);
    let port = first.socket_addr().port();
    let err = fails_with(&["echo", &format!("127.0.0.1:{port}")], 1);
    assert!(err.contains("already in use"), "{err}");
    let mut client = tcp(format!("127.0.0.1:{port}").parse().unwrap());
    client.write_all(b"v4").unwrap();
    assert_eq!(read_exact(&mut client, 2), b"v4");
}

#[test]
fn bad_ports_are_usage_errors() {
    let err = fails_with(&["echo", "127.0.0.1:70000"], 2);
    assert!(err.contains("70000"), "{err}");
    let err = fails_with(&["echo", "127.0.0.1:port"], 2);
    assert!(err.contains("port"), "{err}");
}

#[test]
fn sigterm_and_sigint_stop_the_server_with_clients_connected() {
    for signal in ["TERM", "INT"] {
        let mut server = Proc::server(&["echo", "127.0.0.1:0", "--frame", "line"]);
        let addr = server.socket_addr();
        let mut clients = busy_clients(addr, 5);
        // One more client is mid-message, one connected without a word.
        let mut partial = tcp(addr);
        partial.write_all(b"half a line").unwrap();
        clients.push(partial);
        clients.push(tcp(addr));
        server.signal(signal);
        // Connections are told to stop, not waited for: well under the drain timeout.
        let status = server.wait_exit(Duration::from_secs(2));
        assert_eq!(status.code(), Some(0), "SIG{signal}: {status}");
        for client in &mut clients {
            assert!(is_closed(client), "SIG{signal} left a client open");
        }
        // A graceful stop is not an error: nothing on stderr at the default verbosity.
        let stderr = server.stderr_text();
        assert_eq!(stderr, "", "SIG{signal}");
        // The port is free again at once.
        let port = addr.port().to_string();
        let _next = Proc::server(&["echo", &format!("127.0.0.1:{port}")]);
    }
}

#[test]
fn a_stopped_server_ends_a_busy_connection_with_its_end_not_a_reset() {
    for signal in ["TERM", "INT"] {
        let mut server = Proc::server(&["echo", "127.0.0.1:0"]);
        let mut client = tcp(server.socket_addr());
        // Send without reading until the server stalls: its echo blocked on our full receive
        // buffer, our input left unread in its own. Closed like that, a socket sends a reset.
        client.set_nonblocking(true).unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        let mut blocked_since: Option<Instant> = None;
        while blocked_since.is_none_or(|since| since.elapsed() < Duration::from_millis(200)) {
            match client.write(&chunk) {
                Ok(_) => blocked_since = None,
                Err(err) if err.kind() == ErrorKind::WouldBlock => {
                    blocked_since.get_or_insert_with(Instant::now);
                    thread::yield_now();
                }
                Err(err) => panic!("sending: {err}"),
            }
        }
        client.set_nonblocking(false).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        server.signal(signal);
        // What the server sent, then the end of the stream, as when any server exits cleanly.
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match client.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(err) => panic!("SIG{signal}: {err} instead of the end of the stream"),
            }
        }
        drop(client);
        assert_eq!(server.wait_exit(Duration::from_secs(5)).code(), Some(0));
    }
}

#[test]
fn shutdown_does_not_wait_on_a_client_that_never_reads() {
    for signal in ["TERM", "INT"] {
        let mut server = Proc::server(&["echo", "127.0.0.1:0"]);
        let client = tcp(server.socket_addr());
        // The client sends without reading, so the server's echo blocks once both socket
        // buffers fill.
        let mut writer = client.try_clone().unwrap();
        let flood = thread::spawn(move || {
            let chunk = vec![b'x'; 64 * 1024];
            let mut sent = 0usize;
            while sent < 64 * 1024 * 1024 && writer.write_all(&chunk).is_ok() {
                sent += chunk.len();
            }
            sent
        });
        // Wait until the server is stuck (its replies fill our receive buffer).
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut peek = [0u8; 1];
        while client.peek(&mut peek).unwrap_or(0) == 0 {
            assert!(Instant::now() < deadline, "the server echoed nothing");
        }
        let stopped = Instant::now();
        server.signal(signal);
        let status = server.wait_exit(Duration::from_secs(2));
        assert_eq!(status.code(), Some(0), "SIG{signal}: {status}");
        assert!(stopped.elapsed() < Duration::from_secs(2));
        let _ = client.shutdown(Shutdown::Both);
        flood.join().unwrap();
    }
}

#[test]
fn a_signal_right_after_the_listening_line_is_a_clean_shutdown() {
    // "listening on ADDR" is the readiness contract: from then on SIGTERM/SIGINT must be a
    // graceful stop (exit 0), never death by signal. Repeated because a missed handler is a
    // race that loses only now and then.
    for round in 0..60 {
        let signal = if round % 2 == 0 { "TERM" } else { "INT" };
        let mut server = Proc::server(&["echo", "127.0.0.1:0"]);
        server.signal(signal);
        let status = server.wait_exit(Duration::from_secs(2));
        assert_eq!(
            status.code(),
            Some(0),
            "round {round}, SIG{signal}: {status}"
        );
    }
}

#[test]
fn a_server_stopped_by_sigterm_frees_the_port_for_the_next() {
    let mut first = Proc::server(&["echo", "127.0.0.1:0"]);
    let addr = first.socket_addr();
    let mut clients = busy_clients(addr, 3);
    first.signal("TERM");
    assert_eq!(first.wait_exit(Duration::from_secs(2)).code(), Some(0));
    for client in &mut clients {
        let mut buf = [0u8; 1];
        // A graceful stop closes with FIN, so reads see EOF, not a reset.
        assert_eq!(client.read(&mut buf).unwrap(), 0);
    }
    let port = addr.port().to_string();
    let second = Proc::server(&["echo", &format!("127.0.0.1:{port}")]);
    assert_eq!(second.socket_addr(), addr);
    let mut client = tcp(addr);
    client.write_all(b"next").unwrap();
    assert_eq!(read_exact(&mut client, 4), b"next");
}

/// SIGHUP asks a daemon to reload. A server with nothing to reload (no `--tls-cert` files)
/// says so and carries on: the default action would end it at once, without its graceful
/// shutdown.
#[test]
fn sighup_does_not_end_a_server_with_nothing_to_reload() {
    let servers: [&[&str]; 3] = [
        &["-v", "echo", "127.0.0.1:0"],
        &["-v", "echo", "-u", "127.0.0.1:0"],
        &["-v", "serve", "--tcp", "127.0.0.1:0", "--db", ":memory:"],
    ];
    for args in servers {
        let mut server = Proc::server(args);
        server.signal("HUP");
        // Handled (not fatal) once it says so.
        while !server
            .next_stderr_line()
            .contains("SIGHUP: nothing to reload")
        {}
        let addr = server.socket_addr();
        if args.contains(&"-u") {
            let client = common::udp_for(addr);
            client.send_to(b"still here", addr).unwrap();
            let mut buf = [0u8; 64];
            let (len, _) = client.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..len], b"still here", "{args:?}");
        } else {
            let mut client = tcp(addr);
            client.write_all(b"still here\n").unwrap();
            let mut got = [0u8; 1];
            assert_eq!(
                client.read(&mut got).unwrap(),
                1,
                "{args:?}: no answer after SIGHUP"
            );
        }
        server.signal("TERM");
        assert!(server.wait_exit(common::IO_TIMEOUT).success(), "{args:?}");
    }
}
