//! The command line's contract: exit codes (0 ok, 1 runtime error, 2 usage error) and errors
//! that are exactly one line on stderr, never a panic or a backtrace.

mod common;

use std::net::{TcpListener, UdpSocket};

use common::{Proc, closed_tcp_addr, one_line_error, socktalk};

/// Runs `socktalk ARGS` (with backtraces enabled, to prove none leaks), checks the exit code and
/// the one-line error, and returns that line.
fn fails(args: &[&str], code: i32) -> String {
    let out = socktalk()
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .write_stdin("")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(code), "{args:?}: {out:?}");
    assert!(out.stdout.is_empty(), "{args:?} wrote to stdout: {out:?}");
    one_line_error(&out.stderr)
}

#[test]
fn port_out_of_range_is_a_usage_error_naming_the_range() {
    for args in [
        &["echo", "127.0.0.1:70000"][..],
        &["connect", "127.0.0.1:70000"],
        &["connect", "-u", "[::1]:70000"],
        &["talk", "--listen", "127.0.0.1:70000"],
        &["talk", "udp://127.0.0.1:70000"],
    ] {
        let line = fails(args, 2);
        assert!(
            line.contains("port 70000 is out of range 0–65535"),
            "{line}"
        );
        assert!(line.contains(":70000'"), "names the address typed: {line}");
    }
}

#[test]
fn malformed_addresses_are_usage_errors_that_say_why() {
    for (addr, why) in [
        ("127.0.0.1", "missing port"),
        ("127.0.0.1:", "missing port"),
        ("[::1]", "missing port"),
        ("localhost", "missing port"),
        (":7000", "missing host"),
        ("127.0.0.1:http", "not a number"),
        ("::1:7000", "IPv6 addresses need brackets"),
        ("[::1:7000", "missing ']'"),
        ("ftp://127.0.0.1:1", "unknown scheme 'ftp'"),
        ("/tmp/x.sock", "write unix:/tmp/x.sock"),
        ("unix:", "needs a path"),
        ("bad host:1", "not a valid host name"),
        ("", "empty"),
    ] {
        for command in ["echo", "connect"] {
            let line = fails(&[command, addr], 2);
            assert!(line.contains("bad address"), "{addr:?}: {line}");
            assert!(line.contains(why), "{addr:?}: {line}");
        }
    }
}

#[test]
fn unknown_subcommands_flags_and_values_are_usage_errors() {
    let line = fails(&["frobnicate"], 2);
    assert!(line.contains("frobnicate"), "{line}");
    let line = fails(&["echo", "--bogus", "127.0.0.1:0"], 2);
    assert!(line.contains("--bogus"), "{line}");
    let line = fails(&["connect", "-Z", "127.0.0.1:1"], 2);
    assert!(line.contains("-Z"), "{line}");
    let line = fails(&["echo", "127.0.0.1:0", "--frame", "xml"], 2);
    assert!(line.contains("xml"), "{line}");
    let line = fails(&["echo", "127.0.0.1:0", "--idle-timeout=-1"], 2);
    assert!(line.contains("--idle-timeout"), "{line}");
    let line = fails(&["connect", "-u", "127.0.0.1:1", "--linger=-2"], 2);
    assert!(line.contains("--linger"), "{line}");
    // Missing and conflicting arguments.
    fails(&["connect"], 2);
    fails(&["echo"], 2);
    fails(&["echo", "127.0.0.1:0", "-U", "/tmp/x.sock"], 2);
    fails(&["-v", "-q", "echo", "127.0.0.1:0"], 2);
    fails(&["-4", "-6", "connect", "127.0.0.1:1"], 2);
    // Options that make no sense together.
    let line = fails(&["echo", "-u", "127.0.0.1:0", "--frame", "line"], 2);
    assert!(line.contains("--frame"), "{line}");
    let line = fails(&["echo", "-u", "127.0.0.1:0", "--greet", "hi"], 2);
    assert!(line.contains("--greet"), "{line}");
    let line = fails(&["connect", "-u", "tcp://127.0.0.1:1"], 2);
    assert!(line.contains("tcp://"), "{line}");
    let line = fails(&["connect", "-6", "127.0.0.1:1"], 1);
    assert!(line.contains("cannot resolve"), "{line}");
}

