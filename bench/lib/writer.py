"""A continuous writer for the failover benches: one connection, one INSERT per id, in a thread.

Every INSERT is of a new, increasing id, in autocommit; an error closes the connection and the
writer reconnects after a short backoff. Each acknowledged INSERT is recorded with the time it
was sent and the time its acknowledgement arrived (time.monotonic()), so a bench can tell the
first write sent after an event, the longest gap between acknowledgements, and later check that
every acknowledged id survived.
"""
import threading
import time
from contextlib import closing

from . import pg

TABLE = "bench_writes"


def create_table(dsn):
    """The writer's table (id bigint PRIMARY KEY), created when missing."""
    with closing(pg.connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigint PRIMARY KEY)")


def missing(dsn, ids):
    """The ids of `ids` that the table does not hold (read on `dsn`, say the new primary)."""
    if not ids:
        return []
    with closing(pg.connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT id FROM {TABLE} WHERE id BETWEEN %s AND %s", (min(ids), max(ids)))
        present = {row[0] for row in cur.fetchall()}
    return sorted(set(ids) - present)


class Writer(threading.Thread):
    """INSERTs ids first_id, first_id + 1, ... into TABLE on `dsn` until stop().

    acks: [(id, sent, acknowledged)] in order; errors: [(time, message)]."""

    def __init__(self, dsn, first_id=1, backoff=0.05, connect_timeout=2, statement_timeout=None):
        """`statement_timeout`: seconds the client waits for an INSERT's answer before it drops
        the connection and reconnects (a frozen server never answers, and its kernel keeps
        the TCP connection alive); None waits forever."""
        super().__init__(daemon=True)
        self.dsn = dsn
        self.statement_timeout = statement_timeout
        self.next_id = first_id
        self.backoff = backoff
        self.connect_timeout = connect_timeout
        self.acks = []
        self.errors = []
        self._stopping = threading.Event()
        self._acked = threading.Condition()

    def run(self):
        import psycopg2
        conn = None
        while not self._stopping.is_set():
            try:
                if conn is None:
                    conn = (pg.connect(self.dsn, timeout=self.connect_timeout)
                            if self.statement_timeout is None
                            else pg.connect_async(self.dsn, self.connect_timeout))
                self._insert(conn)
            except psycopg2.Error as error:
                self.errors.append((time.monotonic(), str(error).strip().splitlines()[0]
                                    if str(error).strip() else type(error).__name__))
                if conn is not None:
                    conn.close()
                    conn = None
                self._stopping.wait(self.backoff)
        if conn is not None:
            conn.close()

    def _insert(self, conn):
        """One INSERT of the next id; the id is used up whatever happens (its fate may be
        unknown when the connection breaks), so no id is ever sent twice."""
        value = self.next_id
        self.next_id += 1
        with conn.cursor() as cur:
            sent = time.monotonic()
            cur.execute(f"INSERT INTO {TABLE} (id) VALUES (%s)", (value,))
            if self.statement_timeout is not None:
                pg.wait_async(conn, self.statement_timeout, "INSERT")
        acknowledged = time.monotonic()
        with self._acked:
            self.acks.append((value, sent, acknowledged))
            self._acked.notify_all()

    def stop(self, timeout=30):
        """Stop after the INSERT in flight; False if the thread is still stuck after `timeout`."""
        self._stopping.set()
        self.join(timeout)
        return not self.is_alive()

    def acked_ids(self):
        return [value for value, _, _ in self.acks]

    def wait_ack_sent_after(self, moment, timeout):
        """The first ack of a write sent after `moment` (monotonic), waiting up to `timeout` s
        for it; None on timeout."""
        deadline = time.monotonic() + timeout
        start = 0
        with self._acked:
            while True:
                for index in range(start, len(self.acks)):
                    if self.acks[index][1] > moment:
                        return self.acks[index]
                start = len(self.acks)
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._acked.wait(min(left, 0.5))

    def wait_acks(self, count, timeout):
        """Wait until at least `count` writes are acknowledged; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._acked:
            while len(self.acks) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._acked.wait(min(left, 0.5))
        return True

    def gaps(self, since, longer_than):
        """[(end, length)] of the gaps between consecutive acks longer than `longer_than` s
        that end after `since` (monotonic): the outages after an event at `since`."""
        return [(later[2], later[2] - earlier[2]) for earlier, later in zip(self.acks, self.acks[1:])
                if later[2] > since and later[2] - earlier[2] > longer_than]

    def longest_gap(self, since):
        """The longest time between consecutive acks, counting only gaps that end after
        `since` (monotonic): the unavailability around an event at `since`."""
        gaps = [later[2] - earlier[2] for earlier, later in zip(self.acks, self.acks[1:])
                if later[2] > since]
        return max(gaps, default=None)
