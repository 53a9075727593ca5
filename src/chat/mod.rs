//! The multi-user chat server (`socktalk serve`) and its terminal client (`socktalk chat`).
//!
//! - [`account`]: registered nicks: argon2 password hashing off the hub, login rate limits.
//! - [`command`]: parsing what members type (`/join #dev`) or send as JSON.
//! - [`event`]: what the server says, rendered as readable lines or JSON lines.
//! - [`hub`]: the one task that owns rooms, members and nicks, and fans out messages.
//! - [`history`]: SQLite history with a group-commit writer thread; nothing is delivered
//!   before it is committed.
//! - [`outbox`]: a member's bounded queue of output, filled by the hub, drained by the session.
//! - [`session`]: one connection's loop, with its limits (line length, rate, idle time).
//! - [`server`]: binds the listeners, opens the database and wires the rest together.
//! - [`client`]: the terminal client, speaking JSON mode.

pub mod account;
pub mod client;
pub mod command;
pub mod event;
pub mod history;
pub mod hub;
pub mod outbox;
pub mod server;
pub mod session;

pub use server::{ChatConfig, run};
