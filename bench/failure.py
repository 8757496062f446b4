#!/usr/bin/env python3
"""Failure handling before the switchover: how fast the source takes its
guest back (issue 13).

Each run migrates the qtests' guest (TCG, 150 MiB) with post-copy between
two local QEMUs and breaks the destination while both sides are in
postcopy-device (the destination held there with
x-postcopy-device-hold, as a slow device load would hold it; the two
binaries negotiate the start handshake by default).  Kinds:

  load-error  the destination cannot load the device state (the source
              has an i6300esb watchdog the destination lacks); visible
              to the source when its return-path thread reads the
              destination's SHUT message (trace
              source_return_path_thread_shut);
  eof         the connection ends cleanly (a proxy between the two
              sends FIN to the source); visible when the source notices
              the break (first trace of source_return_path_thread_bad_end
              or migration_source_channel_broken);
  rst         the connection is reset (the proxy closes with SO_LINGER 0,
              the source gets RST); visible as for eof.

The time measured is from "visible" (QEMU's own trace timestamp, host
realtime clock) to the source's RESUME event (QMP timestamp, the same
clock).  The proxy only copies bytes; it adds no latency to the measured
interval, which starts inside the source.

usage: failure.py --binary QEMU [--runs N] [--markdown FILE]
"""

import argparse
import json
import os
import re
import socket
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "scripts"))
from forkvm import (QEMU, free_port, guest_args, postcopy_prepare,  # noqa: E402
                 wait_until, write_bootsector)

KINDS = ("load-error", "eof", "rst")
TRACES = ("source_return_path_thread_shut",
          "source_return_path_thread_bad_end",
          "migration_source_channel_broken",
          "migration_source_peer_load_failed",
          "migration_switchover_transition")
VISIBLE = {
    "load-error": ("source_return_path_thread_shut",),
    "eof": ("source_return_path_thread_bad_end",
            "migration_source_channel_broken"),
    "rst": ("source_return_path_thread_bad_end",
            "migration_source_channel_broken"),
}


class Proxy:
    """A TCP proxy from 127.0.0.1:port to the destination's port that
    can end the source's side of the connection with a FIN or an RST."""

    def __init__(self, target_port):
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.port = self.lsock.getsockname()[1]
        self.target = target_port
        self.src = self.dst = None
        self.ready = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        self.src, _ = self.lsock.accept()
        self.dst = socket.create_connection(("127.0.0.1", self.target))
        for a, b in ((self.src, self.dst), (self.dst, self.src)):
            threading.Thread(target=self._pump, args=(a, b), daemon=True).start()
        self.ready.set()

    @staticmethod
    def _pump(a, b):
        try:
            while True:
                data = a.recv(1 << 16)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass

    def cut(self, kind):
        """End the connection towards the source: FIN (eof) or RST."""
        if kind == "rst":
            # Closing with a zero linger time resets the connection; the
            # pump thread blocked in recv() holds the socket open until
            # it wakes, which shutting down the read side does silently.
            self.src.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.src.shutdown(socket.SHUT_RD)
        else:
            self.src.shutdown(socket.SHUT_RDWR)
        self.src.close()

    def close(self):
        for s in (self.src, self.dst, self.lsock):
            try:
                if s:
                    s.close()
            except OSError:
                pass


def trace_times(path, names):
    """{event name: first timestamp} from a QEMU log with -msg timestamp=on
    and the log trace backend."""
    out = {}
    pat = re.compile(r"^\d+@(\d+)\.(\d+):(\w+) ")
    with open(path, errors="replace") as f:
        for line in f:
            m = pat.match(line)
            if m and m.group(3) in names and m.group(3) not in out:
                out[m.group(3)] = int(m.group(1)) + int(m.group(2)) / 1e6
    return out


def ts(event):
    t = event["timestamp"]
    return t["seconds"] + t["microseconds"] / 1e6


