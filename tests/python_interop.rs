//! Interoperability with Python 3 programs written the way the classic socket lessons write
//! them: only the standard `socket` (and `struct`) module, `s.connect`, `s.send(msg.encode())`,
//! `s.recv(1024)`, `sendto`/`recvfrom`, `encode('gbk')`.
//!
//! Python clients run to completion through `common::python`; Python servers print the port
//! they bound on their first line and are read with `common::python_server`.

mod common;

use common::{IO_TIMEOUT, Proc, python, python_server, socktalk};

/// The classic TCP client: connect, then send and recv(1024) in lockstep.
const TCP_CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(('127.0.0.1', int(sys.argv[1])))
for msg in sys.argv[2:]:
    s.send(msg.encode())
    data = s.recv(1024)
    print(data.decode())
s.close()
"#;

#[test]
fn python_tcp_client_and_socktalk_echo() {
    let server = Proc::server(&["echo", "127.0.0.1:0"]);
    let port = server.socket_addr().port().to_string();
    let out = python(TCP_CLIENT, &[&port, "hello", "world", "你好 straße"]);
    assert_eq!(out, "hello\nworld\n你好 straße\n");
}

#[test]
fn python_tcp_client_and_socktalk_upper() {
    let server = Proc::server(&["echo", "--upper", "127.0.0.1:0"]);
    let port = server.socket_addr().port().to_string();
    let out = python(TCP_CLIENT, &[&port, "hello", "Mixed Case 123", "straße é"]);
    // Python's own str.upper() is the reference.
    let expected = python(
        "import sys\nfor m in sys.argv[1:]: print(m.upper())",
        &["hello", "Mixed Case 123", "straße é"],
    );
    assert_eq!(out, expected);
    assert_eq!(out, "HELLO\nMIXED CASE 123\nSTRASSE É\n");
}

#[test]
fn python_ipv6_client() {
    let server = Proc::server(&["echo", "--upper", "[::1]:0"]);
    let port = server.socket_addr().port().to_string();
    let out = python(
        r#"
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(('::1', int(sys.argv[1])))
s.send('six'.encode())
print(s.recv(1024).decode())
"#,
        &[&port],
    );
    assert_eq!(out, "SIX\n");
}

#[test]
fn python_udp_client_and_socktalk_upper() {
    let server = Proc::server(&["echo", "-u", "--upper", "127.0.0.1:0"]);
    let port = server.socket_addr().port().to_string();
    let out = python(
        r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(10)
addr = ('127.0.0.1', int(sys.argv[1]))
for msg in ['hello udp', '你好 abc', '']:
    s.sendto(msg.encode(), addr)
    data, server = s.recvfrom(1024)
    print(repr(data.decode()), server == addr)
"#,
        &[&port],
    );
    // Each datagram gets one reply from the server's address; an empty one too.
    assert_eq!(out, "'HELLO UDP' True\n'你好 ABC' True\n'' True\n");
}

#[test]
fn python_gbk_client_and_socktalk_gbk_upper() {
    let server = Proc::server(&["echo", "--upper", "--encoding", "gbk", "127.0.0.1:0"]);
    let port = server.socket_addr().port().to_string();
    let out = python(
        r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(('127.0.0.1', int(sys.argv[1])))
msg = 'hello 你好，世界'
s.send(msg.encode('gbk'))
data = s.recv(1024)
print(data.decode('gbk'))
print(data == msg.upper().encode('gbk'))
s.send(b'bad \xff bytes')
print(s.recv(1024).decode('gbk', 'replace'))
"#,
        &[&port],
    );
    assert_eq!(out, "HELLO 你好，世界\nTrue\nBAD ? BYTES\n");
}

/// A length-prefixed client (`struct.pack('>I', n)`), ending with a frame above the limit.
const LEN_CLIENT: &str = r#"
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(('127.0.0.1', int(sys.argv[1])))
msgs = ['first frame', '', '第三 third']
# All three in one sendall: the "sticky packet" a length prefix exists to undo.
s.sendall(b''.join(struct.pack('>I', len(m.encode())) + m.encode() for m in msgs))

def recv_exact(n):
    buf = b''
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise SystemExit('closed early')
        buf += chunk
    return buf

