"""One post-copy migration over a veth pair into a network namespace, cut
by a silent partition (see netns.py) while post-copy runs.  Used by
tests/partition/test-partition.py and bench/partition.py."""

import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))
sys.path.insert(0, HERE)
import netns  # noqa: E402
from forkvm import (PCF, QEMU, QMPError, guest_args, postcopy_prepare,  # noqa: E402
                 wait_first_pass, wait_until)

PAGE = 4096
START, END = 1 << 20, 100 << 20


def port():
    return random.randint(20000, 40000)


def status(side):
    return side.qmp.cmd("query-migrate").get("status")


def run_state(side):
    return side.qmp.cmd("query-status")["status"]


def check_guest_ram(dst, work):
    """The qtests' check_guests_ram(): with the guest stopped, every page's
    counter byte equals the previous page's, except once, one less."""
    path = os.path.join(work, "dst-ram.bin")
    dst.qmp.cmd("pmemsave", val=START, size=END - START, filename=path)
    data = open(path, "rb").read()
    os.unlink(path)
    last, edge, bad = data[0], False, 0
    for off in range(PAGE, END - START, PAGE):
        b = data[off]
        if b != last:
            if (b + 1) % 256 == last and not edge:
                edge = True
            else:
                bad += 1
        last = b
    return bad


class Run:
    """Start both QEMUs and post-copy up to postcopy-active.  @dst_args
    may add options; @detect: T in ms (None: do not set the parameter,
    for stock QEMU); @throttle: (Mbit/s, queue in ms) of a slow link, and
    post-copy starts at once instead of after a pre-copy pass."""

    def __init__(self, src_bin, dst_bin, boot, work, detect, pause=True,
                 postcopy_bw=32768, blocktime=False, dst_extra=(),
                 preempt=False, throttle=None):
        self.work = work
        self.detect = detect
        netns.setup()
        if throttle:
            netns.throttle(*throttle)
        self.src = QEMU(src_bin, "src", work, guest_args(boot))
        self.dst = QEMU(netns.wrapper(dst_bin, work), "dst", work,
                        guest_args(boot) + list(dst_extra) +
                        ["-incoming", "defer"])
        try:
            self._start(detect, pause, postcopy_bw, blocktime, preempt,
                        first_pass=not throttle)
        except Exception:
            self.close()
            raise

    def _start(self, detect, pause, postcopy_bw, blocktime, preempt,
               first_pass=True):
        src, dst = self.src, self.dst
        postcopy_prepare(src, dst)
        if preempt:
            for side in (src, dst):
                side.qmp.cmd("migrate-set-capabilities", capabilities=[
                    {"capability": "postcopy-preempt", "state": True}])
        if blocktime:
            dst.qmp.cmd("migrate-set-capabilities", capabilities=[
                {"capability": "postcopy-blocktime", "state": True}])
        if detect is not None:
            for side in (src, dst):
                side.qmp.cmd("migrate-set-parameters",
                             **{PCF + "postcopy-detect-timeout": detect})
        if pause:
            dst.qmp.cmd("migrate-set-parameters",
                        **{PCF + "postcopy-break-action": "pause"})
        if postcopy_bw:
            src.qmp.cmd("migrate-set-parameters",
                        max_postcopy_bandwidth=postcopy_bw)
        p = port()
        dst.qmp.cmd("migrate-incoming", uri=f"tcp:0.0.0.0:{p}")
        src.qmp.cmd("migrate", uri=f"tcp:{netns.NS_IP}:{p}")
        if first_pass:
            wait_first_pass(src)
        else:
            # A slow link: straight to post-copy, which then runs for long
            wait_until(lambda: status(src) == "active", 30,
                       "the migration to start")
        src.qmp.cmd("migrate-start-postcopy")
        src.qmp.wait_migration("postcopy-active", 60)
        dst.qmp.wait_migration("postcopy-active", 60)

    def partition(self, bound):
        """Cut the network; wait (at most @bound s) for the destination's
        STOP and both sides' postcopy-paused.  Returns the delays in s
        from the cut (None: not within the bound)."""
        src, dst = self.src, self.dst
        i_src, i_dst = len(src.qmp.events), len(dst.qmp.events)
        t0 = time.monotonic()
        netns.partition()
        res = {"dst_stop": None, "dst_paused": None, "src_paused": None}

        def wait(side, start, pred):
            left = t0 + bound - time.monotonic()
            if left <= 0:
                return None
            try:
                _, e = side.qmp.wait_event(pred, left, start)
                return e["_t"] - t0
            except QMPError:
                return None

        def mig(s):
            return lambda e: (e["event"] == "MIGRATION" and
                              e["data"]["status"] == s)
        res["dst_stop"] = wait(dst, i_dst, lambda e: e["event"] == "STOP")
        res["dst_paused"] = wait(dst, i_dst, mig("postcopy-paused"))
        res["src_paused"] = wait(src, i_src, mig("postcopy-paused"))
        return res

    def cut_and_check(self, label, t_ms, bound_ms):
        """Both sides in postcopy-active, then a silent partition: every
        side must notice within T + @bound_ms.  Prints the delays; returns
        the failures."""
        failures = []
        for name, side in (("source", self.src), ("destination", self.dst)):
            st = status(side)
            if st != "postcopy-active":
                failures.append(f"{name} in {st} before the partition")
        res = self.partition(bound=t_ms / 1000 + 1)
        print(f"{label}, T = {t_ms} ms: " + ", ".join(
            f"{k} after {v * 1000:.0f} ms" if v is not None else
            f"{k} not within T + 1 s" for k, v in res.items()))
        for k, v in res.items():
            if v is None or v * 1000 > t_ms + bound_ms:
                failures.append(f"{label}: {k} not within T + {bound_ms} ms")
        return failures

    def recover(self):
        """Lift the partition, recover, let post-copy finish; returns the
        number of inconsistent pages in the destination guest."""
        src, dst = self.src, self.dst
        netns.heal()
        i_dst = len(dst.qmp.events)
        p = port()
        dst.qmp.cmd("migrate-recover", uri=f"tcp:0.0.0.0:{p}")
        src.qmp.cmd("migrate", uri=f"tcp:{netns.NS_IP}:{p}", resume=True)
        dst.qmp.wait_event(lambda e: e["event"] == "RESUME", 60, i_dst)
        wait_until(lambda: run_state(dst) == "running", 30,
                   "the destination guest to run")
        src.qmp.cmd("migrate-set-parameters", max_postcopy_bandwidth=0)
        wait_until(lambda: status(src) == "completed", 120,
                   "the source to complete")
        wait_until(lambda: status(dst) == "completed", 120,
                   "the destination to complete")
        dst.qmp.cmd("stop")
        return check_guest_ram(dst, self.work)

    def close(self):
        try:
            netns.heal()
        except Exception:
            pass
        for side in (getattr(self, "src", None), getattr(self, "dst", None)):
            if side:
                side.kill()
        netns.teardown()
