//! `socktalk serve`: binds every listener, opens the history database, starts the writer thread
//! and the hub, and serves sessions until SIGINT/SIGTERM.
//!
//! Startup errors (a port in use, a database that cannot be opened or written) end the process
//! with a clear message before anyone connects, and before "listening on" is printed. On
//! shutdown the hub stops taking messages, delivers everything already committed, tells every
//! member, and the database is closed cleanly.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::history::{Store, Sync};
use super::hub::{Hub, HubConfig, Request};
use super::session::{self, SessionConfig};
use crate::access::{AccessPolicy, Gate};
use crate::endpoint::{Endpoint, Family};
use crate::error::{Error, Result};
use crate::limits::{
    CHAT_TCP_KEEPALIVE, CHAT_TCP_KEEPALIVE_INTERVAL, CHAT_TCP_KEEPALIVE_PROBES,
    CHAT_TCP_USER_TIMEOUT, REFUSAL_LINGER,
};
use crate::server::{self, Entry, RefusalStyle};
use crate::transport::{Peek, StreamListener, tcp, tls, unix};
use crate::web::{self, OriginPolicy, WebState};

/// Requests queued from sessions to the hub before senders wait.
const HUB_QUEUE: usize = 4096;

/// Everything `socktalk serve` needs.
#[derive(Debug, Clone)]
pub struct ChatConfig {
    /// TCP addresses to listen on.
    pub tcp: Vec<Endpoint>,
    /// A Unix socket path to listen on.
    pub unix: Option<PathBuf>,
    /// The history database file, or `:memory:`.
    pub db: String,
    /// How hard commits try to reach the disk.
    pub db_sync: Sync,
    /// The largest the database file may grow, in bytes (0: no cap).
    pub db_max_size: u64,
    /// Most connections served at once, across all listeners.
    pub max_conns: usize,
    /// Most connections from one address at once, across all listeners (0: no cap).
    pub max_conns_per_ip: usize,
    /// `--allow`/`--deny`.
    pub access: AccessPolicy,
    /// TLS on every listener, when on.
    pub tls: tls::ServerOptions,
    /// Per-connection settings.
    pub session: SessionConfig,
    /// Hub settings.
    pub hub: HubConfig,
    /// Where to serve the web page and its WebSocket, if anywhere.
    pub http: Option<Endpoint>,
    /// Origins allowed to open the WebSocket besides the serving host.
    pub allow_origins: Vec<String>,
    /// How often each WebSocket is pinged (zero: never).
    pub ws_ping: Duration,
}

/// Runs the chat server until `shutdown` is cancelled.
///
/// # Errors
/// Binding a listener or opening the database failed.
pub async fn run(config: ChatConfig, family: Family, shutdown: CancellationToken) -> Result<()> {
    let mut tcp_listeners = Vec::new();
    for endpoint in &config.tcp {
        if let Endpoint::Unix(path) = endpoint {
            return Err(Error::Usage(format!(
                "--tcp takes an internet address; use --unix {}",
                path.display()
            )));
        }
        let listener = tcp::listen(endpoint, family).await?;
        // Accepted connections inherit it.
        keep_alive(&listener).map_err(|source| Error::Bind {
            endpoint: listener.local_display(),
            source,
        })?;
        tcp_listeners.push(listener);
    }
    let unix_listener = config.unix.as_deref().map(unix::listen).transpose()?;
    let acceptor = tls::Acceptor::new(&config.tls)?;
    server::reload_on_sighup(acceptor.as_ref());
    let http_listener = match &config.http {
        Some(endpoint) => Some(tcp::listen(endpoint, family).await?),
        None => None,
    };

    let store = Store::open(&config.db, config.db_sync, config.db_max_size)
        .map_err(|err| Error::Database(err.to_string()))?;
    let (committed_tx, committed_rx) = mpsc::unbounded_channel();
    let writer = store.spawn_writer(committed_tx)?;
    let hub = Hub::new(config.hub.clone(), store, writer)
        .map_err(|err| Error::Database(err.to_string()))?;
    let (hub_tx, hub_rx) = mpsc::channel(HUB_QUEUE);
    let hub_task = tokio::spawn(hub.run(hub_rx, committed_rx, shutdown.clone()));
    tracing::info!(db = %config.db, "history database open");

    let context = Context {
        hub_tx,
        session: Arc::new(config.session.clone()),
        entry: Entry {
            gate: Gate::new(
                config.access.clone(),
                config.max_conns,
                config.max_conns_per_ip,
            ),
            tls: acceptor,
            refusal: RefusalStyle::Line,
        },
        shutdown,
    };
    let mut servers = tokio::task::JoinSet::new();
    for listener in tcp_listeners {
        serve(&mut servers, listener, &context);
    }
    if let Some(listener) = unix_listener {
        serve(&mut servers, listener, &context);
    }
    if let Some(listener) = http_listener {
        let scheme = if context.entry.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let url = match listener.local_addr() {
            Ok(addr) => format!("{scheme}://{addr}/"),
            Err(_) => format!("{scheme}://?/"),
        };
        server::announce(&url);
        let state = Arc::new(WebState {
            hub_tx: context.hub_tx.clone(),
            session: context.session.clone(),
            shutdown: context.shutdown.clone(),
            origins: OriginPolicy {
                allowed: config.allow_origins.clone(),
            },
            ping: config.ws_ping,
            sessions: tokio_util::task::TaskTracker::new(),
            head_timeout: config.tls.handshake_timeout,
            refused_origins: std::sync::Mutex::default(),
        });
        let entry = Entry {
            refusal: RefusalStyle::Http,
            ..context.entry.clone()
        };
        servers.spawn(web::serve(listener, entry, state));
    }
    // The listeners' tasks hold their own copies; the hub ends on shutdown, not on this.
    drop(context);
    while servers.join_next().await.is_some() {}
    let _ = hub_task.await;
    Ok(())
}

