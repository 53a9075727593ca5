//! The web chat's WebSocket (`/ws`) and page (`/`), spoken to by a real WebSocket client
//! (tokio-tungstenite) beside plain TCP members: JSON events one per text frame, rooms and
//! private messages across both kinds of member, errors that leave the session going, the
//! limits (longest message, slow readers, `--max-conns`), the Origin check, the page's
//! security headers, and a gbk `nc` user talking with a browser.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream as AsyncTcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use common::{ChatClient, IO_TIMEOUT, WebServer};

type Stream = WebSocketStream<MaybeTlsStream<AsyncTcpStream>>;

/// A WebSocket chat member: JSON requests out, JSON events in, one per text frame.
struct Ws {
    stream: Stream,
    nick: String,
}

impl Ws {
    /// Connects and reads the welcome, learning the guest nick.
    async fn connect(server: &WebServer) -> Ws {
        let (stream, _) = tokio::time::timeout(
            IO_TIMEOUT,
            tokio_tungstenite::connect_async(server.ws_url()),
        )
        .await
        .expect("connect in time")
        .expect("websocket handshake");
        Ws::welcomed(stream).await
    }

    /// Reads the welcome and this guest's own arrival in #lobby.
    async fn welcomed(stream: Stream) -> Ws {
        let mut ws = Ws {
            stream,
            nick: String::new(),
        };
        let welcome = ws.next_json().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        assert_eq!(welcome["room"], "#lobby", "{welcome}");
        ws.nick = welcome["nick"].as_str().expect("a nick").to_string();
        let nick = ws.nick.clone();
        ws.expect_json(|e| e["type"] == "state" && e["nick"] == nick.as_str())
            .await;
        ws
    }

    /// Connects and takes `nick`.
    async fn login(server: &WebServer, nick: &str) -> Ws {
        let mut ws = Ws::connect(server).await;
        ws.set_nick(nick).await;
        ws
    }

    async fn set_nick(&mut self, nick: &str) {
        self.send_json(json!({"type": "nick", "nick": nick})).await;
        let old = self.nick.clone();
        self.expect_json(|e| e["type"] == "nick" && e["old"] == old.as_str() && e["new"] == nick)
            .await;
        // Then the new state, so that the next event read is whatever comes after.
        self.expect_json(|e| e["type"] == "state" && e["nick"] == nick)
            .await;
        self.nick = nick.to_string();
    }

    async fn send(&mut self, message: Message) {
        tokio::time::timeout(IO_TIMEOUT, self.stream.send(message))
            .await
            .expect("send in time")
            .expect("send");
    }

    async fn send_json(&mut self, request: Value) {
        self.send(Message::text(request.to_string())).await;
    }

    /// The next frame but the server's pings (which the library answers) within
    /// [`IO_TIMEOUT`]: `None` when the connection ended (a close frame, EOF or a reset).
    async fn next_frame(&mut self) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .unwrap_or_else(|_| panic!("{}: nothing within {IO_TIMEOUT:?}", self.nick));
            match next {
                Some(Ok(Message::Ping(_))) => {}
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(message)) => return Some(message),
            }
        }
    }

    /// The next event: one JSON object in one text frame.
    async fn next_json(&mut self) -> Value {
        match self.next_frame().await {
            Some(Message::Text(text)) => {
                assert!(!text.contains('\n'), "one event per frame: {text:?}");
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
            }
            other => panic!("{}: expected a text frame, got {other:?}", self.nick),
        }
    }

    /// Reads events until one satisfies `wanted`; fails within [`IO_TIMEOUT`] otherwise.
    async fn expect_json(&mut self, mut wanted: impl FnMut(&Value) -> bool) -> Value {
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            let event = self.next_json().await;
            if wanted(&event) {
                return event;
            }
            seen.push(event);
        }
        panic!(
            "{}: the expected event did not come; got {seen:#?}",
            self.nick
        );
    }

    /// Reads events until a room message or private message arrives, and returns it.
    async fn next_message(&mut self) -> Value {
        self.expect_json(|e| e["type"] == "message" || e["type"] == "private")
            .await
    }

    /// Says `text` in `room` and waits for it to come back (stored and fanned out).
    async fn say(&mut self, room: &str, text: &str) -> Value {
        self.send_json(json!({"type": "say", "room": room, "text": text}))
            .await;
        let nick = self.nick.clone();
        self.expect_json(|e| {
            e["type"] == "message" && e["nick"] == nick.as_str() && e["text"] == text
        })
        .await
    }

    async fn join(&mut self, room: &str) {
        self.send_json(json!({"type": "join", "room": room})).await;
        let nick = self.nick.clone();
        self.expect_json(|e| {
            e["type"] == "join" && e["room"] == room && e["nick"] == nick.as_str()
        })
        .await;
    }

    /// Reads until the server's close frame, within [`IO_TIMEOUT`]: its code and reason
    /// (`None` if the connection ended without one). Pings are answered by the library.
    async fn close_frame(&mut self) -> Option<(u16, String)> {
        let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .unwrap_or_else(|_| panic!("{}: no close within {IO_TIMEOUT:?}", self.nick));
            match next {
                Some(Ok(Message::Close(frame))) => {
                    return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                }
                None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    /// Reads until the server ends the connection, within [`IO_TIMEOUT`]; returns the events
    /// read before the end.
    async fn read_until_closed(&mut self) -> Vec<Value> {
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut events = Vec::new();
        while Instant::now() < deadline {
            match self.next_frame().await {
                None => return events,
                Some(Message::Text(text)) => events.push(serde_json::from_str(&text).unwrap()),
                Some(_) => {}
            }
        }
        panic!("{}: still open after {IO_TIMEOUT:?}", self.nick);
    }
}

fn is_message(event: &Value, nick: &str, text: &str) -> bool {
    event["type"] == "message" && event["nick"] == nick && event["text"] == text
}

#[tokio::test]
async fn a_websocket_client_is_a_json_guest_in_the_lobby() {
    let server = WebServer::start(&[]);
    let (mut stream, response) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .expect("handshake");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    let mut ws = Ws {
        stream: {
            // The first frames, each one JSON event.
            let mut first = Vec::new();
            for _ in 0..3 {
                let frame = tokio::time::timeout(IO_TIMEOUT, stream.next())
                    .await
                    .expect("a frame in time")
                    .expect("open")
                    .expect("a frame");
                let Message::Text(text) = frame else {
                    panic!("not a text frame: {frame:?}");
                };
                first.push(serde_json::from_str::<Value>(&text).expect("JSON"));
            }
            let welcome = &first[0];
            assert_eq!(welcome["type"], "welcome");
            assert_eq!(welcome["nick"], "guest1");
            assert_eq!(welcome["room"], "#lobby");
            assert_eq!(welcome["version"], env!("CARGO_PKG_VERSION"));
            // So that a client can refuse a message too long before sending it.
            assert_eq!(welcome["max_line"], 8192);
            // No message yet: a page that saw ids from before a restart knows they are gone.
            assert_eq!(welcome["last_id"], 0);
            assert_eq!(
                first[1],
                json!({"type": "join", "room": "#lobby", "nick": "guest1"})
            );
            assert_eq!(
                first[2],
                json!({"type": "state", "nick": "guest1", "room": "#lobby", "rooms": ["#lobby"]})
            );
            stream
        },
        nick: "guest1".into(),
    };

    // Requests as JSON text frames; each answer is one event.
    ws.send_json(json!({"type": "say", "text": "hello from a browser"}))
        .await;
    let message = ws.next_json().await;
    assert_eq!(message["type"], "message");
    assert_eq!(message["kind"], "say");
    assert_eq!(message["room"], "#lobby");
    assert_eq!(message["nick"], "guest1");
    assert_eq!(message["text"], "hello from a browser");
    assert!(message["id"].as_i64().unwrap() > 0);
    ws.send_json(json!({"type": "who"})).await;
    assert_eq!(
        ws.next_json().await,
        json!({"type": "who", "room": "#lobby", "nicks": ["guest1"]})
    );
    // A typed line passes through as in JSON mode over TCP.
    ws.send_json(json!({"type": "line", "text": "/join #dev"}))
        .await;
    assert_eq!(
        ws.next_json().await,
        json!({"type": "join", "room": "#dev", "nick": "guest1"})
    );
    assert_eq!(
        ws.next_json().await,
        json!({"type": "state", "nick": "guest1", "room": "#dev", "rooms": ["#lobby", "#dev"]})
    );
    // The web connection's encoding is fixed.
    ws.send_json(json!({"type": "line", "text": "/encoding gbk"}))
        .await;
    let refused = ws.next_json().await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["text"], "a web connection is always utf-8");

    ws.send_json(json!({"type": "quit", "reason": "done"}))
        .await;
    let rest = ws.read_until_closed().await;
    assert_eq!(rest, [json!({"type": "info", "text": "bye"})]);
}

