"""PostgreSQL access for the benches, through psycopg2 (Debian's python3-psycopg2)."""
import importlib.util
import os
import time
import sys
from contextlib import closing

DEBIAN_PYTHON = "/usr/bin/python3"


def require_psycopg2():
    """Make psycopg2 importable: re-run the script with Debian's Python when the current
    interpreter (say a pyenv one) lacks it. Call before anything else happens."""
    if importlib.util.find_spec("psycopg2"):
        return
    here = os.path.realpath(sys.executable)
    if os.path.exists(DEBIAN_PYTHON) and here != os.path.realpath(DEBIAN_PYTHON):
        os.execv(DEBIAN_PYTHON, [DEBIAN_PYTHON, *sys.argv])
    sys.exit("psycopg2 is missing: run bench/install.sh")


def connect(dsn, timeout=5):
    """An autocommit connection; `dsn` is a URI or a keyword/value string."""
    import psycopg2
    conn = psycopg2.connect(dsn, connect_timeout=timeout)
    conn.autocommit = True
    return conn


def fetch_one(dsn, sql):
    """The first row of `sql`."""
    with closing(connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()


def write_probe(dsn):
    """One committed write: insert a row into bench_probe (created when missing)."""
    with closing(connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS bench_probe"
                    " (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())")
        cur.execute("INSERT INTO bench_probe DEFAULT VALUES")


def wait_async(conn, timeout, what):
    """Drive an asynchronous psycopg2 connection until its operation is done; after `timeout`
    s without the answer, an OperationalError (the caller drops the connection)."""
    import select
    import psycopg2
    import psycopg2.extensions as ext
    deadline = time.monotonic() + timeout
    while True:
        state = conn.poll()
        if state == ext.POLL_OK:
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise psycopg2.OperationalError(f"{what}: no answer within {timeout} s")
        if state == ext.POLL_READ:
            select.select([conn.fileno()], [], [], left)
        elif state == ext.POLL_WRITE:
            select.select([], [conn.fileno()], [], left)


def single_host_dsns(dsn):
    """A multi-host URI (`postgresql://user:pw@h1:p1,h2:p2/db?...`) as one URI per host, in
    order; any other DSN as itself."""
    prefix, sep, rest = dsn.partition("://")
    if not sep or "@" not in rest:
        return [dsn]
    credentials, _, location = rest.rpartition("@")
    hosts, slash, tail = location.partition("/")
    if "," not in hosts:
        return [dsn]
    return [f"{prefix}://{credentials}@{host}{slash}{tail}" for host in hosts.split(",")]


def connect_async(dsn, timeout):
    """An asynchronous connection (autocommit, as every async psycopg2 connection), with
    libpq's connect_timeout and the same limit on the whole handshake. libpq does not apply
    connect_timeout to asynchronous connections, so a multi-host DSN is tried one host at a
    time here, each with `timeout` (a frozen first host would otherwise hold every attempt:
    its kernel accepts the TCP connection and nothing ever answers)."""
    import psycopg2
    error = None
    for one in single_host_dsns(dsn):
        conn = psycopg2.connect(one, connect_timeout=timeout, async_=1)
        try:
            wait_async(conn, timeout, "connect")
            return conn
        except psycopg2.Error as e:
            conn.close()
            error = e
        except BaseException:
            conn.close()
            raise
    raise error
