//! Accounts: `/register` protects a nick with a password (argon2, never stored in clear),
//! `/login` claims it from any connection (taking it over from an older login), a registered
//! nick cannot be taken with `/nick`, failed logins are rate-limited per nick and per client
//! address, and private messages to a registered nick that is offline are kept (across a
//! restart) and delivered at its next login.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{ChatClient, chat_server, db_messages, python};
use serde_json::json;

const PASSWORD: &str = "correct-horse-battery";

/// Waits for the error line that starts with `prefix` and returns it.
fn expect_error(client: &mut ChatClient, prefix: &str) -> String {
    let wanted = format!("! error: {prefix}");
    client.expect_line(|line| line.starts_with(&wanted))
}

/// Takes `nick` and registers it with `password`.
fn registered(addr: std::net::SocketAddr, nick: &str, password: &str) -> ChatClient {
    let mut client = ChatClient::login(addr, nick);
    client.send(&format!("/register {password}"));
    client.expect(&format!(
        "* {nick} is registered to you now; /login {nick} PASSWORD claims it from any connection"
    ));
    client
}

/// Registers `nick` (with [`PASSWORD`]) and quits, so that it is a registered nick offline.
fn registered_and_gone(addr: std::net::SocketAddr, nick: &str) {
    let mut client = registered(addr, nick, PASSWORD);
    client.send("/quit");
    client.read_until_closed(Duration::from_secs(10));
}

/// Logs a fresh guest in as `nick` and waits for the confirmation.
fn logged_in(addr: std::net::SocketAddr, nick: &str, password: &str) -> ChatClient {
    let mut client = ChatClient::guest(addr);
    let guest = client.nick.clone();
    client.send(&format!("/login {nick} {password}"));
    client.expect(&format!("* {guest} is now known as {nick}"));
    client.expect(&format!("* you are logged in as {nick}"));
    client.nick = nick.to_string();
    client
}

/// Sends a marker message to the current room and reads up to it, returning the lines before.
fn lines_until_marker(client: &mut ChatClient, marker: &str) -> Vec<String> {
    client.send(marker);
    let mut lines = Vec::new();
    loop {
        let line = client.next_line();
        if line.ends_with(&format!("> {marker}")) {
            return lines;
        }
        lines.push(line);
    }
}

/// One SQL query's rows, read with Python's `sqlite3` (an independent reader), as JSON.
fn query(db: &Path, sql: &str) -> serde_json::Value {
    let program = "import json, sqlite3, sys\n\
        conn = sqlite3.connect(sys.argv[1])\n\
        print(json.dumps([list(row) for row in conn.execute(sys.argv[2])]))\n";
    let out = python(program, &[db.to_str().unwrap(), sql]);
    serde_json::from_str(&out).expect("python printed JSON")
}

