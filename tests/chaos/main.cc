// Fault-injection driver for the post-copy switchover (issue 6).
//
// Each round starts a source and a destination QEMU, puts a TCP proxy of
// its own between them, drives a post-copy migration the way libvirt does,
// injects one or two faults at a random moment around migrate-start-postcopy,
// samples both sides all along, and checks the invariants listed in
// docs/reliability.md.  A round is a pure function of (seed, round) as far
// as the driver's choices go: --seed S --round R replays it.
//
// The parts: plan.h (what a round does, sweep plans), proxy.h (the TCP
// proxy, its channel faults, the switchover messages it recognises on the
// wire: wire.h), qmp.h (QMP client), qemu.h (the QEMU processes), faults.h
// (applying and lifting faults), round.h (driving one round), oracle.h
// (invariants and outcome classes), util.h; this file parses the command
// line, runs the rounds and prints the report (plain or TAP).
//
// SPDX-License-Identifier: GPL-2.0-or-later

#include "plan.h"
#include "round.h"
#include "util.h"

#include <climits>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace {

using chaos::fmt;

void usage()
{
    fprintf(stderr,
            "usage: chaos [--qemu BIN] [--qemu-dst BIN] [--machine TYPE] [--qemu-src DIR] [--firmware DIR]...\n"
            "             [--accel tcg|kvm] [--trace PATTERN]...\n"
            "             [--seed S] [--rounds N] [--first R] [--round R] [--break source-resume]\n"
            "             [--expect-violation] [--tap] [--settle-ms MS] [--workdir DIR] [--keep] [--verbose]\n"
            "             [--plan-only] [--classic] [--with lock-held|autostart|release-ram|cont-early|\n"
            "                                                hugepages|paused-guest]...\n"
            "             [--sweep] [--sweep-event package|run|pong|start-request|grant] [--sweep-fault KIND]\n"
            "             [--sweep-span MS] [--sweep-step MS]\n");
}

bool g_tap = false;

// stdout; in TAP mode every line is a comment except the results.
void out(const char *f, ...) __attribute__((format(printf, 1, 2)));
void out(const char *f, ...)
{
    char buf[16384];
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, sizeof(buf), f, ap);
    va_end(ap);
    if (!g_tap) {
        fputs(buf, stdout);
        return;
    }
    static bool bol = true;
    for (const char *p = buf; *p; p++) {
        if (bol && *p != '\n') {
            fputs("# ", stdout);
        }
        fputc(*p, stdout);
        bol = *p == '\n';
    }
}

// Free 2 MiB huge pages on the host (/proc/meminfo), 0 if another size.
int host_hugepages_free()
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) {
        return 0;
    }
    char line[256];
    int free_pages = 0, size_kb = 0;
    while (fgets(line, sizeof(line), f)) {
        sscanf(line, "HugePages_Free: %d", &free_pages);
        sscanf(line, "Hugepagesize: %d kB", &size_kb);
    }
    fclose(f);
    return size_kb == 2048 ? free_pages : 0;
}

// Both guests' 150 MiB.
constexpr int kHugePagesNeeded = 2 * 75;

} // namespace

