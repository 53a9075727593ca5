//! Unix stream sockets, with stale socket files handled safely.
//!
//! A path that starts with `@` (`unix:@chat`, `-U @chat`) names a socket in Linux's abstract
//! namespace: no file is created or removed, and the name is freed when its socket closes.
//! A file whose name starts with `@` is reached through a directory: `unix:./@file`.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};

use super::deadline::Deadline;
use super::{Peer, StreamListener};
use crate::error::{Error, Result};
use crate::limits::{UNIX_RETRY_MAX, UNIX_RETRY_MIN};

/// A bound Unix listener that removes its socket file when dropped, if the file is still the one
/// it created (another server may have replaced it since).
#[derive(Debug)]
pub struct UnixServer {
    listener: UnixListener,
    path: PathBuf,
    /// `(device, inode)` of the socket file we created.
    identity: Option<(u64, u64)>,
}

impl UnixServer {
    /// The socket file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for UnixServer {
    fn drop(&mut self) {
        if abstract_name(&self.path).is_some() {
            return;
        }
        let still_ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|meta| Some((meta.dev(), meta.ino())) == self.identity);
        if still_ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The longest Unix socket path Linux takes: `sun_path` is 108 bytes, its final NUL included.
const MAX_PATH: usize = 107;

/// The name of an abstract socket (`@chat` is `chat`), or `None` for a file's path.
pub fn abstract_name(path: &Path) -> Option<&[u8]> {
    path.as_os_str().as_bytes().strip_prefix(b"@")
}

/// `path`, if it fits in a Unix socket address; the error names the limit otherwise (the
/// kernel's own words, "path must be shorter than SUN_LEN", do not).
fn checked(path: &Path) -> Result<&Path> {
    let bad = |reason: String| Error::BadAddress {
        input: format!("unix:{}", path.display()),
        reason,
    };
    if let Some(name) = abstract_name(path) {
        // The name goes after a leading NUL in the 108 bytes of `sun_path`, with no NUL after it.
        if name.is_empty() {
            return Err(bad(
                "an abstract socket needs a name after '@', as in unix:@chat".into(),
            ));
        }
        if name.len() > MAX_PATH {
            return Err(bad(format!(
                "an abstract socket name is at most {MAX_PATH} bytes, and this one is {}",
                name.len()
            )));
        }
        return Ok(path);
    }
    let len = path.as_os_str().len();
    if len > MAX_PATH {
        return Err(Error::BadAddress {
            input: format!("unix:{}", path.display()),
            reason: format!(
                "a Unix socket path is at most {MAX_PATH} bytes, and this one is {len} \
                 (use a shorter directory, or a relative path)"
            ),
        });
    }
    Ok(path)
}

/// Binds a Unix stream listener at `path`.
///
/// If a socket file is already there, socktalk connects to it: a refusal means its server is
/// dead, so the file is removed and the bind retried; an answer means a live server owns it.
///
/// # Errors
/// [`Error::BadAddress`] for a path too long, [`Error::UnixInUse`], [`Error::NotASocket`], or
/// [`Error::Bind`].
pub fn listen(path: &Path) -> Result<UnixServer> {
    let path = checked(path)?;
    let bind_err = |source| Error::Bind {
        endpoint: format!("unix:{}", path.display()),
        source,
    };
    if let Some(name) = abstract_name(path) {
        // A name in use is held by a live socket: the kernel frees it when the socket closes.
        let listener = match listen_abstract(name) {
            Err(err) if err.kind() == io::ErrorKind::AddrInUse => {
                return Err(Error::UnixInUse(path.to_path_buf()));
            }
            other => other.map_err(bind_err)?,
        };
        return Ok(UnixServer {
            listener,
            path: path.to_path_buf(),
            identity: None,
        });
    }
    let listener = match UnixListener::bind(path) {
        Ok(listener) => listener,
        Err(err) if err.kind() == io::ErrorKind::AddrInUse => {
            let meta = std::fs::symlink_metadata(path).map_err(bind_err)?;
            if !meta.file_type().is_socket() {
                return Err(Error::NotASocket(path.to_path_buf()));
            }
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => return Err(Error::UnixInUse(path.to_path_buf())),
                Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {
                    tracing::info!(path = %path.display(), "removing stale socket file");
                    std::fs::remove_file(path).map_err(bind_err)?;
                    UnixListener::bind(path).map_err(bind_err)?
                }
                Err(err) => return Err(bind_err(err)),
            }
        }
        Err(err) => return Err(bind_err(err)),
    };
    let identity = std::fs::metadata(path)
        .ok()
        .map(|meta| (meta.dev(), meta.ino()));
    Ok(UnixServer {
        listener,
        path: path.to_path_buf(),
        identity,
    })
}

