#!/usr/bin/env python3
"""Pooler bench: pgbench TPS direct to PostgreSQL, through pgherd's Pooler, and through a plain
PgBouncer with the same settings, in one run on this machine; plus the cnpg_pgbouncer_*
exporter's scrape time and the processes' memory.

One pgherd cluster (bench/pooler.yaml: 1 instance, PostgreSQL 15, and a Pooler `rw` in
transaction mode, default_pool_size 20) is started with `pgherd local up`. pgbench (-M simple,
no TLS on the client side for every target) then runs select-only and tpcb-like against:

- direct: the PostgreSQL instance's own port;
- -rw: the cluster's -rw endpoint (pgherd's TCP forwarder in front of the primary);
- pgherd pooler: the Pooler's endpoint -> PgBouncer -> -rw endpoint (TLS verify-ca) -> primary;
- pgherd pgbouncer: the same PgBouncer at its own port (`instancesStatus[].port` in the
  Pooler's status), without the endpoint in front;
- plain pgbouncer: a PgBouncer started by this script with the same pool settings and the same
  upstream (-rw endpoint, TLS verify-ca), auth_file instead of auth_query, no endpoint in front.

The ratio pooler/plain says what pgherd adds on top of PgBouncer itself (its endpoint);
pgbouncer-port/plain, what its PgBouncer costs without the endpoint (its configuration and
built-in authentication). The 1-minute load average is printed before and after.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

from lib import pgherd, procs, stats

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
MANIFEST = os.path.join(BENCH_DIR, "pooler.yaml")
CLUSTER = "pbench"
POOLER = "pbench-pooler-rw"
PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"
PGBOUNCER = "/usr/sbin/pgbouncer"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=15, help="seconds per pgbench run (15)")
    parser.add_argument("--clients", type=int, default=16, help="pgbench clients (16)")
    parser.add_argument("--jobs", type=int, default=2, help="pgbench threads (2)")
    parser.add_argument("--scale", type=int, default=10, help="pgbench scale (10)")
    parser.add_argument("--scrapes", type=int, default=50, help="metrics scrapes timed (50)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    parser.add_argument("--pgherd-bin", help="pgherd binary (default: $PGHERD_BIN, else "
                        "this checkout's release build, else pgherd on PATH)")
    args = parser.parse_args()
    args.pgherd_bin = args.pgherd_bin or pgherd.default_binary()
    return args


def pooler_status(cluster):
    got = json.loads(cluster._local("get", "pooler", POOLER, "-o", "json"))
    return got.get("status") or {}


def pgbench(port, user, password, dbname, args, *extra):
    """TPS of one pgbench run (without initial connection time)."""
    env = dict(os.environ, PGPASSWORD=password, PGSSLMODE="disable")
    cmd = [PGBENCH, "-h", "127.0.0.1", "-p", str(port), "-U", user, "-n", "-M", "simple",
           "-c", str(args.clients), "-j", str(args.jobs), "-T", str(args.duration), *extra, dbname]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", done.stdout)
    if done.returncode != 0 or not match:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}{done.stderr}")
    return float(match.group(1))


def start_plain_pgbouncer(workdir, upstream_port, ca_file, user, password):
    """A PgBouncer with the Pooler's pool settings, run as postgres; (process, port)."""
    d = os.path.join(workdir, "plain-pgbouncer")
    os.makedirs(d)
    port = procs.free_ports(1)[0]
    with open(os.path.join(d, "userlist.txt"), "w") as f:
        f.write(f'"{user}" "{password}"\n')
    shutil.copy(ca_file, os.path.join(d, "ca.crt"))
    with open(os.path.join(d, "pgbouncer.ini"), "w") as f:
        f.write(f"""[databases]
* = host=127.0.0.1 port={upstream_port}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir = {d}
pool_mode = transaction
default_pool_size = 20
max_client_conn = 500
auth_type = scram-sha-256
auth_file = {d}/userlist.txt
server_tls_sslmode = verify-ca
server_tls_ca_file = {d}/ca.crt
ignore_startup_parameters = extra_float_digits,options
log_stats = 0
""")
    for root, dirs, names in os.walk(d):
        for name in dirs + names + [""]:
            shutil.chown(os.path.join(root, name), "postgres", "postgres")
    os.chmod(os.path.join(d, "userlist.txt"), 0o600)
    proc = procs.spawn([PGBOUNCER, os.path.join(d, "pgbouncer.ini")],
                       os.path.join(d, "pgbouncer.log"), user="postgres")
    procs.wait_until(lambda: _accepts(port), 10, what="the plain pgbouncer to listen")
    return proc, port


def _accepts(port):
    import socket
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def scrape_ms(addr, count):
    times = []
    for _ in range(count):
        start = time.monotonic()
        with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as resp:
            body = resp.read().decode()
        times.append((time.monotonic() - start) * 1000)
    assert "cnpg_pgbouncer_up 1" in body, body[:500]
    return stats.summary(times)


