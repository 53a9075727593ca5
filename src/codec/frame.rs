//! Message framing on a byte stream: the cure for "sticky packets".
//!
//! TCP delivers bytes, not messages: two `send`s may arrive as one `recv`, one `send` as two.
//! A framing says where messages end:
//!
//! - `raw`: no framing; each read is a message, as with `recv(1024)` in the classic lessons.
//! - `line`: a message ends at `\n`; a `\r` before it is dropped, so telnet's `\r\n` works.
//!   Encoding appends `\n`.
//! - `len`: each message is preceded by its length as a 4-byte big-endian unsigned integer
//!   (Python: `struct.pack('>I', len(data)) + data`).
//!
//! `line` and `len` refuse messages above `max_frame` bytes with a [`FrameError`], after which
//! the stream is corrupt and the connection should be closed.

use std::io;

use bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Size of the `len` framing's length prefix.
const LEN_PREFIX: usize = 4;

/// How messages are delimited on a stream (`--frame`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Framing {
    /// Bytes as they arrive; each read is one message.
    #[default]
    Raw,
    /// `\n`-terminated lines (`\r\n` accepted).
    Line,
    /// A 4-byte big-endian length, then that many bytes.
    Len,
}

/// Why a stream's framing broke. After any of these the connection should be closed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// A line ran past the limit without a newline.
    #[error("line longer than the {max}-byte limit (--max-frame)")]
    LineTooLong {
        /// The limit.
        max: usize,
    },
    /// A length prefix received announced more than the limit. The header is shown in hex, as
    /// a peer framing differently (a 2-byte or little-endian length) announces a length that
    /// makes no sense until one sees its bytes.
    #[error(
        "a length prefix of {len} bytes (header {len:08x}) is over the {max}-byte limit \
         (--max-frame); len framing's header is 4 bytes, big-endian (Python: struct.pack('>I', n))"
    )]
    PrefixTooLarge {
        /// The announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A frame to send is longer than a length prefix can say.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    FrameTooLarge {
        /// The announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The peer closed the connection in the middle of a length-prefixed frame. The text counts
    /// the payload as the peer's program does (`struct.pack('>I', len(data)) + data`), or the
    /// header's bytes if it stopped inside the header.
    #[error("{}", truncated_text(*have, *want))]
    Truncated {
        /// Bytes of the frame (prefix included) that arrived.
        have: usize,
        /// Bytes the frame needed (prefix included).
        want: usize,
    },
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// What [`FrameError::Truncated`] says: `have` of the `want` bytes of a frame, both counting
/// the 4-byte header.
fn truncated_text(have: usize, want: usize) -> String {
    if have < LEN_PREFIX {
        format!(
            "connection closed mid-frame ({have} of the {LEN_PREFIX} bytes of its length header)"
        )
    } else {
        let (have, want) = (have - LEN_PREFIX, want - LEN_PREFIX);
        format!("connection closed mid-frame ({have} of the {want} bytes its header announced)")
    }
}

/// One codec value that frames both directions of a connection.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    framing: Framing,
    max_frame: usize,
    /// `line` only: how far the buffer has been searched for `\n`, so no byte is scanned twice.
    next_index: usize,
}

impl FrameCodec {
    /// A codec for `framing` refusing frames above `max_frame` bytes.
    pub fn new(framing: Framing, max_frame: usize) -> Self {
        Self {
            framing,
            max_frame,
            next_index: 0,
        }
    }

    /// The framing this codec speaks.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    fn decode_line(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        let start = self.next_index.min(src.len());
        match memchr::memchr(b'\n', &src[start..]) {
            Some(offset) => {
                let end = start + offset;
                self.next_index = 0;
                let mut line = src.split_to(end + 1);
                line.truncate(if line[..end].ends_with(b"\r") {
                    end - 1
                } else {
                    end
                });
                if line.len() > self.max_frame {
                    return Err(FrameError::LineTooLong {
                        max: self.max_frame,
                    });
                }
                Ok(Some(line))
            }
            None => {
                // A trailing '\r' may be the first half of a "\r\n" that does not count.
                let is_cr = src.ends_with(b"\r");
                if src.len() > self.max_frame.saturating_add(usize::from(is_cr)) {
                    return Err(FrameError::LineTooLong {
                        max: self.max_frame,
                    });
                }
                self.next_index = src.len();
                Ok(None)
            }
        }
    }

    fn decode_len(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        let Some(prefix) = src.get(..LEN_PREFIX) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if len > self.max_frame {
            return Err(FrameError::PrefixTooLarge {
                len,
                max: self.max_frame,
            });
        }
        let want = LEN_PREFIX + len;
        if src.len() < want {
            src.reserve(want - src.len());
            return Ok(None);
        }
        src.advance(LEN_PREFIX);
        Ok(Some(src.split_to(len)))
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        match self.framing {
            Framing::Raw if src.is_empty() => Ok(None),
            Framing::Raw => Ok(Some(src.split())),
            Framing::Line => self.decode_line(src),
            Framing::Len => self.decode_len(src),
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        if let Some(frame) = self.decode(src)? {
            return Ok(Some(frame));
        }
        match self.framing {
            // `decode` lets a line one byte over the limit wait when that byte is the '\r' of a
            // "\r\n" still on its way; at EOF no '\n' is coming, so the line is too long.
            Framing::Line if src.len() > self.max_frame => Err(FrameError::LineTooLong {
                max: self.max_frame,
            }),
            // A last line without its newline is still a line, as `nc` users expect.
            Framing::Line if !src.is_empty() => {
                self.next_index = 0;
                Ok(Some(src.split()))
            }
            Framing::Len if !src.is_empty() => {
                let want = match src.get(..LEN_PREFIX) {
                    Some(p) => LEN_PREFIX + u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize,
                    None => LEN_PREFIX,
                };
                Err(FrameError::Truncated {
                    have: src.len(),
                    want,
                })
            }
            _ => Ok(None),
        }
    }
}

