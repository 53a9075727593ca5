//! Round-trip properties of the pure layers, checked on generated inputs (proptest): framing,
//! text encodings, addresses and chat commands. The fuzzers in `fuzz/` push the same parsers
//! much harder; these keep the main guarantees in every `cargo test`.

use std::net::IpAddr;

use bytes::BytesMut;
use proptest::prelude::*;
use socktalk::chat::command::{
    Command, MAX_NICK_CHARS, MAX_ROOM_CHARS, parse_json, parse_line, valid_nick, valid_room,
};
use socktalk::codec::{FrameCodec, Framing, Transcoder, WireEncoding};
use socktalk::endpoint::Host;
use socktalk::testing::{decode_in_pieces, pieces};
use socktalk::{Endpoint, Proto};
use tokio_util::codec::Encoder;
use unicode_normalization::UnicodeNormalization;

/// The frames of `wire` fed to a fresh codec in pieces of `sizes` (cycled), then EOF, the way
/// `FramedRead` drives a decoder, and the error that stopped decoding, if any.
fn decode_until_error(
    framing: Framing,
    max_frame: usize,
    wire: &[u8],
    sizes: &[usize],
) -> (Vec<Vec<u8>>, Option<String>) {
    let decoded = decode_in_pieces(framing, max_frame, wire, sizes);
    (decoded.frames, decoded.error.map(|err| format!("{err:?}")))
}

/// As [`decode_until_error`], for input that must decode cleanly.
fn decode_chunked(
    framing: Framing,
    max_frame: usize,
    wire: &[u8],
    sizes: &[usize],
) -> Result<Vec<Vec<u8>>, String> {
    match decode_until_error(framing, max_frame, wire, sizes) {
        (frames, None) => Ok(frames),
        (_, Some(err)) => Err(err),
    }
}

fn encode_all(framing: Framing, messages: &[Vec<u8>]) -> Vec<u8> {
    let mut codec = FrameCodec::new(framing, usize::MAX);
    let mut wire = BytesMut::new();
    for message in messages {
        codec.encode(message.as_slice(), &mut wire).unwrap();
    }
    wire.to_vec()
}

/// Read sizes: 1 to 16 bytes, cycled.
fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..=16, 1..8)
}

/// A line message: any bytes but `\n`, not ending in the `\r` that `\r\n` handling drops.
fn line_message() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..40).prop_map(|mut m| {
        m.retain(|&b| b != b'\n');
        // The decoder drops a '\r' just before the '\n' (telnet's "\r\n"), so a message that
        // ends in '\r' can't round-trip: strip every trailing one, not just the last.
        while m.last() == Some(&b'\r') {
            m.pop();
        }
        m
    })
}

/// Text that mixes ASCII, Chinese (what gbk is for) and any other character.
fn mixed_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            3 => prop::char::range(' ', '~'),
            3 => prop::char::range('\u{4e00}', '\u{9fa5}'),
            1 => any::<char>(),
        ],
        0..40,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

fn gbk() -> WireEncoding {
    WireEncoding::for_label("gbk").unwrap()
}

/// What `c` comes back as after a trip through gbk: `None` when gbk lacks it (it is sent as
/// `?`). Almost always `c` itself, but the WHATWG gbk encoder writes a few Private Use Area code
/// points (U+E81E, say) as the bytes GB18030-2022 gives their standard characters, which decode
/// to those (U+9FB4).
fn gbk_reads_back(c: char) -> Option<char> {
    let wire = gbk().encode_message(c.encode_utf8(&mut [0; 4]));
    if c != '?' && wire == b"?" {
        return None;
    }
    let back = gbk().decode_message(&wire);
    let mut chars = back.chars();
    let first = chars.next();
    assert_eq!(
        chars.next(),
        None,
        "{c:?} came back as more than one character"
    );
    first
}

