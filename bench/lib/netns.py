"""Network namespaces for the benches: one per node, joined by a bridge on the host, so that one
machine behaves like several hosts and a node's link can be cut (a network partition).

The same layout as the chaos suite's (crates/app/pgherd/tests/chaos/mod.rs): namespace
`<prefix>-<serial>` has address `<subnet>.<serial>` on its `eth0`, whose veth peer sits in the
bridge `<prefix>br` (address `<subnet>.254`, where the host's processes are reached). Needs root
and iproute2."""
import os
import subprocess


def ip(*args, check=True):
    """Run `ip ARGS`; RuntimeError with ip's message when it fails and `check`."""
    out = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and out.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


class Network:
    """A bridge and `nodes` namespaces (serials 1..nodes); removed on exit."""

    def __init__(self, nodes, prefix=None):
        number = os.getpid() % 100_000
        self.prefix = prefix or f"pgb{number}"
        self.subnet = f"10.124.{number % 250}"
        self.serials = list(range(1, nodes + 1))

    def __enter__(self):
        self.create()
        return self

    def __exit__(self, *exc):
        self.remove()

    def create(self):
        if os.geteuid() != 0:
            raise RuntimeError("network namespaces need root (run the bench as root)")
        self.remove()  # leftovers of an earlier run with the same pid
        bridge = self.bridge()
        ip("link", "add", bridge, "type", "bridge")
        ip("addr", "add", f"{self.host_address()}/24", "dev", bridge)
        ip("link", "set", bridge, "up")
        for serial in self.serials:
            ns, veth = self.namespace(serial), self._veth(serial)
            ip("netns", "add", ns)
            ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            ip("link", "set", veth, "master", bridge)
            ip("link", "set", veth, "up")
            ip("-n", ns, "addr", "add", f"{self.address(serial)}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")

    def remove(self):
        """Kill what still runs in the namespaces (it would keep them alive), delete them, the
        veths and the bridge. Idempotent."""
        for serial in self.serials:
            ns = self.namespace(serial)
            for pid in ip("netns", "pids", ns, check=False).split():
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            ip("netns", "del", ns, check=False)
            ip("link", "del", self._veth(serial), check=False)
        ip("link", "del", self.bridge(), check=False)

    def bridge(self):
        return f"{self.prefix}br"

    def namespace(self, serial):
        return f"{self.prefix}-{serial}"

    def _veth(self, serial):
        return f"{self.prefix}v{serial}"

    def address(self, serial):
        """Node `serial`'s address (reachable from the host and the other namespaces)."""
        return f"{self.subnet}.{serial}"

    def host_address(self):
        """The host's address on the bridge (the namespaces reach host processes there)."""
        return f"{self.subnet}.254"

    def cidr(self):
        return f"{self.subnet}.0/24"

    def link(self, serial, up):
        """Cut (`up` False) or restore node `serial`'s only link: it then reaches nothing and
        nothing reaches it, host included."""
        ip("link", "set", self._veth(serial), "up" if up else "down")

    def exec_prefix(self, serial, user=None):
        """The command prefix that runs a program in node `serial`'s namespace, as `user`
        when given (`ip netns exec` needs root, so the switch to the user comes after it)."""
        prefix = ["ip", "netns", "exec", self.namespace(serial)]
        if user:
            prefix += ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"]
        return prefix
