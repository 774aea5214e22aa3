#!/usr/bin/env python3
"""Startup bench: time to a healthy 3-node cluster, and the HA processes' memory, for pgherd's
local platform against Patroni + etcd, in one run on this machine.

Each round starts both from nothing: pgherd (`local up` on a fresh state dir, control plane
included) and Patroni (a fresh etcd plus three Patroni nodes with Patroni's default timing, or
its fastest documented one with --patroni-timing fast). Both clone replicas with a fast
checkpoint (pgherd's pg_basebackup --checkpoint=fast; Patroni `basebackup: {checkpoint: fast}`).

What is timed: from launching the first process (`pgherd local up`; etcd) until one primary is
writable, both replicas are `streaming` from it by name, and one INSERT has committed
(time.monotonic in this script). RSS is sampled once the cluster has been healthy for --settle
seconds. Rounds alternate which system goes first; the table gives median [min-max] over the
rounds, and /proc/loadavg before each round is printed and kept in --json.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

from lib import pg

pg.require_psycopg2()

from lib import patroni, pgherd, procs, stats  # noqa: E402

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
MANIFEST = os.path.join(BENCH_DIR, "cluster-3.yaml")
CLUSTER = "bench"  # metadata.name in MANIFEST
NODES = 3
TARGETS = {"healthy_s": 10, "agent_mib": 15, "control_plane_mib": 30}
PATRONI_TIMING = {"default": {"ttl": 30, "loop_wait": 10, "retry_timeout": 10},
                  "fast": {"ttl": 20, "loop_wait": 1, "retry_timeout": 3}}
# Replicas are cloned with a fast checkpoint, as pgherd clones them (pg_basebackup's default is
# a spread checkpoint); Patroni documents pg_basebackup options under `basebackup`.
PATRONI_POSTGRESQL = {"basebackup": {"checkpoint": "fast"}}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each system (default 5)")
    parser.add_argument("--patroni-timing", choices=sorted(PATRONI_TIMING), default="default",
                        help="Patroni's DCS timing: its defaults (ttl 30, loop_wait 10) or its"
                             " documented minimums (ttl 20, loop_wait 1, retry_timeout 3)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds healthy before sampling RSS (default 5)")
    parser.add_argument("--pgherd-bin",
                        help="pgherd binary (default: $PGHERD_BIN, else this checkout's release"
                             " build, else pgherd on PATH)")
    parser.add_argument("--timeout", type=int, default=120,
                        help="seconds a cluster may take to become healthy (default 120)")
    args = parser.parse_args()
    args.pgherd_bin = args.pgherd_bin or pgherd.default_binary()
    return args


def rss_mib(pids):
    """{name: VmRSS in MiB} of {name: pid}."""
    return {name: procs.rss_kib(pid) / 1024 for name, pid in pids.items()}


def shared_split_mib(pids):
    """{'private': [RssAnon MiB...], 'pss': [Pss MiB...]} of the pids: RSS counts every
    resident page of the mapped executable and libraries, which all the agents of a host
    share (pgherd: one binary for every process; Patroni: the Python interpreter)."""
    memory = [procs.memory_kib(pid) for pid in pids]
    return {"private": [m["private"] / 1024 for m in memory],
            "pss": [m["pss"] / 1024 for m in memory]}


def bench_pgherd(workdir, args):
    """One pgherd round: `local up`, replicas streaming, a write through -rw, RSS; destroy."""
    cluster = pgherd.PgherdCluster(args.pgherd_bin, MANIFEST, CLUSTER, os.path.join(workdir, "state"))
    with cluster:
        start = time.monotonic()
        cluster.up(args.timeout)
        up_s = time.monotonic() - start
        cluster.wait_streaming()
        pg.write_probe(cluster.app_uri())
        healthy_s = time.monotonic() - start
        time.sleep(args.settle)
        agents = rss_mib(cluster.manager_pids())
        split = shared_split_mib(cluster.manager_pids().values())
        if len(agents) != NODES:
            raise RuntimeError(f"expected {NODES} instance managers, found {sorted(agents)}")
        control_plane = rss_mib({"control plane": cluster.control_plane_pid()})["control plane"]
    return {"healthy_s": healthy_s, "up_s": up_s, "agent_mib": agents,
            "agent_private_mib": split["private"], "agent_pss_mib": split["pss"],
            "control_plane_mib": control_plane}


def bench_patroni(workdir, args):
    """One Patroni round: etcd + Patroni nodes, leader writable with replicas streaming, a
    write on the leader, RSS; stop."""
    with patroni.PatroniCluster(workdir, nodes=NODES, postgresql=PATRONI_POSTGRESQL,
                                **PATRONI_TIMING[args.patroni_timing]) as cluster:
        start = time.monotonic()
        cluster.start()
        try:
            leader = cluster.wait_healthy(args.timeout)
        except TimeoutError as error:
            raise RuntimeError(f"{error}\n{cluster.log_tails()}") from None
        pg.write_probe(cluster.dsn(leader))
        healthy_s = time.monotonic() - start
        time.sleep(args.settle)
        agents = rss_mib(cluster.agent_pids())
        split = shared_split_mib(cluster.agent_pids().values())
        control_plane = rss_mib({"etcd": cluster.etcd_pid()})["etcd"]
    return {"healthy_s": healthy_s, "agent_mib": agents, "agent_private_mib": split["private"],
            "agent_pss_mib": split["pss"], "control_plane_mib": control_plane}


def describe(system, result):
    agents = "/".join(f"{mib:.1f}" for mib in result["agent_mib"].values())
    up = f" (local up returned at {result['up_s']:.2f} s)" if "up_s" in result else ""
    return (f"{system}: healthy + write in {result['healthy_s']:.2f} s{up};"
            f" agents {agents} MiB, control plane {result['control_plane_mib']:.1f} MiB")


BENCHES = {"pgherd": bench_pgherd, "patroni": bench_patroni}


def run_rounds(workdir, args):
    """Alternate which system goes first, so neither always runs on a warmer machine."""
    rounds = []
    for number in range(1, args.rounds + 1):
        order = list(BENCHES) if number % 2 else list(reversed(BENCHES))
        result = {}
        for system in order:
            load = procs.loadavg()
            result[system] = BENCHES[system](os.path.join(workdir, f"{system}-{number}"), args)
            result[system]["loadavg"] = load
            print(f"round {number}/{args.rounds} {describe(system, result[system])}; load before"
                  f" {load}", flush=True)
        rounds.append(result)
    return rounds


def summarize(rounds):
    """Per system: stats of the healthy time, of every agent's RSS, of the control plane's RSS
    and of the per-round total (all agents + control plane)."""
    summary = {}
    for system in ("pgherd", "patroni"):
        runs = [r[system] for r in rounds]
        summary[system] = {
            "healthy_s": stats.summary([r["healthy_s"] for r in runs]),
            "agent_mib": stats.summary([m for r in runs for m in r["agent_mib"].values()]),
            "agent_private_mib": stats.summary([m for r in runs for m in r["agent_private_mib"]]),
            "agent_pss_mib": stats.summary([m for r in runs for m in r["agent_pss_mib"]]),
            "control_plane_mib": stats.summary([r["control_plane_mib"] for r in runs]),
            "total_mib": stats.summary([sum(r["agent_mib"].values()) + r["control_plane_mib"]
                                        for r in runs]),
        }
    summary["pgherd"]["up_s"] = stats.summary([r["pgherd"]["up_s"] for r in rounds])
    return summary


def report(summary, rounds):
    """The results table and the targets."""
    ours, theirs = summary["pgherd"], summary["patroni"]

    def row(label, key, field="median", digits=1):
        mine, other = ours[key], theirs[key]
        shown = ((stats.fmt_spread(mine, digits), stats.fmt_spread(other, digits))
                 if field == "median" else (f"{mine[field]:.{digits}f}", f"{other[field]:.{digits}f}"))
        return [label, *shown, stats.fmt_ratio(stats.ratio(other[field], mine[field]))]

    rows = [
        row("healthy 3-node cluster + first write (s)", "healthy_s", digits=2),
        ["  of which pgherd `local up` returned (s)",
         stats.fmt_spread(ours["up_s"], 2), "", ""],
        row("HA agent RSS per node, max (MiB)", "agent_mib", "max"),
        row("HA agent RSS per node, mean (MiB)", "agent_mib", "mean"),
        row("  of which private (RssAnon), max (MiB)", "agent_private_mib", "max"),
        row("HA agent PSS per node, mean (MiB)", "agent_pss_mib", "mean"),
        row("control plane RSS (MiB)", "control_plane_mib"),
        row(f"total: {NODES} agents + control plane (MiB)", "total_mib"),
    ]
    header = ["", "pgherd", "Patroni + etcd", "Patroni/pgherd"]
    loads = [float(r[s]["loadavg"].split()[0]) for r in rounds for s in r]
    print(f"\nStartup bench: {len(rounds)} round(s); median [min-max]; HA agent ="
          " pgherd instance manager vs patroni; control plane = pgherd control plane vs etcd;"
          f" Patroni timing {PATRONI_TIMING[ARGS.patroni_timing]}, basebackup checkpoint fast")
    print(f"1-minute load average before the rounds: {min(loads):.2f}-{max(loads):.2f}"
          f" ({os.cpu_count()} CPUs)")
    print(stats.table(header, rows))
    print("\nTargets for pgherd:")
    checks = [(f"healthy 3-instance cluster < {TARGETS['healthy_s']} s",
               ours["healthy_s"]["median"], TARGETS["healthy_s"], "s"),
              (f"instance manager < {TARGETS['agent_mib']} MB RSS",
               ours["agent_mib"]["max"], TARGETS["agent_mib"], "MiB"),
              (f"control plane < {TARGETS['control_plane_mib']} MB RSS",
               ours["control_plane_mib"]["max"], TARGETS["control_plane_mib"], "MiB")]
    for label, value, target, unit in checks:
        print(f"  {label}: {value:.1f} {unit} {'met' if value < target else 'MISSED'}")


ARGS = None


def main():
    global ARGS
    args = ARGS = parse_args()
    procs.exit_on_signals()
    workdir = tempfile.mkdtemp(prefix="pgherd-bench-", dir="/tmp")
    os.chmod(workdir, 0o755)  # the postgres user traverses it to its data directories
    try:
        machine = procs.versions(args.pgherd_bin)
        print(f"pgherd: {args.pgherd_bin} ({machine['pgherd']}); {machine['patroni']};"
              f" {machine['etcd']}; {machine['cpus']} CPUs", flush=True)
        rounds = run_rounds(workdir, args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    summary = summarize(rounds)
    report(summary, rounds)
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"machine": machine, "targets": TARGETS, "summary": summary,
                       "rounds": rounds}, file, indent=2)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted; everything started was stopped and removed")
