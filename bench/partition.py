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

Page-fault cost: post-copy without a partition, with preemption, the
background stream capped at 1 MiB/s for a fixed window so that the guest
keeps faulting on missing pages at a steady rate, detector on (T = 1 s)
and off, runs in ABBA order: the destination traces every page request
and every page placed; request -> placed is the time a vCPU waits for a missing page.
Per run the median wait; the verdict is the median of the on/off ratios
of the ABBA pairs (runs i of both arms ran back to back), with a bootstrap
95 % interval over pairs.

Needs root.  usage: partition.py [--runs N] [--fault-runs N]
                                 [--only detect|faults] [--markdown FILE]
"""

import argparse
import json
import random
import re
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "partition"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from switchover import write_section  # noqa: E402  (same section rules)
import netns  # noqa: E402
import scenario  # noqa: E402
from forkvm import write_bootsector, wait_until  # noqa: E402

SECTION = "## Silent partition: detection latency"
SECTION_FAULTS = "## Failure detector: page-fault cost"
FAULT_BW = 1 << 20       # background stream during the window, bytes/s
FAULT_WINDOW = 4.0       # seconds of post-copy measured per run


def detect_once(binary, boot, work, detect, bound):
    run = scenario.Run(binary, binary, boot, work, detect,
                       pause=detect is not None)
    try:
        return run.partition(bound)
    finally:
        run.close()


TRACE_RE = re.compile(r"@(\d+\.\d+):(postcopy_ram_fault_thread_request|"
                      r"postcopy_place_page) (?:Request for HVA|host)="
                      r"(0x[0-9a-f]+)")


def fault_latencies(trace):
    """Request -> page placed, per missing-page fault, from the
    destination's trace (one page size, 4 KiB, on x86)."""
    waiting, lat = {}, []
    for line in open(trace, errors="replace"):
        m = TRACE_RE.search(line)
        if not m:
            continue
        t, ev, addr = float(m.group(1)), m.group(2), int(m.group(3), 16)
        page = addr & ~0xfff
        if ev == "postcopy_ram_fault_thread_request":
            waiting.setdefault(page, t)
        elif page in waiting:
            lat.append(t - waiting.pop(page))
    return lat


def fault_cost_once(binary, boot, work, detect):
    """Post-copy with the background stream capped at FAULT_BW for
    FAULT_WINDOW seconds (the guest keeps faulting on missing pages), then
    uncapped to completion; the destination traces each page request and
    each page placed: the time from one to the other is the wait of a vCPU
    on a missing page."""
    trace = os.path.join(work, "dst-faults.trace")
    if os.path.exists(trace):
        os.unlink(trace)
    # With preemption the return-path thread sends a requested page at
    # once on its own channel.  Without it the migration thread sends it,
    # and with max-postcopy-bandwidth set, qemu_savevm_state_iterate()
    # returns before RAM's hook once the 100 ms window's budget is spent:
    # a request waits for the window's end, a bimodal wait that hides the
    # detector (docs/benchmarks.md).
    run = scenario.Run(binary, binary, boot, work, detect, pause=False,
                       postcopy_bw=FAULT_BW, preempt=True,
                       dst_extra=["-msg", "timestamp=on", "-trace",
                                  "enable=postcopy_ram_fault_thread_request",
                                  "-trace",
                                  f"enable=postcopy_place_page,file={trace}"])
    try:
        time.sleep(FAULT_WINDOW)
        run.src.qmp.cmd("migrate-set-parameters", max_postcopy_bandwidth=0)
        wait_until(lambda: scenario.status(run.src) == "completed", 120,
                   "the source to complete")
        wait_until(lambda: scenario.status(run.dst) == "completed", 120,
                   "the destination to complete")
    finally:
        run.close()
    lat = fault_latencies(trace)
    return {"faults": len(lat),
            "median_us": statistics.median(lat) * 1e6 if lat else None,
            "mean_us": statistics.mean(lat) * 1e6 if lat else None}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fault_verdict(off, on, resamples=10000):
    """Detector on vs off, paired: run i of each arm ran back to back (ABBA
    order), so the ratio of their median waits cancels the machine's drift
    over the benchmark.  The median of the pairs' ratios, and its
    bootstrap 95 % interval (pairs resampled with replacement; fixed seed,
    so reproducible)."""
    ratios = [n["median_us"] / o["median_us"] for o, n in zip(off, on)
              if o["median_us"] and n["median_us"]]
    if not ratios:
        return None
    rng = random.Random(1)
    diffs = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) - 1
                   for _ in range(resamples))
    return {"diff": statistics.median(ratios) - 1, "pairs": len(ratios),
            "lo": diffs[int(0.025 * resamples)],
            "hi": diffs[int(0.975 * resamples) - 1]}


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
    ap.add_argument("--fault-runs", type=int, default=10,
                    help="runs per arm (detector on, off) of the fault cost")
    ap.add_argument("--only", choices=("detect", "faults"))
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
        for t in (1000, 3000) if args.only != "faults" else ():
            runs = []
            for i in range(args.runs):
                r = detect_once(binary, boot, work, t, t / 1000 + 5)
                print(f"T={t} run {i}: {r}", flush=True)
                runs.append(r)
            res["detect"][t] = runs
        for i in range(args.stock_runs or args.runs
                       if args.only != "faults" else 0):
            r = detect_once(os.path.abspath(args.stock), boot, work, None,
                            args.stock_bound)
            print(f"stock run {i}: {r}", flush=True)
            res["stock"].append(r)
        arms = (("off", 0), ("on", 1000))
        for i in range(args.fault_runs if args.only != "detect" else 0):
            # ABBA: a drift of the machine hits both arms alike
            for mode, t in arms if i % 2 == 0 else arms[::-1]:
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
    if args.only != "faults":
        write_detect_markdown(args, res)
    if args.only != "detect":
        write_faults_markdown(args, res)


