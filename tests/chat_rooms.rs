//! The chat server's rooms: delivery, joining and leaving, listing, nicks, actions, quitting,
//! errors that leave the session going, abrupt disconnects, a busy room, and the Unix listener.

mod common;

use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use common::{ChatClient, Proc, chat_server, gbk};

fn server() -> (Proc, SocketAddr) {
    let server = chat_server(":memory:", &[]);
    let addr = server.socket_addr();
    (server, addr)
}

#[test]
fn a_room_message_reaches_every_member_and_no_other_room() {
    let (_server, addr) = server();
    let mut ann = ChatClient::login(addr, "ann");
    let mut bob = ChatClient::login(addr, "bob");
    let mut cat = ChatClient::login(addr, "cat");
    cat.join("#dev");
    cat.send("/part #lobby");
    cat.expect("* cat left #lobby");
    cat.expect_next("* you are now talking in #dev");
    for member in [&mut ann, &mut bob] {
        member.expect("* cat left #lobby");
    }

    assert_eq!(ann.say("hello lobby"), "[#lobby] <ann> hello lobby");
    bob.expect_next("[#lobby] <ann> hello lobby");

    // cat is only in #dev: the lobby message, already fanned out, did not reach it.
    cat.send("dev only");
    cat.expect_next("[#dev] <cat> dev only");
    // And the #dev message, already fanned out, reached no one in the lobby.
    ann.send("second");
    ann.expect_next("[#lobby] <ann> second");
    bob.expect_next("[#lobby] <ann> second");
}

/// The texts of ann's messages replayed to `client` on joining `#new`, after the header
/// announcing `count` of them.
fn joins_and_replays(client: &mut ChatClient, count: usize) -> Vec<String> {
    client.send("/join #new");
    client.expect(&format!("* {count} earlier messages in #new:"));
    (0..count)
        .map(|_| {
            let line = client.next_line();
            let (_, text) = line
                .split_once("] <ann> ")
                .unwrap_or_else(|| panic!("{line}"));
            text.to_string()
        })
        .collect()
}

#[test]
fn every_joiner_gets_the_history_as_it_stands_in_its_own_form() {
    // The hub reads and renders a room's replay once for all who join it before its next
    // message: each must still get the room as it stands when it joins, as it reads it.
    let (_server, addr) = server();
    let mut ann = ChatClient::login(addr, "ann");
    ann.join("#old");
    ann.say("from before");
    ann.join("#new");
    for text in ["one", "二"] {
        ann.say(text);
    }
    // Everyone is in (and has been replayed #lobby) before the first joins #new, so the
    // joins below follow each other, and all but the first are served the kept replay.
    let mut bob = ChatClient::login(addr, "bob");
    let mut cat = ChatClient::login(addr, "cat");
    let mut gb = ChatClient::login(addr, "gb");
    gb.send("/encoding gbk");
    gb.expect_next("* your encoding is now GBK");
    let mut js = ChatClient::login(addr, "js");
    js.json();

    assert_eq!(joins_and_replays(&mut bob, 2), ["one", "二"]);
    assert_eq!(joins_and_replays(&mut cat, 2), ["one", "二"]);
    gb.send("/join #new");
    let gbk = |text: &str| encoding_rs::GBK.encode(text).0.into_owned();
    // Past the notices of those who came after gb.
    let header = gbk("* 2 earlier messages in #new:");
    let skipped = (0..10).take_while(|_| gb.next_raw() != header).count();
    assert!(skipped < 10, "gb was not replayed #new");
    gb.next_raw();
    let line = gb.next_raw();
    assert!(line.ends_with(&gbk("] <ann> 二")), "{line:?}");
    js.send_json(&serde_json::json!({"type": "join", "room": "#new"}));
    let history = js.expect_json(|event| event["type"] == "history");
    assert_eq!(history["room"], "#new", "{history}");
    assert_eq!(history["messages"][1]["text"], "二", "{history}");

    // A message elsewhere leaves #new's replay as it was; one in #new ends it.
    bob.send("/join #lobby");
    bob.say("in the lobby");
    let mut dan = ChatClient::login(addr, "dan");
    assert_eq!(joins_and_replays(&mut dan, 2), ["one", "二"]);
    ann.say("three");
    let mut eve = ChatClient::login(addr, "eve");
    assert_eq!(joins_and_replays(&mut eve, 3), ["one", "二", "three"]);
    // Another room's joiner gets that room's history.
    eve.send("/join #old");
    eve.expect("* 1 earlier message in #old:");
    let line = eve.next_line();
    assert!(line.ends_with("] <ann> from before"), "{line}");
}

