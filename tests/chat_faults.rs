//! Fault tolerance of the chat server: slowloris clients, connection floods, and a history
//! database that cannot be opened or written. In every case the members who behave keep
//! chatting, every client gets a clear answer or a clean close, and no message is lost silently.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{ChatClient, IO_TIMEOUT, Read1, chat_server};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// A runtime for the crowds of connections a test opens at once.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

// ----------------------------------------------------------------------------------------------
// Slowloris: half a line, then a byte now and then.
// ----------------------------------------------------------------------------------------------

/// How one slowloris connection ended.
#[derive(Debug)]
struct Closed {
    /// How long it was open.
    open_for: Duration,
    /// Every line the server sent it.
    lines: Vec<String>,
}

/// Opens a connection, sends half a line, then one more byte every `trickle`, never a newline,
/// reading everything the server sends, until the server closes it (or `give_up` passes).
async fn slowloris(
    addr: SocketAddr,
    trickle: Duration,
    give_up: Duration,
    open: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
) -> Result<Closed, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let started = Instant::now();
    let (read, mut write) = stream.into_split();
    let mut read = tokio::io::BufReader::new(read);
    write
        .write_all(b"this line never ends")
        .await
        .map_err(|e| format!("write: {e}"))?;
    open.fetch_add(1, Ordering::SeqCst);
    let mut tick = tokio::time::interval(trickle);
    tick.tick().await;
    let deadline = tokio::time::sleep(give_up);
    tokio::pin!(deadline);
    let mut lines = Vec::new();
    let mut line = Vec::new();
    let mut is_told = false;
    loop {
        tokio::select! {
            got = read.read_until(b'\n', &mut line) => match got {
                // EOF, or a reset (a trickled byte the server never read): closed either way.
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line).trim_end().to_string();
                    line.clear();
                    // Told: stop trickling, so the close is not raced by a byte in flight.
                    is_told |= text.starts_with("! error: closing: idle");
                    lines.push(text);
                }
            },
            _ = tick.tick(), if !is_told => {
                let _ = write.write_all(b"x").await;
            }
            () = &mut deadline => {
                return Err(format!(
                    "still open after {give_up:?}, trickling a byte every {trickle:?}; read {lines:?}"
                ));
            }
        }
    }
    closed.fetch_add(1, Ordering::SeqCst);
    Ok(Closed {
        open_for: started.elapsed(),
        lines,
    })
}