#[tokio::test]
async fn websocket_and_tcp_members_talk_in_one_room() {
    let server = WebServer::start(&[]);
    let mut ann = Ws::login(&server, "ann").await;
    let mut bob = Ws::login(&server, "bob").await;
    let mut carl = ChatClient::login(server.tcp, "carl");
    ann.join("#dev").await;
    bob.join("#dev").await;
    carl.join("#dev");
    ann.expect_json(|e| e["type"] == "join" && e["room"] == "#dev" && e["nick"] == "carl")
        .await;
    bob.expect_json(|e| e["type"] == "join" && e["room"] == "#dev" && e["nick"] == "carl")
        .await;

    // Browser → browser and nc.
    let sent = ann.say("#dev", "hi from ann <b>").await;
    assert_eq!(sent["room"], "#dev");
    let heard = bob.next_message().await;
    assert!(is_message(&heard, "ann", "hi from ann <b>"), "{heard}");
    assert_eq!(heard["room"], "#dev");
    assert_eq!(heard["id"], sent["id"]);
    carl.expect("[#dev] <ann> hi from ann <b>");

    // nc → both browsers.
    carl.say("hi from carl ✓");
    let heard = ann.next_message().await;
    assert!(is_message(&heard, "carl", "hi from carl ✓"), "{heard}");
    assert_eq!(heard["room"], "#dev");
    assert!(is_message(
        &bob.next_message().await,
        "carl",
        "hi from carl ✓"
    ));

    // The other browser → both.
    bob.say("#dev", "and bob").await;
    assert!(is_message(&ann.next_message().await, "bob", "and bob"));
    carl.expect("[#dev] <bob> and bob");

    // An action, and a room message elsewhere that #dev-only members don't get.
    bob.send_json(json!({"type": "me", "room": "#dev", "text": "waves"}))
        .await;
    let action = ann.next_message().await;
    assert_eq!(
        (action["kind"].as_str(), action["nick"].as_str()),
        (Some("me"), Some("bob"))
    );
    carl.expect("[#dev] * bob waves");
}

#[tokio::test]
async fn private_messages_reach_only_their_target() {
    let server = WebServer::start(&[]);
    let mut ann = Ws::login(&server, "ann").await;
    let mut bob = Ws::login(&server, "bob").await;
    let mut dave = Ws::login(&server, "dave").await;
    let mut carl = ChatClient::login(server.tcp, "carl");
    for ws in [&mut ann, &mut bob, &mut dave] {
        ws.expect_json(|e| e["type"] == "nick" && e["new"] == "carl")
            .await;
    }

    // Each member's events arrive in order, so "the next room or private message is the
    // public marker said afterwards" proves that no private message reached them before it.
    async fn marker(dave: &mut Ws, text: &str) {
        dave.send_json(json!({"type": "say", "text": text})).await;
        let next = dave.next_message().await;
        assert!(is_message(&next, "dave", text), "dave saw {next}");
    }

    // Browser → browser.
    ann.send_json(json!({"type": "private", "to": "bob", "text": "psst bob"}))
        .await;
    let confirmed = ann.next_message().await;
    assert_eq!(
        (confirmed["type"].as_str(), confirmed["to"].as_str()),
        (Some("private"), Some("bob"))
    );
    let got = bob.next_message().await;
    assert_eq!(
        (
            got["type"].as_str(),
            got["nick"].as_str(),
            got["to"].as_str(),
            got["text"].as_str()
        ),
        (Some("private"), Some("ann"), Some("bob"), Some("psst bob"))
    );
    assert!(got.get("room").is_none());
    marker(&mut dave, "marker 1").await;
    assert_eq!(
        carl.expect_line(|l| l.starts_with('[')),
        "[#lobby] <dave> marker 1"
    );
    assert!(is_message(&bob.next_message().await, "dave", "marker 1"));
    assert!(is_message(&ann.next_message().await, "dave", "marker 1"));

    // nc → browser, and browser → nc.
    carl.send("/msg bob from carl");
    assert_eq!(
        carl.expect_line(|l| l.starts_with('[')),
        "[pm to bob] <carl> from carl"
    );
    let got = bob.next_message().await;
    assert_eq!(
        (
            got["type"].as_str(),
            got["nick"].as_str(),
            got["text"].as_str()
        ),
        (Some("private"), Some("carl"), Some("from carl"))
    );
    bob.send_json(json!({"type": "msg", "to": "CARL", "text": "back to carl"}))
        .await;
    let confirmed = bob.next_message().await;
    assert_eq!(
        (confirmed["to"].as_str(), confirmed["text"].as_str()),
        (Some("carl"), Some("back to carl"))
    );
    assert_eq!(
        carl.expect_line(|l| l.starts_with('[')),
        "[pm] <bob> back to carl"
    );
    marker(&mut dave, "marker 2").await;
    assert!(is_message(&ann.next_message().await, "dave", "marker 2"));
    assert!(is_message(&bob.next_message().await, "dave", "marker 2"));
    assert_eq!(
        carl.expect_line(|l| l.starts_with('[')),
        "[#lobby] <dave> marker 2"
    );
}