#[test]
fn join_creates_a_room_and_replays_its_history() {
    let (_server, addr) = server();
    let mut ann = ChatClient::login(addr, "ann");
    ann.join("#new");
    ann.send("/rooms");
    ann.expect_next("* rooms: #lobby (1), #new (1)");
    for text in ["one", "two", "three"] {
        assert_eq!(ann.say(text), format!("[#new] <ann> {text}"));
    }

    let mut bob = ChatClient::login(addr, "bob");
    ann.expect("* guest2 is now known as bob");
    bob.send("/join #NEW");
    bob.expect_next("* 3 earlier messages in #new:");
    for text in ["one", "two", "three"] {
        let line = bob.next_line();
        // `[#new YYYY-MM-DD HH:MM] <ann> one`
        let (place, rest) = line.split_once("] ").unwrap();
        assert_eq!(rest, format!("<ann> {text}"), "{line}");
        let stamp = place
            .strip_prefix("[#new ")
            .unwrap_or_else(|| panic!("{line}"));
        assert_eq!(stamp.len(), "2026-01-01 00:00".len(), "{line}");
        assert!(
            stamp.starts_with("20") && stamp.as_bytes()[13] == b':',
            "{line}"
        );
    }
    bob.expect_next("* bob joined #new");
    ann.expect_next("* bob joined #new");

    // Joining a room one is already in just makes it current.
    bob.send("/join #lobby");
    bob.expect_next("* now talking in #lobby");
    assert_eq!(
        bob.say("back in the lobby"),
        "[#lobby] <bob> back in the lobby"
    );
    ann.expect_next("[#lobby] <bob> back in the lobby");
}

#[test]
fn part_leaves_a_room_and_then_no_room_at_all() {
    let (_server, addr) = server();
    let mut ann = ChatClient::login(addr, "ann");
    let mut bob = ChatClient::login(addr, "bob");
    ann.join("#dev");
    bob.join("#dev");
    ann.expect_next("* bob joined #dev");

    bob.send("/part");
    bob.expect_next("* bob left #dev");
    bob.expect_next("* you are now talking in #lobby");
    ann.expect_next("* bob left #dev");

    ann.say("bob is gone");
    bob.send("/part #dev");
    bob.expect_next("! error: you are not in #dev");

    bob.send("/part #lobby");
    bob.expect_next("* bob left #lobby");
    bob.expect_next("* you are in no room now; /join #room to talk");
    ann.expect_next("* bob left #lobby");
    bob.send("anyone?");
    bob.expect_next("! error: you are in no room; /join #room first");
    bob.send("/who");
    bob.expect_next("! error: you are in no room; /who #room");

    // Everyone gone: the room itself goes (its history stays).
    ann.send("/part #dev");
    ann.expect_next("* ann left #dev");
    ann.expect_next("* you are now talking in #lobby");
    ann.send("/rooms");
    ann.expect_next("* rooms: #lobby (1)");
}

#[test]
fn who_and_rooms_list_members_and_rooms() {
    let (_server, addr) = server();
    let mut ann = ChatClient::login(addr, "ann");
    let mut bob = ChatClient::login(addr, "Bob");
    ann.expect("* guest2 is now known as Bob");
    let mut cat = ChatClient::login(addr, "cat");
    ann.expect("* guest3 is now known as cat");

    ann.send("/who");
    ann.expect_next("* #lobby (3): ann, Bob, cat");
    bob.join("#dev");
    cat.join("#zoo");
    cat.send("/rooms");
    cat.expect_next("* rooms: #dev (1), #lobby (3), #zoo (1)");
    ann.send("/who #dev");
    ann.expect_next("* #dev (1): Bob");
    ann.send("/who #nowhere");
    ann.expect_next("! error: there is no room #nowhere");
}

