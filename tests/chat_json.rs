//! JSON mode (`/json`): requests and events as one JSON object per line, errors that leave the
//! session going, JSON and text members in one room, and paging history with `before`.

mod common;

use serde_json::{Value, json};

use common::{ChatClient, chat_server};

#[test]
fn requests_and_events_are_json_lines() {
    let server = chat_server(":memory:", &[]);
    let addr = server.socket_addr();
    let mut ann = ChatClient::guest(addr);
    let state = ann.json();
    assert_eq!(
        state,
        json!({"type": "state", "nick": "guest1", "room": "#lobby", "rooms": ["#lobby"]})
    );

    ann.send_json(&json!({"type": "nick", "nick": "ann"}));
    assert_eq!(
        ann.next_json(),
        json!({"type": "nick", "old": "guest1", "new": "ann"})
    );
    assert_eq!(
        ann.next_json(),
        json!({"type": "state", "nick": "ann", "room": "#lobby", "rooms": ["#lobby"]})
    );
    ann.nick = "ann".into();

    ann.send_json(&json!({"type": "say", "text": "hi there"}));
    let message = ann.next_json();
    assert_eq!(message["type"], "message");
    assert_eq!(message["kind"], "say");
    assert_eq!(message["room"], "#lobby");
    assert_eq!(message["nick"], "ann");
    assert_eq!(message["text"], "hi there");
    assert!(message["id"].as_i64().unwrap() > 0);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let ts = message["ts"].as_i64().unwrap();
    assert!((now_ms - ts).abs() < 60_000, "ts {ts} vs now {now_ms}");
    assert!(message.get("to").is_none());

    ann.send_json(&json!({"type": "me", "text": "waves"}));
    let action = ann.next_json();
    assert_eq!(
        (action["kind"].as_str(), action["text"].as_str()),
        (Some("me"), Some("waves"))
    );
    assert!(action["id"].as_i64() > message["id"].as_i64());

    // A typed line passes through as it would in text mode.
    ann.send_json(&json!({"type": "line", "text": "/join #Dev"}));
    assert_eq!(
        ann.next_json(),
        json!({"type": "join", "room": "#dev", "nick": "ann"})
    );
    assert_eq!(
        ann.next_json(),
        json!({"type": "state", "nick": "ann", "room": "#dev", "rooms": ["#lobby", "#dev"]})
    );
    ann.send_json(&json!({"type": "line", "text": "plain words"}));
    let said = ann.next_json();
    assert_eq!(
        (said["room"].as_str(), said["text"].as_str()),
        (Some("#dev"), Some("plain words"))
    );

    // A message to a room other than the current one.
    ann.send_json(&json!({"type": "say", "room": "#LOBBY", "text": "back there"}));
    let said = ann.next_json();
    assert_eq!(
        (said["room"].as_str(), said["text"].as_str()),
        (Some("#lobby"), Some("back there"))
    );

    ann.send_json(&json!({"type": "who"}));
    assert_eq!(
        ann.next_json(),
        json!({"type": "who", "room": "#dev", "nicks": ["ann"]})
    );
    ann.send_json(&json!({"type": "rooms"}));
    assert_eq!(
        ann.next_json(),
        json!({"type": "rooms", "rooms": [{"room": "#dev", "members": 1}, {"room": "#lobby", "members": 1}]})
    );
    ann.send_json(&json!({"type": "help"}));
    let help = ann.next_json();
    assert_eq!(help["type"], "info");
    assert!(help["text"].as_str().unwrap().contains("/msg NICK text"));
    ann.send_json(&json!({"type": "part", "room": "#dev"}));
    assert_eq!(
        ann.next_json(),
        json!({"type": "part", "room": "#dev", "nick": "ann"})
    );
    assert_eq!(ann.next_json()["type"], "info");
    assert_eq!(
        ann.next_json(),
        json!({"type": "state", "nick": "ann", "room": "#lobby", "rooms": ["#lobby"]})
    );

    ann.send_json(&json!({"type": "quit", "reason": "done"}));
    let rest = ann.read_until_closed(common::IO_TIMEOUT);
    let rest: Vec<Value> = rest
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rest, [json!({"type": "info", "text": "bye"})]);
}

