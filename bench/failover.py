#!/usr/bin/env python3
"""Failover bench: write unavailability after the primary's node dies, and during a
switchover, with no acknowledged write lost, for pgherd's local platform against Patroni +
etcd (Patroni's default timing and its fastest documented timing), in one run on this machine.

Every system runs a 3-node cluster of PostgreSQL 15 with synchronous replication (one
synchronous standby; writes wait for it). A writer (one connection, autocommit, one INSERT
of a new increasing id at a time, reconnecting 50 ms after an error) runs during each test:

- failover, process death: kill -9 of the primary's HA agent and postmaster together; the
  time from the kill to the first acknowledged write sent after it. On one host pgherd's
  local platform sees the node's pids vanish (it polls them every 200 ms); Patroni has no
  such shortcut and waits for its leader key to expire: this row favours pgherd.
- failover, frozen primary: SIGSTOP of the primary's HA agent and postmaster (and its
  children) together, as a stalled VM: the pids stay, the kernel still answers TCP, nothing
  answers PostgreSQL's protocol; neither system can tell it from a slow node but by timeouts.
  The time from the SIGSTOP to the first acknowledged write sent after it; once another node
  is primary the frozen processes get SIGCONT (the VM resumes) and must rejoin.
- failover, network partition: the primary's node loses its only link (its veth goes down):
  it reaches neither the DCS / control plane nor its peers nor clients, and nothing reaches it;
  its processes keep running. The time from the cut to the first acknowledged write sent after
  it; once another node is primary the link comes back and the old primary must rejoin.
- switchover: pgherd `local promote`, Patroni POST /switchover; how long the command took.

With the partition test (in the default --tests), every node of every system runs in a network
namespace of its own joined by a bridge on the host, as separate hosts (pgherd: its Cluster
annotation pgherd.io/netns-prefix; Patroni: `ip netns exec`), for every test of the run; the
control plane, pgherd's endpoints, etcd and the writer stay on the host. Needs root. Without it
(say --tests failover,freeze,switchover) everything listens on loopback.

The writer gives up on an INSERT unanswered after --client-timeout seconds (default 1) and
reconnects, for every system (a frozen server never answers on an open connection).

In both, the writer goes on until the cluster is back to 3 healthy nodes (the old primary
rejoined as a replica) and --settle seconds more; every gap between acknowledged writes longer
than 0.2 s in that window is an outage (their number, total and the longest are reported).

After each test, every acknowledged id must be on the new primary: the missing ones are lost.
"""
import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from lib import pg

pg.require_psycopg2()

from lib import netns, patroni, pgherd, procs, stats, writer  # noqa: E402

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
MANIFEST = os.path.join(BENCH_DIR, "cluster-3-sync.yaml")
CLUSTER = "bench"  # metadata.name in MANIFEST
NODES = 3
# Patroni's DCS timing: its defaults, and its documented minimums (ttl >= 20, loop_wait >= 1,
# retry_timeout >= 3; loop_wait + 2 * retry_timeout <= ttl).
PATRONI_TIMING = {"patroni-default": {"ttl": 30, "loop_wait": 10, "retry_timeout": 10},
                  "patroni-fast": {"ttl": 20, "loop_wait": 1, "retry_timeout": 3}}
# Synchronous replication as close as Patroni 3.0 gets to pgherd's `ANY 1`, `required`: one
# synchronous standby, and with `strict` writes wait when there is none (Patroni 3.0 has no
# quorum commit: its standby list is `FIRST 1 (name)`).
PATRONI_DCS = {"synchronous_mode": True, "synchronous_mode_strict": True,
               "synchronous_node_count": 1}
# A node that comes back after a failover is rewound (or, failing that, cloned again), as
# pgherd does; Patroni already runs PostgreSQL with wal_log_hints=on.
PATRONI_POSTGRESQL = {"basebackup": {"checkpoint": "fast"},  # as pgherd clones
                      "use_pg_rewind": True,
                      "remove_data_directory_on_rewind_failure": True,
                      "remove_data_directory_on_diverged_timelines": True}