#[test]
fn nicks_are_unique_regardless_of_case_and_must_be_valid() {
    let (_server, addr) = server();
    let mut ann = ChatClient::login(addr, "ann");
    let mut bob = ChatClient::login(addr, "bob");
    ann.expect("* guest2 is now known as bob");

    bob.send("/nick ANN");
    bob.expect_next("! error: nick 'ANN' is taken");
    bob.send("/nick 1abc");
    bob.expect_next(
        "! error: nick '1abc' may use letters, digits, _ and -, and must start with a letter or _",
    );
    bob.send("/nick bad!nick");
    assert!(
        bob.next_line()
            .starts_with("! error: nick 'bad!nick' may use")
    );
    let long = "n".repeat(25);
    bob.send(&format!("/nick {long}"));
    bob.expect_next(&format!(
        "! error: nick '{long}' must be 1 to 24 characters"
    ));
    bob.send("/nick");
    bob.expect_next("! error: usage: /nick NAME");
    bob.send("/nick two words");
    bob.expect_next("! error: usage: /nick NAME");
    bob.send("/nick bob");
    bob.expect_next("* you are already bob");

    // ann may change the case of her own nick; everyone hears of a change.
    ann.send("/nick Ann");
    ann.expect_next("* ann is now known as Ann");
    bob.expect_next("* ann is now known as Ann");
    ann.nick = "Ann".into();

    // Any script will do.
    bob.set_nick("小明");
    ann.expect_next("* bob is now known as 小明");
    assert_eq!(bob.say("你好"), "[#lobby] <小明> 你好");

    // A nick is freed when its owner leaves.
    ann.send("/quit");
    ann.expect("* bye");
    bob.expect("* Ann quit");
    bob.set_nick("ann");
    assert_eq!(bob.say("mine now"), "[#lobby] <ann> mine now");
}

#[test]
fn nicks_fold_case_fully_and_are_taken_in_normal_form_c() {
    let (_server, addr) = server();
    let mut odos = ChatClient::login(addr, "ΟΔΟΣ");
    let mut bob = ChatClient::login(addr, "bob");
    odos.expect("* guest2 is now known as bob");

    // Greek final sigma: ΟΔΟΣ lower-cases to οδος, but οδοσ is the same nick too.
    for nick in ["οδοσ", "οδος", "Οδοσ"] {
        bob.send(&format!("/nick {nick}"));
        bob.expect_next(&format!("! error: nick '{nick}' is taken"));
    }
    // A private message to any case of the nick reaches its holder.
    bob.send("/msg οδοσ psst");
    bob.expect_next("[pm to ΟΔΟΣ] <bob> psst");
    odos.expect_next("[pm] <bob> psst");

    // e + U+0301 is é: one nick with Rémy, shown composed.
    bob.send("/nick Re\u{301}my");
    bob.expect_next("* bob is now known as R\u{e9}my");
    odos.expect_next("* bob is now known as R\u{e9}my");
    bob.nick = "R\u{e9}my".into();
    odos.send("/nick R\u{e9}MY");
    odos.expect_next("! error: nick 'R\u{e9}MY' is taken");
    odos.send("/msg re\u{301}my hello");
    odos.expect_next("[pm to R\u{e9}my] <ΟΔΟΣ> hello");
    bob.expect_next("[pm] <ΟΔΟΣ> hello");
}

#[test]
fn a_nick_that_looks_like_one_online_is_refused() {
    let (_server, addr) = server();
    let mut ann = ChatClient::login(addr, "ann");
    let mut ace = ChatClient::login(addr, "ace");
    let _bill = ChatClient::login(addr, "bill");
    let mut eve = ChatClient::login(addr, "eve");
    ann.expect("* guest4 is now known as eve");

    // Cyrillic а in a Latin nick; a nick all in Cyrillic; a capital I for an l.
    for (nick, like) in [
        ("\u{430}nn", "ann"),
        ("\u{430}\u{441}\u{435}", "ace"),
        ("BiIl", "bill"),
    ] {
        eve.send(&format!("/nick {nick}"));
        eve.expect_next(&format!(
            "! error: nick '{nick}' looks like '{like}', which is taken"
        ));
    }
    // Mixing Latin with Cyrillic or Greek is refused even when it looks like no one.
    eve.send("/nick \u{430}nna");
    eve.expect_next(
        "! error: nick '\u{430}nna' mixes scripts (Cyrillic, Latin); use one script (Latin may \
         go with Chinese, Japanese or Korean)",
    );
    eve.send("/nick alphaβ");
    assert!(
        eve.next_line()
            .starts_with("! error: nick 'alphaβ' mixes scripts (Latin, Greek)")
    );
    // One script, looking like no one, is fine.
    eve.set_nick("Ева");
    ann.expect_next("* eve is now known as Ева");

    // A member may change the case of its own nick.
    ann.send("/nick ANN");
    ann.expect_next("* ann is now known as ANN");
    ann.nick = "ANN".into();
    ace.send("/nick ACE");
    ace.expect("* ace is now known as ACE");
    ace.nick = "ACE".into();
    // Once ann is gone, her look-alike is free.
    ann.send("/quit");
    ann.expect("* bye");
    eve.expect("* ANN quit");
    eve.set_nick("\u{430}\u{43f}\u{43f}");
    // Moving off a nick with /nick frees its look-alike too.
    ace.set_nick("acey");
    eve.set_nick("\u{430}\u{441}\u{435}");
}

