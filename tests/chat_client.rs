//! The terminal client `socktalk chat`, driven through its stdin and stdout, talking with a
//! member on a raw connection.

mod common;

use std::time::Duration;

use common::{ChatClient, Proc, chat_server, one_line_error, socktalk};

/// Reads the client's output until a line satisfies `wanted` (at most 100 lines, each within
/// the IO timeout); fails listing what it printed otherwise.
fn expect_out(client: &mut Proc, wanted: impl Fn(&str) -> bool) -> String {
    let mut seen = Vec::new();
    for _ in 0..100 {
        let line = client.next_line();
        if wanted(&line) {
            return line;
        }
        let is_eof = line.is_empty() && client.child.try_wait().unwrap().is_some();
        seen.push(line);
        assert!(!is_eof, "the client exited; it printed {seen:#?}");
    }
    panic!("the expected line never came; the client printed {seen:#?}");
}

/// Starts `socktalk chat ADDR --nick NICK --color never` and waits until it has its nick.
fn chat(addr: &str, nick: &str) -> Proc {
    chat_with(addr, nick, &[])
}

/// [`chat`] with `extra` flags.
fn chat_with(addr: &str, nick: &str, extra: &[&str]) -> Proc {
    let mut args = vec!["chat", addr, "--nick", nick, "--color", "never"];
    args.extend_from_slice(extra);
    let mut client = Proc::start(&args);
    let you = format!("* you are {nick}, talking in #lobby");
    expect_out(&mut client, |l| l == you);
    client
}

/// A chat server with bob on a raw connection, and ann on `socktalk chat`, whose arrival bob
/// has seen.
fn bob_sees_ann() -> (Proc, ChatClient, Proc) {
    let server = chat_server(":memory:", &[]);
    let addr = server.socket_addr();
    let mut bob = ChatClient::login(addr, "bob");
    let ann = chat(&addr.to_string(), "ann");
    bob.expect("* guest2 is now known as ann");
    (server, bob, ann)
}

#[test]
fn what_the_client_types_reaches_others_and_what_they_say_is_printed() {
    let server = chat_server(":memory:", &[]);
    let addr = server.socket_addr();
    let mut bob = ChatClient::login(addr, "bob");
    let mut ann = chat(&addr.to_string(), "ann");
    bob.expect("* guest2 joined #lobby");
    bob.expect_next("* guest2 is now known as ann");

    ann.type_line("hello from the client");
    bob.expect_next("[#lobby] <ann> hello from the client");
    // Its own message comes back, with the time: `HH:MM [#lobby] <ann> …`.
    let echoed = expect_out(&mut ann, |l| l.contains("<ann> hello from the client"));
    assert!(
        echoed.ends_with(" [#lobby] <ann> hello from the client"),
        "{echoed}"
    );
    assert_eq!(echoed.find(' '), Some(5), "{echoed}");

    bob.say("hi");
    let heard = expect_out(&mut ann, |l| l.contains("[#lobby] <bob> hi"));
    assert!(heard.ends_with("[#lobby] <bob> hi"), "{heard}");
    bob.send("/me waves");
    bob.expect_next("[#lobby] * bob waves");
    expect_out(&mut ann, |l| l.ends_with("[#lobby] * bob waves"));

    // A line starting with / is passed through as a command.
    ann.type_line("/join #dev");
    expect_out(&mut ann, |l| l == "* ann joined #dev");
    expect_out(&mut ann, |l| l == "* you are ann, talking in #dev");
    bob.send("/who #dev");
    bob.expect_next("* #dev (1): ann");
    ann.type_line("in dev now");
    expect_out(&mut ann, |l| l.ends_with("[#dev] <ann> in dev now"));

    // Private messages both ways.
    ann.type_line("/msg bob psst");
    bob.expect_next("[pm] <ann> psst");
    expect_out(&mut ann, |l| l.ends_with("[pm to bob] <ann> psst"));
    bob.send("/msg ann hush");
    expect_out(&mut ann, |l| l.ends_with("[pm] <bob> hush"));

    // Errors are shown, and the client carries on.
    ann.type_line("/nick bob");
    expect_out(&mut ann, |l| l == "! error: nick 'bob' is taken");

    ann.type_line("/quit");
    bob.expect("* ann quit");
    let status = ann.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn the_client_shows_earlier_messages_on_arrival() {
    let server = chat_server(":memory:", &[]);
    let addr = server.socket_addr();
    let mut bob = ChatClient::login(addr, "bob");
    bob.say("before you came");
    bob.send("/me left a note");
    bob.expect_next("[#lobby] * bob left a note");
    let mut ann = Proc::start(&["chat", &addr.to_string(), "-n", "ann", "--color", "never"]);
    expect_out(&mut ann, |l| l == "* earlier in #lobby:");
    let first = ann.next_line();
    // History lines carry the date: `YYYY-MM-DD HH:MM [#lobby] <bob> …`.
    assert!(
        first.ends_with(" [#lobby] <bob> before you came"),
        "{first}"
    );
    assert_eq!(first.find(" [#lobby]"), Some(16), "{first}");
    assert!(ann.next_line().ends_with(" [#lobby] * bob left a note"));
    assert_eq!(ann.next_line(), "* — end of history in #lobby —");
    ann.type_line("/quit");
    assert_eq!(ann.wait_exit(Duration::from_secs(10)).code(), Some(0));
}

#[test]
fn the_client_exits_cleanly_at_end_of_input() {
    let (_server, mut bob, mut ann) = bob_sees_ann();
    ann.type_line("last words");
    bob.expect_next("[#lobby] <ann> last words");
    ann.close_stdin();
    bob.expect_next("* ann quit");
    let status = ann.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{status}");
    let rest = ann.stdout_rest();
    assert!(rest.ends_with("* disconnected\n"), "{rest}");
}

#[test]
fn the_client_exits_cleanly_when_the_server_shuts_down() {
    let mut server = chat_server(":memory:", &[]);
    let addr = server.socket_addr();
    let mut ann = chat(&addr.to_string(), "ann");
    server.signal("TERM");
    expect_out(&mut ann, |l| l == "* server shutting down; bye");
    expect_out(&mut ann, |l| l == "* disconnected");
    let status = ann.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{status}");
    assert_eq!(server.wait_exit(Duration::from_secs(10)).code(), Some(0));
}

#[test]
fn the_client_connects_over_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.sock");
    let path_arg = path.to_str().unwrap();
    let mut server = chat_server(":memory:", &["--unix", path_arg]);
    assert!(server.next_line().starts_with("listening on unix:"));
    let mut bob = ChatClient::login(server.socket_addr(), "bob");
    let mut ann = Proc::start(&["chat", "-U", path_arg, "--nick", "ann", "--color", "never"]);
    expect_out(&mut ann, |l| l == "* you are ann, talking in #lobby");
    ann.type_line("over unix");
    bob.expect("[#lobby] <ann> over unix");
    ann.close_stdin();
    assert_eq!(ann.wait_exit(Duration::from_secs(10)).code(), Some(0));
}

