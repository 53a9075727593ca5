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
    type Stream: AsyncRead + AsyncWrite + Readiness + Unpin + Send + Sync + 'static;

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