fn decode_text_in_pieces(encoding: WireEncoding, bytes: &[u8], sizes: &[usize]) -> String {
    let mut decoder = encoding.decoder();
    let mut out = String::new();
    for piece in pieces(bytes, sizes) {
        decoder.decode(piece, false, &mut out);
    }
    decoder.decode(b"", true, &mut out);
    out
}

/// A host name as users type them (never an IP address, never the `unix` of `unix:PATH`).
fn host_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,20}".prop_filter("a name, not an address or unix:", |name| {
        name.parse::<IpAddr>().is_err() && name != "unix"
    })
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    let scheme = prop_oneof![Just(None), Just(Some(Proto::Tcp)), Just(Some(Proto::Udp))];
    let host = prop_oneof![
        any::<IpAddr>().prop_map(Host::Ip),
        host_name().prop_map(Host::Name),
    ];
    let inet = (host, any::<u16>(), scheme).prop_map(|(host, port, scheme)| Endpoint::Inet {
        host,
        port,
        scheme,
    });
    // A Unix path is whatever follows `unix:`, less surrounding blanks the parser trims.
    let unix = "[^\u{0}]{1,30}"
        .prop_filter("parser trims the end", |p| p.trim_end() == p.as_str())
        .prop_map(|p| Endpoint::Unix(p.into()));
    prop_oneof![3 => inet, 1 => unix]
}

/// Nicks as `valid_nick` describes them: a letter (any script) or `_`, then letters, digits,
/// `_` or `-`, 24 characters at most.
fn nick() -> impl Strategy<Value = String> {
    let first = prop_oneof![
        prop::char::range('a', 'z'),
        prop::char::range('A', 'Z'),
        Just('_'),
        prop::char::range('\u{4e00}', '\u{9fa5}'),
        Just('é')
    ];
    let rest = prop_oneof![
        prop::char::range('a', 'z'),
        prop::char::range('0', '9'),
        Just('_'),
        Just('-'),
        prop::char::range('\u{4e00}', '\u{9fa5}')
    ];
    (first, prop::collection::vec(rest, 0..MAX_NICK_CHARS))
        .prop_map(|(first, rest)| std::iter::once(first).chain(rest).collect())
}

/// Room names, `#` optional, including letters whose lower case is longer than they are.
fn room_input() -> impl Strategy<Value = String> {
    let letter = prop_oneof![
        4 => prop::char::range('a', 'z'),
        2 => prop::char::range('A', 'Z'),
        1 => prop::char::range('0', '9'),
        1 => Just('-'),
        1 => Just('İ'),
        1 => Just('Σ'),
        1 => prop::char::range('\u{4e00}', '\u{9fa5}'),
    ];
    (
        any::<bool>(),
        prop::collection::vec(letter, 1..MAX_ROOM_CHARS + 2),
    )
        .prop_map(|(hash, chars)| {
            let name: String = chars.into_iter().collect();
            if hash { format!("#{name}") } else { name }
        })
}

