//! `socktalk bench`: a short smoke run of every mode against socktalk's own servers, and of
//! `bench/join_storm.py`. It asserts only that each produces sane numbers (work done, no
//! errors); speed is for BENCHMARKS.md, never a test threshold.

mod common;

use common::{Proc, socktalk};
use serde_json::Value;

/// Runs `socktalk bench ARGS --json` and returns its report.
fn bench(args: &[&str]) -> Value {
    let mut argv = vec!["bench"];
    argv.extend_from_slice(args);
    argv.push("--json");
    let out = socktalk().args(&argv).output().expect("run bench");
    assert!(
        out.status.success(),
        "bench {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("bench prints one JSON object")
}

/// Runs `socktalk bench ARGS --json` where nothing can be measured: it still prints its report
/// (showing the errors), and exits 1 saying so. Returns the report.
fn bench_measuring_nothing(args: &[&str]) -> Value {
    let mut argv = vec!["bench"];
    argv.extend_from_slice(args);
    argv.push("--json");
    let out = socktalk().args(&argv).output().expect("run bench");
    assert_eq!(out.status.code(), Some(1), "bench {args:?}: {out:?}");
    let err = common::one_line_error(&out.stderr);
    assert!(err.contains("nothing was measured"), "{err}");
    serde_json::from_slice(&out.stdout).expect("bench prints one JSON object")
}

/// A chat server on a free loopback port with an in-memory database, and `extra` flags.
fn chat_server(extra: &[&str]) -> Proc {
    let mut args = vec!["serve", "--tcp", "127.0.0.1:0", "--db", ":memory:"];
    args.extend_from_slice(extra);
    Proc::server(&args)
}

fn host_port(addr: &str) -> &str {
    addr.split_once("://").map_or(addr, |(_, rest)| rest)
}

#[test]
fn pingpong_and_bulk_measure_an_echo_server() {
    let server = Proc::server(&["echo", "127.0.0.1:0"]);
    measures_an_echo_server(host_port(&server.addr), &server.child.id().to_string());
}

/// `bench/compare.sh` measures socktalk's echo server over a Unix socket too: the address it
/// announces (`unix:PATH`) is what `bench` dials, and both stream modes measure through it.
#[test]
fn pingpong_and_bulk_measure_an_echo_server_on_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("echo.sock");
    let server = Proc::server(&["echo", &format!("unix:{}", path.display())]);
    assert_eq!(server.addr, format!("unix:{}", path.display()));
    let report = measures_an_echo_server(&server.addr, &server.child.id().to_string());
    assert_eq!(report["target"], server.addr.as_str(), "{report}");
}

