//! History in SQLite: kept across a clean restart, replayed on join (or not, with
//! `--history 0`), paged with `/history N`, and durable across `kill -9`: every message anyone
//! received before the crash is in the database.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{ChatClient, Read1, assert_all_stored, chat_server, db_messages};

/// Checks a replayed line `[#room YYYY-MM-DD HH:MM] <nick> text` and returns `<nick> text`.
fn replayed(line: &str, room: &str) -> String {
    let (place, rest) = line
        .split_once("] ")
        .unwrap_or_else(|| panic!("not a history line: {line:?}"));
    let stamp = place
        .strip_prefix(&format!("[{room} "))
        .unwrap_or_else(|| panic!("not a history line of {room}: {line:?}"));
    assert_eq!(stamp.len(), 16, "{line:?}");
    rest.to_string()
}

#[test]
fn history_survives_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chat.db");
    let db = db.to_str().unwrap();

    let mut server = chat_server(db, &[]);
    let mut ann = ChatClient::login(server.socket_addr(), "ann");
    for n in 1..=5 {
        ann.say(&format!("lobby {n}"));
    }
    ann.join("#dev");
    ann.send("/me builds");
    ann.expect_next("[#dev] * ann builds");
    server.signal("TERM");
    let goodbye = ann.read_until_closed(common::IO_TIMEOUT);
    assert_eq!(goodbye, ["* server shutting down; bye"]);
    let status = server.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{status}");

    let server = chat_server(db, &[]);
    let addr = server.socket_addr();
    let mut bob = ChatClient::connect(addr);
    bob.expect_next("* welcome to socktalk, guest1! you are in #lobby; type /help for commands");
    bob.expect_next("* 5 earlier messages in #lobby:");
    for n in 1..=5 {
        assert_eq!(
            replayed(&bob.next_line(), "#lobby"),
            format!("<ann> lobby {n}")
        );
    }
    bob.expect_next("* guest1 joined #lobby");
    bob.nick = "guest1".into();

    bob.send("/join #dev");
    bob.expect_next("* 1 earlier message in #dev:");
    assert_eq!(replayed(&bob.next_line(), "#dev"), "* ann builds");
    bob.expect_next("* guest1 joined #dev");

    // New messages are numbered after the old ones, and /history N pages the last N.
    bob.say("after the restart");
    bob.send("/history 2");
    bob.expect_next("* 2 earlier messages in #dev:");
    assert_eq!(replayed(&bob.next_line(), "#dev"), "* ann builds");
    assert_eq!(
        replayed(&bob.next_line(), "#dev"),
        "<guest1> after the restart"
    );
    bob.send("/join #lobby");
    bob.expect_next("* now talking in #lobby");
    bob.send("/history 3");
    bob.expect_next("* 3 earlier messages in #lobby:");
    for n in 3..=5 {
        assert_eq!(
            replayed(&bob.next_line(), "#lobby"),
            format!("<ann> lobby {n}")
        );
    }
    // More than there are is all there are.
    bob.send("/history 100");
    bob.expect_next("* 5 earlier messages in #lobby:");
    let rows = db_messages(dir.path().join("chat.db").as_path());
    assert_eq!(rows.len(), 7, "{rows:#?}");
    let ids: Vec<i64> = rows.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
}

#[test]
fn history_zero_disables_the_replay_on_join() {
    let server = chat_server(":memory:", &["--history", "0"]);
    let addr = server.socket_addr();
    let mut ann = ChatClient::login(addr, "ann");
    for n in 1..=3 {
        ann.say(&format!("m{n}"));
    }
    let mut bob = ChatClient::connect(addr);
    bob.expect_next("* welcome to socktalk, guest2! you are in #lobby; type /help for commands");
    bob.expect_next("* guest2 joined #lobby");
    bob.nick = "guest2".into();
    // Asking still works.
    bob.send("/history 2");
    bob.expect_next("* 2 earlier messages in #lobby:");
    assert_eq!(replayed(&bob.next_line(), "#lobby"), "<ann> m2");
    assert_eq!(replayed(&bob.next_line(), "#lobby"), "<ann> m3");
    // A room with no history: an empty answer, not silence.
    bob.send("/join #quiet");
    bob.expect_next("* guest2 joined #quiet");
    bob.send("/history");
    bob.expect_next("* 0 earlier messages in #quiet:");
}

#[test]
fn history_is_limited_to_rooms_one_is_in() {
    let server = chat_server(":memory:", &[]);
    let addr = server.socket_addr();
    let mut ann = ChatClient::login(addr, "ann");
    ann.join("#secret");
    ann.say("hush");
    let mut bob = ChatClient::login(addr, "bob");
    bob.send("/history 5");
    bob.expect_next("* 0 earlier messages in #lobby:");
    bob.join("#secret");
    bob.send("/part #secret");
    bob.expect("* you are now talking in #lobby");
    bob.send("/history");
    bob.expect_next("* 0 earlier messages in #lobby:");
}

