#!/usr/bin/env python3
"""Post-copy live migration of a running Linux guest between two local
QEMU processes over TCP on loopback, the way libvirt drives it
(destination under -S, 'cont' once the source is in postcopy-active), in
three acts:

1. a successful post-copy;
2. the destination fails to load the device state (the source has a
   watchdog device the destination lacks): this fork's source keeps its
   guest running; with --stock, the same act on unpatched QEMU 10.0.13,
   whose source is left paused with the destination gone;
3. with release-ram, migrate_cancel on the source after post-copy
   started, before the destination's 'cont' (the start handshake,
   negotiated between two QEMUs of this fork): the source runs again with
   all its memory, the destination refuses 'cont'.

The guest (scripts/make-guest) checks its own memory, disk and network
every second and says so on its serial port ("guest: t=N ... mem=ok
disk=ok:N net=ok"); its lines are part of each act's timeline, in the
column of the side they came from, with both sides' migration states and
run states.  The act then watches for 3 s where the guest runs: its
lines keep coming only there, and say whether its memory is intact."""

import argparse
import logging
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from forkvm import (QEMU, QMPError, free_port, guest_lines,  # noqa: E402
                    linux_guest_args, wait_until)


class SerialWatch:
    """Timestamps every line the guest prints on either side."""

    def __init__(self, sides, rows):
        self.sides, self.rows = sides, rows
        self.seen = {s.name: 0 for s in sides}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def poll(self):
        now = time.monotonic()
        for s in self.sides:
            data = s.serial_bytes()
            lines = data[:data.rfind(b"\n") + 1].decode(errors="replace").splitlines()
            for line in lines[self.seen[s.name]:]:
                if line.startswith("guest: t="):
                    # the uptime is the guest's business, the rest is its view
                    words = [w for w in line.split() if not w.startswith("up=")]
                    self.rows.append((now, s.name, " ".join(words)))
                elif line.startswith("guest:"):
                    self.rows.append((now, s.name, line))
            self.seen[s.name] = len(lines)

    def _run(self):
        while not self.stop.wait(0.05):
            self.poll()

    def close(self):
        self.stop.set()
        self.thread.join()
        self.poll()


def guest_progress(side, since):
    """The guest's report lines on @side after the first @since of them."""
    return guest_lines(side)[since:]


def where_running(sides):
    """Watch 4 s: on which side does the guest report, and is it healthy?"""
    before = {s.name: len(guest_lines(s)) for s in sides}
    time.sleep(4.0)
    status, running, healthy = {}, [], {}
    for s in sides:
        try:
            status[s.name] = s.qmp.cmd("query-status")["status"]
        except (QMPError, OSError):
            status[s.name] = "exited"
        new = guest_progress(s, before[s.name])
        if status[s.name] == "running" and len(new) >= 2:
            running.append(s.name)
            healthy[s.name] = all(m == "ok" and d.startswith("ok") and n == "ok"
                                  for _, _, m, d, n in new)
    return status, running, healthy


def act(title, qemu, guest, accel, work, scenario):
    """Run one act; scenario(src, dst, note) does the migration's part."""
    print(f"\n=== {title} ({qemu})")
    uri = f"tcp:127.0.0.1:{free_port()}"
    disk = os.path.join(work, "disk.raw")    # shared storage of both sides
    with open(disk, "wb") as f:
        f.truncate(64 << 20)
    rows = []

    def note(side, what):
        rows.append((time.monotonic(), side, what))

    args = linux_guest_args(guest, disk, accel)
    src = QEMU(qemu, "source", work, args + scenario.get("src_args", []))
    dst = QEMU(qemu, "destination", work, args + ["-S", "-incoming", "defer"])
    t0 = time.monotonic()
    watch = SerialWatch((src, dst), rows)
    ok, running = False, []
    try:
        wait_until(lambda: len(guest_lines(src)) >= 1, 90, "the guest to boot")
        caps = [{"capability": "postcopy-ram", "state": True},
                {"capability": "events", "state": True}]
        dst.qmp.cmd("migrate-set-capabilities", capabilities=caps)
        src.qmp.cmd("migrate-set-capabilities",
                    capabilities=caps + scenario.get("src_caps", []))
        src.qmp.cmd("migrate-set-parameters", downtime_limit=1)
        dst.qmp.cmd("migrate-incoming", uri=uri, exit_on_error=False)
        note("source", "migrate")
        src.qmp.cmd("migrate", uri=uri)
        # post-copy once pre-copy sent 32 MiB: pre-copy alone would
        # converge (the guest dirties little), and most pages then come
        # by post-copy, the guest faulting on the destination
        wait_until(lambda: src.qmp.cmd("query-migrate").get("ram", {})
                   .get("transferred", 0) >= 32 << 20, 60, "32 MiB of pre-copy")
        note("source", "migrate-start-postcopy")
        src.qmp.cmd("migrate-start-postcopy")
        scenario["run"](src, dst, note)
        status, running, healthy = where_running((src, dst))
        for s in (src, dst):
            note(s.name, f"run state {status[s.name]}")
        ok = running == [scenario["expect"]] and all(healthy.values())
    finally:
        watch.close()
        for s in (src, dst):
            for e in s.qmp.events:
                if e["event"] == "MIGRATION":
                    rows.append((e["_t"], s.name, f"MIGRATION {e['data']['status']}"))
                elif e["event"] in ("STOP", "RESUME"):
                    rows.append((e["_t"], s.name, e["event"]))
        src.quit()
        dst.quit()
    print(f"{'time/s':>7}  {'source':<38}{'destination'}")
    for t, side, what in sorted(rows, key=lambda r: r[0]):
        ts = f"{t - t0:7.2f}"
        print(f"{ts}  {what:<38}" if side == "source" else f"{ts}  {'':<38}{what}")
    where = " and ".join(running) if running else "neither side"
    state = ""
    if running:
        state = ", its checks " + ("ok" if all(healthy.values()) else "FAILING")
    print(f"guest runs on: {where}{state}")
    return ok, where + state


