//! The echo and upper-case servers over Unix stream sockets, and the socket file's life cycle:
//! stale files reused, live servers and foreign files respected, the file removed on shutdown.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::Duration;

use common::{
    Proc, abstract_name, fails_with, is_closed, read_exact, read_to_end, unix, unix_abstract,
};

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

/// Starts `socktalk ARGS` in `dir` and waits for its "listening on" line; returns it and the line.
fn server_in(dir: &Path, args: &[&str]) -> (Proc, String) {
    let mut command = std::process::Command::new(common::bin());
    command.current_dir(dir).args(args);
    let mut server = Proc::spawn(command);
    let line = server.next_line();
    (server, line)
}

#[test]
fn an_abstract_socket_serves_socktalk_std_and_python_clients_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let name = abstract_name("echo");
    let (mut server, line) = server_in(dir.path(), &["echo", "-U", &format!("@{name}")]);
    assert_eq!(line, format!("listening on unix:@{name}"));
    let mut client = unix_abstract(&name);
    client.write_all(b"abstract\n").unwrap();
    assert_eq!(read_exact(&mut client, 9), b"abstract\n");
    drop(client);
    for target in [
        vec!["-U".to_string(), format!("@{name}")],
        vec![format!("unix:@{name}")],
    ] {
        common::socktalk()
            .current_dir(dir.path())
            .arg("connect")
            .args(&target)
            .write_stdin("from socktalk\n")
            .assert()
            .success()
            .stdout("from socktalk\n");
    }
    // Python names an abstract socket with a leading NUL.
    let got = common::python(
        "import socket, sys\n\
         s = socket.socket(socket.AF_UNIX)\n\
         s.connect('\\0' + sys.argv[1])\n\
         s.sendall('from python'.encode())\n\
         s.shutdown(socket.SHUT_WR)\n\
         print(s.makefile('rb').read().decode())\n",
        &[&name],
    );
    assert_eq!(got, "from python\n");
    // A second server cannot take the name while the first holds it.
    let err = fails_with(&["echo", &format!("unix:@{name}")], 1);
    assert!(
        err.contains(&format!(
            "unix:@{name}: a live server is already listening there"
        )),
        "{err}"
    );
    server.signal("TERM");
    assert!(server.wait_exit(common::IO_TIMEOUT).success());
    // No file was made, here or anywhere named like it; and the name is free again.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    assert!(!Path::new(&format!("@{name}")).exists());
    let (_again, line) = server_in(dir.path(), &["echo", &format!("unix:@{name}")]);
    assert_eq!(line, format!("listening on unix:@{name}"));
}

#[test]
fn socktalk_reaches_a_python_server_on_an_abstract_socket() {
    let name = abstract_name("python-server");
    let mut command = std::process::Command::new("python3");
    command.arg("-c").arg(
        "import socket, sys\n\
         l = socket.socket(socket.AF_UNIX)\n\
         l.bind('\\0' + sys.argv[1])\n\
         l.listen(1)\n\
         print('ready', flush=True)\n\
         c, _ = l.accept()\n\
         data = c.makefile('rb').read()\n\
         c.sendall(data.upper())\n\
         c.close()\n",
    );
    command.arg(&name);
    let mut python = Proc::spawn(command);
    assert_eq!(python.next_line(), "ready");
    common::socktalk()
        .args(["connect", "-U", &format!("@{name}")])
        .write_stdin("shout\n")
        .assert()
        .success()
        .stdout("SHOUT\n");
}

#[test]
fn a_file_whose_name_starts_with_at_is_reached_through_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, line) = server_in(dir.path(), &["echo", "unix:./@file"]);
    assert_eq!(line, "listening on unix:./@file");
    assert!(is_socket(&dir.path().join("@file")));
    common::socktalk()
        .current_dir(dir.path())
        .args(["connect", "-U", "./@file"])
        .write_stdin("a file\n")
        .assert()
        .success()
        .stdout("a file\n");
}

#[test]
fn bad_abstract_names_are_usage_errors() {
    for command in ["echo", "connect"] {
        let err = fails_with(&[command, "unix:@"], 2);
        assert!(err.contains("needs a name after '@'"), "{err}");
        let long = format!("@{}", "x".repeat(120));
        let err = fails_with(&[command, "-U", &long], 2);
        assert!(
            err.contains("an abstract socket name is at most 107 bytes"),
            "{err}"
        );
    }
    let err = fails_with(&["connect", "@chat"], 2);
    assert!(err.contains("write unix:@chat or use -U @chat"), "{err}");
}