/// `/history N` is read off the hub (on the reader thread, with its own connection to a file
/// database): what the member sent right after it, in the same write, still comes after it.
#[test]
fn what_is_sent_after_history_n_comes_after_its_reply() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chat.db");
    let server = chat_server(db.to_str().unwrap(), &[]);
    let mut ann = ChatClient::login(server.socket_addr(), "ann");
    for n in 1..=3 {
        ann.say(&format!("m{n}"));
    }
    ann.send_raw(b"/history 2\nm4\n/nonsense\n/who\n/history 1000\n");
    ann.expect_next("* 2 earlier messages in #lobby:");
    assert_eq!(replayed(&ann.next_line(), "#lobby"), "<ann> m2");
    assert_eq!(replayed(&ann.next_line(), "#lobby"), "<ann> m3");
    ann.expect_next("[#lobby] <ann> m4");
    assert!(ann.next_line().starts_with("! error: "));
    ann.expect_next("* #lobby (1): ann");
    ann.expect_next("* 4 earlier messages in #lobby:");
    for n in 1..=4 {
        assert_eq!(replayed(&ann.next_line(), "#lobby"), format!("<ann> m{n}"));
    }
}

/// Several members send as fast as they can while each also reads everything; the server is
/// killed with SIGKILL mid-traffic. Every message any member received must be in the database,
/// and each sender's stored messages must be a gap-free prefix of what it sent.
#[test]
fn every_message_anyone_received_survives_kill_9() {
    const SENDERS: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chat.db");
    let db_arg = db.to_str().unwrap();
    let mut server = chat_server(db_arg, &["--max-rate", "0"]);
    let addr = server.socket_addr();

    let members: Vec<ChatClient> = (0..SENDERS)
        .map(|i| ChatClient::login(addr, &format!("s{i}")))
        .collect();
    let received = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    for (i, mut member) in members.into_iter().enumerate() {
        let mut conn = member.writer();
        let stop_writing = stop.clone();
        writers.push(thread::spawn(move || {
            // Ten lines per write, until the server dies (or 100,000 lines).
            let mut sent = 0;
            while sent < 100_000 && !stop_writing.load(Ordering::Relaxed) {
                let batch: String = (sent..sent + 10).map(|n| format!("s{i}:{n}\n")).collect();
                if conn.write_all(batch.as_bytes()).is_err() {
                    break;
                }
                sent += 10;
            }
            sent
        }));
        let received = received.clone();
        readers.push(thread::spawn(move || {
            let mut lines = Vec::new();
            loop {
                match member.poll_line(Duration::from_secs(20)) {
                    Some(Read1::Line(line)) => {
                        let line = String::from_utf8(line).expect("UTF-8");
                        if line.starts_with("[#lobby] <s") {
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                        lines.push(line);
                    }
                    // An unfinished last line was never fully received: it does not count.
                    Some(Read1::Closed(_)) => break,
                    None => panic!("{}: no end of the connection after the kill", member.nick),
                }
            }
            lines
        }));
    }

    // Let traffic build up, then kill the server in the middle of it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while received.load(Ordering::Relaxed) < 4000 {
        assert!(Instant::now() < deadline, "traffic never got going");
        thread::sleep(Duration::from_millis(5));
    }
    server.signal("KILL");
    let status = server.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), None, "killed by a signal: {status}");
    let all_lines: Vec<Vec<String>> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    stop.store(true, Ordering::Relaxed);
    let sent: Vec<usize> = writers.into_iter().map(|w| w.join().unwrap()).collect();

    let mut seen = HashSet::new();
    for lines in &all_lines {
        for line in lines {
            if let Some(rest) = line.strip_prefix("[#lobby] <s") {
                let (_, text) = rest.split_once("> ").expect("a message line");
                seen.insert(text.to_string());
            }
        }
    }
    assert!(!seen.is_empty());

    // The server starts again on the same file.
    let server = chat_server(db_arg, &["--max-rate", "0"]);
    let rows = assert_all_stored(&seen, &db);
    // Each sender's stored messages are exactly its first N, in order: no gaps, no duplicates.
    let mut by_sender: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for row in &rows {
        let text = row["text"].as_str().unwrap();
        let (who, n) = text.split_once(':').unwrap();
        assert_eq!(row["nick"], who, "{row}");
        by_sender
            .entry(who.to_string())
            .or_default()
            .push(n.parse().unwrap());
    }
    for (who, numbers) in &by_sender {
        let expected: Vec<usize> = (0..numbers.len()).collect();
        assert!(
            numbers == &expected,
            "{who}'s stored messages are not a prefix"
        );
        let i: usize = who[1..].parse().unwrap();
        assert!(numbers.len() <= sent[i], "{who} stored more than it sent");
    }

    // And the restarted server replays the newest of them to a newcomer.
    let mut late = ChatClient::connect(server.socket_addr());
    late.expect_next("* welcome to socktalk, guest1! you are in #lobby; type /help for commands");
    late.expect_next("* 20 earlier messages in #lobby:");
    let mut replay = Vec::new();
    for _ in 0..20 {
        replay.push(late.next_line());
    }
    let last = rows.last().unwrap();
    let expected_last = format!(
        "<{}> {}",
        last["nick"].as_str().unwrap(),
        last["text"].as_str().unwrap()
    );
    assert_eq!(replayed(&replay[19], "#lobby"), expected_last);
}