def main():
    args = parse_args()
    procs.exit_on_signals()
    workdir = tempfile.mkdtemp(prefix="pgherd-bench-", dir="/tmp")
    os.chmod(workdir, 0o755)
    plain = None
    results = {"machine": procs.versions(args.pgherd_bin), "args": vars(args)}
    try:
        cluster = pgherd.PgherdCluster(args.pgherd_bin, MANIFEST, CLUSTER,
                                       os.path.join(workdir, "state"))
        with cluster:
            cluster.up(180)
            procs.wait_until(lambda: pooler_status(cluster).get("phase") == "active", 60,
                             what="the pooler to be active")
            status = cluster.status()
            pooler = pooler_status(cluster)
            uri = urllib.parse.urlparse(cluster.app_uri())
            user, password = urllib.parse.unquote(uri.username), urllib.parse.unquote(uri.password)
            dbname = uri.path.lstrip("/")
            rw_port = int(status["endpoints"]["rw"].rsplit(":", 1)[1])
            pooler_port = int(pooler["endpoint"].rsplit(":", 1)[1])
            bouncer_port = int(pooler["instancesStatus"][0]["port"])
            direct_port = cluster.primary()["port"]
            ca = os.path.join(cluster.state_dir, "clusters/default", CLUSTER, "certs/ca.crt")
            env = dict(os.environ, PGPASSWORD=password, PGSSLMODE="disable")
            subprocess.run([PGBENCH, "-i", "-q", "-s", str(args.scale), "-h", "127.0.0.1",
                            "-p", str(rw_port), "-U", user, dbname],
                           check=True, capture_output=True, env=env)
            plain, plain_port = start_plain_pgbouncer(workdir, rw_port, ca, user, password)
            targets = [("direct", direct_port), ("-rw endpoint", rw_port),
                       ("pgherd pooler", pooler_port), ("pgherd pgbouncer", bouncer_port),
                       ("plain pgbouncer", plain_port)]
            results["loadavg"] = [procs.loadavg()]
            tps = {}
            for mode, extra in (("select-only", ["-S"]), ("tpcb-like", [])):
                for name, port in targets:
                    tps[(mode, name)] = pgbench(port, user, password, dbname, args, *extra)
                    print(f"  {mode:<12} {name:<16} {tps[(mode, name)]:10.0f} tps", flush=True)
            metrics = pooler["instancesStatus"][0]["metrics"]
            scrape = scrape_ms(metrics, args.scrapes)
            pooler_dir = os.path.join(cluster.state_dir, "clusters/default", CLUSTER, "poolers",
                                      POOLER, f"{POOLER}-1")
            rss = {
                "pgherd pgbouncer": procs.rss_kib(procs.read_pid(os.path.join(pooler_dir, "pgbouncer.pid"))) / 1024,
                "pgherd exporter": procs.rss_kib(procs.read_pid(os.path.join(pooler_dir, "exporter.pid"))) / 1024,
                "plain pgbouncer": procs.rss_kib(plain.pid) / 1024,
            }
            results["loadavg"].append(procs.loadavg())
            results["tps"] = {f"{m} {n}": v for (m, n), v in tps.items()}
            results["scrape_ms"] = scrape
            results["rss_mib"] = rss
        print()
        print(f"Pooler bench: pgbench -M simple -c {args.clients} -j {args.jobs} -T {args.duration}"
              f" -s {args.scale}, transaction pooling, no client TLS; TPS (higher is better)")
        header = ["mode", *[n for n, _ in targets], "pooler/plain", "pgbouncer-port/plain",
                  "pooler/direct"]
        rows = []
        for mode in ("select-only", "tpcb-like"):
            row = [mode, *[f"{tps[(mode, n)]:.0f}" for n, _ in targets]]
            row.append(f"{tps[(mode, 'pgherd pooler')] / tps[(mode, 'plain pgbouncer')]:.2f}x")
            row.append(f"{tps[(mode, 'pgherd pgbouncer')] / tps[(mode, 'plain pgbouncer')]:.2f}x")
            row.append(f"{tps[(mode, 'pgherd pooler')] / tps[(mode, 'direct')]:.2f}x")
            rows.append(row)
        print(stats.table(header, rows))
        print()
        print(f"exporter scrape (ms, {args.scrapes} scrapes): median {scrape['median']:.2f}, "
              f"p95 {scrape['p95']:.2f}, max {scrape['max']:.2f}")
        print("RSS (MiB): " + ", ".join(f"{k} {v:.1f}" for k, v in rss.items()))
        print(f"1-minute load average before/after the pgbench runs: "
              f"{', '.join(results['loadavg'])} ({os.cpu_count()} CPUs)")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)
    finally:
        if plain is not None:
            procs.stop_group(plain, 5)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
