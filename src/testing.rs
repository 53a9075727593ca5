//! Test support shared by the unit tests, the integration tests (`tests/`) and the fuzz targets
//! (`fuzz/`): feeding a decoder its input in pieces, the way a socket may deliver it, and a
//! server that never answers. Not part of socktalk's API.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use socket2::{Domain, Socket, Type};
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

/// A TCP server on 127.0.0.1 that never answers: its accept queue (backlog 0) is full of
/// connections it never accepts, so the SYN of a new one goes unanswered, as from a host that
/// is down or behind a firewall that drops. For testing client timeouts; closed when dropped.
pub struct Unanswering {
    /// Where it listens.
    pub addr: SocketAddr,
    _listener: socket2::Socket,
    _queued: Vec<std::net::TcpStream>,
}

impl Unanswering {
    /// Binds it and fills its queue: connects until one is not answered within a moment.
    ///
    /// # Panics
    /// When the queue cannot be filled (no loopback, or a backlog the kernel does not honour).
    #[must_use]
    pub fn bind() -> Unanswering {
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        listener.bind(&any.into()).unwrap();
        listener.listen(0).unwrap();
        let addr = listener.local_addr().unwrap().as_socket().unwrap();
        let mut queued = Vec::new();
        loop {
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(stream) => queued.push(stream),
                Err(err)
                    if matches!(
                        err.kind(),
                        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                    ) =>
                {
                    break;
                }
                Err(err) => panic!("filling the accept queue of {addr}: {err}"),
            }
            assert!(queued.len() < 64, "the accept queue of {addr} never filled");
        }
        Unanswering {
            addr,
            _listener: listener,
            _queued: queued,
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