#[test]
fn chinese_and_japanese_nicks_work_in_gbk_and_utf8() {
    let (_server, addr) = server();
    let (mut utf, mut gb) = ChatClient::utf_and_gbk(addr);
    // 山田がく, typed in GBK: Han and hiragana (Japanese) are one writing system.
    gb.send_raw(&[b"/nick ".as_slice(), &gbk("山田がく"), b"\n"].concat());
    assert_eq!(gb.next_raw(), gbk("* guest2 is now known as 山田がく"));
    utf.expect_next("* guest2 is now known as 山田がく");
    // The same nick with が decomposed (か + U+3099), as some keyboards send it, is taken.
    utf.send("/nick 山田か\u{3099}く");
    utf.expect_next("! error: nick '山田がく' is taken");
    utf.send("/msg 山田か\u{3099}く 你好");
    utf.expect_next("[pm to 山田がく] <utf> 你好");
    assert_eq!(gb.next_raw(), gbk("[pm] <utf> 你好"));
    // Chinese, and Latin with Han, are nicks like any other.
    utf.set_nick("王小明");
    assert_eq!(gb.next_raw(), gbk("* utf is now known as 王小明"));
    utf.set_nick("wang小明");
    assert_eq!(gb.next_raw(), gbk("* 王小明 is now known as wang小明"));
}

#[test]
fn me_is_an_action_seen_by_the_room() {
    let (_server, addr) = server();
    let mut ann = ChatClient::login(addr, "ann");
    let mut bob = ChatClient::login(addr, "bob");
    ann.expect("* guest2 is now known as bob");
    ann.send("/me waves to everyone");
    ann.expect_next("[#lobby] * ann waves to everyone");
    bob.expect_next("[#lobby] * ann waves to everyone");
    ann.send("/me");
    ann.expect_next("! error: usage: /me action");
    // `//` sends a line starting with `/`.
    ann.send("//me is not a command");
    ann.expect_next("[#lobby] <ann> /me is not a command");
    bob.expect_next("[#lobby] <ann> /me is not a command");
}

#[test]
fn quit_tells_the_room_and_closes_the_connection() {
    let (_server, addr) = server();
    let mut ann = ChatClient::login(addr, "ann");
    let mut bob = ChatClient::login(addr, "bob");
    let mut cat = ChatClient::login(addr, "cat");
    ann.expect("* guest3 is now known as cat");
    bob.expect("* guest3 is now known as cat");

    cat.send("/quit");
    assert_eq!(cat.read_until_closed(common::IO_TIMEOUT), ["* bye"]);
    ann.expect_next("* cat quit");
    bob.expect_next("* cat quit");

    bob.send("/quit gotta go");
    assert_eq!(bob.read_until_closed(common::IO_TIMEOUT), ["* bye"]);
    ann.expect_next("* bob quit (gotta go)");
    ann.send("/who");
    ann.expect_next("* #lobby (1): ann");

    // Simply closing the connection is a quit too.
    let dan = ChatClient::login(addr, "dan");
    ann.expect("* guest4 is now known as dan");
    drop(dan);
    ann.expect_next("* dan quit");
}

