//! The library's error type.
//!
//! Every message is written for the person at the terminal: lowercase, no final period, naming the
//! value that was wrong and, where there is one, what to do about it. The binary prints the message
//! on one line and maps [`Error::is_usage`] to exit code 2, [`Error::is_timeout`] to exit code 3,
//! everything else to exit code 1.

use std::io;
use std::path::PathBuf;

/// Errors from socktalk's library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An address the user typed could not be parsed.
    #[error("bad address '{input}': {reason}")]
    BadAddress {
        /// What the user typed.
        input: String,
        /// Why it is not an address.
        reason: String,
    },

    /// An option or a combination of options makes no sense.
    #[error("{0}")]
    Usage(String),

    /// An encoding label that encoding_rs does not know.
    #[error("unknown encoding '{0}' (try utf-8, gbk, gb18030, big5, shift_jis, latin1)")]
    UnknownEncoding(String),

    /// An encoding encoding_rs can decode but not encode (UTF-16, `replacement`).
    #[error(
        "encoding '{0}' can only be read, not written, and socktalk needs both (try utf-8, gbk, gb18030, big5, shift_jis, latin1)"
    )]
    UnusableEncoding(String),

    /// A host name did not resolve.
    #[error("cannot resolve host '{host}': {reason}")]
    Resolve {
        /// The host name.
        host: String,
        /// What the resolver said.
        reason: String,
    },

    /// Binding a listening socket failed.
    #[error("cannot listen on {endpoint}: {}", explain_bind(.source, .endpoint))]
    Bind {
        /// Where we tried to listen.
        endpoint: String,
        /// The system's error.
        source: io::Error,
    },

    /// Connecting to a peer failed.
    #[error("cannot connect to {endpoint}: {}", explain_connect(.source))]
    Connect {
        /// Where we tried to connect.
        endpoint: String,
        /// The system's error.
        source: io::Error,
    },

    /// Connecting failed at each of the addresses a name resolved to.
    #[error("cannot connect to {endpoint}: {}", explain_attempts(.attempts))]
    ConnectEach {
        /// The endpoint as typed.
        endpoint: String,
        /// Each address tried (`tcp://[::1]:7000`) and its error, in the order tried.
        attempts: Vec<(String, io::Error)>,
    },

    /// The UDP peer of `connect -u -l` went: a datagram to it came back undelivered (ICMP
    /// port unreachable, `reason` then `port unreachable`).
    #[error("the peer {endpoint} is not listening any more ({reason}); a datagram to it was lost")]
    PeerGone {
        /// The peer (`udp://127.0.0.1:50521`).
        endpoint: String,
        /// Why the datagram was not delivered.
        reason: String,
    },

    /// A client gave up waiting: to connect (`-w`), or for traffic (`connect --idle-timeout`).
    #[error("{0}")]
    TimedOut(String),

    /// A Unix socket path is held by a server that still answers.
    #[error("cannot listen on unix:{}: a live server is already listening there", .0.display())]
    UnixInUse(PathBuf),

    /// A Unix socket path exists and is not a socket, so it is not ours to remove.
    #[error("cannot listen on unix:{}: the path exists and is not a socket (remove it or pick another)", .0.display())]
    NotASocket(PathBuf),

    /// The chat history database failed.
    #[error("{0}")]
    Database(String),

    /// TLS could not be set up (a certificate or key file) or the handshake failed (an
    /// unverifiable server).
    #[error("tls: {0}")]
    Tls(String),

    /// Standard output was closed (`… | head`): whoever read it has what it wanted, so the
    /// command ends quietly, with success. Only stdout's own broken pipe means this: a socket's
    /// is an error like any other.
    #[error("standard output closed")]
    StdoutClosed,

    /// Writing to standard output failed otherwise (a full disk, `> /dev/full`): what the peer
    /// sends has nowhere to go, so the command ends, `connect -l -k` too.
    #[error("standard output: {}", lowercase_io(.0))]
    Stdout(io::Error),

    /// A signal (Ctrl-C, SIGTERM, SIGHUP) ended the command early; `bench` prints the report of
    /// what it measured first. The exit code is the shell's for that signal (130, 143, 129):
    /// [`crate::signals::exit_status`].
    #[error("{message}")]
    Interrupted {
        /// The signal's number.
        signal: i32,
        /// What was cut short.
        message: String,
    },

    /// Any other I/O failure, e.g. the connection reset mid-transfer.
    #[error("{}", lowercase_io(.0))]
    Io(#[from] io::Error),
}