CLIENT_TIMEOUT = [1.0]  # --client-timeout
OUTAGE_S = 0.2  # a gap between acks longer than this is an outage (acks come every few ms)
SYSTEMS = ["pgherd", "patroni-default", "patroni-fast"]
TESTS = ["failover", "freeze", "partition", "switchover"]
LABELS = {"pgherd": "pgherd", "patroni-default": "Patroni default",
          "patroni-fast": "Patroni fast"}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10,
                        help="failovers and switchovers of each system (default 10)")
    parser.add_argument("--runs-patroni-default", type=int,
                        help="runs of Patroni with default timing (default --runs; its"
                             " failovers take 30-40 s each)")
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"comma-separated subset of {','.join(SYSTEMS)} (default all)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    parser.add_argument("--tests", default=",".join(TESTS),
                        help="comma-separated, in each run: failover (kill -9), freeze (SIGSTOP),"
                             " partition (the primary's link cut), switchover (default all)")
    parser.add_argument("--client-timeout", type=float, default=1.0,
                        help="seconds the writer waits for an INSERT before it reconnects"
                             " (default 1)")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="seconds of writes before each kill or switchover (default 1)")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds of writes after the cluster is healthy again (default 2)")
    parser.add_argument("--pgherd-bin",
                        help="pgherd binary (default: $PGHERD_BIN, else this checkout's release"
                             " build, else pgherd on PATH)")
    parser.add_argument("--timeout", type=int, default=180,
                        help="seconds a cluster may take to fail over or become healthy"
                             " (default 180)")
    parser.add_argument("--failure-logs", metavar="DIR", default="/tmp",
                        help="where logs are copied: those of a system that misbehaved, or"
                             " every system's with --keep-logs (default /tmp)")
    parser.add_argument("--keep-logs", action="store_true",
                        help="copy every system's logs to --failure-logs at the end, not only"
                             " a failed one's")
    args = parser.parse_args()
    args.tests = [t.strip() for t in args.tests.split(",") if t.strip()]
    if set(args.tests) - set(TESTS):
        parser.error(f"unknown tests {sorted(set(args.tests) - set(TESTS))}; choose from {TESTS}")
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(args.systems) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems {sorted(unknown)}; choose from {SYSTEMS}")
    if "pgherd" in args.systems:
        args.pgherd_bin = args.pgherd_bin or pgherd.default_binary()
    return args


# --- the systems, behind one interface ------------------------------------------------------

class System:
    """A system under test wrapping its cluster (`self.cluster`), cleaned up on exit."""

    def __enter__(self):
        self.cluster.__enter__()
        return self

    def __exit__(self, *exc):
        self.cluster.__exit__(*exc)


class Pgherd(System):
    """pgherd's local platform: the writer goes through the -rw endpoint as the app user."""

    def __init__(self, workdir, args, network):
        self.cluster = pgherd.PgherdCluster(args.pgherd_bin, MANIFEST, CLUSTER,
                                            os.path.join(workdir, "state"), network=network)
        self.timeout = args.timeout

    def start(self):
        self.cluster.up(self.timeout)
        self.cluster.wait_healthy(self.timeout)
        self.uri = self.cluster.app_uri()

    def writer_dsn(self):
        return self.uri

    def check_dsn(self):
        return self.uri

    def primary(self):
        return self.cluster.primary()["name"]

    def kill_primary(self):
        primary = self.cluster.primary()
        return primary["name"], self.cluster.kill_node(primary["name"], primary["pid"])

    def freeze_primary(self):
        primary = self.cluster.primary()
        return (primary["name"], *self.cluster.freeze_node(primary["name"], primary["pid"]))

    def partition_primary(self):
        name = self.primary()
        return name, self.cluster.partition_node(name), lambda: self.cluster.heal_node(name)

    def wait_new_primary(self, old_primary):
        procs.wait_until(lambda: self._primary_or_none() not in (None, old_primary),
                         self.timeout, what="a new pgherd primary")

    def _primary_or_none(self):
        try:
            return self.primary()
        except Exception:  # noqa: BLE001 - no primary at the moment
            return None

    def after_failover(self, old_primary):
        """Nothing to do: the control plane restarts the old primary's node, which rejoins."""

    def wait_healthy(self):
        self.cluster.wait_healthy(self.timeout)

    def switchover(self):
        """`local promote` to the first replica; (old primary, target)."""
        old, target = self.primary(), self.cluster.replicas()[0]
        self.cluster.promote(target, self.timeout)
        return old, target

    def describe(self):
        return json.dumps(self.cluster.status(), indent=1)

    def logs(self):
        return self.cluster.logs()


