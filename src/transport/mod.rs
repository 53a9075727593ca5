//! Binding and connecting sockets with the options users expect.
//!
//! - TCP listeners set `SO_REUSEADDR`, so a server killed with connections open can start again
//!   on the same port at once, and `[::]` listens dual-stack (`IPV6_V6ONLY` off).
//! - Accepted and connected TCP streams set `TCP_NODELAY`: socktalk writes whole messages, and
//!   Nagle's algorithm would only add latency to them.
//! - A Unix socket file left behind by a dead server is replaced; one a live server still
//!   answers on is refused ([`crate::Error::UnixInUse`]).
//!
//! - A Unix socket path starting with `@` names an abstract socket (Linux): no file at all.
//! - [`dial`] is how the clients connect: resolve, connect and TLS under one deadline (`-w`).
//!
//! [`StreamListener`] lets one accept loop ([`crate::server`]) serve TCP and Unix alike.

pub mod deadline;
pub mod dial;
pub mod tcp;
pub mod tls;
pub mod udp;
pub mod unix;

use std::future::Future;
use std::io;
use std::net::IpAddr;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

/// A listening stream socket: TCP or Unix.
pub trait StreamListener: Send + Sync + 'static {
    /// The accepted connection type.
    type Stream: AsyncRead + AsyncWrite + Readiness + Peek + Unpin + Send + Sync + 'static;

    /// Waits for the next connection and says who it is from.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, Peer)>> + Send;

    /// The bound address, in the syntax a client accepts (`tcp://127.0.0.1:7000`).
    fn local_display(&self) -> String;
}

/// Who is at the other end of an accepted connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// For logs: `127.0.0.1:50312`, `unix:pid=4242`.
    pub name: String,
    /// The client's IP address (IPv4-mapped IPv6 addresses given as IPv4), for access
    /// control; `None` for Unix sockets.
    pub ip: Option<IpAddr>,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// Waiting for input without a buffer: a server holding thousands of idle connections then
/// holds no read buffer for any of them, and allocates one only when bytes arrive.
pub trait Readiness {
    /// Completes when the socket may have bytes to read (or EOF, or an error).
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send;

    /// Reads what is there into `buf` without waiting; `WouldBlock` if nothing was.
    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize>;

    /// Writes what the socket takes at once, without waiting; `WouldBlock` if it takes nothing.
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
}

impl Readiness for tokio::net::TcpStream {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
        tokio::net::TcpStream::readable(self)
    }

    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        tokio::net::TcpStream::try_read_buf(self, buf)
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        tokio::net::TcpStream::try_write(self, buf)
    }
}

impl Readiness for tokio::net::UnixStream {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
        tokio::net::UnixStream::readable(self)
    }

    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        tokio::net::UnixStream::try_read_buf(self, buf)
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        tokio::net::UnixStream::try_write(self, buf)
    }
}

/// Looking at a connection's first bytes without taking them: how a TLS listener tells a
/// ClientHello from a plain-text client before its handshake starts.
pub trait Peek {
    /// Waits for input (or EOF), then copies up to `buf.len()` bytes of it into `buf`, leaving
    /// them to be read; `Ok(0)` at EOF.
    fn peek(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>> + Send;

    /// Copies up to `buf.len()` bytes of what has arrived already into `buf`, leaving them to be
    /// read, without waiting: `WouldBlock` when nothing has.
    fn peek_arrived(&self, buf: &mut [u8]) -> io::Result<usize>;

    /// The address the client connected to (`127.0.0.1:8443`), for telling it where to go;
    /// `None` where there is none to give (a Unix socket).
    fn local_name(&self) -> Option<String>;
}

impl Peek for tokio::net::TcpStream {
    fn peek(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>> + Send {
        tokio::net::TcpStream::peek(self, buf)
    }

    fn peek_arrived(&self, buf: &mut [u8]) -> io::Result<usize> {
        peek_now(self, buf)
    }

    fn local_name(&self) -> Option<String> {
        self.local_addr().ok().map(|addr| addr.to_string())
    }
}

impl Peek for tokio::net::UnixStream {
    async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            self.readable().await?;
            match self.try_io(tokio::io::Interest::READABLE, || peek_now(self, buf)) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                read => return read,
            }
        }
    }

    fn peek_arrived(&self, buf: &mut [u8]) -> io::Result<usize> {
        peek_now(self, buf)
    }

    fn local_name(&self) -> Option<String> {
        None
    }
}

/// One `recv(MSG_PEEK)` on `socket` (non-blocking, as tokio's sockets are): what is there (at most 64 bytes), without taking it.
fn peek_now(socket: &impl std::os::fd::AsFd, buf: &mut [u8]) -> io::Result<usize> {
    let mut peeked = [std::mem::MaybeUninit::<u8>::uninit(); 64];
    let len = buf.len().min(peeked.len());
    let n = socket2::SockRef::from(socket).peek(&mut peeked[..len])?;
    for (to, from) in buf.iter_mut().zip(&peeked[..n]) {
        // SAFETY: `peek` returned `n`, so the kernel wrote the first `n` bytes.
        *to = unsafe { from.assume_init() };
    }
    Ok(n)
}
