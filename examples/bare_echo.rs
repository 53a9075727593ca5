//! The ceiling for `socktalk bench`: the barest tokio echo server there is, over TCP or a Unix
//! stream socket.
//!
//! No framing, no limits, no shutdown handling, no logging: each connection gets a task that reads
//! into a 64 KiB buffer and writes back what it read, until the peer closes. Whatever socktalk's
//! echo server does on top of this costs what the comparison shows.
//!
//! ```sh
//! cargo run --release --example bare_echo -- 127.0.0.1:0
//! cargo run --release --example bare_echo -- unix:/tmp/bare.sock
//! ```
//!
//! Like every socktalk server it prints where it listens as its first line: `listening on
//! tcp://ADDR`, or `listening on unix:PATH`. It binds a Unix path as it is given: a file already
//! there is an error, and the file is left behind at exit (the caller picks a fresh path).

use std::io::Write;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};

#[tokio::main(flavor = "multi_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_string());
    match addr.strip_prefix("unix:") {
        Some(path) => {
            let listener = UnixListener::bind(path)?;
            announce(&format!("unix:{path}"))?;
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        tokio::spawn(echo(stream));
                    }
                    Err(_) => back_off().await,
                }
            }
        }
        None => {
            let listener = TcpListener::bind(&addr).await?;
            announce(&format!("tcp://{}", listener.local_addr()?))?;
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        // Small round trips must not wait for Nagle's algorithm.
                        let _ = stream.set_nodelay(true);
                        tokio::spawn(echo(stream));
                    }
                    Err(_) => back_off().await,
                }
            }
        }
    }
}

/// Prints `listening on ADDR`. The harness reads the address back from this line, so it must
/// leave at once.
fn announce(addr: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on {addr}")?;
    stdout.flush()
}

/// After a failed accept (out of descriptors and the like): a moment's pause, then the loop
/// goes on serving the others.
async fn back_off() {
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
}

/// Reads and writes back until the peer closes or an error ends the connection.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}
