"""Processes for the benches: free ports, spawning in own sessions, stopping groups, RSS."""
import os
import signal
import socket
import subprocess
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
