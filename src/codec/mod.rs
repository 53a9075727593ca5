//! From bytes to messages and back.
//!
//! - [`frame`]: where one message ends and the next begins on a byte stream (`raw`, `line`,
//!   `len`), as a tokio-util [`Decoder`](tokio_util::codec::Decoder) /
//!   [`Encoder`](tokio_util::codec::Encoder) pair with a maximum frame size.
//! - [`text`]: the wire's text encoding (utf-8, gbk, … any encoding_rs label), decoded and
//!   encoded incrementally so a character split across two reads survives, and never fatal:
//!   invalid bytes become U+FFFD, characters the encoding lacks become `?`.

pub mod frame;
pub mod text;

pub use frame::{FrameBatches, FrameCodec, FrameError, Framing};
pub use text::{TextDecoder, TextEncoder, Transcoder, WireEncoding, terminal_safe};
