//! Services: what a server does with the messages it receives.
//!
//! A service sees messages, never sockets, so the same [`Responder`] answers over TCP, Unix
//! streams and UDP.

pub mod echo;

pub use echo::{EchoConfig, Responder, Transform};