for _ in msgs:
    (n,) = struct.unpack('>I', recv_exact(4))
    print(repr(recv_exact(n).decode()))
# A frame above --max-frame: the server hangs up instead of buffering it.
s.sendall(struct.pack('>I', 1 << 30))
print(repr(s.recv(1024)))
"#;

#[test]
fn python_len_prefixed_client_sends_three_frames_at_once() {
    let server = Proc::server(&["echo", "--upper", "--frame", "len", "127.0.0.1:0"]);
    let port = server.socket_addr().port().to_string();
    // Twice: the server hangs up on the oversized frame, then serves the next client as before.
    for _ in 0..2 {
        let out = python(LEN_CLIENT, &[&port]);
        assert_eq!(out, "'FIRST FRAME'\n''\n'第三 THIRD'\nb''\n");
    }
}

/// The classic one-shot TCP server: accept, recv, send(data.upper()), close.
const TCP_SERVER: &str = r#"
import socket
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.bind(('127.0.0.1', 0))
srv.listen(1)
srv.settimeout(10)
print(srv.getsockname()[1], flush=True)
conn, addr = srv.accept()
conn.settimeout(10)
data = conn.recv(1024)
conn.send(data.upper())
conn.close()
print('received', repr(data), flush=True)
"#;

#[test]
fn socktalk_connect_to_a_python_tcp_server() {
    let (mut py, port) = python_server(TCP_SERVER);
    socktalk()
        .args(["connect", &format!("127.0.0.1:{port}")])
        .write_stdin("hello python\n")
        .assert()
        .success()
        .stdout("HELLO PYTHON\n");
    assert_eq!(py.next_line(), "received b'hello python\\n'");
    assert!(py.wait_exit(IO_TIMEOUT).success());
}

#[test]
fn socktalk_connect_to_a_python_server_that_reads_until_eof() {
    // The other classic loop: recv until b'' (which only a half-close delivers), in gbk.
    let (mut py, port) = python_server(
        r#"
import socket
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.bind(('127.0.0.1', 0))
srv.listen(1)
srv.settimeout(10)
print(srv.getsockname()[1], flush=True)
conn, addr = srv.accept()
conn.settimeout(10)
chunks = []
while True:
    data = conn.recv(1024)
    if not data:
        break
    chunks.append(data)
text = b''.join(chunks).decode('gbk')
conn.send(('%d 行: ' % text.count('\n') + text.upper()).encode('gbk'))
conn.close()
print(repr(text), flush=True)
"#,
    );
    socktalk()
        .args(["connect", "--encoding", "gbk", &format!("127.0.0.1:{port}")])
        .write_stdin("你好 one\ntwo\n")
        .assert()
        .success()
        .stdout("2 行: 你好 ONE\nTWO\n");
    assert_eq!(py.next_line(), "'你好 one\\ntwo\\n'");
    assert!(py.wait_exit(IO_TIMEOUT).success());
}

#[test]
fn socktalk_connect_to_a_python_udp_server() {
    let (mut py, port) = python_server(
        r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('127.0.0.1', 0))
s.settimeout(10)
print(s.getsockname()[1], flush=True)
for _ in range(2):
    data, addr = s.recvfrom(1024)
    s.sendto(data.upper(), addr)
    print('got', repr(data), flush=True)
"#,
    );
    socktalk()
        .args(["connect", "-u", "--frame", "line"])
        .arg(format!("127.0.0.1:{port}"))
        .write_stdin("hello\nworld\n")
        .assert()
        .success()
        .stdout("HELLO\nWORLD\n");
    // One datagram per line, without the newline.
    assert_eq!(py.next_line(), "got b'hello'");
    assert_eq!(py.next_line(), "got b'world'");
    assert!(py.wait_exit(IO_TIMEOUT).success());
}

#[test]
fn socktalk_connect_to_a_python_server_that_is_gone() {
    let (mut py, port) = python_server(
        r#"
import socket
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.bind(('127.0.0.1', 0))
print(srv.getsockname()[1], flush=True)
srv.close()
"#,
    );
    assert!(py.wait_exit(IO_TIMEOUT).success());
    let out = socktalk()
        .args(["connect", &format!("127.0.0.1:{port}")])
        .write_stdin("anyone?\n")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(common::one_line_error(&out.stderr).contains("connection refused"));
}