/// Every byte of the database's files (the main file, and the WAL while the server runs).
fn database_bytes(db: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(db).unwrap();
    for suffix in ["-wal", "-journal"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        if let Ok(more) = std::fs::read(&name) {
            bytes.extend(more);
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[test]
fn register_then_log_in_from_another_connection() {
    let server = chat_server(":memory:", &[]);
    let addr = server.socket_addr();
    let mut first = registered(addr, "ann", PASSWORD);
    let mut watcher = ChatClient::login(addr, "bob");
    first.expect("* guest2 is now known as bob");

    // A second connection logs in as ann: it takes the nick over, and the first is told.
    let mut second = ChatClient::guest(addr);
    second.send(&format!("/login ann {PASSWORD}"));
    second.expect("* you are logged in as ann");
    first.expect_line(|line| {
        line.starts_with(
            "* you are no longer logged in as ann: ann logged in from another connection; you are guest",
        )
    });
    let renamed = first.expect_line(|line| line.starts_with("* ann is now known as guest"));
    first.nick = renamed.rsplit(' ').next().unwrap().to_string();
    second.nick = "ann".into();
    watcher.expect(&format!("* ann is now known as {}", first.nick));
    watcher.expect("* guest3 is now known as ann");

    // The new holder is ann for everyone; the old one is a guest, and cannot take it back.
    second.say("it is me");
    watcher.expect("[#lobby] <ann> it is me");
    first.send("/nick ann");
    first.expect("! error: nick 'ann' is taken");
    // The same login again is harmless.
    second.send(&format!("/login ANN {PASSWORD}"));
    second.expect("* you are logged in as ann already");
}

#[test]
fn a_registered_nick_cannot_be_taken() {
    let server = chat_server(":memory:", &[]);
    let addr = server.socket_addr();
    let mut ann = registered(addr, "Ann", PASSWORD);
    let mut bob = ChatClient::login(addr, "bob");
    bob.send("/nick ann");
    bob.expect_next("! error: nick 'ann' is taken");
    ann.send("/quit");
    bob.expect("* Ann quit");

    // Offline, the nick is still protected, whatever its case.
    for nick in ["Ann", "ann", "ANN"] {
        bob.send(&format!("/nick {nick}"));
        bob.expect_next(&format!(
            "! error: nick '{nick}' is registered; /login {nick} PASSWORD if it is yours"
        ));
    }
    // Logging in gives the nick as registered.
    bob.send(&format!("/login ann {PASSWORD}"));
    bob.expect_next("* bob is now known as Ann");
    bob.expect_next("* you are logged in as Ann");
    bob.nick = "Ann".into();

    // Moving off it logs out of it.
    bob.send("/nick bobby");
    bob.expect_next("* Ann is now known as bobby");
    bob.expect_next("* you are no longer logged in as Ann: you changed nick; /login Ann PASSWORD to be Ann again");
    bob.send("/nick Ann");
    bob.expect_next("! error: nick 'Ann' is registered; /login Ann PASSWORD if it is yours");

    // Guest nicks are never handed out when registered: none can be registered at all.
    bob.send("/nick guest77");
    bob.expect_next("* bobby is now known as guest77");
    bob.send(&format!("/register {PASSWORD}"));
    bob.expect_next(
        "! error: guest nicks cannot be registered; choose a nick with /nick NAME first",
    );
}

#[test]
fn wrong_passwords_and_unknown_nicks_are_refused() {
    let server = chat_server(":memory:", &[]);
    let addr = server.socket_addr();
    let mut ann = registered(addr, "ann", PASSWORD);
    let mut eve = ChatClient::login(addr, "eve");
    eve.send("/login ann not-the-password");
    eve.expect_next("! error: wrong password for 'ann'");
    eve.send("/login nobody whatever-password");
    eve.expect_next("! error: nick 'nobody' is not registered");
    // Nothing changed hands.
    eve.say("still eve");
    ann.expect("[#lobby] <eve> still eve");
    ann.say("still ann");
}

#[test]
fn failed_logins_are_rate_limited_per_nick_and_per_address() {
    let server = chat_server(":memory:", &[]);
    let addr = server.socket_addr();
    let _ann = registered(addr, "ann", PASSWORD);
    let mut eve = ChatClient::guest(addr);
    // LOGIN_FAILURES_PER_NICK wrong passwords...
    for _ in 0..5 {
        eve.send("/login ann guess-guess");
        eve.expect_next("! error: wrong password for 'ann'");
    }
    // ... and the next login for that nick is refused without checking, even the right one.
    for password in ["guess-guess", PASSWORD] {
        eve.send(&format!("/login ann {password}"));
        let line = expect_error(&mut eve, "too many failed logins; try again in ");
        let secs: u64 = line
            .trim_start_matches("! error: too many failed logins; try again in ")
            .trim_end_matches('s')
            .parse()
            .unwrap_or_else(|_| panic!("no seconds in {line:?}"));
        assert!((1..=60).contains(&secs), "{line}");
    }
    // The limit is per nick: other nicks log in from the same address.
    let _bob = registered(addr, "bob", PASSWORD);
    let mut other = ChatClient::guest(addr);
    other.send(&format!("/login bob {PASSWORD}"));
    other.expect("* you are logged in as bob");

    // Per address: after LOGIN_FAILURES_PER_SOURCE attempts from it (5 failures and 2
    // registrations so far; trying unknown nicks counts too), every login from it is refused,
    // for any nick.
    for n in 0..13 {
        eve.send(&format!("/login nobody{n} whatever-password"));
        eve.expect(&format!("! error: nick 'nobody{n}' is not registered"));
    }
    eve.send(&format!("/login bob {PASSWORD}"));
    expect_error(&mut eve, "too many failed logins; try again in ");
    eve.send("/login nobody whatever-password");
    expect_error(&mut eve, "too many failed logins; try again in ");
}

/// Guessing from one address does not lock the owner, at another address, out.
#[test]
fn a_guesser_cannot_lock_the_owner_out() {
    let server = chat_server(":memory:", &[]);
    let addr = server.socket_addr();
    let mut owner = registered(addr, "ann", PASSWORD);
    owner.send("/quit");
    owner.read_until_closed(common::IO_TIMEOUT);
    let mut eve = ChatClient::guest(addr);
    for _ in 0..5 {
        eve.send("/login ann guess-guess");
        eve.expect_next("! error: wrong password for 'ann'");
    }
    eve.send(&format!("/login ann {PASSWORD}"));
    expect_error(&mut eve, "too many failed logins; try again in ");

    // The owner, from 127.0.0.2.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: std::net::SocketAddr = "127.0.0.2:0".parse().unwrap();
    socket.bind(&local.into()).unwrap();
    socket.connect(&addr.into()).unwrap();
    let stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    let mut ann = ChatClient::over(common::ChatConn::Tcp(stream)).welcomed();
    ann.send(&format!("/login ann {PASSWORD}"));
    ann.expect("* you are logged in as ann");
}

#[test]
fn offline_mail_is_delivered_at_login_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("chat.db");
    let db = db_path.to_str().unwrap();

    let mut server = chat_server(db, &[]);
    let addr = server.socket_addr();
    registered_and_gone(addr, "ann");
    let mut bob = ChatClient::login(addr, "bob");
    for text in ["first, while you were out", "second"] {
        bob.send(&format!("/msg ann {text}"));
        bob.expect_next(&format!("[pm to ann] <bob> {text}"));
        bob.expect_next("* ann is offline; your message is kept and delivered when they log in");
    }
    // A nick nobody registered is still an error.
    bob.send("/msg nobody hello");
    bob.expect_next("! error: no one called 'nobody' is here (see /who)");

    server.signal("TERM");
    assert!(server.wait_exit(Duration::from_secs(10)).success());

    let server = chat_server(db, &[]);
    let addr = server.socket_addr();
    let mut ann = logged_in(addr, "ann", PASSWORD);
    ann.expect_next("* 2 messages kept for you while you were away:");
    for text in ["first, while you were out", "second"] {
        let line = ann.next_line();
        // `[pm YYYY-MM-DD HH:MM] <bob> text`: the original sender and time.
        let (place, rest) = line.split_once("] ").unwrap();
        assert_eq!(place.len(), "[pm 2026-01-01 00:00".len(), "{line}");
        assert!(place.starts_with("[pm 20"), "{line}");
        assert_eq!(rest, format!("<bob> {text}"));
    }
    assert_eq!(
        query(&db_path, "SELECT COUNT(*) FROM mail"),
        json!([[0]]),
        "delivered mail leaves the mailbox"
    );

    // Delivered once only.
    ann.send("/quit");
    ann.read_until_closed(Duration::from_secs(10));
    let mut ann = logged_in(addr, "ann", PASSWORD);
    let before = lines_until_marker(&mut ann, "marker");
    assert!(
        before.iter().all(|line| !line.contains("kept for you")),
        "{before:#?}"
    );

    // Online, messages go straight through.
    let mut bob = ChatClient::login(addr, "bob");
    bob.send("/msg ann live now");
    bob.expect_next("[pm to ann] <bob> live now");
    ann.expect("[pm] <bob> live now");
}

#[test]
fn a_full_mailbox_refuses_more() {
    let server = chat_server(":memory:", &["--max-mail", "3"]);
    let addr = server.socket_addr();
    let mut ann = registered(addr, "ann", PASSWORD);
    ann.send("/nick annie");
    ann.expect("* ann is now known as annie");
    let mut bob = ChatClient::login(addr, "bob");
    for n in 1..=3 {
        bob.send(&format!("/msg ann note {n}"));
        bob.expect_next(&format!("[pm to ann] <bob> note {n}"));
        bob.expect_next("* ann is offline; your message is kept and delivered when they log in");
    }
    bob.send("/msg ann note 4");
    bob.expect_next(
        "! error: ann's mailbox is full (3 messages kept, the most allowed: --max-mail); message not sent",
    );
    // Emptied at login, it takes mail again.
    ann.send(&format!("/login ann {PASSWORD}"));
    ann.expect("* 3 messages kept for you while you were away:");
    ann.send("/nick annie");
    ann.expect("* you are no longer logged in as ann: you changed nick; /login ann PASSWORD to be ann again");
    bob.send("/msg ann note 5");
    bob.expect("[pm to ann] <bob> note 5");
}

#[test]
fn passwords_are_stored_hashed_and_never_logged_or_kept() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("chat.db");
    let db = db_path.to_str().unwrap();
    let mut server = chat_server(db, &["-vv"]);
    let addr = server.socket_addr();
    let mut ann = registered(addr, "ann", PASSWORD);
    ann.send("/password correct-horse-battery new-secret-staple");
    ann.expect_next("* the password of ann is changed");
    ann.say("a message");
    let mut eve = ChatClient::guest(addr);
    eve.send("/login ann wrong-wrong-wrong");
    eve.expect_next("! error: wrong password for 'ann'");
    let mut other = logged_in(addr, "ann", "new-secret-staple");
    other.say("logged in with the new one");

    let secrets = [PASSWORD, "new-secret-staple", "wrong-wrong-wrong"];
    let bytes = database_bytes(&db_path);
    for secret in secrets {
        assert!(!contains(&bytes, secret), "{secret} is in the database");
    }
    let rows = query(&db_path, "SELECT nick_key, nick, hash FROM accounts");
    let hash = rows[0][2].as_str().unwrap();
    assert_eq!(rows[0][0], "ann");
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );

    server.signal("TERM");
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    let logs = server.stderr_text();
    let bytes = database_bytes(&db_path);
    for secret in secrets {
        assert!(!contains(&bytes, secret), "{secret} is in the database");
        assert!(!logs.contains(secret), "{secret} is in the logs: {logs}");
    }
    for row in db_messages(&db_path) {
        let text = row["text"].as_str().unwrap();
        assert!(secrets.iter().all(|s| !text.contains(s)), "{row}");
    }
}