/// Turns TCP keepalive on for the connections `listener` accepts, with a user timeout, so that
/// the kernel notices a member whose machine vanished without a word, whether or not messages
/// were on their way to it (see [`CHAT_TCP_KEEPALIVE`] and [`CHAT_TCP_USER_TIMEOUT`]). `nc` and
/// every other client answer its probes without knowing.
fn keep_alive(listener: &tokio::net::TcpListener) -> std::io::Result<()> {
    let keepalive = TcpKeepalive::new()
        .with_time(CHAT_TCP_KEEPALIVE)
        .with_interval(CHAT_TCP_KEEPALIVE_INTERVAL)
        .with_retries(CHAT_TCP_KEEPALIVE_PROBES);
    let socket = SockRef::from(listener);
    socket.set_tcp_keepalive(&keepalive)?;
    socket.set_tcp_user_timeout(Some(CHAT_TCP_USER_TIMEOUT))
}

/// What every listener's sessions share.
#[derive(Clone)]
struct Context {
    hub_tx: mpsc::Sender<Request>,
    session: Arc<SessionConfig>,
    /// Access rules, `--max-conns` (across all listeners) and TLS.
    entry: Entry,
    shutdown: CancellationToken,
}

fn serve<L: StreamListener>(
    servers: &mut tokio::task::JoinSet<()>,
    listener: L,
    context: &Context,
) {
    server::announce(&listener.local_display());
    server::announce_tls(context.entry.tls.as_ref());
    let entry = context.entry.clone();
    let shutdown = context.shutdown.clone();
    let context = context.clone();
    servers.spawn(server::run(
        listener,
        entry,
        shutdown,
        move |mut conn, peer, _, shutdown| {
            let hub_tx = context.hub_tx.clone();
            let config = context.session.clone();
            async move {
                if !conn.is_tls() && has_sent_client_hello(conn.get_ref()) {
                    // A client with --tls on this plain port, seen before it is given a nick
                    // (when its ClientHello is in already; else the session's first read sees it).
                    tracing::info!(%peer, "a TLS handshake on a plain port; closing");
                    let line = format!("{}\n", tls::TLS_ON_PLAIN);
                    let farewell = server::close_gently(&mut conn, line.as_bytes());
                    let _ = tokio::time::timeout(REFUSAL_LINGER, farewell).await;
                    return;
                }
                session::serve(conn, peer.name, hub_tx, config, shutdown).await;
            }
        },
    ));
}

/// Whether what `stream` has received so far, looked at without waiting, starts like a TLS
/// ClientHello.
fn has_sent_client_hello<S: Peek>(stream: &S) -> bool {
    let mut first = [0u8; 3];
    stream
        .peek_arrived(&mut first)
        .is_ok_and(|n| n > 0 && tls::looks_like_client_hello(&first[..n]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_client_hello_that_has_arrived_is_seen_without_waiting() {
        use std::io::Write;
        let listener = tcp::bind_addr("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut tls_client = std::net::TcpStream::connect(addr).unwrap();
        let (tls_side, _) = listener.accept().await.unwrap();
        let mut nc = std::net::TcpStream::connect(addr).unwrap();
        let (nc_side, _) = listener.accept().await.unwrap();
        // Nothing sent yet: no, at once.
        assert!(!has_sent_client_hello(&tls_side));
        tls_client
            .write_all(&[0x16, 0x03, 0x01, 0x00, 0xc8, 0x01])
            .unwrap();
        nc.write_all(b"hello\n").unwrap();
        // Sent is not yet arrived: look again until it has (loopback takes a moment at most).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !has_sent_client_hello(&tls_side) {
            assert!(std::time::Instant::now() < deadline, "never seen");
            tokio::task::yield_now().await;
        }
        let mut line = [0u8; 6];
        while nc_side.peek_arrived(&mut line).unwrap_or(0) < 6 {
            assert!(std::time::Instant::now() < deadline, "never arrived");
            tokio::task::yield_now().await;
        }
        assert!(!has_sent_client_hello(&nc_side));
    }

    #[tokio::test]
    async fn accepted_connections_are_kept_alive() {
        let listener = tcp::bind_addr("127.0.0.1:0".parse().unwrap()).unwrap();
        keep_alive(&listener).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let socket = SockRef::from(&accepted);
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.tcp_keepalive_time().unwrap(), CHAT_TCP_KEEPALIVE);
        assert_eq!(
            socket.tcp_keepalive_interval().unwrap(),
            CHAT_TCP_KEEPALIVE_INTERVAL
        );
        assert_eq!(
            socket.tcp_keepalive_retries().unwrap(),
            CHAT_TCP_KEEPALIVE_PROBES
        );
        assert_eq!(
            socket.tcp_user_timeout().unwrap(),
            Some(CHAT_TCP_USER_TIMEOUT)
        );
    }
}
