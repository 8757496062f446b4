// A round's plan: everything the driver chooses, as a pure function of
// (seed, round) and of the features both binaries have.  splitmix64, no
// <random> distributions, so plans are the same on every platform.  The
// draws are made whether or not the binary has a feature, so that a
// round's faults and moments do not change when a feature lands.
//
// SPDX-License-Identifier: GPL-2.0-or-later

#ifndef CHAOS_PLAN_H
#define CHAOS_PLAN_H

#include "faults.h"
#include "wire.h"

#include <cstdint>
#include <string>
#include <vector>

namespace chaos {

// splitmix64: the same numbers on every platform, unlike <random>'s
// distributions.
struct Rng {
    uint64_t x;
    explicit Rng(uint64_t seed) : x(seed) {}
    uint64_t next()
    {
        uint64_t z = (x += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    int range(int lo, int hi) { return lo + int(next() % uint64_t(hi - lo + 1)); }  // [lo, hi]
    bool chance(int percent) { return range(0, 99) < percent; }
};

struct FaultPlan {
    Fault kind;
    int at_ms;       // relative to migrate-start-postcopy (negative: before)
    int lift_ms;     // after at_ms, for faults that are lifted
    // Filled in when it fires.
    bool fired = false;
    double fired_at = 0;
    std::string src_phase, dst_phase, result;
};

// What the binaries have (probed with query-migrate-capabilities,
// query-migrate-parameters and qom-list-properties).
struct Features {
    bool handshake = false;
    bool negotiate = false;   // x-postcopy-start-handshake-negotiate
    bool break_action = false;
    bool detect_timeout = false;
    // Every round without the start handshake (negotiation off): the
    // self-test's broken source, a 'cont' after the switchover, is refused
    // once the handshake handed the guest over, and accepted without it,
    // as by QEMU 10.0
    bool no_handshake = false;
    // Not the binaries': the host has enough free 2 MiB huge pages for
    // both guests (/proc/meminfo HugePages_Free)
    bool hugepages = false;
    // The round configurations of issue 13 (Extras); off with --classic,
    // which gives the plans of the driver before them
    bool extras = true;
    // --with NAME: these configurations in every round (Extras names)
    std::vector<std::string> forced;
};

// Round configurations added by issue 13, drawn from a stream of their own
// so that the draws above, and so every plan made before, stay put.  Each
// is reported in the round's description.
struct Extras {
    // Another process holds the disk image's locks (as a QEMU that has it
    // open read-write): the destination's 'cont' fails; the manager then
    // frees the image and cancels, which must give the source its guest
    // back with its disk (with the start handshake)
    bool lock_held = false;
    bool autostart = false;     // the destination runs without -S
    bool release_ram = false;   // release-ram on the source
    // The manager sends 'cont' as soon as the destination reports
    // postcopy-active, also without the start handshake (instead of after
    // the source does)
    bool early_cont = false;
    // Guest RAM on 2 MiB huge pages (memory-backend-memfd hugetlb=on); only
    // where the host has them, else drawn but run with normal RAM
    bool hugepages = false;
    bool hugepages_skipped = false;
    // The source guest is stopped before the migration (and, as libvirt
    // does for a paused domain, the destination is not started): memory
    // must come back exactly as it was
    bool paused_guest = false;
};

// --sweep: one fault placed at a fine step around one switchover message
// (wire.h) instead of at a random moment.
struct SweepSpec {
    bool on = false;
    int span_ms = 20;         // offsets -span .. +span
    int step_ms = 4;
    int event = -1;           // WireEvent, -1: each in turn
    int kind = -1;            // Fault, -1: the plan's draw
};

struct RoundConfig {
    bool preempt = false;
    bool slow = false;        // max-postcopy-bandwidth 48 MiB/s: a longer postcopy-active
    int handshake = -1;       // -1: the binary lacks the capability
    // With the capability off: negotiated in-band (both binaries can),
    // or negotiation turned off on both sides (-1: cannot negotiate)
    int negotiate = -1;
    // The start handshake runs: set, or negotiated
    bool hs() const { return handshake == 1 || (handshake == 0 && negotiate == 1); }
    std::string break_action; // "" if the binary lacks the parameter
    int detect_timeout = -1;  // -1 if the binary lacks the parameter
    std::vector<FaultPlan> faults;
    Extras x;
    // Sweep rounds: the one fault fires at faults[0].at_ms relative to the
    // moment the proxy reads sweep_event
    bool sweep = false;
    WireEvent sweep_event = WireEvent::Package;
    // "preempt=on slow handshake=on ...", as in the round's report line
    std::string describe() const;
};

RoundConfig plan_round(uint64_t seed, int round, const Features &feat);
// The names --with takes: lock-held autostart release-ram cont-early
// hugepages paused-guest.
bool extras_name_ok(const std::string &name);
// Sweep round @round: offsets step fastest (-span, -span + step, ..., +span),
// then the event (package, run, pong, start-request, grant, unless one is
// chosen); each line of offsets takes its configuration and fault kind
// from plan_round(seed, line).  Lines at start-request and grant turn the
// start handshake on and leave the destination to be started.
RoundConfig plan_sweep_round(uint64_t seed, int round, const Features &feat, const SweepSpec &sw);
RoundConfig make_plan(uint64_t seed, int round, const Features &feat, const SweepSpec &sw);

// "kill-dst@+155ms + reset@+203ms"
std::string describe_faults(const RoundConfig &c);
// One line per round for --plan-only: faults with their lift times, and
// the configuration.
std::string plan_text(int round, const RoundConfig &c);

} // namespace chaos

#endif
