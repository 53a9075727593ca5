//! Text encodings on the wire.
//!
//! The terminal side of socktalk is always UTF-8; the wire side speaks a [`WireEncoding`] chosen
//! with `--encoding` (any label encoding_rs knows: `utf-8`, `gbk`, `gb18030`, `big5`,
//! `shift_jis`, `latin1`, …). Decoding and encoding are incremental: a two-byte gbk character
//! split across two reads is decoded once both halves are in.
//!
//! Nothing here fails on bad input: undecodable bytes become U+FFFD, and characters the wire
//! encoding cannot represent are sent as `?` (the classic `errors='replace'`).

use std::borrow::Cow;

use encoding_rs::{CoderResult, EncoderResult, Encoding, UTF_8};

use crate::error::{Error, Result};

/// A text encoding that socktalk can both decode and encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireEncoding(&'static Encoding);

impl Default for WireEncoding {
    fn default() -> Self {
        Self(UTF_8)
    }
}

impl WireEncoding {
    /// Looks up an encoding by any WHATWG label (`gbk`, `GB2312`, `utf8`, `latin1`, …), or
    /// by the names Python gives the same encodings where they differ: `cp936` (and `ms936`,
    /// `936`) for gbk, `latin-1` (Python's usual spelling, which WHATWG lacks) for latin1, and
    /// `_` for `-` (`euc_kr`, `latin_1`).
    ///
    /// # Errors
    /// [`Error::UnknownEncoding`] for unknown labels, and [`Error::UnusableEncoding`] for
    /// encodings that can only be decoded (UTF-16, `replacement`), since socktalk must also
    /// write what the user types.
    pub fn for_label(label: &str) -> Result<Self> {
        let wanted = label.trim();
        let python_name = match wanted.to_ascii_lowercase().replace('_', "-").as_str() {
            "cp936" | "ms936" | "936" => "gbk".to_string(),
            "latin-1" => "latin1".to_string(),
            other => other.to_string(),
        };
        let found = Encoding::for_label(wanted.as_bytes())
            .or_else(|| Encoding::for_label(python_name.as_bytes()));
        match found {
            Some(encoding) if encoding.output_encoding() == encoding => Ok(Self(encoding)),
            Some(_) => Err(Error::UnusableEncoding(label.to_string())),
            None => Err(Error::UnknownEncoding(label.to_string())),
        }
    }

    /// Whether this is UTF-8, in which case text passes through untouched.
    pub fn is_utf8(self) -> bool {
        self.0 == UTF_8
    }

    /// The encoding's canonical name (`GBK`, `UTF-8`).
    pub fn name(self) -> &'static str {
        self.0.name()
    }

    /// A fresh incremental decoder.
    pub fn decoder(self) -> TextDecoder {
        TextDecoder(self.0.new_decoder_without_bom_handling())
    }

    /// A fresh incremental encoder.
    pub fn encoder(self) -> TextEncoder {
        TextEncoder(self.0.new_encoder())
    }

    /// Decodes one complete message (a line, a frame, a datagram), replacing invalid bytes.
    pub fn decode_message(self, bytes: &[u8]) -> String {
        let mut out = String::new();
        self.decoder().decode(bytes, true, &mut out);
        out
    }

    /// One complete message typed on the utf-8 side, in the wire encoding; utf-8 passes through
    /// byte for byte (binary data included).
    pub fn to_wire(self, typed: &[u8]) -> std::borrow::Cow<'_, [u8]> {
        if self.is_utf8() {
            typed.into()
        } else {
            self.encode_message(&String::from_utf8_lossy(typed)).into()
        }
    }

    /// One complete message received from the wire, as utf-8 for the terminal; utf-8 passes
    /// through byte for byte.
    pub fn from_wire(self, wire: &[u8]) -> std::borrow::Cow<'_, [u8]> {
        if self.is_utf8() {
            wire.into()
        } else {
            self.decode_message(wire).into_bytes().into()
        }
    }

    /// Encodes one complete message, writing `?` for characters the encoding lacks.
    pub fn encode_message(self, text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        self.encoder().encode(text, true, &mut out);
        out
    }
}

impl std::str::FromStr for WireEncoding {
    type Err = Error;