class Patroni(System):
    """Patroni + etcd: the writer uses a multi-host URI with target_session_attrs=read-write,
    as the superuser. A killed node's patroni is started again once the failover is done, as
    a supervisor would bring a crashed node back."""

    def __init__(self, workdir, args, timing, network):
        self.cluster = patroni.PatroniCluster(workdir, nodes=NODES, dcs=PATRONI_DCS,
                                              postgresql=PATRONI_POSTGRESQL, network=network,
                                              **timing)
        self.timeout = args.timeout

    def start(self):
        self.cluster.start()
        self.wait_healthy()

    def writer_dsn(self):
        return self.cluster.multi_host_dsn()

    def check_dsn(self):
        return self.cluster.leader_dsn()

    def primary(self):
        return self.cluster.leader()

    def kill_primary(self):
        leader = self.cluster.leader()
        return leader, self.cluster.kill_node(leader)

    def freeze_primary(self):
        leader = self.cluster.leader()
        return (leader, *self.cluster.freeze_node(leader))

    def partition_primary(self):
        leader = self.cluster.leader()
        return leader, self.cluster.partition_node(leader), lambda: self.cluster.heal_node(leader)

    def wait_new_primary(self, old_primary):
        procs.wait_until(lambda: self.cluster.leader() not in (None, old_primary),
                         self.timeout, what="a new Patroni leader")

    def after_failover(self, old_primary):
        """Once another node leads, start the dead node's patroni again."""
        procs.wait_until(lambda: self.cluster.leader() not in (None, old_primary),
                         self.timeout, what="a new Patroni leader")
        self.cluster.restart_node(old_primary)

    def wait_healthy(self):
        try:
            self.cluster.wait_healthy(self.timeout)
        except TimeoutError as error:
            raise RuntimeError(f"{error}\n{self.cluster.log_tails()}") from None

    def switchover(self):
        """POST /switchover to a synchronous standby (Patroni refuses any other in
        synchronous mode); (old primary, target)."""
        leader, target = self.cluster.leader(), self.cluster.sync_standbys()[0]
        status, text = self.cluster.switchover(leader, target, self.timeout)
        if status != 200:
            raise RuntimeError(f"switchover {leader} -> {target}: HTTP {status}: {text}")
        return leader, target

    def describe(self):
        return json.dumps(self.cluster.members(), indent=1)

    def logs(self):
        return self.cluster.logs()


def make_system(name, workdir, args, network):
    if name == "pgherd":
        return Pgherd(workdir, args, network)
    return Patroni(workdir, args, PATRONI_TIMING[name], network)


# --- one test -------------------------------------------------------------------------------

class BenchFailure(Exception):
    """A system misbehaved (no failover, lost writes...): reported, its cluster abandoned."""


def start_writer(system, first_id, warmup, timeout):
    """A running writer with `warmup` seconds of acknowledged writes behind it."""
    w = writer.Writer(system.writer_dsn(), first_id, statement_timeout=CLIENT_TIMEOUT[0])
    w.start()
    if not w.wait_acks(1, timeout):
        w.stop()
        raise BenchFailure(f"no write acknowledged within {timeout} s; errors: {w.errors[-3:]}")
    time.sleep(warmup)
    return w


def first_ack(w, after, timeout):
    """The first ack (id, sent, acknowledged) of a write sent after `after`; BenchFailure
    (the writer stopped) when none comes within `timeout` s."""
    first = w.wait_ack_sent_after(after, timeout)
    if first is None:
        stop_writer(w)
        raise BenchFailure(f"no write acknowledged within {timeout} s;"
                           f" last errors: {w.errors[-3:]}")
    return first


def stop_writer(w):
    if not w.stop():
        raise BenchFailure("the writer is stuck in a statement")


def until_healthy(system, w, settle):
    """Keep writing until the cluster is healthy again and `settle` s more (what follows a
    failover or switchover, say a restart, can interrupt writes again); stop the writer.
    Returns the monotonic time the cluster was healthy."""
    try:
        system.wait_healthy()
    except BaseException:
        w.stop()
        raise
    healthy = time.monotonic()
    time.sleep(settle)
    stop_writer(w)
    return healthy


