// One round: start a source and a destination QEMU with the proxy between
// them, drive a post-copy migration the way libvirt does, fire the plan's
// faults, recover a paused post-copy, then collect what the oracle needs
// and ask it.
//
// SPDX-License-Identifier: GPL-2.0-or-later

#ifndef CHAOS_ROUND_H
#define CHAOS_ROUND_H

#include "oracle.h"
#include "plan.h"
#include "proxy.h"
#include "qemu.h"

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace chaos {

struct Options {
    std::string qemu = "qemu/build/qemu-system-x86_64";
    std::string qemu_dst;     // destination binary, if not --qemu (mixed versions)
    std::string machine = "q35";
    std::string qemu_src = "qemu";
    std::vector<std::string> firmware;
    std::vector<std::string> traces;   // -trace patterns for both QEMUs (debugging)
    std::string accel = "tcg";
    std::string workdir;
    uint64_t seed = 1;
    int first = 0;
    int rounds = 1;
    std::string brk;          // self-test: "source-resume"
    bool keep = false;
    bool verbose = false;
    bool expect_violation = false;   // self-test: succeed only if a violation is caught
    int settle_ms = 30000;    // bound to reach a final state after faults are lifted
    SweepSpec sweep;          // --sweep
};

struct RoundResult {
    std::vector<Violation> violations;
    std::string outcome;    // dst-runs, src-runs, lost-*, harness-error
    std::string fault_desc;
    std::string phase;      // source phase when the first fault fired
    int sweep_event = -1;   // sweep rounds: WireEvent, and the fault's offset
    int sweep_offset = 0;
    double seconds = 0;
    std::vector<std::string> timeline;
};

std::string qemu_path_abs(const std::string &p);
// The qtests' boot sector (tests/qtest/migration/i386/a-b-bootblock.h).
bool load_bootsector(const std::string &qemu_src);
Features probe_features(const Options &o, const std::string &binary, const std::string &dir);

class Round {
public:
    Round(const Options &o, const Features &feat, int round, const std::string &dir);

    RoundResult run();

private:
    void note(const std::string &s);
    void violation(const std::string &s) { res_.violations.push_back({s}); }
    // A hang: every thread's backtrace of the QEMUs still alive, into the
    // round's directory (gdb, where installed), noted in the timeline.
    void dump_threads();
    std::vector<std::string> qemu_args(Qemu &q, bool dest);
    bool setup_side(Qemu &q, bool dest);
    void sampler();
    void fire(FaultPlan &f);
    void recovery_attempt();
    std::string side_status(Qemu &q);
    void lock_cont_failed(const std::string &err);
    void free_image();
    // End-of-round checks of a side the oracle counts as able to run the
    // guest; *can is cleared if it turns out it cannot.
    void check_can_run(Qemu &q, const SideEnd &e, bool *can, bool other_can, bool other_running);
    bool dump_memory(Qemu &q, const std::string &file, std::string *err);
    bool guest_progresses(Qemu &q, std::string *why);
    bool disks_active(Qemu &q, std::string *why);
    bool resumed_since(Qemu &q, double t, double until);

    const Options &o_;
    Features feat_;
    int round_;
    std::string dir_;
    RoundConfig cfg_;
    RoundResult res_;
    std::mutex log_m_;
    double t_round_ = 0;
    Qemu src_, dst_;
    Proxy proxy_;
    FaultTargets targets_{proxy_, src_, dst_};
    std::atomic<bool> stop_sampling_{false};
    std::atomic<int> recover_port_{0};
    bool src_initially_running_ = true;
    // When the planned faults are all lifted (sweep rounds: known once the
    // fault fired).
    std::atomic<double> lift_all_{0};
    std::atomic<bool> sweep_cancel_{false};
    bool no_recovery_ = false;       // release-ram: the source refused recovery
    double sweep_event_at_ = -1;     // when the proxy saw the sweep's event
    double t_sp_ = 0;                // migrate-start-postcopy
    // lock-held
    ImageLock lock_;
    double t_lock_on_ = -1, t_lock_off_ = -1;
    struct {
        bool cont_failed = false;     // the destination's cont failed on the lock
        bool faults_before = false;   // a planned fault had fired by then
        bool cancel_ok = false;
        std::string cancel_err;
    } lk_;
    // paused-guest
    std::string pre_mem_;             // the source's memory before the migration
    double t_pre_dump_ = -1;
    double t_oracle_cont_ = -1;       // the oracle's own cont on the source
};

} // namespace chaos

#endif
