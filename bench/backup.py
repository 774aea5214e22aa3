#!/usr/bin/env python3
"""Backup bench: WAL archiving throughput, and base backup and restore MB/s, of pgherd's backup
engine against barman-cloud (barman-cli-cloud) and pgBackRest, in one run on this machine,
all against the same S3-compatible server (one bucket, a folder per tool and test).

What is timed (wall clock, time.monotonic in this script):

1. WAL archiving, live: for each tool a fresh PostgreSQL 15 with archive_mode=on and the tool's
   archive_command, archive_timeout off, and a load (bulk INSERTs) that writes --wal-mb of WAL
   as fast as it can. Sampled every 0.25 s: pg_stat_archiver and the backlog of .ready files.
   segments/s = segments archived / (load start -> the last segment archived).
   Backlog drain: archive_command set to '' (PostgreSQL keeps the .ready files), every helper
   process of the tool stopped (pgherd's background shipper, pgBackRest's async archive-push:
   nothing may upload the backlog before the clock starts; the number of segments already in
   the bucket when it starts is printed and must be 0), --wal-mb more WAL written, then the
   tool's command set again: the clock runs from that reload until pg_stat_archiver reports
   the last segment archived.
2. WAL archiving, synthetic: --segments 16 MiB segments (copies of real ones from the live
   load) with .ready files in a data directory's pg_wal, archived by calling the tool's
   archive_command the way PostgreSQL does: one call per segment, one after the other, the
   .ready renamed to .done after each success. segments/s = segments / total time.
3. Base backup and restore: one PostgreSQL 15 loaded with `pgbench -i` (--size-mb), WAL
   archived by the tool under test; each tool takes a full backup (immediate checkpoint) and
   restores it into an empty directory; the restored server is started with the tool's
   restore_command, recovers and must give the same table checksums. MB/s = size of the data
   directory without pg_wal / time of the backup (restore) command, from its start to its exit
   (the restore includes each tool's own flushing, if any; "restored server up" is from
   pg_ctl start to the first answer of the promoted server). Each backup and each restore
   starts from the same cold state: dirty pages written back (sync) and the page cache dropped,
   so no tool pays for, or leaves to the next, another's writes (--warm: written back only; the
   data directory and the store's files then stay in the page cache).

Same compression for all (--compression gzip|none; gzip at level 6 for all: pgherd's fixed
level, pgBackRest compress-level=6, barman-cloud through bench/lib/barman_gzip_level, as it has
no option and Python defaults to 9), same parallelism (--jobs for base backups: pgherd
data.jobs, barman-cloud-backup --jobs, pgBackRest process-max; --wal-parallel for WAL: pgherd
wal.maxParallel, pgBackRest archive-push process-max with archive-async, barman-cloud through
bench/lib/cnpg-wal-archive.sh, which runs that many barman-cloud-wal-archive processes at once
as CloudNativePG's instance manager does). Every test runs --rounds times (tools in turn,
their order rotating each round); the table gives median [min-max] over the rounds and the
ratio of the medians. The S3 server must answer a request on a reused connection within
--max-request-ms (checked before anything runs); /proc/loadavg is recorded before each test.
"""
import argparse
import glob
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from lib import pg

pg.require_psycopg2()

from lib import pgherd, procs, s3, stats  # noqa: E402
from lib.standalone import Instance, as_postgres, dir_size, make_dir  # noqa: E402