#[test]
fn numeric_option_errors_name_the_option_and_the_value() {
    // "invalid digit found in string" alone does not tell the user which of their options is
    // wrong; the line must name it, as it does for --frame xml.
    for (args, option, value) in [
        (
            &["echo", "127.0.0.1:0", "--max-conns", "many"][..],
            "--max-conns",
            "many",
        ),
        (
            &["echo", "127.0.0.1:0", "--idle-timeout", "soon"],
            "--idle-timeout",
            "soon",
        ),
        (
            &["connect", "-u", "127.0.0.1:1", "--linger", "x"],
            "--linger",
            "x",
        ),
        (
            &[
                "connect",
                "127.0.0.1:1",
                "--max-frame",
                "99999999999999999999999",
            ],
            "--max-frame",
            "99999999999999999999999",
        ),
    ] {
        let line = fails(args, 2);
        assert!(line.contains(option), "{args:?}: {line}");
        assert!(line.contains(&format!("'{value}'")), "{args:?}: {line}");
    }
}

#[cfg(target_os = "linux")]
/// A negative number after an option is that option's value, refused by socktalk's own check
/// with the same words however it is written (`-w -1`, `--wait -1`, `--wait=-1`), never taken
/// for an unknown flag `-1`.
#[test]
fn negative_numbers_are_refused_as_the_options_value() {
    for (args, says) in [
        (
            &["connect", "-w", "-1", "127.0.0.1:1"][..],
            "--wait -1 is not a number of seconds ≥ 0",
        ),
        (
            &["connect", "--wait", "-1", "127.0.0.1:1"],
            "--wait -1 is not a number of seconds ≥ 0",
        ),
        (
            &["connect", "--wait=-1", "127.0.0.1:1"],
            "--wait -1 is not a number of seconds ≥ 0",
        ),
        (
            &["connect", "-w", "-0.5", "127.0.0.1:1"],
            "--wait -0.5 is not a number of seconds ≥ 0",
        ),
        (
            &["connect", "-i", "-2", "127.0.0.1:1"],
            "--idle-timeout -2 is not a number of seconds ≥ 0",
        ),
        (
            &["connect", "--linger", "-1", "127.0.0.1:1"],
            "--linger -1 is not a number of seconds ≥ 0",
        ),
        (
            &["talk", "-w", "-3", "127.0.0.1:1"],
            "--wait -3 is not a number of seconds ≥ 0",
        ),
        (
            &["chat", "--keepalive", "-1"],
            "--keepalive -1 is not a number of seconds ≥ 0",
        ),
        (
            &["echo", "127.0.0.1:0", "--idle-timeout", "-5"],
            "--idle-timeout -5 is not a number of seconds ≥ 0",
        ),
        (
            &["serve", "--idle-timeout", "-1"],
            "--idle-timeout -1 is not a number of seconds ≥ 0",
        ),
        (
            &["serve", "--ws-ping", "-1"],
            "--ws-ping -1 is not a number of seconds ≥ 0",
        ),
        (
            &["serve", "--max-rate", "-1"],
            "--max-rate and --burst must be ≥ 0",
        ),
        (
            &["bench", "pingpong", "127.0.0.1:1", "--duration", "-1"],
            "--duration -1 is not a number of seconds ≥ 0",
        ),
        // Counts: their parser names the option and the value.
        (
            &["serve", "--max-conns", "-3"],
            "invalid value '-3' for '--max-conns <N>'",
        ),
        (
            &["--threads", "-2", "serve"],
            "invalid value '-2' for '--threads <N>'",
        ),
        (
            &["bench", "udp", "127.0.0.1:1", "--timeout", "-1"],
            "invalid value '-1' for '--timeout <MS>'",
        ),
    ] {
        let line = fails(args, 2);
        assert!(line.contains(says), "{args:?}: {line}");
        assert!(!line.contains("unexpected argument"), "{args:?}: {line}");
    }
    // Only numbers: a flag where a value is due is still a missing value, and -4 a flag.
    let line = fails(&["connect", "-w", "-v", "127.0.0.1:1"], 2);
    assert!(
        line.contains("a value is required for '--wait <SECS>'"),
        "{line}"
    );
    let addr = closed_tcp_addr("127.0.0.1").to_string();
    let line = fails(&["connect", "-4", "-w", "1", &addr], 1);
    assert!(line.contains("connection refused"), "{line}");
}

