#!/usr/bin/env python3
"""Post-copy live migration of a running guest between two local QEMU
processes over TCP on loopback, the way libvirt drives it (destination
under -S, 'cont' once the source is in postcopy-active), in three acts:

1. a successful post-copy;
2. the destination fails to load the device state (the source has a
   watchdog device the destination lacks): this fork's source keeps its
   guest running; with --stock, the same act on unpatched QEMU 10.0.13,
   whose source is left paused with the destination failed;
3. migrate_cancel on the source after post-copy started, before the
   destination's 'cont' (the start handshake, negotiated between two QEMUs
   of this fork): the source runs again, the destination refuses 'cont'.

Each act prints a timeline of both sides' migration states and run
states, and where the guest runs at the end (its serial output grows only
there)."""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qmp import (QEMU, QMPError, free_port, guest_args,  # noqa: E402
                 postcopy_prepare, wait_first_pass, wait_until,
                 write_bootsector)


def where_running(sides):
    before = {s.name: len(s.serial_bytes()) for s in sides}
    time.sleep(1.0)
    after = {s.name: len(s.serial_bytes()) for s in sides}
    status = {}
    for s in sides:
        try:
            status[s.name] = s.qmp.cmd("query-status")["status"]
        except (QMPError, OSError):
            status[s.name] = "exited"
    running = [s.name for s in sides
               if status[s.name] == "running" and after[s.name] > before[s.name]]
    return status, after, before, running


def act(title, qemu, boot, accel, work, scenario):
    """Run one act; scenario(src, dst, note) returns what it expects to
    run the guest ("source" or "destination") and a description."""
    print(f"\n=== {title} ({qemu})")
    port = free_port()
    uri = f"tcp:127.0.0.1:{port}"
    t0 = time.monotonic()
    rows = []

    def note(side, what):
        rows.append((time.monotonic(), side, what))

    extra_src = scenario.get("src_args", [])
    src = QEMU(qemu, "source", work, guest_args(boot, accel) + extra_src)
    dst = QEMU(qemu, "destination", work,
               guest_args(boot, accel) + ["-S", "-incoming", "defer"])
    ok = False
    expect = scenario["expect"]
    running = []
    try:
        postcopy_prepare(src, dst)
        note("source", "guest running")
        dst.qmp.cmd("migrate-incoming", uri=uri, exit_on_error=False)
        src.qmp.cmd("migrate", uri=uri)
        wait_first_pass(src)
        note("source", "migrate-start-postcopy")
        src.qmp.cmd("migrate-start-postcopy")
        scenario["run"](src, dst, note)
        status, after, before, running = where_running((src, dst))
        for s in (src, dst):
            note(s.name, f"run state {status[s.name]}, serial "
                 f"{'growing' if after[s.name] > before[s.name] else 'still'}")
        ok = running == [expect]
    finally:
        for s in (src, dst):
            for e in s.qmp.events:
                if e["event"] == "MIGRATION":
                    rows.append((e["_t"], s.name, f"MIGRATION {e['data']['status']}"))
                elif e["event"] in ("STOP", "RESUME"):
                    rows.append((e["_t"], s.name, e["event"]))
        src.quit()
        dst.quit()
    print(f"{'time/ms':>9}  {'source':<36}{'destination'}")
    for t, side, what in sorted(rows, key=lambda r: r[0]):
        ms = f"{(t - t0) * 1000:9.1f}"
        print(f"{ms}  {what:<36}" if side == "source" else f"{ms}  {'':<36}{what}")
    where = " and ".join(running) if running else "neither side"
    print(f"guest runs on: {where}")
    return ok, where


def success(src, dst, note):
    src.qmp.wait_migration("postcopy-active", 60)
    note("destination", "cont")
    dst.qmp.cmd("cont")
    src.qmp.wait_migration("completed", 120)
    dst.qmp.wait_migration("completed", 120)


def load_error(src, dst, note):
    # This fork's destination reports failed; stock 10.0 exits.
    def dst_done():
        if dst.proc.poll() is not None:
            return True
        try:
            return dst.qmp.cmd("query-migrate").get("status") == "failed"
        except (QMPError, OSError):
            return True
    wait_until(dst_done, 60, "the destination to fail")
    if dst.proc.poll() is not None:
        note("destination", f"QEMU exited (status {dst.proc.returncode})")
    # The source reacts to the destination's report; give it time to.
    end = time.monotonic() + 5
    while time.monotonic() < end:
        st = src.qmp.cmd("query-migrate").get("status")
        if st in ("failed", "postcopy-paused"):
            break
        time.sleep(0.05)
    note("source", f"migration {src.qmp.cmd('query-migrate').get('status')}")


def cancel_before_cont(src, dst, note):
    src.qmp.wait_migration("postcopy-active", 60)
    note("source", "migrate_cancel (destination not continued yet)")
    src.qmp.cmd("migrate_cancel")
    src.qmp.wait_migration("cancelled", 30)
    wait_until(lambda: src.qmp.cmd("query-status")["status"] == "running",
               30, "the source guest to run")
    try:
        dst.qmp.cmd("cont")
        note("destination", "cont ACCEPTED")
    except QMPError as e:
        note("destination", f"cont refused: {str(e)[:60]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qemu", required=True)
    ap.add_argument("--stock", help="unpatched QEMU 10.0.13, for act 2's comparison")
    ap.add_argument("--qemu-src", required=True)
    ap.add_argument("--accel", default="tcg")
    opts = ap.parse_args()

    work = tempfile.mkdtemp(prefix="pc-demo-")
    boot = os.path.join(work, "boot.raw")
    write_bootsector(opts.qemu_src, boot)
    wdt = ["-device", "i6300esb"]
    results = []

    ok, where = act("Act 1: a successful post-copy", opts.qemu, boot, opts.accel, work,
                    {"run": success, "expect": "destination"})
    results.append(("act 1", ok, where))
    ok, where = act("Act 2: the destination cannot load the device state",
                    opts.qemu, boot, opts.accel, work,
                    {"run": load_error, "expect": "source", "src_args": wdt})
    results.append(("act 2", ok, where))
    if opts.stock and os.access(opts.stock, os.X_OK):
        _, where = act("Act 2 on stock QEMU 10.0.13", opts.stock, boot, opts.accel, work,
                       {"run": load_error, "expect": "source", "src_args": wdt})
        results.append(("act 2, stock", None, where))
    ok, where = act("Act 3: migrate_cancel before the destination starts",
                    opts.qemu, boot, opts.accel, work,
                    {"run": cancel_before_cont, "expect": "source"})
    results.append(("act 3", ok, where))

    print()
    failed = False
    for name, ok, where in results:
        if ok is None:
            print(f"RESULT {name}: guest runs on {where} (for comparison)")
        else:
            print(f"RESULT {name}: guest runs on {where}: {'as expected' if ok else 'FAILED'}")
            failed |= not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