def success(src, dst, note):
    src.qmp.wait_migration("postcopy-active", 60)
    note("destination", "cont")
    dst.qmp.cmd("cont")
    src.qmp.wait_migration("completed", 120)
    dst.qmp.wait_migration("completed", 120)


def load_error(src, dst, note):
    """Wait for the source to learn of the failure (this fork's destination
    reports failed, stock 10.0's leaves its listen thread waiting)."""
    def src_done():
        try:
            return src.qmp.cmd("query-migrate").get("status") in (
                "failed", "postcopy-paused", "cancelled")
        except (QMPError, OSError):
            return True
    wait_until(src_done, 30, "the source to learn of the failure")
    if dst.exitcode() is not None:
        note("destination", f"QEMU exited (status {dst.exitcode()})")
    note("source", f"migration {src.qmp.cmd('query-migrate').get('status')}")
    try:
        note("destination", f"migration {dst.qmp.cmd('query-migrate').get('status')}")
    except QMPError:
        time.sleep(0.5)
        note("destination", f"QEMU exited (status {dst.exitcode()})")


def cancel_before_cont(src, dst, note):
    src.qmp.wait_migration("postcopy-active", 60)
    note("source", "migrate_cancel")
    src.qmp.cmd("migrate_cancel")
    src.qmp.wait_migration("cancelled", 30)
    wait_until(lambda: src.qmp.cmd("query-status")["status"] == "running",
               30, "the source guest to run")
    try:
        dst.qmp.cmd("cont")
        note("destination", "cont ACCEPTED")
    except QMPError as e:
        note("destination", "cont refused:")
        note("destination", f"  {str(e)[6:40]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qemu", required=True)
    ap.add_argument("--stock", help="unpatched QEMU 10.0.13, for act 2's comparison")
    ap.add_argument("--guest", required=True, help="scripts/make-guest's directory")
    ap.add_argument("--accel", default="tcg")
    opts = ap.parse_args()

    # the demo reports how each QEMU ended; QEMUMachine need not
    logging.getLogger("qemu").setLevel(logging.CRITICAL)
    start = time.monotonic()
    work = tempfile.mkdtemp(prefix="pc-demo-")
    wdt = ["-device", "i6300esb"]
    release = [{"capability": "release-ram", "state": True}]
    results = []

    ok, where = act("Act 1: a successful post-copy", opts.qemu, opts.guest, opts.accel,
                    work, {"run": success, "expect": "destination"})
    results.append(("act 1", ok, where))
    ok, where = act("Act 2: the destination cannot load the device state",
                    opts.qemu, opts.guest, opts.accel, work,
                    {"run": load_error, "expect": "source", "src_args": wdt})
    results.append(("act 2", ok, where))
    if opts.stock and os.access(opts.stock, os.X_OK):
        _, where = act("Act 2 on stock QEMU 10.0.13", opts.stock, opts.guest, opts.accel,
                       work, {"run": load_error, "expect": "source", "src_args": wdt})
        results.append(("act 2, stock", None, where))
    ok, where = act("Act 3: with release-ram, migrate_cancel before the destination starts",
                    opts.qemu, opts.guest, opts.accel, work,
                    {"run": cancel_before_cont, "expect": "source", "src_caps": release})
    results.append(("act 3", ok, where))

    print()
    failed = False
    for name, ok, where in results:
        if ok is None:
            print(f"RESULT {name}: guest runs on {where} (for comparison)")
        else:
            print(f"RESULT {name}: guest runs on {where}: {'as expected' if ok else 'FAILED'}")
            failed |= not ok
    print(f"demo: {time.monotonic() - start:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