#[test]
fn bad_account_input_gets_clear_errors() {
    let server = chat_server(":memory:", &[]);
    let addr = server.socket_addr();
    let mut ann = ChatClient::login(addr, "ann");
    let long = "p".repeat(1025);
    for (line, error) in [
        ("/register", "usage: /register PASSWORD".to_string()),
        (
            "/register two words",
            "usage: /register PASSWORD (one word, no spaces)".into(),
        ),
        (
            "/register short",
            "password too short: at least 8 characters".into(),
        ),
        (
            &format!("/register {long}"),
            "password longer than 1024 bytes".into(),
        ),
        ("/login", "usage: /login NICK PASSWORD".into()),
        ("/login ann", "usage: /login NICK PASSWORD".into()),
        (
            "/login 1ann whatever",
            "nick '1ann' may use letters, digits, _ and -, and must start with a letter or _"
                .into(),
        ),
        (
            &format!("/login ann {long}"),
            "password longer than 1024 bytes".into(),
        ),
        ("/password", "usage: /password OLD NEW".into()),
        (
            "/password old-password new-password",
            "you are not logged in; /login NICK PASSWORD first (or /register PASSWORD)".into(),
        ),
    ] {
        ann.send(line);
        ann.expect_next(&format!("! error: {error}"));
    }
    ann.send(&format!("/register {PASSWORD}"));
    ann.expect_next(
        "* ann is registered to you now; /login ann PASSWORD claims it from any connection",
    );
    ann.send("/register another-password");
    ann.expect_next(
        "! error: ann is registered to you already; /password OLD NEW changes its password",
    );
    ann.send("/password wrong-password another-password");
    ann.expect_next("! error: wrong password; the password is unchanged");
    ann.send(&format!("/password {PASSWORD} tiny"));
    ann.expect_next("! error: password too short: at least 8 characters");
    // The session went on through all of it.
    ann.say("still here");
}