/// 200 connections that each send half a line and then trickle a byte every half second are
/// all closed at the idle timeout (4 s): an unfinished line is not activity. Meanwhile two
/// members chat normally, their messages round-tripping while the whole crowd is connected.
#[test]
fn slowloris_connections_are_closed_at_the_idle_timeout_while_members_chat() {
    const CROWD: usize = 200;
    const IDLE: Duration = Duration::from_secs(4);
    const TRICKLE: Duration = Duration::from_millis(500);
    let server = chat_server(":memory:", &["--idle-timeout", "4"]);
    let addr = server.socket_addr();
    let mut ann = ChatClient::login(addr, "ann");
    let mut bob = ChatClient::login(addr, "bob");
    ann.expect("* guest2 is now known as bob");
    ann.join("#ops");
    bob.join("#ops");
    ann.expect("* bob joined #ops");

    let runtime = runtime();
    let open = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let crowd: Vec<_> = (0..CROWD)
        .map(|_| {
            runtime.spawn(slowloris(
                addr,
                TRICKLE,
                Duration::from_secs(30),
                open.clone(),
                closed.clone(),
            ))
        })
        .collect();

    // Ann and Bob talk until the whole crowd is gone; each round trip is a message from each,
    // seen by the other.
    let mut rounds = 0;
    let mut rounds_with_all_open = 0;
    let deadline = Instant::now() + Duration::from_secs(40);
    while closed.load(Ordering::SeqCst) < CROWD {
        assert!(
            Instant::now() < deadline,
            "{} of {CROWD} slowloris connections still open",
            CROWD - closed.load(Ordering::SeqCst)
        );
        let is_all_open = open.load(Ordering::SeqCst) == CROWD;
        ann.say(&format!("ping {rounds}"));
        bob.expect(&format!("[#ops] <ann> ping {rounds}"));
        bob.say(&format!("pong {rounds}"));
        ann.expect(&format!("[#ops] <bob> pong {rounds}"));
        if is_all_open && closed.load(Ordering::SeqCst) == 0 {
            rounds_with_all_open += 1;
        }
        rounds += 1;
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        rounds_with_all_open > 0,
        "no round trip completed while all {CROWD} slowloris connections were open ({rounds} in all)"
    );

    for (i, task) in crowd.into_iter().enumerate() {
        let closed = runtime
            .block_on(task)
            .unwrap()
            .unwrap_or_else(|e| panic!("slowloris {i}: {e}"));
        // Closed for being idle, and not before the idle timeout: by the rule, not by accident.
        assert!(
            closed
                .lines
                .iter()
                .any(|l| l == "! error: closing: idle for 4s (--idle-timeout)"),
            "slowloris {i} was closed without the idle reason: {:?}",
            closed.lines
        );
        // (The server's clock starts when it accepts, a moment before this task's did.)
        assert!(
            closed.open_for >= IDLE.mul_f64(0.9),
            "slowloris {i} closed early: {closed:?}"
        );
    }

    // The members were never disturbed, and the room is theirs again.
    ann.send("/who #lobby");
    ann.expect("* #lobby (2): ann, bob");
    assert_eq!(ann.say("all quiet"), "[#ops] <ann> all quiet");
    bob.expect("[#ops] <ann> all quiet");
}

/// A client typing a line one byte at a time is idle until the line is complete, however many
/// bytes it sends; the complete line counts, and restarts its idle clock.
#[test]
fn an_unfinished_line_is_not_activity_but_a_finished_one_is() {
    let server = chat_server(":memory:", &["--idle-timeout", "2"]);
    let addr = server.socket_addr();
    let mut watcher = ChatClient::login(addr, "watcher");
    let mut typist = ChatClient::login(addr, "typist");
    watcher.expect("* guest2 is now known as typist");

    // A line typed over a second (less than the timeout), then finished: a message.
    for byte in b"slow but whole" {
        typist.send_raw(&[*byte]);
        thread::sleep(Duration::from_millis(75));
    }
    typist.send_raw(b"\n");
    typist.expect("[#lobby] <typist> slow but whole");
    watcher.expect("[#lobby] <typist> slow but whole");

    // Bytes without a newline for longer than the timeout: closed, with the reason. The
    // watcher keeps sending whole lines meanwhile, and stays.
    let started = Instant::now();
    let mut lines = Vec::new();
    loop {
        assert!(
            started.elapsed() < IO_TIMEOUT,
            "still open after {:?} of trickling",
            started.elapsed()
        );
        typist.send_raw(b"z");
        watcher.send("/rooms");
        match typist.poll_line(Duration::from_millis(200)) {
            Some(Read1::Line(line)) => lines.push(String::from_utf8(line).unwrap()),
            Some(Read1::Closed(_)) => break,
            None => {}
        }
        if lines
            .iter()
            .any(|l| l.starts_with("! error: closing: idle"))
        {
            lines.extend(typist.read_until_closed(IO_TIMEOUT));
            break;
        }
    }
    assert!(
        lines.contains(&"! error: closing: idle for 2s (--idle-timeout)".to_string()),
        "{lines:?}"
    );
    watcher.expect("* typist quit (idle)");
    // The half line died with the connection: it was never a message.
    watcher.send("/history");
    watcher.expect("* 1 earlier message in #lobby:");
    let line = watcher.next_line();
    assert!(line.ends_with("<typist> slow but whole"), "{line}");
}
