//! Shared body of the `frame_*` targets: one [`FrameCodec`] with a small `max_frame`, fed the
//! same bytes in one piece and in chunks whose sizes come from the input.

use arbitrary::Arbitrary;
use bytes::BytesMut;
use socktalk::codec::{FrameCodec, FrameError, Framing};
use socktalk::testing::decode_in_pieces;
use tokio_util::codec::Encoder;

/// One fuzz case.
#[derive(Arbitrary, Debug)]
pub struct Input {
    /// The codec's limit, taken modulo 64 so that limits are actually hit.
    max_frame: u8,
    /// Chunk sizes for feeding `wire`, used in turn and cycled.
    chunks: Vec<u8>,
    /// Bytes as a peer might send them.
    wire: Vec<u8>,
    /// Messages to encode and decode back.
    messages: Vec<Vec<u8>>,
}

/// What decoding a byte stream gave: the frames, then the error that stopped it, if any.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    frames: Vec<Vec<u8>>,
    error: Option<String>,
}

/// An error as something comparable; `Io` cannot happen without a socket.
fn describe(framing: Framing, max_frame: usize, err: FrameError) -> String {
    match &err {
        FrameError::LineTooLong { max } => {
            assert_eq!(framing, Framing::Line, "{err}");
            assert_eq!(*max, max_frame);
        }
        FrameError::FrameTooLarge { len, max } => {
            assert_eq!(framing, Framing::Len, "{err}");
            assert!(*len > max_frame);
            assert_eq!(*max, max_frame);
        }
        FrameError::Truncated { have, want } => {
            assert_eq!(framing, Framing::Len, "{err}");
            assert!(have < want, "{err}");
        }
        FrameError::Io(_) => panic!("an I/O error without I/O: {err}"),
    }
    assert!(!err.to_string().is_empty());
    format!("{err:?}")
}

/// Decodes the way `FramedRead` does: `decode` after each arrival, `decode_eof` at the end.
fn decode(framing: Framing, max_frame: usize, wire: &[u8], sizes: &[usize]) -> Outcome {
    let decoded = decode_in_pieces(framing, max_frame, wire, sizes);
    if decoded.error.is_none() {
        assert_eq!(decoded.left, 0, "bytes left over after EOF");
    }
    Outcome {
        frames: decoded.frames,
        error: decoded.error.map(|err| describe(framing, max_frame, err)),
    }
}

/// Checks every invariant for one framing.
pub fn run(framing: Framing, input: Input) {
    let max_frame = usize::from(input.max_frame % 64);
    // Chunk sizes of 0 are kept (a read that brought nothing new) as long as some are not.
    let mut sizes: Vec<usize> = input.chunks.iter().map(|&c| usize::from(c % 32)).collect();
    if sizes.iter().all(|&s| s == 0) {
        sizes = vec![1];
    }

    // Arbitrary bytes: one-shot and chunked decoding agree, and frames respect the limit.
    let whole = decode(framing, max_frame, &input.wire, &[]);
    let chunked = decode(framing, max_frame, &input.wire, &sizes);
    check_frames(framing, max_frame, &whole);
    check_frames(framing, max_frame, &chunked);
    if framing == Framing::Raw {
        // Raw has no boundaries: each read is a message, so only the bytes must agree.
        assert_eq!(whole.frames.concat(), input.wire);
        assert_eq!(chunked.frames.concat(), input.wire);
        assert!(whole.frames.len() <= 1);
    } else {
        assert_eq!(whole, chunked, "one-shot and chunked decoding differ");
    }

    // Messages that the framing can carry survive encode -> decode, however the bytes arrive.
    let messages: Vec<Vec<u8>> = input
        .messages
        .into_iter()
        .map(|mut m| {
            m.truncate(max_frame);
            if framing == Framing::Line {
                m.retain(|&b| b != b'\n');
                while m.last() == Some(&b'\r') {
                    m.pop();
                }
            }
            m
        })
        .collect();
    let mut wire = BytesMut::new();
    let mut encoder = FrameCodec::new(framing, max_frame);
    for message in &messages {
        encoder
            .encode(message.as_slice(), &mut wire)
            .expect("encoding never fails below 4 GiB");
    }
    let back = decode(framing, max_frame, &wire, &sizes);
    assert_eq!(back.error, None);
    if framing == Framing::Raw {
        assert_eq!(back.frames.concat(), messages.concat());
    } else {
        assert_eq!(back.frames, messages, "encode -> decode lost the messages");
    }
}

fn check_frames(framing: Framing, max_frame: usize, outcome: &Outcome) {
    for frame in &outcome.frames {
        match framing {
            Framing::Raw => assert!(!frame.is_empty(), "raw yielded an empty read"),
            Framing::Line | Framing::Len => {
                assert!(frame.len() <= max_frame, "{} > {max_frame}", frame.len());
            }
        }
        if framing == Framing::Line {
            assert!(!frame.contains(&b'\n'), "a line holds a newline: {frame:?}");
        }
    }
}
