//! A loopback TCP proxy that a test can cut and restore, to take a real server (PostgreSQL,
//! RabbitMQ, an S3 store) away from the code under test and give it back, without stopping
//! the server itself (which other tests and other people may be using).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

/// Forwards every connection made to [`TcpProxy::addr`] to `upstream`.
///
/// [`TcpProxy::cut`] closes the listening socket (new connections are refused, as by a
/// stopped server) and closes every open connection; [`TcpProxy::restore`] listens again
/// on the same address.
pub struct TcpProxy {
    addr: SocketAddr,
    upstream: String,
    shared: Arc<Shared>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Default)]
struct Shared {
    /// Bytes sent from clients to the upstream, over all connections.
    bytes_up: AtomicU64,
    connections: Mutex<Vec<JoinHandle<()>>>,
}

impl TcpProxy {
    /// Listens on a free loopback port and forwards to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> std::io::Result<TcpProxy> {
        let listener = listen("127.0.0.1:0".parse().expect("addr"))?;
        let proxy = TcpProxy {
            addr: listener.local_addr()?,
            upstream: upstream.to_owned(),
            shared: Arc::default(),
            accept: Mutex::new(None),
        };
        proxy.serve(listener);
        Ok(proxy)
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Bytes forwarded from clients to the upstream so far.
    pub fn bytes_up(&self) -> u64 {
        self.shared.bytes_up.load(Ordering::SeqCst)
    }

    /// Stops listening and closes every open connection.
    pub fn cut(&self) {
        if let Some(accept) = self.accept.lock().expect("lock").take() {
            accept.abort();
        }
        for connection in self.shared.connections.lock().expect("lock").drain(..) {
            connection.abort();
        }
    }

    /// Listens again on the same address (a no-op if it is listening).
    pub async fn restore(&self) -> std::io::Result<()> {
        if self.accept.lock().expect("lock").is_some() {
            return Ok(());
        }
        // The aborted accept task drops its listener on its next poll; retry briefly.
        let mut last = None;
        for _ in 0..100 {
            match listen(self.addr) {
                Ok(listener) => {
                    self.serve(listener);
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Err(last.expect("an error"))
    }

    fn serve(&self, listener: TcpListener) {
        let shared = self.shared.clone();
        let upstream = self.upstream.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let shared2 = shared.clone();
                let upstream = upstream.clone();
                let connection = tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        pipe(client, server, &shared2.bytes_up).await;
                    }
                });
                let mut connections = shared.connections.lock().expect("lock");
                connections.retain(|c| !c.is_finished());
                connections.push(connection);
            }
        });
        *self.accept.lock().expect("lock") = Some(task);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Copies both ways until either side closes, counting client → server bytes.
async fn pipe(client: TcpStream, server: TcpStream, bytes_up: &AtomicU64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if server_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    bytes_up.fetch_add(n as u64, Ordering::SeqCst);
                }
            }
        }
        let _ = server_write.shutdown().await;
    };
    let down = async {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    };
    tokio::join!(up, down);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn forwards_cuts_and_restores() {
        // An echo server upstream.
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = echo.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = socket.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let proxy = TcpProxy::start(&upstream).await.unwrap();
        let roundtrip = |addr| async move {
            let mut s = TcpStream::connect(addr).await?;
            s.write_all(b"ping").await?;
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await?;
            Ok::<_, std::io::Error>((s, buf))
        };
        let (mut open, buf) = roundtrip(proxy.addr()).await.unwrap();
        assert_eq!(&buf, b"ping");
        assert_eq!(proxy.bytes_up(), 4);

        proxy.cut();
        assert!(
            TcpStream::connect(proxy.addr()).await.is_err(),
            "still listening"
        );
        // The open connection was closed: it reads EOF or an error, never an echo.
        let _ = open.write_all(b"more").await;
        let mut rest = Vec::new();
        let read = open.read_to_end(&mut rest).await;
        assert!(read.is_err() || rest.is_empty(), "{rest:?}");

        proxy.restore().await.unwrap();
        let (_, buf) = roundtrip(proxy.addr()).await.unwrap();
        assert_eq!(&buf, b"ping");
    }
}
