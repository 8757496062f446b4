"""A destination QEMU in its own network namespace, and a silent partition
between it and the host: iptables DROP in both directions inside the
namespace, so that neither side ever sees an RST or an EOF.

Needs root, iproute2 and iptables.  Shared by tests/partition/ and
bench/partition.py."""

import os
import shutil
import subprocess

NS = "mig-i5-dst"
HOST_IF, NS_IF = "mig-i5-h", "mig-i5-d"
HOST_IP, NS_IP = "10.99.5.1", "10.99.5.2"


def run(*args, ns=False):
    cmd = (["ip", "netns", "exec", NS] if ns else []) + list(args)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def unavailable():
    """Why network namespaces cannot be used here, or None."""
    if os.geteuid() != 0:
        return "needs root (ip netns, iptables)"
    for tool in ("ip", "iptables", "tc"):
        if not shutil.which(tool):
            return f"'{tool}' not found (Debian packages iproute2, iptables)"
    try:
        subprocess.run(["ip", "netns", "add", NS + "-probe"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        subprocess.run(["ip", "netns", "del", NS + "-probe"], check=True)
    except (subprocess.CalledProcessError, OSError) as e:
        return f"cannot create a network namespace: {e}"
    return None


def setup():
    teardown()
    run("ip", "netns", "add", NS)
    run("ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF)
    run("ip", "link", "set", NS_IF, "netns", NS)
    run("ip", "addr", "add", f"{HOST_IP}/24", "dev", HOST_IF)
    run("ip", "link", "set", HOST_IF, "up")
    run("ip", "addr", "add", f"{NS_IP}/24", "dev", NS_IF, ns=True)
    run("ip", "link", "set", NS_IF, "up", ns=True)
    run("ip", "link", "set", "lo", "up", ns=True)


def teardown():
    subprocess.run(["ip", "link", "del", HOST_IF], stderr=subprocess.DEVNULL)
    subprocess.run(["ip", "netns", "del", NS], stderr=subprocess.DEVNULL)


def partition():
    """Drop every packet to and from the namespace's interface."""
    run("iptables", "-A", "INPUT", "-i", NS_IF, "-j", "DROP", ns=True)
    run("iptables", "-A", "OUTPUT", "-o", NS_IF, "-j", "DROP", ns=True)


def throttle(mbit, latency_ms=1000):
    """A slow but healthy link: both directions limited to @mbit Mbit/s
    by a token bucket that queues up to @latency_ms of traffic (nothing
    dropped on purpose; TCP fills the queue and paces the rest).  The
    bucket sits where a router's would, not on the sender's own
    interface: traffic into the namespace is shaped on an ifb device fed
    from the namespace's ingress, so that the sender's TCP small-queues
    limit does not keep the queue short, as it would on its own device."""
    ifb = "mig-i5-ifb"
    run("ip", "link", "add", ifb, "type", "ifb", ns=True)
    run("ip", "link", "set", ifb, "up", ns=True)
    run("tc", "qdisc", "add", "dev", NS_IF, "handle", "ffff:", "ingress",
        ns=True)
    run("tc", "filter", "add", "dev", NS_IF, "parent", "ffff:", "protocol",
        "all", "u32", "match", "u32", "0", "0",
        "action", "mirred", "egress", "redirect", "dev", ifb, ns=True)
    for dev in (ifb, NS_IF):
        run("tc", "qdisc", "replace", "dev", dev, "root", "tbf",
            "rate", f"{mbit}mbit", "burst", "32kb",
            "latency", f"{latency_ms}ms", ns=True)
    # A sender that has long filled that queue (as after a pre-copy at
    # full speed): start with a congestion window of a queue's worth
    cwnd = latency_ms * mbit * 1000 // (8 * 1448)
    run("ip", "route", "change", f"{NS_IP.rsplit('.', 1)[0]}.0/24", "dev",
        HOST_IF, "proto", "kernel", "scope", "link", "src", HOST_IP,
        "initcwnd", str(cwnd))


class CongestionControl:
    """The host's TCP congestion control set to @name for a while (a
    with block), the previous one restored after.  The source QEMU runs
    in the host's namespace; with BBR, which keeps the queue short, a
    slow link hides what loss-based congestion control (cubic, Linux's
    default) shows: seconds of pages queued ahead of each heartbeat."""

    PATH = "/proc/sys/net/ipv4/tcp_congestion_control"

    def __init__(self, name):
        self.name, self.old = name, None

    def __enter__(self):
        with open(self.PATH) as f:
            self.old = f.read().strip()
        with open(self.PATH, "w") as f:
            f.write(self.name)
        return self

    def __exit__(self, *exc):
        with open(self.PATH, "w") as f:
            f.write(self.old)


def heal():
    run("iptables", "-F", "INPUT", ns=True)
    run("iptables", "-F", "OUTPUT", ns=True)


def wrapper(binary, workdir):
    """An executable that runs @binary inside the namespace (forkvm.QEMU takes
    a binary path)."""
    path = os.path.join(workdir, "qemu-in-netns")
    with open(path, "w") as f:
        f.write(f"#!/bin/sh\nexec ip netns exec {NS} {binary} \"$@\"\n")
    os.chmod(path, 0o755)
    return path
