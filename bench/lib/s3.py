"""An S3-compatible server on 127.0.0.1 for the backup bench, and a TLS front for clients that
only speak HTTPS to S3 (pgBackRest).

The server is `s3s-fs` (a Rust S3 server over a directory, installed by bench/install.sh) when
it is found, else moto (`python3 -m moto.server`, in-memory, single Python process). Every
client of one run talks to the same server process and bucket.
"""
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

from . import procs

ACCESS_KEY = "benchaccesskey"
SECRET_KEY = "benchsecretkey0123456789"
REGION = "us-east-1"
BUCKET = "bench"
# The TCP_NODELAY build of bench/install.sh first: stock s3s-fs leaves Nagle on.
S3S_FS_PATHS = ["/usr/local/lib/pgherd-bench/s3s-fs-nodelay/bin/s3s-fs", "/usr/local/bin/s3s-fs",
                os.path.expanduser("~/.cargo/bin/s3s-fs")]


def find_s3s_fs():
    """Path of the s3s-fs binary ($S3S_FS_BIN, then the usual install places, then PATH)."""
    for candidate in [os.environ.get("S3S_FS_BIN"), *S3S_FS_PATHS, shutil.which("s3s-fs")]:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def find_moto_python():
    """A Python interpreter that can import moto ($MOTO_PYTHON, python3 on PATH, this one)."""
    for candidate in [os.environ.get("MOTO_PYTHON"), shutil.which("python3"), sys.executable]:
        if candidate and subprocess.run([candidate, "-c", "import moto.server"],
                                        capture_output=True).returncode == 0:
            return candidate
    return None