def write_detect_markdown(args, res):
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
    write_section(args.markdown, SECTION, "\n".join(lines) + "\n")


def write_faults_markdown(args, res):
    n = args.fault_runs
    lines = [SECTION_FAULTS, "",
             f"`make bench-faults BENCH_RUNS={n}` (`bench/partition.py --only "
             "faults`, needs root): post-copy without a partition, the "
             f"background stream capped at {FAULT_BW >> 20} MiB/s for "
             f"{FAULT_WINDOW:.0f} s so that the guest keeps faulting on missing "
             "pages, then uncapped to completion.  The destination traces each "
             "page request and each page placed (trace backend log): request "
             "-> placed is the wait of a vCPU on a missing page.  Detector off "
             "(T = 0) and on (T = 1 s, heartbeats every 250 ms), "
             f"{n} runs each in ABBA order; post-copy preemption on "
             "(requested pages go out at once from the return-path thread on "
             "their own channel, past the rate limiter); TCG, 2 cores.", "",
             "| detector | faults per run (median) | wait per fault: median of "
             "the runs' medians (min-max) | mean wait (median of runs) |",
             "| --- | --- | --- | --- |"]
    for mode in ("off", "on"):
        rs = [r for r in res["faults"][mode] if r["median_us"]]
        pf = [r["median_us"] for r in rs]
        lines.append(
            f"| {mode}{' (T = 1 s)' if mode == 'on' else ''} | "
            f"{med([r['faults'] for r in rs]):.0f} | "
            f"{med(pf):.2f} us ({min(pf):.2f}-{max(pf):.2f}) | "
            f"{med([r['mean_us'] for r in rs]):.1f} us |")
    v = fault_verdict(res["faults"]["off"], res["faults"]["on"])
    if v:
        within = -0.03 <= v["lo"] and v["hi"] <= 0.03
        lines += ["", f"Detector on vs off, paired by ABBA pair ({v['pairs']} "
                  f"pairs): median ratio of the pairs' median waits "
                  f"{100 * v['diff']:+.1f} %, bootstrap 95 % interval "
                  f"{100 * v['lo']:+.1f} % to {100 * v['hi']:+.1f} %: " +
                  ("within 3 %." if within else
                   "the interval is not inside +-3 %.")]
    write_section(args.markdown, SECTION_FAULTS, "\n".join(lines) + "\n")

if __name__ == "__main__":
    sys.exit(main())
