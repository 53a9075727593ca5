//! The chat server's limits: a member that stops reading is cut off while the room carries
//! on, floods are slowed down without loss, and line length, idle time, connection count and
//! rooms per member are bounded.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{ChatClient, ChatConn, Read1, chat_server, tcp};
use socktalk::limits::OUTBOX;

/// The tests that push tens of thousands of messages through the server take turns: each
/// checks that members who keep reading keep up, which two floods at once on a small machine
/// would make a test of the machine instead.
static FLOOD: Mutex<()> = Mutex::new(());

/// A connection whose receive buffer is small, so a member that never reads fills up fast.
fn small_buffer_connection(addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let stream = TcpStream::from(socket);
    stream.set_write_timeout(Some(common::IO_TIMEOUT)).unwrap();
    stream
}

/// Reads `member` until `count` lines `[#lobby] <from> msg N` (N = 0, 1, …) have arrived in
/// order, within `timeout`; returns every other line.
fn drain_messages(
    mut member: ChatClient,
    from: &str,
    count: usize,
    timeout: Duration,
) -> (ChatClient, Vec<String>) {
    let deadline = Instant::now() + timeout;
    let prefix = format!("[#lobby] <{from}> msg ");
    let mut next = 0;
    let mut others = Vec::new();
    while next < count {
        let left = deadline.saturating_duration_since(Instant::now());
        match member.poll_line(left) {
            Some(Read1::Line(line)) => {
                let line = String::from_utf8(line).unwrap();
                match line.strip_prefix(&prefix) {
                    Some(rest) => {
                        let n: usize = rest.split(' ').next().unwrap().parse().unwrap();
                        assert_eq!(n, next, "{}: message out of order", member.nick);
                        next += 1;
                    }
                    None => others.push(line),
                }
            }
            Some(Read1::Closed(_)) => panic!(
                "{}: disconnected after {next} of {count} messages; other lines: {others:?}",
                member.nick
            ),
            None => panic!(
                "{}: only {next} of {count} messages within {timeout:?}; other lines: {others:?}",
                member.nick
            ),
        }
    }
    (member, others)
}

#[test]
fn a_member_that_stops_reading_is_cut_off_and_the_room_carries_on() {
    const COUNT: usize = 20_000;
    let _turn = FLOOD.lock().unwrap_or_else(|e| e.into_inner());
    let server = chat_server(":memory:", &["--max-rate", "0"]);
    let addr = server.socket_addr();
    let mut sink = ChatClient::over(ChatConn::Tcp(small_buffer_connection(addr))).welcomed();
    sink.set_nick("sink");
    let mut reader = ChatClient::login(addr, "reader");
    let sender = ChatClient::login(addr, "sender");
    reader.expect("* guest3 is now known as sender");

    // Everyone who reads is reading before the first line goes out.
    let ready = Arc::new(Barrier::new(3));
    let padding = "x".repeat(500);
    let started = Instant::now();
    let mut conn = sender.writer();
    let writer_ready = ready.clone();
    let writing = thread::spawn({
        let padding = padding.clone();
        move || {
            writer_ready.wait();
            for chunk in 0..COUNT / 100 {
                let lines: String = (chunk * 100..chunk * 100 + 100)
                    .map(|n| format!("msg {n} {padding}\n"))
                    .collect();
                conn.write_all(lines.as_bytes()).unwrap();
            }
        }
    });
    // The sender is a member too, and reads its own messages back.
    let sender_ready = ready.clone();
    let sender_reading = thread::spawn(move || {
        sender_ready.wait();
        drain_messages(sender, "sender", COUNT, Duration::from_secs(60))
    });
    ready.wait();
    let (mut reader, others) = drain_messages(reader, "sender", COUNT, Duration::from_secs(60));
    writing.join().unwrap();
    let (mut sender, _) = sender_reading.join().unwrap();
    eprintln!("all {COUNT} messages delivered in {:?}", started.elapsed());
    let reason = format!("disconnected for not reading: {OUTBOX} lines were waiting");
    let cut_off = format!("* sink quit ({reason})");
    let told = format!("! error: {reason}");
    if !others.contains(&cut_off) {
        reader.expect(&cut_off);
    }

    // The sink's connection ends once it reads what was already on its way: the first
    // messages, gap-free, perhaps a warning and the reason, and no more. A line the cut
    // interrupted ends where it was cut, and the reason follows on a line of its own.
    let lines = sink.read_until_closed(Duration::from_secs(30));
    let warning = "! warning: you are falling behind";
    let mut got = 0;
    let mut lines = lines.iter().peekable();
    while let Some(line) = lines.next() {
        let message = format!("[#lobby] <sender> msg {got} {padding}");
        if *line == message {
            got += 1;
            continue;
        }
        let is_whole = line.starts_with("* ") || line.starts_with(warning) || *line == told;
        if !is_whole {
            let is_cut_short = !line.is_empty()
                && (message.starts_with(line.as_str())
                    || warning.starts_with(line.as_str())
                    || line.starts_with('*'));
            assert!(
                is_cut_short && lines.peek() == Some(&&told),
                "{line:.80} after {got} messages; then {:.80?}",
                lines.peek()
            );
        }
    }
    assert!(got < COUNT, "the sink got all {got} messages");

    // The room carries on.
    sender.send("/who");
    sender.expect("* #lobby (2): reader, sender");
    reader.say("still here");
    sender.expect("[#lobby] <reader> still here");
}