SEGMENT = 16 * 1024 * 1024
WAL_WRAPPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib", "cnpg-wal-archive.sh")
MB = 1_000_000
TOOLS = ["pgherd", "barman", "pgbackrest"]
LABELS = {"pgherd": "pgherd", "barman": "barman-cloud", "pgbackrest": "pgBackRest"}
WAL_TARGET_RATIO = 10  # pgherd's segments/s >= 10x barman-cloud's
CHECKSUM_SQL = ("SELECT (SELECT count(*) FROM pgbench_accounts),"
                " (SELECT sum(aid::bigint * 7 + bid + abalance) FROM pgbench_accounts),"
                " (SELECT count(*) FROM pgbench_branches), (SELECT count(*) FROM pgbench_tellers),"
                " (SELECT token FROM bench_marker)")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tests", default="wal-live,wal-synthetic,base",
                        help="comma-separated: wal-live, wal-synthetic, base (default: all)")
    parser.add_argument("--tools", default=",".join(TOOLS),
                        help=f"comma-separated, of {','.join(TOOLS)} (default: all)")
    parser.add_argument("--compression", choices=["gzip", "none"], default="gzip",
                        help="WAL and base backup compression for every tool (default gzip)")
    parser.add_argument("--size-mb", type=int, default=1000,
                        help="approximate database size for the base backup test (default 1000)")
    parser.add_argument("--wal-mb", type=int, default=512,
                        help="WAL the live load writes, per tool (default 512 = 32 segments)")
    parser.add_argument("--segments", type=int, default=32,
                        help="segments of the synthetic WAL test (default 32)")
    parser.add_argument("--wal-parallel", type=int, default=8,
                        help="parallel WAL uploads (pgherd wal.maxParallel, pgBackRest"
                             " archive-push process-max; default 8)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="base backup/restore parallelism (pgherd data.jobs,"
                             " barman-cloud-backup --jobs, pgBackRest process-max; default 2)")
    parser.add_argument("--s3", choices=["auto", "s3s-fs", "moto"], default="auto",
                        help="S3 server: s3s-fs when installed, else moto (default auto)")
    parser.add_argument("--wal-timeout", type=int, default=900,
                        help="seconds the archiver may take to catch up after the load (default 900)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="times every test runs for every tool (default 3)")
    parser.add_argument("--max-request-ms", type=float, default=10.0,
                        help="refuse to run when the S3 server's median request time on a"
                             " reused connection is above this (default 10 ms)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (debugging)")
    parser.add_argument("--warm", action="store_true",
                        help="keep the page cache between tests (dirty pages are still written"
                             " back before each backup and restore)")
    parser.add_argument("--pgherd-bin",
                        help="pgherd binary (default: $PGHERD_BIN, else this checkout's release"
                             " build, else pgherd on PATH)")
    args = parser.parse_args()
    args.pgherd_bin = os.path.abspath(args.pgherd_bin or pgherd.default_binary())
    commands = subprocess.run([args.pgherd_bin, "instance", "--help"], capture_output=True,
                              text=True).stdout
    if "pgherd" in args.tools and not all(c in commands for c in ("wal-archive", "backup")):
        parser.error(f"{args.pgherd_bin} has no `instance wal-archive`/`instance backup`:"
                     " build this tree (cargo build --release -p pgherd) and set PGHERD_BIN")
    if args.compression == "gzip":
        shim = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib", "barman_gzip_level")
        args.python_path = shim
    else:
        args.python_path = None
    args.tests = args.tests.split(",")
    args.tools = args.tools.split(",")
    for tool in args.tools:
        if tool not in TOOLS:
            parser.error(f"unknown tool {tool}")
    return args


# --- the three tools --------------------------------------------------------------------------

class Tool:
    """One backup tool, set up for one folder (`test`) of the bench bucket."""
    name = None

    def __init__(self, bench, test):
        self.bench, self.test = bench, test
        self.args, self.server = bench.args, bench.server
        self.dir = make_dir(os.path.join(bench.workdir, "tools", f"{self.name}-{test}"), 0o755)

    def run(self, cmd, timeout=3600, cwd=None):
        """Run a client command as postgres with the S3 environment; its time in seconds."""
        start = time.monotonic()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = as_postgres(cmd, env=self.bench.env, check=False, cwd=cwd, timeout=timeout)
        elapsed = time.monotonic() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        # CPU of the command and of the children it waited for (pgBackRest's and barman's
        # worker processes); not of the S3 server nor of PostgreSQL
        self.last_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if result.returncode != 0:
            raise RuntimeError(f"{LABELS[self.name]}: {' '.join(cmd)} exited {result.returncode}:\n"
                               f"{result.stdout[-3000:]}{result.stderr[-3000:]}")
        self.last_output = result.stdout
        return elapsed

    def setup(self, instance):
        """Anything to do once the instance is running, before archiving to the store."""

    def prefix(self):
        """The bucket prefix this tool writes under."""
        return f"{self.name}-{self.test}/"

    def quiesce(self, timeout=10):
        """Stop every process of this tool still running (each names a file of self.dir on its
        command line: pgherd's shipper, pgBackRest's async archive-push, a barman-cloud
        call): given `timeout` s to exit by itself, then SIGTERM. Returns how many were
        signalled."""
        def mine():
            found = []
            for entry in os.listdir("/proc"):
                if entry.isdigit() and int(entry) != os.getpid() and self.dir in procs.cmdline(int(entry)):
                    found.append(int(entry))
            return found
        deadline = time.monotonic() + timeout
        while mine() and time.monotonic() < deadline:
            time.sleep(0.2)
        left = mine()
        for pid in left:
            procs.signal_pid(pid, signal.SIGTERM)
        procs.wait_until(lambda: not mine(), 30, 0.1, f"{LABELS[self.name]}'s processes to exit")
        return len(left)


class Pgherd(Tool):
    name = "pgherd"

    def __init__(self, bench, test):
        super().__init__(bench, test)
        compression = None if self.args.compression == "none" else self.args.compression
        wal = {"maxParallel": self.args.wal_parallel}
        data = {"jobs": self.args.jobs, "immediateCheckpoint": True}
        if compression:
            wal["compression"] = data["compression"] = compression
        selector = {"name": "bench-s3", "key": "%s"}
        configuration = {
            "destinationPath": f"s3://{s3.BUCKET}/{self.prefix().rstrip('/')}",
            "endpointURL": self.server.endpoint,
            "s3Credentials": {
                "accessKeyId": dict(selector, key="ACCESS_KEY_ID"),
                "secretAccessKey": dict(selector, key="ACCESS_SECRET_KEY"),
                "region": dict(selector, key="REGION"),
            },
            "wal": wal, "data": data,
        }
        store = {"configuration": configuration, "serverName": "bench",
                 "secrets": {"bench-s3/ACCESS_KEY_ID": s3.ACCESS_KEY,
                             "bench-s3/ACCESS_SECRET_KEY": s3.SECRET_KEY,
                             "bench-s3/REGION": s3.REGION}}
        self.store = os.path.join(self.dir, "store.json")
        with open(self.store, "w") as file:
            json.dump(store, file)
        shutil.chown(self.store, "postgres", "postgres")
        os.chmod(self.store, 0o600)
        self.archive_spool = make_dir(os.path.join(self.dir, "archive-spool"))
        self.restore_spool = make_dir(os.path.join(self.dir, "restore-spool"))
        self.bin = self.args.pgherd_bin

    def archive_command(self):
        return (f"{self.bin} instance wal-archive --store {self.store}"
                f" --spool {self.archive_spool} %p")

    def restore_command(self):
        return (f"{self.bin} instance wal-restore --store {self.store}"
                f" --spool {self.restore_spool} %f %p")

    def backup(self, instance):
        report = os.path.join(self.dir, "backup-report.json")
        return self.run([self.bin, "instance", "backup", "--store", self.store,
                         "--pgdata", instance.datadir, "--socket-dir", instance.socket_dir,
                         "--port", str(instance.port), "--name", "bench", "--report", report])

    def restore(self, dest):
        return self.run([self.bin, "instance", "restore", "--store", self.store,
                         "--backup", "latest", "--pgdata", dest])


class Barman(Tool):
    name = "barman"

    def url(self):
        return f"s3://{s3.BUCKET}/{self.prefix().rstrip('/')}"

    def common(self):
        return ["--endpoint-url", self.server.endpoint]

    def gzip(self):
        return ["--gzip"] if self.args.compression == "gzip" else []

    def archive_command(self):
        # As CloudNativePG runs it: wal.maxParallel barman-cloud-wal-archive processes at once
        spool = os.path.join(self.dir, "archive-spool")
        if not os.path.isdir(spool):
            make_dir(spool)
        return " ".join([WAL_WRAPPER, str(self.args.wal_parallel), spool, "%p",
                         "barman-cloud-wal-archive", *self.common(), *self.gzip(), self.url(),
                         "bench"])

    def restore_command(self):
        return " ".join(["barman-cloud-wal-restore", *self.common(), self.url(), "bench",
                         "%f", "%p"])

    def backup(self, instance):
        return self.run(["barman-cloud-backup", *self.common(), *self.gzip(),
                         "--immediate-checkpoint", "--jobs", str(self.args.jobs),
                         "-h", instance.socket_dir, "-p", str(instance.port), "-U", "postgres",
                         "--name", "bench", self.url(), "bench"])

    def restore(self, dest):
        self.run(["barman-cloud-backup-list", *self.common(), "--format", "json", self.url(), "bench"])
        backups = json.loads(self.last_output)["backups_list"]
        backup_id = backups[-1]["backup_id"]
        return self.run(["barman-cloud-restore", *self.common(), self.url(), "bench", backup_id, dest])


class Pgbackrest(Tool):
    name = "pgbackrest"
    stanza = "bench"

    def __init__(self, bench, test):
        super().__init__(bench, test)
        if self.server.tls_port is None:
            self.server.start_tls_front()
        self.config = os.path.join(self.dir, "pgbackrest.conf")
        self.spool = make_dir(os.path.join(self.dir, "spool"))
        self.logs = make_dir(os.path.join(self.dir, "log"))
        self.lock = make_dir(os.path.join(self.dir, "lock"))

    def write_config(self, instance):
        compress = "gz" if self.args.compression == "gzip" else "none"
        text = f"""[global]
repo1-type=s3
repo1-path=/{self.prefix().rstrip('/')}
repo1-s3-bucket={s3.BUCKET}
repo1-s3-endpoint=127.0.0.1
repo1-storage-port={self.server.tls_port}
repo1-storage-verify-tls=n
repo1-s3-uri-style=path
repo1-s3-region={s3.REGION}
repo1-s3-key={s3.ACCESS_KEY}
repo1-s3-key-secret={s3.SECRET_KEY}
repo1-retention-full=10
compress-type={compress}
compress-level=6
process-max={self.args.jobs}
start-fast=y
archive-async=y
spool-path={self.spool}
log-path={self.logs}
lock-path={self.lock}
log-level-console=warn
log-level-file=info

[global:archive-push]
process-max={self.args.wal_parallel}

[global:archive-get]
process-max={self.args.jobs}

[{self.stanza}]
pg1-path={instance.datadir}
pg1-port={instance.port}
pg1-socket-path={instance.socket_dir}
pg1-user=postgres
"""
        with open(self.config, "w") as file:
            file.write(text)
        shutil.chown(self.config, "postgres", "postgres")
        os.chmod(self.config, 0o600)

    def base(self):
        return ["pgbackrest", f"--config={self.config}", f"--stanza={self.stanza}"]

    def setup(self, instance):
        self.run([*self.base(), "stanza-create"])

    def archive_command(self):
        return " ".join([*self.base(), "archive-push", "%p"])

    def restore_command(self, dest=None):
        # Synchronous archive-get: the asynchronous one would share its lock with the
        # archive-push of the server that is still running.
        pg1 = [f"--pg1-path={dest}"] if dest else []
        return " ".join([*self.base(), *pg1, "--archive-async=n", "archive-get", "%f", '"%p"'])

    def backup(self, instance):
        return self.run([*self.base(), "--type=full", "backup"])

    def restore(self, dest):
        return self.run([*self.base(), f"--pg1-path={dest}", "restore"])


TOOL_CLASSES = {"pgherd": Pgherd, "barman": Barman, "pgbackrest": Pgbackrest}


# --- the bench --------------------------------------------------------------------------------

class Bench:
    def __init__(self, args, workdir, server):
        self.args, self.workdir, self.server = args, workdir, server
        self.home = make_dir(os.path.join(workdir, "home"), 0o755)
        self.env = dict(os.environ, HOME=self.home, **server.env())
        self.env.pop("PGHOST", None)
        if args.python_path:  # barman-cloud's gzip level (see bench/lib/barman_gzip_level)
            self.env["PYTHONPATH"] = args.python_path
            self.env["BENCH_GZIP_LEVEL"] = "6"
        self.results = {"wal_live": {}, "wal_synthetic": {}, "base": {}}
        self.sample_segments = []

    def log(self, message):
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    def instance(self, name):
        port = procs.free_ports(1)[0]
        base = make_dir(os.path.join(self.workdir, name), 0o755)
        return Instance(os.path.join(base, "data"), make_dir(os.path.join(base, "sock"), 0o755),
                        port, os.path.join(base, "postgres.log"), env=self.env)

    def server_settings(self, instance, archive_command):
        return {**instance.base_settings(), "archive_mode": "on", "archive_command": archive_command,
                "archive_timeout": 0, "wal_level": "replica", "max_wal_size": "20GB",
                "min_wal_size": "1GB", "checkpoint_timeout": "1h", "shared_buffers": "256MB",
                "synchronous_commit": "off", "max_wal_senders": 2}

    # --- WAL, live ---

    def wal_live(self, tool_name, round_no=1):
        tool = TOOL_CLASSES[tool_name](self, f"wal-live-{round_no}")
        instance = self.instance(f"wal-live-{tool_name}-{round_no}")
        instance.initdb()
        if isinstance(tool, Pgbackrest):
            tool.write_config(instance)
        instance.configure(self.server_settings(instance, tool.archive_command()))
        try:
            instance.start()
            tool.setup(instance)
            result = self._load_and_watch(instance, tool)
            if not self.sample_segments:
                self._keep_sample_segments(instance)
        finally:
            instance.stop()
            shutil.rmtree(os.path.dirname(instance.datadir), ignore_errors=True)
        result["store_objects"], result["store_bytes"] = self.server.prefix_size(tool.prefix())
        return result

    def _load_and_watch(self, instance, tool):
        conn = instance.connect()
        cur = conn.cursor()
        cur.execute("SELECT pg_switch_wal()")  # archive what initdb left, before the clock starts
        procs.wait_until(lambda: self._archiver(cur)[1] is not None and not self._ready(instance),
                         120, 0.2, "the first archived segment")
        # 2 KB rows stored out of line and uncompressed: the cheapest WAL to make per byte
        cur.execute("CREATE TABLE wal_load (id bigint, payload text)")
        cur.execute("ALTER TABLE wal_load ALTER payload SET STORAGE EXTERNAL")
        base_count = self._archiver(cur)[0]
        samples, stop = [], threading.Event()
        sampler = threading.Thread(target=self._sample, args=(instance, samples, stop, base_count))
        target = self.args.wal_mb * 1024 * 1024
        start = time.monotonic()
        sampler.start()
        try:
            last = self._write_wal(cur, target)
            load_s = time.monotonic() - start
            self.log(f"  {LABELS[tool.name]}: load wrote {self.args.wal_mb} MiB of WAL in"
                     f" {load_s:.1f} s; waiting for the archiver (last segment {last})")
            self._wait_archived(cur, last, tool)
            done_s = time.monotonic() - start
        finally:
            stop.set()
            sampler.join()
        count, _, failed = self._archiver(cur)
        archived = count - base_count
        result = {"segments": archived, "load_s": load_s, "done_s": done_s,
                  "segments_per_s": archived / done_s,
                  "load_segments_per_s": self.args.wal_mb / 16 / load_s,
                  "lag_after_load_s": done_s - load_s,
                  "max_ready": max((s[2] for s in samples), default=0),
                  "failed_count": failed, "samples": samples}
        # Backlog drain: the same amount of WAL written with archiving paused (an empty
        # archive_command: PostgreSQL keeps the .ready files), then the tool's command set
        # again; PostgreSQL's archiver works through the backlog as fast as the command allows.
        cur.execute("ALTER SYSTEM SET archive_command = ''")
        cur.execute("SELECT pg_reload_conf()")
        time.sleep(0.5)
        # Nothing of the tool may go on uploading while the backlog builds up (pgherd's
        # shipper would otherwise only exit after 30 s idle, pgBackRest's async archive-push
        # once its queue is empty).
        stopped = tool.quiesce()
        stored_before = self.server.prefix_size(tool.prefix())[0]
        last = self._write_wal(cur, target)
        backlog = self._ready(instance)
        base_count = self._archiver(cur)[0]
        stored_early = self.server.prefix_size(tool.prefix())[0] - stored_before
        cur.execute("ALTER SYSTEM SET archive_command = %s", (tool.archive_command(),))
        start = time.monotonic()
        cur.execute("SELECT pg_reload_conf()")
        self._wait_archived(cur, last, tool)
        drain_s = time.monotonic() - start
        count, _, failed_after = self._archiver(cur)
        conn.close()
        drained = count - base_count
        result.update({"drain_backlog": backlog, "drain_segments": drained, "drain_s": drain_s,
                       "drain_segments_per_s": drained / drain_s,
                       "drain_uploaded_before_clock": stored_early,
                       "drain_helpers_stopped": stopped,
                       "failed_count": failed_after})
        self.log(f"  {LABELS[tool.name]}: drained a backlog of {backlog} segments in {drain_s:.1f} s"
                 f" ({stored_early} objects uploaded before the clock started; {stopped}"
                 " helper processes stopped first)")
        if stored_early:
            raise RuntimeError(f"{stored_early} objects were uploaded while the backlog was built:"
                               " the drain would not measure the tool")
        return result

    def _write_wal(self, cur, target):
        """INSERTs until `target` bytes of WAL are written; switches to a new segment and
        returns the name of the last full one."""
        cur.execute("SELECT pg_current_wal_lsn()")
        start_lsn = cur.fetchone()[0]
        next_id = 0
        while True:
            cur.execute("INSERT INTO wal_load SELECT g, repeat(md5(g::text), 64)"
                        " FROM generate_series(%s, %s) g", (next_id, next_id + 9_999))
            next_id += 10_000
            cur.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (start_lsn,))
            if cur.fetchone()[0] >= target:
                break
        cur.execute("SELECT pg_walfile_name(pg_switch_wal())")
        return cur.fetchone()[0]

    def _wait_archived(self, cur, last, tool):
        deadline = time.monotonic() + self.args.wal_timeout
        while True:
            _, last_archived, _ = self._archiver(cur)
            if last_archived is not None and last_archived >= last:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{LABELS[tool.name]}: {last} not archived within"
                                   f" {self.args.wal_timeout} s")
            time.sleep(0.05)

    @staticmethod
    def _archiver(cur):
        cur.execute("SELECT archived_count, last_archived_wal, failed_count FROM pg_stat_archiver")
        return cur.fetchone()

    @staticmethod
    def _ready(instance):
        return len(glob.glob(os.path.join(instance.datadir, "pg_wal", "archive_status", "*.ready")))

    def _sample(self, instance, samples, stop, base_count):
        conn = instance.connect()
        cur = conn.cursor()
        start = time.monotonic()
        try:
            while not stop.is_set():
                count = self._archiver(cur)[0] - base_count
                samples.append((round(time.monotonic() - start, 3), count, self._ready(instance)))
                stop.wait(0.25)
        finally:
            conn.close()

    def _keep_sample_segments(self, instance):
        """Copies of real, full WAL segments for the synthetic test."""
        folder = os.path.join(self.workdir, "sample-wal")
        os.makedirs(folder, exist_ok=True)
        names = sorted(n for n in os.listdir(os.path.join(instance.datadir, "pg_wal"))
                       if len(n) == 24 and os.path.getsize(os.path.join(instance.datadir, "pg_wal", n)) == SEGMENT)
        for name in names[2:18]:  # skip initdb's first ones
            shutil.copy(os.path.join(instance.datadir, "pg_wal", name), os.path.join(folder, name))
            self.sample_segments.append(os.path.join(folder, name))

    # --- WAL, synthetic ---

    def wal_synthetic(self, tool_name, round_no=1):
        tool = TOOL_CLASSES[tool_name](self, f"wal-synthetic-{round_no}")
        if isinstance(tool, Pgbackrest):
            # archive-push checks the data directory's pg_control against its stanza: it needs
            # a real cluster, which the live test has.
            return None
        pgdata = make_dir(os.path.join(self.workdir, f"wal-synthetic-{tool_name}-{round_no}"))
        status = make_dir(os.path.join(pgdata, "pg_wal", "archive_status"))
        wal_dir = os.path.dirname(status)
        shutil.chown(wal_dir, "postgres", "postgres")
        sources = self.sample_segments or [None]
        names = []
        for i in range(self.args.segments):
            name = f"00000001000000{0x10 + i // 256:02X}000000{i % 256:02X}"
            path = os.path.join(wal_dir, name)
            if sources[0] is None:
                with open(path, "wb") as file:  # no live test: half random, half repeated
                    file.write(os.urandom(SEGMENT // 2) + b"pgherd bench wal " * (SEGMENT // 34))
                    file.truncate(SEGMENT)
            else:
                shutil.copy(sources[i % len(sources)], path)
            shutil.chown(path, "postgres", "postgres")
            ready = os.path.join(status, name + ".ready")
            open(ready, "w").close()
            shutil.chown(ready, "postgres", "postgres")
            names.append(name)
        command = tool.archive_command()
        times = []
        start = time.monotonic()
        try:
            for name in names:
                call = time.monotonic()
                result = as_postgres(["/bin/sh", "-c", command.replace("%p", f"pg_wal/{name}")],
                                     env=self.env, check=False, cwd=pgdata)
                if result.returncode != 0:
                    raise RuntimeError(f"{LABELS[tool_name]}: archiving {name} failed:\n"
                                       f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
                times.append(time.monotonic() - call)
                os.rename(os.path.join(status, name + ".ready"), os.path.join(status, name + ".done"))
            total = time.monotonic() - start
        finally:
            shutil.rmtree(pgdata, ignore_errors=True)
        objects, stored = self.server.prefix_size(tool.prefix())
        return {"segments": len(names), "total_s": total, "segments_per_s": len(names) / total,
                "call_s": stats.summary(times), "store_objects": objects, "store_bytes": stored}

    # --- base backup and restore ---

    def base(self, tools):
        instance = self.instance("base")
        instance.initdb()
        instance.configure(self.server_settings(instance, "/bin/true"))
        results = {}
        try:
            instance.start()
            scale = max(1, round(self.args.size_mb / 15.5))
            self.log(f"base: pgbench -i -s {scale} (about {self.args.size_mb} MB)")
            start = time.monotonic()
            as_postgres(["/usr/lib/postgresql/15/bin/pgbench", "-i", "-q", "-s", str(scale),
                         "-h", instance.socket_dir, "-p", str(instance.port), "postgres"],
                        env=self.env)
            token = os.urandom(8).hex()
            instance.query("CREATE TABLE bench_marker (token text); INSERT INTO bench_marker VALUES (%s)",
                           (token,))
            instance.query("CHECKPOINT")
            expected = list(instance.query(CHECKSUM_SQL)[0])
            size = dir_size(instance.datadir)
            self.log(f"base: loaded in {time.monotonic() - start:.0f} s; data directory without"
                     f" pg_wal {size / MB:.0f} MB; checksum {expected}")
            self.results["base_size_bytes"] = size
            for round_no in range(1, self.args.rounds + 1):
                for name in rotated(tools, round_no):
                    self.log(f"base: {LABELS[name]}, round {round_no}; load {procs.loadavg()}")
                    try:
                        result = self._backup_restore(instance, name, size, expected, round_no)
                    except Exception as error:  # noqa: BLE001 - report it, go on with the others
                        self.log(f"base: {LABELS[name]} FAILED: {error}")
                        result = {"error": str(error)}
                    result["loadavg"] = procs.loadavg()
                    results.setdefault(name, []).append(result)
        finally:
            # Immediate: a fast shutdown would wait for the last segments to be archived
            # (pgBackRest's asynchronous archive-push can take its 60 s archive-timeout).
            instance.stop(immediate=True)
            shutil.rmtree(os.path.dirname(instance.datadir), ignore_errors=True)
        return results

    def _backup_restore(self, instance, name, size, expected, round_no=1):
        tool = TOOL_CLASSES[name](self, f"base-{round_no}")
        if isinstance(tool, Pgbackrest):
            tool.write_config(instance)
        instance.query("ALTER SYSTEM SET archive_command = %s", (tool.archive_command(),))
        instance.query("SELECT pg_reload_conf()")
        time.sleep(0.5)
        tool.setup(instance)
        # Start the clock with nothing left to archive: every tool's backup ends by waiting for
        # its last WAL segment to be archived (pg_backup_stop(wait_for_archive)), and that wait
        # is part of its time, but a backlog left by the previous tool would not be.
        instance.query("SELECT pg_switch_wal()")
        procs.wait_until(lambda: not self._ready(instance), 600, 0.2, "the archiver to catch up")
        settle()
        backup_s = tool.backup(instance)
        backup_cpu = tool.last_cpu
        objects, stored = self.server.prefix_size(tool.prefix())
        self.log(f"  {LABELS[name]}: backup {backup_s:.1f} s ({size / MB / backup_s:.1f} MB/s),"
                 f" {stored / MB:.0f} MB in the store")
        dest_base = make_dir(os.path.join(self.workdir, f"restore-{name}-{round_no}"), 0o755)
        dest = make_dir(os.path.join(dest_base, "data"))
        restored = Instance(dest, make_dir(os.path.join(dest_base, "sock"), 0o755),
                            procs.free_ports(1)[0], os.path.join(dest_base, "postgres.log"),
                            env=self.env)
        try:
            settle()
            restore_s = tool.restore(dest)
            restore_cpu = tool.last_cpu
            restored_size = dir_size(dest)
            self.log(f"  {LABELS[name]}: restore {restore_s:.1f} s ({size / MB / restore_s:.1f} MB/s);"
                     " starting the restored server")
            open(os.path.join(dest, "recovery.signal"), "w").close()
            shutil.chown(os.path.join(dest, "recovery.signal"), "postgres", "postgres")
            settings = {**restored.base_settings(), "archive_mode": "off",
                        "restore_command": tool.restore_command(),
                        "recovery_target_action": "promote"}
            if name == "pgbackrest":  # instead of the one its restore wrote
                settings["restore_command"] = tool.restore_command(dest)
            restored.configure(settings)
            start = time.monotonic()
            restored.start(timeout=600)
            restored.wait_primary(timeout=600)
            recovered_s = time.monotonic() - start
            got = list(restored.query(CHECKSUM_SQL)[0])
            verified = got == expected
            self.log(f"  {LABELS[name]}: restored server up in {recovered_s:.1f} s; checksum"
                     f" {'matches' if verified else f'DIFFERS: {got}'}")
        finally:
            restored.stop()
            shutil.rmtree(dest_base, ignore_errors=True)
        return {"backup_s": backup_s, "restore_s": restore_s, "recovery_s": recovered_s,
                "backup_mb_s": size / MB / backup_s, "restore_mb_s": size / MB / restore_s,
                "restore_up_mb_s": size / MB / (restore_s + recovered_s),
                "backup_cpu_s": backup_cpu, "restore_cpu_s": restore_cpu,
                "store_objects": objects, "store_bytes": stored,
                "restored_bytes": restored_size, "verified": verified}


DROP_CACHES = True


def settle():
    """The same state before each timed backup and restore: every dirty page written back (a
    restore must not pay for the previous tool's 1 GB of writes, nor leave its own to the next)
    and, unless --warm, the page cache dropped (every tool reads the data directory or the store
    from disk)."""
    os.sync()
    if not DROP_CACHES:
        return
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        pass  # not root, or a container that forbids it: written back is the main thing


# --- the report -------------------------------------------------------------------------------

def fmt(value, digits=1):
    return "" if value is None else f"{value:.{digits}f}"


def spread(values, digits=1):
    """median [min-max] of a list of per-round values ('' when none)."""
    if not values:
        return ""
    return stats.fmt_spread(stats.summary(values), digits)


def rotated(items, round_no):
    """`items` starting at a different one each round (who goes first changes)."""
    shift = (round_no - 1) % len(items) if items else 0
    return items[shift:] + items[:shift]


def report(results, args, server_description):
    tools = args.tools
    header = ["", *[LABELS[t] for t in tools]]
    others = [t for t in tools if t != "pgherd"]
    header += [f"pgherd/{LABELS[t]}" for t in others] if "pgherd" in tools else []
    rows = []

    def row(label, per_tool, higher_is_better=True, digits=1):
        """per_tool: {tool: [value per round]}; median [min-max], ratios of the medians."""
        medians = {t: statistics.median(v) for t, v in per_tool.items() if v}
        cells = [label, *[spread(per_tool.get(t), digits) for t in tools]]
        if "pgherd" in tools:
            mine = medians.get("pgherd")
            for t in others:
                theirs = medians.get(t)
                if mine is None or theirs is None:
                    cells.append("")
                else:
                    cells.append(stats.fmt_ratio(stats.ratio(mine, theirs) if higher_is_better
                                                 else stats.ratio(theirs, mine)))
        rows.append(cells)

    def ok(section):
        return {t: [r for r in rounds if "error" not in r] for t, rounds in results[section].items()}

    def pick(section, key, scale=1):
        return {t: [r[key] / scale for r in rounds if r.get(key) is not None]
                for t, rounds in ok(section).items()}

    if results["wal_live"]:
        row("WAL live: segments/s (load start -> last archived)", pick("wal_live", "segments_per_s"), digits=2)
        row("  load alone: segments/s of WAL written", pick("wal_live", "load_segments_per_s"), digits=2)
        row("  archiver lag after the load (s)", pick("wal_live", "lag_after_load_s"), False)
        row("  backlog: most .ready files at once", pick("wal_live", "max_ready"), False, 0)
        row("WAL backlog drain: segments/s (PostgreSQL's archiver)",
            pick("wal_live", "drain_segments_per_s"), digits=2)
        row("  backlog drained (segments)", pick("wal_live", "drain_segments"), digits=0)
        row("  failed archive_command calls (both)", pick("wal_live", "failed_count"), False, 0)
        row("  objects uploaded before the drain's clock started", pick("wal_live", "drain_uploaded_before_clock"), False, 0)
        row("  stored (MB)", pick("wal_live", "store_bytes", MB), False, 0)
    if results["wal_synthetic"]:
        row(f"WAL synthetic: segments/s ({args.segments} x 16 MiB, one call each)",
            pick("wal_synthetic", "segments_per_s"), digits=2)
        row("  seconds per call, median", {t: [r["call_s"]["median"] for r in rounds]
                                           for t, rounds in ok("wal_synthetic").items()}, False, 3)
        row("  seconds per call, max", {t: [r["call_s"]["max"] for r in rounds]
                                        for t, rounds in ok("wal_synthetic").items()}, False, 3)
    if results["base"]:
        size = results.get("base_size_bytes", 0) / MB
        row(f"base backup: MB/s ({size:.0f} MB data directory)", pick("base", "backup_mb_s"))
        row("  backup command (s)", pick("base", "backup_s"), False)
        row("  CPU of the backup command, user+sys (s)", pick("base", "backup_cpu_s"), False)
        row("  stored (MB)", pick("base", "store_bytes", MB), False, 0)
        row("restore: MB/s", pick("base", "restore_mb_s"))
        row("  restore command (s)", pick("base", "restore_s"), False)
        row("  CPU of the restore command, user+sys (s)", pick("base", "restore_cpu_s"), False)
        row("  restored server up, recovery included (s)", pick("base", "recovery_s"), False)
        row("restore + restored server up: MB/s", pick("base", "restore_up_mb_s"))
        def verified(tool):
            rounds = results["base"].get(tool) or []
            good = sum(1 for r in rounds if "error" not in r and r.get("verified"))
            return f"{good} of {len(rounds)}" if rounds else ""
        rows.append(["  restored table checksums match (rounds)", *[verified(t) for t in tools]])
    rows = [row + [""] * (len(header) - len(row)) for row in rows]
    loads = [float(r["loadavg"].split()[0]) for section in ("wal_live", "wal_synthetic", "base")
             for rounds in results[section].values() for r in rounds if "loadavg" in r]
    print(f"\nBackup bench: {args.rounds} round(s), median [min-max]; S3 server: {server_description};"
          f" compression {args.compression}{' (level 6 for all)' if args.compression == 'gzip' else ''};"
          f" WAL parallelism {args.wal_parallel}, base backup parallelism {args.jobs};"
          f" page cache {'kept (--warm)' if args.warm else 'dropped'} before each backup and restore;"
          " ratios of the medians, above 1x means pgherd is faster")
    if loads:
        print(f"1-minute load average before the tests: {min(loads):.2f}-{max(loads):.2f}"
              f" ({os.cpu_count()} CPUs); S3 request on a reused connection:"
              f" {results.get('s3_request_ms', {}).get('median', float('nan')):.1f} ms (median)")
    print(stats.table(header, rows))
    for section in ("wal_live", "wal_synthetic", "base"):
        for tool, rounds in results[section].items():
            for result in rounds:
                if "error" in result:
                    print(f"{section} {LABELS[tool]} failed: {result['error'][:2000]}")
    print("\nTargets for pgherd:")
    for section, key, label in (("wal_live", "segments_per_s", "WAL live"),
                                ("wal_live", "drain_segments_per_s", "WAL backlog drain"),
                                ("wal_synthetic", "segments_per_s", "WAL synthetic")):
        rates = {t: statistics.median(v) for t, v in pick(section, key).items() if v}
        if rates.get("pgherd") and rates.get("barman"):
            ratio = rates["pgherd"] / rates["barman"]
            print(f"  {label}: segments/s >= {WAL_TARGET_RATIO}x barman-cloud: {ratio:.1f}x"
                  f" {'met' if ratio >= WAL_TARGET_RATIO else 'MISSED'}")
    for key, label in (("backup_mb_s", "base backup"), ("restore_mb_s", "restore")):
        rates = {t: statistics.median(v) for t, v in pick("base", key).items() if v}
        if rates.get("pgherd") and rates.get("pgbackrest"):
            ratio = rates["pgherd"] / rates["pgbackrest"]
            print(f"  {label} MB/s >= pgBackRest's: {ratio:.2f}x {'met' if ratio >= 1 else 'MISSED'}")


def main():
    args = parse_args()
    global DROP_CACHES
    DROP_CACHES = not args.warm
    procs.exit_on_signals()
    workdir = tempfile.mkdtemp(prefix="pgherd-bench-backup-", dir="/tmp")
    os.chmod(workdir, 0o755)  # the postgres user traverses it
    results = None
    server = s3.S3Server(os.path.join(workdir, "s3"), args.s3)
    try:
        machine = procs.versions(args.pgherd_bin)
        machine.pop("patroni")
        machine.pop("etcd")
        machine["barman_cloud"] = subprocess.run(["barman-cloud-backup", "--version"],
                                                 capture_output=True, text=True).stdout.strip()
        machine["pgbackrest"] = subprocess.run(["pgbackrest", "version"],
                                               capture_output=True, text=True).stdout.strip()
        with server:
            machine["s3"] = server.description
            print(f"pgherd: {args.pgherd_bin} ({machine['pgherd']}); {machine['barman_cloud']};"
                  f" {machine['pgbackrest']}; {machine['postgres']}; S3: {server.description};"
                  f" {machine['cpus']} CPUs", flush=True)
            latency = server.check_request_latency(args.max_request_ms)
            bench = Bench(args, workdir, server)
            results = bench.results
            results["s3_request_ms"] = latency
            bench.log(f"S3 requests on a reused connection: {latency}")
            for test in args.tests:
                if test == "base":
                    results["base"] = bench.base(args.tools)
                    continue
                section = {"wal-live": "wal_live", "wal-synthetic": "wal_synthetic"}[test]
                for round_no in range(1, args.rounds + 1):
                    for tool in rotated(args.tools, round_no):
                        if tool == "pgbackrest" and test == "wal-synthetic":
                            continue
                        bench.log(f"{test}: {LABELS[tool]}, round {round_no}; load {procs.loadavg()}")
                        load = procs.loadavg()
                        try:
                            result = getattr(bench, section)(tool, round_no)
                        except Exception as error:  # noqa: BLE001 - report it, go on
                            bench.log(f"{test}: {LABELS[tool]} FAILED: {error}")
                            result = {"error": str(error)}
                        if result is not None:
                            result["loadavg"] = load
                            results[section].setdefault(tool, []).append(result)
                            if "error" not in result:
                                bench.log(f"  {LABELS[tool]}: {result['segments_per_s']:.2f} segments/s")
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    report(results, args, server.description)
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"machine": machine, "args": {k: v for k, v in vars(args).items()},
                       "results": results}, file, indent=2)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted; everything started was stopped and removed")