#[test]
fn json_mode_registers_logs_in_and_gets_mail() {
    let server = chat_server(":memory:", &[]);
    let addr = server.socket_addr();
    let mut ann = ChatClient::guest(addr);
    ann.json();
    ann.send_json(&json!({"type": "nick", "nick": "ann"}));
    ann.expect_json(|v| v["type"] == "state" && v["nick"] == "ann");
    ann.send_json(&json!({"type": "register", "password": 12345678}));
    let err = ann.expect_json(|v| v["type"] == "error");
    assert_eq!(err["text"], "a password must be a JSON string");
    ann.send_json(&json!({"type": "register", "password": PASSWORD}));
    let reply = ann.expect_json(|v| v["type"] != "state");
    assert_eq!(reply, json!({"type": "registered", "nick": "ann"}));
    ann.send_json(&json!({"type": "quit"}));
    ann.read_until_closed(Duration::from_secs(10));

    let mut bob = ChatClient::login(addr, "bob");
    bob.json();
    bob.send_json(&json!({"type": "private", "to": "ann", "text": "for later"}));
    let kept = bob.expect_json(|v| v["type"] == "kept");
    assert_eq!(kept["nick"], "bob");
    assert_eq!(kept["to"], "ann");
    assert_eq!(kept["text"], "for later");
    assert_eq!(kept["kind"], "private");

    let mut other = ChatClient::guest(addr);
    other.json();
    other.send_json(&json!({"type": "login", "nick": "ann", "password": "wrong-password"}));
    let err = other.expect_json(|v| v["type"] == "error");
    assert_eq!(err["text"], "wrong password for 'ann'");
    other.send_json(&json!({"type": "login", "nick": "ann", "password": PASSWORD}));
    other.expect_json(|v| v["type"] == "nick" && v["new"] == "ann");
    let state = other.expect_json(|v| v["type"] == "state");
    assert_eq!(state["nick"], "ann");
    let login = other.next_json();
    assert_eq!(login, json!({"type": "logged_in", "nick": "ann"}));
    let mail = other.next_json();
    assert_eq!(mail["type"], "mail");
    let messages = mail["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["nick"], "bob");
    assert_eq!(messages[0]["text"], "for later");
    assert_eq!(messages[0]["ts"], kept["ts"]);
    assert_eq!(messages[0]["id"], kept["id"]);

    other.send_json(&json!({"type": "password", "old": PASSWORD, "new": "brand-new-password"}));
    let changed = other.expect_json(|v| v["type"] != "state");
    assert_eq!(changed, json!({"type": "password_changed", "nick": "ann"}));
    // A typed line works too.
    let mut third = ChatClient::guest(addr);
    third.json();
    third.send_json(&json!({"type": "line", "text": "/login ann brand-new-password"}));
    third.expect_json(|v| v["type"] == "logged_in" && v["nick"] == "ann");
    let out = other.expect_json(|v| v["type"] == "logged_out");
    assert_eq!(out["nick"], "ann");
}

#[tokio::test]
async fn a_websocket_member_logs_in_and_gets_its_mail() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let server = common::WebServer::start(&[]);
    let addr = server.tcp;
    let http = server.http.to_string();

    registered_and_gone(addr, "ann");
    let mut bob = ChatClient::login(addr, "bob");
    bob.send("/msg ann from the terminal");
    bob.expect("* ann is offline; your message is kept and delivered when they log in");

    let (mut ws, _) = tokio::time::timeout(
        common::IO_TIMEOUT,
        tokio_tungstenite::connect_async(format!("ws://{http}/ws")),
    )
    .await
    .expect("connect in time")
    .expect("websocket handshake");
    let next_of = async |ws: &mut tokio_tungstenite::WebSocketStream<_>, kind: &str| loop {
        let frame = tokio::time::timeout(common::IO_TIMEOUT, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} event in time"))
            .expect("the connection is open")
            .expect("a frame");
        if let Message::Text(text) = frame {
            let event: serde_json::Value = serde_json::from_str(&text).unwrap();
            if event["type"] == kind {
                return event;
            }
        }
    };
    let request = json!({"type": "login", "nick": "ann", "password": "wrong-password"});
    ws.send(Message::text(request.to_string())).await.unwrap();
    let error = next_of(&mut ws, "error").await;
    assert_eq!(error["text"], "wrong password for 'ann'");
    let request = json!({"type": "login", "nick": "ann", "password": PASSWORD});
    ws.send(Message::text(request.to_string())).await.unwrap();
    assert_eq!(next_of(&mut ws, "logged_in").await["nick"], "ann");
    let mail = next_of(&mut ws, "mail").await;
    assert_eq!(mail["messages"][0]["nick"], "bob");
    assert_eq!(mail["messages"][0]["text"], "from the terminal");
    bob.send("/msg ann and now live");
    let live = next_of(&mut ws, "private").await;
    assert_eq!(live["text"], "and now live");
}

