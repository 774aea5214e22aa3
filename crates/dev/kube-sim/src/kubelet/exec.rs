//! `pods/exec` over WebSocket (API reference "Pod v1 core: connect exec"; the streaming
//! protocol `v5.channel.k8s.io`/`v4.channel.k8s.io` kubectl speaks): the command runs inside
//! the container (its mount namespace, user and environment, via `nsenter`); each binary
//! message starts with its channel — 0 stdin, 1 stdout, 2 stderr, 3 the final Status
//! (exit code), 4 terminal resizes (with `tty=true`, see `tty`), 255 (v5) closing a stream.
//! No SPDY.

use super::Shared;
use crate::error::ApiError;
use crate::server::{ApiServer, Body, BoxFuture, Subresource};
use crate::verbs::Target;
use base64::Engine;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Request, Response};
use serde_json::json;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

#[derive(Debug)]
pub struct PodExec {
    pub shared: Arc<Mutex<Shared>>,
}

const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

impl Subresource for PodExec {
    fn handles(&self, storage: &str, sub: &str) -> bool {
        storage == "/pods" && sub == "exec"
    }

    fn call(
        &self,
        server: Arc<ApiServer>,
        t: Target,
        mut request: Request<Bytes>,
    ) -> BoxFuture<Result<Response<Body>, ApiError>> {
        let shared = self.shared.clone();
        Box::pin(async move {
            let pairs: Vec<(String, String)> = request
                .uri()
                .query()
                .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default();
            let argv: Vec<String> = pairs
                .iter()
                .filter(|(k, _)| k == "command")
                .map(|(_, v)| v.clone())
                .collect();
            let flag = |k: &str| {
                pairs
                    .iter()
                    .any(|(n, v)| n == k && (v == "true" || v == "1"))
            };
            let (stdin, stdout, stderr, tty) =
                (flag("stdin"), flag("stdout"), flag("stderr"), flag("tty"));
            if argv.is_empty() {
                return Err(ApiError::bad_request("you must specify at least 1 command"));
            }
            let pod = {
                let s = server
                    .state
                    .lock()
                    .map_err(|_| ApiError::internal("state lock poisoned"))?;
                s.store
                    .get("/pods", &t.namespace, &t.name)
                    .cloned()
                    .ok_or_else(|| ApiError::not_found("", "pods", &t.name))?
            };
            let container = match pairs.iter().find(|(k, _)| k == "container") {
                Some((_, c)) => c.clone(),
                None => pod["spec"]["containers"][0]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            };
            let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
            let running = shared.lock().ok().and_then(|s| {
                let st = s.pods.get(uid)?.state.lock().ok()?.clone();
                Some((
                    *st.pids.get(&container)?,
                    st.launches.get(&container)?.clone(),
                ))
            });
            let Some((pid, launch)) = running else {
                return Err(ApiError::bad_request(format!(
                    "unable to upgrade connection: container not found (\"{container}\")"
                )));
            };
            let header = |k: &str| {
                request
                    .headers()
                    .get(k)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            };
            if !header("upgrade").eq_ignore_ascii_case("websocket") {
                return Err(ApiError::bad_request(
                    "kube-sim serves pods/exec over WebSocket only (no SPDY)",
                ));
            }
            let offered = header("sec-websocket-protocol");
            let protocol = ["v5.channel.k8s.io", "v4.channel.k8s.io"]
                .into_iter()
                .find(|p| offered.split(',').any(|o| o.trim() == *p))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "no supported streaming protocol (v5.channel.k8s.io, v4.channel.k8s.io)",
                    )
                })?;
            let key = header("sec-websocket-key");
            let digest = ring::digest::digest(
                &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
                format!("{key}{WS_GUID}").as_bytes(),
            );
            let accept = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
            let mut cmd = super::container::exec_in(pid, &launch, &argv);
            if tty {
                cmd = super::tty::on_terminal(&cmd);
            }
            cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() })
                .stdout(if stdout {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stderr(if stderr {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .kill_on_drop(true);
            let upgrade = hyper::upgrade::on(&mut request);
            tokio::spawn(async move {
                if let Ok(io) = upgrade.await {
                    let io = hyper_util::rt::TokioIo::new(io);
                    session(io, cmd, protocol == "v5.channel.k8s.io", tty).await;
                }
            });
            Response::builder()
                .status(101)
                .header("Upgrade", "websocket")
                .header("Connection", "Upgrade")
                .header("Sec-WebSocket-Accept", accept)
                .header("Sec-WebSocket-Protocol", protocol)
                .body(http_body_util::Empty::new().boxed())
                .map_err(|e| ApiError::internal(e.to_string()))
        })
    }
}