def outages(w, since):
    """The gaps between acks longer than OUTAGE_S after `since`: count, total, list."""
    gaps = w.gaps(since, OUTAGE_S)
    return {"outages": len(gaps), "unavailable_s": sum(g for _, g in gaps),
            "gaps": [[round(end - since, 3), round(g, 3)] for end, g in gaps]}


def check_lost(system, w):
    """The acknowledged ids the (new) primary does not have."""
    return writer.missing(system.check_dsn(), w.acked_ids())


def failover_test(system, first_id, args):
    """Kill the primary's node; time to the first write acknowledged after it, and the
    outages until healthy."""
    w = start_writer(system, first_id, args.warmup, args.timeout)
    old, killed = system.kill_primary()
    first = first_ack(w, killed, args.timeout)
    try:
        system.after_failover(old)
    except BaseException:
        w.stop()
        raise
    healthy = until_healthy(system, w, args.settle)
    new = system.primary()
    lost = check_lost(system, w)
    return {"old_primary": old, "new_primary": new, "failover_s": first[2] - killed,
            "longest_gap_s": w.longest_gap(killed), **outages(w, killed),
            "healthy_s": healthy - killed, "acked": len(w.acks), "lost": len(lost),
            "lost_ids": lost[:20], "errors": len(w.errors), "next_id": w.next_id}


def freeze_test(system, first_id, args):
    """Freeze the primary's node (SIGSTOP); see lost_node_test."""
    return lost_node_test(system, first_id, args, system.freeze_primary)


def partition_test(system, first_id, args):
    """Cut the primary's link; see lost_node_test."""
    return lost_node_test(system, first_id, args, system.partition_primary)


def lost_node_test(system, first_id, args, lose):
    """Lose the primary's node with `lose()` -> (old primary, when, a function that brings
    the node back); time to the first write acknowledged after it; once another node is
    primary, bring the node back and wait until healthy."""
    w = start_writer(system, first_id, args.warmup, args.timeout)
    old, frozen, thaw = lose()
    try:
        first = first_ack(w, frozen, args.timeout)
        system.wait_new_primary(old)
    except BaseException:
        thaw()
        w.stop()
        raise
    thawed = time.monotonic()
    thaw()
    healthy = until_healthy(system, w, args.settle)
    new = system.primary()
    lost = check_lost(system, w)
    return {"old_primary": old, "new_primary": new, "failover_s": first[2] - frozen,
            "longest_gap_s": w.longest_gap(frozen), **outages(w, frozen),
            "lost_for_s": thawed - frozen,
            "healthy_s": healthy - frozen, "acked": len(w.acks), "lost": len(lost),
            "lost_ids": lost[:20], "errors": len(w.errors), "next_id": w.next_id}


def switchover_test(system, first_id, args):
    """Switch over under writes; the command's time and the outages until healthy."""
    w = start_writer(system, first_id, args.warmup, args.timeout)
    began = time.monotonic()
    try:
        old, target = system.switchover()
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        w.stop()
        raise BenchFailure(f"switchover failed: {error}") from None
    done = time.monotonic()
    first_ack(w, done, args.timeout)
    healthy = until_healthy(system, w, args.settle)
    new = system.primary()
    lost = check_lost(system, w)
    return {"old_primary": old, "target": target, "new_primary": new,
            "command_s": done - began, "longest_gap_s": w.longest_gap(began),
            **outages(w, began), "healthy_s": healthy - began, "acked": len(w.acks),
            "lost": len(lost), "lost_ids": lost[:20], "errors": len(w.errors),
            "next_id": w.next_id}


# --- running a system -----------------------------------------------------------------------

def save_logs(system, name, args):
    """Copy the system's logs out of the work dir (which is removed at exit); their dir."""
    target = tempfile.mkdtemp(prefix=f"failover-bench-{name}-", dir=args.failure_logs)
    for path in system.logs():
        if os.path.exists(path):
            relative = path.replace(os.sep, "_").strip("_")
            shutil.copy(path, os.path.join(target, relative))
    return target