#[tokio::test]
async fn bad_json_and_binary_frames_get_an_error_and_the_session_goes_on() {
    let server = WebServer::start(&[]);
    let mut ann = Ws::login(&server, "ann").await;
    for (request, expected) in [
        ("{not json", "bad JSON request"),
        (r#"{"type":"teleport"}"#, "unknown variant `teleport`"),
        (r#"{"type":"say"}"#, "missing field `text`"),
        (r#"{"type":"say","text":"x","colour":1}"#, "unknown field"),
        (
            r#"{"type":"nick","nick":"9lives"}"#,
            "must start with a letter",
        ),
        ("/who", "bad JSON request"),
    ] {
        ann.send(Message::text(request)).await;
        let event = ann.next_json().await;
        assert_eq!(event["type"], "error", "{request}: {event}");
        let text = event["text"].as_str().unwrap();
        assert!(text.contains(expected), "{request}: {text}");
    }

    ann.send(Message::binary(
        b"{\"type\":\"say\",\"text\":\"x\"}".to_vec(),
    ))
    .await;
    assert_eq!(
        ann.next_json().await,
        json!({"type": "error", "text": "send JSON text frames, not binary"})
    );
    // Pings are answered by the WebSocket layer, not the chat.
    ann.send(Message::Ping(b"are you there".to_vec().into()))
        .await;
    match ann.next_frame().await {
        Some(Message::Pong(payload)) => assert_eq!(&payload[..], b"are you there"),
        other => panic!("expected a pong, got {other:?}"),
    }

    let said = ann.say("#lobby", "still here").await;
    assert_eq!(said["room"], "#lobby");
}

/// An error about a request comes after the messages sent before it, as on TCP: a client can
/// tell which request it was about by its place.
#[tokio::test]
async fn an_error_comes_after_the_messages_sent_before_it() {
    let server = WebServer::start(&[]);
    let mut ann = Ws::login(&server, "ann").await;
    for i in 0..5 {
        ann.send_json(json!({"type": "say", "room": "#lobby", "text": format!("m{i}")}))
            .await;
    }
    ann.send(Message::text("{not json")).await;
    ann.send(Message::binary(b"x".to_vec())).await;
    let mut order = Vec::new();
    while order.len() < 7 {
        let event = ann.next_json().await;
        match event["type"].as_str() {
            Some("message") => order.push(event["text"].as_str().unwrap().to_string()),
            Some("error") => order.push("error".to_string()),
            _ => {}
        }
    }
    assert_eq!(order, ["m0", "m1", "m2", "m3", "m4", "error", "error"]);
}

#[tokio::test]
async fn binary_frames_count_against_the_rate_like_any_message() {
    let server = WebServer::start(&["--max-rate", "10", "--burst", "2"]);
    let mut ann = Ws::login(&server, "ann").await;
    for _ in 0..12 {
        ann.send(Message::binary(b"\x00\x01".to_vec())).await;
    }
    let warning = ann.expect_json(|e| e["type"] == "warning").await;
    assert!(
        warning["text"]
            .as_str()
            .unwrap()
            .starts_with("slow down: at most 10 messages per second"),
        "{warning}"
    );
    // Nothing is lost: every binary frame gets its error, and the session goes on.
    let mut errors = 0;
    let said = ann.nick.clone();
    ann.send_json(json!({"type": "say", "text": "after the binary ones"}))
        .await;
    ann.expect_json(|e| {
        errors += usize::from(e["type"] == "error");
        e["type"] == "message" && e["nick"] == said.as_str()
    })
    .await;
    assert!(errors >= 10, "{errors} errors after the warning");
}

#[tokio::test]
async fn an_oversized_message_is_refused_and_a_huge_one_closes_only_that_websocket() {
    let server = WebServer::start(&["--max-line", "256"]);
    let mut ann = Ws::login(&server, "ann").await;
    let mut bob = Ws::login(&server, "bob").await;
    let mut carl = ChatClient::login(server.tcp, "carl");
    ann.expect_json(|e| e["type"] == "nick" && e["new"] == "carl")
        .await;

    // Under the limit is fine.
    let fits = "x".repeat(200);
    ann.say("#lobby", &fits).await;
    assert_eq!(bob.next_message().await["text"], fits.as_str());

    // Over it: refused with an error, as a long line on TCP is, and the session goes on.
    ann.send_json(json!({"type": "say", "text": "z".repeat(300)}))
        .await;
    assert_eq!(
        ann.next_json().await,
        json!({"type": "error", "text": "message longer than 256 bytes (--max-line); it was discarded"})
    );
    let said = ann.say("#lobby", "after the long one").await;
    assert_eq!(said["text"], "after the long one");
    assert!(is_message(
        &bob.next_message().await,
        "ann",
        "after the long one"
    ));

    // Far over it (more than four times): the connection is closed. (The close frame says why,
    // but may be lost: the rest of the message is never read, so the close can be a reset.)
    ann.send_json(json!({"type": "say", "text": "y".repeat(1100)}))
        .await;
    let rest = ann.read_until_closed().await;
    assert!(
        rest.iter().all(|e| e["type"] != "message"),
        "the oversized message was delivered: {rest:?}"
    );
    let quit = bob.expect_json(|e| e["type"] == "quit").await;
    assert_eq!(quit["nick"], "ann");
    carl.expect_line(|l| l.starts_with("* ann quit"));

    // The others carry on.
    bob.say("#lobby", "still talking").await;
    carl.expect("[#lobby] <bob> still talking");
    carl.say("me too");
    assert!(is_message(&bob.next_message().await, "carl", "me too"));
}

#[tokio::test]
async fn text_that_is_not_utf8_closes_that_websocket_with_code_1007() {
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};

    let server = WebServer::start(&[]);
    let mut ann = Ws::login(&server, "ann").await;
    let mut bob = Ws::login(&server, "bob").await;
    ann.expect_json(|e| e["type"] == "nick" && e["new"] == "bob")
        .await;
    let frame = Frame::message(&b"\xff\xfe"[..], OpCode::Data(Data::Text), true);
    ann.send(Message::Frame(frame)).await;
    // RFC 6455: "invalid frame payload data", not a policy violation.
    let close = loop {
        match tokio::time::timeout(IO_TIMEOUT, ann.stream.next()).await {
            Ok(Some(Ok(Message::Close(close)))) => break close,
            Ok(Some(Ok(_))) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    let Some(CloseFrame { code, reason }) = close else {
        panic!("a close frame without a code");
    };
    assert_eq!(code, CloseCode::Invalid, "{reason}");
    assert!(reason.contains("UTF-8"), "{reason}");

    assert_eq!(
        bob.expect_json(|e| e["type"] == "quit").await["nick"],
        "ann"
    );
    bob.say("#lobby", "still here").await;
}

#[tokio::test]
async fn a_websocket_that_answers_no_ping_is_closed_and_its_nick_freed() {
    let server = WebServer::start(&["--ws-ping", "0.3"]);
    // ann's laptop goes to sleep: her connection stays open but nothing answers on it (a
    // WebSocket client that is not read answers no ping).
    let ann = Ws::login(&server, "ann").await;
    let mut bob = Ws::login(&server, "bob").await;
    let mut carl = ChatClient::login(server.tcp, "carl");

    // bob, reading all along, answers each ping and stays; ann is closed within two intervals.
    let quit = bob
        .expect_json(|e| e["type"] == "quit" && e["nick"] == "ann")
        .await;
    assert_eq!(quit["reason"], "no answer to ping");
    carl.expect("* ann quit (no answer to ping)");
    bob.say("#lobby", "still here").await;
    carl.expect("[#lobby] <bob> still here");
    // Her nick is free for her page's new connection.
    let mut back = Ws::login(&server, "ann").await;
    back.say("#lobby", "back").await;
    // When her laptop wakes, her old connection reads why it was closed: 1001, going away.
    let mut ann = ann;
    assert_eq!(
        ann.close_frame().await,
        Some((1001, "no answer to ping".to_string()))
    );
}

/// The close frame says why the server ended a session: 1000 for /quit and for idleness,
/// 1001 (going away) at shutdown, and the client answering it ends the connection cleanly.
#[tokio::test]
async fn websockets_are_closed_with_a_code_that_says_why() {
    let server = WebServer::start(&["--idle-timeout", "1"]);
    let mut ann = Ws::login(&server, "ann").await;
    ann.send_json(json!({"type": "quit"})).await;
    assert_eq!(ann.close_frame().await, Some((1000, "bye".to_string())));

    let mut idle = Ws::connect(&server).await;
    assert_eq!(
        idle.close_frame().await,
        Some((1000, "idle for 1s (--idle-timeout)".to_string()))
    );

    let mut server = WebServer::start(&[]);
    let mut bob = Ws::login(&server, "bob").await;
    let mut carl = Ws::login(&server, "carl").await;
    server.proc.signal("TERM");
    assert_eq!(
        bob.close_frame().await,
        Some((1001, "server shutting down".to_string()))
    );
    assert_eq!(
        carl.close_frame().await,
        Some((1001, "server shutting down".to_string()))
    );
    assert!(server.proc.wait_exit(IO_TIMEOUT).success());
}

#[tokio::test]
async fn a_websocket_held_back_under_the_rate_is_not_taken_for_silent() {
    // One message every 2 s, pings every 0.3 s: while held back, the server reads nothing,
    // pongs included.
    let server = WebServer::start(&["--ws-ping", "0.3", "--max-rate", "0.5", "--burst", "1"]);
    let mut ann = Ws::login(&server, "ann").await;
    ann.say("#lobby", "one").await;
    ann.say("#lobby", "two").await;
}

/// A WebSocket whose socket has a small receive buffer (so a client that stops reading is
/// noticed after a few hundred kilobytes, not the tens of megabytes loopback may buffer).
async fn small_buffer_ws(server: &WebServer) -> Stream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket
        .connect_timeout(&server.http.into(), IO_TIMEOUT)
        .unwrap();
    socket.set_nonblocking(true).unwrap();
    let tcp = AsyncTcpStream::from_std(socket.into()).unwrap();
    let (stream, _) = tokio::time::timeout(
        IO_TIMEOUT,
        tokio_tungstenite::client_async(server.ws_url(), MaybeTlsStream::Plain(tcp)),
    )
    .await
    .expect("handshake in time")
    .expect("handshake");
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_that_stops_reading_is_disconnected_and_the_room_goes_on() {
    // Three connections at most: a client cut off must also give its slot back.
    let server = WebServer::start(&["--max-rate", "0", "--outbox", "128", "--max-conns", "3"]);
    let mut slow = Ws::welcomed(small_buffer_ws(&server).await).await;
    slow.set_nick("slow").await;
    let mut bob = Ws::login(&server, "bob").await;
    let mut carl = ChatClient::login(server.tcp, "carl");
    bob.expect_json(|e| e["type"] == "nick" && e["new"] == "carl")
        .await;
    // From here on `slow` reads nothing.

    // bob and carl read everything, counting carl's flood; carl's sender stays at most WINDOW
    // messages ahead of both, so only the member that does not read falls behind.
    const WINDOW: usize = 16;
    const MOST: usize = 20_000;
    let text = "z".repeat(4000);
    let bob_got = Arc::new(AtomicUsize::new(0));
    let carl_got = Arc::new(AtomicUsize::new(0));
    let slow_gone = Arc::new(AtomicBool::new(false));

    let bob_reader = {
        let (got, gone, text) = (bob_got.clone(), slow_gone.clone(), text.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut quit = None;
            while Instant::now() < deadline {
                let event = bob.next_json().await;
                if is_message(&event, "carl", &text) {
                    got.fetch_add(1, Ordering::SeqCst);
                } else if event["type"] == "quit" {
                    quit = Some(event);
                    gone.store(true, Ordering::SeqCst);
                    break;
                }
            }
            (bob, quit)
        })
    };
    let mut carl_writer = carl.writer();
    let sender = {
        let (bob_got, carl_got, gone, text) = (
            bob_got.clone(),
            carl_got.clone(),
            slow_gone.clone(),
            text.clone(),
        );
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut sent = 0;
            while sent < MOST && !gone.load(Ordering::SeqCst) {
                while sent
                    >= WINDOW
                        + bob_got
                            .load(Ordering::SeqCst)
                            .min(carl_got.load(Ordering::SeqCst))
                {
                    assert!(
                        Instant::now() < deadline,
                        "bob or carl stopped hearing carl"
                    );
                    std::thread::sleep(Duration::from_millis(1));
                    if gone.load(Ordering::SeqCst) {
                        return sent;
                    }
                }
                writeln!(carl_writer, "{text}").expect("carl writes");
                sent += 1;
            }
            sent
        })
    };
    // carl reads his own echoes (and, last, the quit) on this thread.
    let mine = format!("[#lobby] <carl> {text}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let quit_line = loop {
        assert!(Instant::now() < deadline, "slow was never disconnected");
        let line = carl.next_line();
        if line == mine {
            carl_got.fetch_add(1, Ordering::SeqCst);
        } else if line.starts_with("* slow quit") {
            break line;
        }
    };
    let sent = sender.join().expect("sender");
    assert!(
        sent < MOST,
        "slow was not disconnected after {sent} messages"
    );
    assert_eq!(
        quit_line,
        "* slow quit (disconnected for not reading: 128 lines were waiting)"
    );
    let (mut bob, quit) = tokio::time::timeout(Duration::from_secs(70), bob_reader)
        .await
        .expect("bob's reader ends")
        .expect("bob's reader");
    let quit = quit.expect("bob saw slow quit");
    assert_eq!(quit["nick"], "slow");
    assert_eq!(
        quit["reason"],
        "disconnected for not reading: 128 lines were waiting"
    );

    // The room goes on: bob and carl still talk (after whatever of the flood is left).
    bob.say("#lobby", "after the flood").await;
    carl.expect("[#lobby] <bob> after the flood");

    // The slow client's connection is really closed, so its --max-conns slot is free again:
    // a third connection gets in (the server may need a moment to notice).
    let deadline = Instant::now() + IO_TIMEOUT;
    let newcomer = loop {
        match tokio_tungstenite::connect_async(server.ws_url()).await {
            Ok((stream, _)) => break Ws::welcomed(stream).await,
            Err(WsError::Http(response)) => {
                assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
                assert!(
                    Instant::now() < deadline,
                    "the slow client's slot was never freed"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(err) => panic!("connect: {err}"),
        }
    };
    assert!(newcomer.nick.starts_with("guest"));
    // What the slow client finds when it finally reads: what was on its way when it was cut
    // off, not the rest of the flood, then the end of the connection.
    let rest = slow.read_until_closed().await;
    let heard = rest.iter().filter(|e| is_message(e, "carl", &text)).count();
    assert!(heard < sent, "slow got all {sent} messages");
}

/// The most lines [`flood_lobby`] sends.
const FLOOD_MOST: usize = 50_000;

/// `carl` floods #lobby with 4,000-byte lines from a thread of his own, at most 16 lines ahead
/// of what he has read back (the counter returned, which his reader advances), until `gone` or
/// [`FLOOD_MOST`] lines; the thread returns how many it sent. Also returns the line's text.
fn flood_lobby(
    carl: &ChatClient,
    gone: Arc<AtomicBool>,
) -> (std::thread::JoinHandle<usize>, Arc<AtomicUsize>, String) {
    const WINDOW: usize = 16;
    let text = "z".repeat(4000);
    let carl_got = Arc::new(AtomicUsize::new(0));
    let mut carl_writer = carl.writer();
    let sender = {
        let (got, text) = (carl_got.clone(), text.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut sent = 0;
            while sent < FLOOD_MOST && !gone.load(Ordering::SeqCst) {
                if sent >= WINDOW + got.load(Ordering::SeqCst) {
                    assert!(Instant::now() < deadline, "carl stopped hearing himself");
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                writeln!(carl_writer, "{text}").expect("carl writes");
                sent += 1;
            }
            sent
        })
    };
    (sender, carl_got, text)
}

/// A WebSocket cut off for not reading (`--outbox`) is told so in its close frame, 1008
/// (policy violation) with the reason, when it reads again (within `CLOSE_TIMEOUT` of being cut
/// off); the server and the others carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_cut_off_for_not_reading_gets_close_code_1008() {
    let server = WebServer::start(&["--max-rate", "0", "--outbox", "64"]);
    let mut slow = Ws::welcomed(small_buffer_ws(&server).await).await;
    slow.set_nick("slow").await;
    let mut carl = ChatClient::login(server.tcp, "carl");
    // From here on `slow` reads nothing, until it has been cut off.

    // carl floods #lobby, so that only the member that does not read falls behind.
    let slow_gone = Arc::new(AtomicBool::new(false));
    let (sender, carl_got, text) = flood_lobby(&carl, slow_gone.clone());
    let reader = {
        let (got, gone) = (carl_got.clone(), slow_gone.clone());
        let mine = format!("[#lobby] <carl> {text}");
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                assert!(Instant::now() < deadline, "slow was never cut off");
                let line = carl.next_line();
                if line == mine {
                    got.fetch_add(1, Ordering::SeqCst);
                } else if line.starts_with("* slow quit") {
                    gone.store(true, Ordering::SeqCst);
                    return (carl, line);
                }
            }
        })
    };
    let (mut carl, quit) = tokio::task::spawn_blocking(move || reader.join())
        .await
        .expect("the reader's task")
        .expect("carl's reader");
    assert_eq!(
        quit,
        "* slow quit (disconnected for not reading: 64 lines were waiting)"
    );
    // slow reads again at once: what was on its way, then the close frame saying why.
    assert_eq!(
        slow.close_frame().await,
        Some((1008, "disconnected for not reading (--outbox)".to_string()))
    );
    let sent = sender.join().expect("carl's sender");
    assert!(
        sent < FLOOD_MOST,
        "slow was not cut off after {sent} messages"
    );

    // The server and the others carry on: carl still hears and is heard, and a new member
    // (a WebSocket, as slow was) joins in.
    let mut bob = Ws::login(&server, "bob").await;
    carl.expect("* guest3 is now known as bob");
    bob.say("#lobby", "after the flood").await;
    carl.expect("[#lobby] <bob> after the flood");
    writeln!(carl.writer(), "welcome back").expect("carl writes");
    assert!(is_message(
        &bob.next_message().await,
        "carl",
        "welcome back"
    ));
}