#[test]
fn help_lists_the_commands() {
    let (_server, addr) = server();
    let mut ann = ChatClient::login(addr, "ann");
    ann.send("/help");
    ann.expect_next("* commands:");
    let mut help = Vec::new();
    for _ in 0..15 {
        help.push(ann.next_line());
    }
    for command in [
        "/nick NAME",
        "/join #room",
        "/part [#room]",
        "/msg NICK text",
        "/me action",
        "/who [#room]",
        "/rooms",
        "/history [N]",
        "/encoding LABEL",
        "/json",
        "/register PASSWORD",
        "/login NICK PASSWORD",
        "/password OLD NEW",
        "/quit [reason]",
    ] {
        assert!(
            help.iter()
                .any(|l| l.starts_with(&format!("*   {command} "))),
            "{command} missing from {help:#?}"
        );
    }
    // `/?` is the same, and the session goes on.
    ann.send("/?");
    ann.expect_next("* commands:");
    ann.say("still here");
}

#[test]
fn bad_commands_get_an_error_and_the_session_goes_on() {
    let (_server, addr) = server();
    let mut ann = ChatClient::login(addr, "ann");
    let mut bob = ChatClient::login(addr, "bob");
    ann.expect("* guest2 is now known as bob");
    for (line, error) in [
        (
            "/frobnicate now",
            "unknown command /frobnicate (type /help)",
        ),
        ("/join", "usage: /join #room"),
        ("/join #a #b", "usage: /join #room"),
        (
            "/join #no!pe",
            "room '#no!pe' may use letters, digits, _ and - after the #",
        ),
        ("/part #a #b", "usage: /part [#room]"),
        ("/msg bob", "usage: /msg NICK text"),
        (
            "/history 0",
            "'0' is not a positive number; usage: /history [N]",
        ),
        (
            "/history lots",
            "'lots' is not a positive number; usage: /history [N]",
        ),
        ("/rooms please", "/rooms takes no arguments"),
        ("/json now", "/json takes no arguments"),
        ("/encoding", "usage: /encoding LABEL (utf-8, gbk, big5, …)"),
        (
            "/",
            "empty command; type /help, or //text to send a line starting with /",
        ),
    ] {
        ann.send(line);
        ann.expect_next(&format!("! error: {error}"));
    }
    // Blank lines are ignored, and the session is still fine.
    ann.send("");
    ann.send("   ");
    assert_eq!(ann.say("still fine"), "[#lobby] <ann> still fine");
    bob.expect_next("[#lobby] <ann> still fine");
}

#[test]
fn abrupt_disconnects_are_announced_and_disturb_no_one() {
    let (_server, addr) = server();
    let mut ann = ChatClient::login(addr, "ann");
    let mut bob = ChatClient::login(addr, "bob");
    ann.expect("* guest2 is now known as bob");
    for round in 0..10 {
        let nick = format!("crash{round}");
        let mut crasher = ChatClient::login(addr, &nick);
        crasher.say("about to crash");
        crasher.send_raw(b"half a line with no end");
        crasher.reset();
        // And a client that connects and leaves at once.
        drop(ChatClient::connect(addr));
        for member in [&mut ann, &mut bob] {
            member.expect(&format!("[#lobby] <{nick}> about to crash"));
            // Both departures are announced, in whichever order the server noticed them.
            let (mut crash_quit, mut guest_quit) = (None, None);
            while crash_quit.is_none() || guest_quit.is_none() {
                let line =
                    member.expect_line(|l| l.ends_with(" joined #lobby") || l.contains(" quit"));
                if line.starts_with(&format!("* {nick} quit")) {
                    crash_quit = Some(line);
                } else if line.starts_with("* guest") && line.contains(" quit") {
                    guest_quit = Some(line);
                } else {
                    assert!(line.starts_with("* guest"), "{line}");
                }
            }
            let quit = crash_quit.unwrap();
            assert!(
                quit == format!("* {nick} quit")
                    || quit == format!("* {nick} quit (connection lost)"),
                "{quit}"
            );
        }
    }
    assert_eq!(ann.say("still here"), "[#lobby] <ann> still here");
    bob.expect("[#lobby] <ann> still here");
    bob.send("/who");
    bob.expect_next("* #lobby (2): ann, bob");
}

