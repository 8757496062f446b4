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
    for tool in ("ip", "iptables"):
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


def heal():
    run("iptables", "-F", "INPUT", ns=True)
    run("iptables", "-F", "OUTPUT", ns=True)


def wrapper(binary, workdir):
    """An executable that runs @binary inside the namespace (qmp.QEMU takes
    a binary path)."""
    path = os.path.join(workdir, "qemu-in-netns")
    with open(path, "w") as f:
        f.write(f"#!/bin/sh\nexec ip netns exec {NS} {binary} \"$@\"\n")
    os.chmod(path, 0o755)
    return path