proptest! {
    #[test]
    fn line_frames_round_trip_however_they_arrive(
        messages in prop::collection::vec(line_message(), 0..12),
        sizes in chunk_sizes(),
    ) {
        let wire = encode_all(Framing::Line, &messages);
        prop_assert_eq!(decode_chunked(Framing::Line, 64, &wire, &sizes), Ok(messages));
    }

    #[test]
    fn len_frames_round_trip_however_they_arrive(
        messages in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..12),
        sizes in chunk_sizes(),
    ) {
        let wire = encode_all(Framing::Len, &messages);
        prop_assert_eq!(decode_chunked(Framing::Len, 64, &wire, &sizes), Ok(messages));
    }

    #[test]
    fn raw_frames_keep_every_byte(
        wire in prop::collection::vec(any::<u8>(), 0..200),
        sizes in chunk_sizes(),
    ) {
        let frames = decode_chunked(Framing::Raw, 1, &wire, &sizes).unwrap();
        prop_assert_eq!(frames.concat(), wire);
    }

    #[test]
    fn chunking_never_changes_what_any_bytes_decode_to(
        wire in prop::collection::vec(
            prop_oneof![4 => any::<u8>(), 1 => Just(b'\n'), 1 => Just(b'\r'), 1 => Just(0u8)],
            0..200,
        ),
        max_frame in 0usize..24,
        sizes in chunk_sizes(),
    ) {
        for framing in [Framing::Line, Framing::Len] {
            let whole = decode_until_error(framing, max_frame, &wire, &[]);
            let chunked = decode_until_error(framing, max_frame, &wire, &sizes);
            prop_assert!(whole.0.iter().all(|f| f.len() <= max_frame));
            prop_assert_eq!(whole, chunked, "{:?}", framing);
        }
    }

    #[test]
    fn utf8_text_round_trips(text in any::<String>(), sizes in chunk_sizes()) {
        let utf8 = WireEncoding::default();
        let wire = utf8.encode_message(&text);
        prop_assert_eq!(&wire, text.as_bytes());
        prop_assert_eq!(utf8.decode_message(&wire), text.clone());
        prop_assert_eq!(decode_text_in_pieces(utf8, &wire, &sizes), text);
    }

    #[test]
    fn gbk_text_round_trips_for_what_gbk_can_say(text in mixed_text(), sizes in chunk_sizes()) {
        let text: String = text.chars().filter(|&c| gbk_reads_back(c) == Some(c)).collect();
        let wire = gbk().encode_message(&text);
        prop_assert_eq!(gbk().decode_message(&wire), text.clone());
        prop_assert_eq!(decode_text_in_pieces(gbk(), &wire, &sizes), text.clone());
        // And through the streaming transcoders, terminal -> wire -> terminal.
        let mut to_wire = Transcoder::new(WireEncoding::default(), gbk());
        let mut from_wire = Transcoder::new(gbk(), WireEncoding::default());
        let mut streamed = Vec::new();
        for piece in pieces(text.as_bytes(), &sizes) {
            streamed.extend_from_slice(to_wire.feed(piece, false));
        }
        streamed.extend_from_slice(to_wire.feed(b"", true));
        prop_assert_eq!(&streamed, &wire);
        let back = from_wire.feed(&streamed, true).to_vec();
        prop_assert_eq!(String::from_utf8(back).unwrap(), text);
    }

    #[test]
    fn gbk_replaces_only_what_it_lacks(text in mixed_text()) {
        let wire = gbk().encode_message(&text);
        let back = gbk().decode_message(&wire);
        let expected: String =
            text.chars().map(|c| gbk_reads_back(c).unwrap_or('?')).collect();
        prop_assert_eq!(back, expected);
    }

    #[test]
    fn decoding_is_the_same_in_any_chunks(
        bytes in prop::collection::vec(any::<u8>(), 0..120),
        label in prop::sample::select(vec!["utf-8", "gbk", "gb18030", "big5", "shift_jis", "latin1"]),
        sizes in chunk_sizes(),
    ) {
        let encoding = WireEncoding::for_label(label).unwrap();
        prop_assert_eq!(
            decode_text_in_pieces(encoding, &bytes, &sizes),
            encoding.decode_message(&bytes)
        );
    }

    #[test]
    fn endpoints_display_as_they_parse(endpoint in endpoint()) {
        let shown = endpoint.to_string();
        prop_assert_eq!(shown.parse::<Endpoint>().unwrap(), endpoint, "{}", shown);
    }

    #[test]
    fn blanks_around_an_address_are_ignored(endpoint in endpoint()) {
        prop_assert_eq!(format!(" \t{endpoint}  ").parse::<Endpoint>().unwrap(), endpoint);
    }

    #[test]
    fn a_bare_port_means_localhost(port in any::<u16>(), scheme in prop::sample::select(vec!["", "tcp://", "udp://"])) {
        let endpoint: Endpoint = format!("{scheme}{port}").parse().unwrap();
        let Endpoint::Inet { host, port: parsed, .. } = &endpoint else {
            panic!("{endpoint:?}");
        };
        prop_assert_eq!(host, &Host::Name("localhost".into()));
        prop_assert_eq!(*parsed, port);
        prop_assert_eq!(endpoint.to_string(), format!("{scheme}localhost:{port}"));
    }

    #[test]
    fn any_valid_nick_is_accepted_by_nick_and_msg(nick in nick(), text in "[^\r\n]{0,30}") {
        prop_assert!(nick.chars().count() <= MAX_NICK_CHARS);
        prop_assert_eq!(parse_line(&format!("/nick {nick}")).unwrap(), Some(Command::Nick(nick.clone())));
        prop_assert_eq!(parse_line(&format!("/NICK  {nick}\r\n")).unwrap(), Some(Command::Nick(nick.clone())));
        prop_assert_eq!(parse_line(&format!(" \t/nick {nick}")).unwrap(), Some(Command::Nick(nick.clone())));
        let msg = parse_line(&format!("/msg {nick} {text}"));
        if text.trim().is_empty() {
            prop_assert!(msg.is_err());
        } else {
            prop_assert_eq!(
                msg.unwrap(),
                Some(Command::Msg { to: nick, text: text.trim().to_string() })
            );
        }
    }

    #[test]
    fn plain_lines_are_sent_as_typed(text in "[^/][^\r\n]{0,60}") {
        // Blanks before a `/` still make a command (a mistyped ` /login` is never broadcast).
        prop_assume!(!text.trim_start().starts_with('/'));
        let command = parse_line(&format!("{text}\r\n")).unwrap();
        if text.trim().is_empty() {
            prop_assert_eq!(command, None);
        } else {
            prop_assert_eq!(command, Some(Command::Say { room: None, text }));
        }
    }

    #[test]
    fn a_double_slash_sends_the_line_with_one_slash(text in "[^\r\n]{0,60}") {
        prop_assert_eq!(
            parse_line(&format!("//{text}")).unwrap(),
            Some(Command::Say { room: None, text: format!("/{text}") })
        );
    }

    #[test]
    fn json_say_keeps_the_text(text in any::<String>()) {
        let json = serde_json::json!({"type": "say", "text": text}).to_string();
        let command = parse_json(&json).unwrap();
        if text.trim().is_empty() {
            prop_assert_eq!(command, None);
        } else {
            prop_assert_eq!(command, Some(Command::Say { room: None, text }));
        }
    }

    #[test]
    fn accepted_rooms_are_normal_and_within_the_limit(room in room_input()) {
        if let Ok(normal) = valid_room(&room) {
            prop_assert!(normal.starts_with('#'));
            prop_assert!(normal.chars().count() <= MAX_ROOM_CHARS, "{}", normal);
            prop_assert_eq!(valid_room(&normal), Ok(normal.clone()));
            prop_assert_eq!(parse_line(&format!("/join {room}")).unwrap(), Some(Command::Join(normal)));
        }
    }

    #[test]
    fn valid_nicks_are_exactly_those_parse_accepts(nick in "\\PC{0,30}") {
        match valid_nick(&nick) {
            Ok(accepted) => {
                // Accepted in normal form C, which is itself accepted unchanged.
                prop_assert_eq!(&accepted, &nick.nfc().collect::<String>());
                prop_assert_eq!(valid_nick(&accepted), Ok(accepted.clone()));
                prop_assert!(!nick.chars().any(|c| c.is_control() || c.is_whitespace()));
                // Counted in the shorter spelling: NFC may split a letter it cannot compose.
                prop_assert!(accepted.chars().count().min(nick.chars().count()) <= MAX_NICK_CHARS);
            }
            Err(err) => prop_assert!(!err.0.is_empty()),
        }
    }
}
