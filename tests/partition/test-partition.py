#!/usr/bin/env python3
"""Silent partition during post-copy (issue 5).

The destination QEMU runs in a network namespace behind a veth pair; while
post-copy runs, iptables drops every packet both ways (no RST, no EOF).
With postcopy-detect-timeout T = 1 s on both sides and
postcopy-break-action=pause on the destination:

  - both sides reach postcopy-paused within T + 250 ms of the cut, and the
    destination guest is paused (STOP, run state postcopy-paused);
  - the partition is lifted, migrate-recover + migrate resume: the
    destination guest resumes (RESUME), post-copy completes, and the
    guest's memory is consistent.

Needs root; skipped (exit 77, with the reason) where network namespaces
are unavailable.

usage: test-partition.py [QEMU_BINARY]   (default: qemu/build's)
"""

import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import netns  # noqa: E402
import scenario  # noqa: E402
from forkvm import PCF, write_bootsector  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
T_MS = 1000
BOUND_MS = 250     # detection within T + this (issue 13's acceptance)


def main():
    binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                             os.path.join(ROOT, "qemu/build/qemu-system-x86_64"))
    qemu_src = os.path.dirname(os.path.dirname(binary))
    why = netns.unavailable()
    if why:
        print(f"SKIP partition test: {why}")
        return 77
    failures = []
    with tempfile.TemporaryDirectory(prefix="partition-") as work:
        boot = os.path.join(work, "bootsect")
        write_bootsector(qemu_src, boot)
        run = scenario.Run(binary, binary, boot, work, T_MS)
        try:
            # Heartbeats flow: no false detection over 3 T
            import time
            time.sleep(3 * T_MS / 1000)
            failures += run.cut_and_check("partition", T_MS, BOUND_MS)
            rs = scenario.run_state(run.dst)
            if rs != PCF + "break-paused":
                failures.append(f"destination run state {rs}, "
                                f"expected {PCF}break-paused")
            if not failures:
                bad = run.recover()
                print(f"recovered; destination guest resumed; "
                      f"{bad} inconsistent pages")
                if bad:
                    failures.append(f"{bad} inconsistent guest pages")
        finally:
            run.close()
    for f in failures:
        print(f"FAIL: {f}")
    print("PASS" if not failures else "FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
