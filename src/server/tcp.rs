//! SIP over TCP: one reader and one writer task per connection, framed by
//! Content-Length. The core names a connection by its peer address.

use crate::sip::wire::StreamFramer;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Most TCP connections held at once; more are closed on accept.
pub const MAX_CONNECTIONS: usize = 1024;
/// Messages queued for one connection's writer before further ones are dropped.
const WRITE_QUEUE: usize = 64;

/// What the connection tasks tell the core.
#[derive(Debug)]
pub enum TcpEvent {
    Connected {
        peer: SocketAddr,
        writer: mpsc::Sender<Vec<u8>>,
    },
    Message {
        peer: SocketAddr,
        data: Vec<u8>,
    },
    Closed {
        peer: SocketAddr,
    },
}

/// Accepts connections for as long as the listener lives.
pub async fn accept_loop(
    listener: TcpListener,
    events: mpsc::Sender<TcpEvent>,
    max_message: usize,
) {
    let open = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if open.load(std::sync::atomic::Ordering::Relaxed) >= MAX_CONNECTIONS {
            tracing::warn!(%peer, "tcp connection refused: too many connections");
            drop(stream);
            continue;
        }
        open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let events = events.clone();
        let open = open.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, events, max_message).await;
            open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        });
    }
}

/// Opens a connection to a peer we must reach (e.g. a BYE after the caller's
/// connection closed) and sends the first message on it.
pub fn connect_and_send(
    peer: SocketAddr,
    first: Vec<u8>,
    events: mpsc::Sender<TcpEvent>,
    max_message: usize,
) {
    tokio::spawn(async move {
        match tokio::time::timeout(std::time::Duration::from_secs(5), TcpStream::connect(peer))
            .await
        {
            Ok(Ok(stream)) => {
                let (tx, rx) = mpsc::channel(WRITE_QUEUE);
                if tx.try_send(first).is_err() {
                    return;
                }
                run_connection(stream, peer, events, max_message, tx, rx).await;
            }
            Ok(Err(e)) => tracing::warn!(%peer, error = %e, "tcp connect failed"),
            Err(_) => tracing::warn!(%peer, "tcp connect timed out"),
        }
    });
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    events: mpsc::Sender<TcpEvent>,
    max_message: usize,
) {
    let (tx, rx) = mpsc::channel(WRITE_QUEUE);
    run_connection(stream, peer, events, max_message, tx, rx).await;
}

async fn run_connection(
    stream: TcpStream,
    peer: SocketAddr,
    events: mpsc::Sender<TcpEvent>,
    max_message: usize,
    tx: mpsc::Sender<Vec<u8>>,
    mut rx: mpsc::Receiver<Vec<u8>>,
) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    if events
        .send(TcpEvent::Connected { peer, writer: tx })
        .await
        .is_err()
    {
        return;
    }
    let write_task = tokio::spawn(async move {
        while let Some(data) = rx.recv().await {
            if writer.write_all(&data).await.is_err() {
                break;
            }
        }
    });
    let mut framer = StreamFramer::new(max_message);
    let mut buf = vec![0u8; 8192];
    'read: loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Err(e) = framer.push(&buf[..n]) {
            tracing::warn!(%peer, error = %e, "tcp stream refused");
            break;
        }
        loop {
            match framer.pop() {
                Ok(Some(data)) => {
                    if events.send(TcpEvent::Message { peer, data }).await.is_err() {
                        break 'read;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "tcp stream refused");
                    break 'read;
                }
            }
        }
    }
    write_task.abort();
    let _ = events.send(TcpEvent::Closed { peer }).await;
}
