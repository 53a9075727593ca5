//! Text encodings in the chat: each connection reads and writes its own encoding (`/encoding`,
//! `--encoding`), invalid bytes become U+FFFD, and unknown labels are refused.

mod common;

use common::{ChatClient, chat_server, gbk};

#[test]
fn gbk_and_utf8_members_read_each_other() {
    // Known GBK bytes, so the test does not only trust encoding_rs.
    assert_eq!(gbk("你好"), b"\xc4\xe3\xba\xc3");
    let server = chat_server(":memory:", &[]);
    let addr = server.socket_addr();
    let (mut utf, mut gb) = ChatClient::utf_and_gbk(addr);
    // A nick typed in GBK.
    gb.send_raw(&[b"/nick ".as_slice(), &gbk("小明"), b"\n"].concat());
    assert_eq!(gb.next_raw(), gbk("* guest2 is now known as 小明"));
    utf.expect_next("* guest2 is now known as 小明");

    gb.send_raw(&[gbk("你好，世界"), b"\n".to_vec()].concat());
    assert_eq!(gb.next_raw(), gbk("[#lobby] <小明> 你好，世界"));
    let line = utf.next_raw();
    assert_eq!(
        String::from_utf8(line).expect("UTF-8 for the UTF-8 member"),
        "[#lobby] <小明> 你好，世界"
    );

    utf.send("中文 ok ✓");
    utf.expect_next("[#lobby] <utf> 中文 ok ✓");
    // ✓ has no GBK form: it arrives as a replacement, the rest exactly.
    let got = gb.next_raw();
    let (decoded, _, had_errors) = encoding_rs::GBK.decode(&got);
    assert!(!had_errors, "{got:?} is not valid GBK");
    assert!(
        got.starts_with(&gbk("[#lobby] <utf> 中文 ok ")),
        "{decoded}"
    );
    assert!(!decoded.contains('✓'));

    // Private messages are encoded per reader too.
    utf.send("/msg 小明 悄悄话");
    utf.expect_next("[pm to 小明] <utf> 悄悄话");
    assert_eq!(gb.next_raw(), gbk("[pm] <utf> 悄悄话"));

    // Switching back to UTF-8.
    gb.send("/encoding utf-8");
    gb.expect_next("* your encoding is now UTF-8");
    gb.send("汉字");
    gb.expect_next("[#lobby] <小明> 汉字");
    utf.expect_next("[#lobby] <小明> 汉字");
}

#[test]
fn the_server_default_encoding_applies_to_new_connections() {
    let server = chat_server(":memory:", &["--encoding", "gbk"]);
    let addr = server.socket_addr();
    let mut gb = ChatClient::guest(addr);
    let mut utf = ChatClient::guest(addr);
    gb.expect("* guest2 joined #lobby");
    utf.send("/encoding utf8");
    utf.expect_next("* your encoding is now UTF-8");

    gb.send_raw(&[gbk("默认编码"), b"\n".to_vec()].concat());
    assert_eq!(gb.next_raw(), gbk("[#lobby] <guest1> 默认编码"));
    utf.expect_next("[#lobby] <guest1> 默认编码");

    utf.send("收到");
    utf.expect_next("[#lobby] <guest2> 收到");
    assert_eq!(gb.next_raw(), gbk("[#lobby] <guest2> 收到"));
}

#[test]
fn invalid_bytes_are_replaced_never_fatal() {
    let server = chat_server(":memory:", &[]);
    let addr = server.socket_addr();
    let mut ann = ChatClient::login(addr, "ann");
    let mut bob = ChatClient::login(addr, "bob");
    ann.expect("* guest2 is now known as bob");

    ann.send_raw(b"\xff\xfe\n");
    let line = ann.next_raw();
    assert_eq!(
        String::from_utf8(line).expect("the server sends valid UTF-8"),
        "[#lobby] <ann> \u{fffd}\u{fffd}"
    );
    bob.expect_next("[#lobby] <ann> \u{fffd}\u{fffd}");
    ann.send_raw(b"ok \xe4\xb8 cut\n");
    ann.expect_next("[#lobby] <ann> ok \u{fffd} cut");
    bob.expect_next("[#lobby] <ann> ok \u{fffd} cut");

    // A GBK member sending bytes that are not GBK.
    bob.send("/encoding gbk");
    bob.expect_next("* your encoding is now GBK");
    bob.send_raw(b"bad \x81\n");
    bob.expect_next("[#lobby] <bob> bad ?");
    ann.expect_next("[#lobby] <bob> bad \u{fffd}");

    assert_eq!(ann.say("still connected"), "[#lobby] <ann> still connected");
}

#[test]
fn an_unknown_encoding_is_an_error_and_the_session_goes_on() {
    let server = chat_server(":memory:", &[]);
    let addr = server.socket_addr();
    let mut ann = ChatClient::login(addr, "ann");
    ann.send("/encoding klingon");
    ann.expect_next(
        "! error: unknown encoding 'klingon' (try utf-8, gbk, gb18030, big5, shift_jis, latin1)",
    );
    // UTF-16 cannot carry lines of ASCII commands; it is refused too.
    ann.send("/encoding utf-16le");
    assert!(
        ann.next_line()
            .starts_with("! error: encoding 'utf-16le' can only be read, not written")
    );
    // Still UTF-8.
    assert_eq!(ann.say("ünïcödé"), "[#lobby] <ann> ünïcödé");
}
