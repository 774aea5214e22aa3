"""One PostgreSQL 15 instance run by the bench itself (no HA agent): initdb, settings, start,
fast stop, SQL. PostgreSQL runs as the OS user `postgres`; the bench runs as root."""
import os
import shutil
import signal
import subprocess

from . import pg, procs

PG_BIN = "/usr/lib/postgresql/15/bin"
OS_USER = "postgres"


def as_postgres(cmd, env=None, check=True, cwd=None, capture=True, timeout=None):
    """Run `cmd` as the postgres user; CalledProcessError carries its output."""
    return subprocess.run(cmd, user=OS_USER, group=OS_USER, extra_groups=[], env=env, cwd=cwd,
                          check=check, capture_output=capture, text=True, timeout=timeout)


def make_dir(path, mode=0o700):
    """A directory owned by postgres."""
    os.makedirs(path, exist_ok=True)
    shutil.chown(path, OS_USER, OS_USER)
    os.chmod(path, mode)
    return path


class Instance:
    """PostgreSQL on `datadir`, listening only on a unix socket in `socket_dir` at `port`.
    `env` is the environment of the postmaster, so of archive_command and restore_command."""

    def __init__(self, datadir, socket_dir, port, log, env=None):
        self.datadir, self.socket_dir, self.port, self.log = datadir, socket_dir, port, log
        self.env = env
        self.proc = None

    def initdb(self):
        make_dir(os.path.dirname(self.datadir), 0o755)
        as_postgres([f"{PG_BIN}/initdb", "-D", self.datadir, "-U", "postgres", "--auth=trust",
                     "-E", "UTF8", "--no-instructions"], env=self.env)

    def configure(self, settings):
        """Appends `settings` ({name: value}) to postgresql.auto.conf (later lines win)."""
        path = os.path.join(self.datadir, "postgresql.auto.conf")
        with open(path, "a") as file:
            for name, value in settings.items():
                if isinstance(value, str):
                    value = "'" + value.replace("'", "''") + "'"
                file.write(f"{name} = {value}\n")
        shutil.chown(path, OS_USER, OS_USER)

    def base_settings(self):
        return {"port": self.port, "listen_addresses": "", "unix_socket_directories": self.socket_dir}

    def start(self, timeout=120):
        make_dir(self.socket_dir, 0o755)
        open(self.log, "a").close()
        shutil.chown(self.log, OS_USER, OS_USER)
        self.proc = procs.spawn([f"{PG_BIN}/postgres", "-D", self.datadir], self.log,
                                user=OS_USER, env=self.env)
        procs.wait_until(self._accepts, timeout, 0.2, f"PostgreSQL on {self.datadir}")

    def _accepts(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"PostgreSQL exited ({self.proc.returncode}):\n{procs.tail(self.log)}")
        result = subprocess.run([f"{PG_BIN}/pg_isready", "-q", "-h", self.socket_dir,
                                 "-p", str(self.port)])
        return result.returncode == 0

    def stop(self, timeout=60, immediate=False):
        """Fast shutdown (SIGINT; immediate: SIGQUIT, no final checkpoint nor archiving), then
        SIGKILL of the whole group (archive commands too)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            procs.signal_pid(self.proc.pid, signal.SIGQUIT if immediate else signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        procs.stop_group(self.proc, 5)
        self.proc = None

    def dsn(self, dbname="postgres"):
        return f"host={self.socket_dir} port={self.port} user=postgres dbname={dbname}"

    def connect(self):
        return pg.connect(self.dsn())

    def query(self, sql, params=None):
        """All rows of `sql` (a fresh connection)."""
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def wait_primary(self, timeout=300):
        """Until it accepts connections and has left recovery."""
        def done():
            try:
                return not self.query("SELECT pg_is_in_recovery()")[0][0]
            except Exception:  # noqa: BLE001 - still starting or recovering
                if self.proc.poll() is not None:
                    raise RuntimeError(f"PostgreSQL exited:\n{procs.tail(self.log)}") from None
                return False
        procs.wait_until(done, timeout, 0.2, f"PostgreSQL on {self.datadir} to leave recovery")


def dir_size(path, exclude=("pg_wal",)):
    """Bytes of the regular files under `path`, top-level folders in `exclude` left out."""
    total = 0
    for root, dirs, files in os.walk(path):
        if root == path:
            dirs[:] = [d for d in dirs if d not in exclude]
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                pass
    return total