#[test]
fn what_is_typed_after_a_login_waits_for_its_answer() {
    let server = chat_server(":memory:", &[]);
    let addr = server.socket_addr();
    let mut owner = registered(addr, "carl", PASSWORD);
    owner.send("/nick away");
    owner.expect("* carl is now known as away");
    let mut watcher = ChatClient::login(addr, "bob");
    let mut carl = ChatClient::guest(addr);
    watcher.expect(&format!("* {} joined #lobby", carl.nick));
    // The password takes a while to check; the message after it goes out as carl all the same.
    carl.send_raw(format!("/login carl {PASSWORD}\nhello as carl\n").as_bytes());
    watcher.expect_next(&format!("* {} is now known as carl", carl.nick));
    watcher.expect_next("[#lobby] <carl> hello as carl");
    carl.expect("* you are logged in as carl");
    carl.expect_next("[#lobby] <carl> hello as carl");
}

#[test]
fn a_nick_registered_anew_does_not_get_its_earlier_owners_mail() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("chat.db");
    let db = db_path.to_str().unwrap();

    let mut server = chat_server(db, &[]);
    let addr = server.socket_addr();
    registered_and_gone(addr, "ann");
    let mut bob = ChatClient::login(addr, "bob");
    bob.send("/msg ann my secret, for ann only");
    bob.expect("* ann is offline; your message is kept and delivered when they log in");
    server.signal("TERM");
    assert!(server.wait_exit(Duration::from_secs(10)).success());

    // The operator removes ann's account, as the README shows.
    let program = "import sqlite3, sys\n\
        conn = sqlite3.connect(sys.argv[1])\n\
        conn.execute(\"DELETE FROM accounts WHERE nick_key = 'ann'\")\n\
        conn.commit()\n";
    python(program, &[db]);

    // Someone else takes and registers the nick: ann's mail is not theirs.
    let server = chat_server(db, &[]);
    let addr = server.socket_addr();
    let mut other = registered(addr, "ann", "another-password");
    other.send("/quit");
    other.read_until_closed(Duration::from_secs(10));
    let mut other = logged_in(addr, "ann", "another-password");
    let before = lines_until_marker(&mut other, "marker");
    assert!(
        before.iter().all(|line| !line.contains("secret")),
        "{before:#?}"
    );
    assert_eq!(query(&db_path, "SELECT COUNT(*) FROM mail"), json!([[0]]));
}