/// Binds a listener on the abstract socket `name`.
#[cfg(target_os = "linux")]
fn listen_abstract(name: &[u8]) -> io::Result<UnixListener> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    let listener = std::os::unix::net::UnixListener::bind_addr(&addr)?;
    listener.set_nonblocking(true)?;
    UnixListener::from_std(listener)
}

#[cfg(not(target_os = "linux"))]
fn listen_abstract(_name: &[u8]) -> io::Result<UnixListener> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract Unix sockets are Linux's",
    ))
}

/// The address of the socket at `path`: a file, or the abstract name after `@`, which the
/// kernel takes after a NUL byte.
fn sock_addr(path: &Path) -> io::Result<socket2::SockAddr> {
    match abstract_name(path) {
        Some(name) => {
            let mut nul_name = Vec::with_capacity(name.len() + 1);
            nul_name.push(0);
            nul_name.extend_from_slice(name);
            socket2::SockAddr::unix(std::ffi::OsStr::from_bytes(&nul_name))
        }
        None => socket2::SockAddr::unix(path),
    }
}

/// One connect to `addr`, without waiting: a Unix connect is done at once, or fails with
/// `WouldBlock` when the server's accept queue is full.
fn try_connect(addr: &socket2::SockAddr) -> io::Result<UnixStream> {
    let socket = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.connect(addr)?;
    UnixStream::from_std(socket.into())
}

/// Connects to the Unix socket at `path` (a file, or `@name` for an abstract one). While the
/// server's accept queue is full, it tries again, more and more slowly, until `deadline` (a
/// blocking `connect` would wait for room the same way).
///
/// # Errors
/// [`Error::BadAddress`] for a path too long, [`Error::Connect`] naming the path, or
/// [`Error::TimedOut`] when the queue stayed full until the deadline.
pub async fn connect(path: &Path, deadline: Deadline) -> Result<UnixStream> {
    let (addr, endpoint) = target(path)?;
    let connect_err = |source| Error::Connect {
        endpoint: endpoint.clone(),
        source,
    };
    let mut pause = UNIX_RETRY_MIN;
    loop {
        match try_connect(&addr) {
            Ok(stream) => return Ok(stream),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => return Err(connect_err(err)),
        }
        if pause == UNIX_RETRY_MIN {
            tracing::info!("{endpoint}: the server's accept queue is full; trying again");
        }
        let wait = match deadline.remaining() {
            Some(left) if left.is_zero() => {
                return Err(Error::TimedOut(format!(
                    "cannot connect to {endpoint}: the server's accept queue stayed full for {}",
                    deadline.describe()
                )));
            }
            Some(left) => pause.min(left),
            None => pause,
        };
        tokio::time::sleep(wait).await;
        pause = (pause * 2).min(UNIX_RETRY_MAX);
    }
}

/// Connects to the Unix socket at `path` once: a full accept queue is an error at once
/// (`resource temporarily unavailable`), as a load generator counts it, not a wait.
///
/// # Errors
/// [`Error::BadAddress`] for a path too long, [`Error::Connect`] naming the path.
pub fn connect_once(path: &Path) -> Result<UnixStream> {
    let (addr, endpoint) = target(path)?;
    try_connect(&addr).map_err(|source| Error::Connect { endpoint, source })
}

/// The socket address of `path` and its name for people (`unix:/tmp/chat.sock`).
fn target(path: &Path) -> Result<(socket2::SockAddr, String)> {
    let path = checked(path)?;
    let endpoint = format!("unix:{}", path.display());
    match sock_addr(path) {
        Ok(addr) => Ok((addr, endpoint)),
        Err(source) => Err(Error::Connect { endpoint, source }),
    }
}

impl StreamListener for UnixServer {
    type Stream = UnixStream;

    async fn accept(&self) -> io::Result<(UnixStream, Peer)> {
        let (stream, _peer) = self.listener.accept().await?;
        // Unix clients are almost always unnamed; the peer's process id says more.
        let who = match stream.peer_cred().ok().and_then(|cred| cred.pid()) {
            Some(pid) => format!("unix:pid={pid}"),
            None => "unix:?".to_string(),
        };
        Ok((
            stream,
            Peer {
                name: who,
                ip: None,
            },
        ))
    }

    fn local_display(&self) -> String {
        format!("unix:{}", self.path.display())
    }
}