def one_run(binary, boot, work, kind):
    trace = ["-msg", "timestamp=on"]
    for t in TRACES:
        trace += ["-trace", f"enable={t}"]
    src_args = guest_args(boot) + trace
    if kind == "load-error":
        src_args += ["-device", "i6300esb"]
    dst_args = guest_args(boot) + ["-S", "-incoming", "defer", "-global",
                                   "migration.x-postcopy-device-hold=on"]
    if kind == "load-error":
        dst_args = guest_args(boot) + ["-S", "-incoming", "defer"]
    src = QEMU(binary, "src", work, src_args)
    dst = QEMU(binary, "dst", work, dst_args)
    proxy = None
    try:
        postcopy_prepare(src, dst)
        for side in (src, dst):
            side.qmp.cmd("migrate-set-capabilities", capabilities=[
                {"capability": "return-path", "state": True}])
        port = free_port()
        dst.qmp.cmd("migrate-incoming", uri=f"tcp:127.0.0.1:{port}")
        if kind == "load-error":
            src.qmp.cmd("migrate", uri=f"tcp:127.0.0.1:{port}")
        else:
            proxy = Proxy(port)
            src.qmp.cmd("migrate", uri=f"tcp:127.0.0.1:{proxy.port}")
        wait_until(lambda: src.qmp.cmd("query-migrate").get("status") ==
                   "active", 30, "the migration to start")
        src.qmp.cmd("migrate-start-postcopy")
        src.qmp.wait_migration("postcopy-device", 60)
        if proxy:
            dst.qmp.wait_migration("postcopy-device", 60)
            time.sleep(0.2)
            proxy.cut(kind)
        _, resume = src.qmp.wait_event(lambda e: e["event"] == "RESUME", 30)
        wait_until(lambda: src.qmp.cmd("query-status")["status"] ==
                   "running", 10, "the source guest to run")
        src.qmp.cmd("query-status")   # let the log catch up
        times = trace_times(src.log_path, VISIBLE[kind])
        if not times:
            raise RuntimeError(f"{kind}: no trace of {VISIBLE[kind]} in "
                               f"{src.log_path}")
        visible = min(times.values())
        return {"ms": (ts(resume) - visible) * 1e3,
                "by": min(times, key=times.get)}
    finally:
        src.kill()
        dst.kill()
        if proxy:
            proxy.close()


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--qemu-src", default=os.path.join(HERE, "..", "qemu"))
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--markdown")
    ap.add_argument("--command", default=" ".join(sys.argv))
    a = ap.parse_args()
    res = {}
    with tempfile.TemporaryDirectory(prefix="bench-failure-") as work:
        boot = os.path.join(work, "bootsect")
        write_bootsector(a.qemu_src, boot)
        kinds = a.kinds.split(",")
        for i in range(a.runs):
            for kind in kinds:
                r = one_run(os.path.abspath(a.binary), boot, work, kind)
                res.setdefault(kind, []).append(r)
                print(f"run {i + 1} {kind}: {r['ms']:.2f} ms "
                      f"(visible: {r['by']})", file=sys.stderr)
    out = {k: {"n": len(v), "median_ms": statistics.median(x["ms"] for x in v),
               "min_ms": min(x["ms"] for x in v),
               "max_ms": max(x["ms"] for x in v)} for k, v in res.items()}
    print(json.dumps(out, indent=2))
    if a.markdown:
        sys.path.insert(0, HERE)
        from switchover import write_section
        heading = "## Failure handling before the switchover"
        lines = [heading, "",
                 f"`{a.command}` (`bench/failure.py`): the destination breaks "
                 "while both sides are in postcopy-device (handshake "
                 "negotiated, the default between two QEMUs of this fork); "
                 "time from the moment the fault is visible to the source "
                 "(its own trace timestamp) to its RESUME event; TCG, 2 "
                 f"cores; {a.runs} runs per kind, interleaved.",
                 "",
                 "| kind | visible at | median | min-max |",
                 "| --- | --- | --- | --- |"]
        for k, v in out.items():
            by = "/".join(VISIBLE[k])
            lines.append(f"| {k} | {by} | {v['median_ms']:.2f} ms | "
                         f"{v['min_ms']:.2f}-{v['max_ms']:.2f} ms |")
        write_section(a.markdown, heading, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