#[test]
fn bad_requests_get_an_error_event_and_the_session_goes_on() {
    let server = chat_server(":memory:", &[]);
    let addr = server.socket_addr();
    let mut ann = ChatClient::login(addr, "ann");
    ann.json();
    for (request, expected) in [
        ("{not json", "bad JSON request"),
        ("[1, 2]", "bad JSON request"),
        (r#"{"type":"teleport"}"#, "unknown variant `teleport`"),
        (r#"{"type":"say"}"#, "missing field `text`"),
        (
            r#"{"type":"say","text":"x","colour":"red"}"#,
            "unknown field `colour`",
        ),
        (r#"{"type":"nick","nick":"1x"}"#, "must start with a letter"),
        (r##"{"type":"join","room":"#no way"}"##, "may use letters"),
        (
            r#"{"type":"private","to":"nobody","text":"hi"}"#,
            "no one called 'nobody'",
        ),
        (
            r#"{"type":"line","text":"/bogus"}"#,
            "unknown command /bogus",
        ),
        ("/who", "bad JSON request"),
    ] {
        ann.send(request);
        let event = ann.next_json();
        assert_eq!(event["type"], "error", "{request}: {event}");
        let text = event["text"].as_str().unwrap();
        assert!(text.contains(expected), "{request}: {text}");
    }
    // Invalid UTF-8 is replaced before parsing, so it is bad JSON at worst, never fatal.
    ann.send_raw(b"{\"type\":\"say\",\"text\":\"caf\xe9\"}\n");
    let event = ann.next_json();
    assert_eq!(event["text"], "caf\u{fffd}");
    // Blank lines and empty messages are ignored.
    ann.send("");
    ann.send_json(&json!({"type": "say", "text": "   "}));
    ann.send_json(&json!({"type": "say", "text": "still here"}));
    assert_eq!(ann.next_json()["text"], "still here");
}

#[test]
fn json_and_text_members_share_a_room() {
    let server = chat_server(":memory:", &[]);
    let addr = server.socket_addr();
    let mut ann = ChatClient::login(addr, "ann");
    ann.json();
    let mut bob = ChatClient::login(addr, "bob");
    let joined = ann.next_json();
    assert_eq!(
        joined,
        json!({"type": "join", "room": "#lobby", "nick": "guest2"})
    );
    assert_eq!(
        ann.next_json(),
        json!({"type": "nick", "old": "guest2", "new": "bob"})
    );

    bob.say("hello json");
    let heard = ann.next_json();
    assert_eq!(heard["type"], "message");
    assert_eq!(heard["nick"], "bob");
    assert_eq!(heard["text"], "hello json");

    ann.send_json(&json!({"type": "say", "text": "hello text \"quoted\" ✓"}));
    assert_eq!(ann.next_json()["text"], "hello text \"quoted\" ✓");
    bob.expect_next("[#lobby] <ann> hello text \"quoted\" ✓");

    // Private messages both ways.
    ann.send_json(&json!({"type": "private", "to": "bob", "text": "psst"}));
    let sent = ann.next_json();
    assert_eq!(sent["type"], "private");
    assert_eq!(sent["kind"], "private");
    assert_eq!(sent["nick"], "ann");
    assert_eq!(sent["to"], "bob");
    assert!(sent.get("room").is_none());
    bob.expect_next("[pm] <ann> psst");
    bob.send("/msg ann back at you");
    bob.expect_next("[pm to ann] <bob> back at you");
    let got = ann.next_json();
    assert_eq!(
        (
            got["type"].as_str(),
            got["nick"].as_str(),
            got["to"].as_str(),
            got["text"].as_str()
        ),
        (
            Some("private"),
            Some("bob"),
            Some("ann"),
            Some("back at you")
        )
    );

    bob.send("/quit see you");
    bob.read_until_closed(common::IO_TIMEOUT);
    assert_eq!(
        ann.next_json(),
        json!({"type": "quit", "nick": "bob", "reason": "see you"})
    );
}

#[test]
fn history_pages_back_with_before() {
    let server = chat_server(":memory:", &[]);
    let addr = server.socket_addr();
    let mut ann = ChatClient::login(addr, "ann");
    ann.json();
    let mut ids = Vec::new();
    for n in 1..=10 {
        ann.send_json(&json!({"type": "say", "text": format!("m{n}")}));
        let message = ann.next_json();
        assert_eq!(message["text"], format!("m{n}"));
        ids.push(message["id"].as_i64().unwrap());
    }
    let texts = |event: &Value| -> Vec<String> {
        assert_eq!(event["type"], "history", "{event}");
        assert_eq!(event["room"], "#lobby", "{event}");
        event["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap().to_string())
            .collect()
    };

    ann.send_json(&json!({"type": "history", "limit": 2}));
    let page = ann.next_json();
    assert_eq!(texts(&page), ["m9", "m10"]);
    assert_eq!(page["messages"][0]["id"], ids[8]);
    assert_eq!(page["messages"][0]["kind"], "say");
    assert_eq!(page["messages"][0]["nick"], "ann");

    ann.send_json(&json!({"type": "history", "limit": 3, "before": ids[8]}));
    assert_eq!(texts(&ann.next_json()), ["m6", "m7", "m8"]);
    ann.send_json(&json!({"type": "history", "limit": 100, "before": ids[2]}));
    assert_eq!(texts(&ann.next_json()), ["m1", "m2"]);
    ann.send_json(&json!({"type": "history", "before": ids[0]}));
    assert_eq!(texts(&ann.next_json()), Vec::<String>::new());
    // The server's default (--history, 20) when no limit is given.
    ann.send_json(&json!({"type": "history"}));
    assert_eq!(texts(&ann.next_json()).len(), 10);

    // Only rooms one is in.
    ann.send_json(&json!({"type": "history", "room": "#elsewhere"}));
    let refused = ann.next_json();
    assert_eq!(refused["type"], "error");
    assert_eq!(
        refused["text"],
        "you are not in #elsewhere; /join #elsewhere first"
    );
}

#[test]
fn json_is_utf8_whatever_the_connection_s_encoding() {
    // A gbk server: its text members speak gbk, its JSON members utf-8 all the same.
    let server = chat_server(":memory:", &["--encoding", "gbk"]);
    let addr = server.socket_addr();
    let mut ann = ChatClient::login(addr, "ann");
    ann.json();
    let mut bob = ChatClient::login(addr, "bob");
    ann.next_json();
    ann.next_json();

    ann.send_json(&json!({"type": "say", "text": "hello 中文 ✓"}));
    assert_eq!(ann.next_json()["text"], "hello 中文 ✓");
    // bob reads gbk, where ✓ has no form and becomes '?'.
    let heard = bob.next_raw();
    assert_eq!(
        heard,
        [
            &b"[#lobby] <ann> hello "[..],
            &[0xd6, 0xd0, 0xce, 0xc4],
            b" ?"
        ]
        .concat()
    );
    // Switching the text encoding in JSON mode changes nothing for JSON.
    ann.send_json(&json!({"type": "line", "text": "/encoding big5"}));
    ann.next_json();
    ann.send_json(&json!({"type": "say", "text": "仍然"}));
    assert_eq!(ann.next_json()["text"], "仍然");
}