def bench_system(name, workdir, runs, args):
    """Start `name`'s cluster, run `runs` failovers and switchovers (alternating), stop it."""
    result = {kind: [] for kind in TESTS}
    result["failure"] = None
    tests = [(kind, test) for kind, test in (("failover", failover_test), ("freeze", freeze_test),
                                             ("partition", partition_test),
                                             ("switchover", switchover_test))
             if kind in args.tests]
    next_id = 1
    network = netns.Network(NODES) if "partition" in args.tests else None
    with contextlib.ExitStack() as stack:
        if network:
            stack.enter_context(network)
        system = stack.enter_context(make_system(name, workdir, args, network))
        try:
            system.start()
            writer.create_table(system.writer_dsn())
            for number in range(1, runs + 1):
                for kind, test in tests:
                    run = test(system, next_id, args)
                    next_id = run.pop("next_id")
                    result[kind].append(run)
                    print(f"{LABELS[name]} {kind} {number}/{runs}: {describe_run(kind, run)}",
                          flush=True)
                    if run["lost"]:
                        raise BenchFailure(f"{run['lost']} acknowledged writes lost:"
                                           f" {run['lost_ids']}")
        except (BenchFailure, TimeoutError, RuntimeError) as error:
            logs = save_logs(system, name, args)
            try:
                state = system.describe()
            except Exception as describe_error:  # noqa: BLE001 - a report, whatever broke
                state = f"(no status: {describe_error})"
            result["failure"] = f"{error}; logs copied to {logs}"
            print(f"{LABELS[name]}: FAILED: {error}\nstate:\n{state}\nlogs copied to {logs}",
                  flush=True)
        else:
            if args.keep_logs:
                print(f"{LABELS[name]}: logs copied to {save_logs(system, name, args)}",
                      flush=True)
    return result


def describe_run(kind, run):
    moved = f"{run['old_primary']} -> {run['new_primary']}"
    if kind in ("failover", "freeze", "partition"):
        event = {"failover": "the kill", "freeze": "the SIGSTOP", "partition": "the cut"}[kind]
        return (f"{moved}: first write {run['failover_s']:.2f} s after {event}, longest gap"
                f" {run['longest_gap_s']:.2f} s, healthy again at {run['healthy_s']:.1f} s;"
                f" outages (at, s) {run['gaps']}; {run['acked']} acked, {run['lost']} lost")
    return (f"{moved}: longest gap {run['longest_gap_s']:.2f} s, command"
            f" {run['command_s']:.2f} s, healthy again at {run['healthy_s']:.1f} s;"
            f" outages (at, s) {run['gaps']}; {run['acked']} acked, {run['lost']} lost")


# --- report ---------------------------------------------------------------------------------

def lost_node_rows(kind, label, event, short, healthy):
    """The rows of a lost-node test (failover, freeze, partition): (label, test, field, digits,
    with a p95 row)."""
    return [(f"{label}: {event} -> first acknowledged write (s)", kind, "failover_s", 2, True),
            (f"{label}: longest gap between acknowledged writes (s)", kind, "longest_gap_s", 2,
             True),
            (f"{label}: no writes, {short} -> healthy + settle (s)", kind, "unavailable_s", 2,
             True),
            (f"{label}: outages (gaps > 0.2 s) in that time", kind, "outages", 0, False),
            (f"{label}: {healthy} (s)", kind, "healthy_s", 1, False)]


ROWS = [  # (label, test, field, digits, with a p95 row)
    *lost_node_rows("failover", "failover", "kill -9", "kill", "kill -9 -> 3 healthy nodes again"),
    *lost_node_rows("freeze", "frozen primary", "SIGSTOP", "SIGSTOP",
                    "SIGSTOP -> resumed, rejoined, 3 healthy"),
    *lost_node_rows("partition", "partition", "link cut", "cut",
                    "cut -> healed, rejoined, 3 healthy"),
    ("switchover: longest gap between acknowledged writes (s)", "switchover", "longest_gap_s", 2,
     True),
    ("switchover: no writes, command -> healthy + settle (s)", "switchover", "unavailable_s", 2,
     True),
    ("switchover: outages (gaps > 0.2 s) in that time", "switchover", "outages", 0, False),
    ("switchover: command time (s)", "switchover", "command_s", 2, True),
]