/// A member cut off while it still sends gets a clean end of stream, and the reason if it reads
/// again soon: the server reads and drops what it sends meanwhile, as closing a socket with
/// unread input would answer with a reset and lose the output still on its way to the client.
#[test]
fn a_member_cut_off_while_sending_gets_the_reason_not_a_reset() {
    let _turn = FLOOD.lock().unwrap_or_else(|e| e.into_inner());
    let server = chat_server(":memory:", &["--max-rate", "0"]);
    let addr = server.socket_addr();
    let mut sink = ChatClient::over(ChatConn::Tcp(small_buffer_connection(addr))).welcomed();
    sink.set_nick("sink");
    let mut talker = ChatClient::login(addr, "talker");
    sink.expect("* guest2 is now known as talker");

    // The talker floods the room (and reads); the sink sends too, and reads nothing, until
    // the talker sees it go.
    let is_gone = Arc::new(AtomicBool::new(false));
    let flood = |mut conn: ChatConn, line: &str| {
        let is_gone = is_gone.clone();
        let lines = format!("{line}\n").repeat(100);
        thread::spawn(move || {
            while !is_gone.load(Ordering::Relaxed) {
                conn.write_all(lines.as_bytes())?;
            }
            match conn {
                ChatConn::Tcp(conn) => conn.shutdown(Shutdown::Write),
                ChatConn::Unix(conn) => conn.shutdown(Shutdown::Write),
            }
        })
    };
    let sinking = flood(sink.writer(), &"z".repeat(200));
    let talking = flood(talker.writer(), &"t".repeat(200));
    let reason = format!("disconnected for not reading: {OUTBOX} lines were waiting");
    talker.expect(&format!("* sink quit ({reason})"));
    is_gone.store(true, Ordering::Relaxed);

    let mut received = sink.stream.buffer().to_vec();
    let ChatConn::Tcp(mut conn) = sink.stream.into_inner() else {
        unreachable!("a TCP connection")
    };
    conn.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    conn.read_to_end(&mut received)
        .expect("the connection ends cleanly, not with a reset");
    sinking
        .join()
        .unwrap()
        .expect("what the sink sent was taken");
    talking.join().unwrap().unwrap();
    let text = String::from_utf8_lossy(&received);
    assert_eq!(text.lines().last(), Some(&*format!("! error: {reason}")));
    assert!(text.ends_with('\n'));
}

/// Being cut off must end the connection on the server's side even if the member never reads
/// again: it gives back its connection slot (`--max-conns`) rather than hold it forever.
#[test]
fn a_member_cut_off_for_not_reading_frees_its_connection() {
    let _turn = FLOOD.lock().unwrap_or_else(|e| e.into_inner());
    let server = chat_server(
        ":memory:",
        &["--max-rate", "0", "--max-conns", "2", "--outbox", "64"],
    );
    let addr = server.socket_addr();
    let mut sink = ChatClient::over(ChatConn::Tcp(small_buffer_connection(addr))).welcomed();
    sink.set_nick("sink");
    let mut talker = ChatClient::login(addr, "talker");
    // Enough to fill the sink's socket buffers and its outbox, several times over: the
    // kernel's send buffer towards the sink grows to megabytes, about 3,000 of these messages.
    // They go out in batches, each read back before the next (so the talker is never the one
    // behind): one round trip per message took seconds, over the 10 s limit on a busy machine.
    const BATCH: usize = 50;
    let padding = "y".repeat(1000);
    let deadline = Instant::now() + 3 * common::IO_TIMEOUT;
    for batch in 0.. {
        assert!(Instant::now() < deadline, "the sink was never cut off");
        let first = batch * BATCH;
        let lines: String = (first..first + BATCH)
            .map(|n| format!("{n} {padding}\n"))
            .collect();
        talker.send_raw(lines.as_bytes());
        let last = format!("[#lobby] <talker> {} ", first + BATCH - 1);
        let line = talker.expect_line(|l| l.starts_with("* sink quit") || l.starts_with(&last));
        if line.starts_with("* sink quit") {
            assert_eq!(
                line,
                "* sink quit (disconnected for not reading: 64 lines were waiting)"
            );
            break;
        }
    }
    // The sink still never reads; its slot must come free for a newcomer.
    await_welcome(addr, "the cut-off member still holds its connection");
    drop(sink);
}