/// How much one read of a [`FrameBatches`] may take: a pipe's worth and more. A read from
/// stdin, or a write to stdout, is a trip to a blocking thread and back; at `FramedRead`'s
/// 8 KiB, a gigabyte piped through `connect` took 125,000 of them each way.
pub const BATCH_READ: usize = 64 * 1024;

/// The frames of a byte stream, all those one read completes at once: passed on with one
/// write per read rather than one per frame. (`FramedRead` yields frames one by one, a
/// poll and a wake-up each, which at 36-byte lines was most of a client's time.)
pub struct FrameBatches<R> {
    reader: R,
    codec: FrameCodec,
    buffer: BytesMut,
    is_done: bool,
}

impl<R: tokio::io::AsyncRead + Unpin> FrameBatches<R> {
    /// Frames read from `reader` and cut by `codec`.
    pub fn new(reader: R, codec: FrameCodec) -> Self {
        Self {
            reader,
            codec,
            buffer: BytesMut::new(),
            is_done: false,
        }
    }

    /// The frames of the next read (reading again while none is complete); an error ends
    /// the batch, after the frames before it, and the stream. `None` once the stream has
    /// ended. Cancel-safe: what a cancelled call read stays for the next.
    pub async fn next(&mut self) -> Option<Vec<Result<BytesMut, FrameError>>> {
        use tokio::io::AsyncReadExt;
        let mut batch = Vec::new();
        while !self.is_done && batch.is_empty() {
            if self.buffer.capacity() - self.buffer.len() < BATCH_READ / 2 {
                self.buffer.reserve(BATCH_READ);
            }
            // At most BATCH_READ, even when the buffer has grown for a long frame: a batch of
            // a read holds at most BATCH_READ / 4 frames (empty `len` frames), not a frame
            // for every 4 bytes of a buffer sized for the longest frame seen.
            let mut room = (&mut self.buffer).limit(BATCH_READ);
            let is_eof = match self.reader.read_buf(&mut room).await {
                Ok(read) => read == 0,
                Err(err) => {
                    self.is_done = true;
                    batch.push(Err(err.into()));
                    break;
                }
            };
            self.is_done = is_eof;
            loop {
                let frame = if is_eof {
                    self.codec.decode_eof(&mut self.buffer)
                } else {
                    self.codec.decode(&mut self.buffer)
                };
                match frame {
                    Ok(Some(frame)) => batch.push(Ok(frame)),
                    Ok(None) => break,
                    Err(err) => {
                        self.is_done = true;
                        batch.push(Err(err));
                        break;
                    }
                }
            }
        }
        (!batch.is_empty()).then_some(batch)
    }

    /// What has been read and not yet taken as a frame.
    pub fn read_buffer(&self) -> &[u8] {
        &self.buffer
    }
}