def summarize(results):
    """Per system and row: stats.summary of the values (None when there are none), the lost
    writes and the number of runs."""
    summary = {}
    for name, result in results.items():
        rows = {}
        for _, kind, field, _, _ in ROWS:
            values = [run[field] for run in result[kind] if run[field] is not None]
            rows[f"{kind}.{field}"] = stats.summary(values) if values else None
        runs = [run for kind in TESTS for run in result[kind]]
        summary[name] = {"rows": rows, "lost": sum(r["lost"] for r in runs),
                         "acked": sum(r["acked"] for r in runs),
                         "runs": {kind: len(result[kind]) for kind in TESTS},
                         "failure": result["failure"]}
    return summary


def cell(values, field, digits):
    if values is None:
        return "n/a"
    if field == "median":
        return stats.fmt_spread(values, digits)
    return f"{values[field]:.{digits}f}"


def report(summary, namespaces):
    """The table: median [min-max] and p95 per row and system, and the Patroni/pgherd ratios
    of the medians (of the p95s on p95 rows)."""
    names = list(summary)
    patronis = [n for n in names if n != "pgherd"] if "pgherd" in names else []
    header = ["", *(LABELS[n] for n in names),
              *(f"{LABELS[n]}/pgherd" for n in patronis)]
    rows = []
    for label, kind, field, digits, with_p95 in ROWS:
        key = f"{kind}.{field}"
        if all(summary[n]["rows"][key] is None for n in names):
            continue
        for stat, shown in [("median", label), *([("p95", "  p95")] if with_p95 else [])]:
            values = {n: summary[n]["rows"][key] for n in names}
            ratios = [("" if field == "outages" else
                       stats.fmt_ratio(stats.ratio(values[n][stat], values["pgherd"][stat]))
                       if values[n] and values["pgherd"] else "n/a") for n in patronis]
            rows.append([shown, *(cell(values[n], stat, digits) for n in names), *ratios])
    rows.append(["lost acknowledged writes (all runs)",
                 *(f"{summary[n]['lost']} of {summary[n]['acked']}" for n in names),
                 *("" for _ in patronis)])
    rows.append([f"runs: {' / '.join(TESTS)}",
                 *(" / ".join(str(summary[n]["runs"][kind]) for kind in TESTS) for n in names),
                 *("" for _ in patronis)])
    where = "each in its own network namespace" if namespaces else "on loopback"
    print(f"\nFailover bench: 3 nodes ({where}), synchronous replication; median [min-max] and"
          " p95; ratios of medians (p95 rows: of p95s), above 1x means pgherd is faster")
    print(stats.table(header, rows))
    for name in names:
        if summary[name]["failure"]:
            print(f"{LABELS[name]} FAILED: {summary[name]['failure']}")


def main():
    args = parse_args()
    CLIENT_TIMEOUT[0] = args.client_timeout
    procs.exit_on_signals()
    workdir = tempfile.mkdtemp(prefix="pgherd-bench-", dir="/tmp")
    os.chmod(workdir, 0o755)  # the postgres user traverses it to its data directories
    results = {}
    try:
        machine = procs.versions(args.pgherd_bin)
        print(f"pgherd: {args.pgherd_bin} ({machine['pgherd']}); {machine['patroni']};"
              f" {machine['etcd']}; {machine['postgres']}; {machine['cpus']} CPUs;"
              f" load {procs.loadavg()}", flush=True)
        loads = []
        for name in args.systems:
            runs = args.runs
            if name == "patroni-default" and args.runs_patroni_default is not None:
                runs = args.runs_patroni_default
            loads.append(procs.loadavg())
            results[name] = bench_system(name, os.path.join(workdir, name), runs, args)
            loads.append(procs.loadavg())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    summary = summarize(results)
    report(summary, "partition" in args.tests)
    print(f"1-minute load average before/after each system: {', '.join(loads)}"
          f" ({os.cpu_count()} CPUs)")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"machine": machine, "namespaces": "partition" in args.tests,
                       "loadavg": loads, "patroni_timing": PATRONI_TIMING,
                       "patroni_dcs": PATRONI_DCS, "patroni_postgresql": PATRONI_POSTGRESQL,
                       "summary": summary, "runs": results}, file, indent=2)
    if any(s["failure"] or s["lost"] for s in summary.values()):
        sys.exit(1)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted; everything started was stopped and removed")
