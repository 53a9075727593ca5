//! Unix stream sockets, with stale socket files handled safely.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};

use super::{Peer, StreamListener};
use crate::error::{Error, Result};

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
        let still_ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|meta| Some((meta.dev(), meta.ino())) == self.identity);
        if still_ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The longest Unix socket path Linux takes: `sun_path` is 108 bytes, its final NUL included.
const MAX_PATH: usize = 107;

/// `path`, if it fits in a Unix socket address; the error names the limit otherwise (the
/// kernel's own words, "path must be shorter than SUN_LEN", do not).
fn checked(path: &Path) -> Result<&Path> {
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

/// Connects to the Unix socket at `path`.
///
/// # Errors
/// [`Error::BadAddress`] for a path too long, or [`Error::Connect`] naming the path.
pub async fn connect(path: &Path) -> Result<UnixStream> {
    UnixStream::connect(checked(path)?)
        .await
        .map_err(|source| Error::Connect {
            endpoint: format!("unix:{}", path.display()),
            source,
        })
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
