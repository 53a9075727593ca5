//! Text encodings end to end: gbk (and big5, shift_jis, gb18030) on the wire, utf-8 at the
//! terminal, and bytes that are not text never crashing anything.
//!
//! Expected wire bytes are spelled out (checked against Python's codecs), not computed with the
//! encoder under test.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::{self, JoinHandle};

use common::{IO_TIMEOUT, Proc, len_frame, one_line_error, read_exact, read_to_end, socktalk, tcp};

/// 你好 in gbk.
const NIHAO_GBK: &[u8] = b"\xc4\xe3\xba\xc3";
/// 世界 in gbk.
const SHIJIE_GBK: &[u8] = b"\xca\xc0\xbd\xe7";

/// A one-connection TCP peer that reads everything, then sends `reply` in `pieces`-byte writes
/// and closes; returns what it received.
fn peer(reply: Vec<u8>, pieces: usize) -> (SocketAddr, JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let got = read_to_end(&mut stream);
        for piece in reply.chunks(pieces) {
            stream.write_all(piece).unwrap();
            stream.flush().unwrap();
        }
        got
    });
    (addr, handle)
}

fn ask(client: &mut TcpStream, question: &[u8], answer_len: usize) -> Vec<u8> {
    client.write_all(question).unwrap();
    read_exact(client, answer_len)
}

#[test]
fn gbk_upper_server_answers_in_gbk() {
    for framing in ["line", "raw"] {
        let server = Proc::server(&[
            "echo",
            "--upper",
            "--encoding",
            "gbk",
            "--frame",
            framing,
            "127.0.0.1:0",
        ]);
        let mut client = tcp(server.socket_addr());
        let mut question = b"hello ".to_vec();
        question.extend(NIHAO_GBK);
        question.push(b'\n');
        let mut answer = b"HELLO ".to_vec();
        answer.extend(NIHAO_GBK);
        answer.push(b'\n');
        assert_eq!(
            ask(&mut client, &question, answer.len()),
            answer,
            "{framing}"
        );
        // 0x81 0x61 is one gbk character whose second byte is ASCII 'a': it must not become 'A'.
        assert_eq!(
            ask(&mut client, b"\x81\x61z\n", 4),
            b"\x81\x61Z\n",
            "{framing}"
        );
    }
}

#[test]
fn gbk_server_survives_invalid_bytes() {
    let server = Proc::server(&[
        "echo",
        "--upper",
        "--encoding",
        "gbk",
        "--frame",
        "line",
        "127.0.0.1:0",
    ]);
    let mut client = tcp(server.socket_addr());
    // Not gbk: replaced (gbk has no U+FFFD, so '?', as Python's errors='replace').
    assert_eq!(ask(&mut client, b"\xffa\n", 3), b"?A\n");
    // A line ending in half a character.
    assert_eq!(ask(&mut client, b"x\x81\n", 3), b"X?\n");
    // Utf-8 é (c3 a9) read as gbk is 茅, which has no upper case: answered byte for byte.
    assert_eq!(ask(&mut client, "é\n".as_bytes(), 3), "é\n".as_bytes());
    // The same connection and new ones are still served.
    let mut question = NIHAO_GBK.to_vec();
    question.extend(b"ok\n");
    let mut answer = NIHAO_GBK.to_vec();
    answer.extend(b"OK\n");
    assert_eq!(ask(&mut client, &question, answer.len()), answer);
    let mut second = tcp(server.socket_addr());
    assert_eq!(ask(&mut second, b"fine\n", 5), b"FINE\n");
}

#[test]
fn connect_gbk_sends_gbk_and_prints_utf8() {
    let mut reply = SHIJIE_GBK.to_vec();
    reply.push(b'\n');
    // One byte per write: characters arrive split and must be put back together.
    let (addr, handle) = peer(reply, 1);
    socktalk()
        .args(["connect", "--encoding", "gbk", &addr.to_string()])
        .write_stdin("你好 hi\n")
        .assert()
        .success()
        .stdout("世界\n");
    let mut expected = NIHAO_GBK.to_vec();
    expected.extend(b" hi\n");
    assert_eq!(handle.join().unwrap(), expected);
}

#[test]
fn connect_gbk_with_len_frames() {
    let mut reply = len_frame(SHIJIE_GBK);
    reply.extend(len_frame(b"abc"));
    let (addr, handle) = peer(reply, 3);
    socktalk()
        .args(["connect", "--encoding", "gbk", "--frame", "len"])
        .arg(addr.to_string())
        .write_stdin("你好\n")
        .assert()
        .success()
        .stdout("世界\nabc\n");
    // The length counts gbk bytes (4), not utf-8 bytes (6).
    assert_eq!(handle.join().unwrap(), len_frame(NIHAO_GBK));
}