/// Fast senders are members too: while the server waits for room to take their next lines, it
/// must keep sending them the room's messages, or they would be cut off as "not reading".
///
/// A stress test, so not run by default (`cargo test -- --ignored` runs it): with `--max-rate 0`
/// the server sends as fast as it commits, and a member that is not scheduled for ~40 ms has
/// 4,096 lines (`--outbox`) waiting and is cut off, so on a busy 2-CPU machine it fails now and
/// then even though nothing is wrong. Before the session stopped blocking on the hub's queue,
/// it failed every time.
#[test]
#[ignore = "stress test; sensitive to CPU starvation"]
fn fast_senders_that_keep_reading_are_never_cut_off() {
    const SENDERS: usize = 2;
    const EACH: usize = 10_000;
    let _turn = FLOOD.lock().unwrap_or_else(|e| e.into_inner());
    let server = chat_server(":memory:", &["--max-rate", "0"]);
    let addr = server.socket_addr();
    let mut members: Vec<ChatClient> = (0..SENDERS)
        .map(|i| ChatClient::login(addr, &format!("s{i}")))
        .collect();
    let last = format!("* guest{SENDERS} is now known as s{}", SENDERS - 1);
    for member in &mut members[..SENDERS - 1] {
        member.expect(&last);
    }
    // Everyone reads before anyone writes.
    let ready = Arc::new(Barrier::new(2 * SENDERS));
    let mut threads = Vec::new();
    for (i, mut member) in members.into_iter().enumerate() {
        let mut conn = member.writer();
        let writer_ready = ready.clone();
        threads.push(thread::spawn(move || {
            let lines: String = (0..EACH).map(|n| format!("{n}\n")).collect();
            writer_ready.wait();
            conn.write_all(lines.as_bytes()).unwrap();
        }));
        let reader_ready = ready.clone();
        threads.push(thread::spawn(move || {
            reader_ready.wait();
            // Every sender's messages, each sender's in order.
            let mut next = [0usize; SENDERS];
            let mut others = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while next.iter().sum::<usize>() < SENDERS * EACH {
                let left = deadline.saturating_duration_since(Instant::now());
                let line = match member.poll_line(left) {
                    Some(Read1::Line(line)) => String::from_utf8(line).unwrap(),
                    other => panic!("s{i}: {other:?} after {next:?}; other lines: {others:?}"),
                };
                let Some(rest) = line.strip_prefix("[#lobby] <s") else {
                    others.push(line);
                    continue;
                };
                let (from, n) = rest.split_once("> ").unwrap();
                let from: usize = from.parse().unwrap();
                assert_eq!(
                    n.parse::<usize>().unwrap(),
                    next[from],
                    "s{i}: from s{from}"
                );
                next[from] += 1;
            }
            assert!(
                others
                    .iter()
                    .all(|l| !l.starts_with("! error") && !l.contains(" quit")),
                "s{i}: {others:?}"
            );
        }));
    }
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn a_flood_is_slowed_down_and_nothing_is_lost() {
    let server = chat_server(":memory:", &["--max-rate", "50", "--burst", "5"]);
    let addr = server.socket_addr();
    let mut watcher = ChatClient::login(addr, "watcher");
    let mut flooder = ChatClient::login(addr, "flooder");
    watcher.expect("* guest2 is now known as flooder");

    let flood: String = (0..200).map(|n| format!("flood {n}\n")).collect();
    let started = Instant::now();
    flooder.send_raw(flood.as_bytes());
    let mut warned = Vec::new();
    for n in 0..200 {
        let line = flooder.expect_line(|l| {
            if l.starts_with("! warning: ") {
                warned.push(l.to_string());
            }
            l.starts_with("[#lobby] <flooder> ")
        });
        assert_eq!(line, format!("[#lobby] <flooder> flood {n}"));
    }
    let elapsed = started.elapsed();
    for n in 0..200 {
        watcher.expect_next(&format!("[#lobby] <flooder> flood {n}"));
    }
    assert_eq!(
        warned,
        [
            "! warning: slow down: at most 50 messages per second; reading you more slowly (nothing is lost)"
        ]
    );
    // 195 messages beyond the burst at 50 a second take about 3.9 s.
    assert!(elapsed >= Duration::from_secs(3), "{elapsed:?}");

    // Commands count too, but once the bucket refills the flooder is served at once again.
    thread::sleep(Duration::from_millis(200));
    flooder.send("/who");
    flooder.expect_next("* #lobby (2): flooder, watcher");

    // Back within its rate, it is warned again when it floods again.
    thread::sleep(Duration::from_millis(200));
    let flood: String = (0..20).map(|n| format!("again {n}\n")).collect();
    flooder.send_raw(flood.as_bytes());
    let warning = flooder.expect_line(|l| l.starts_with("! warning: "));
    assert!(warning.contains("slow down"), "{warning}");
    flooder.expect("[#lobby] <flooder> again 19");
}

#[test]
fn an_over_long_line_is_refused_and_the_session_goes_on() {
    let server = chat_server(":memory:", &["--max-line", "64"]);
    let addr = server.socket_addr();
    let mut ann = ChatClient::login(addr, "ann");
    let mut bob = ChatClient::login(addr, "bob");
    ann.expect("* guest2 is now known as bob");

    ann.send(&"x".repeat(100));
    ann.expect_next("! error: line longer than 64 bytes (--max-line); it was discarded");
    ann.send("a normal line");
    ann.expect_next("[#lobby] <ann> a normal line");
    bob.expect_next("[#lobby] <ann> a normal line");

    // A long line arriving in pieces is skipped up to its newline, however it is cut.
    ann.send_raw(&[b'y'; 50]);
    ann.send_raw(&[b'y'; 50]);
    ann.expect_next("! error: line longer than 64 bytes (--max-line); it was discarded");
    ann.send_raw(&[b'z'; 5000]);
    ann.send_raw(b"zz\nafter the long one\n");
    ann.expect_next("[#lobby] <ann> after the long one");
    bob.expect_next("[#lobby] <ann> after the long one");
}

#[test]
fn an_idle_client_is_disconnected_with_a_reason() {
    let server = chat_server(":memory:", &["--idle-timeout", "0.5"]);
    let addr = server.socket_addr();
    let mut silent = ChatClient::guest(addr);
    let mut chatty = ChatClient::guest(addr);
    silent.expect("* guest2 joined #lobby");

    // chatty keeps talking; silent says nothing and is closed.
    let deadline = Instant::now() + common::IO_TIMEOUT;
    let mut n = 0;
    let quit = loop {
        assert!(Instant::now() < deadline, "silent was never disconnected");
        chatty.send(&format!("ping {n}"));
        n += 1;
        match chatty.poll_line(Duration::from_millis(100)) {
            Some(Read1::Line(line)) if line.starts_with(b"* guest1 quit") => {
                break String::from_utf8(line).unwrap();
            }
            Some(Read1::Closed(_)) => panic!("chatty was disconnected"),
            _ => {}
        }
    };
    assert_eq!(quit, "* guest1 quit (idle)");
    let lines = silent.read_until_closed(common::IO_TIMEOUT);
    let error = lines.iter().find(|l| l.starts_with("! error: "));
    assert_eq!(
        error.map(String::as_str),
        Some("! error: closing: idle for 500ms (--idle-timeout)"),
        "{lines:?}"
    );
    assert!(chatty.say("still connected").ends_with("still connected"));
}

#[test]
fn max_conns_closes_the_extra_connection_cleanly() {
    let server = chat_server(":memory:", &["--max-conns", "2"]);
    let addr = server.socket_addr();
    let mut first = ChatClient::login(addr, "first");
    let _second = ChatClient::login(addr, "second");
    first.expect("* guest2 is now known as second");

    let mut third = tcp(addr);
    let mut got = Vec::new();
    use std::io::Read;
    let end = third.read_to_end(&mut got);
    assert!(
        end.is_ok() || end.unwrap_err().kind() == std::io::ErrorKind::ConnectionReset,
        "not a clean close"
    );
    assert_eq!(
        String::from_utf8_lossy(&got),
        "refused: server full (--max-conns 2)\n",
        "the extra connection is told why"
    );

    // The first two are unaffected; when one leaves, its slot serves a newcomer.
    assert_eq!(first.say("still two"), "[#lobby] <first> still two");
    first.send("/quit");
    first.read_until_closed(common::IO_TIMEOUT);
    await_welcome(addr, "the freed slot was never reused");
}

#[test]
fn max_rooms_refuses_one_more_join() {
    let server = chat_server(":memory:", &["--max-rooms", "2"]);
    let addr = server.socket_addr();
    let mut ann = ChatClient::login(addr, "ann");
    ann.join("#a");
    ann.send("/join #b");
    ann.expect_next("! error: you are in 2 rooms, the most allowed (--max-rooms); /part one first");
    ann.send("/rooms");
    ann.expect_next("* rooms: #a (1), #lobby (1)");
    ann.send("/part #a");
    ann.expect("* you are now talking in #lobby");
    ann.join("#b");
    assert_eq!(ann.say("in b"), "[#b] <ann> in b");
}

#[test]
fn a_member_whose_writes_are_stuck_in_a_quiet_room_is_closed_at_the_idle_timeout() {
    let _turn = FLOOD.lock().unwrap_or_else(|e| e.into_inner());
    // A queue so long it never fills: only the idle timeout can end the stuck write.
    let server = chat_server(
        ":memory:",
        &[
            "--max-rate",
            "0",
            "--outbox",
            "1000000",
            "--idle-timeout",
            "1",
        ],
    );
    let addr = server.socket_addr();
    let mut sink = ChatClient::over(ChatConn::Tcp(small_buffer_connection(addr))).welcomed();
    sink.set_nick("sink");
    let talker = tcp(addr);
    let mut writer = talker.try_clone().unwrap();
    // A burst big enough to fill the sink's socket buffers, then silence.
    let padding = "z".repeat(1000);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sending = {
        let done = done.clone();
        thread::spawn(move || {
            let burst: String = (0..4000).map(|i| format!("{i} {padding}\n")).collect();
            writer.write_all(burst.as_bytes()).unwrap();
            // The talker stays active (it is not the idle one) without adding room traffic.
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(200));
                if writer.write_all(b"/rooms\n").is_err() {
                    break;
                }
            }
        })
    };
    let started = Instant::now();
    let mut lines = std::io::BufReader::new(talker);
    let mut line = String::new();
    loop {
        line.clear();
        use std::io::BufRead;
        let n = lines
            .read_line(&mut line)
            .expect("the talker keeps being served");
        assert!(n > 0, "the talker was disconnected");
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "the sink, stuck in a write in a quiet room, was never closed"
        );
        if line.starts_with("* sink quit") {
            break;
        }
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    sending.join().unwrap();
    // Well before the 10 s IO timeout: one idle period after the burst, plus slack.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_client_held_back_by_the_rate_limit_is_not_idle() {
    // 30 lines at 20/s take 1.5 s to be read, longer than the 1 s idle timeout; the client sends
    // them all at once and then nothing. Every line must still be delivered.
    let server = chat_server(
        ":memory:",
        &["--max-rate", "20", "--burst", "1", "--idle-timeout", "1"],
    );
    let addr = server.socket_addr();
    let mut bob = ChatClient::login(addr, "bob");
    let mut ann = ChatClient::login(addr, "ann");
    bob.expect("* guest2 is now known as ann");
    let burst: String = (0..30).map(|i| format!("paced {i}\n")).collect();
    ann.send_raw(burst.as_bytes());
    for i in 0..30 {
        // Bob keeps talking to the server (he is not the idle one).
        bob.send("/rooms");
        bob.expect(&format!("[#lobby] <ann> paced {i}"));
    }
}

/// Connects again and again until a newcomer is welcomed rather than told the server is full
/// (a slot comes free only once the server has noticed a connection end); fails with `what`
/// if none is within the IO timeout.
fn await_welcome(addr: std::net::SocketAddr, what: &str) {
    use std::io::Read;
    let deadline = Instant::now() + common::IO_TIMEOUT;
    loop {
        let mut next = tcp(addr);
        let mut line = [0u8; 22];
        if next.read_exact(&mut line).is_ok() && !line.starts_with(b"refused: ") {
            assert_eq!(&line, b"* welcome to socktalk,");
            return;
        }
        assert!(Instant::now() < deadline, "{what}");
        thread::sleep(Duration::from_millis(10));
    }
}
