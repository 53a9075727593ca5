//! The ceiling for `socktalk bench`: the barest tokio TCP echo server there is.
//!
//! No framing, no limits, no shutdown handling, no logging: each connection gets a task that reads
//! into a 64 KiB buffer and writes back what it read, until the peer closes. Whatever socktalk's
//! echo server does on top of this costs what the comparison shows.
//!
//! ```sh
//! cargo run --release --example bare_echo -- 127.0.0.1:0
//! ```
//!
//! Like every socktalk server it prints `listening on tcp://ADDR` as its first line.

use std::io::Write;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main(flavor = "multi_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_string());
    let listener = TcpListener::bind(&addr).await?;

    // The harness reads the port back from this line, so it must leave at once.
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on tcp://{}", listener.local_addr()?)?;
    stdout.flush()?;

    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of descriptors and the like: back off a moment, keep serving the others.
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        tokio::spawn(echo(stream));
    }
}

/// Reads and writes back until the peer closes or an error ends the connection.
async fn echo(mut stream: TcpStream) {
    // Small round trips must not wait for Nagle's algorithm.
    let _ = stream.set_nodelay(true);
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