#[test]
fn connect_gbk_replaces_what_cannot_be_encoded_or_decoded() {
    let (addr, handle) = peer(b"ok\xff!\x81".to_vec(), 64);
    let mut typed = "a😀b ".as_bytes().to_vec();
    typed.extend(b"\xff\n");
    socktalk()
        .args(["connect", "--encoding", "gbk", &addr.to_string()])
        .write_stdin(typed)
        .assert()
        .success()
        .stdout("ok\u{fffd}!\u{fffd}");
    // 😀 is not in gbk, and a byte that is not utf-8 is not text: both sent as '?'.
    assert_eq!(handle.join().unwrap(), b"a?b ?\n");
}

#[test]
fn gbk_end_to_end_between_socktalk_processes() {
    let server = Proc::server(&["echo", "--upper", "--encoding", "gbk", "127.0.0.1:0"]);
    socktalk()
        .args(["connect", "--encoding", "gbk", &server.addr])
        .write_stdin("abc你好\n")
        .assert()
        .success()
        .stdout("ABC你好\n");
    let udp = Proc::server(&["echo", "-u", "--upper", "--encoding", "gbk", "127.0.0.1:0"]);
    socktalk()
        .args(["connect", "--encoding", "gbk", "--frame", "line", &udp.addr])
        .write_stdin("udp 你好\ncafé\nstraße\n")
        .assert()
        .success()
        // gbk has é but not É, and no ß: what it cannot carry travels as '?', as Python's
        // `.encode('gbk', 'replace')` would send it.
        .stdout("UDP 你好\nCAF?\nSTRA?E\n");
}

#[test]
fn shift_jis_upper_server() {
    let server = Proc::server(&[
        "echo",
        "--upper",
        "--encoding",
        "shift_jis",
        "--frame",
        "line",
        "127.0.0.1:0",
    ]);
    let konnichiwa: &[u8] = b"\x82\xb1\x82\xf1\x82\xc9\x82\xbf\x82\xcd";
    let mut question = konnichiwa.to_vec();
    question.extend(b" abc\n");
    let mut answer = konnichiwa.to_vec();
    answer.extend(b" ABC\n");
    let mut client = tcp(server.socket_addr());
    assert_eq!(ask(&mut client, &question, answer.len()), answer);
}

#[test]
fn big5_and_gb18030_on_the_wire() {
    let (addr, handle) = peer(b"\xa7\x41\xa6\x6e\n".to_vec(), 64);
    socktalk()
        .args(["connect", "--encoding", "big5", &addr.to_string()])
        .write_stdin("中文\n")
        .assert()
        .success()
        .stdout("你好\n");
    assert_eq!(handle.join().unwrap(), b"\xa4\xa4\xa4\xe5\n");
    // gb18030 encodes every character, emoji included, where gbk writes '?'.
    let (addr, handle) = peer(b"\x94\x39\xfc\x36".to_vec(), 1);
    socktalk()
        .args(["connect", "--encoding", "GB18030", &addr.to_string()])
        .write_stdin("😀")
        .assert()
        .success()
        .stdout("😀");
    assert_eq!(handle.join().unwrap(), b"\x94\x39\xfc\x36");
}

#[test]
fn python_spellings_of_latin1_are_understood() {
    // `encode('latin-1')` is how Python exercises spell it; WHATWG only knows `latin1`.
    for label in ["latin-1", "latin_1", "Latin-1"] {
        let server = Proc::server(&[
            "echo",
            "--upper",
            "--encoding",
            label,
            "--frame",
            "line",
            "127.0.0.1:0",
        ]);
        let mut client = tcp(server.socket_addr());
        // café, then CAFÉ, in latin-1.
        assert_eq!(ask(&mut client, b"caf\xe9\n", 5), b"CAF\xc9\n", "{label}");
    }
}

#[test]
fn unknown_or_decode_only_encodings_are_usage_errors() {
    for (args, label) in [
        (
            &["connect", "--encoding", "klingon", "127.0.0.1:1"][..],
            "klingon",
        ),
        (
            &["echo", "--encoding", "utf-16le", "127.0.0.1:0"],
            "utf-16le",
        ),
        (&["talk", "--encoding", "", "127.0.0.1:1"], "''"),
        (
            &["echo", "-u", "--encoding", "replacement", "127.0.0.1:0"],
            "replacement",
        ),
    ] {
        let out = socktalk().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let line = one_line_error(&out.stderr);
        assert!(
            line.contains("unknown encoding") || line.contains("can only be read, not written"),
            "{line}"
        );
        assert!(line.contains(label), "{line}");
        assert!(out.stdout.is_empty(), "{args:?} started anyway");
    }
}