class S3Server:
    """One S3 server process with the bench bucket; `kind` is "auto", "s3s-fs" or "moto"."""

    def __init__(self, workdir, kind="auto"):
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.port = procs.free_ports(1)[0]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.kind = kind
        self.proc = None
        self.tls = None
        self.tls_port = None
        self.description = None
        self.max_request_ms = 10.0
        self.tls_latency = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self, timeout=60):
        log = os.path.join(self.workdir, "s3.log")
        s3s_fs = find_s3s_fs() if self.kind in ("auto", "s3s-fs") else None
        if self.kind == "s3s-fs" and not s3s_fs:
            raise SystemExit("s3s-fs not found: run bench/install.sh (or set S3S_FS_BIN)")
        if s3s_fs:
            root = os.path.join(self.workdir, "s3-root")
            os.makedirs(os.path.join(root, BUCKET))  # s3s-fs: a bucket is a folder of the root
            cmd = [s3s_fs, "--host", "127.0.0.1", "--port", str(self.port),
                   "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY, root]
            self.kind = "s3s-fs"
            version = subprocess.run([s3s_fs, "--version"], capture_output=True, text=True)
            build = ", TCP_NODELAY build" if "nodelay" in s3s_fs else ""
            self.description = f"s3s-fs ({(version.stdout or '').strip() or s3s_fs}{build}), files in {root}"
        else:
            python = find_moto_python()
            if not python:
                raise SystemExit("neither s3s-fs nor moto found: run bench/install.sh")
            cmd = [python, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
            self.kind = "moto"
            self.description = f"moto server ({python} -m moto.server), in memory"
        env = dict(os.environ, RUST_LOG="warn")
        self.proc = procs.spawn(cmd, log, env=env)
        procs.wait_until(self._up, timeout, 0.1, f"the S3 server ({self.kind})")
        if self.kind == "moto":
            self.client().create_bucket(Bucket=BUCKET)

    def _up(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"the S3 server exited:\n{procs.tail(os.path.join(self.workdir, 's3.log'))}")
        try:
            urllib.request.urlopen(self.endpoint + "/", timeout=1).read()
        except urllib.error.HTTPError:
            return True  # it answers (403 without a signature is fine)
        except OSError:
            return False
        return True

    def start_tls_front(self, timeout=30):
        """stunnel on another port, TLS in front of the server (self-signed certificate)."""
        cert, key = (os.path.join(self.workdir, name) for name in ("tls.crt", "tls.key"))
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert],
                       check=True, capture_output=True)
        self.tls_port = procs.free_ports(1)[0]
        conf = os.path.join(self.workdir, "stunnel.conf")
        with open(conf, "w") as file:
            # TCP_NODELAY both ways: with Nagle on, a request on a reused connection waits
            # for the peer's delayed ACK (~40 ms).
            file.write(f"foreground = yes\npid =\nsocket = l:TCP_NODELAY=1\nsocket = r:TCP_NODELAY=1\n"
                       f"[s3]\naccept = 127.0.0.1:{self.tls_port}\n"
                       f"connect = 127.0.0.1:{self.port}\ncert = {cert}\nkey = {key}\n")
        stunnel = shutil.which("stunnel4") or shutil.which("stunnel")
        if not stunnel:
            raise SystemExit("stunnel not found: run bench/install.sh")
        self.tls = procs.spawn([stunnel, conf], os.path.join(self.workdir, "stunnel.log"))

        def listening():
            if self.tls.poll() is not None:
                raise RuntimeError(f"stunnel exited:\n{procs.tail(os.path.join(self.workdir, 'stunnel.log'))}")
            try:
                import socket
                with socket.create_connection(("127.0.0.1", self.tls_port), timeout=1):
                    return True
            except OSError:
                return False
        procs.wait_until(listening, timeout, 0.1, "stunnel")
        import urllib3
        urllib3.disable_warnings()  # the self-signed certificate, in the check below
        self.tls_latency = self.request_latency(f"https://127.0.0.1:{self.tls_port}")
        if self.tls_latency["median"] > self.max_request_ms:
            raise SystemExit(f"requests through stunnel take {self.tls_latency['median']:.1f} ms"
                             f" on a reused connection (limit {self.max_request_ms} ms)")

    def request_latency(self, endpoint=None, requests=30):
        """Seconds per signed GET of a small object on one reused connection (boto3 keeps it
        open), after a few warm-up requests: stats.summary in milliseconds."""
        import time
        import boto3
        import botocore.config
        from . import stats
        client = boto3.client("s3", endpoint_url=endpoint or self.endpoint,
                              aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                              region_name=REGION, verify=False,
                              config=botocore.config.Config(max_pool_connections=1))
        client.put_object(Bucket=BUCKET, Key="latency-probe", Body=b"x" * 1024)
        times = []
        for i in range(requests + 3):
            start = time.monotonic()
            client.get_object(Bucket=BUCKET, Key="latency-probe")["Body"].read()
            if i >= 3:
                times.append((time.monotonic() - start) * 1000)
        client.delete_object(Bucket=BUCKET, Key="latency-probe")
        return {k: round(v, 2) for k, v in stats.summary(times).items()}

    def check_request_latency(self, limit_ms):
        """Refuse to go on (SystemExit) when the median request on a reused connection takes
        more than `limit_ms`: the bench would measure the server, not the tools."""
        self.max_request_ms = limit_ms
        measured = self.request_latency()
        if measured["median"] > limit_ms:
            raise SystemExit(f"the S3 server ({self.description}) takes {measured['median']:.1f} ms"
                             f" per request on a reused connection (limit {limit_ms} ms): Nagle's"
                             " algorithm on its sockets? Run bench/install.sh (s3s-fs with"
                             " TCP_NODELAY)")
        return measured

    def stop(self):
        for proc in (self.tls, self.proc):
            if proc is not None:
                procs.stop_group(proc, 10)

    def env(self):
        """Environment variables the AWS clients (boto3 in barman-cloud) read."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}

    def client(self):
        import boto3
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name=REGION)

    def prefix_size(self, prefix):
        """(objects, bytes) stored under `prefix` in the bench bucket."""
        count = size = 0
        for page in self.client().get_paginator("list_objects_v2").paginate(
                Bucket=BUCKET, Prefix=prefix):
            for obj in page.get("Contents", []):
                count += 1
                size += obj["Size"]
        return count, size