#[test]
fn a_registered_nick_is_protected_in_every_case_fold_and_from_look_alikes() {
    let server = chat_server(":memory:", &[]);
    let addr = server.socket_addr();
    registered_and_gone(addr, "ΟΔΟΣ");
    registered_and_gone(addr, "οδοσ-2");
    registered_and_gone(addr, "ann");
    let mut eve = ChatClient::login(addr, "eve");
    // Greek final sigma, both ways: ΟΔΟΣ was keyed οδος, so οδοσ was free; and the other way.
    for (nick, registered) in [("οδοσ", "οδοσ"), ("ΟΔΟΣ-2", "ΟΔΟΣ-2")] {
        eve.send(&format!("/nick {nick}"));
        eve.expect_next(&format!(
            "! error: nick '{registered}' is registered; /login {registered} PASSWORD if it is yours"
        ));
    }
    // A look-alike of a registered nick, offline, is refused too.
    eve.send("/nick \u{430}nn");
    eve.expect_next("! error: nick '\u{430}nn' looks like 'ann', which is registered");
    // Mail to any case of the nick is kept for it, and /login takes any case.
    let mut bob = ChatClient::login(addr, "bob");
    bob.send("/msg οδοσ kept for you");
    bob.expect_next("[pm to ΟΔΟΣ] <bob> kept for you");
    bob.expect_next("* ΟΔΟΣ is offline; your message is kept and delivered when they log in");
    eve.send(&format!("/login οδος {PASSWORD}"));
    eve.expect("* eve is now known as ΟΔΟΣ");
    eve.expect_next("* you are logged in as ΟΔΟΣ");
    eve.expect_next("* 1 message kept for you while you were away:");
    assert!(eve.next_line().ends_with("<bob> kept for you"));
}

