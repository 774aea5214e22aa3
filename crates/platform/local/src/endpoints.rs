//! Endpoints standing in for the `-rw`, `-ro` and `-r` Services: TCP listeners on loopback that
//! forward each connection to one of their current backends. An endpoint with no backend
//! closes connections at once: `-rw` never sends a write to anything but the primary.
//!
//! `-rw` also closes the connections it forwarded to a backend once that backend leaves it
//! (a failed, isolated or demoted primary): a client then reconnects to the new primary at
//! once, instead of waiting on a connection to a host that may never answer again.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The backends an endpoint forwards to; replaced as the cluster changes.
#[derive(Debug, Clone)]
pub struct Backends(Arc<watch::Sender<Vec<SocketAddr>>>);

impl Default for Backends {
    fn default() -> Self {
        Backends(Arc::new(watch::Sender::new(Vec::new())))
    }
}

impl Backends {
    pub fn set(&self, backends: Vec<SocketAddr>) {
        self.0.send_if_modified(|current| {
            let changed = *current != backends;
            *current = backends;
            changed
        });
    }

    pub fn get(&self) -> Vec<SocketAddr> {
        self.0.borrow().clone()
    }
}

/// Which forwarded connections an endpoint keeps when its backends change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRemoval {
    /// Keep them (replicas: a brief stale report must not cut readers off).
    Keep,
    /// Close those to a backend that left (the primary's endpoint).
    Close,
}

async fn forward(
    mut client: TcpStream,
    backend: SocketAddr,
    mut changes: Option<watch::Receiver<Vec<SocketAddr>>>,
) {
    let Ok(Ok(mut server)) =
        tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(backend)).await
    else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let removed = async {
        match changes.as_mut() {
            Some(rx) => {
                while rx.changed().await.is_ok() {
                    if !rx.borrow_and_update().contains(&backend) {
                        return;
                    }
                }
                std::future::pending::<()>().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        () = removed => {} // both sockets close on return
    }
}

/// Accept on `listener` forever, forwarding round-robin to `backends`.
pub async fn serve(listener: TcpListener, backends: Backends, on_removal: OnRemoval) {
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
        let changes = (on_removal == OnRemoval::Close).then(|| backends.0.subscribe());
        tokio::spawn(forward(client, backend, changes));
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
        tokio::spawn(serve(front, backends.clone(), OnRemoval::Close));

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

        // The backend leaves: the forwarded connection is closed.
        let mut held = TcpStream::connect(front_addr).await.unwrap();
        held.write_all(b"x").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        backends.set(Vec::new());
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), held.read_to_end(&mut rest)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    }
}