/// Opens the WebSocket with `Origin: origin`, returning the HTTP status of a refusal, or
/// `SWITCHING_PROTOCOLS` with the welcome read.
async fn upgrade_with_origin(server: &WebServer, origin: &str) -> StatusCode {
    let mut request = server.ws_url().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("origin", HeaderValue::from_str(origin).unwrap());
    let attempt = tokio::time::timeout(IO_TIMEOUT, tokio_tungstenite::connect_async(request))
        .await
        .expect("an answer in time");
    match attempt {
        Ok((stream, response)) => {
            Ws::welcomed(stream).await;
            response.status()
        }
        Err(WsError::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            assert!(
                String::from_utf8_lossy(&body).contains("origin not allowed"),
                "{body:?}"
            );
            response.status()
        }
        Err(err) => panic!("unexpected: {err}"),
    }
}

#[tokio::test]
async fn the_origin_must_be_the_page_or_allowed() {
    let server = WebServer::start(&[]);
    assert_eq!(
        upgrade_with_origin(&server, "http://evil.example").await,
        StatusCode::FORBIDDEN
    );
    let own = format!("http://{}", server.http);
    assert_eq!(
        upgrade_with_origin(&server, &own).await,
        StatusCode::SWITCHING_PROTOCOLS
    );
    // Another port on the same host is another origin.
    let other_port = format!("http://127.0.0.1:{}", server.http.port() ^ 1);
    assert_eq!(
        upgrade_with_origin(&server, &other_port).await,
        StatusCode::FORBIDDEN
    );
    // No Origin at all: not a browser, let in.
    Ws::connect(&server).await;

    let open = WebServer::start(&["--allow-origin", "http://evil.example"]);
    assert_eq!(
        upgrade_with_origin(&open, "http://evil.example").await,
        StatusCode::SWITCHING_PROTOCOLS
    );
    assert_eq!(
        upgrade_with_origin(&open, "http://worse.example").await,
        StatusCode::FORBIDDEN
    );
}

