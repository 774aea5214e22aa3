//! A real S3-compatible server for tests: moto (installed by `scripts/install.sh`), started on
//! a free loopback port and stopped when the guard drops (also on panic).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test support may panic

use crate::free_port;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "pgherd-test-key";
pub const SECRET_KEY: &str = "pgherd-test-secret";

/// A running moto server; killed on drop.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    pub port: u16,
    tls: bool,
}

impl Moto {
    /// Starts moto serving HTTPS with the given certificate and key files; creates `bucket`.
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path, bucket: &str) -> Moto {
        let cert_args = [
            "-s".into(),
            "-c".into(),
            cert.as_os_str().to_owned(),
            "-k".into(),
            key.as_os_str().to_owned(),
        ];
        let moto = Moto::spawn(&cert_args, true);
        let port = moto.port;
        // Create the bucket over HTTPS with Python (already required by moto), retrying until
        // the server is up.
        let script = format!(
            "import requests, time, urllib3\nurllib3.disable_warnings()\n\
             for _ in range(600):\n\
             \x20   try:\n\
             \x20       r = requests.put('https://127.0.0.1:{port}/{bucket}', verify=False, timeout=5)\n\
             \x20       assert r.status_code == 200, r.text\n\
             \x20       break\n\
             \x20   except requests.exceptions.ConnectionError:\n\
             \x20       time.sleep(0.1)\n\
             else:\n\
             \x20   raise SystemExit('moto did not answer')\n"
        );
        let status = Command::new("python3")
            .args(["-c", &script])
            .status()
            .unwrap();
        assert!(status.success(), "create bucket {bucket} over HTTPS");
        moto
    }

    /// Starts moto and waits until it answers. Fails the test (does not skip it) when moto is
    /// missing.
    pub fn start() -> Moto {
        let moto = Moto::spawn(&[], false);
        let port = moto.port;
        let deadline = Instant::now() + Duration::from_secs(60);
        while http(port, "GET", "/").is_err() {
            assert!(
                Instant::now() < deadline,
                "moto did not answer on port {port} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// `python3 -m moto.server` on a free loopback port, with `extra` arguments.
    fn spawn(extra: &[std::ffi::OsString], tls: bool) -> Moto {
        require_moto();
        let port = free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3 -m moto.server (run ./scripts/install.sh)");
        Moto { child, port, tls }
    }

    /// `http://127.0.0.1:PORT` (or `https://`).
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (moto accepts unsigned requests).
    pub fn create_bucket(&self, bucket: &str) {
        let status = http(self.port, "PUT", &format!("/{bucket}")).expect("create bucket");
        assert!(
            status.starts_with("HTTP/1.1 200"),
            "create bucket {bucket}: {status}"
        );
    }

    /// Environment for barman-cloud's clients talking to this server.
    pub fn barman_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ]
    }
}

fn require_moto() {
    let probe = Command::new("python3")
        .args(["-c", "import moto.server, flask, flask_cors"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        matches!(probe, Ok(s) if s.success()),
        "moto's S3 server is not installed (python3 -m moto.server): run ./scripts/install.sh"
    );
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One bare HTTP/1.1 request; returns the status line.
fn http(port: u16, method: &str, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    Ok(text.lines().next().unwrap_or("").to_string())
}

/// A TCP forwarder in front of a server that can be closed (connections are refused by
/// being reset at once) and opened again: an object-store outage without losing the store.
#[derive(Debug, Clone)]
pub struct Gate {
    pub port: u16,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Gate {
    /// Forwards a free loopback port to `127.0.0.1:target`.
    pub fn start(target: u16) -> Gate {
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let gate = Gate {
            port,
            open: open.clone(),
        };
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if !open.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        gate
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Refuse (`false`) or forward (`true`) new connections.
    pub fn set_open(&self, open: bool) {
        self.open.store(open, std::sync::atomic::Ordering::SeqCst);
    }
}
