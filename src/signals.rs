//! The signals that end a client early: Ctrl-C (SIGINT), `kill` (SIGTERM) and the terminal
//! going away (SIGHUP). A client that catches one to wrap up first (`connect -l` removing its
//! Unix socket file, `bench` printing what it measured) then exits with status 128 + the
//! signal's number, as a shell reports a process the signal killed.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// SIGINT, SIGTERM and SIGHUP, caught from [`Signals::install`] on.
pub struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl Signals {
    /// Catches the three signals from now on.
    ///
    /// # Errors
    /// The runtime could not install a handler (no signal driver).
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// The number of the next signal to come.
    pub async fn recv(&mut self) -> i32 {
        tokio::select! {
            _ = self.interrupt.recv() => libc::SIGINT,
            _ = self.terminate.recv() => libc::SIGTERM,
            _ = self.hangup.recv() => libc::SIGHUP,
        }
    }
}

/// Signal `number` as a message names it: SIGINT as the key that sends it.
pub fn name(number: i32) -> &'static str {
    match number {
        libc::SIGINT => "Ctrl-C",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// The exit status of a client that ends on signal `number`: 128 + the number.
pub fn exit_status(number: i32) -> u8 {
    u8::try_from(128 + number).unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_are_the_shells() {
        assert_eq!(exit_status(libc::SIGINT), 130);
        assert_eq!(exit_status(libc::SIGTERM), 143);
        assert_eq!(exit_status(libc::SIGHUP), 129);
        assert_eq!(name(libc::SIGINT), "Ctrl-C");
    }
}
