//! One pod's life on its node (Kubernetes docs "Pod Lifecycle", "Init Containers", "Container
//! restart policy", "Termination of Pods"): volumes first (the pod waits for missing Secrets and
//! unbound claims), init containers one after another to success, then every container at once,
//! each supervised — probes, restarts per restartPolicy with exponential back-off — until the
//! pod completes or is stopped: SIGTERM to each container's main process, SIGKILL to all of its
//! processes after the grace period.

use super::container::{self, Launch};
use super::probes::{self, ProbeState};
use super::process;
use super::status::{CState, ContainerStatus, PodState};
use super::Ctx;
use crate::clock;
use nix::sys::signal::Signal;
use serde_json::Value;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Signals a pod worker listens to.
#[derive(Debug, Clone)]
pub struct Signals {
    /// `Some(grace)`: stop every container, SIGKILL after `grace`.
    pub stop: watch::Receiver<Option<Duration>>,
    /// The node is frozen: probes and restarts wait.
    pub frozen: watch::Receiver<bool>,
}

impl Signals {
    fn stopping(&self) -> Option<Duration> {
        *self.stop.borrow()
    }

    /// Sleep `d`, or less if a stop comes; returns whether stopping.
    async fn sleep(&mut self, d: Duration) -> bool {
        if self.stopping().is_some() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.stop.changed() => {}
        }
        self.stopping().is_some()
    }
}

/// Which list a container is in, and where.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Init(usize),
    Main(usize),
}

fn update(st: &Mutex<PodState>, slot: Slot, f: impl FnOnce(&mut ContainerStatus)) {
    if let Ok(mut s) = st.lock() {
        let c = match slot {
            Slot::Init(i) => s.init.get_mut(i),
            Slot::Main(i) => s.containers.get_mut(i),
        };
        if let Some(c) = c {
            f(c);
        }
    }
}