/// Run the command, relaying its streams over the WebSocket.
async fn session<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    io: S,
    mut cmd: tokio::process::Command,
    v5: bool,
    tty: bool,
) {
    let (mut rd, mut wr) = tokio::io::split(io);
    let (tx, mut rx) = mpsc::channel::<(u8, Vec<u8>)>(64);
    let writer = tokio::spawn(async move {
        while let Some((opcode, payload)) = rx.recv().await {
            if wr.write_all(&frame(opcode, &payload)).await.is_err() {
                break;
            }
            if opcode == 8 {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let send = |tx: &mpsc::Sender<(u8, Vec<u8>)>, channel: u8, data: &[u8]| {
        let mut m = vec![channel];
        m.extend_from_slice(data);
        let tx = tx.clone();
        async move { tx.send((2, m)).await.is_ok() }
    };
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let status = json!({"metadata": {}, "status": "Failure", "message": e.to_string()});
            send(&tx, 3, status.to_string().as_bytes()).await;
            let _ = tx.send((8, vec![0x03, 0xe8])).await;
            let _ = writer.await;
            return;
        }
    };
    let mut stdin = child.stdin.take();
    let pid = child.id().filter(|_| tty);
    let pumps: Vec<_> = [
        (
            1u8,
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn AsyncRead + Unpin + Send>),
        ),
        (
            2u8,
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn AsyncRead + Unpin + Send>),
        ),
    ]
    .into_iter()
    .filter_map(|(ch, s)| s.map(|s| (ch, s)))
    .map(|(ch, mut s)| {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let mut m = vec![ch];
                        m.extend_from_slice(&buf[..n]);
                        if tx.send((2, m)).await.is_err() {
                            break;
                        }
                    }
                }
            }
        })
    })
    .collect();
    // Client → stdin, until the client closes or the command ends.
    let reader = {
        let tx = tx.clone();
        async move {
            while let Some((opcode, payload)) = read_message(&mut rd).await {
                match opcode {
                    8 => break,
                    9 => {
                        let _ = tx.send((10, payload)).await;
                    }
                    1 | 2 if !payload.is_empty() => match payload[0] {
                        0 => {
                            if let Some(i) = stdin.as_mut() {
                                if i.write_all(&payload[1..]).await.is_err() {
                                    stdin = None;
                                }
                            }
                        }
                        4 => {
                            let size = super::tty::parse_resize(&payload[1..]);
                            if let (Some(pid), Some((w, h))) = (pid, size) {
                                tokio::spawn(super::tty::resize(pid, w, h));
                            }
                        }
                        255 if v5 && payload.get(1) == Some(&0) => stdin = None,
                        _ => {}
                    },
                    _ => {}
                }
            }
            drop(stdin);
        }
    };
    let status = tokio::select! {
        s = child.wait() => s.ok(),
        _ = reader => { let _ = child.start_kill(); child.wait().await.ok() }
    };
    for p in pumps {
        let _ = p.await;
    }
    let code = status.and_then(|s| s.code()).unwrap_or(137);
    let status = if code == 0 {
        json!({"metadata": {}, "status": "Success"})
    } else {
        json!({"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
            "message": format!("command terminated with non-zero exit code: exit status {code}"),
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}})
    };
    send(&tx, 3, status.to_string().as_bytes()).await;
    let _ = tx.send((8, vec![0x03, 0xe8])).await;
    drop(tx);
    let _ = writer.await;
}

/// A server frame (unmasked, final).
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => f.push(n as u8),
        n if n <= 0xffff => {
            f.push(126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(payload);
    f
}

/// The next message from the client (fragments joined, unmasked): (opcode, payload).
async fn read_message<R: AsyncRead + Unpin>(r: &mut R) -> Option<(u8, Vec<u8>)> {
    let mut message = Vec::new();
    let mut first_opcode = None;
    loop {
        let mut h = [0u8; 2];
        r.read_exact(&mut h).await.ok()?;
        let fin = h[0] & 0x80 != 0;
        let opcode = h[0] & 0x0f;
        let masked = h[1] & 0x80 != 0;
        let len = match h[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                r.read_exact(&mut b).await.ok()?;
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                r.read_exact(&mut b).await.ok()?;
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        if len > 64 << 20 {
            return None;
        }
        let mut mask = [0u8; 4];
        if masked {
            r.read_exact(&mut mask).await.ok()?;
        }
        let mut payload = vec![0u8; usize::try_from(len).ok()?];
        r.read_exact(&mut payload).await.ok()?;
        if masked {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
        }
        if opcode >= 8 {
            // Control frames may arrive between fragments.
            return Some((opcode, payload));
        }
        first_opcode.get_or_insert(opcode);
        message.extend_from_slice(&payload);
        if fin {
            return Some((first_opcode.unwrap_or(2), message));
        }
    }
}
