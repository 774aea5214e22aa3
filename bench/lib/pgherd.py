"""A pgherd local-platform cluster: `pgherd local up/status/get/destroy` on one state dir."""
import atexit
import base64
import glob
import json
import ssl
import os
import shutil
import signal
import subprocess
import time
import urllib.request

import yaml  # python3-yaml

from . import procs

# The release build of this checkout (`cargo build --release`, in $CARGO_TARGET_DIR if set).
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_BIN = os.path.join(os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target"),
                           "release", "pgherd")
HEALTHY = "Cluster in healthy state"
# Cluster annotation: instance <cluster>-<serial> runs in network namespace <value>-<serial>
# (crates/platform/local/src/netns.rs).
NETNS_ANNOTATION = "pgherd.io/netns-prefix"


def default_binary():
    """$PGHERD_BIN, else this checkout's release build, else `pgherd` on PATH."""
    binary = os.environ.get("PGHERD_BIN")
    if binary:
        return binary
    if os.access(DEFAULT_BIN, os.X_OK):
        return DEFAULT_BIN
    found = shutil.which("pgherd")
    if not found:
        raise SystemExit("no pgherd binary: set PGHERD_BIN")
    return found


class PgherdCluster:
    """One Cluster (from `manifest`, named `name`) run by pgherd in its own `state_dir`; with a
    netns.Network, instance <name>-<serial> runs in the network's namespace <serial>."""

    def __init__(self, binary, manifest, name, state_dir, namespace="default", network=None):
        self.binary = binary
        self.manifest = manifest
        self.name = name
        self.namespace = namespace
        self.state_dir = state_dir
        self.network = network

    def __enter__(self):
        atexit.register(self.destroy)
        return self

    def __exit__(self, *exc):
        self.destroy()

    def _local(self, *args, timeout=60):
        """Run `pgherd local ARGS --state-dir DIR`; its stdout, or RuntimeError with its output."""
        cmd = [self.binary, "local", *args, "--state-dir", self.state_dir]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              start_new_session=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}:\n"
                               f"{done.stdout}{done.stderr}")
        return done.stdout

    def up(self, timeout_seconds=120):
        """`local up -f MANIFEST`: returns once the cluster is healthy."""
        try:
            self._local("up", "-f", self._manifest(), "--timeout-seconds", str(timeout_seconds),
                        timeout=timeout_seconds + 30)
        except RuntimeError as error:
            log = os.path.join(self.state_dir, "control-plane.log")
            raise RuntimeError(f"{error}\n{log}:\n{procs.tail(log)}") from None

    def _manifest(self):
        """The manifest to apply: MANIFEST, or with a network a copy annotated to place each
        instance in its namespace."""
        if not self.network:
            return self.manifest
        with open(self.manifest) as file:
            cluster = yaml.safe_load(file)
        annotations = cluster["metadata"].setdefault("annotations", {})
        annotations[NETNS_ANNOTATION] = self.network.prefix
        path = os.path.join(os.path.dirname(self.state_dir.rstrip("/")), "cluster.yaml")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as file:
            yaml.safe_dump(cluster, file)
        return path

    def status(self):
        """This cluster's entry of `local status -o json`."""
        clusters = json.loads(self._local("status", "-n", self.namespace, "-o", "json"))
        return next(c for c in clusters if c["name"] == self.name)

    def endpoints(self):
        """{'rw': 'host:port', 'ro': ..., 'r': ...}."""
        return self.status()["endpoints"]

    def app_uri(self):
        """The application user's connection URI (the rw endpoint), from the app secret."""
        secret = json.loads(self._local("get", "secret", f"{self.name}-app",
                                        "-n", self.namespace, "-o", "json"))
        return base64.b64decode(secret["data"]["uri"]).decode()

    def streaming(self):
        """True when every replica streams from the primary (by application_name, which is
        the instance name), as the primary's instance manager reports on GET /pg/status."""
        status = self.status()
        names = {i["name"] for i in status["instancesStatus"]}
        primary = next(i for i in status["instancesStatus"] if i["name"] == status["currentPrimary"])
        # The status endpoint speaks TLS with the cluster's certificates: trust the cluster CA
        # (instances are reached by address, which no certificate names).
        tls = ssl.create_default_context(cafile=os.path.join(
            self.state_dir, "clusters", self.namespace, self.name, "certs", "ca.crt"))
        tls.check_hostname = False
        with urllib.request.urlopen(f"https://{primary['statusEndpoint']}/pg/status",
                                    timeout=2, context=tls) as resp:
            report = json.load(resp)
        streaming = {r["applicationName"] for r in report["replicationInfo"]
                     if r["state"] == "streaming"}
        return streaming == names - {primary["name"]}

    def wait_streaming(self, timeout=30, interval=0.1):
        procs.wait_until(self.streaming, timeout, interval, what=f"{self.name}'s replicas to stream")

    def healthy(self):
        """True when the status says healthy with every instance ready, one primary (the
        recorded one, no transition under way) and every replica streams from it."""
        status = self.status()
        primaries = [i["name"] for i in status["instancesStatus"] if i["role"] == "primary"]
        if (status["phase"] != HEALTHY or status["readyInstances"] != status["instances"]
                or primaries != [status["currentPrimary"]]
                or status.get("targetPrimary") not in (None, status["currentPrimary"])):
            return False
        try:
            return self.streaming()
        except (OSError, ValueError):  # the primary's manager is not answering yet
            return False

    def wait_healthy(self, timeout=120, interval=0.1):
        procs.wait_until(self.healthy, timeout, interval, what=f"cluster {self.name} healthy")

    def primary(self):
        """The current primary's entry of instancesStatus (name, pid = postmaster, port...)."""
        status = self.status()
        return next(i for i in status["instancesStatus"] if i["name"] == status["currentPrimary"])

    def replicas(self):
        """Names of the instances that are not the current primary."""
        status = self.status()
        return sorted(i["name"] for i in status["instancesStatus"]
                      if i["name"] != status["currentPrimary"])

    def instance_dir(self, instance):
        return os.path.join(self.state_dir, "clusters", self.namespace, self.name,
                            "instances", instance)

    def kill_node(self, instance, postmaster):
        """The node of `instance` dies: SIGKILL of its postmaster (and the postmaster's
        children) and, right after, of its instance manager and the manager's process group.
        The postmaster goes first: a manager seen dead while its PostgreSQL still runs is
        restarted to adopt it, by design, which is not the fault meant here. Returns the
        monotonic time once both are signalled."""
        manager = procs.read_pid(os.path.join(self.instance_dir(instance), "manager.pid"))
        procs.kill_tree(postmaster)
        if manager:
            procs.signal_group(manager, signal.SIGKILL)
            procs.kill_pid(manager)
        return time.monotonic()

    def freeze_node(self, instance, postmaster):
        """The node of `instance` freezes (a stalled VM): SIGSTOP of its postmaster and the
        postmaster's children, and of its instance manager's process group. Returns (monotonic
        time, a function that resumes them)."""
        manager = procs.read_pid(os.path.join(self.instance_dir(instance), "manager.pid"))
        stopped = procs.freeze_tree(postmaster)
        if manager:
            procs.signal_group(manager, signal.SIGSTOP)
        frozen = time.monotonic()

        def thaw():
            if manager:
                procs.signal_group(manager, signal.SIGCONT)
            procs.thaw(stopped)
        return frozen, thaw

    def partition_node(self, instance):
        """Cut the link of `instance`'s namespace (needs a network): it reaches neither the
        control plane, the endpoints nor its peers, and nothing reaches it. Returns the
        monotonic time."""
        self.network.link(serial(instance), False)
        return time.monotonic()

    def heal_node(self, instance):
        """Restore the link of `instance`'s namespace."""
        self.network.link(serial(instance), True)

    def promote(self, instance, timeout=120):
        """`local promote CLUSTER INSTANCE` (a switchover): returns once it is the primary."""
        self._local("promote", self.name, instance, "-n", self.namespace,
                    "--timeout-seconds", str(timeout), timeout=timeout + 30)

    def logs(self):
        """Paths of the control plane's and the instance managers' logs, for reports."""
        pattern = os.path.join(self.state_dir, "clusters", self.namespace, self.name,
                               "instances", "*", "manager.log")
        return [os.path.join(self.state_dir, "control-plane.log"), *sorted(glob.glob(pattern))]

    def control_plane_pid(self):
        return procs.read_pid(os.path.join(self.state_dir, "control-plane.pid"))

    def manager_pids(self):
        """{instance name: pid} of the running instance managers (`pgherd instance run`)."""
        pattern = os.path.join(self.state_dir, "clusters", self.namespace, self.name,
                               "instances", "*", "manager.pid")
        pids = {}
        for path in sorted(glob.glob(pattern)):
            pid = procs.read_pid(path)
            if pid and "instance run" in procs.cmdline(pid):
                pids[os.path.basename(os.path.dirname(path))] = pid
        return pids

    def destroy(self):
        """`local destroy`; if that fails, kill the control plane and the managers' groups
        (each manager leads the group its postmaster is in). Idempotent."""
        atexit.unregister(self.destroy)
        if not os.path.isdir(self.state_dir):
            return
        try:
            self._local("destroy")
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            print(f"pgherd local destroy failed, killing its processes: {error}")
            for pid in self.manager_pids().values():
                procs.signal_group(pid, signal.SIGKILL)
            control_plane = self.control_plane_pid()
            if control_plane:
                procs.kill_pid(control_plane)


def serial(instance):
    """The serial of instance `<cluster>-<serial>`."""
    return int(instance.rsplit("-", 1)[1])