#[test]
fn commands_typed_after_blanks_stay_commands() {
    let (_server, mut bob, mut ann) = bob_sees_ann();
    // Sent as a message, this would show the password to the room (and store it).
    ann.type_line("  /register a-long-secret");
    expect_out(&mut ann, |l| l.contains("ann is registered to you now"));
    ann.type_line("   /msg bob quietly");
    // The next thing bob hears: the password never reached the room.
    bob.expect_next("[pm] <ann> quietly");
    ann.type_line(" /quit");
    bob.expect_next("* ann quit");
    let status = ann.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn a_refused_client_says_why_and_fails() {
    let server = chat_server(":memory:", &["--deny", "127.0.0.0/8"]);
    let addr = server.socket_addr().to_string();
    let out = socktalk()
        .args(["chat", &addr, "--nick", "ann", "--color", "never"])
        .timeout(Duration::from_secs(10))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = one_line_error(&out.stderr);
    assert!(err.contains("refused:"), "{err}");
    assert!(err.contains("not allowed"), "{err}");
}

#[test]
fn a_server_that_is_not_a_chat_server_is_named_as_such() {
    let (addr, peer) = common::tcp_peer("127.0.0.1", drop);
    let out = socktalk()
        .args(["chat", &addr.to_string(), "--color", "never"])
        .timeout(Duration::from_secs(10))
        .output()
        .unwrap();
    peer.join().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = one_line_error(&out.stderr);
    assert!(err.contains("before the chat began"), "{err}");
}

/// An echo server never closes, and sends our own requests back: the client must not take
/// them for events (it printed `*  is now known as ` and hung). Without a `state` event in
/// answer to `/json` in a few seconds, it says the server is not a chat server, and fails.
#[test]
fn an_echo_server_is_not_taken_for_a_chat_server() {
    let echo = Proc::server(&["echo", "127.0.0.1:0"]);
    let out = socktalk()
        .args(["chat", &echo.addr, "--nick", "ann", "--color", "never"])
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = one_line_error(&out.stderr);
    assert!(err.contains("no answer from a chat server"), "{err}");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(!shown.contains("known as"), "{shown}");
}

#[test]
fn a_quit_reason_cannot_redraw_the_terminal() {
    let (_server, mut bob, mut ann) = bob_sees_ann();
    bob.send_raw(b"/quit \x1b[2Jgone\n");
    let quit = expect_out(&mut ann, |l| l.starts_with("* bob quit"));
    assert_eq!(quit, "* bob quit (\u{fffd}[2Jgone)");
}

#[test]
fn a_member_who_only_reads_is_not_closed_as_idle() {
    let server = chat_server(":memory:", &["--idle-timeout", "1"]);
    let addr = server.socket_addr().to_string();
    let mut ann = chat_with(&addr, "ann", &["--keepalive", "0.2"]);
    // Three idle timeouts of reading only.
    std::thread::sleep(Duration::from_secs(3));
    ann.type_line("still here");
    let line = expect_out(&mut ann, |l| l.contains("still here") || l.contains("idle"));
    assert!(line.ends_with("[#lobby] <ann> still here"), "{line}");
}

/// Whatever a server sends (a hostile one, or one in the middle without TLS), the client
/// prints no control characters: they could redraw the terminal, set its title or write to the
/// clipboard (OSC 52).
#[test]
fn nothing_a_server_sends_can_drive_the_terminal() {
    let (addr, peer) = common::tcp_peer("127.0.0.1", |mut stream| {
        use std::io::Write;
        let events = concat!(
            r##"{"type":"state","nick":"ann","room":"#lobby","rooms":["#lobby"]}"##,
            "\n",
            r#"{"type":"info","text":"\u001b]52;c;aGk=\u0007clipboard"}"#,
            "\n",
            r##"{"type":"who","room":"#lobby","nicks":["\u001b[2Jbob"]}"##,
            "\n",
            r##"{"type":"join","room":"#lobby","nick":"\u001b]0;title\u0007cat"}"##,
            "\n",
            r##"{"type":"message","id":1,"ts":0,"room":"\u001b[2J#dev","nick":"bob","text":"hi"}"##,
            "\n",
            r##"{"type":"state","nick":"ann","room":"\u001b]52;c;aGk=\u0007#ops","rooms":[]}"##,
            "\n",
            r##"{"type":"message","id":2,"ts":9223372036854775807,"nick":"bob","text":"late"}"##,
            "\n",
            "\u{1b}[2Jnot JSON\n",
        );
        stream.write_all(events.as_bytes()).unwrap();
    });
    let out = socktalk()
        .args(["chat", &addr.to_string(), "--color", "never"])
        .timeout(Duration::from_secs(10))
        .output()
        .unwrap();
    peer.join().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("clipboard") && shown.contains("not JSON"),
        "{shown}"
    );
    // Room names too: in a message's place and in the state line.
    assert!(shown.contains("#dev] <bob> hi"), "{shown}");
    assert!(shown.contains("#ops"), "{shown}");
    assert!(
        !shown.contains(['\u{1b}', '\u{7}']),
        "control characters printed: {shown:?}"
    );
}