/// `GET path` over a plain socket: the status line, the headers (names lower-cased) and the
/// body.
fn http_get(addr: SocketAddr, path: &str) -> (String, Vec<(String, String)>, String) {
    let mut stream = common::tcp(addr);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("a response");
    let (head, body) = response.split_once("\r\n\r\n").expect("headers end");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().to_string();
    let headers = lines
        .map(|l| {
            let (name, value) = l.split_once(':').expect("a header");
            (name.trim().to_ascii_lowercase(), value.trim().to_string())
        })
        .collect();
    (status, headers, body.to_string())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
}

/// A client that ends its side right after its request (`printf 'GET / HTTP/1.1\r\n…\r\n\r\n'
/// | nc -N`) still gets the whole reply: the end of its input is not the end of the connection.
/// Deterministically so here: corked, the request goes out with the end of input in one
/// segment, and a head of exactly 8 KiB fills the server's first read, so the server looks for
/// more at once, and finds the end of input before it has answered.
#[test]
fn a_client_that_half_closes_after_its_request_gets_the_whole_reply() {
    let server = WebServer::start(&[]);
    for (path, version) in [("/app.js", "1.1"), ("/", "1.0"), ("/nothing", "1.1")] {
        let head = format!("GET {path} HTTP/{version}\r\nHost: x\r\nX-Pad: ");
        let request = format!("{head}{}\r\n\r\n", "a".repeat(8192 - head.len() - 4));
        for _ in 0..5 {
            let socket =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            socket.connect(&server.http.into()).unwrap();
            socket.set_tcp_cork(true).unwrap();
            let mut stream: std::net::TcpStream = socket.into();
            stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            stream.shutdown(std::net::Shutdown::Write).unwrap();
            let mut response = Vec::new();
            let _ = stream.read_to_end(&mut response);
            let response = String::from_utf8_lossy(&response);
            let (head, body) = response
                .split_once("\r\n\r\n")
                .unwrap_or_else(|| panic!("GET {path}: no reply: {response:?}"));
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let l = l.to_ascii_lowercase();
                    l.strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .expect("a content-length");
            assert_eq!(body.len(), length, "GET {path}: the reply was cut short");
        }
    }
}