#[test]
fn an_old_database_moves_to_case_folded_keys_and_a_clash_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("chat.db");
    let db = db_path.to_str().unwrap();
    // Real accounts with real hashes, made by this server, then turned into the old layout.
    let mut server = chat_server(db, &[]);
    let addr = server.socket_addr();
    registered_and_gone(addr, "ΟΔΟΣ");
    registered_and_gone(addr, "ann");
    for (nick, password) in [
        ("other", "other-password"),
        ("cyrillic", "cyrillic-password"),
    ] {
        let mut client = registered(addr, nick, password);
        client.send("/quit");
        client.read_until_closed(Duration::from_secs(10));
    }
    let mut bob = ChatClient::login(addr, "bob");
    for (to, text) in [("ΟΔΟΣ", "for the older"), ("other", "for the younger")] {
        bob.send(&format!("/msg {to} {text}"));
        bob.expect(&format!(
            "* {to} is offline; your message is kept and delivered when they log in"
        ));
    }
    server.signal("TERM");
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    // Before: keys were to_lowercase (ΟΔΟΣ -> οδος, a final sigma), and 'other' was the nick
    // οδοσ, registered after ΟΔΟΣ: a different key then, the same nick now.
    let program = "import sqlite3, sys\n\
        conn = sqlite3.connect(sys.argv[1])\n\
        conn.execute(\"UPDATE mail SET recipient = 'οδος' WHERE recipient = 'οδοσ'\")\n\
        conn.execute(\"UPDATE mail SET recipient = 'οδοσ' WHERE recipient = 'other'\")\n\
        conn.execute(\"UPDATE accounts SET nick_key = 'οδος' WHERE nick = 'ΟΔΟΣ'\")\n\
        conn.execute(\"UPDATE accounts SET nick_key = 'οδοσ', nick = 'οδοσ', \
            created = created + 1000 WHERE nick = 'other'\")\n\
        conn.execute(\"UPDATE accounts SET nick_key = 'аnn', nick = 'аnn' \
            WHERE nick = 'cyrillic'\")\n\
        conn.execute('PRAGMA user_version = 0')\n\
        conn.commit()\n";
    python(program, &[db]);

    let mut server = chat_server(db, &[]);
    let addr = server.socket_addr();
    // The older account has the nick, in any case, with its mail.
    let mut older = ChatClient::guest(addr);
    older.send(&format!("/login οδοσ {PASSWORD}"));
    older.expect("* you are logged in as ΟΔΟΣ");
    older.expect("* 1 message kept for you while you were away:");
    assert!(older.next_line().ends_with("<bob> for the older"));
    // The younger is kept whole, out of reach of logins, under its old key and " (clash)".
    let mut younger = ChatClient::guest(addr);
    younger.send("/login οδοσ other-password");
    younger.expect_next("! error: wrong password for 'οδοσ'");
    let rows = query(
        &db_path,
        "SELECT nick_key, nick, (SELECT COUNT(*) FROM mail WHERE recipient = nick_key) \
         FROM accounts ORDER BY created",
    );
    assert_eq!(
        rows,
        json!([
            ["οδοσ", "ΟΔΟΣ", 0],
            ["ann", "ann", 0],
            ["аnn", "аnn", 0],
            ["οδοσ (clash)", "οδοσ", 1]
        ])
    );
    // Registered look-alikes from before both log in; neither can be taken with /nick.
    let _ann = logged_in(addr, "ann", PASSWORD);
    let mut cyrillic = logged_in(addr, "аnn", "cyrillic-password");
    cyrillic.send("/nick ANN");
    cyrillic.expect_next("! error: nick 'ANN' is taken");
    assert_eq!(query(&db_path, "PRAGMA user_version"), json!([[1]]));
    server.signal("TERM");
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    let logs = server.stderr_text();
    assert!(
        logs.contains("accounts 'ΟΔΟΣ' and 'οδοσ' are one nick now"),
        "{logs}"
    );
    assert!(logs.contains("'οδοσ (clash)'"), "{logs}");
    assert!(
        logs.contains("registered nicks ann, аnn look alike"),
        "{logs}"
    );
}

