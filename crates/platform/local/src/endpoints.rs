//! Endpoints standing in for the `-rw`, `-ro` and `-r` Services: TCP listeners on loopback that
//! forward each connection to one of their current backends. An endpoint with no backend
//! closes connections at once: `-rw` never sends a write to anything but the primary.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// The backends an endpoint forwards to; replaced as the cluster changes.
#[derive(Debug, Clone, Default)]
pub struct Backends(Arc<RwLock<Vec<SocketAddr>>>);

impl Backends {
    pub fn set(&self, backends: Vec<SocketAddr>) {
        if let Ok(mut guard) = self.0.write() {
            *guard = backends;
        }
    }

    pub fn get(&self) -> Vec<SocketAddr> {
        self.0.read().map(|g| g.clone()).unwrap_or_default()
    }
}

async fn forward(mut client: TcpStream, backend: SocketAddr) {
    let Ok(Ok(mut server)) =
        tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(backend)).await
    else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

/// Accept on `listener` forever, forwarding round-robin to `backends`.
pub async fn serve(listener: TcpListener, backends: Backends) {
    let next = AtomicUsize::new(0);
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let current = backends.get();
        if current.is_empty() {
            drop(client); // no primary (or no ready replica): refuse rather than misroute
            continue;
        }
        let backend = current[next.fetch_add(1, Ordering::Relaxed) % current.len()];
        tokio::spawn(forward(client, backend));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn forwards_and_refuses_without_backends() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 5];
                    if s.read_exact(&mut buf).await.is_ok() {
                        let _ = s.write_all(&buf).await;
                    }
                });
            }
        });
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front_addr = front.local_addr().unwrap();
        let backends = Backends::default();
        tokio::spawn(serve(front, backends.clone()));

        // No backend: the connection is closed without data.
        let mut c = TcpStream::connect(front_addr).await.unwrap();
        let mut buf = Vec::new();
        assert_eq!(c.read_to_end(&mut buf).await.unwrap(), 0);

        backends.set(vec![echo_addr]);
        let mut c = TcpStream::connect(front_addr).await.unwrap();
        c.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
    }
}