#[test]
fn wait_gives_up_on_a_server_that_never_answers_with_exit_code_3() {
    let server = common::Unanswering::bind();
    let addr = server.addr.to_string();
    let (code, err, took) = common::timed_failure(&["chat", "-w", "1", &addr, "--nick", "ann"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("no answer within 1s (-w)"), "{err}");
    common::took_about(took, 1.0);
}

#[test]
fn serve_and_chat_meet_on_an_abstract_unix_socket() {
    let name = common::abstract_name("chat");
    let server = Proc::server(&["serve", "-U", &format!("@{name}"), "--db", ":memory:"]);
    assert_eq!(server.addr, format!("unix:@{name}"));
    let mut bob = ChatClient::over(common::ChatConn::Unix(common::unix_abstract(&name))).welcomed();
    bob.set_nick("bob");
    let mut ann = chat(&format!("unix:@{name}"), "ann");
    bob.expect("* guest2 is now known as ann");
    ann.type_line("over the abstract socket");
    bob.expect_next("[#lobby] <ann> over the abstract socket");
    ann.type_line("/quit");
    assert!(ann.wait_exit(Duration::from_secs(10)).success());
    // `-U @name` is the same socket.
    let at_name = format!("@{name}");
    let mut cat = Proc::start(&["chat", "-U", &at_name, "--nick", "cat", "--color", "never"]);
    expect_out(&mut cat, |l| l == "* you are cat, talking in #lobby");
    bob.expect("* guest3 is now known as cat");
    cat.type_line("/quit");
    assert!(cat.wait_exit(Duration::from_secs(10)).success());
}
