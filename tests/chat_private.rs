//! Private messages (`/msg`): only the recipient sees them, the sender gets a confirmation, an
//! absent recipient is an error, and they are kept in the history database.

mod common;

use common::{ChatClient, chat_server, db_messages};

#[test]
fn a_private_message_reaches_only_its_target() {
    let server = chat_server(":memory:", &[]);
    let addr = server.socket_addr();
    let mut ann = ChatClient::login(addr, "ann");
    let mut bob = ChatClient::login(addr, "bob");
    let mut cat = ChatClient::login(addr, "cat");
    ann.expect("* guest3 is now known as cat");
    bob.expect("* guest3 is now known as cat");

    ann.send("/msg bob psst, over here");
    ann.expect_next("[pm to bob] <ann> psst, over here");
    bob.expect_next("[pm] <ann> psst, over here");

    // The private message was fanned out before this room message was sent, so if cat had
    // been sent it, it would come first.
    ann.send("now for everyone");
    ann.expect_next("[#lobby] <ann> now for everyone");
    bob.expect_next("[#lobby] <ann> now for everyone");
    cat.expect_next("[#lobby] <ann> now for everyone");

    // Nicks match regardless of case; the reply shows the nick as its owner spells it.
    bob.send("/msg ANN  and back ");
    bob.expect_next("[pm to ann] <bob> and back");
    ann.expect_next("[pm] <bob> and back");
    bob.send("/m ann short form");
    bob.expect_next("[pm to ann] <bob> short form");
    ann.expect_next("[pm] <bob> short form");
    bob.say("room again");
    cat.expect_next("[#lobby] <bob> room again");
}

#[test]
fn a_private_message_reaches_someone_in_another_room() {
    let server = chat_server(":memory:", &[]);
    let addr = server.socket_addr();
    let mut ann = ChatClient::login(addr, "ann");
    let mut bob = ChatClient::login(addr, "bob");
    bob.join("#elsewhere");
    bob.send("/part #lobby");
    bob.expect("* you are now talking in #elsewhere");
    ann.send("/msg bob found you");
    ann.expect("[pm to bob] <ann> found you");
    bob.expect_next("[pm] <ann> found you");
}

#[test]
fn a_private_message_to_no_one_is_an_error() {
    let server = chat_server(":memory:", &[]);
    let addr = server.socket_addr();
    let mut ann = ChatClient::login(addr, "ann");
    let mut bob = ChatClient::login(addr, "bob");
    ann.expect("* guest2 is now known as bob");

    ann.send("/msg zed hello?");
    ann.expect_next("! error: no one called 'zed' is here (see /who)");
    ann.send("/msg bob");
    ann.expect_next("! error: usage: /msg NICK text");
    ann.send("/msg 9lives hi");
    assert!(
        ann.next_line()
            .starts_with("! error: nick '9lives' may use")
    );

    // Someone who has left cannot be written to.
    bob.send("/quit");
    bob.read_until_closed(common::IO_TIMEOUT);
    ann.expect_next("* bob quit");
    ann.send("/msg bob are you there");
    ann.expect_next("! error: no one called 'bob' is here (see /who)");

    // The session goes on.
    assert_eq!(ann.say("still here"), "[#lobby] <ann> still here");
}

#[test]
fn a_private_message_is_kept_in_the_database_but_not_in_room_history() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chat.db");
    let server = chat_server(db.to_str().unwrap(), &[]);
    let addr = server.socket_addr();
    let mut ann = ChatClient::login(addr, "ann");
    let mut bob = ChatClient::login(addr, "bob");
    ann.expect("* guest2 is now known as bob");
    ann.say("in the open");
    ann.send("/msg bob 秘密 secret");
    // Delivery follows the commit: once ann has her confirmation, the row is in the file.
    ann.expect_next("[pm to bob] <ann> 秘密 secret");
    bob.expect("[pm] <ann> 秘密 secret");

    let rows = db_messages(&db);
    assert_eq!(rows.len(), 2, "{rows:#?}");
    let pm = &rows[1];
    assert_eq!(pm["kind"], "private");
    assert_eq!(pm["room"], serde_json::Value::Null);
    assert_eq!(pm["nick"], "ann");
    assert_eq!(pm["recipient"], "bob");
    assert_eq!(pm["text"], "秘密 secret");
    assert_eq!(rows[0]["kind"], "say");
    assert_eq!(rows[0]["room"], "#lobby");
    assert!(rows[0]["id"].as_i64() < pm["id"].as_i64());

    // A room's history is the room's messages only.
    bob.send("/history");
    bob.expect_next("* 1 earlier message in #lobby:");
    let line = bob.next_line();
    assert!(
        line.starts_with("[#lobby ") && line.ends_with("] <ann> in the open"),
        "{line}"
    );
    // Nothing else followed: the next line answers the next request.
    bob.send("/who");
    bob.expect_next("* #lobby (2): ann, bob");
}