/// A slowloris on the web listener (a request head begun and never finished) is closed after
/// `--tls-handshake-timeout`, the bound the README gives each request's head, not after a fixed
/// 10 s; a client that sends its request in time is served meanwhile.
#[test]
fn a_request_head_never_finished_is_closed_after_the_handshake_timeout() {
    let server = WebServer::start(&["--tls-handshake-timeout", "1"]);
    let mut slow = common::tcp(server.http);
    slow.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n").unwrap();
    // Well under the fixed 10 s the head was once given, well over the 1 s asked for.
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    let (status, _, _) = http_get(server.http, "/");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        common::is_closed(&mut slow),
        "a head unfinished after {:?} is still open (--tls-handshake-timeout 1)",
        started.elapsed()
    );
    assert!(started.elapsed() >= Duration::from_millis(500));
}

/// Any page can make a browser ask for the WebSocket, and one connection can ask again and
/// again: the refusals are logged a line a second (`LOG_EVERY`), not a line a request.
#[test]
fn upgrades_refused_for_their_origin_are_logged_a_line_a_second() {
    let mut server = WebServer::start(&[]);
    let mut stream = common::tcp(server.http);
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nOrigin: http://evil.example\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.http
    );
    let started = Instant::now();
    stream.write_all(request.repeat(200).as_bytes()).unwrap();
    let mut replies = String::new();
    let mut buf = [0u8; 65536];
    while replies.matches("HTTP/1.1 403").count() < 200 {
        let n = stream.read(&mut buf).expect("the 403s within the timeout");
        assert!(
            n > 0,
            "closed after {} refusals",
            replies.matches("HTTP/1.1 403").count()
        );
        replies.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let elapsed = started.elapsed();
    let log = server.proc.stderr_text();
    let lines = log.matches("origin not allowed").count();
    assert!(lines >= 1, "{log}");
    // One line for the first second, and one more for each second after (a slow machine).
    assert!(
        lines <= 1 + elapsed.as_secs() as usize,
        "200 refusals in {elapsed:?} logged {lines} lines"
    );
}

