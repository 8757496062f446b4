// The oracle: the invariants of docs/reliability.md checked on what a
// round saw (both sides' ordered QMP streams, their final states, their
// memory), and the round's outcome class.
//
// SPDX-License-Identifier: GPL-2.0-or-later

#ifndef CHAOS_ORACLE_H
#define CHAOS_ORACLE_H

#include "migration-control.h"
#include "qmp.h"

#include <string>
#include <vector>

namespace chaos {

struct Violation {
    std::string what;
};

// Run-state analysis of one side's QMP stream.
//
// Events and replies come out of one QMP connection in the order QEMU
// produced them, so item i was generated at some real time g_i with
// lo_i <= g_i <= hi_i, where hi_i is when the driver read it and lo_i is
// the latest send time of any command answered at or before i.  The run
// state between g_i and g_{i+1} is the one set by item i (STOP, RESUME, or
// a query-status reply).  So the side surely ran over [hi_i, lo_{i+1}] when
// item i left it running, and may have run over [lo_i, hi_{i+1}].
struct Interval {
    double a, b;
};

struct RunAnalysis {
    std::vector<Interval> surely;    // surely running
    std::vector<Interval> maybe;     // possibly running
    double first_surely_running = -1;  // hi of the first item that showed it running
};

RunAnalysis analyse_runs(const std::vector<StreamItem> &st, bool initially_running, double end_time,
                         double death_time);

// Where x and y overlap: the first instant, the last, and the total length.
bool overlap(const std::vector<Interval> &x, const std::vector<Interval> &y, Interval *where,
             double *total = nullptr);

// The MIGRATION status QEMU reports for each shim state: a copy of
// migration_switchover_status() in migration/switchover.c (series).
const char *projected_status(McState s);
// Collapse the statuses the shim does not model: "" drops the item.
std::string normalise_status(const std::string &s);

// Is every MIGRATION status sequence of one side the image of a path
// through the shim's table?  Appends the raw sequence to @seq.
void check_path(McRole role, uint32_t flags, const std::vector<StreamItem> &st,
                std::vector<Violation> &out, std::string &seq);

// The test RAM: the qtests' guest increments the first byte of every
// 4 KiB page of [1 MiB, 100 MiB) in a loop.
constexpr size_t kTestMemStart = 0x100000;
constexpr size_t kTestMemEnd = 0x6400000;

// The qtests' check_guests_ram on a pmemsave dump of [1 MiB, 100 MiB).
bool check_memory(const std::string &file, std::string &why);
// Two dumps of the test RAM are the same (a guest stopped before the
// migration and not run since); else *why says where they differ.
bool same_memory(const std::string &before, const std::string &after, std::string *why);

// What the round saw of one side at its end.
struct SideEnd {
    bool alive = false;
    bool running = false;       // query-status at the end
    std::string runstate;       // its 'status'
    std::string mig;            // the last MIGRATION status
    bool killed_by_us = false;
    bool exited_by_itself = false;
    int wstatus = 0;
};

// Can a side run the guest at the end?  A failed or cancelled source can
// run it again unless it kept it in finish-migrate, where QEMU refuses
// 'cont' (it gave the guest away to the destination); a destination can
// once it completed.
bool source_can_run(const SideEnd &s);
bool destination_can_run(const SideEnd &d);

// "crash: ..." if the side exited without the driver asking it to.
std::string crash_violation(const std::string &name, const SideEnd &s);

// Split brain, duplicate, two owners (appended to @out in that order); a
// note if sampling cannot exclude both running.
struct RunVerdict {
    bool dst_ever_ran = false;
    std::string note;
};
RunVerdict check_runs(const RunAnalysis &src, const RunAnalysis &dst, double t_round, bool src_can,
                      bool dst_can, bool dst_running, const std::string &s_mig,
                      const std::string &d_mig, std::vector<Violation> &out);

// The outcome class of a round (dst-runs, src-runs, lost:*, limit:*,
// stranded); a stranded round is also a violation.  With release-ram, a
// post-copy that paused once the source had the acknowledgement (from
// when it may discard what it sent) cannot be recovered: QEMU refuses, as
// pages sent and discarded may not have arrived.  A loss post-copy with
// release-ram cannot avoid: limit:release-ram-no-recovery.
struct OutcomeFacts {
    bool bad_setup = false;
    bool src_can = false, dst_can = false;
    bool src_killed = false, dst_killed = false;
    bool dst_ever_ran = false;
    bool src_reached_active = false;   // the source reported postcopy-active
    bool src_reached_device = false;   // ... postcopy-device
    bool hs = false;                   // the start handshake ran
    bool no_recovery = false;          // release-ram: the source refused recovery
    bool grant_sent = false;           // the proxy saw POSTCOPY_START_GRANT leave the source
    std::string s_mig, d_mig;
};
std::string classify(const OutcomeFacts &f, std::vector<Violation> &out);

} // namespace chaos

#endif
