#!/usr/bin/env python3
"""Post-copy live migration of a running guest between two local QEMU
processes over TCP on loopback, the way libvirt drives it: the destination
is started with -S and resumed with 'cont' once post-copy is under way.
Prints a timeline of both sides' migration states and run states, and
where the guest runs at the end."""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qmp import (QEMU, free_port, guest_args, postcopy_prepare,  # noqa: E402
                 wait_first_pass, write_bootsector)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--qemu", required=True)
    ap.add_argument("--qemu-src", required=True)
    ap.add_argument("--accel", default="tcg")
    opts = ap.parse_args()

    work = tempfile.mkdtemp(prefix="pc-demo-")
    boot = os.path.join(work, "boot.raw")
    write_bootsector(opts.qemu_src, boot)
    port = free_port()
    uri = f"tcp:127.0.0.1:{port}"
    t0 = time.monotonic()
    rows = []

    def note(side, what):
        rows.append((time.monotonic(), side, what))

    src = QEMU(opts.qemu, "source", work, guest_args(boot, opts.accel))
    dst = QEMU(opts.qemu, "destination", work,
               guest_args(boot, opts.accel) + ["-S", "-incoming", "defer"])
    ok = False
    try:
        postcopy_prepare(src, dst)
        note("source", f"guest running (run state {src.qmp.cmd('query-status')['status']})")

        dst.qmp.cmd("migrate-incoming", uri=uri)
        src.qmp.cmd("migrate", uri=uri)
        wait_first_pass(src)
        note("source", "migrate-start-postcopy")
        src.qmp.cmd("migrate-start-postcopy")
        # libvirt resumes the destination when the source is in postcopy-active.
        src.qmp.wait_migration("postcopy-active", 60)
        note("destination", "cont")
        dst.qmp.cmd("cont")
        src.qmp.wait_migration("completed", 120)
        dst.qmp.wait_migration("completed", 120)

        # Where does the guest run?  Its serial output grows only there.
        before = {s.name: len(s.serial_bytes()) for s in (src, dst)}
        time.sleep(1.0)
        after = {s.name: len(s.serial_bytes()) for s in (src, dst)}
        status = {s.name: s.qmp.cmd("query-status")["status"] for s in (src, dst)}
        for s in (src, dst):
            note(s.name, f"final run state {status[s.name]}, "
                 f"serial output {'growing' if after[s.name] > before[s.name] else 'still'}")
        running = [n for n in (src.name, dst.name)
                   if status[n] == "running" and after[n] > before[n]]
        ok = running == ["destination"]
    finally:
        for s in (src, dst):
            for e in s.qmp.events:
                if e["event"] == "MIGRATION":
                    rows.append((e["_t"], s.name, f"MIGRATION {e['data']['status']}"))
                elif e["event"] in ("STOP", "RESUME"):
                    rows.append((e["_t"], s.name, e["event"]))
        src.quit()
        dst.quit()

    print(f"{'time/ms':>9}  {'source':<34}{'destination'}")
    for t, side, what in sorted(rows, key=lambda r: r[0]):
        ms = f"{(t - t0) * 1000:9.1f}"
        print(f"{ms}  {what:<34}" if side == "source" else f"{ms}  {'':<34}{what}")
    if ok:
        print("RESULT: the guest runs on the destination only")
        return 0
    print(f"RESULT: FAILED: guest running on {running or 'neither side'} (logs in {work})")
    return 1


if __name__ == "__main__":
    sys.exit(main())
