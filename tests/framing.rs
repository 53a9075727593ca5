//! `--frame line` and `--frame len` on the echo server: the "sticky packets" lesson. TCP carries
//! bytes, not messages, so many messages written at once must still come back one by one, and
//! a message split over many writes must come back whole. Frames that break the limits close
//! only the connection that sent them.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;

use common::{
    Proc, fails_with, is_closed, len_frame, read_exact, read_len_frame, read_to_end, tcp,
};

/// Sends `msg` as one line and checks it comes back; proves the connection is being served.
fn line_round_trip(stream: &mut TcpStream, msg: &str) {
    stream.write_all(format!("{msg}\n").as_bytes()).unwrap();
    let expected = format!("{msg}\n");
    assert_eq!(read_exact(stream, expected.len()), expected.as_bytes());
}

/// Sends `msg` as one len frame and checks it comes back.
fn len_round_trip(stream: &mut TcpStream, msg: &[u8]) {
    stream.write_all(&len_frame(msg)).unwrap();
    assert_eq!(read_len_frame(stream), msg);
}

/// Writes `bytes` one byte per write, with Nagle off so each byte is its own segment.
fn write_bytewise(stream: &mut TcpStream, bytes: &[u8]) {
    stream.set_nodelay(true).unwrap();
    for byte in bytes {
        stream.write_all(std::slice::from_ref(byte)).unwrap();
    }
}