/// Run `pod` to completion or until stopped.
pub async fn run(ctx: Arc<Ctx>, pod: Value, st: Arc<Mutex<PodState>>, mut sig: Signals) {
    let uid = pod["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let pod_dir = ctx.root.join("pods").join(&uid);
    let prepared = loop {
        match super::volumes::prepare(&ctx.api, &ctx.root, &pod_dir, &pod).and_then(|v| {
            super::pod_files(&ctx, &pod_dir, &pod)?;
            Ok(v)
        }) {
            Ok(v) => break v,
            Err(msg) => {
                if let Ok(mut s) = st.lock() {
                    s.waiting_all("ContainerCreating", &msg);
                }
                if sig.sleep(Duration::from_secs(1)).await {
                    return finish(&st);
                }
            }
        }
    };
    let spec = &pod["spec"];
    let policy = spec["restartPolicy"]
        .as_str()
        .unwrap_or("Always")
        .to_string();
    let inits = spec["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (i, c) in inits.iter().enumerate() {
        loop {
            match supervise_once(
                &ctx,
                &pod,
                &pod_dir,
                &prepared,
                c,
                Slot::Init(i),
                &st,
                &mut sig,
            )
            .await
            {
                Outcome::Stopped => return finish(&st),
                Outcome::Exited(0) => break,
                Outcome::Exited(_) if policy == "Never" => {
                    if let Ok(mut s) = st.lock() {
                        s.phase = "Failed";
                    }
                    return finish(&st);
                }
                Outcome::Exited(_) | Outcome::NotStarted => {
                    if back_off(&ctx, &pod, Slot::Init(i), &st, &mut sig).await {
                        return finish(&st);
                    }
                }
            }
        }
    }
    if let Ok(mut s) = st.lock() {
        s.initialized = true;
        s.phase = "Running";
    }
    let containers = spec["containers"].as_array().cloned().unwrap_or_default();
    let runs = containers.iter().enumerate().map(|(i, c)| {
        let (ctx, pod, pod_dir, prepared, st, policy) =
            (&ctx, &pod, &pod_dir, &prepared, &st, &policy);
        let mut sig = sig.clone();
        async move {
            let mut codes = Vec::new();
            loop {
                let out =
                    supervise_once(ctx, pod, pod_dir, prepared, c, Slot::Main(i), st, &mut sig)
                        .await;
                let restart = match out {
                    Outcome::Stopped => return None,
                    Outcome::Exited(code) => {
                        codes.push(code);
                        policy == "Always" || policy == "OnFailure" && code != 0
                    }
                    Outcome::NotStarted => true,
                };
                if !restart {
                    return codes.last().copied();
                }
                if back_off(ctx, pod, Slot::Main(i), st, &mut sig).await {
                    return None;
                }
            }
        }
    });
    let results = futures_util::future::join_all(runs).await;
    if let Ok(mut s) = st.lock() {
        if sig.stopping().is_none() {
            s.phase = if results.iter().all(|r| *r == Some(0)) {
                "Succeeded"
            } else {
                "Failed"
            };
        }
    }
    finish(&st)
}

fn finish(st: &Mutex<PodState>) {
    if let Ok(mut guard) = st.lock() {
        let s = &mut *guard;
        s.finished = true;
        s.pids.clear();
        for c in s.init.iter_mut().chain(s.containers.iter_mut()) {
            c.ready = false;
            if matches!(c.state, CState::Waiting { .. }) && c.restart_count == 0 && c.last.is_none()
            {
                continue;
            }
            if let CState::Running { started } = &c.state {
                c.state = CState::Terminated {
                    code: 137,
                    reason: "Error".into(),
                    started: started.clone(),
                    finished: clock::now_rfc3339(),
                    message: String::new(),
                };
            }
        }
    }
}

fn event(ctx: &Ctx, pod: &Value, type_: &str, reason: &str, message: &str) {
    super::events::record(&ctx.api, pod, type_, reason, message, "kubelet");
}

/// Wait before a restart (CrashLoopBackOff); returns whether stopping.
async fn back_off(
    ctx: &Ctx,
    pod: &Value,
    slot: Slot,
    st: &Mutex<PodState>,
    sig: &mut Signals,
) -> bool {
    let mut restarts = 0;
    let mut name = String::new();
    update(st, slot, |c| {
        restarts = c.restart_count;
        name = c.name.clone();
    });
    let delay = ctx
        .backoff
        .0
        .saturating_mul(1u32 << restarts.clamp(0, 16))
        .min(ctx.backoff.1);
    let mut crashed = false;
    update(st, slot, |c| {
        crashed = matches!(c.state, CState::Terminated { .. })
    });
    if crashed {
        let msg = format!(
            "back-off {}s restarting failed container {name}",
            delay.as_secs()
        );
        event(ctx, pod, "Warning", "BackOff", &msg);
    }
    update(st, slot, |c| match &c.state {
        CState::Terminated { .. } => {
            c.last = Some(c.state.clone());
            c.state = CState::Waiting {
                reason: "CrashLoopBackOff".into(),
                message: format!(
                    "back-off {}s restarting failed container={name}",
                    delay.as_secs()
                ),
            };
        }
        CState::Waiting { reason, message } if reason == "ErrImagePull" => {
            c.state = CState::Waiting {
                reason: "ImagePullBackOff".into(),
                message: message.clone(),
            };
        }
        _ => {}
    });
    sig.sleep(delay).await || wait_thawed(sig).await
}

/// While the node is frozen nothing restarts; returns whether stopping.
async fn wait_thawed(sig: &mut Signals) -> bool {
    while *sig.frozen.borrow() {
        if sig.sleep(Duration::from_millis(100)).await {
            return true;
        }
    }
    false
}

#[derive(Debug)]
enum Outcome {
    Exited(i32),
    NotStarted,
    Stopped,
}

/// The container's launch: image, identity, environment and mounts.
fn launch(
    ctx: &Ctx,
    pod: &Value,
    pod_dir: &Path,
    prepared: &[super::volumes::Prepared],
    c: &Value,
) -> Result<(Launch, String), (String, String)> {
    let name = c["name"].as_str().unwrap_or_default().to_string();
    let image = ctx
        .images
        .resolve(c["image"].as_str().unwrap_or_default())
        .map_err(|m| ("ErrImagePull".to_string(), m))?;
    let (uid, gid, groups) = container::identity(&pod["spec"], c);
    let env = super::env::environment(&ctx.api, pod, c, &image.path, super::hosts::home_of(uid))
        .map_err(|m| ("CreateContainerConfigError".to_string(), m))?;
    let argv = container::argv(c, &image, &env);
    if argv.is_empty() {
        return Err(("CreateContainerError".into(), "no command specified".into()));
    }
    let mut mounts: Vec<(PathBuf, PathBuf, bool)> = image
        .files
        .iter()
        .map(|(pod_path, host)| (host.clone(), pod_path.clone(), true))
        .collect();
    for f in ["hosts", "passwd", "group"] {
        mounts.push((
            pod_dir.join("etc").join(f),
            PathBuf::from("/etc").join(f),
            false,
        ));
    }
    let mut volume_mounts: Vec<(PathBuf, PathBuf, bool)> = Vec::new();
    for m in c["volumeMounts"].as_array().into_iter().flatten() {
        let vname = m["name"].as_str().unwrap_or_default();
        let Some(p) = prepared.iter().find(|p| p.name == vname) else {
            return Err((
                "CreateContainerConfigError".into(),
                format!("volume {vname:?} not found"),
            ));
        };
        let mut src = p.source.clone();
        if let Some(sub) = m["subPath"].as_str().filter(|s| !s.is_empty()) {
            src = src.join(sub);
            if !src.exists() {
                let _ = std::fs::create_dir_all(&src);
            }
        }
        let target = PathBuf::from(m["mountPath"].as_str().unwrap_or("/"));
        volume_mounts.push((src, target, m["readOnly"] == true));
    }
    let sa_path = Path::new("/var/run/secrets/kubernetes.io/serviceaccount");
    if pod["spec"]["automountServiceAccountToken"] != false
        && !volume_mounts.iter().any(|m| m.1 == sa_path)
    {
        volume_mounts.push((pod_dir.join("serviceaccount"), sa_path.to_path_buf(), true));
    }
    volume_mounts.sort_by_key(|m| m.1.components().count());
    let private_tmp = !volume_mounts.iter().any(|m| m.1.starts_with("/tmp"));
    mounts.extend(volume_mounts);
    if private_tmp {
        mounts.push((pod_dir.join("tmp"), PathBuf::from("/tmp"), false));
    }
    let hostname = pod["spec"]["hostname"]
        .as_str()
        .or(pod["metadata"]["name"].as_str())
        .unwrap_or_default()
        .chars()
        .take(63)
        .collect();
    Ok((
        Launch {
            name: name.clone(),
            argv,
            env,
            mounts,
            hostname,
            workdir: c["workingDir"].as_str().map(String::from),
            uid,
            gid,
            groups,
            script: pod_dir.join("run").join(format!("{name}.sh")),
            cgroup: pod["status"]["podIP"]
                .as_str()
                .and_then(super::partition::cgroup_procs_for_ip),
        },
        name,
    ))
}

/// Start the container once and watch it until it exits or the pod stops.
#[allow(clippy::too_many_arguments)]
async fn supervise_once(
    ctx: &Ctx,
    pod: &Value,
    pod_dir: &Path,
    prepared: &[super::volumes::Prepared],
    c: &Value,
    slot: Slot,
    st: &Mutex<PodState>,
    sig: &mut Signals,
) -> Outcome {
    if sig.stopping().is_some() {
        return Outcome::Stopped;
    }
    let (launch, name) = match launch(ctx, pod, pod_dir, prepared, c) {
        Ok(l) => l,
        Err((reason, message)) => {
            let mut first = false;
            update(st, slot, |c| {
                first = !matches!(&c.state, CState::Waiting { message: m, .. } if *m == message);
            });
            if first {
                event(
                    ctx,
                    pod,
                    "Warning",
                    "Failed",
                    &format!("{reason}: {message}"),
                );
            }
            update(st, slot, |c| c.state = CState::Waiting { reason, message });
            return if sig.sleep(Duration::from_secs(1)).await {
                Outcome::Stopped
            } else {
                Outcome::NotStarted
            };
        }
    };
    let mut restarts = 0;
    update(st, slot, |c| {
        if c.runs > 0 {
            c.restart_count += 1;
        }
        c.runs += 1;
        restarts = c.restart_count;
    });
    let log = pod_dir
        .join("logs")
        .join(&name)
        .join(format!("{restarts}.log"));
    let mut child = match container::spawn(&launch, &log) {
        Ok(child) => child,
        Err(e) => {
            update(st, slot, |c| {
                c.state = CState::Waiting {
                    reason: "RunContainerError".into(),
                    message: e.to_string(),
                }
            });
            return Outcome::NotStarted;
        }
    };
    let pid = child.id().unwrap_or(0);
    event(
        ctx,
        pod,
        "Normal",
        "Started",
        &format!("started container {name} (pid {pid})"),
    );
    let started_at = clock::now_rfc3339();
    let start = Instant::now();
    if let Ok(mut s) = st.lock() {
        s.pids.insert(name.clone(), pid);
        s.launches.insert(name.clone(), launch.clone());
    }
    update(st, slot, |c| {
        if matches!(c.state, CState::Terminated { .. }) {
            c.last = Some(c.state.clone());
        }
        c.state = CState::Running {
            started: started_at.clone(),
        };
        c.ready = false;
        c.started = false;
    });
    let pod_ip = pod["status"]["podIP"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut startup = c.get("startupProbe").map(|p| ProbeState::new(p, start));
    let mut liveness = c.get("livenessProbe").map(|p| ProbeState::new(p, start));
    let mut readiness = c.get("readinessProbe").map(|p| ProbeState::new(p, start));
    let is_init = matches!(slot, Slot::Init(_));
    let grace = Duration::from_secs(
        pod["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or(30),
    );
    let grace = ctx.grace_cap.map_or(grace, |cap| grace.min(cap));
    let status = loop {
        let tick = tokio::time::sleep(Duration::from_millis(100));
        tokio::select! {
            s = child.wait() => break s.ok(),
            _ = sig.stop.changed() => {
                if let Some(g) = sig.stopping() {
                    event(ctx, pod, "Normal", "Killing", &format!("stopping container {name}"));
                    break terminate(&mut child, pid, g).await;
                }
            }
            _ = tick => {
                if is_init || *sig.frozen.borrow() {
                    continue;
                }
                let now = Instant::now();
                let mut started = true;
                if let Some(p) = startup.as_mut().filter(|p| p.passing != Some(true)) {
                    started = false;
                    if p.due(now) {
                        let ok = probes::run(&p.spec, c, &pod_ip, pid, &launch).await;
                        match p.record(ok, Instant::now()) {
                            Some(true) => started = true,
                            Some(false) => {
                                event(ctx, pod, "Warning", "Unhealthy", &format!("startup probe of {name} failed"));
                                break terminate(&mut child, pid, grace).await;
                            }
                            None => {}
                        }
                    }
                }
                update(st, slot, |c| c.started = started);
                if !started {
                    continue;
                }
                if let Some(p) = liveness.as_mut().filter(|p| p.due(now)) {
                    let ok = probes::run(&p.spec, c, &pod_ip, pid, &launch).await;
                    if p.record(ok, Instant::now()) == Some(false) {
                        let msg = format!("liveness probe of {name} failed: restarting it");
                        event(ctx, pod, "Warning", "Unhealthy", &msg);
                        break terminate(&mut child, pid, grace).await;
                    }
                }
                match readiness.as_mut() {
                    Some(p) if p.due(now) => {
                        let ok = probes::run(&p.spec, c, &pod_ip, pid, &launch).await;
                        if let Some(v) = p.record(ok, Instant::now()) {
                            if !v {
                                event(ctx, pod, "Warning", "Unhealthy", &format!("readiness probe of {name} failed"));
                            }
                            update(st, slot, |c| c.ready = v);
                        }
                    }
                    Some(_) => {}
                    None => update(st, slot, |c| c.ready = true),
                }
            }
        }
    };
    // Whatever the container left behind goes with it, as with a container's cgroup.
    process::signal_all(pid, Signal::SIGKILL);
    if let Ok(mut s) = st.lock() {
        s.pids.remove(&name);
    }
    let code = status.map_or(137, |s| {
        s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(9))
    });
    let message = if code != 0 && c["terminationMessagePolicy"] == "FallbackToLogsOnError" {
        super::logs::termination_message(&log)
    } else {
        String::new()
    };
    update(st, slot, |c| {
        c.ready = false;
        c.state = CState::Terminated {
            code,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            started: started_at,
            finished: clock::now_rfc3339(),
            message,
        };
    });
    if sig.stopping().is_some() {
        Outcome::Stopped
    } else {
        Outcome::Exited(code)
    }
}

/// SIGTERM to the main process, SIGKILL to all after `grace`.
async fn terminate(
    child: &mut tokio::process::Child,
    pid: u32,
    grace: Duration,
) -> Option<std::process::ExitStatus> {
    if !grace.is_zero() {
        process::signal_main(pid, Signal::SIGTERM);
        if let Ok(s) = tokio::time::timeout(grace, child.wait()).await {
            return s.ok();
        }
    }
    process::signal_all(pid, Signal::SIGKILL);
    child.wait().await.ok()
}
