#!/usr/bin/env python3
"""Silent-partition detection and page-fault cost of the failure detector
(issue 5): patched fork vs stock QEMU 10.0.13.

Detection latency: the destination QEMU runs in a network namespace (see
tests/partition/netns.py); while post-copy runs (capped at 32 KiB/s so
that it lasts), iptables drops every packet both ways.  Measured: the time
from the cut to the destination's STOP event (and to postcopy-paused on
both sides), with postcopy-detect-timeout T on both sides and
postcopy-break-action=pause, median of N runs per T.  Stock QEMU has no
detector: each of its runs waits up to --stock-bound seconds and is
reported as exceeding it when nothing happens.

Page-fault cost: full post-copy migrations (no bandwidth cap, loopback in
the namespace, no partition) with the detector on (T = 1 s) and off;
reported per run as the destination's total vCPU block time
(postcopy-blocktime) divided by the page requests the source served
(postcopy-requests): the mean stall per page fault.

Needs root.  usage: partition.py [--runs N] [--markdown FILE]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "partition"))
import netns  # noqa: E402
import scenario  # noqa: E402
from qmp import write_bootsector, wait_until  # noqa: E402

SECTION = "## Silent partition: detection latency and page-fault cost"


def detect_once(binary, boot, work, detect, bound):
    run = scenario.Run(binary, binary, boot, work, detect,
                       pause=detect is not None)
    try:
        return run.partition(bound)
    finally:
        run.close()


def fault_cost_once(binary, boot, work, detect):
    run = scenario.Run(binary, binary, boot, work, detect, pause=False,
                       postcopy_bw=0, blocktime=True)
    try:
        wait_until(lambda: scenario.status(run.src) == "completed", 180,
                   "the source to complete")
        wait_until(lambda: scenario.status(run.dst) == "completed", 180,
                   "the destination to complete")
        reqs = run.src.qmp.cmd("query-migrate")["ram"]["postcopy-requests"]
        blk = run.dst.qmp.cmd("query-migrate").get("postcopy-blocktime", 0)
        return {"requests": reqs, "blocktime_ms": blk,
                "per_fault_us": blk * 1000.0 / reqs if reqs else None}
    finally:
        run.close()


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(
        ROOT, "qemu/build/qemu-system-x86_64"))
    ap.add_argument("--stock", default=os.path.join(
        ROOT, ".cache/stock/build/qemu-system-x86_64"))
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--stock-runs", type=int, default=None,
                    help="runs against stock (default: --runs)")
    ap.add_argument("--stock-bound", type=float, default=20.0)
    ap.add_argument("--fault-runs", type=int, default=5)
    ap.add_argument("--markdown")
    args = ap.parse_args()
    why = netns.unavailable()
    if why:
        print(f"SKIP partition benchmark: {why}")
        return 77
    binary = os.path.abspath(args.binary)
    qemu_src = os.path.dirname(os.path.dirname(binary))
    res = {"detect": {}, "stock": [], "faults": {"on": [], "off": []}}
    with tempfile.TemporaryDirectory(prefix="bench-partition-") as work:
        boot = os.path.join(work, "bootsect")
        write_bootsector(qemu_src, boot)
        for t in (1000, 3000):
            runs = []
            for i in range(args.runs):
                r = detect_once(binary, boot, work, t, t / 1000 + 5)
                print(f"T={t} run {i}: {r}", flush=True)
                runs.append(r)
            res["detect"][t] = runs
        for i in range(args.stock_runs or args.runs):
            r = detect_once(os.path.abspath(args.stock), boot, work, None,
                            args.stock_bound)
            print(f"stock run {i}: {r}", flush=True)
            res["stock"].append(r)
        for i in range(args.fault_runs):
            for mode, t in (("off", 0), ("on", 1000)):
                r = fault_cost_once(binary, boot, work, t)
                print(f"faults detector {mode} run {i}: {r}", flush=True)
                res["faults"][mode].append(r)
    print(json.dumps(res, indent=1))
    if args.markdown:
        write_markdown(args, res)
    return 0


def ms(x):
    return "-" if x is None else f"{x * 1000:.0f}"


def write_markdown(args, res):
    lines = [SECTION, "",
             "`make bench-partition` (`bench/partition.py`, needs root): the "
             "destination in a network namespace, a silent partition "
             "(iptables DROP both ways) while post-copy runs at 32 KiB/s; "
             "TCG, 2 busy cores.  Times from the cut, median of "
             f"{args.runs} runs (min-max).", "",
             "| binary | T | destination STOP | destination postcopy-paused "
             "| source postcopy-paused |", "| --- | --- | --- | --- | --- |"]
    for t, runs in res["detect"].items():
        cells = []
        for k in ("dst_stop", "dst_paused", "src_paused"):
            xs = [r[k] for r in runs if r[k] is not None]
            miss = len(runs) - len(xs)
            c = (f"{ms(med(xs))} ms ({ms(min(xs))}-{ms(max(xs))})"
                 if xs else "never")
            if miss:
                c += f", {miss} runs missed"
            cells.append(c)
        lines.append(f"| patched | {t / 1000:.0f} s | " + " | ".join(cells)
                     + " |")
    st = res["stock"]
    never = all(r[k] is None for r in st for k in r)
    lines.append(f"| stock 10.0.13 | - | " + " | ".join(
        [f"not within {args.stock_bound:.0f} s ({len(st)} of {len(st)} "
         "runs)" if never else "see JSON"] * 3) + " |")
    lines += ["", "Page-fault cost of the detector (full post-copy, no cap, "
              "no partition): destination vCPU block time / page requests "
              f"served, median of {args.fault_runs} runs.", "",
              "| detector | requests | block time | per fault |",
              "| --- | --- | --- | --- |"]
    for mode in ("off", "on"):
        rs = res["faults"][mode]
        lines.append(
            f"| {mode}{' (T = 1 s)' if mode == 'on' else ''} | "
            f"{med([r['requests'] for r in rs]):.0f} | "
            f"{med([r['blocktime_ms'] for r in rs]):.0f} ms | "
            f"{med([r['per_fault_us'] for r in rs]):.0f} us |")
    off = med([r["per_fault_us"] for r in res["faults"]["off"]])
    on = med([r["per_fault_us"] for r in res["faults"]["on"]])
    if off and on:
        lines += ["", f"Detector on vs off: {100.0 * (on - off) / off:+.1f} % "
                  "per fault."]
    text = "\n".join(lines) + "\n"
    try:
        old = open(args.markdown).read()
    except FileNotFoundError:
        old = ""
    if SECTION in old:
        head, rest = old.split(SECTION, 1)
        nxt = rest.find("\n## ")
        tail = rest[nxt + 1:] if nxt >= 0 else ""
        new = head + text + ("\n" + tail if tail else "")
    else:
        new = old.rstrip("\n") + "\n\n" + text
    open(args.markdown, "w").write(new)


if __name__ == "__main__":
    sys.exit(main())