/// Writes `wire` in one `write_all` from another thread, then half-closes, and returns
/// everything the server sent until it closed. Writing and reading at once means a large
/// exchange cannot deadlock on full socket buffers.
fn exchange(addr: SocketAddr, wire: Vec<u8>) -> Vec<u8> {
    let mut client = tcp(addr);
    let mut writer = client.try_clone().unwrap();
    let handle = thread::spawn(move || {
        writer.write_all(&wire).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let echoed = read_to_end(&mut client);
    handle.join().unwrap();
    echoed
}

#[test]
fn line_many_messages_in_one_write_come_back_one_by_one() {
    let server = Proc::server(&["echo", "127.0.0.1:0", "--frame", "line"]);
    let client = tcp(server.socket_addr());
    let messages: Vec<String> = (0..100).map(|i| format!("message {i}")).collect();
    let mut wire = messages.join("\n").into_bytes();
    wire.push(b'\n');
    (&client).write_all(&wire).unwrap();
    let mut reader = BufReader::new(&client);
    for msg in &messages {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, format!("{msg}\n"));
    }
}

#[test]
fn line_crlf_and_empty_lines() {
    let server = Proc::server(&["echo", "127.0.0.1:0", "--frame", "line"]);
    let echoed = exchange(
        server.socket_addr(),
        b"one\r\ntwo\r\n\r\n\nthree\n".to_vec(),
    );
    assert_eq!(echoed, b"one\ntwo\n\n\nthree\n");
}

#[test]
fn line_a_last_line_without_newline_is_echoed_at_half_close() {
    let server = Proc::server(&["echo", "127.0.0.1:0", "--frame", "line"]);
    let echoed = exchange(
        server.socket_addr(),
        b"first\nlast without newline".to_vec(),
    );
    assert_eq!(echoed, b"first\nlast without newline\n");
}

#[test]
fn a_message_split_over_many_writes_comes_back_whole() {
    let server = Proc::server(&["echo", "127.0.0.1:0", "--frame", "line", "--upper"]);
    let mut client = tcp(server.socket_addr());
    // Multi-byte characters split between writes are still upper-cased as characters.
    write_bytewise(&mut client, "one é line\r\n".as_bytes());
    let expected = "ONE É LINE\n".as_bytes();
    assert_eq!(read_exact(&mut client, expected.len()), expected);

    let server = Proc::server(&["echo", "127.0.0.1:0", "--frame", "len"]);
    let mut client = tcp(server.socket_addr());
    write_bytewise(&mut client, &len_frame(b"dribbled in"));
    assert_eq!(read_len_frame(&mut client), b"dribbled in");
}

#[test]
fn len_frames_back_to_back_including_empty_ones() {
    let server = Proc::server(&["echo", "127.0.0.1:0", "--frame", "len"]);
    let messages: [&[u8]; 5] = [b"hello", b"", b"", b"\x00\n\xff binary", b"world"];
    let wire: Vec<u8> = messages.iter().flat_map(|m| len_frame(m)).collect();
    let mut client = tcp(server.socket_addr());
    client.write_all(&wire).unwrap();
    for msg in messages {
        assert_eq!(read_len_frame(&mut client), msg);
    }
    // The connection is still in step: one more frame, including only an empty one.
    len_round_trip(&mut client, b"");
    len_round_trip(&mut client, b"in step");
}

#[test]
fn line_at_the_limit_is_served_and_past_it_closes_only_that_connection() {
    let server = Proc::server(&[
        "echo",
        "127.0.0.1:0",
        "--frame",
        "line",
        "--max-frame",
        "16",
    ]);
    let addr = server.socket_addr();
    let mut steady = tcp(addr);
    line_round_trip(&mut steady, "before");
    // Exactly 16 bytes is allowed, with or without \r.
    line_round_trip(&mut steady, "0123456789abcdef");
    steady.write_all(b"0123456789abcdef\r\n").unwrap();
    assert_eq!(read_exact(&mut steady, 17), b"0123456789abcdef\n");

    // A line too long, with its newline: refused.
    let mut offender = tcp(addr);
    offender.write_all(b"0123456789abcdefg\n").unwrap();
    assert!(is_closed(&mut offender));
    // A line too long that never ends: refused once it passes the limit. The complete line
    // before it is still answered.
    let mut offender = tcp(addr);
    offender
        .write_all(b"ok\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")
        .unwrap();
    assert_eq!(read_exact(&mut offender, 3), b"ok\n");
    assert!(is_closed(&mut offender));

    line_round_trip(&mut steady, "after");
    let mut late = tcp(addr);
    line_round_trip(&mut late, "late");
}

#[test]
fn len_prefix_above_the_limit_closes_only_that_connection() {
    let server = Proc::server(&["echo", "127.0.0.1:0", "--frame", "len", "--max-frame", "16"]);
    let addr = server.socket_addr();
    let mut steady = tcp(addr);
    len_round_trip(&mut steady, b"before");
    len_round_trip(&mut steady, b"sixteen bytes!!!");

    for prefix in [[0xff, 0xff, 0xff, 0xff], 17u32.to_be_bytes()] {
        let mut offender = tcp(addr);
        // Only the prefix is needed to refuse: the server must not wait for 4 GiB.
        offender.write_all(&prefix).unwrap();
        assert!(is_closed(&mut offender), "prefix {prefix:?}");
    }

    len_round_trip(&mut steady, b"after");
    let mut late = tcp(addr);
    len_round_trip(&mut late, b"late");
}

#[test]
fn half_a_len_frame_then_half_close_is_closed_cleanly() {
    let server = Proc::server(&["echo", "127.0.0.1:0", "--frame", "len"]);
    let addr = server.socket_addr();
    let mut steady = tcp(addr);
    len_round_trip(&mut steady, b"before");

    // A whole frame, then a prefix announcing 5 bytes followed by only 2.
    let mut wire = len_frame(b"whole");
    wire.extend_from_slice(&[0, 0, 0, 5, b'a', b'b']);
    // read_to_end fails on a reset, so this also proves the close was a clean FIN.
    assert_eq!(exchange(addr, wire), len_frame(b"whole"));
    // Half a prefix is truncated too.
    assert_eq!(exchange(addr, vec![0, 0]), b"");

    len_round_trip(&mut steady, b"after");
}

/// The log counts a cut-off frame's payload as the client's program does: 7 of the 14 bytes
/// `struct.pack('>I', 14)` announced, not 11 of 18 with the header.
#[test]
fn half_a_len_frame_is_logged_in_the_payload_bytes_the_header_announced() {
    let mut server = Proc::server(&["echo", "127.0.0.1:0", "--frame", "len"]);
    let addr = server.socket_addr();
    let mut wire = 14u32.to_be_bytes().to_vec();
    wire.extend_from_slice(b"1234567");
    assert_eq!(exchange(addr, wire), b"");
    let line = server.next_stderr_line();
    assert!(
        line.contains(
            "closing: connection closed mid-frame (7 of the 14 bytes its header announced)"
        ),
        "{line}"
    );
    assert_eq!(exchange(addr, vec![0, 0]), b"");
    let line = server.next_stderr_line();
    assert!(
        line.contains("mid-frame (2 of the 4 bytes of its length header)"),
        "{line}"
    );
}

#[test]
fn a_flood_of_small_line_frames_is_echoed_in_order() {
    let server = Proc::server(&["echo", "127.0.0.1:0", "--frame", "line"]);
    let wire: Vec<u8> = (0..10_000)
        .flat_map(|i| format!("msg {i:05}\n").into_bytes())
        .collect();
    let echoed = exchange(server.socket_addr(), wire.clone());
    assert_eq!(echoed.len(), wire.len());
    assert!(echoed == wire, "the flood came back changed or reordered");
}

#[test]
fn a_flood_of_len_frames_is_echoed_in_order() {
    let server = Proc::server(&["echo", "127.0.0.1:0", "--frame", "len"]);
    let wire: Vec<u8> = (0..10_000)
        .flat_map(|i: u32| len_frame(&i.to_be_bytes()[..(i % 5) as usize]))
        .collect();
    let echoed = exchange(server.socket_addr(), wire.clone());
    assert_eq!(echoed.len(), wire.len());
    assert!(echoed == wire, "the flood came back changed or reordered");
}

#[test]
fn upper_len_gbk_frame() {
    let server = Proc::server(&[
        "echo",
        "127.0.0.1:0",
        "--upper",
        "--frame",
        "len",
        "--encoding",
        "gbk",
    ]);
    let mut client = tcp(server.socket_addr());
    // '你好abc'.encode('gbk') -> '你好ABC'.encode('gbk')
    client
        .write_all(&len_frame(b"\xc4\xe3\xba\xc3abc"))
        .unwrap();
    assert_eq!(read_len_frame(&mut client), b"\xc4\xe3\xba\xc3ABC");
    // A gbk character whose trail byte is ASCII 'a' (0x81 0x61) stays intact.
    client.write_all(&len_frame(b"\x81\x61a")).unwrap();
    assert_eq!(read_len_frame(&mut client), b"\x81\x61A");
    // Frames sent together are upper-cased one by one.
    let mut wire = len_frame(b"x\xc4\xe3");
    wire.extend(len_frame(b""));
    wire.extend(len_frame(b"\xba\xc3y"));
    client.write_all(&wire).unwrap();
    assert_eq!(read_len_frame(&mut client), b"X\xc4\xe3");
    assert_eq!(read_len_frame(&mut client), b"");
    assert_eq!(read_len_frame(&mut client), b"\xba\xc3Y");
}

#[test]
fn greeting_is_framed_like_every_other_message() {
    let server = Proc::server(&["echo", "127.0.0.1:0", "--frame", "len", "--greet", "hi"]);
    let mut client = tcp(server.socket_addr());
    assert_eq!(read_len_frame(&mut client), b"hi");
    len_round_trip(&mut client, b"then echo");

    // A newline typed at the end of a line greeting is that line's, not a second, empty one.
    for greet in ["hi", "hi\n", "hi\r\n"] {
        let server = Proc::server(&["echo", "127.0.0.1:0", "--frame", "line", "--greet", greet]);
        let mut client = tcp(server.socket_addr());
        assert_eq!(read_exact(&mut client, 3), b"hi\n", "{greet:?}");
        line_round_trip(&mut client, "then echo");
    }

    // Raw, an empty greeting sends nothing: the first bytes are the echo.
    let server = Proc::server(&["echo", "127.0.0.1:0", "--greet", ""]);
    let mut client = tcp(server.socket_addr());
    client.write_all(b"ping").unwrap();
    assert_eq!(read_exact(&mut client, 4), b"ping");
}

#[test]
fn bad_framing_options_are_usage_errors() {
    let err = fails_with(&["echo", "127.0.0.1:0", "--frame", "xml"], 2);
    assert!(err.contains("xml"), "{err}");
    let err = fails_with(&["echo", "127.0.0.1:0", "--max-frame", "-1"], 2);
    assert!(err.contains("-1"), "{err}");
}

#[test]
fn a_bad_max_frame_value_is_named_in_the_error() {
    // The user must learn which value of which flag was wrong, not just "invalid digit".
    let err = fails_with(&["echo", "127.0.0.1:0", "--max-frame", "lots"], 2);
    assert!(err.contains("lots"), "{err}");
    assert!(err.contains("--max-frame"), "{err}");
}

#[test]
fn raw_framing_echoes_what_line_framing_would_split() {
    // Without framing, bytes are bytes: newlines and length-looking prefixes pass untouched.
    let server = Proc::server(&["echo", "127.0.0.1:0"]);
    let mut client = tcp(server.socket_addr());
    let wire = b"a\r\nb\n\xff\xff\xff\xffc";
    client.write_all(wire).unwrap();
    let mut echoed = vec![0u8; wire.len()];
    client.read_exact(&mut echoed).unwrap();
    assert_eq!(echoed, wire);
}

/// A client that frames differently (here a length over the limit, then its megabyte, as
/// `sendall(struct.pack('>I', 1 << 20) + data)` sends it) is closed cleanly, after the replies
/// it was owed: not with a reset, which could destroy them. The log shows the header in hex.
#[test]
fn a_refused_len_frame_is_closed_cleanly_after_the_replies_owed() {
    let mut server = Proc::server(&["echo", "127.0.0.1:0", "--frame", "len"]);
    let mut client = tcp(server.socket_addr());
    let mut wire = len_frame(b"owed");
    wire.extend_from_slice(&(1u32 << 20).to_be_bytes());
    wire.extend(std::iter::repeat_n(b'x', 1 << 20));
    client.write_all(&wire).unwrap();
    let mut got = Vec::new();
    client
        .read_to_end(&mut got)
        .expect("a clean end of stream, not a reset");
    assert_eq!(got, len_frame(b"owed"));
    let log = server.next_stderr_line();
    assert!(
        log.contains(
            "length prefix of 1048576 bytes (header 00100000) is over the 65536-byte limit"
        ),
        "{log}"
    );
}