#[test]
fn thirty_members_each_receive_every_message_once_in_order() {
    let server = chat_server(":memory:", &["--max-rate", "0"]);
    let addr = server.socket_addr();
    let mut members: Vec<ChatClient> = (0..30)
        .map(|i| ChatClient::login(addr, &format!("m{i}")))
        .collect();
    for member in &mut members[..29] {
        // The last arrival's nick change is the last thing every member hears.
        member.expect_line(|l| l.ends_with(" is now known as m29"));
    }
    // Three members send 50 messages each, all at once.
    let mut senders: Vec<_> = (0..3)
        .map(|i| {
            let mut conn = members[i].writer();
            thread::spawn(move || {
                use std::io::Write;
                let text: String = (0..50).map(|n| format!("from m{i} #{n}\n")).collect();
                conn.write_all(text.as_bytes()).unwrap();
            })
        })
        .collect();
    let readers: Vec<_> = members
        .into_iter()
        .map(|mut member| {
            thread::spawn(move || {
                let lines: Vec<String> = (0..150).map(|_| member.next_line()).collect();
                (member, lines)
            })
        })
        .collect();
    for sender in senders.drain(..) {
        sender.join().unwrap();
    }
    let results: Vec<(ChatClient, Vec<String>)> =
        readers.into_iter().map(|r| r.join().unwrap()).collect();
    let first = &results[0].1;
    for i in 0..3 {
        let mine: Vec<&String> = first
            .iter()
            .filter(|l| l.starts_with(&format!("[#lobby] <m{i}> ")))
            .collect();
        let expected: Vec<String> = (0..50)
            .map(|n| format!("[#lobby] <m{i}> from m{i} #{n}"))
            .collect();
        assert_eq!(
            mine,
            expected.iter().collect::<Vec<_>>(),
            "sender m{i}'s order"
        );
    }
    for (member, lines) in &results {
        assert_eq!(lines, first, "{} saw another order", member.nick);
    }
    // Nothing more was queued for anyone: the next line is the next message.
    let mut members: Vec<ChatClient> = results.into_iter().map(|(m, _)| m).collect();
    members[29].say("last");
    for member in &mut members[..29] {
        member.expect_next("[#lobby] <m29> last");
    }
}

#[test]
fn a_unix_socket_listener_works_alongside_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.sock");
    let mut server = chat_server(":memory:", &["--unix", path.to_str().unwrap()]);
    let addr = server.socket_addr();
    assert_eq!(
        server.next_line(),
        format!("listening on unix:{}", path.display())
    );

    let mut ann = ChatClient::login(addr, "ann");
    let mut bob = ChatClient::connect_unix(&path).welcomed();
    bob.set_nick("bob");
    ann.expect("* guest2 is now known as bob");
    assert_eq!(bob.say("over unix"), "[#lobby] <bob> over unix");
    ann.expect_next("[#lobby] <bob> over unix");
    assert_eq!(ann.say("over tcp"), "[#lobby] <ann> over tcp");
    bob.expect_next("[#lobby] <ann> over tcp");
    bob.send("/quit");
    assert_eq!(bob.read_until_closed(Duration::from_secs(5)), ["* bye"]);
    ann.expect_next("* bob quit");
}

#[test]
fn listeners_may_be_named_without_their_flags() {
    // `serve ADDR…`, as `echo ADDR` takes it: an address is --tcp, a unix: one --unix.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.sock");
    let unix = format!("unix:{}", path.display());
    let mut server = Proc::server(&["serve", "127.0.0.1:0", &unix, "--db", ":memory:"]);
    let addr = server.socket_addr();
    assert_eq!(server.next_line(), format!("listening on {unix}"));

    let mut ann = ChatClient::login(addr, "ann");
    let mut bob = ChatClient::connect_unix(&path).welcomed();
    bob.set_nick("bob");
    ann.expect("* guest2 is now known as bob");
    assert_eq!(bob.say("hello"), "[#lobby] <bob> hello");
    ann.expect_next("[#lobby] <bob> hello");

    let udp = common::fails_with(&["serve", "udp://127.0.0.1:0", "--db", ":memory:"], 2);
    assert!(udp.contains("not UDP"), "{udp}");
    let two = common::fails_with(
        &["serve", "unix:/tmp/a", "-U", "/tmp/b", "--db", ":memory:"],
        2,
    );
    assert!(two.contains("one Unix socket"), "{two}");
}

