//! Binding and connecting sockets with the options users expect.
//!
//! - TCP listeners set `SO_REUSEADDR`, so a server killed with connections open can start again
//!   on the same port at once, and `[::]` listens dual-stack (`IPV6_V6ONLY` off).
//! - Accepted and connected TCP streams set `TCP_NODELAY`: socktalk writes whole messages, and
//!   Nagle's algorithm would only add latency to them.
//! - A Unix socket file left behind by a dead server is replaced; one a live server still
//!   answers on is refused ([`crate::Error::UnixInUse`]).
//!
//! [`StreamListener`] lets one accept loop ([`crate::server`]) serve TCP and Unix alike.

pub mod tcp;
pub mod udp;
pub mod unix;

use std::future::Future;
use std::io;

use tokio::io::{AsyncRead, AsyncWrite};

/// A listening stream socket: TCP or Unix.
pub trait StreamListener: Send + Sync + 'static {
    /// The accepted connection type.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Waits for the next connection and names its peer for logs.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, String)>> + Send;

    /// The bound address, in the syntax a client accepts (`tcp://127.0.0.1:7000`).
    fn local_display(&self) -> String;
}