#[test]
fn threads_sets_how_many_workers_a_server_runs() {
    use std::time::{Duration, Instant};

    // Worker threads name themselves once running, which may be just after the server says it
    // is listening: count them until the expected number shows up or a deadline passes.
    let workers = |threads: &str, expected: usize| {
        let server = Proc::server(&["echo", "127.0.0.1:0", "--threads", threads]);
        let named = || {
            let tasks = std::fs::read_dir(format!("/proc/{}/task", server.child.id())).unwrap();
            tasks
                .filter(|task| {
                    let comm = task.as_ref().unwrap().path().join("comm");
                    std::fs::read_to_string(comm)
                        .is_ok_and(|name| name.trim_end() == "socktalk-worker")
                })
                .count()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut count = named();
        while count < expected && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            count = named();
        }
        count
    };
    assert_eq!(workers("1", 1), 1);
    assert_eq!(workers("3", 3), 3);
}

#[test]
fn threads_out_of_range_is_a_usage_error_even_from_the_environment() {
    for bad in ["0", "1025"] {
        let line = fails(&["echo", "127.0.0.1:0", "--threads", bad], 2);
        assert!(line.contains("--threads"), "{line}");
    }
    // SOCKTALK_THREADS is checked like the option, by every command.
    let out = socktalk()
        .args(["connect", "127.0.0.1:1"])
        .env("SOCKTALK_THREADS", "abc")
        .write_stdin("")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let line = one_line_error(&out.stderr);
    assert!(line.contains("'abc'"), "{line}");
    // The user never typed --threads: the error names the variable the value came from.
    assert!(line.contains("from SOCKTALK_THREADS"), "{line}");
    let line = fails(&["echo", "127.0.0.1:0", "--threads=0"], 2);
    assert!(!line.contains("SOCKTALK_THREADS"), "{line}");
}

#[test]
fn connection_refused_is_a_runtime_error() {
    let addr = closed_tcp_addr("127.0.0.1");
    for command in ["connect", "talk"] {
        let line = fails(&[command, &addr.to_string()], 1);
        assert!(line.contains("connection refused"), "{line}");
        assert!(line.contains(&format!("tcp://{addr}")), "{line}");
    }
}

#[test]
fn a_port_in_use_is_a_runtime_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let line = fails(&["echo", &addr], 1);
    assert!(line.contains("already in use"), "{line}");
    assert!(line.contains(&addr), "{line}");
    let taken_udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_addr = taken_udp.local_addr().unwrap().to_string();
    let line = fails(&["echo", "-u", &udp_addr], 1);
    assert!(line.contains("already in use"), "{line}");
    // A second socktalk on a running socktalk's port.
    let server = Proc::server(&["echo", "127.0.0.1:0"]);
    let line = fails(&["echo", &server.addr], 1);
    assert!(line.contains("already in use"), "{line}");
}

#[test]
fn unix_paths_in_use_or_not_sockets_are_runtime_errors() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("live.sock");
    let sock = sock.to_str().unwrap();
    let _server = Proc::server(&["echo", "-U", sock]);
    let line = fails(&["echo", "-U", sock], 1);
    assert!(line.contains("live server"), "{line}");
    let file = dir.path().join("plain.txt");
    std::fs::write(&file, "not a socket").unwrap();
    let line = fails(&["echo", "-U", file.to_str().unwrap()], 1);
    assert!(line.contains("not a socket"), "{line}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a socket");
}