    fn from_str(label: &str) -> Result<Self> {
        Self::for_label(label)
    }
}

/// Decodes a byte stream in the wire encoding to UTF-8, keeping a split character's first bytes
/// until the rest arrive.
pub struct TextDecoder(encoding_rs::Decoder);

impl TextDecoder {
    /// Appends the text of `bytes` to `out`; `last` flushes an incomplete trailing character as
    /// U+FFFD. Returns whether anything was replaced.
    pub fn decode(&mut self, bytes: &[u8], last: bool, out: &mut String) -> bool {
        let mut replaced_any = false;
        let mut src = bytes;
        loop {
            let need = self
                .0
                .max_utf8_buffer_length(src.len())
                .unwrap_or(src.len() * 3 + 16);
            out.reserve(need);
            let (result, read, replaced) = self.0.decode_to_string(src, out, last);
            replaced_any |= replaced;
            src = &src[read..];
            if result == CoderResult::InputEmpty {
                return replaced_any;
            }
        }
    }
}

/// Encodes UTF-8 text to the wire encoding.
pub struct TextEncoder(encoding_rs::Encoder);

impl TextEncoder {
    /// Appends the encoding of `text` to `out`, with `?` for characters the encoding lacks.
    pub fn encode(&mut self, text: &str, last: bool, out: &mut Vec<u8>) {
        let mut src = text;
        loop {
            let need = self
                .0
                .max_buffer_length_from_utf8_without_replacement(src.len())
                .unwrap_or(src.len() * 4 + 16);
            out.reserve(need);
            let (result, read) = self
                .0
                .encode_from_utf8_to_vec_without_replacement(src, out, last);
            src = &src[read..];
            match result {
                EncoderResult::InputEmpty => return,
                EncoderResult::Unmappable(_) => out.push(b'?'),
                EncoderResult::OutputFull => {}
            }
        }
    }
}

/// Converts a byte stream from one encoding to another (terminal utf-8 to the wire and back),
/// incrementally. Between two utf-8 ends it passes bytes through untouched, so binary data
/// survives a utf-8 connection byte for byte.
pub struct Transcoder {
    /// `None` when both ends are utf-8.
    coders: Option<(TextDecoder, TextEncoder)>,
    text: String,
    bytes: Vec<u8>,
}

impl Transcoder {
    /// A transcoder from `from` to `to`.
    pub fn new(from: WireEncoding, to: WireEncoding) -> Self {
        let coders = (!(from.is_utf8() && to.is_utf8())).then(|| (from.decoder(), to.encoder()));
        Self {
            coders,
            text: String::new(),
            bytes: Vec::new(),
        }
    }

    /// Converts the next piece of the stream; `last` flushes a trailing partial character.
    pub fn feed<'a>(&'a mut self, input: &'a [u8], last: bool) -> &'a [u8] {
        let Some((decoder, encoder)) = &mut self.coders else {
            return input;
        };
        self.text.clear();
        self.bytes.clear();
        decoder.decode(input, last, &mut self.text);
        encoder.encode(&self.text, last, &mut self.bytes);
        &self.bytes
    }
}