/// Password hashing takes ~19 MiB a hash, and at most `HASH_CONCURRENCY` (2) run at once: a
/// flood of `/register`s leaves the server's memory where it was, rather than each blocking
/// thread's malloc arena keeping a hash's worth or two for good (a 20 MiB server held ~300 MiB
/// after 18 of them on two cores, and more on more).
#[test]
fn a_flood_of_password_hashes_does_not_leave_the_server_holding_their_memory() {
    let server = chat_server(":memory:", &[]);
    let addr = server.socket_addr();
    let pid = server.child.id();
    let mut warm = registered(addr, "warm", PASSWORD);
    warm.send("/quit");
    let before = common::resident_kib(pid);
    // Within LOGIN_FAILURES_PER_SOURCE (20) for this one address; all at once, so that the
    // hashes queue and run on many blocking threads.
    let mut clients: Vec<ChatClient> = (0..18)
        .map(|i| {
            let mut client = ChatClient::login(addr, &format!("flood{i}"));
            client.send(&format!("/register {PASSWORD}"));
            client
        })
        .collect();
    for (i, client) in clients.iter_mut().enumerate() {
        client.expect(&format!(
            "* flood{i} is registered to you now; /login flood{i} PASSWORD claims it from any connection"
        ));
    }
    let after = common::resident_kib(pid);
    assert!(
        after < before + 64 * 1024,
        "18 password hashes, 2 at a time, grew the server from {before} KiB to {after} KiB"
    );
}