/// An error writing to standard output: [`Error::StdoutClosed`] for a broken pipe, else
/// [`Error::Stdout`].
pub fn stdout_error(err: io::Error) -> Error {
    if err.kind() == io::ErrorKind::BrokenPipe {
        Error::StdoutClosed
    } else {
        Error::Stdout(err)
    }
}

/// `err`, its message prefixed with what failed (`standard input: is a directory`), so that
/// it is not mistaken for the socket's.
pub fn named(what: &str, err: &io::Error) -> io::Error {
    io::Error::new(err.kind(), format!("{what}: {}", lowercase_io(err)))
}

impl Error {
    /// Whether a client timed out (exit code 3): a script may try again, or wait longer.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::TimedOut(_))
    }

    /// The signal that ended the command early, if one did.
    pub fn interrupted_by(&self) -> Option<i32> {
        match self {
            Error::Interrupted { signal, .. } => Some(*signal),
            _ => None,
        }
    }

    /// Whether this error comes from what the user typed (exit code 2) rather than from the
    /// world (exit code 1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Error::BadAddress { .. }
                | Error::Usage(_)
                | Error::UnknownEncoding(_)
                | Error::UnusableEncoding(_)
        )
    }
}

/// Shorthand for results carrying [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn explain_bind(err: &io::Error, endpoint: &str) -> String {
    match err.kind() {
        io::ErrorKind::AddrInUse => {
            "address already in use (another server is listening there; stop it or pick another port)"
                .to_string()
        }
        io::ErrorKind::PermissionDenied if endpoint.starts_with("unix:") => {
            "permission denied (no write access to the socket's directory)".to_string()
        }
        io::ErrorKind::PermissionDenied => {
            "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)".to_string()
        }
        io::ErrorKind::AddrNotAvailable => {
            "address not available (no local interface has that address)".to_string()
        }
        _ => lowercase_io(err),
    }
}

fn explain_connect(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => {
            "connection refused (is a server listening there?)".to_string()
        }
        io::ErrorKind::NotFound => "no such socket file (is the server running?)".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        io::ErrorKind::TimedOut => "timed out".to_string(),
        _ => lowercase_io(err),
    }
}

/// Each address tried and what it said: `tcp://[::1]:7000: connection refused; tcp://…`.
pub(crate) fn explain_attempts(attempts: &[(String, io::Error)]) -> String {
    attempts
        .iter()
        .map(|(addr, err)| format!("{addr}: {}", explain_connect(err)))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The system's message without its "(os error N)" suffix, starting lowercase.
pub(crate) fn lowercase_io(err: &io::Error) -> String {
    let text = err.to_string();
    let text = match text.find(" (os error") {
        Some(at) => &text[..at],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_errors_say_what_to_do() {
        let err = Error::Bind {
            endpoint: "tcp://127.0.0.1:80".into(),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        assert!(err.to_string().contains("ports below 1024"), "{err}");
        let err = Error::Bind {
            endpoint: "tcp://127.0.0.1:7000".into(),
            source: io::Error::from(io::ErrorKind::AddrInUse),
        };
        assert!(err.to_string().contains("already in use"), "{err}");
        assert!(!err.is_usage());
    }

    #[test]
    fn io_messages_lose_the_os_error_suffix() {
        let err = io::Error::from_raw_os_error(libc_enetunreach());
        let text = lowercase_io(&err);
        assert!(!text.contains("os error"), "{text}");
        assert!(text.starts_with(|c: char| c.is_lowercase()), "{text}");
    }

    fn libc_enetunreach() -> i32 {
        101
    }
}
