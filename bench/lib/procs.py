"""Processes for the benches: free ports, spawning in own sessions, stopping groups, RSS."""
import os
import signal
import socket
import subprocess
import sys
import time


def free_ports(count):
    """`count` distinct free TCP ports on 127.0.0.1 (held open together so none repeats)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def spawn(cmd, log_path, user=None, env=None):
    """Start `cmd` in its own session (its own process group), output appended to `log_path`.

    With `user`, the process runs as that user and group with no supplementary groups
    (needs root)."""
    identity = {"user": user, "group": user, "extra_groups": []} if user else {}
    with open(log_path, "ab") as log:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env, **identity)


def signal_group(pgid, sig):
    """Send `sig` to a process group; a group that is already gone is fine."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def stop_group(proc, timeout):
    """SIGTERM the process group of `proc`, wait up to `timeout` s, then SIGKILL what is left."""
    if proc.poll() is None:
        signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    signal_group(proc.pid, signal.SIGKILL)
    proc.wait()


def kill_pid(pid):
    """SIGKILL one process if it still exists."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def read_pid(path):
    """The pid on the first line of a pid file, or None when the file is missing."""
    try:
        with open(path) as file:
            return int(file.readline())
    except FileNotFoundError:
        return None


def cmdline(pid):
    """The command line of `pid` as one string ('' when the process is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return file.read().replace(b"\0", b" ").decode().strip()
    except FileNotFoundError:
        return ""


def rss_kib(pid):
    """Resident set size (VmRSS) of `pid` in KiB."""
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"process {pid} has no VmRSS (a zombie?)")


def memory_kib(pid):
    """{'rss': VmRSS, 'private': RssAnon (memory no other process shares), 'pss': Pss (shared
    pages divided among the processes that map them)} of `pid`, in KiB."""
    fields = {}
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            key = line.split(":")[0]
            if key in ("VmRSS", "RssAnon"):
                fields[key] = int(line.split()[1])
    with open(f"/proc/{pid}/smaps_rollup") as file:
        for line in file:
            if line.startswith("Pss:"):
                fields["Pss"] = int(line.split()[1])
    return {"rss": fields["VmRSS"], "private": fields["RssAnon"], "pss": fields["Pss"]}


def wait_until(predicate, timeout, interval=0.1, what="condition"):
    """Call `predicate` until it returns a truthy value (returned); TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def tail(path, lines=30):
    """The last `lines` lines of a text file, for error messages."""
    try:
        with open(path, errors="replace") as file:
            return "".join(file.readlines()[-lines:])
    except FileNotFoundError:
        return f"({path} does not exist)\n"


def children(pid):
    """Pids of the direct children of `pid` (from /proc/*/stat)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as file:
                stat = file.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after it
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


def signal_pid(pid, sig):
    """Send `sig` to one process if it still exists."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def kill_tree(pid):
    """SIGKILL a process and its direct children: it is stopped first so it forks no more.
    PostgreSQL's children lead their own process groups, so a group kill would miss them."""
    signal_pid(pid, signal.SIGSTOP)
    for child in children(pid):
        signal_pid(child, signal.SIGKILL)
    signal_pid(pid, signal.SIGKILL)


def alive(pid):
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def exit_on_signals():
    """SIGTERM and SIGHUP exit like Ctrl-C does: through the finally blocks that clean up."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))


# Patroni from PyPI in its own venv (bench/install.sh): Debian bookworm's 3.0.2 has a stale
# etcd3 cache after a failed compare-and-set (patroni/patroni#2779, fixed upstream) that can
# leave its synchronous-standby key unset for good after a failover. $PGHERD_BENCH_PATRONI
# overrides; Debian's `patroni` is the fallback.
PATRONI_VENV_BIN = "/usr/local/lib/pgherd-bench/patroni-4/bin/patroni"


def patroni_binary():
    """The Patroni executable the bench runs."""
    chosen = os.environ.get("PGHERD_BENCH_PATRONI")
    if chosen:
        return chosen
    return PATRONI_VENV_BIN if os.access(PATRONI_VENV_BIN, os.X_OK) else "patroni"


def versions(pgherd_binary):
    """First lines of `--version` of pgherd, Patroni, etcd and PostgreSQL 15, and the CPUs."""
    def first_line(cmd):
        return (subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines() or [""])[0]
    return {"pgherd": first_line([pgherd_binary, "--version"]) if pgherd_binary else None,
            "patroni": first_line([patroni_binary(), "--version"]),
            "etcd": first_line(["etcd", "--version"]),
            "postgres": first_line(["/usr/lib/postgresql/15/bin/postgres", "--version"]),
            "cpus": os.cpu_count()}


def loadavg():
    """The first three fields of /proc/loadavg (1, 5 and 15-minute load averages)."""
    with open("/proc/loadavg") as file:
        return " ".join(file.read().split()[:3])


def freeze_tree(pid):
    """SIGSTOP a process and its direct children (a frozen node: the processes keep their
    sockets, the kernel keeps answering TCP, nothing answers PostgreSQL's protocol). Returns
    the pids stopped, for thaw()."""
    signal_pid(pid, signal.SIGSTOP)
    stopped = [pid, *children(pid)]
    for child in stopped[1:]:
        signal_pid(child, signal.SIGSTOP)
    return stopped


def thaw(pids):
    """SIGCONT every pid of `pids` still there."""
    for pid in pids:
        signal_pid(pid, signal.SIGCONT)
