//! Fuzzes the incremental text coders: for an encoding picked by the input, decoding, encoding
//! and transcoding never panic, and feeding the bytes in chunks gives what one piece gives.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use socktalk::codec::{Transcoder, WireEncoding};
use socktalk::testing::pieces;

/// Labels socktalk accepts for `--encoding`, the classic ones first.
const LABELS: &[&str] = &[
    "utf-8",
    "gbk",
    "gb18030",
    "big5",
    "shift_jis",
    "euc-jp",
    "iso-2022-jp",
    "euc-kr",
    "latin1",
    "iso-8859-2",
    "iso-8859-8-i",
    "koi8-r",
    "windows-1251",
    "windows-874",
    "macintosh",
    "x-user-defined",
];

#[derive(Arbitrary, Debug)]
struct Input {
    encoding: u8,
    chunks: Vec<u8>,
    wire: Vec<u8>,
    text: String,
}

/// Splits `text` at char boundaries near the given sizes.
fn text_pieces<'a>(text: &'a str, sizes: &[usize]) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = text;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let mut take = (*sizes.next().unwrap()).min(rest.len());
        while !rest.is_char_boundary(take) {
            take += 1;
        }
        out.push(&rest[..take]);
        rest = &rest[take..];
    }
    out
}

fuzz_target!(|input: Input| {
    let label = LABELS[usize::from(input.encoding) % LABELS.len()];
    let enc = WireEncoding::for_label(label).expect("every listed label is accepted");
    let utf8 = WireEncoding::default();
    let mut sizes: Vec<usize> = input.chunks.iter().map(|&c| usize::from(c % 16)).collect();
    if sizes.iter().all(|&s| s == 0) {
        sizes = vec![1];
    }

    // Decoding: one piece, chunks then an empty last call, and chunks whose last one is `last`.
    let mut whole = String::new();
    let whole_replaced = enc.decoder().decode(&input.wire, true, &mut whole);
    assert_eq!(enc.decode_message(&input.wire), whole);
    let mut chunked = String::new();
    let mut chunked_replaced = false;
    let mut decoder = enc.decoder();
    for piece in pieces(&input.wire, &sizes) {
        chunked_replaced |= decoder.decode(piece, false, &mut chunked);
    }
    chunked_replaced |= decoder.decode(b"", true, &mut chunked);
    assert_eq!(whole, chunked, "{label}: chunked decoding differs");
    assert_eq!(
        whole_replaced, chunked_replaced,
        "{label}: replacement flag differs"
    );
    if whole_replaced {
        assert!(
            whole.contains('\u{fffd}'),
            "{label}: replaced, but no U+FFFD"
        );
    }
    let parts = pieces(&input.wire, &sizes);
    let mut decoder = enc.decoder();
    let mut flushed = String::new();
    for (i, piece) in parts.iter().enumerate() {
        decoder.decode(piece, i + 1 == parts.len(), &mut flushed);
    }
    if parts.is_empty() {
        decoder.decode(b"", true, &mut flushed);
    }
    assert_eq!(whole, flushed, "{label}: last flag on the final chunk");
    if enc.is_utf8() {
        assert_eq!(&*enc.from_wire(&input.wire), input.wire.as_slice());
        assert_eq!(whole, String::from_utf8_lossy(&input.wire));
    } else {
        assert_eq!(&*enc.from_wire(&input.wire), whole.as_bytes());
    }

    // Encoding: one piece equals pieces cut at char boundaries.
    let encoded = enc.encode_message(&input.text);
    let mut encoder = enc.encoder();
    let mut chunked = Vec::new();
    for piece in text_pieces(&input.text, &sizes) {
        encoder.encode(piece, false, &mut chunked);
    }
    encoder.encode("", true, &mut chunked);
    assert_eq!(encoded, chunked, "{label}: chunked encoding differs");
    if enc.is_utf8() {
        assert_eq!(encoded, input.text.as_bytes());
    }
    // Printable ASCII survives the round trip in every one of these encodings.
    let back = enc.decode_message(&encoded);
    if input
        .text
        .bytes()
        .all(|b| b.is_ascii_graphic() || b == b' ')
    {
        assert_eq!(back, input.text, "{label}: ascii text does not survive");
    }
    let _ = enc.to_wire(input.text.as_bytes());
    let _ = enc.to_wire(&input.wire);

    // Transcoding both ways: chunked equals one piece.
    for (from, to) in [(enc, utf8), (utf8, enc), (enc, enc)] {
        let mut one = Transcoder::new(from, to);
        let expected = one.feed(&input.wire, true).to_vec();
        let mut streamed = Transcoder::new(from, to);
        let mut got = Vec::new();
        for piece in pieces(&input.wire, &sizes) {
            got.extend_from_slice(streamed.feed(piece, false));
        }
        got.extend_from_slice(streamed.feed(b"", true));
        assert_eq!(expected, got, "{label}: chunked transcoding differs");
    }
});
