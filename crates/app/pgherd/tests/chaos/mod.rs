//! What the HA chaos tests share: the cluster under test, its processes, and the writers that
//! prove nothing acknowledged is lost.
#![allow(dead_code)] // each test binary uses part of it

use pgherd_local::status::LocalClusterStatus;
use pgherd_testkit::local::{connect, Local};
use pgherd_testkit::writer::{self, Writer, WriterReport};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const CLUSTER: &str = "ha";

/// The chaos tests run one at a time: two 3-instance clusters with writers on a 2-core machine
/// make every report late, which is not the fault under test.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}
pub const HEALTHY: &str = "Cluster in healthy state";

/// A chaos test's cluster: up from the test manifest, with the guard that keeps chaos tests
/// one at a time and the directory holding the manifest.
pub struct Started {
    pub _serial: std::sync::MutexGuard<'static, ()>,
    pub local: Local,
    pub files: tempfile::TempDir,
    pub manifest: PathBuf,
}

pub fn start() -> Started {
    start_with(manifest)
}

/// `start` with the manifest `write` puts in the directory it is given.
pub fn start_with(write: impl FnOnce(&Path) -> PathBuf) -> Started {
    start_prepared(|_| (), write).0
}

/// `start_with`, running `prepare` on the fresh local platform before `local up` (mounting the
/// instances' volumes, say); returns what `prepare` made.
pub fn start_prepared<V>(
    prepare: impl FnOnce(&Local) -> V,
    write: impl FnOnce(&Path) -> PathBuf,
) -> (Started, V) {
    let serial = exclusive();
    let local = Local::new(Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let prepared = prepare(&local);
    let files = tempfile::tempdir().unwrap();
    let manifest = write(files.path());
    local.run_ok(&[
        "up",
        "-f",
        manifest.to_str().unwrap(),
        "--timeout-seconds",
        "180",
    ]);
    (
        Started {
            _serial: serial,
            local,
            files,
            manifest,
        },
        prepared,
    )
}

pub fn manifest(dir: &Path) -> PathBuf {
    manifest_annotated(dir, "")
}

/// The cluster's manifest with `annotations` (YAML lines, indented by four spaces) added.
pub fn manifest_annotated(dir: &Path, annotations: &str) -> PathBuf {
    manifest_full(
        dir,
        annotations,
        "ghcr.io/cloudnative-pg/postgresql:15.14",
        "",
    )
}

/// The cluster's manifest with `annotations`, `image`, and `spec` (YAML lines indented by two
/// spaces) added under `spec`.
pub fn manifest_full(dir: &Path, annotations: &str, image: &str, spec: &str) -> PathBuf {
    let path = dir.join("ha.yaml");
    let annotations = if annotations.is_empty() {
        String::new()
    } else {
        format!("  annotations:\n{annotations}")
    };
    std::fs::write(
        &path,
        format!("apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: ha\n{annotations}spec:\n  instances: 3\n  imageName: {image}\n  storage:\n    size: 1Gi\n  postgresql:\n    synchronous:\n      method: any\n      number: 1\n{spec}"),
    )
    .unwrap();
    path
}

pub fn instance_dir(local: &Local, instance: &str) -> PathBuf {
    local
        .state
        .join(format!("clusters/default/{CLUSTER}/instances/{instance}"))
}

pub fn pid_in(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

pub fn signal(pid: i32, group: bool, sig: nix::sys::signal::Signal) {
    let p = nix::unistd::Pid::from_raw(pid);
    if group {
        nix::sys::signal::killpg(p, sig).unwrap();
    } else {
        nix::sys::signal::kill(p, sig).unwrap();
    }
}

pub fn healthy(local: &Local) -> LocalClusterStatus {
    local.wait_for(
        CLUSTER,
        "a healthy cluster",
        Duration::from_secs(120),
        |s| s.phase == HEALTHY && s.ready_instances == 3,
    )
}

/// The node of `instance` dies: kill -9 of its PostgreSQL (the whole process group) and its
/// instance manager. PostgreSQL first: a manager seen dead while its postmaster still runs is
/// restarted and recovers in place (by design), which is not the fault meant here.
pub fn kill_node(local: &Local, instance: &str) -> Instant {
    use pgherd_instance_manager::process::{is_alive, kill_tree};
    let dir = instance_dir(local, instance);
    let manager = pid_in(&dir.join("manager.pid"));
    let postmaster = pid_in(&dir.join("pgdata/postmaster.pid"));
    // A node dies at once: the control plane must not see it half dead (a manager gone while
    // its PostgreSQL still runs is restarted to adopt it, by design).
    let control_plane = pid_in(&local.state.join("control-plane.pid"));
    signal(control_plane, false, nix::sys::signal::Signal::SIGSTOP);
    let at = Instant::now();
    // The manager is frozen first: between the two kills it would restart PostgreSQL.
    signal(manager, false, nix::sys::signal::Signal::SIGSTOP);
    kill_tree(u32::try_from(postmaster).unwrap());
    signal(manager, false, nix::sys::signal::Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(5);
    while [manager, postmaster]
        .iter()
        .any(|p| is_alive(u32::try_from(*p).unwrap()))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    signal(control_plane, false, nix::sys::signal::Signal::SIGCONT);
    at
}

/// Fence (or unfence) every instance in `names`; when fencing, wait until each of them reports
/// its PostgreSQL stopped.
pub fn fence_all(local: &Local, names: &[String], on: bool) {
    for name in names {
        local.run_ok(&[if on { "fence" } else { "unfence" }, CLUSTER, name]);
    }
    if on {
        local.wait_for(
            CLUSTER,
            "the fenced instances to stop",
            Duration::from_secs(30),
            |s| {
                names.iter().all(|n| {
                    s.instances_status
                        .iter()
                        .any(|i| &i.name == n && i.pid.is_none() && !i.ready)
                })
            },
        );
    }
}

/// Writers: one through -rw, one per instance on its own port.
pub struct Writers {
    pub rw: Writer,
    pub probes: Vec<Writer>,
}

impl Writers {
    pub fn start(local: &Local, s: &LocalClusterStatus) -> Self {
        let rw_config = local.app_config(CLUSTER, &s.endpoints["rw"]);
        let rt = pgherd_testkit::runtime();
        rt.block_on(writer::prepare(&rw_config)).unwrap();
        let probes = s
            .instances_status
            .iter()
            .map(|i| {
                let config = local.app_config(CLUSTER, &format!("{}:{}", i.host, i.port));
                Writer::start(
                    &format!("probe-{}", i.name),
                    config,
                    Duration::from_millis(50),
                )
            })
            .collect();
        Writers {
            rw: Writer::start("rw", rw_config, Duration::from_millis(5)),
            probes,
        }
    }

    /// Stop all; check every acknowledged commit is on the primary behind -rw.
    pub fn stop_and_check(self, local: &Local) -> WriterReport {
        let rw = self.rw.stop();
        let probes: Vec<WriterReport> = self.probes.into_iter().map(Writer::stop).collect();
        let s = healthy(local);
        let rt = pgherd_testkit::runtime();
        rt.block_on(async {
            let c = connect(&local.app_config(CLUSTER, &s.endpoints["rw"]))
                .await
                .unwrap();
            for report in std::iter::once(&rw).chain(&probes) {
                let lost = writer::missing(&c, report).await.unwrap();
                assert!(
                    lost.is_empty(),
                    "{}: {} acknowledged commits lost: {lost:?}",
                    report.source,
                    lost.len()
                );
            }
        });
        assert!(!rw.acknowledged.is_empty());
        rw
    }
}

/// Time from `fault` to the first commit acknowledged through -rw after it.
pub fn recovery_after(report: &WriterReport, fault: Instant) -> Duration {
    report
        .acknowledged
        .iter()
        .find(|(_, at)| *at > fault)
        .map(|(_, at)| at.duration_since(fault))
        .expect("a commit after the fault")
}

/// Run `fault` on the current primary under the writers; returns the write outage.
pub fn under_load(local: &Local, what: &str, fault: impl FnOnce(&str) -> Instant) {
    let s = healthy(local);
    let primary = s.current_primary.clone().unwrap();
    let writers = Writers::start(local, &s);
    writers.rw.wait_for_progress(20, Duration::from_secs(20));
    let at = fault(&primary);
    writers.rw.wait_for_progress(20, Duration::from_secs(60));
    let report = writers.stop_and_check(local);
    let after = local.status(CLUSTER);
    eprintln!(
        "{what}: {primary} -> {}: longest write gap {:?}, first write after the fault {:?}; {} commits acknowledged, {} in doubt",
        after.current_primary.as_deref().unwrap_or("-"),
        report.longest_gap(),
        recovery_after(&report, at),
        report.acknowledged.len(),
        report.failed
    );
}

// Network namespaces: one per instance, joined by a bridge on the host (the partition test and
// the nemesis).

pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A bridge on the host and one namespace per instance serial, each with a veth into the
/// bridge. Removed on drop (after the cluster, declared later, has been destroyed).
pub struct Network {
    pub prefix: String,
    pub subnet: String,
    serials: Vec<u32>,
}

impl Network {
    pub fn create(serials: u32) -> Network {
        let id = std::process::id();
        let net = Network {
            prefix: format!("pgh{}", id % 100_000),
            subnet: format!("10.123.{}", id % 250),
            serials: (1..=serials).collect(),
        };
        net.remove(); // leftovers of an earlier run with the same id
        let bridge = net.bridge();
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&[
            "addr",
            "add",
            &format!("{}.254/24", net.subnet),
            "dev",
            &bridge,
        ]);
        ip(&["link", "set", &bridge, "up"]);
        for serial in &net.serials {
            let ns = net.namespace(*serial);
            let veth = net.veth(*serial);
            ip(&["netns", "add", &ns]);
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            ip(&["link", "set", &veth, "master", &bridge]);
            ip(&["link", "set", &veth, "up"]);
            let addr = format!("{}.{serial}/24", net.subnet);
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        net
    }

    fn bridge(&self) -> String {
        format!("{}br", self.prefix)
    }

    pub fn namespace(&self, serial: u32) -> String {
        format!("{}-{serial}", self.prefix)
    }

    fn veth(&self, serial: u32) -> String {
        format!("{}v{serial}", self.prefix)
    }

    /// Cut (or restore) the link of instance `serial`.
    pub fn link(&self, serial: u32, up: bool) {
        ip(&[
            "link",
            "set",
            &self.veth(serial),
            if up { "up" } else { "down" },
        ]);
    }

    fn remove(&self) {
        for serial in &self.serials {
            // Anything still running inside (the cluster's teardown should have stopped it)
            // would keep a deleted namespace alive: kill it first.
            if let Ok(out) = Command::new("ip")
                .args(["netns", "pids", &self.namespace(*serial)])
                .output()
            {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
            let _ = Command::new("ip")
                .args(["netns", "del", &self.namespace(*serial)])
                .output();
            let _ = Command::new("ip")
                .args(["link", "del", &self.veth(*serial)])
                .output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge()])
            .output();
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.remove();
    }
}

pub fn serial(instance: &str) -> u32 {
    instance.rsplit('-').next().unwrap().parse().unwrap()
}

/// One small filesystem (tmpfs) per instance directory, as one volume per instance on
/// Kubernetes; unmounted (lazily) on drop.
pub struct Volumes {
    dirs: Vec<PathBuf>,
    state: PathBuf,
}

impl Volumes {
    pub fn mount(local: &Local, instances: &[&str], size: &str) -> Self {
        let mut mounted = Vec::new();
        for name in instances {
            let dir = instance_dir(local, name);
            std::fs::create_dir_all(&dir).unwrap();
            let ok = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
                .arg("tmpfs")
                .arg(&dir)
                .status()
                .unwrap()
                .success();
            assert!(ok, "mount a tmpfs on {}", dir.display());
            mounted.push(dir);
        }
        Volumes {
            dirs: mounted,
            state: local.state.clone(),
        }
    }
}

impl Drop for Volumes {
    fn drop(&mut self) {
        // Dropped before the cluster (declared after it): stop the control plane and the
        // instances first, or `local destroy` would find the unmounted directories empty and
        // leave their processes running.
        use pgherd_local::instances::{running_pid, stop, stop_cluster};
        if let Some(pid) = running_pid(&self.state.join("control-plane.pid")) {
            stop(pid, Duration::from_secs(30));
        }
        stop_cluster(&self.state.join(format!("clusters/default/{CLUSTER}")));
        for dir in &self.dirs {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(dir)
                .status();
        }
    }
}

/// Fill the filesystem holding `dir` with one file; returns it (delete it to free the space).
pub fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0_u8; 1 << 20];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
    path
}