int main(int argc, char **argv)
{
    using namespace chaos;
    Options o;
    bool single = false;
    bool plan_only = false;
    bool classic = false;
    std::vector<std::string> forced;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto val = [&]() -> std::string {
            if (i + 1 >= argc) {
                usage();
                exit(2);
            }
            return argv[++i];
        };
        if (a == "--qemu") {
            o.qemu = val();
        } else if (a == "--qemu-dst") {
            o.qemu_dst = val();
        } else if (a == "--machine") {
            o.machine = val();
        } else if (a == "--qemu-src") {
            o.qemu_src = val();
        } else if (a == "--firmware") {
            o.firmware.push_back(val());
        } else if (a == "--trace") {
            o.traces.push_back(val());
        } else if (a == "--accel") {
            o.accel = val();
        } else if (a == "--seed") {
            o.seed = std::strtoull(val().c_str(), nullptr, 0);
        } else if (a == "--rounds") {
            o.rounds = atoi(val().c_str());
        } else if (a == "--first") {
            o.first = atoi(val().c_str());
        } else if (a == "--round") {
            o.first = atoi(val().c_str());
            o.rounds = 1;
            single = true;
        } else if (a == "--break") {
            o.brk = val();
            if (o.brk != "source-resume") {
                usage();
                return 2;
            }
        } else if (a == "--settle-ms") {
            o.settle_ms = atoi(val().c_str());
        } else if (a == "--workdir") {
            o.workdir = val();
        } else if (a == "--tap") {
            g_tap = true;
        } else if (a == "--expect-violation") {
            o.expect_violation = true;
        } else if (a == "--keep") {
            o.keep = true;
        } else if (a == "--verbose") {
            o.verbose = true;
        } else if (a == "--plan-only") {
            plan_only = true;
        } else if (a == "--classic") {
            classic = true;
        } else if (a == "--with") {
            std::string n = val();
            if (!extras_name_ok(n)) {
                usage();
                return 2;
            }
            forced.push_back(n);
        } else if (a == "--sweep") {
            o.sweep.on = true;
        } else if (a == "--sweep-event") {
            WireEvent e;
            if (!wire_event_from_name(val(), &e)) {
                usage();
                return 2;
            }
            o.sweep.on = true;
            o.sweep.event = int(e);
        } else if (a == "--sweep-fault") {
            std::string k = val();
            for (int f = 0; f < int(Fault::Count); f++) {
                if (k == fault_name(Fault(f))) {
                    o.sweep.kind = f;
                }
            }
            if (o.sweep.kind < 0) {
                usage();
                return 2;
            }
            o.sweep.on = true;
        } else if (a == "--sweep-span") {
            o.sweep.span_ms = atoi(val().c_str());
        } else if (a == "--sweep-step") {
            o.sweep.step_ms = atoi(val().c_str());
        } else {
            usage();
            return 2;
        }
    }
    (void)single;
    if (o.sweep.step_ms <= 0 || o.sweep.span_ms < 0) {
        usage();
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    const bool mixed = !o.qemu_dst.empty();
    o.qemu = qemu_path_abs(o.qemu);
    o.qemu_dst = mixed ? qemu_path_abs(o.qemu_dst) : o.qemu;
    o.qemu_src = qemu_path_abs(o.qemu_src);
    for (const std::string &b : {o.qemu, o.qemu_dst}) {
        if (access(b.c_str(), X_OK) != 0) {
            fprintf(stderr, "chaos: %s: not an executable\n", b.c_str());
            return 2;
        }
    }
    if (!load_bootsector(o.qemu_src)) {
        fprintf(stderr, "chaos: cannot read the qtests' boot sector under %s\n", o.qemu_src.c_str());
        return 2;
    }
    if (o.firmware.empty()) {
        for (const char *d : {"/usr/share/seabios", "/usr/share/qemu", "/usr/lib/ipxe/qemu"}) {
            if (access(d, R_OK) == 0) {
                o.firmware.push_back(d);
            }
        }
    }
    if (o.workdir.empty()) {
        const char *t = getenv("TMPDIR");
        o.workdir = fmt("%s/chaos-%d", t ? t : "/tmp", int(getpid()));
    }
    mkdir(o.workdir.c_str(), 0755);

    // Mixed versions: only what both binaries have is turned on (an upstream
    // binary has none of this fork's features, so all of them stay off).
    Features feat = probe_features(o, o.qemu, o.workdir);
    if (mixed) {
        Features fd = probe_features(o, o.qemu_dst, o.workdir);
        feat.handshake &= fd.handshake;
        feat.negotiate &= fd.negotiate;
        feat.break_action &= fd.break_action;
        feat.detect_timeout &= fd.detect_timeout;
    }
    // The self-test runs with image locking off and is calibrated on the
    // plans from before issue 13's configurations.
    feat.extras = !classic && o.brk.empty();
    feat.no_handshake = o.brk == "source-resume";
    feat.forced = forced;
    int huge_free = host_hugepages_free();
    feat.hugepages = huge_free >= kHugePagesNeeded;
    out("chaos: source %s\nchaos: destination %s\nchaos: machine %s\n"
           "chaos: features: postcopy-start-handshake %s, postcopy-break-action %s, "
           "postcopy-detect-timeout %s\n",
           o.qemu.c_str(), o.qemu_dst.c_str(), o.machine.c_str(), feat.handshake ? "yes" : "no (skipped)",
           feat.break_action ? "yes" : "no (skipped)", feat.detect_timeout ? "yes" : "no (skipped)");
    if (!feat.extras) {
        out("chaos: round configurations of issue 13 off (%s)\n", classic ? "--classic" : "--break");
    } else if (!feat.hugepages) {
        out("chaos: huge pages: %d free 2 MiB pages, %d needed: hugepages rounds run with normal RAM\n",
            huge_free, kHugePagesNeeded);
    }
    if (o.sweep.on) {
        out("chaos: sweep: offsets -%d..+%d ms in %d ms steps around %s\n", o.sweep.span_ms, o.sweep.span_ms,
            o.sweep.step_ms,
            o.sweep.event >= 0 ? wire_event_name(WireEvent(o.sweep.event))
                               : "package, run, pong, start-request, grant in turn");
    }
    fflush(stdout);

    char self[PATH_MAX];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
    self[sl > 0 ? sl : 0] = 0;
    std::string replay_base = shell_quote(sl > 0 ? self : argv[0]) + " --qemu " + shell_quote(o.qemu) +
                              " --qemu-src " + shell_quote(o.qemu_src);
    if (mixed) {
        replay_base += " --qemu-dst " + shell_quote(o.qemu_dst);
    }
    if (o.machine != "q35") {
        replay_base += " --machine " + shell_quote(o.machine);
    }
    if (o.accel != "tcg") {
        replay_base += " --accel " + o.accel;
    }
    if (!o.brk.empty()) {
        replay_base += " --break " + o.brk;
    }
    if (classic) {
        replay_base += " --classic";
    }
    for (const auto &n : forced) {
        replay_base += " --with " + n;
    }
    if (o.sweep.on) {
        replay_base += " --sweep";
        if (o.sweep.event >= 0) {
            replay_base += std::string(" --sweep-event ") + wire_event_name(WireEvent(o.sweep.event));
        }
        if (o.sweep.kind >= 0) {
            replay_base += std::string(" --sweep-fault ") + fault_name(Fault(o.sweep.kind));
        }
        if (o.sweep.span_ms != 20 || o.sweep.step_ms != 4) {
            replay_base += fmt(" --sweep-span %d --sweep-step %d", o.sweep.span_ms, o.sweep.step_ms);
        }
    }

    if (plan_only) {
        for (int r = o.first; r < o.first + o.rounds; r++) {
            printf("%s\n", plan_text(r, make_plan(o.seed, r, feat, o.sweep)).c_str());
        }
        return 0;
    }
    if (g_tap) {
        printf("1..%d\n", o.expect_violation ? 1 : o.rounds);
    }
    int nviol = 0, nrounds = 0, nbad_rounds = 0;
    // kind x phase -> outcome -> count
    std::map<std::string, std::map<std::string, int>> table;
    std::map<std::string, int> outcomes;
    // sweep: (event, offset) -> outcome -> count
    std::map<std::pair<int, int>, std::map<std::string, int>> sweep_table;
    std::vector<std::string> failing;
    double t0 = now_ms();
    for (int r = o.first; r < o.first + o.rounds; r++) {
        std::string dir = fmt("%s/r%d", o.workdir.c_str(), r);
        mkdir(dir.c_str(), 0755);
        Round round(o, feat, r, dir);
        RoundConfig cfg = make_plan(o.seed, r, feat, o.sweep);
        RoundResult res = round.run();
        nrounds++;
        std::string replay = fmt("%s --seed %llu --round %d", replay_base.c_str(),
                                 (unsigned long long)o.seed, r);
        bool bad = !res.violations.empty();
        out("round %d: %s [%s] phase=%s -> %s%s (%.1f s)\n", r, res.fault_desc.c_str(),
               cfg.describe().c_str(), res.phase.c_str(), res.outcome.c_str(),
               bad ? fmt(", %zu VIOLATION(S)", res.violations.size()).c_str() : "", res.seconds);
        if (g_tap && !o.expect_violation) {
            printf("%s %d - round %d: %s -> %s%s\n", bad ? "not ok" : "ok", nrounds, r,
                   res.fault_desc.c_str(), res.outcome.c_str(),
                   bad ? fmt(" # replay: %s", replay.c_str()).c_str() : "");
        }
        if (bad || o.verbose) {
            for (const auto &v : res.violations) {
                out("  VIOLATION: %s\n", v.what.c_str());
            }
            for (const auto &l : res.timeline) {
                out("    %s\n", l.c_str());
            }
        }
        if (bad) {
            out("  replay: %s\n  logs: %s\n", replay.c_str(), dir.c_str());
            nviol += int(res.violations.size());
            nbad_rounds++;
            failing.push_back(replay);
        } else if (!o.keep) {
            std::string cmd = "rm -rf " + shell_quote(dir);
            if (system(cmd.c_str()) != 0) {
                fprintf(stderr, "chaos: cannot remove %s\n", dir.c_str());
            }
        }
        fflush(stdout);
        std::string oc = bad ? "VIOLATION" : res.outcome;
        for (size_t i = 0; i < cfg.faults.size(); i++) {
            std::string key = std::string(fault_name(cfg.faults[i].kind)) + " @ " +
                              (i == 0 ? res.phase : "(second fault)");
            table[key][oc]++;
        }
        outcomes[oc]++;
        if (res.sweep_event >= 0) {
            sweep_table[{res.sweep_event, res.sweep_offset}]
                       [res.phase == "not-fired" ? oc + " (not fired)" : oc]++;
        }
    }

    out("\n== summary: %d rounds, %d violating round(s), %d violation(s), %.0f s ==\n", nrounds,
           nbad_rounds, nviol, (now_ms() - t0) / 1000);
    out("outcomes:");
    for (const auto &kv : outcomes) {
        out(" %s=%d", kv.first.c_str(), kv.second);
    }
    out("\n\n| fault @ source phase when it fired | rounds | outcomes |\n|---|---:|---|\n");
    for (const auto &row : table) {
        int n = 0;
        std::string oc;
        for (const auto &kv : row.second) {
            n += kv.second;
            oc += fmt("%s%s %d", oc.empty() ? "" : ", ", kv.first.c_str(), kv.second);
        }
        out("| %s | %d | %s |\n", row.first.c_str(), n, oc.c_str());
    }
    if (!sweep_table.empty()) {
        out("\n| sweep: fault at event offset | rounds | outcomes |\n|---|---:|---|\n");
        for (const auto &row : sweep_table) {
            int n = 0;
            std::string oc;
            for (const auto &kv : row.second) {
                n += kv.second;
                oc += fmt("%s%s %d", oc.empty() ? "" : ", ", kv.first.c_str(), kv.second);
            }
            out("| %s %+dms | %d | %s |\n", wire_event_name(WireEvent(row.first.first)), row.first.second, n,
                oc.c_str());
        }
    }
    if (!failing.empty()) {
        out("\nreplay the failing rounds with:\n");
        for (const auto &f : failing) {
            out("  %s\n", f.c_str());
        }
    }
    if (nbad_rounds == 0 && !o.keep) {
        rmdir(o.workdir.c_str());
        std::string cmd = "rm -rf " + shell_quote(o.workdir);
        (void)system(cmd.c_str());
    }
    if (o.expect_violation) {
        out("\nself-test: %s\n", nbad_rounds ? "the driver caught the broken behaviour"
                                             : "FAILED: no violation caught");
        if (g_tap) {
            printf("%s 1 - self-test: --break %s is caught\n", nbad_rounds ? "ok" : "not ok",
                   o.brk.c_str());
        }
        return nbad_rounds ? 0 : 1;
    }
    return nbad_rounds ? 1 : 0;
}