impl Encoder<&[u8]> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, item: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        match self.framing {
            Framing::Raw => dst.extend_from_slice(item),
            Framing::Line => {
                dst.reserve(item.len() + 1);
                dst.extend_from_slice(item);
                dst.put_u8(b'\n');
            }
            Framing::Len => {
                let len = u32::try_from(item.len()).map_err(|_| FrameError::FrameTooLarge {
                    len: item.len(),
                    max: u32::MAX as usize,
                })?;
                dst.reserve(LEN_PREFIX + item.len());
                dst.put_u32(len);
                dst.extend_from_slice(item);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader whose every read returns the next of its parts, whole.
    struct Reads(std::collections::VecDeque<&'static [u8]>);

    impl tokio::io::AsyncRead for Reads {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            if let Some(part) = self.0.pop_front() {
                let (now, later) = part.split_at(part.len().min(buf.remaining()));
                buf.put_slice(now);
                if !later.is_empty() {
                    self.0.push_front(later);
                }
            }
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// Each batch of `batches`, as texts or error messages, until the end.
    async fn all_batches(
        mut batches: FrameBatches<impl tokio::io::AsyncRead + Unpin>,
    ) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        while let Some(batch) = batches.next().await {
            out.push(
                batch
                    .into_iter()
                    .map(|frame| match frame {
                        Ok(frame) => String::from_utf8(frame.to_vec()).unwrap(),
                        Err(err) => format!("error: {err}"),
                    })
                    .collect(),
            );
        }
        out
    }

    #[tokio::test]
    async fn batches_hold_every_frame_one_read_completes() {
        // Two reads: the first completes two lines and starts a third, the second ends it.
        let reader = Reads([&b"ab\ncd\nef"[..], b"g\nlast"].into());
        let batches = FrameBatches::new(reader, FrameCodec::new(Framing::Line, 100));
        assert_eq!(
            all_batches(batches).await,
            [vec!["ab", "cd"], vec!["efg"], vec!["last"]]
        );
    }

    #[tokio::test]
    async fn a_read_takes_at_most_batch_read_even_after_a_long_frame() {
        // A 1 MiB frame makes the buffer that big; 1 MiB of empty frames follows.
        let mut long = (1u32 << 20).to_be_bytes().to_vec();
        long.resize(4 + (1 << 20), b'x');
        let empties = vec![0u8; 1 << 20];
        let reader = Reads([long.leak() as &[u8], empties.leak()].into());
        let mut batches = FrameBatches::new(reader, FrameCodec::new(Framing::Len, 1 << 20));
        let mut sizes = Vec::new();
        while let Some(batch) = batches.next().await {
            assert!(batch.iter().all(Result::is_ok));
            sizes.push(batch.len());
        }
        assert_eq!(sizes[0], 1, "the long frame");
        assert_eq!(
            sizes.iter().skip(1).sum::<usize>(),
            1 << 18,
            "every empty frame"
        );
        assert!(sizes.iter().all(|&n| n <= BATCH_READ / 4), "{sizes:?}");
    }

    #[tokio::test]
    async fn a_cancelled_call_loses_nothing_it_read() {
        use futures_util::FutureExt;
        use tokio::io::AsyncWriteExt;
        let (mut writer, reader) = tokio::io::duplex(1024);
        let mut batches = FrameBatches::new(reader, FrameCodec::new(Framing::Line, 100));
        writer.write_all(b"one\npar").await.unwrap();
        let first = batches.next().await.unwrap();
        assert_eq!(first.len(), 1);
        // `par` is buffered; a call that finds nothing more is dropped, as when another branch
        // of a select wins.
        assert!(batches.next().now_or_never().is_none());
        writer.write_all(b"tial\n").await.unwrap();
        drop(writer);
        let batch = batches.next().await.unwrap();
        assert_eq!(&batch[0].as_ref().unwrap()[..], b"partial");
        assert!(batches.next().await.is_none());
    }

    #[tokio::test]
    async fn a_read_with_no_whole_frame_is_not_a_batch_and_an_error_ends_them() {
        let reader = Reads(
            [
                &b"ok\nha"[..],
                b"lf",
                b" line\n0123456789abc",
                b"never read\n",
            ]
            .into(),
        );
        let batches = FrameBatches::new(reader, FrameCodec::new(Framing::Line, 10));
        assert_eq!(
            all_batches(batches).await,
            [
                vec!["ok".to_string()],
                vec![
                    "half line".to_string(),
                    "error: line longer than the 10-byte limit (--max-frame)".to_string()
                ]
            ]
        );
    }

    fn decode_all(codec: &mut FrameCodec, bytes: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(frame) = codec.decode(&mut buf)? {
            out.push(frame.to_vec());
        }
        while let Some(frame) = codec.decode_eof(&mut buf)? {
            out.push(frame.to_vec());
        }
        Ok(out)
    }

    #[test]
    fn lines_split_and_strip_cr() {
        let mut codec = FrameCodec::new(Framing::Line, 100);
        let frames = decode_all(&mut codec, b"one\ntwo\r\n\nlast").unwrap();
        assert_eq!(
            frames,
            vec![b"one".to_vec(), b"two".to_vec(), vec![], b"last".to_vec()]
        );
    }

    #[test]
    fn lines_fed_one_byte_at_a_time() {
        let mut codec = FrameCodec::new(Framing::Line, 100);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for &byte in b"ab\r\ncd\n" {
            buf.put_u8(byte);
            while let Some(frame) = codec.decode(&mut buf).unwrap() {
                got.push(frame.to_vec());
            }
        }
        assert_eq!(got, vec![b"ab".to_vec(), b"cd".to_vec()]);
    }

    #[test]
    fn long_lines_are_refused_with_and_without_newline() {
        let mut codec = FrameCodec::new(Framing::Line, 4);
        assert!(matches!(
            decode_all(&mut codec, b"12345"),
            Err(FrameError::LineTooLong { max: 4 })
        ));
        let mut codec = FrameCodec::new(Framing::Line, 4);
        assert!(matches!(
            decode_all(&mut codec, b"12345\n"),
            Err(FrameError::LineTooLong { .. })
        ));
        let mut codec = FrameCodec::new(Framing::Line, 4);
        assert_eq!(
            decode_all(&mut codec, b"1234\r\n").unwrap(),
            vec![b"1234".to_vec()]
        );
    }

    #[test]
    fn a_full_length_line_whose_crlf_arrives_split_is_accepted() {
        let mut codec = FrameCodec::new(Framing::Line, 4);
        let mut buf = BytesMut::from(&b"1234\r"[..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        buf.put_u8(b'\n');
        assert_eq!(&codec.decode(&mut buf).unwrap().unwrap()[..], b"1234");
        // One byte more is still too long, '\r' or not.
        let mut codec = FrameCodec::new(Framing::Line, 4);
        let mut buf = BytesMut::from(&b"12345\r"[..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FrameError::LineTooLong { max: 4 })
        ));
        // No limit (talk's stdin) means no limit, '\r' or not.
        let mut codec = FrameCodec::new(Framing::Line, usize::MAX);
        let mut buf = BytesMut::from(&b"typed\r"[..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        // Without the '\n' it never becomes a 4-byte line.
        let mut codec = FrameCodec::new(Framing::Line, 4);
        assert!(matches!(
            decode_all(&mut codec, b"1234\r"),
            Err(FrameError::LineTooLong { max: 4 })
        ));
    }

    #[test]
    fn length_prefixed_frames_back_to_back() {
        let mut codec = FrameCodec::new(Framing::Len, 100);
        let mut wire = BytesMut::new();
        for msg in [&b"hello"[..], b"", b"world"] {
            codec.encode(msg, &mut wire).unwrap();
        }
        let frames = decode_all(&mut codec, &wire).unwrap();
        assert_eq!(frames, vec![b"hello".to_vec(), vec![], b"world".to_vec()]);
    }

    #[test]
    fn length_prefix_above_max_is_refused_before_buffering() {
        let mut codec = FrameCodec::new(Framing::Len, 10);
        let err = decode_all(&mut codec, &[0, 0, 0, 11]).unwrap_err();
        assert!(matches!(
            err,
            FrameError::PrefixTooLarge { len: 11, max: 10 }
        ));
        let mut codec = FrameCodec::new(Framing::Len, 10);
        let err = decode_all(&mut codec, &[0xff, 0xff, 0xff, 0xff]).unwrap_err();
        assert!(err.to_string().contains("4294967295"), "{err}");
    }

    #[test]
    fn half_a_frame_then_eof_is_truncated() {
        let mut codec = FrameCodec::new(Framing::Len, 100);
        let err = decode_all(&mut codec, &[0, 0, 0, 5, b'a', b'b']).unwrap_err();
        assert!(matches!(err, FrameError::Truncated { have: 6, want: 9 }));
        assert_eq!(
            err.to_string(),
            "connection closed mid-frame (2 of the 5 bytes its header announced)"
        );
        let mut codec = FrameCodec::new(Framing::Len, 100);
        let err = decode_all(&mut codec, &[0, 0]).unwrap_err();
        assert!(matches!(err, FrameError::Truncated { have: 2, want: 4 }));
        assert_eq!(
            err.to_string(),
            "connection closed mid-frame (2 of the 4 bytes of its length header)"
        );
    }

    #[test]
    fn raw_yields_what_is_buffered() {
        let mut codec = FrameCodec::new(Framing::Raw, 1);
        assert_eq!(
            decode_all(&mut codec, b"anything at all").unwrap(),
            vec![b"anything at all".to_vec()]
        );
        assert!(decode_all(&mut codec, b"").unwrap().is_empty());
    }

    #[test]
    fn encoders_frame_each_message() {
        let mut wire = BytesMut::new();
        FrameCodec::new(Framing::Line, 9)
            .encode(b"hi", &mut wire)
            .unwrap();
        FrameCodec::new(Framing::Len, 9)
            .encode(b"hi", &mut wire)
            .unwrap();
        FrameCodec::new(Framing::Raw, 9)
            .encode(b"hi", &mut wire)
            .unwrap();
        assert_eq!(&wire[..], b"hi\n\0\0\0\x02hihi");
    }
}
