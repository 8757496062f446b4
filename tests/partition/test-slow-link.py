#!/usr/bin/env python3
"""A slow but healthy link is not a broken one (issue 13, defect 5).

The destination QEMU runs in a network namespace behind a veth pair whose
both directions are limited to 16 Mbit/s (2 MB/s) by a token bucket with
a queue of a second, the host's TCP congestion control cubic for the run
(restored after).
With postcopy-detect-timeout T = 1 s on both sides, the pause policy on
the destination and no post-copy bandwidth limit (so that megabytes of
pages queue in the socket buffers ahead of every heartbeat), post-copy
must run to completion without either side declaring the channel broken
(no postcopy-paused, no STOP on the destination), and the destination
guest's memory must be consistent.  Then the same slow link is cut
silently (iptables DROP) after 5 s of post-copy: both sides must still
declare the break within T + 250 ms of the cut.

Needs root; skipped (exit 77, with the reason) where network namespaces
are unavailable.

usage: test-slow-link.py [QEMU_BINARY]   (default: qemu/build's)
"""

import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import netns  # noqa: E402
import scenario  # noqa: E402
from forkvm import QMPError, write_bootsector  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
T_MS = 1000
MBIT = 16
# The link's queue: a second of traffic (tbf latency), as a home router or
# a congested WAN link has; cubic then keeps it full.
QUEUE_MS = int(os.environ.get("SLOW_LINK_QUEUE_MS", "1000"))
BOUND_S = 300
BOUND_MS = 250     # a partition is still detected within T + this


def broken_events(side, start, stop):
    """MIGRATION postcopy-paused/failed; with @stop, STOP too (the
    destination's pause policy)."""
    return [e for e in side.qmp.events[start:]
            if (e["event"] == "MIGRATION" and
                e["data"]["status"] in ("postcopy-paused", "failed")) or
            (stop and e["event"] == "STOP")]


def main():
    binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                             os.path.join(ROOT, "qemu/build/qemu-system-x86_64"))
    qemu_src = os.path.join(ROOT, "qemu")
    why = netns.unavailable()
    if why:
        print(f"SKIP slow-link test: {why}")
        return 77
    failures = []
    with tempfile.TemporaryDirectory(prefix="slow-link-") as work:
        boot = os.path.join(work, "bootsect")
        write_bootsector(qemu_src, boot)
        t0 = time.monotonic()
        with netns.CongestionControl("cubic"):
            failures += slow_link(binary, boot, work, t0)
            failures += slow_link_partition(binary, boot, work)
    for f in failures:
        print(f"FAIL: {f}")
    print("PASS" if not failures else "FAILED")
    return 1 if failures else 0


def slow_link(binary, boot, work, t0):
    """One migration over the slow link; returns the failures."""
    failures = []
    try:
        run = scenario.Run(binary, binary, boot, work, T_MS, pause=True,
                           postcopy_bw=0, throttle=(MBIT, QUEUE_MS))
    except QMPError as e:
        logs = " | ".join(
            f"{n}: " + open(os.path.join(work, f"{n}.log"), "rb").read()
            .decode(errors="replace").strip().replace("\n", " / ")[-300:]
            for n in ("src", "dst"))
        return [f"post-copy never became active ({e}); {logs}"]
    try:
        src, dst = run.src, run.dst
        t_pc = time.monotonic()
        done = None
        while time.monotonic() - t_pc < BOUND_S:
            bad = (broken_events(src, 0, False) +
                   broken_events(dst, 0, True))
            if bad:
                e = bad[0]
                side = "source" if bad[0] in src.qmp.events else "destination"
                failures.append(
                    f"{side}: {e['event']} {e.get('data', {})} "
                    f"{e['_t'] - t_pc:.1f} s after postcopy-active")
                break
            if (scenario.status(src) == "completed" and
                    scenario.status(dst) == "completed"):
                done = time.monotonic() - t_pc
                break
            time.sleep(0.1)
        ram = src.qmp.cmd("query-migrate").get("ram", {})
        if done is None and not failures:
            failures.append(f"post-copy not complete within {BOUND_S} s")
        if done is not None:
            print(f"post-copy over {MBIT} Mbit/s, T = {T_MS} ms: "
                  f"completed {done:.1f} s after postcopy-active "
                  f"({ram.get('transferred', 0) >> 20} MiB sent, "
                  f"{time.monotonic() - t0:.1f} s in all), "
                  f"no side declared a break")
            dst.qmp.cmd("stop")
            bad = scenario.check_guest_ram(dst, work)
            if bad:
                failures.append(f"{bad} inconsistent guest pages")
    finally:
        run.close()
    return failures


def slow_link_partition(binary, boot, work):
    """The same slow link, cut silently after a few seconds of post-copy:
    both sides must still notice within T + 250 ms."""
    failures = []
    try:
        run = scenario.Run(binary, binary, boot, work, T_MS, pause=True,
                           postcopy_bw=0, throttle=(MBIT, QUEUE_MS))
    except QMPError as e:
        return [f"partition run: post-copy never became active ({e})"]
    try:
        time.sleep(5)
        failures += run.cut_and_check("partition of the slow link", T_MS,
                                      BOUND_MS)
    finally:
        run.close()
    return failures


if __name__ == "__main__":
    sys.exit(main())
