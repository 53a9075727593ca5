//! Test support shared by the property tests (`tests/properties.rs`) and the fuzz targets
//! (`fuzz/`): feeding a decoder its input in pieces, the way a socket may deliver it. Not part
//! of socktalk's API.

use bytes::BytesMut;
use tokio_util::codec::Decoder;

use crate::codec::{FrameCodec, FrameError, Framing};

/// `bytes` cut into pieces of `sizes`, used in turn and cycled; the last piece is what is left.
/// A size of 0 gives an empty piece (a read that brought nothing), so `sizes` must hold a size
/// above 0 when `bytes` is not empty.
///
/// # Panics
/// When `sizes` is empty and `bytes` is not.
pub fn pieces<'a>(bytes: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let take = (*sizes.next().expect("sizes to cut with")).min(rest.len());
        out.push(&rest[..take]);
        rest = &rest[take..];
    }
    out
}

/// What [`decode_in_pieces`] got.
#[derive(Debug)]
pub struct Decoded {
    /// The frames, in order.
    pub frames: Vec<Vec<u8>>,
    /// The error that stopped decoding, if one did.
    pub error: Option<FrameError>,
    /// Bytes still buffered at the end (none after a clean end of stream).
    pub left: usize,
}

/// The frames of `wire` fed to a fresh [`FrameCodec`] in pieces of `sizes` (cycled; empty means
/// one piece), then the end of the stream, the way `FramedRead` drives a decoder: `decode` after
/// each arrival, `decode_eof` at the end.
pub fn decode_in_pieces(
    framing: Framing,
    max_frame: usize,
    wire: &[u8],
    sizes: &[usize],
) -> Decoded {
    let mut codec = FrameCodec::new(framing, max_frame);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut rest = wire;
    let mut sizes = sizes.iter().cycle();
    let stopped = |frames, error, buf: &BytesMut| Decoded {
        frames,
        error: Some(error),
        left: buf.len(),
    };
    while !rest.is_empty() {
        let take = sizes.next().copied().unwrap_or(rest.len()).min(rest.len());
        buf.extend_from_slice(&rest[..take]);
        rest = &rest[take..];
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame.to_vec()),
                Ok(None) => break,
                Err(err) => return stopped(frames, err, &buf),
            }
        }
    }
    loop {
        match codec.decode_eof(&mut buf) {
            Ok(Some(frame)) => frames.push(frame.to_vec()),
            Ok(None) => {
                return Decoded {
                    frames,
                    error: None,
                    left: buf.len(),
                };
            }
            Err(err) => return stopped(frames, err, &buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cycle_the_sizes_and_keep_every_byte() {
        assert_eq!(
            pieces(b"abcdefg", &[2, 1]),
            [&b"ab"[..], b"c", b"de", b"f", b"g"]
        );
        assert_eq!(pieces(b"ab", &[0, 5]), [&b""[..], b"ab"]);
        assert!(pieces(b"", &[]).is_empty());
    }

    #[test]
    fn decoding_in_pieces_finds_the_frames_and_the_error() {
        let got = decode_in_pieces(Framing::Line, 4, b"ab\ncd\nlonger\n", &[1]);
        assert_eq!(got.frames, [b"ab".to_vec(), b"cd".to_vec()]);
        assert!(matches!(
            got.error,
            Some(FrameError::LineTooLong { max: 4 })
        ));
        let got = decode_in_pieces(Framing::Line, 64, b"x\ny", &[]);
        assert_eq!(got.frames, [b"x".to_vec(), b"y".to_vec()]);
        assert!(got.error.is_none());
        assert_eq!(got.left, 0);
    }
}