#[test]
fn the_page_is_served_with_security_headers() {
    let server = WebServer::start(&[]);
    let (status, headers, body) = http_get(server.http, "/");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(header(&headers, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
    let csp = header(&headers, "content-security-policy");
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(body.contains("<script src=\"/app.js\"></script>"), "{body}");
    assert!(body.contains("id=\"send-form\""));

    for (path, kind, needle) in [
        ("/app.js", "text/javascript; charset=utf-8", "new WebSocket"),
        ("/style.css", "text/css; charset=utf-8", "@media"),
    ] {
        let (status, headers, body) = http_get(server.http, path);
        assert_eq!(status, "HTTP/1.1 200 OK", "{path}");
        assert_eq!(header(&headers, "content-type"), kind, "{path}");
        assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
        assert!(body.contains(needle), "{path}");
    }
    // Another path is not a blank page: it says where the chat is.
    for path in ["/nothing-here", "/index.html", "/ws/", "/%2e%2e/etc/passwd"] {
        let (status, headers, body) = http_get(server.http, path);
        assert_eq!(status, "HTTP/1.1 404 Not Found", "{path}");
        assert_eq!(
            header(&headers, "content-type"),
            "text/plain; charset=utf-8"
        );
        assert_eq!(body, "not found; the chat is at /\n", "{path}");
    }
}

#[tokio::test]
async fn a_gbk_nc_user_and_a_browser_read_each_other() {
    let server = WebServer::start(&[]);
    let mut ann = Ws::login(&server, "ann").await;
    let mut carl = ChatClient::login(server.tcp, "carl");
    carl.send("/encoding gbk");
    carl.expect("* your encoding is now GBK");
    ann.expect_json(|e| e["type"] == "nick" && e["new"] == "carl")
        .await;

    let gbk = |text: &str| encoding_rs::GBK.encode(text).0.into_owned();
    // Browser → gbk nc: the line arrives as gbk bytes.
    ann.say("#lobby", "你好").await;
    let line = carl.next_raw();
    assert_eq!(line, gbk("[#lobby] <ann> 你好"));
    assert_ne!(line, "[#lobby] <ann> 你好".as_bytes(), "sent as utf-8");

    // gbk nc → browser: the gbk bytes arrive as the right characters.
    let mut bytes = gbk("你好");
    assert_eq!(bytes, [0xc4, 0xe3, 0xba, 0xc3]);
    bytes.push(b'\n');
    carl.send_raw(&bytes);
    let heard = ann.next_message().await;
    assert!(is_message(&heard, "carl", "你好"), "{heard}");
}

/// A burst of lines is written to each browser in batches; what the server gathers for a batch
/// must not stay held by every browser afterwards. With the library's 128 KiB write buffer,
/// each browser kept up to 128 KiB once it had been sent a burst (2,000 idle browsers: 22 MB
/// of server memory before a burst, 194 MB after).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_lines_does_not_leave_every_browser_holding_a_big_write_buffer() {
    const BROWSERS: usize = 200;
    const LINES: usize = 400;
    let server = WebServer::start(&["--max-rate", "0", "--max-conns-per-ip", "0"]);
    let pid = server.proc.child.id();
    let mut browsers = Vec::with_capacity(BROWSERS);
    for _ in 0..BROWSERS {
        browsers.push(Ws::connect(&server).await);
    }
    let mut sender = browsers.pop().expect("a sender");
    let before = common::resident_kib(pid);
    // Each reads the whole burst, then stays connected (idle) until the memory is read.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel(BROWSERS);
    let (hold_tx, hold_rx) = tokio::sync::watch::channel(false);
    for mut browser in browsers {
        let (done_tx, mut hold_rx) = (done_tx.clone(), hold_rx.clone());
        tokio::spawn(async move {
            browser
                .expect_json(|e| e["type"] == "message" && e["text"] == "burst done")
                .await;
            done_tx.send(()).await.unwrap();
            let _ = hold_rx.wait_for(|&released| released).await;
            drop(browser);
        });
    }
    drop(done_tx);
    let text = "x".repeat(2000);
    for _ in 0..LINES {
        sender
            .stream
            .feed(Message::text(
                json!({"type": "say", "text": text}).to_string(),
            ))
            .await
            .unwrap();
    }
    sender.say("#lobby", "burst done").await;
    for _ in 1..BROWSERS {
        tokio::time::timeout(Duration::from_secs(60), done_rx.recv())
            .await
            .expect("every browser got the burst in time")
            .expect("a browser's reader panicked");
    }
    let after = common::resident_kib(pid);
    hold_tx.send(true).unwrap();
    let grown = after.saturating_sub(before) / BROWSERS as u64;
    assert!(
        grown < 48,
        "{grown} KiB more per browser after the burst ({before} KiB -> {after} KiB)"
    );
}

/// A burst to browsers that read arrives whole: every line as one text frame, in order,
/// nothing lost, with payloads of each header form (under 126 bytes, up to 64 KiB, over it)
/// and writes that the socket takes only in part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_reaches_each_reading_browser_whole_and_in_order() {
    const LINES: usize = 300;
    let server = WebServer::start(&[
        "--max-rate",
        "0",
        "--max-line",
        "100000",
        "--outbox",
        "4096",
    ]);
    let text = |i: usize| {
        let pad = match i % 3 {
            0 => 1,
            1 => 200,
            _ if i % 30 == 2 => 70_000,
            _ => 3000,
        };
        format!("{i}:{}", "x".repeat(pad))
    };
    let mut readers = Vec::new();
    for _ in 0..2 {
        let mut reader = Ws::connect(&server).await;
        readers.push(tokio::spawn(async move {
            for i in 0..LINES {
                let event = reader.next_message().await;
                assert!(
                    is_message(&event, "ann", &text(i)),
                    "{}: line {i} is not the next: {:.100}",
                    reader.nick,
                    event.to_string()
                );
            }
        }));
    }
    let ann = Ws::login(&server, "ann").await;
    // ann reads her own lines too, as a browser does, so that no write waits on her.
    let (mut to_server, mut from_server) = ann.stream.split();
    let echo = tokio::spawn(async move {
        let mut got = 0;
        while got < LINES {
            match tokio::time::timeout(IO_TIMEOUT, from_server.next()).await {
                Ok(Some(Ok(Message::Text(t)))) if t.contains("\"message\"") => got += 1,
                Ok(Some(Ok(_))) => {}
                other => panic!("ann's echo: {other:?}"),
            }
        }
    });
    for i in 0..LINES {
        let request = json!({"type": "say", "text": text(i)}).to_string();
        to_server.feed(Message::text(request)).await.unwrap();
    }
    to_server.flush().await.unwrap();
    echo.await.expect("ann hears her whole burst");
    for reader in readers {
        reader.await.expect("a reader got the burst whole");
    }
}

/// How a browser's connection ended, read to the end.
#[derive(Debug, PartialEq)]
enum End {
    /// A close frame with this code.
    Close(u16),
    /// The connection closed without one.
    Closed,
}

/// Reads `stream` to its end within [`IO_TIMEOUT`]: every data frame must be one whole JSON
/// event, and the end a close frame or the connection closing, never a frame the library finds
/// corrupt (a frame of the server's cut short and followed by another).
async fn read_whole_frames_to_the_end(stream: &mut Stream) -> (usize, End) {
    let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
    let mut events = 0;
    loop {
        let next = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("the end within the timeout");
        match next {
            Some(Ok(Message::Text(text))) => {
                let event: Result<Value, _> = serde_json::from_str(&text);
                assert!(event.is_ok(), "not one whole event: {:.100}", text.as_str());
                events += 1;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Close(frame))) => {
                return (events, End::Close(frame.map_or(0, |f| u16::from(f.code))));
            }
            Some(Ok(other)) => panic!("after {events} events, not a text frame: {other:?}"),
            None
            | Some(Err(
                WsError::Io(_)
                | WsError::ConnectionClosed
                | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake),
            )) => return (events, End::Closed),
            Some(Err(err)) => panic!("after {events} events, a corrupt stream: {err}"),
        }
    }
}

