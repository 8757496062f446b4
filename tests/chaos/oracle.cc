// SPDX-License-Identifier: GPL-2.0-or-later

#include "oracle.h"

#include "util.h"

#include <algorithm>
#include <fstream>
#include <iterator>
#include <set>
#include <sys/wait.h>

namespace chaos {

RunAnalysis analyse_runs(const std::vector<StreamItem> &st, bool initially_running, double end_time,
                         double death_time)
{
    RunAnalysis r;
    bool running = initially_running;
    double lo = 0, hi = 0;
    bool have = false;
    double prev_lo = 0, prev_hi = 0;
    bool prev_running = initially_running;
    auto close_span = [&](double next_lo, double next_hi) {
        if (have && prev_running) {
            if (next_lo > prev_hi) {
                r.surely.push_back({prev_hi, next_lo});
            }
            r.maybe.push_back({prev_lo, next_hi});
        }
    };
    for (const auto &it : st) {
        bool changes = false;
        bool val = running;
        if (it.event && (it.name == "STOP" || it.name == "SHUTDOWN")) {
            changes = true;
            val = false;
        } else if (it.event && it.name == "RESUME") {
            changes = true;
            val = true;
        } else if (!it.event && it.name == "query-status" && jhas(it.msg, "return")) {
            changes = true;
            val = jbool(jpath(it.msg, {"return", "running"}));
        }
        if (!changes) {
            continue;
        }
        lo = std::max(lo, it.sent >= 0 ? it.sent : 0.0);
        lo = std::max(lo, prev_lo);
        hi = it.recv;
        close_span(lo, hi);
        running = val;
        if (running && r.first_surely_running < 0) {
            r.first_surely_running = hi;
        }
        prev_lo = lo;
        prev_hi = hi;
        prev_running = running;
        have = true;
    }
    // After the last item: running until death (surely not after), or
    // possibly until the end of the round.
    if (have && prev_running) {
        double until = death_time >= 0 ? death_time : end_time;
        r.maybe.push_back({prev_lo, until});
    }
    return r;
}

bool overlap(const std::vector<Interval> &x, const std::vector<Interval> &y, Interval *where,
             double *total)
{
    bool any = false;
    double sum = 0;
    for (const auto &a : x) {
        for (const auto &b : y) {
            double s = std::max(a.a, b.a), e = std::min(a.b, b.b);
            if (e > s) {
                if (!any) {
                    *where = {s, e};
                }
                where->a = std::min(where->a, s);
                where->b = std::max(where->b, e);
                sum += e - s;
                any = true;
            }
        }
    }
    if (total) {
        *total = sum;
    }
    return any;
}

// Several states share a status (the handshake's states look like
// postcopy-active), so a status sequence is checked as the image of a path
// of the table.
const char *projected_status(McState s)
{
    switch (s) {
    case MC_STATE_ACTIVE:
        return "active";
    case MC_STATE_DEVICE:
        return "device";
    case MC_STATE_POSTCOPY_DEVICE:
        return "postcopy-device";
    case MC_STATE_POSTCOPY_ACTIVE:
    case MC_STATE_POSTCOPY_COMMITTED:
    case MC_STATE_START_REQUESTED:
    case MC_STATE_STARTED:
        return "postcopy-active";
    case MC_STATE_POSTCOPY_PAUSED:
    case MC_STATE_START_REQUESTED_PAUSED:
    case MC_STATE_POSTCOPY_DEVICE_PAUSED:
    case MC_STATE_UNGRANTED_PAUSED:
        return "postcopy-paused";
    case MC_STATE_CANCELLED:
        return "cancelled";
    case MC_STATE_COMPLETED:
        return "completed";
    case MC_STATE_FAILED:
        return "failed";
    default:
        return "?";
    }
}

std::string normalise_status(const std::string &s)
{
    if (s == "setup" || s == "cancelling" || s == "wait-unplug" || s == "pre-switchover") {
        return "";
    }
    if (s == "postcopy-recover-setup" || s == "postcopy-recover") {
        return "postcopy-paused";
    }
    return s;
}

// Is every MIGRATION status sequence of one side the image of a path
// through the shim's table?  The set of shim states consistent with what
// was seen is tracked; between two reported statuses the machine may move
// through states that report the same status.  Upstream pre-copy
// transitions out of 'active' (failed, cancelled) are outside the shim's
// scope and accepted.
void check_path(McRole role, uint32_t flags, const std::vector<StreamItem> &st,
                std::vector<Violation> &out, std::string &seq)
{
    std::set<int> cur = {MC_STATE_ACTIVE};
    std::string cur_status = "active";
    bool reported = false;
    for (const auto &it : st) {
        if (!it.event || it.name != "MIGRATION") {
            continue;
        }
        std::string raw = jstring(jpath(it.msg, {"data", "status"}));
        seq += (seq.empty() ? "" : " ") + raw;
        std::string x = normalise_status(raw);
        if (x.empty() || x == cur_status) {
            continue;
        }
        bool known = false;
        for (int i = 0; i < MC_STATE__MAX; i++) {
            known |= x == projected_status(McState(i));
        }
        if (!known) {
            out.push_back({fmt("%s: unknown MIGRATION status '%s'", mc_role_name(role), raw.c_str())});
            reported = true;
            break;
        }
        // Silent moves within the current status.
        std::vector<int> work(cur.begin(), cur.end());
        while (!work.empty()) {
            int s = work.back();
            work.pop_back();
            for (int e = 0; e < MC_EVENT__MAX; e++) {
                McTransition t;
                if (mc_switchover_lookup(role, flags, McState(s), McEvent(e), &t, nullptr, 0) == 0 &&
                    cur_status == projected_status(t.to) && !cur.count(t.to)) {
                    cur.insert(t.to);
                    work.push_back(t.to);
                }
            }
        }
        std::set<int> next;
        for (int s : cur) {
            for (int e = 0; e < MC_EVENT__MAX; e++) {
                McTransition t;
                if (mc_switchover_lookup(role, flags, McState(s), McEvent(e), &t, nullptr, 0) == 0 &&
                    x == projected_status(t.to)) {
                    next.insert(t.to);
                }
            }
        }
        if (cur.count(MC_STATE_ACTIVE) && cur_status == "active" && (x == "failed" || x == "cancelled")) {
            next.insert(x == "failed" ? MC_STATE_FAILED : MC_STATE_CANCELLED);
        }
        if (next.empty()) {
            out.push_back({fmt("%s: MIGRATION %s -> %s is not a transition of the shim's table",
                               mc_role_name(role), cur_status.c_str(), x.c_str())});
            reported = true;
            break;
        }
        cur = next;
        cur_status = x;
    }
    (void)reported;
}

bool check_memory(const std::string &file, std::string &why)
{
    const size_t page = 4096, start = kTestMemStart, end = kTestMemEnd;
    std::ifstream f(file, std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (data.size() != end - start) {
        why = fmt("memory dump has %zu bytes", data.size());
        return false;
    }
    uint8_t first = uint8_t(data[0]), last = first;
    bool edge = false;
    int bad = 0;
    size_t first_bad = 0;
    for (size_t off = page; off < end - start; off += page) {
        uint8_t b = uint8_t(data[off]);
        if (b != last) {
            if (uint8_t(b + 1) == last && !edge) {
                edge = true;
                last = b;
            } else {
                if (!bad) {
                    first_bad = start + off;
                }
                bad++;
            }
        }
    }
    if (bad) {
        why = fmt("%d inconsistent pages, first at 0x%zx (first byte 0x%02x)", bad, first_bad, first);
        return false;
    }
    return true;
}

bool same_memory(const std::string &before, const std::string &after, std::string *why)
{
    std::ifstream fa(before, std::ios::binary), fb(after, std::ios::binary);
    std::string a((std::istreambuf_iterator<char>(fa)), std::istreambuf_iterator<char>());
    std::string b((std::istreambuf_iterator<char>(fb)), std::istreambuf_iterator<char>());
    if (a.size() != kTestMemEnd - kTestMemStart || b.size() != a.size()) {
        *why = fmt("memory dumps have %zu and %zu bytes", a.size(), b.size());
        return false;
    }
    const size_t page = 4096;
    size_t pages = 0, first = 0;
    for (size_t off = 0; off < a.size(); off += page) {
        if (a.compare(off, page, b, off, page) != 0) {
            if (!pages) {
                first = kTestMemStart + off;
            }
            pages++;
        }
    }
    if (pages) {
        *why = fmt("%zu pages differ, first at 0x%zx", pages, first);
        return false;
    }
    return true;
}

bool source_can_run(const SideEnd &s)
{
    return s.alive && (s.running || ((s.mig == "failed" || s.mig == "cancelled") &&
                                     s.runstate != "finish-migrate"));
}

bool destination_can_run(const SideEnd &d)
{
    return d.alive && d.mig == "completed";
}

std::string crash_violation(const std::string &name, const SideEnd &s)
{
    if (!s.exited_by_itself) {
        return "";
    }
    if (WIFSIGNALED(s.wstatus)) {
        return fmt("crash: %s killed by signal %d", name.c_str(), WTERMSIG(s.wstatus));
    }
    return fmt("crash: %s exited by itself with status %d", name.c_str(), WEXITSTATUS(s.wstatus));
}

RunVerdict check_runs(const RunAnalysis &ra, const RunAnalysis &rb, double t_round, bool src_can,
                      bool dst_can, bool dst_running, const std::string &s_mig,
                      const std::string &d_mig, std::vector<Violation> &out)
{
    RunVerdict v;
    v.dst_ever_ran = rb.first_surely_running >= 0;
    Interval w;
    double both_ms = 0;
    if (overlap(ra.surely, rb.surely, &w, &both_ms)) {
        out.push_back({fmt("split brain: both guests surely running for %.1f ms between %.1f and %.1f ms",
                           both_ms, w.a - t_round, w.b - t_round)});
    } else if (overlap(ra.maybe, rb.maybe, &w)) {
        v.note = fmt("note: sampling cannot exclude both running over [%.1f, %.1f] ms", w.a - t_round,
                     w.b - t_round);
    }
    if (v.dst_ever_ran) {
        for (const auto &iv : ra.surely) {
            if (iv.b > rb.first_surely_running) {
                out.push_back({fmt("duplicate: the source ran its guest at %.1f ms, after the destination "
                                   "had run it (%.1f ms)",
                                   std::max(iv.a, rb.first_surely_running) - t_round,
                                   rb.first_surely_running - t_round)});
                break;
            }
        }
    }
    if (src_can && (dst_can || dst_running)) {
        out.push_back({fmt("two owners: both sides can run the guest at the end (source %s, "
                           "destination %s%s)",
                           s_mig.c_str(), d_mig.c_str(), dst_running ? ", running" : "")});
    }
    return v;
}

std::string classify(const OutcomeFacts &f, std::vector<Violation> &out)
{
    if (f.bad_setup) {
        return "harness-error";
    }
    if (f.dst_can) {
        return "dst-runs";
    }
    if (f.src_can) {
        return "src-runs";
    }
    if (f.src_killed && f.dst_killed) {
        return "lost:both-killed";
    }
    if (f.src_killed) {
        // The source held the only copy of the RAM not yet sent.
        return "lost:source-killed";
    }
    if (f.dst_killed && (f.dst_ever_ran || (f.src_reached_active && !f.hs))) {
        // The destination held the running guest, or the source cannot
        // know whether it did (no start handshake): post-copy's limit.
        return f.dst_ever_ran ? "lost:running-dst-killed" : "lost:dst-killed-after-ack";
    }
    if (f.dst_killed && f.hs && f.grant_sent) {
        // The source committed when the grant left (it never resumes after
        // that: the destination may run); the destination died before it
        // could: the handshake's counterpart of the case above.
        return "lost:dst-killed-after-grant";
    }
    if (f.no_recovery && f.s_mig == "postcopy-paused" && f.src_reached_active) {
        return "limit:release-ram-no-recovery";
    }
    if (!f.hs && f.src_reached_device && f.s_mig == "postcopy-paused") {
        // Without the start handshake the source cannot tell a destination
        // that runs the guest (its acknowledgement lost) from one that
        // never will: once the package left it pauses rather than resume,
        // as upstream QEMU does (docs/devel/migration/postcopy-switchover.rst).
        return "limit:no-handshake-paused-after-package";
    }
    out.push_back({fmt("stranded: no side can run the guest (source %s, destination %s)", f.s_mig.c_str(),
                       f.d_mig.c_str())});
    return "stranded";
}

} // namespace chaos