#[test]
fn half_a_line_from_a_crashed_client_is_not_posted() {
    let (_server, addr) = server();
    let mut ann = ChatClient::login(addr, "ann");
    let mut bob = ChatClient::login(addr, "bob");
    let mut crasher = ChatClient::login(addr, "crasher");
    crasher.say("about to crash");
    bob.expect("[#lobby] <crasher> about to crash");
    crasher.send_raw(b"half a line with no end");
    crasher.reset();
    bob.expect_line(|l| l.starts_with("* crasher quit"));
    ann.say("after the crash");
    let mut seen = Vec::new();
    bob.expect_line(|l| {
        seen.push(l.to_string());
        l == "[#lobby] <ann> after the crash"
    });
    assert!(
        seen.iter().all(|l| !l.contains("half a line")),
        "a reset client's unfinished line was posted: {seen:?}"
    );
}

#[test]
fn a_last_line_without_newline_before_a_clean_close_is_posted() {
    let (_server, addr) = server();
    let mut bob = ChatClient::login(addr, "bob");
    let mut ann = ChatClient::login(addr, "ann");
    bob.expect("* guest2 is now known as ann");
    ann.send_raw(b"goodbye without a newline");
    drop(ann);
    bob.expect("[#lobby] <ann> goodbye without a newline");
}

#[test]
fn what_a_member_does_takes_effect_in_the_order_it_did_it() {
    let (_server, addr) = server();
    let mut ann = ChatClient::login(addr, "ann");
    let mut bob = ChatClient::login(addr, "bob");
    ann.expect("* guest2 is now known as bob");
    bob.join("#dev");
    ann.join("#dev");
    bob.expect_next("* ann joined #dev");

    // Each batch in one write: a message is delivered once committed, later than the command
    // after it is read, and must still come first, to the room and to its sender.
    ann.send_raw(b"before parting\n/part #dev\n");
    bob.expect_next("[#dev] <ann> before parting");
    bob.expect_next("* ann left #dev");
    ann.expect_next("[#dev] <ann> before parting");
    ann.expect_next("* ann left #dev");
    ann.expect_next("* you are now talking in #lobby");

    ann.send_raw(b"under the old nick\n/nick ann2\nunder the new one\n");
    bob.expect_next("[#lobby] <ann> under the old nick");
    bob.expect_next("* ann is now known as ann2");
    bob.expect_next("[#lobby] <ann2> under the new one");

    // Leaving (a /quit, or the connection closing) waits for the last words too.
    ann.send_raw(b"last words\n/quit\n");
    bob.expect_next("[#lobby] <ann2> last words");
    bob.expect_next("* ann2 quit");
    let mut cat = ChatClient::login(addr, "cat");
    bob.expect("* guest3 is now known as cat");
    cat.send_raw(b"gone now\n");
    drop(cat);
    bob.expect_next("[#lobby] <cat> gone now");
    bob.expect_next("* cat quit");
}

#[test]
fn a_quit_reason_cannot_fake_a_server_line_or_redraw_a_terminal() {
    let (_server, addr) = server();
    let mut ann = ChatClient::login(addr, "ann");
    let mut bob = ChatClient::login(addr, "bob");
    ann.expect("* guest2 is now known as bob");
    bob.send_raw(b"/quit \x1b[2Jgone\rfake\n");
    ann.expect_next("* bob quit (\u{fffd}[2Jgone\u{fffd}fake)");

    // A JSON client's reason may hold a newline: it must not start a line of its own.
    let mut cat = ChatClient::login(addr, "cat");
    ann.expect("* guest3 is now known as cat");
    cat.json();
    cat.send_json(&serde_json::json!({"type": "quit", "reason": "bye\n! error: fake"}));
    ann.expect_next("* cat quit (bye\u{fffd}! error: fake)");
}

#[test]
fn an_error_about_a_line_comes_after_the_messages_sent_before_it() {
    // Commits that wait for the disk keep each message in flight a while.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chat.db");
    let server = chat_server(db.to_str().unwrap(), &["--db-sync", "full"]);
    let addr = server.socket_addr();
    let mut ann = ChatClient::login(addr, "ann");
    ann.send_raw(b"hello\n/mgs bob hi\n");
    ann.expect_next("[#lobby] <ann> hello");
    ann.expect_next("! error: unknown command /mgs (type /help)");

    // In JSON mode too: a program matches errors to its requests by their order.
    ann.json();
    ann.send_raw(b"{\"type\":\"say\",\"text\":\"hi\"}\n{\"type\":\"sya\"}\n");
    assert_eq!(ann.next_json()["type"], "message");
    assert_eq!(ann.next_json()["type"], "error");
}
