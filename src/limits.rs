//! Every limit socktalk enforces, in one place.
//!
//! Each constant is the default of a command-line flag of the same name (`MAX_FRAME` is
//! `--max-frame`). The README's "Limits" table lists them; keep the two in step.

use std::time::Duration;

/// `--max-frame`: the largest message a `line` or `len` framed connection may send, in bytes.
/// A longer line, or a length prefix above it, closes that connection with a logged reason.
pub const MAX_FRAME: usize = 64 * 1024;

/// `--max-conns`: connections a stream server serves at once. Connections beyond it are accepted
/// and closed at once (logged), so clients see a clean close rather than a hang.
pub const MAX_CONNS: usize = 10_000;

/// `--idle-timeout`: how long a stream server waits for bytes from a client before closing the
/// connection. Zero (the default for `echo`) waits forever, as classic echo servers do.
pub const IDLE_TIMEOUT: Duration = Duration::ZERO;

/// How long a server, once told to stop, lets its connections finish before it exits anyway.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How many bytes one read asks the kernel for at most; also the largest raw chunk.
pub const READ_CHUNK: usize = 64 * 1024;

/// The largest UDP payload (65,535 minus the IPv4 and UDP headers); buffers for datagrams are
/// this big so no datagram is ever truncated.
pub const MAX_DATAGRAM: usize = 65_507;

/// `--linger`: after stdin ends, how long `connect -u` waits for replies still owed.
pub const UDP_LINGER: Duration = Duration::from_secs(2);

/// The backlog passed to `listen(2)`; the kernel caps it at `net.core.somaxconn`.
pub const LISTEN_BACKLOG: i32 = 1024;

/// How long the accept loop backs off after an error such as running out of file descriptors,
/// doubling up to [`ACCEPT_BACKOFF_MAX`].
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);

/// The longest accept back-off.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