/// `text` with its control characters (other than tab) shown as U+FFFD: text from a peer,
/// about to reach a terminal, where an escape sequence could redraw the screen or set its
/// title, and a carriage return could overwrite the line's label with a fake one.
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    let is_unsafe = |c: char| c.is_control() && c != '\t';
    if text.chars().any(is_unsafe) {
        Cow::Owned(
            text.chars()
                .map(|c| if is_unsafe(c) { '\u{fffd}' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NIHAO_GBK: &[u8] = &[0xc4, 0xe3, 0xba, 0xc3];

    #[test]
    fn terminal_safe_text_keeps_tabs_and_replaces_other_controls() {
        assert!(matches!(terminal_safe("plain\ttext é"), Cow::Borrowed(_)));
        assert_eq!(
            terminal_safe("evil \x1b[2J\x1b]0;t\x07 \r* fake \u{9b}"),
            "evil \u{fffd}[2J\u{fffd}]0;t\u{fffd} \u{fffd}* fake \u{fffd}"
        );
    }

    #[test]
    fn gbk_round_trip() {
        let gbk = WireEncoding::for_label("gbk").unwrap();
        assert_eq!(gbk.encode_message("你好"), NIHAO_GBK);
        assert_eq!(gbk.decode_message(NIHAO_GBK), "你好");
        assert_eq!(gbk.name(), "GBK");
        assert!(!gbk.is_utf8());
        assert!(WireEncoding::default().is_utf8());
    }

    #[test]
    fn python_names_are_understood_and_the_refusals_say_why() {
        for name in ["cp936", "CP936", "ms936", "936"] {
            assert_eq!(
                WireEncoding::for_label(name).unwrap().name(),
                "GBK",
                "{name}"
            );
        }
        assert_eq!(WireEncoding::for_label("euc_kr").unwrap().name(), "EUC-KR");
        for name in ["latin-1", "Latin-1", "latin_1"] {
            assert_eq!(
                WireEncoding::for_label(name).unwrap().name(),
                "windows-1252",
                "{name}"
            );
        }
        assert_eq!(
            WireEncoding::for_label("Shift_JIS").unwrap().name(),
            "Shift_JIS"
        );
        assert!(matches!(
            WireEncoding::for_label("utf-16"),
            Err(Error::UnusableEncoding(_))
        ));
        assert!(matches!(
            WireEncoding::for_label("klingon"),
            Err(Error::UnknownEncoding(_))
        ));
    }

    #[test]
    fn gbk_sends_remapped_private_use_characters_as_their_standard_ones() {
        // As browsers do: GB18030-2022 gave U+E81E's bytes to U+9FB4.
        let gbk = WireEncoding::for_label("gbk").unwrap();
        assert_eq!(gbk.encode_message("\u{e81e}"), [0xfe, 0x59]);
        assert_eq!(gbk.decode_message(&[0xfe, 0x59]), "\u{9fb4}");
    }

    #[test]
    fn split_characters_survive_chunk_boundaries() {
        let gbk = WireEncoding::for_label("GBK").unwrap();
        let mut decoder = gbk.decoder();
        let mut out = String::new();
        for byte in NIHAO_GBK {
            decoder.decode(std::slice::from_ref(byte), false, &mut out);
        }
        decoder.decode(b"", true, &mut out);
        assert_eq!(out, "你好");
    }

    #[test]
    fn invalid_bytes_are_replaced_not_fatal() {
        let utf8 = WireEncoding::default();
        assert_eq!(utf8.decode_message(b"ok\xff\xfe!"), "ok\u{fffd}\u{fffd}!");
        let gbk = WireEncoding::for_label("gbk").unwrap();
        let text = gbk.decode_message(&[0x81]);
        assert_eq!(text, "\u{fffd}");
    }

    #[test]
    fn unmappable_characters_become_question_marks() {
        let gbk = WireEncoding::for_label("gbk").unwrap();
        assert_eq!(gbk.encode_message("a😀b"), b"a?b");
        let latin1 = WireEncoding::for_label("latin1").unwrap();
        assert_eq!(latin1.encode_message("é你"), b"\xe9?");
    }

    #[test]
    fn transcoder_streams_both_ways() {
        let gbk = WireEncoding::for_label("gbk").unwrap();
        let utf8 = WireEncoding::default();
        let mut to_wire = Transcoder::new(utf8, gbk);
        let typed = "你好".as_bytes();
        let mut wire = to_wire.feed(&typed[..2], false).to_vec();
        wire.extend_from_slice(to_wire.feed(&typed[2..], true));
        assert_eq!(wire, NIHAO_GBK);
        let mut from_wire = Transcoder::new(gbk, utf8);
        assert_eq!(from_wire.feed(NIHAO_GBK, true), typed);
        let mut passthrough = Transcoder::new(utf8, utf8);
        assert_eq!(passthrough.feed(b"\xff\x00", false), b"\xff\x00");
    }

    #[test]
    fn decode_only_and_unknown_labels_are_refused() {
        for label in ["utf-16le", "utf-16", "replacement", "klingon", ""] {
            let err = WireEncoding::for_label(label).unwrap_err();
            assert!(err.is_usage(), "{label}");
        }
    }
}
