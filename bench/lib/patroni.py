"""A Patroni cluster on one machine: one etcd and N Patroni nodes, each on loopback ports or,
given a netns.Network, each node (Patroni and its PostgreSQL) in a network namespace of its own
with etcd on the host's bridge address (so a node's link can be cut)."""
import atexit
import json
import os
import shutil
import signal
import time
import urllib.error
import urllib.request

import yaml  # python3-yaml, a dependency of the patroni package

from . import pg, procs

PG_BIN = "/usr/lib/postgresql/15/bin"

SUPERUSER = ("postgres", "bench-superuser")
REPLICATION = ("replicator", "bench-replicator")


class PatroniCluster:
    """etcd plus `nodes` Patroni nodes under `workdir`, with Patroni's DCS timing settings.

    When root, Patroni (and so PostgreSQL) runs as `os_user`; etcd runs as the caller."""

    def __init__(self, workdir, nodes=3, ttl=30, loop_wait=10, retry_timeout=10,
                 scope="bench", os_user="postgres", dcs=None, postgresql=None, network=None):
        """`dcs`: more bootstrap DCS settings (say synchronous_mode); `postgresql`: more
        settings of each node's `postgresql` section (say use_pg_rewind); `network`: a
        netns.Network with at least `nodes` namespaces (node i runs in namespace i)."""
        self.workdir = workdir
        self.scope = scope
        self.dcs = {"ttl": ttl, "loop_wait": loop_wait, "retry_timeout": retry_timeout,
                    **(dcs or {})}
        self.postgresql = postgresql or {}
        self.os_user = os_user if os.geteuid() == 0 else None
        self.names = [f"node{i}" for i in range(1, nodes + 1)]
        self.network = network
        self.serials = dict(zip(self.names, range(1, nodes + 1)))
        self.hosts = {name: network.address(serial) if network else "127.0.0.1"
                      for name, serial in self.serials.items()}
        ports = procs.free_ports(2 + 2 * nodes)
        self.etcd_client_port, self.etcd_peer_port = ports[:2]
        self.rest_ports = dict(zip(self.names, ports[2:2 + nodes]))
        self.pg_ports = dict(zip(self.names, ports[2 + nodes:]))
        self.etcd = None
        self.agents = {}

    def __enter__(self):
        atexit.register(self.stop)
        return self

    def __exit__(self, *exc):
        self.stop()

    # --- start and stop -------------------------------------------------------------------

    def start(self):
        """Launch etcd and every Patroni node (does not wait; see wait_healthy)."""
        os.makedirs(self.workdir, mode=0o755, exist_ok=True)
        self.etcd = procs.spawn(self._etcd_command(), self._path("etcd.log"))
        for name in self.names:
            self._write_config(name)
            self._spawn_agent(name)

    def _spawn_agent(self, name):
        command = [procs.patroni_binary(), self._path(f"{name}.yml")]
        user = self.os_user
        if self.network:  # `ip netns exec` needs root: the switch to os_user comes after it
            command = self.network.exec_prefix(self.serials[name], user) + command
            user = None
        self.agents[name] = procs.spawn(command, self._path(f"{name}.log"), user=user,
                                        env=self._agent_env())

    def kill_node(self, name):
        """Node `name` dies: SIGKILL of its postmaster (and the postmaster's children), then of
        its patroni process. Returns the monotonic time once both are signalled."""
        postmaster = self.postmaster_pid(name)
        if postmaster:
            procs.kill_tree(postmaster)
        agent = self.agents[name]
        procs.signal_group(agent.pid, signal.SIGKILL)
        killed = time.monotonic()
        agent.wait()
        return killed

    def freeze_node(self, name):
        """Node `name` freezes (a stalled VM): SIGSTOP of its postmaster and the postmaster's
        children, and of its patroni process group. Returns (monotonic time, a function that
        resumes them)."""
        postmaster = self.postmaster_pid(name)
        stopped = procs.freeze_tree(postmaster) if postmaster else []
        agent = self.agents[name]
        procs.signal_group(agent.pid, signal.SIGSTOP)
        frozen = time.monotonic()

        def thaw():
            procs.signal_group(agent.pid, signal.SIGCONT)
            procs.thaw(stopped)
        return frozen, thaw

    def partition_node(self, name):
        """Cut node `name`'s link (needs a network): it reaches neither etcd nor the other
        nodes nor clients, and nothing reaches it. Returns the monotonic time."""
        self.network.link(self.serials[name], False)
        return time.monotonic()

    def heal_node(self, name):
        """Restore node `name`'s link."""
        self.network.link(self.serials[name], True)

    def restart_node(self, name):
        """Start node `name`'s patroni again (as a supervisor would after it died)."""
        if self.agents[name].poll() is None:
            raise RuntimeError(f"{name}'s patroni is still running")
        self._spawn_agent(name)

    def stop(self):
        """Stop the Patroni nodes (each stops its PostgreSQL), any postmaster left, then etcd.
        Idempotent."""
        atexit.unregister(self.stop)
        for proc in self.agents.values():
            procs.signal_group(proc.pid, signal.SIGTERM)
        for proc in self.agents.values():
            procs.stop_group(proc, timeout=60)
        for name in self.agents:
            pid = self.postmaster_pid(name)
            if pid:
                procs.kill_pid(pid)
        self.agents = {}
        if self.etcd:
            procs.stop_group(self.etcd, timeout=10)
            self.etcd = None

    def _path(self, *parts):
        return os.path.join(self.workdir, *parts)

    def _etcd_host(self):
        """Where the nodes reach etcd: loopback, or the host's bridge address."""
        return self.network.host_address() if self.network else "127.0.0.1"

    def _etcd_command(self):
        client = f"http://{self._etcd_host()}:{self.etcd_client_port}"
        listen = ",".join(sorted({client, f"http://127.0.0.1:{self.etcd_client_port}"}))
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        return ["etcd", "--name", "etcd0", "--data-dir", self._path("etcd"),
                "--listen-client-urls", listen, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"etcd0={peer}", "--initial-cluster-state", "new"]

    def _agent_env(self):
        env = dict(os.environ)
        if self.os_user:
            env["HOME"] = os.path.expanduser(f"~{self.os_user}")
            env["USER"] = env["LOGNAME"] = self.os_user
        return env

    def _write_config(self, name):
        """Write node `name`'s directory and Patroni YAML; return the YAML's path."""
        node_dir = self._path(name)
        os.makedirs(node_dir, mode=0o700)
        if self.os_user:
            shutil.chown(node_dir, self.os_user, self.os_user)
        config = {
            "scope": self.scope,
            "name": name,
            "restapi": {"listen": self._rest_address(name),
                        "connect_address": self._rest_address(name)},
            "etcd3": {"hosts": [f"{self._etcd_host()}:{self.etcd_client_port}"]},
            "bootstrap": {"dcs": dict(self.dcs)},
            "postgresql": {
                "listen": self._pg_address(name),
                "connect_address": self._pg_address(name),
                "data_dir": os.path.join(node_dir, "data"),
                "bin_dir": PG_BIN,
                "pgpass": os.path.join(node_dir, "pgpass"),
                "authentication": {
                    "superuser": {"username": SUPERUSER[0], "password": SUPERUSER[1]},
                    "replication": {"username": REPLICATION[0], "password": REPLICATION[1]},
                },
                "parameters": {"unix_socket_directories": node_dir},
                **self.postgresql,
                "pg_hba": ["local all all trust",
                           f"host replication {REPLICATION[0]} {self._clients()} scram-sha-256",
                           f"host all all {self._clients()} scram-sha-256"],
            },
        }
        path = self._path(f"{name}.yml")
        with open(path, "w") as file:
            yaml.safe_dump(config, file)
        return path

    def _rest_address(self, name):
        return f"{self.hosts[name]}:{self.rest_ports[name]}"

    def _pg_address(self, name):
        return f"{self.hosts[name]}:{self.pg_ports[name]}"

    def _clients(self):
        """The addresses clients and peers connect from (pg_hba)."""
        return self.network.cidr() if self.network else "127.0.0.1/32"

    # --- state ------------------------------------------------------------------------------

    def members(self):
        """The `members` of Patroni's GET /cluster from the first node that answers ([] if none)."""
        for name in self.names:
            try:
                with urllib.request.urlopen(f"http://{self._rest_address(name)}/cluster",
                                            timeout=1) as resp:
                    return json.load(resp).get("members", [])
            except (urllib.error.URLError, OSError, ValueError):
                continue
        return []

    def leader(self):
        """Name of the running leader, or None."""
        leaders = [m["name"] for m in self.members()
                   if m.get("role") == "leader" and m.get("state") == "running"]
        return leaders[0] if len(leaders) == 1 else None

    def dsn(self, name):
        """Superuser connection string of node `name`'s PostgreSQL (TCP)."""
        return (f"host={self.hosts[name]} port={self.pg_ports[name]} dbname=postgres"
                f" user={SUPERUSER[0]} password={SUPERUSER[1]}")

    def multi_host_dsn(self):
        """Superuser URI over every node with target_session_attrs=read-write: libpq tries
        the nodes in turn and keeps the first that accepts writes."""
        hosts = ",".join(self._pg_address(name) for name in self.names)
        return (f"postgresql://{SUPERUSER[0]}:{SUPERUSER[1]}@{hosts}/postgres"
                "?target_session_attrs=read-write")

    def sync_standbys(self):
        """Names of the running members Patroni lists as synchronous standbys."""
        # Patroni 3.0 says a replica is "running", 3.1+ "streaming".
        return sorted(m["name"] for m in self.members()
                      if m.get("role") == "sync_standby"
                      and m.get("state") in ("running", "streaming"))

    def switchover(self, leader, candidate=None, timeout=120):
        """POST /switchover to the leader's REST API; (HTTP status, response text). Patroni
        answers once it sees the new leader (it polls once a second) or gives up."""
        body = {"leader": leader, **({"candidate": candidate} if candidate else {})}
        request = urllib.request.Request(
            f"http://{self._rest_address(leader)}/switchover",
            data=json.dumps(body).encode(), headers={"Content-Type": "application/json"},
            method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def logs(self):
        """Paths of every log, for reports."""
        return [self._path(f"{name}.log") for name in ["etcd", *self.names]]

    def leader_dsn(self):
        leader = self.leader()
        return self.dsn(leader) if leader else None

    def postmaster_pid(self, name):
        """Pid of node `name`'s postmaster (from postmaster.pid), or None."""
        return procs.read_pid(self._path(name, "data", "postmaster.pid"))

    def leader_postmaster_pid(self):
        leader = self.leader()
        return self.postmaster_pid(leader) if leader else None

    def agent_pids(self):
        """{node name: pid of its patroni process}."""
        return {name: proc.pid for name, proc in self.agents.items()}

    def etcd_pid(self):
        return self.etcd.pid

    def _healthy(self):
        """True when there is one running leader, writable, and every other node streams from
        it (by application_name, which Patroni sets to the node name: pg_basebackup's
        walsenders are 'streaming' too)."""
        self._check_alive()
        leader = self.leader()
        if not leader:
            return False
        try:
            writable, streaming = pg.fetch_one(
                self.dsn(leader),
                "SELECT NOT pg_is_in_recovery(), ARRAY(SELECT application_name"
                " FROM pg_stat_replication WHERE state = 'streaming')")
        except Exception:  # psycopg2.Error while PostgreSQL starts or restarts
            return False
        synced = bool(self.sync_standbys()) if self.dcs.get("synchronous_mode") else True
        return writable and set(streaming) == set(self.names) - {leader} and synced

    def wait_healthy(self, timeout=120, interval=0.1):
        """Wait until healthy (see _healthy); return the leader's name."""
        procs.wait_until(self._healthy, timeout, interval, what=f"Patroni cluster {self.scope}")
        return self.leader()

    def _check_alive(self):
        """RuntimeError, with the log's tail, if etcd or a Patroni node has exited."""
        named = [("etcd", self.etcd), *self.agents.items()]
        for name, proc in named:
            if proc.poll() is not None:
                log = self._path(f"{name}.log")
                raise RuntimeError(f"{name} exited with {proc.returncode}; {log}:\n"
                                   f"{procs.tail(log)}")

    def log_tails(self):
        """The end of every log, for reports of a cluster that never became healthy."""
        return "\n".join(f"== {name}.log ==\n{procs.tail(self._path(f'{name}.log'))}"
                         for name in ["etcd", *self.names])
