//! The signals that end a client early: Ctrl-C (SIGINT), `kill` (SIGTERM) and the terminal
//! going away (SIGHUP). A client that catches one to wrap up first (`connect -l` removing its
//! Unix socket file, `bench` printing what it measured) then exits with status 128 + the
//! signal's number, as a shell reports a process the signal killed.
//!
//! A signal that was ignored when the process started stays ignored, as Unix programs leave
//! it: `nohup` ignores SIGHUP so that a run outlives the terminal, and a non-interactive
//! shell ignores SIGINT in its background jobs. Catching it anyway would undo that.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// SIGINT, SIGTERM and SIGHUP, caught from [`Signals::install`] on; each is `None` when it was
/// ignored on entry, and stays ignored.
pub struct Signals {
    interrupt: Option<Signal>,
    terminate: Option<Signal>,
    hangup: Option<Signal>,
}

impl Signals {
    /// Catches the three signals from now on, but for those ignored on entry.
    ///
    /// # Errors
    /// The runtime could not install a handler (no signal driver).
    pub fn install() -> std::io::Result<Self> {
        let catch = |kind: SignalKind| -> std::io::Result<Option<Signal>> {
            if is_ignored(kind.as_raw_value()) {
                return Ok(None);
            }
            signal(kind).map(Some)
        };
        Ok(Self {
            interrupt: catch(SignalKind::interrupt())?,
            terminate: catch(SignalKind::terminate())?,
            hangup: catch(SignalKind::hangup())?,
        })
    }

    /// The number of the next signal to come.
    pub async fn recv(&mut self) -> i32 {
        tokio::select! {
            () = next(&mut self.interrupt) => libc::SIGINT,
            () = next(&mut self.terminate) => libc::SIGTERM,
            () = next(&mut self.hangup) => libc::SIGHUP,
        }
    }
}

/// The next delivery of `caught`; never, for a signal left ignored.
async fn next(caught: &mut Option<Signal>) {
    match caught {
        Some(caught) => {
            caught.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// Whether signal `number` is ignored now (before this process installs its handler: as it
/// came from the parent).
fn is_ignored(number: i32) -> bool {
    // SAFETY: a zeroed sigaction is a valid value to be overwritten; with no new action,
    // sigaction only reads the current one into it.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        libc::sigaction(number, std::ptr::null(), &mut current) == 0
            && current.sa_sigaction == libc::SIG_IGN
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
