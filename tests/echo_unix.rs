//! The echo and upper-case servers over Unix stream sockets, and the socket file's life cycle:
//! stale files reused, live servers and foreign files respected, the file removed on shutdown.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::Duration;

use common::{Proc, fails_with, is_closed, read_exact, read_to_end, unix};

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("temp paths are utf-8")
}

fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_socket())
}

#[test]
fn dash_capital_u_echoes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("echo.sock");
    let server = Proc::server(&["echo", "-U", path_arg(&path)]);
    assert_eq!(server.addr, format!("unix:{}", path.display()));
    assert!(is_socket(&path));
    let mut client = unix(&path);
    client.write_all(b"hello\n").unwrap();
    assert_eq!(read_exact(&mut client, 6), b"hello\n");
    let binary: Vec<u8> = (0..=255).collect();
    client.write_all(&binary).unwrap();
    assert_eq!(read_exact(&mut client, 256), binary);
}

#[test]
fn unix_scheme_echoes_and_half_close_ends_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scheme.sock");
    let server = Proc::server(&["echo", &format!("unix:{}", path.display())]);
    assert_eq!(server.addr, format!("unix:{}", path.display()));
    let mut client = unix(&path);
    client.write_all(b"over a unix socket").unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut client), b"over a unix socket");
}

#[test]
fn upper_over_unix_utf8_and_gbk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upper.sock");
    let server = Proc::server(&["echo", "--upper", "--frame", "line", "-U", path_arg(&path)]);
    let mut client = unix(&path);
    client.write_all("straße é 你好abc\n".as_bytes()).unwrap();
    let expected = "STRASSE É 你好ABC\n".as_bytes();
    assert_eq!(read_exact(&mut client, expected.len()), expected);
    client.write_all(b"bad\xff\n").unwrap();
    let expected = "BAD\u{fffd}\n".as_bytes();
    assert_eq!(read_exact(&mut client, expected.len()), expected);
    drop(server);

    let path = dir.path().join("upper-gbk.sock");
    let _server = Proc::server(&[
        "echo",
        "--upper",
        "--encoding",
        "gbk",
        "--frame",
        "line",
        "-U",
        path_arg(&path),
    ]);
    let mut client = unix(&path);
    // '你好abc'.encode('gbk') + b'\n'
    client.write_all(b"\xc4\xe3\xba\xc3abc\n").unwrap();
    assert_eq!(read_exact(&mut client, 8), b"\xc4\xe3\xba\xc3ABC\n");
}

#[test]
fn a_stale_socket_file_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stale.sock");
    // A server that died without cleaning up: the file stays, nobody listens.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(is_socket(&path));
    let server = Proc::server(&["echo", "-U", path_arg(&path)]);
    assert_eq!(server.addr, format!("unix:{}", path.display()));
    let mut client = unix(&path);
    client.write_all(b"fresh").unwrap();
    assert_eq!(read_exact(&mut client, 5), b"fresh");
}

#[test]
fn a_socket_file_left_by_a_killed_server_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("killed.sock");
    let mut first = Proc::server(&["echo", "-U", path_arg(&path)]);
    let mut client = unix(&path);
    client.write_all(b"one").unwrap();
    assert_eq!(read_exact(&mut client, 3), b"one");
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(3));
    assert!(is_socket(&path), "SIGKILL leaves the file behind");
    assert!(is_closed(&mut client));

    let _second = Proc::server(&["echo", "-U", path_arg(&path)]);
    let mut client = unix(&path);
    client.write_all(b"two").unwrap();
    assert_eq!(read_exact(&mut client, 3), b"two");
}

#[test]
fn a_path_held_by_a_live_server_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.sock");
    let _first = Proc::server(&["echo", "-U", path_arg(&path)]);
    let err = fails_with(&["echo", "-U", path_arg(&path)], 1);
    assert!(err.contains("live server"), "{err}");
    let err = fails_with(&["echo", &format!("unix:{}", path.display())], 1);
    assert!(err.contains("live server"), "{err}");
    // The refused server neither removed nor replaced the live one's file.
    assert!(is_socket(&path));
    let mut client = unix(&path);
    client.write_all(b"still mine").unwrap();
    assert_eq!(read_exact(&mut client, 10), b"still mine");
}

#[test]
fn a_regular_file_at_the_path_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("precious.txt");
    std::fs::write(&path, b"do not delete me").unwrap();
    let err = fails_with(&["echo", "-U", path_arg(&path)], 1);
    assert!(err.contains("not a socket"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"do not delete me");

    let sub = dir.path().join("a-directory");
    std::fs::create_dir(&sub).unwrap();
    let err = fails_with(&["echo", "-U", path_arg(&sub)], 1);
    assert!(err.contains("not a socket"), "{err}");
    assert!(sub.is_dir());
}

#[test]
fn unusable_paths_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir").join("s.sock");
    let err = fails_with(&["echo", "-U", path_arg(&missing)], 1);
    assert!(err.contains("cannot listen on unix:"), "{err}");
    assert!(err.contains("no such file"), "{err}");
    // sun_path holds at most 107 bytes: a usage error that names the limit, for servers and
    // clients alike (the kernel's words say only "shorter than SUN_LEN").
    let long = dir.path().join("x".repeat(120));
    for command in ["echo", "connect"] {
        let err = fails_with(&[command, "-U", path_arg(&long)], 2);
        assert!(
            err.contains("a Unix socket path is at most 107 bytes"),
            "{err}"
        );
    }
    assert!(!long.exists());
}

#[test]
fn udp_or_an_empty_path_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("u.sock");
    let err = fails_with(&["echo", "-u", "-U", path_arg(&path)], 2);
    assert!(err.contains("Unix"), "{err}");
    fails_with(&["echo", "unix:"], 2);
    assert!(!path.exists());
}

#[test]
fn sigterm_and_sigint_remove_the_socket_file_and_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    for signal in ["TERM", "INT"] {
        let path = dir.path().join(format!("{signal}.sock"));
        let mut server = Proc::server(&["echo", "-U", path_arg(&path)]);
        let mut client = unix(&path);
        client.write_all(b"hi").unwrap();
        assert_eq!(read_exact(&mut client, 2), b"hi");
        server.signal(signal);
        let status = server.wait_exit(Duration::from_secs(3));
        assert_eq!(status.code(), Some(0), "SIG{signal}: {status}");
        assert!(!path.exists(), "SIG{signal} left {}", path.display());
        // The connected client was closed, not left hanging.
        let mut buf = [0u8; 8];
        assert_eq!(client.read(&mut buf).unwrap(), 0);
    }
}

#[test]
fn shutdown_leaves_a_file_that_another_server_now_owns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.sock");
    let mut old = Proc::server(&["echo", "-U", path_arg(&path)]);
    // Someone removes the old server's file and a new server binds the same path.
    std::fs::remove_file(&path).unwrap();
    let _new = Proc::server(&["echo", "-U", path_arg(&path)]);
    old.signal("TERM");
    assert_eq!(old.wait_exit(Duration::from_secs(3)).code(), Some(0));
    // The old server must not remove the new server's file on its way out.
    assert!(is_socket(&path));
    let mut client = unix(&path);
    client.write_all(b"new").unwrap();
    assert_eq!(read_exact(&mut client, 3), b"new");
}