#[test]
fn help_lists_the_commands() {
    for args in [&["--help"][..], &["-h"], &["help"]] {
        let out = socktalk().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let help = String::from_utf8(out.stdout).unwrap();
        for command in ["echo", "connect", "talk"] {
            assert!(help.contains(command), "{args:?} lacks {command}: {help}");
        }
        assert!(help.contains("Usage:"), "{help}");
    }
    for command in ["echo", "connect", "talk"] {
        let out = socktalk().args([command, "--help"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        let help = String::from_utf8(out.stdout).unwrap();
        assert!(help.contains(&format!("socktalk {command}")), "{help}");
        assert!(help.contains("Examples:"), "{help}");
    }
}

/// The top line names the main job, and each command's help lists its own options first, then
/// the ones every command takes under a heading of their own (not `-v` between `-U` and `-u`).
#[test]
fn help_names_the_chat_server_and_keeps_global_options_apart() {
    let out = socktalk().arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.lines().next().unwrap().contains("chat server"),
        "{help}"
    );
    for command in ["serve", "chat", "echo", "connect", "talk"] {
        let out = socktalk().args([command, "--help"]).output().unwrap();
        let help = String::from_utf8(out.stdout).unwrap();
        let (own, global) = help
            .split_once("\nGlobal options:\n")
            .unwrap_or_else(|| panic!("{command}: no global options heading: {help}"));
        for flag in ["--verbose", "--quiet", "--threads"] {
            assert!(
                !own.contains(flag),
                "{command}: {flag} among its own: {help}"
            );
            assert!(
                global.contains(flag),
                "{command}: {flag} not global: {help}"
            );
        }
    }
    let out = socktalk().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("--db-sync <MODE>"), "{help}");
    let out = socktalk()
        .args(["bench", "udp", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("16 to 65507"), "{help}");
}

#[test]
fn version_prints_the_package_version() {
    let expected = format!("socktalk {}\n", env!("CARGO_PKG_VERSION"));
    for args in [&["--version"][..], &["-V"]] {
        socktalk()
            .args(args)
            .assert()
            .success()
            .stdout(expected.clone())
            .stderr("");
    }
    // Subcommands know it too (clap names them socktalk-connect and so on).
    for command in ["echo", "connect", "talk"] {
        let out = socktalk().args([command, "--version"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.starts_with("socktalk"), "{text}");
        assert!(
            text.ends_with(&format!(" {}\n", env!("CARGO_PKG_VERSION"))),
            "{text}"
        );
    }
}

#[test]
fn no_arguments_shows_usage_with_code_2() {
    let out = socktalk().env("RUST_BACKTRACE", "1").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("Usage:"), "{text}");
    assert!(!text.contains("panicked") && !text.contains("backtrace"));
}

/// Logs written to a file or a pipe are plain text: no terminal colour codes.
#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let mut server = Proc::server(&["-v", "echo", "127.0.0.1:0"]);
    let _client = common::tcp(server.socket_addr());
    server.signal("INT");
    assert!(server.wait_exit(common::IO_TIMEOUT).success());
    let log = server.stderr_text();
    assert!(log.contains("INFO"), "{log}");
    assert!(!log.contains('\x1b'), "colour codes in {log:?}");
}

#[test]
fn a_value_its_parser_refuses_points_to_its_own_commands_help() {
    for (args, command) in [
        (
            &["connect", "--linger", "abc", "127.0.0.1:1"][..],
            "socktalk connect",
        ),
        (
            &["echo", "--max-frame", "0", "127.0.0.1:0"],
            "socktalk echo",
        ),
        (
            &["bench", "fanout", "--conns", "x", "127.0.0.1:1"],
            "socktalk bench fanout",
        ),
    ] {
        let line = common::fails_with(args, 2);
        assert!(line.ends_with(&format!("(see {command} --help)")), "{line}");
    }
    // An argument that is not UTF-8 after the refused value is no reason to panic.
    use std::os::unix::ffi::OsStrExt;
    let out = socktalk()
        .args(["connect", "--linger", "abc"])
        .arg(std::ffi::OsStr::from_bytes(b"unix:\xff.sock"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let line = one_line_error(&out.stderr);
    assert!(line.ends_with("(see socktalk connect --help)"), "{line}");
}
