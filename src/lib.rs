//! socktalk: talk over sockets.
//!
//! Data flows one way through four layers, each in its own module:
//!
//! ```text
//! endpoint  ->  transport  ->  codec  ->  service
//! (where)       (bytes)        (messages)  (what we do with them)
//! ```
//!
//! - [`endpoint`]: parses every address a user types (`127.0.0.1:7000`, `[::1]:7000`,
//!   `localhost:7000`, `udp://…`, `unix:/path`) with errors that name the problem.
//! - [`transport`]: binds and connects TCP, UDP and Unix sockets with the options users expect
//!   (`SO_REUSEADDR`, dual-stack `[::]`, stale Unix socket files replaced safely).
//! - [`codec`]: framing (`raw`, `line`, `len`) and text encodings (utf-8, gbk, …).
//! - [`service`]: the echo and upper-case services; [`server`] is the accept loop they share.
//!
//! [`bench`] is the load generator (`socktalk bench`).
//!
//! [`web`] serves the chat to browsers (page and WebSocket).
//!
//! [`chat`] is the multi-user chat server (`serve`) and its terminal client (`chat`).
//!
//! The clients are [`connect`] (netcat-style; [`connect::listen`] is its listening end, `-l`)
//! and [`talk`] (one-to-one chat). [`cli`] holds the
//! command line, [`app`] wires it to the layers, [`signals`] catches what ends a client, [`limits`] documents every limit, and
//! [`error`] every failure a user can see.

pub mod access;
pub mod app;
pub mod bench;
pub mod chat;
pub mod cli;
pub mod codec;
pub mod connect;
pub mod endpoint;
pub mod error;
pub mod limits;
pub mod server;
pub mod service;
pub mod signals;
pub mod talk;
#[doc(hidden)]
pub mod testing;
pub mod transport;
pub mod web;

pub use endpoint::{Endpoint, Family, Proto};
pub use error::{Error, Result};