/// Short `pingpong` and `bulk --both` runs against the echo server at `addr` (process `pid`)
/// measure sane figures; returns the ping-pong report.
fn measures_an_echo_server(addr: &str, pid: &str) -> Value {
    let report = bench(&[
        "pingpong",
        addr,
        "--conns",
        "4",
        "--duration",
        "0.3",
        "--warmup",
        "0.1",
        "--pid",
        pid,
    ]);
    // With --pid, both sides' CPU over the measured window.
    assert!(report["server_cpu_ms"].as_f64().unwrap() > 0.0, "{report}");
    assert!(report["client_cpu_ms"].as_f64().unwrap() > 0.0, "{report}");
    assert_eq!(report["mode"], "pingpong");
    assert!(report["ops"].as_u64().unwrap() > 0, "{report}");
    // Every connection made round trips: none was starved to nothing.
    let share = report["slowest_conn_share"].as_f64().unwrap();
    assert!(share > 0.0 && share <= 1.0, "{report}");
    assert!(report["ops_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(report["errors"], 0, "{report}");
    let latency = &report["latency_us"];
    assert!(latency["p50"].as_f64().unwrap() > 0.0, "{report}");
    assert!(
        latency["p50"].as_f64() <= latency["p99"].as_f64(),
        "{report}"
    );
    assert!(
        latency["p99"].as_f64() <= latency["max"].as_f64(),
        "{report}"
    );

    let bulk = bench(&[
        "bulk",
        addr,
        "--duration",
        "0.3",
        "--warmup",
        "0.1",
        "--both",
    ]);
    assert!(bulk["tx_mb_s"].as_f64().unwrap() > 0.0, "{bulk}");
    assert!(bulk["rx_mb_s"].as_f64().unwrap() > 0.0, "{bulk}");
    assert_eq!(bulk["errors"], 0, "{bulk}");
    report
}

#[test]
fn udp_counts_round_trips_and_losses() {
    let server = Proc::server(&["echo", "-u", "--upper", "127.0.0.1:0"]);
    let report = bench(&[
        "udp",
        host_port(&server.addr),
        "--duration",
        "0.3",
        "--warmup",
        "0.1",
    ]);
    assert!(report["ops"].as_u64().unwrap() > 0, "{report}");
    assert!(report["lost"].as_u64().is_some());
    assert_eq!(report["errors"], 0);
}

#[test]
fn hold_reports_connections_and_memory() {
    // All from one source address: the per-address cap is lifted, as for any load test.
    let server = chat_server(&["--max-conns-per-ip", "0"]);
    let pid = server.child.id().to_string();
    let report = bench(&[
        "hold",
        host_port(&server.addr),
        "--conns",
        "200",
        "--pid",
        &pid,
        "--hold",
        "0.3",
    ]);
    assert_eq!(report["held"], 200, "{report}");
    assert_eq!(report["wanted"], 200);
    assert!(report["rss_bytes"].as_u64().unwrap() > 0);
    assert!(report["bytes_per_conn"].as_f64().is_some());
}

/// `bench fanout TARGET EXTRA… --conns 20 --lines 50 --pid PID`, every line delivered to every
/// receiver without an error; returns the report.
fn fanout_20_by_50(target: &str, extra: &[&str], pid: &str) -> Value {
    let mut args = vec!["fanout", target];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[
        "--conns",
        "20",
        "--lines",
        "50",
        "--timeout",
        "10",
        "--pid",
        pid,
    ]);
    let report = bench(&args);
    assert_eq!(report["ops"], 1000, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["latency_us"]["p99"].as_f64().unwrap() > 0.0);
    report
}

#[test]
fn fanout_delivers_every_line_to_every_receiver() {
    let server = chat_server(&["--max-rate", "0"]);
    let pid = server.child.id().to_string();
    let report = fanout_20_by_50(host_port(&server.addr), &[], &pid);
    // Both sides worked to deliver the lines; each figure is CPU time, never negative.
    assert!(report["client_cpu_ms"].as_f64().unwrap() > 0.0, "{report}");
    assert!(report["server_cpu_ms"].as_f64().unwrap() > 0.0, "{report}");

    // Without --pid only the load generator's own CPU is reported.
    let report = bench(&[
        "fanout",
        host_port(&server.addr),
        "--conns",
        "2",
        "--lines",
        "5",
    ]);
    assert_eq!(report["lost"], 0, "{report}");
    assert!(report.get("server_cpu_ms").is_none(), "{report}");
}

#[test]
fn the_join_storm_script_sees_every_client_replayed() {
    let server = chat_server(&["--max-rate", "0", "--max-conns-per-ip", "0"]);
    let pid = server.child.id().to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/join_storm.py");
    for room in ["#lobby", "#dev"] {
        let out = std::process::Command::new("python3")
            .args([
                script,
                host_port(&server.addr),
                "--conns",
                "50",
                "--room",
                room,
            ])
            .args(["--lines", "30", "--timeout", "20", "--pid", &pid])
            .output()
            .expect("python3 is on every machine");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
        assert_eq!(report["room"], room, "{report}");
        assert_eq!(report["conns"], 50, "{report}");
        assert_eq!(report["unserved"], 0, "{report}");
        assert!(report["secs"].as_f64().unwrap() > 0.0, "{report}");
        assert!(report["server_cpu_ms"].as_f64().unwrap() >= 0.0, "{report}");
    }
}

#[test]
fn a_closed_stdout_ends_bench_quietly() {
    let server = Proc::server(&["echo", "127.0.0.1:0"]);
    let mut child = std::process::Command::new(common::bin())
        .args(["bench", "pingpong", host_port(&server.addr)])
        .args(["--duration", "0.2", "--warmup", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // `bench … | head -c0`: the reader is gone before the table is printed.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bench_errors_are_one_line() {
    let out = socktalk()
        .args(["bench", "pingpong", "127.0.0.1:70000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("out of range"), "{err}");
}

#[test]
fn handshake_counts_new_connections_plain_and_tls() {
    let plain = Proc::server(&["echo", "127.0.0.1:0"]);
    let report = bench(&[
        "handshake",
        host_port(&plain.addr),
        "--conns",
        "2",
        // Longer than a SYN retry (1 s): plain connections can overrun the accept queue, and
        // a window shorter than the retry could then count nothing.
        "--duration",
        "2",
        "--warmup",
        "0.1",
    ]);
    assert_eq!(report["mode"], "handshake");
    let ops = report["ops"].as_u64().unwrap();
    assert!(ops > 0, "{report}");
    // Plain connections outrun the server's accept loop on purpose (see BENCHMARKS.md); on a
    // machine busy with other tests a rare one may fail. Sane means nearly all succeed.
    assert!(report["errors"].as_u64().unwrap() * 100 <= ops, "{report}");

    let mut tls = Proc::server(&["echo", "127.0.0.1:0", "--tls-self-signed"]);
    let fingerprint = tls.read_line();
    let fingerprint = fingerprint
        .trim()
        .strip_prefix("tls certificate sha256 ")
        .expect("the fingerprint line")
        .to_string();
    let report = bench(&[
        "handshake",
        host_port(&tls.addr),
        "--conns",
        "2",
        "--duration",
        "0.5",
        "--warmup",
        "0.1",
        "--tls-fingerprint",
        &fingerprint,
    ]);
    assert!(report["ops"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    let report = bench(&[
        "pingpong",
        host_port(&tls.addr),
        "--duration",
        "0.3",
        "--warmup",
        "0.1",
        "--tls-fingerprint",
        &fingerprint,
    ]);
    assert!(report["ops"].as_u64().unwrap() > 0, "{report}");
}

#[test]
fn pingpong_moves_messages_bigger_than_the_socket_buffers() {
    let server = Proc::server(&["echo", "127.0.0.1:0"]);
    let addr = host_port(&server.addr);
    // Written whole before reading, 8 MB would fill both sides' buffers and never finish.
    pingpong_of_size_passes(addr, "8000000", "0.3");
}

/// `bench pingpong ADDR --size SIZE --duration SECS --warmup 0` makes round trips and no error.
fn pingpong_of_size_passes(addr: &str, size: &str, secs: &str) {
    let report = bench(&[
        "pingpong",
        addr,
        "--size",
        size,
        "--duration",
        secs,
        "--warmup",
        "0",
    ]);
    assert!(report["ops"].as_u64().unwrap() > 0, "{size}: {report}");
    assert_eq!(report["errors"], 0, "{size}: {report}");
}

#[test]
fn pingpong_against_a_server_that_never_answers_ends_with_an_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let holder = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut sink = Vec::new();
        // Holds the connection, answering nothing, until the client goes.
        let _ = std::io::Read::read_to_end(&mut &stream, &mut sink);
    });
    let report =
        bench_measuring_nothing(&["pingpong", &addr, "--duration", "0.2", "--warmup", "0"]);
    assert_eq!(report["ops"], 0, "{report}");
    assert_eq!(report["errors"], 1, "{report}");
    holder.join().unwrap();
}

/// Receivers the chat server turns away (here past `--max-conns-per-ip`) make the run
/// impossible: it fails, saying what the server said, rather than report nothing and exit 0.
#[test]
fn fanout_says_why_when_the_server_turns_receivers_away() {
    let server = chat_server(&["--max-conns-per-ip", "4", "--max-rate", "0"]);
    let addr = host_port(&server.addr);
    let err = common::fails_with(
        &["bench", "fanout", addr, "--conns", "6", "--lines", "5"],
        1,
    );
    assert!(
        err.contains("before the run began")
            && err.contains("refused: too many connections from 127.0.0.1"),
        "{err}"
    );
}

/// `--ws`: the same run over the chat server's WebSocket (its browser path). The sender's
/// lines go out as JSON `say` requests and the receivers find them in the JSON events.
#[test]
fn fanout_over_websockets_delivers_every_line_to_every_receiver() {
    let server = common::WebServer::start(&["--max-rate", "0"]);
    let (http, pid) = (server.http.to_string(), server.proc.child.id().to_string());
    let report = fanout_20_by_50(&http, &["--ws"], &pid);
    assert!(report["server_cpu_ms"].as_f64().unwrap() > 0.0, "{report}");
}

/// Any WebSocket relay will do: one that passes every text message on to every client
/// without reading it (`websocat … broadcast:mirror:`) delivers the marks inside the JSON.
#[test]
fn fanout_over_websockets_works_with_a_relay_that_reads_no_json() {
    let relay = websocket_relay();
    let report = bench(&[
        "fanout",
        &relay.to_string(),
        "--ws",
        "/anything",
        "--conns",
        "5",
        "--lines",
        "20",
        "--timeout",
        "10",
    ]);
    assert_eq!(report["ops"], 100, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
}

/// A WebSocket server on a free loopback port that sends every text message it gets to every
/// client, the sender too.
fn websocket_relay() -> std::net::SocketAddr {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    listener.set_nonblocking(true).expect("non-blocking");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let (relay, _) = tokio::sync::broadcast::channel::<Message>(100_000);
            while let Ok((stream, _)) = listener.accept().await {
                let (relay, mut relayed) = (relay.clone(), relay.subscribe());
                tokio::spawn(async move {
                    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    let (mut tx, mut rx) = ws.split();
                    loop {
                        tokio::select! {
                            got = rx.next() => match got {
                                Some(Ok(text @ Message::Text(_))) => {
                                    let _ = relay.send(text);
                                }
                                Some(Ok(_)) => {}
                                None | Some(Err(_)) => return,
                            },
                            out = relayed.recv() => {
                                let Ok(out) = out else {
                                    return;
                                };
                                if tx.send(out).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
    });
    addr
}

/// `hold --ws`: idle browsers, each upgraded to a WebSocket, and the server's memory for each.
#[test]
fn hold_over_websockets_reports_memory_per_browser() {
    let server = common::WebServer::start(&["--max-conns-per-ip", "0"]);
    let (http, pid) = (server.http.to_string(), server.proc.child.id().to_string());
    let report = bench(&[
        "hold", &http, "--ws", "--conns", "40", "--hold", "0.2", "--pid", &pid,
    ]);
    assert_eq!(report["held"], 40, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["bytes_per_conn"].as_f64().is_some(), "{report}");
    // The chat port speaks no HTTP: the first connection fails, saying so.
    let err = common::fails_with(
        &[
            "bench",
            "hold",
            &server.tcp.to_string(),
            "--ws",
            "--conns",
            "3",
        ],
        1,
    );
    assert!(err.contains("does not answer in HTTP"), "{err}");
}

/// `hold --tls`: idle TLS clients, each holding its session, on the chat port and, with `--ws`,
/// as browsers on `wss://`; a TLS hold of a plain port fails on its first connection, saying so.
#[test]
fn hold_over_tls_holds_sessions_plain_and_websocket() {
    let server = common::WebServer::start(&["--max-conns-per-ip", "0", "--tls-self-signed"]);
    let fingerprint = server
        .fingerprint
        .clone()
        .expect("a self-signed certificate");
    let pid = server.proc.child.id().to_string();
    for (target, ws) in [(server.tcp, None), (server.http, Some("--ws"))] {
        let target = target.to_string();
        let mut args = vec!["hold", &target, "--tls-fingerprint", &fingerprint];
        args.extend(ws);
        args.extend(["--conns", "30", "--hold", "0.2", "--pid", &pid]);
        let report = bench(&args);
        assert_eq!(report["held"], 30, "{ws:?}: {report}");
        assert_eq!(report["errors"], 0, "{ws:?}: {report}");
        assert!(report["bytes_per_conn"].as_f64().is_some(), "{report}");
    }
    let plain = chat_server(&[]);
    let err = common::fails_with(
        &[
            "bench",
            "hold",
            host_port(&plain.addr),
            "--tls",
            "--conns",
            "3",
        ],
        1,
    );
    assert!(err.contains("TLS handshake"), "{err}");
}

/// What a wrong `--ws` target gets: a clear error naming the problem, never a hang.
#[test]
fn fanout_over_websockets_names_what_is_wrong_with_the_target() {
    let server = common::WebServer::start(&[]);
    let (http, tcp) = (server.http.to_string(), server.tcp.to_string());
    let run = |target: &str, more: &[&str]| {
        let mut args = vec!["bench", "fanout", target, "--conns", "2", "--lines", "5"];
        args.extend_from_slice(more);
        args.extend_from_slice(&["--timeout", "5"]);
        common::fails_with(&args, 1)
    };
    let err = run(&http, &["--ws", "/nope"]);
    assert!(
        err.contains("ws://") && err.contains("/nope") && err.contains("404"),
        "{err}"
    );
    let err = run(&tcp, &["--ws"]);
    assert!(err.contains("does not answer in HTTP"), "{err}");
    // The web port without --ws: the server's HTTP error is quoted, and --ws suggested.
    let err = run(&http, &[]);
    assert!(
        err.contains("HTTP/1.1 400") && err.contains("--ws"),
        "{err}"
    );
    let err = common::fails_with(&["bench", "fanout", &http, "--ws", "ws"], 2);
    assert!(err.contains("not a URL path"), "{err}");
}

#[test]
fn options_that_cannot_measure_anything_are_usage_errors() {
    let server = Proc::server(&["echo", "127.0.0.1:0"]);
    let addr = host_port(&server.addr);
    let err = common::fails_with(&["bench", "pingpong", addr, "--duration", "0"], 2);
    assert!(err.contains("--duration must be more than 0"), "{err}");
    // A pid that is no process would give no CPU figures, silently.
    let err = common::fails_with(&["bench", "pingpong", addr, "--pid", "999999999"], 2);
    assert!(err.contains("--pid 999999999: no such process"), "{err}");
}

/// A message bigger than memory aborted the load generator (`memory allocation … failed`):
/// the size is capped, and a bigger one is a usage error naming the cap.
#[test]
fn a_size_past_the_cap_is_a_usage_error_not_an_abort() {
    let server = Proc::server(&["echo", "127.0.0.1:0"]);
    let addr = host_port(&server.addr);
    for mode in ["pingpong", "bulk"] {
        let err = common::fails_with(
            &[
                "bench",
                mode,
                addr,
                "--size",
                "100000000000000",
                "--duration",
                "0.2",
            ],
            2,
        );
        assert!(err.contains("--size") && err.contains("67108864"), "{err}");
    }
}

#[test]
fn udp_and_hold_against_a_closed_port_fail_clearly() {
    let udp = common::closed_udp_addr("127.0.0.1").to_string();
    let err = common::fails_with(&["bench", "udp", &udp, "--duration", "5"], 1);
    assert!(err.contains("connection refused"), "{err}");
    let tcp = common::closed_tcp_addr("127.0.0.1").to_string();
    let err = common::fails_with(&["bench", "hold", &tcp, "--conns", "3"], 1);
    assert!(err.contains("connection refused"), "{err}");
    let err = common::fails_with(&["bench", "udp", &udp, "--size", "8"], 2);
    assert!(err.contains("--size must be 16 to 65507"), "{err}");
}

#[test]
fn only_the_stream_modes_take_tls_flags() {
    let help = socktalk()
        .args(["bench", "udp", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success(), "{help:?}");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        !help.contains("--tls"),
        "bench udp --help lists TLS flags:\n{help}"
    );
    let err = common::fails_with(&["bench", "udp", "127.0.0.1:1", "--tls"], 2);
    assert!(err.contains("--tls"), "{err}");
    for mode in ["pingpong", "bulk", "handshake", "fanout", "hold"] {
        let help = socktalk().args(["bench", mode, "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&help.stdout);
        assert!(
            help.contains("--tls-fingerprint"),
            "bench {mode} --help:\n{help}"
        );
    }
}

/// A Unix server whose accept queue fills after the first connections: with -v each refused
/// connection is named by its own number. All of them were named after the last one made
/// (`connection 3 failed` three times here).
#[test]
fn each_connection_that_fails_is_named_by_its_own_number() {
    use socket2::{Domain, Socket, Type};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.sock");
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
    socket.bind(&common::unix_sock_addr(&path)).unwrap();
    // Never accepting, it takes 2 connections into its queue (Linux queues backlog + 1) and
    // refuses the other 3 at once.
    socket.listen(1).unwrap();
    let target = format!("unix:{}", path.display());
    let out = socktalk()
        .args(["-v", "bench", "pingpong", &target, "--conns", "5"])
        .args(["--duration", "0.2", "--warmup", "0"])
        .timeout(std::time::Duration::from_secs(20))
        .output()
        .expect("run bench");
    let err = String::from_utf8_lossy(&out.stderr);
    for number in 3..=5 {
        assert_eq!(
            err.matches(&format!("connection {number} failed: cannot connect"))
                .count(),
            1,
            "connection {number}: {err}"
        );
    }
    assert!(err.contains("only 2 of 5 connections were made"), "{err}");
    drop(socket);
}

#[test]
fn a_unix_server_whose_accept_queue_stays_full_is_an_error_not_a_wait() {
    // The interactive clients wait for room in the queue (up to -w); the load generator counts
    // a full queue as the error it is, at once.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.sock");
    let _server = common::FullUnix::new(&path);
    let target = format!("unix:{}", path.display());
    let out = socktalk()
        .args([
            "bench",
            "handshake",
            &target,
            "--conns",
            "2",
            "--duration",
            "1",
        ])
        .timeout(std::time::Duration::from_secs(20))
        .output()
        .expect("run bench");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = common::one_line_error(&out.stderr);
    assert!(err.contains("resource temporarily unavailable"), "{err}");
}

#[test]
fn a_server_that_never_answers_costs_bench_w_seconds_not_the_systems_two_minutes() {
    let server = common::Unanswering::bind();
    let addr = server.addr.to_string();
    for mode in [
        &["pingpong", "--duration", "1", "--warmup", "0"][..],
        &["hold", "--conns", "2", "--hold", "0"][..],
    ] {
        let mut args = vec!["bench"];
        args.extend_from_slice(mode);
        args.extend_from_slice(&[&addr, "-w", "1"]);
        let (code, err, took) = common::timed_failure(&args);
        assert_eq!(code, Some(3), "{mode:?}: {err}");
        assert!(err.contains("no answer within 1s (-w)"), "{mode:?}: {err}");
        common::took_about(took, 1.0);
    }
}

/// A port that accepts connections (the kernel completes them) and never answers the
/// WebSocket upgrade: `-w` bounds the upgrade too, as it bounds the connect.
#[test]
fn a_websocket_upgrade_that_is_never_answered_costs_bench_w_seconds() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    for mode in [
        &["fanout", "--conns", "2", "--lines", "5"][..],
        &["hold", "--conns", "2", "--hold", "0"][..],
    ] {
        let mut args = vec!["bench"];
        args.extend_from_slice(mode);
        args.extend_from_slice(&[&addr, "--ws", "-w", "1"]);
        let (code, err, took) = common::timed_failure(&args);
        assert_eq!(code, Some(3), "{mode:?}: {err}");
        assert!(
            err.contains("no answer to the WebSocket upgrade at ws://")
                && err.contains("within 1s (-w)"),
            "{mode:?}: {err}"
        );
        common::took_about(took, 1.0);
    }
}

/// A TCP echo server on a thread that says so on the channel returned each time it has echoed
/// `reads` more times on one connection, and once it has accepted `reads` connections: the load
/// generator is running by then.
fn echo_that_signals(reads: usize) -> (String, std::sync::mpsc::Receiver<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (ready, is_ready) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for (accepted, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { return };
            if accepted + 1 == reads {
                let _ = ready.send(());
            }
            let ready = ready.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                for n in 1.. {
                    match std::io::Read::read(&mut stream, &mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(len) => {
                            if std::io::Write::write_all(&mut stream, &buf[..len]).is_err() {
                                return;
                            }
                        }
                    }
                    if n % reads == 0 {
                        let _ = ready.send(());
                    }
                }
            });
        }
    });
    (addr, is_ready)
}

/// Ctrl-C in the middle of a run prints the report of what was measured until then, marked
/// as interrupted, and exits 130; it used to kill the process with nothing printed. SIGTERM
/// (what `timeout` sends) and SIGHUP do the same, with the shell's codes for them.
#[test]
fn a_signal_prints_what_was_measured_and_exits_with_its_code() {
    for (mode, signal, name, code) in [
        ("pingpong", "INT", "Ctrl-C", 130),
        ("bulk", "INT", "Ctrl-C", 130),
        ("handshake", "INT", "Ctrl-C", 130),
        ("pingpong", "TERM", "SIGTERM", 143),
        ("bulk", "HUP", "SIGHUP", 129),
    ] {
        let (addr, is_ready) = echo_that_signals(50);
        let mut run = Proc::start(&[
            "bench",
            mode,
            &addr,
            "--duration",
            "60",
            "--warmup",
            "0",
            "--json",
        ]);
        is_ready
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the run is under way");
        run.signal(signal);
        let status = run.wait_exit(std::time::Duration::from_secs(5));
        assert_eq!(status.code(), Some(code), "{mode} {signal}");
        let report: Value = serde_json::from_str(&run.stdout_rest()).expect("one JSON object");
        let err = run.stderr_text();
        assert!(
            err.contains(&format!("interrupted ({name}): the report covers")),
            "{mode}: {err}"
        );
        assert_eq!(report["interrupted"], true, "{mode}: {report}");
        let measured = report["duration_s"].as_f64().unwrap();
        assert!(measured > 0.0 && measured < 60.0, "{mode}: {report}");
        if mode == "bulk" {
            assert!(report["tx_mb_s"].as_f64().unwrap() > 0.0, "{report}");
        } else if mode == "pingpong" {
            assert!(report["ops"].as_u64().unwrap() >= 1, "{report}");
            assert!(report["latency_us"]["max"].as_f64().is_some(), "{report}");
        }
    }
}

/// A signal still decides the exit code when the report cannot be written. SIGHUP is the
/// terminal going away, taking the report's stdout with it: a pipe whose reader the hang-up
/// ended (and stderr too), or a terminal that fails every write (`/dev/full` stands in for it).
/// The run exited 0 (a closed stdout being a quiet success), 1 (the write error), or 101 (a
/// panic printing the error to a closed stderr).
#[test]
fn a_signal_sets_the_exit_code_when_the_report_cannot_be_written() {
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};
    /// Killed if the test fails before it exits.
    struct Run(Child);
    impl Drop for Run {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    for (signal, code, is_stdout_full) in [("HUP", 129, false), ("TERM", 143, true)] {
        let (addr, is_ready) = echo_that_signals(50);
        let mut command = Command::new(common::bin());
        command
            .args([
                "bench",
                "pingpong",
                &addr,
                "--duration",
                "60",
                "--warmup",
                "0",
            ])
            .arg("--json")
            .stdin(Stdio::null())
            .stderr(Stdio::piped());
        if is_stdout_full {
            let full = std::fs::File::options().write(true).open("/dev/full");
            command.stdout(full.unwrap());
        } else {
            command.stdout(Stdio::piped());
        }
        let mut run = Run(common::default_signals(&mut command)
            .spawn()
            .expect("spawn bench"));
        let mut stderr = run.0.stderr.take();
        if !is_stdout_full {
            // Both closed before anything is written: their reader is gone.
            drop(run.0.stdout.take());
            drop(stderr.take());
        }
        is_ready
            .recv_timeout(Duration::from_secs(20))
            .expect("the run is under way");
        let killed = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(run.0.id().to_string())
            .status();
        assert!(killed.unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(status) = run.0.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "SIG{signal}: still running");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(status.code(), Some(code), "SIG{signal}");
        if let Some(mut stderr) = stderr {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut stderr, &mut err).unwrap();
            assert!(
                err.contains("interrupted (SIGTERM); the report of the")
                    && err.contains("was not written (standard output: no space left on device)"),
                "{err}"
            );
        }
    }
}

/// A signal ignored when the run starts stays ignored: `nohup socktalk bench …` goes on
/// through a hang-up (it used to stop, report and exit 129); the next signal still ends it.
#[test]
fn a_hangup_under_nohup_does_not_end_the_run() {
    // An echo server that says so on the channel after every 1,000 round trips.
    let (addr, ticks) = echo_that_signals(1000);
    let mut command = std::process::Command::new("nohup");
    command.arg(common::bin()).args([
        "bench",
        "pingpong",
        &addr,
        "--duration",
        "60",
        "--warmup",
        "0",
        "--json",
    ]);
    let mut run = Proc::spawn(command);
    let wait = std::time::Duration::from_secs(20);
    ticks.recv_timeout(wait).expect("the run is under way");
    run.signal("HUP");
    // Round trips go on after the hang-up: ticks sent before it are left behind first.
    while ticks.try_recv().is_ok() {}
    for _ in 0..2 {
        ticks
            .recv_timeout(wait)
            .expect("round trips go on after SIGHUP");
    }
    run.signal("TERM");
    let status = run.wait_exit(std::time::Duration::from_secs(5));
    assert_eq!(status.code(), Some(143));
    let report: Value = serde_json::from_str(&run.stdout_rest()).expect("one JSON object");
    assert_eq!(report["interrupted"], true, "{report}");
    let err = run.stderr_text();
    assert!(err.contains("interrupted (SIGTERM)"), "{err}");
}

/// A server that never answers: Ctrl-C still ends the run at once, not after the 60 s asked
/// for plus the 2 s allowed for late replies.
#[test]
fn ctrl_c_ends_a_run_against_a_server_that_never_answers() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut run = Proc::start(&[
        "bench",
        "pingpong",
        &addr,
        "--duration",
        "60",
        "--warmup",
        "0",
        "--json",
    ]);
    // The first ping came: the run is measuring, and waits for a reply that never comes.
    let (mut held, _) = listener.accept().unwrap();
    std::io::Read::read_exact(&mut held, &mut [0u8; 64]).unwrap();
    run.signal("INT");
    let status = run.wait_exit(std::time::Duration::from_secs(5));
    assert_eq!(status.code(), Some(130));
    let report: Value = serde_json::from_str(&run.stdout_rest()).expect("one JSON object");
    assert_eq!(report["interrupted"], true, "{report}");
    assert_eq!(report["ops"], 0, "{report}");
}

/// A run that measured no round trip printed `p50 0.0 µs … max 0.0 µs` (an empty histogram)
/// and exited 0: the latency is left out, and the exit code says nothing was measured, and why.
#[test]
fn a_run_that_measures_nothing_has_no_latency_and_fails() {
    // A UDP socket that reads nothing and answers nothing: every datagram is lost.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let out = socktalk()
        .args(["bench", "udp", &addr, "--duration", "0.2", "--warmup", "0"])
        .args(["--timeout", "20", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = common::one_line_error(&out.stderr);
    assert!(
        err.contains("nothing was measured: all") && err.contains("lost"),
        "{err}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ops"], 0, "{report}");
    assert!(report["lost"].as_u64().unwrap() > 0, "{report}");
    assert!(report.get("latency_us").is_none(), "{report}");

    // A window shorter than any round trip: no error, and nothing measured either.
    let server = Proc::server(&["echo", "127.0.0.1:0"]);
    let out = socktalk()
        .args(["bench", "pingpong", host_port(&server.addr)])
        .args(["--duration", "0.000000001", "--warmup", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = common::one_line_error(&out.stderr);
    assert!(err.contains("none finished within"), "{err}");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(!table.contains("latency"), "{table}");
}

/// A server that answers with one byte more than it was sent: the surplus was read as the
/// start of the next reply, and the run counted thousands of instant round trips. The reply
/// is checked, and the connection fails, saying why at -v.
#[test]
fn pingpong_fails_a_connection_whose_reply_differs_from_the_message() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        while let Ok(len) = std::io::Read::read(&mut stream, &mut buf) {
            let mut reply = buf[..len].to_vec();
            reply.push(b'!');
            if len == 0 || std::io::Write::write_all(&mut stream, &reply).is_err() {
                return;
            }
        }
    });
    let out = socktalk()
        .args(["-v", "bench", "pingpong", &addr, "--duration", "0.2"])
        .args(["--warmup", "0.1", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ops"], 0, "{report}");
    assert_eq!(report["errors"], 1, "{report}");
    // -v shows the errors, as the last line promises.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("reply differs from the message sent"), "{err}");
    assert!(
        err.contains("nothing was measured: 1 error (-v shows them)"),
        "{err}"
    );
}

/// More connections than the open-file soft limit: the limit is raised to the hard one, as
/// `hold` did, and when the hard limit is what stops the connecting, a warning says how many
/// connections the run really has and why (the report only counted errors).
#[test]
fn connections_past_the_open_file_limit_are_raised_to_or_explained() {
    let server = Proc::server(&["echo", "127.0.0.1:0"]);
    let addr = host_port(&server.addr);
    let run = |ulimit: &str| {
        let script = format!(
            "ulimit {ulimit} 40 && exec \"$0\" bench pingpong {addr} --conns 100 --duration 0.2 --warmup 0 --json"
        );
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .arg(common::bin())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        (report, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // Only the soft limit is low: raised, every connection is made.
    let (report, _) = run("-Sn");
    assert_eq!(report["errors"], 0, "{report}");
    // The hard limit too: the run goes on with the connections it has, and says so.
    let (report, err) = run("-n");
    assert!(report["errors"].as_u64().unwrap() > 0, "{report}");
    assert!(err.contains("of 100 connections were made"), "{err}");
    assert!(err.contains("ulimit -n = 40"), "{err}");
}

/// A chat relay that stops reading a member once it has relayed 20,000 of its bytes, but
/// holds the connection: the fan-out sender's writes block for good. It relays the first
/// 20,000 bytes however the sender's writes were split across its reads: on a loaded machine
/// one read after the probes can hold 64 KiB of the run's lines, and a relay that dropped
/// that read whole passed on no line of the run (`ops` 0; 9 runs in 30 with both cores busy).
const STALLING_RELAY: &str = r#"
import socket, threading
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(64)
print(server.getsockname()[1], flush=True)
members, lock = [], threading.Lock()
LIMIT = 20000
def serve(conn):
    with lock:
        members.append(conn)
    relayed = 0
    while True:
        data = conn.recv(65536)
        if not data:
            return
        data = data[:LIMIT - relayed]
        relayed += len(data)
        with lock:
            others = [m for m in members if m is not conn]
        for other in others:
            try:
                other.sendall(data)
            except OSError:
                pass
        if relayed >= LIMIT:
            threading.Event().wait()
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"#;

/// A chat server that stops reading the sender hung `fanout` for good, past its --timeout:
/// the run now stops waiting for the sender after --timeout without a line taken, and reports
/// what was delivered, with an error and a warning saying why.
#[test]
fn fanout_ends_when_the_server_stops_reading_the_sender() {
    let (_relay, port) = common::python_server(STALLING_RELAY);
    let addr = format!("127.0.0.1:{port}");
    let out = socktalk()
        .args([
            "bench", "fanout", &addr, "--conns", "2", "--lines", "10000000",
        ])
        .args(["--timeout", "1", "--json"])
        .timeout(std::time::Duration::from_secs(30))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("took none of the sender's lines for 1s"),
        "{out:?}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(report["errors"], 1, "{report}");
    assert!(report["ops"].as_u64().unwrap() > 0, "{report}");
}

/// A fan-out of a few lines lasts milliseconds: the table said `measured 0.00 s` beside a rate
/// of tens of thousands per second. Times under a second read in ms (or µs).
#[test]
fn the_table_shows_short_times_in_milliseconds() {
    let server = chat_server(&["--max-rate", "0"]);
    let out = socktalk()
        .args(["bench", "fanout", host_port(&server.addr), "--conns", "2"])
        .args(["--lines", "5"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8_lossy(&out.stdout);
    let measured = table
        .lines()
        .find(|line| line.starts_with("measured"))
        .expect("a measured row");
    assert!(
        measured.ends_with(" ms") || measured.ends_with(" µs"),
        "{table}"
    );
    assert!(!measured.contains("0.00 s"), "{table}");
}

/// A time past the clock's range (`--warmup 1e19`) panicked: `overflow when adding duration
/// to instant`. Bench times are capped, and a longer one is a usage error naming the cap.
#[test]
fn a_time_past_the_cap_is_a_usage_error_not_a_panic() {
    for args in [
        &["pingpong", "127.0.0.1:1", "--warmup", "1e19"][..],
        &["pingpong", "127.0.0.1:1", "--duration", "1e19"],
        &["fanout", "127.0.0.1:1", "--timeout", "1e19"],
    ] {
        let mut argv = vec!["bench"];
        argv.extend_from_slice(args);
        let err = common::fails_with(&argv, 2);
        assert!(err.contains("is more than 1000000000 seconds"), "{err}");
    }
    // Past what any duration holds: said so, not that it is no number.
    let err = common::fails_with(
        &["bench", "pingpong", "127.0.0.1:1", "--duration", "1e20"],
        2,
    );
    assert!(
        err.contains("--duration 100000000000000000000 is too many seconds"),
        "{err}"
    );
}

/// `bulk` against a server that closes every connection at once sent nothing, yet exited 0
/// (only `--both` checked), and counted one connection's failure twice (its writer and its
/// reader). Nothing through is nothing measured, and a connection fails once.
#[test]
fn bulk_that_moves_no_byte_measured_nothing_and_counts_a_connection_once() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        // Reset as soon as the first bytes come (the client is connected by then): both its
        // writer and its reader fail.
        for mut stream in listener.incoming().flatten() {
            let _ = std::io::Read::read(&mut stream, &mut [0u8; 1]);
            common::reset(stream);
        }
    });
    let report = bench_measuring_nothing(&["bulk", &addr, "--duration", "0.2", "--warmup", "0.1"]);
    assert_eq!(report["tx_mb_s"], 0.0, "{report}");
    assert_eq!(report["errors"], 1, "{report}");
}

/// `udp` with more sockets than the open-file limit allows said `cannot listen on
/// udp://0.0.0.0:0: too many open files`: it listens nowhere. It names the socket it could
/// not open, and the limit.
#[test]
fn udp_past_the_open_file_limit_names_the_socket_and_the_limit() {
    let server = Proc::server(&["echo", "-u", "127.0.0.1:0"]);
    let script = format!(
        "ulimit -n 40 && exec \"$0\" bench udp {} --conns 100 --duration 0.2 --warmup 0",
        host_port(&server.addr)
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .arg(common::bin())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = common::one_line_error(&out.stderr);
    assert!(err.contains("cannot open UDP socket"), "{err}");
    assert!(err.contains("of 100 (--conns)"), "{err}");
    assert!(err.contains("ulimit -n = 40"), "{err}");
}

/// pingpong compares a reply byte for byte first and without case only when that differs: an
/// upper-casing server still passes.
#[test]
fn pingpong_passes_an_upper_casing_server() {
    let server = Proc::server(&["echo", "--upper", "127.0.0.1:0"]);
    let addr = host_port(&server.addr);
    for size in ["64", "70000"] {
        pingpong_of_size_passes(addr, size, "0.2");
    }
}

/// Ctrl-C in the warm-up prints no report (it used to print one of 0 s and 0 round trips
/// marked interrupted, before the message), only the message, and exits 130.
#[test]
fn ctrl_c_in_the_warm_up_prints_no_report() {
    for json in [true, false] {
        let (addr, is_ready) = echo_that_signals(20);
        let mut args = vec!["bench", "pingpong", &addr, "--warmup", "60"];
        if json {
            args.push("--json");
        }
        let mut run = Proc::start(&args);
        is_ready
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the warm-up is under way");
        run.signal("INT");
        let status = run.wait_exit(std::time::Duration::from_secs(5));
        assert_eq!(status.code(), Some(130), "json {json}");
        assert_eq!(run.stdout_rest(), "", "json {json}");
        let err = run.stderr_text();
        assert!(
            err.contains("interrupted (Ctrl-C) before anything was measured"),
            "json {json}: {err}"
        );
    }
}

/// Ctrl-C after the end of the measurement (here in the wait for a late reply) cut nothing
/// short: the report is not marked interrupted and the exit code is not 130.
#[test]
fn ctrl_c_after_the_measurement_ended_is_not_an_interruption() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (answered, has_answered) = std::sync::mpsc::channel();
    // Answers 10 pings, then holds the connection without answering: the run's last round
    // trip waits up to 2 s past the end of its 0.3 s.
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        for _ in 0..10 {
            std::io::Read::read_exact(&mut stream, &mut buf).unwrap();
            std::io::Write::write_all(&mut stream, &buf).unwrap();
        }
        let _ = answered.send(());
        std::thread::sleep(std::time::Duration::from_secs(30));
        drop(stream);
    });
    let mut run = Proc::start(&[
        "bench",
        "pingpong",
        &addr,
        "--duration",
        "0.3",
        "--warmup",
        "0",
        "--json",
    ]);
    has_answered
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the run is under way");
    // Not waiting for a server: past the run's 0.3 s, well within its 2 s for a late reply.
    std::thread::sleep(std::time::Duration::from_secs(1));
    run.signal("INT");
    let status = run.wait_exit(std::time::Duration::from_secs(5));
    let report: Value = serde_json::from_str(&run.stdout_rest()).expect("one JSON object");
    assert_eq!(status.code(), Some(0), "{report}");
    assert_ne!(report["interrupted"], true, "{report}");
    assert_eq!(report["ops"], 10, "{report}");
    let measured = report["duration_s"].as_f64().unwrap();
    assert!((measured - 0.3).abs() < 1e-6, "{report}");
}