/// Browsers cut off for not reading, their last write stopped wherever the socket stopped
/// taking it (inside a frame, most likely): the one that reads again at once finds whole frames,
/// then the close frame with 1008; the one that reads only after the server gave up on it finds
/// whole frames, then the end of the connection (or the close frame); neither finds a frame
/// cut short and followed by another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_cut_off_mid_frame_still_read_whole_frames_then_a_clean_end() {
    let server = WebServer::start(&["--max-rate", "0", "--outbox", "64"]);
    let mut prompt = Ws::welcomed(small_buffer_ws(&server).await).await;
    prompt.set_nick("prompt").await;
    let mut late = Ws::welcomed(small_buffer_ws(&server).await).await;
    late.set_nick("late").await;
    let mut carl = ChatClient::login(server.tcp, "carl");
    // From here on neither browser reads, until both have been cut off.

    // carl floods #lobby, so that only the members that do not read fall behind.
    let both_gone = Arc::new(AtomicBool::new(false));
    let (sender, carl_got, text) = flood_lobby(&carl, both_gone.clone());
    // carl reads his own lines back, and tells who was cut off, as it happens.
    let (quit_tx, mut quit_rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = {
        let (got, gone) = (carl_got.clone(), both_gone.clone());
        let mine = format!("[#lobby] <carl> {text}");
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut quits = 0;
            while quits < 2 {
                assert!(Instant::now() < deadline, "not both were cut off");
                let line = carl.next_line();
                if line == mine {
                    got.fetch_add(1, Ordering::SeqCst);
                } else if let Some((nick, why)) = line
                    .strip_prefix("* ")
                    .and_then(|rest| rest.split_once(" quit "))
                {
                    assert_eq!(why, "(disconnected for not reading: 64 lines were waiting)");
                    quit_tx.send(nick.to_string()).unwrap();
                    quits += 1;
                }
            }
            gone.store(true, Ordering::SeqCst);
        })
    };
    let mut cut_off = Vec::new();
    let mut wait_for = async |nick: &str, cut_off: &mut Vec<String>| {
        while !cut_off.iter().any(|n| n == nick) {
            let next = tokio::time::timeout(Duration::from_secs(60), quit_rx.recv())
                .await
                .expect("cut off in time")
                .expect("carl's reader is going");
            cut_off.push(next);
        }
    };
    // prompt reads again as soon as it is cut off, before the server gives up on it.
    wait_for("prompt", &mut cut_off).await;
    let (events, end) = read_whole_frames_to_the_end(&mut prompt.stream).await;
    assert_eq!(end, End::Close(1008), "after {events} events");
    wait_for("late", &mut cut_off).await;
    tokio::task::spawn_blocking(move || reader.join())
        .await
        .expect("the reader's task")
        .expect("carl's reader");
    sender.join().expect("carl's sender");
    // late reads only once the server has given up waiting for it (CLOSE_TIMEOUT, 1 s).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (events, end) = read_whole_frames_to_the_end(&mut late.stream).await;
    assert!(
        matches!(end, End::Closed | End::Close(1008)),
        "after {events} events: {end:?}"
    );
}

/// Sends `request` on a connection of its own and reads the response: its status line, headers
/// (names lower-cased) and body (by its `content-length`; none for a 101 or a HEAD).
fn exchange(addr: SocketAddr, request: &str) -> (String, Vec<(String, String)>, String) {
    let mut stream = common::tcp(addr);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut buf).expect("a response");
        assert!(n > 0, "closed before a response: {response:?}");
        response.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8(response[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().to_string();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (name, value) = l.split_once(':').expect("a header");
            (name.trim().to_ascii_lowercase(), value.trim().to_string())
        })
        .collect();
    // A HEAD request's response has none of the body its length gives.
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length" && !request.starts_with("HEAD"))
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = response[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut buf).expect("the body");
        assert!(n > 0, "closed inside the body");
        body.extend_from_slice(&buf[..n]);
    }
    // After a 101 the same read may hold the first WebSocket frames (the welcome): bytes that
    // are no text, and no body.
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// socktalk answers the WebSocket handshake itself: a request that does not ask properly is
/// refused with its status and says what was wrong; one that does gets its 101 with the
/// accept key RFC 6455 derives from the client's, `Connection: keep-alive, Upgrade` included.
#[test]
fn a_request_that_is_not_a_websocket_handshake_is_refused_with_its_status() {
    let server = WebServer::start(&[]);
    const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    const VERSION: &str = "Sec-WebSocket-Version: 13\r\n";
    const UPGRADE: &str = "Connection: Upgrade\r\nUpgrade: websocket\r\n";
    let cases = [
        (
            "GET",
            "HTTP/1.1",
            String::new(),
            "400",
            "the Connection header must include 'upgrade'",
        ),
        (
            "GET",
            "HTTP/1.1",
            format!("Connection: Upgrade\r\n{KEY}{VERSION}"),
            "400",
            "the Upgrade header must be 'websocket'",
        ),
        (
            "GET",
            "HTTP/1.1",
            format!("{UPGRADE}{VERSION}"),
            "400",
            "the Sec-WebSocket-Key header is missing",
        ),
        (
            "GET",
            "HTTP/1.1",
            format!("{UPGRADE}{KEY}Sec-WebSocket-Version: 8\r\n"),
            "400",
            "Sec-WebSocket-Version must be 13",
        ),
        (
            "GET",
            "HTTP/1.1",
            format!("{UPGRADE}{KEY}"),
            "400",
            "Sec-WebSocket-Version must be 13",
        ),
        (
            "HEAD",
            "HTTP/1.1",
            format!("{UPGRADE}{KEY}{VERSION}"),
            "405",
            "",
        ),
        (
            "POST",
            "HTTP/1.1",
            format!("{UPGRADE}{KEY}{VERSION}Content-Length: 0\r\n"),
            "405",
            "",
        ),
        (
            "GET",
            "HTTP/1.0",
            format!("{UPGRADE}{KEY}{VERSION}"),
            "426",
            "cannot be upgraded",
        ),
    ];
    for (method, version, headers, status, why) in cases {
        let request = format!(
            "{method} /ws {version}\r\nHost: {}\r\n{headers}\r\n",
            server.http
        );
        let (line, response_headers, body) = exchange(server.http, &request);
        assert!(
            line.starts_with(&format!("{version} {status}"))
                || line.starts_with(&format!("HTTP/1.1 {status}")),
            "{method} {version} {headers:?}: {line}"
        );
        assert!(body.contains(why), "{method} {headers:?}: {body:?}");
        if why.contains("Version") {
            assert_eq!(header(&response_headers, "sec-websocket-version"), "13");
        }
    }
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n{KEY}{VERSION}\r\n",
        server.http
    );
    let (line, headers, _) = exchange(server.http, &request);
    assert_eq!(line, "HTTP/1.1 101 Switching Protocols");
    assert_eq!(
        header(&headers, "sec-websocket-accept"),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    assert_eq!(header(&headers, "upgrade"), "websocket");
}
