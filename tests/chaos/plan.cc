// SPDX-License-Identifier: GPL-2.0-or-later

#include "plan.h"

#include "util.h"

namespace chaos {

std::string RoundConfig::describe() const
{
    std::string s = fmt("preempt=%s%s", preempt ? "on" : "off", slow ? " slow" : "");
    if (handshake >= 0) {
        s += fmt(" handshake=%s", handshake ? "on" : negotiate == 1 ? "negotiated" : "off");
    }
    if (!break_action.empty()) {
        s += " break-action=" + break_action;
    }
    if (detect_timeout >= 0) {
        s += fmt(" detect-timeout=%d", detect_timeout);
    }
    if (x.lock_held) {
        s += " lock-held";
    }
    if (x.autostart) {
        s += " autostart";
    }
    if (x.release_ram) {
        s += " release-ram";
    }
    if (x.early_cont) {
        s += " cont=early";
    }
    if (x.hugepages) {
        s += " hugepages";
    } else if (x.hugepages_skipped) {
        s += " hugepages=skipped";
    }
    if (x.paused_guest) {
        s += " paused-guest";
    }
    return s;
}

RoundConfig plan_round(uint64_t seed, int round, const Features &feat)
{
    Rng rng(seed * 0x100000001b3ull ^ (uint64_t(round) + 1) * 0x9e3779b97f4a7c15ull);
    rng.next();
    RoundConfig c;
    c.preempt = rng.chance(50);
    c.slow = rng.chance(50);
    int hs = rng.range(0, 1);
    int ba = rng.range(0, 1);
    int dt = rng.range(1000, 3000);
    if (feat.handshake) {
        c.handshake = hs;
    }
    if (feat.negotiate && c.handshake == 0) {
        // Half the rounds without the capability negotiate it (the
        // default between two binaries of this fork), half turn it off;
        // from the same draw, so that plans stay put
        c.negotiate = (dt >> 1) & 1;
    }
    if (feat.no_handshake) {
        c.handshake = 0;
        c.negotiate = feat.negotiate ? 0 : -1;
    }
    if (feat.break_action) {
        c.break_action = ba ? "pause" : "keep-running";
    }
    if (feat.detect_timeout) {
        // On (1-3 s) or off (0) without another draw, so plans stay put
        c.detect_timeout = (dt & 1) ? dt : 0;
    }
    int nfaults = rng.chance(30) ? 2 : 1;
    int at = rng.range(-50, 400);
    for (int i = 0; i < nfaults; i++) {
        FaultPlan f;
        f.kind = Fault(rng.range(0, int(Fault::Count) - 1));
        f.at_ms = at;
        f.lift_ms = rng.range(1500, 4000);
        c.faults.push_back(f);
        at += rng.range(0, 300);
    }

    // Issue 13's configurations: their own stream, always drawn.
    Rng xr(seed * 0xd6e8feb86659fd93ull ^ (uint64_t(round) + 1) * 0xff51afd7ed558ccdull ^ 0x65787472ull);
    xr.next();
    bool lock = xr.chance(12);
    bool autostart = xr.chance(15);
    bool release = xr.chance(25);
    bool early = xr.chance(20);
    bool huge = xr.chance(15);
    bool paused = xr.chance(10);
    auto forced = [&](const char *name) {
        for (const auto &f : feat.forced) {
            if (f == name) {
                return true;
            }
        }
        return false;
    };
    bool f_lock = forced("lock-held"), f_paused = forced("paused-guest");
    lock |= f_lock;
    autostart |= forced("autostart");
    release |= forced("release-ram");
    early |= forced("cont-early");
    huge |= forced("hugepages");
    paused |= f_paused;
    if (lock && paused && !(f_lock && f_paused)) {
        // A paused guest is not started on the destination: the held lock
        // would never be noticed.  A forced one wins, else the lock.
        if (f_paused) {
            lock = false;
        } else {
            paused = false;
        }
    }
    if (feat.extras) {
        c.x.lock_held = lock;
        c.x.autostart = autostart;
        c.x.release_ram = release;
        c.x.early_cont = early;
        c.x.hugepages = huge && feat.hugepages;
        c.x.hugepages_skipped = huge && !feat.hugepages;
        c.x.paused_guest = paused;
    }
    return c;
}

bool extras_name_ok(const std::string &name)
{
    for (const char *n : {"lock-held", "autostart", "release-ram", "cont-early", "hugepages", "paused-guest"}) {
        if (name == n) {
            return true;
        }
    }
    return false;
}

RoundConfig plan_sweep_round(uint64_t seed, int round, const Features &feat, const SweepSpec &sw)
{
    int noff = 2 * sw.span_ms / sw.step_ms + 1;
    int line = round / noff;
    int off = -sw.span_ms + (round % noff) * sw.step_ms;
    RoundConfig c = plan_round(seed, line, feat);
    WireEvent ev = sw.event >= 0 ? WireEvent(sw.event) : WireEvent(line % int(WireEvent::Count));
    if (ev == WireEvent::StartRequest || ev == WireEvent::Grant) {
        // Only the start handshake has them, and only a destination that
        // is started asks
        if (feat.handshake) {
            c.handshake = 1;
            c.negotiate = -1;
        } else if (feat.negotiate) {
            c.handshake = 0;
            c.negotiate = 1;
        }
        c.x.lock_held = false;
        c.x.paused_guest = false;
    }
    FaultPlan f = c.faults[0];
    if (sw.kind >= 0) {
        f.kind = Fault(sw.kind);
    }
    f.at_ms = off;
    c.faults = {f};
    c.sweep = true;
    c.sweep_event = ev;
    return c;
}

RoundConfig make_plan(uint64_t seed, int round, const Features &feat, const SweepSpec &sw)
{
    return sw.on ? plan_sweep_round(seed, round, feat, sw) : plan_round(seed, round, feat);
}

std::string describe_faults(const RoundConfig &c)
{
    std::string d;
    for (const auto &f : c.faults) {
        d += std::string(d.empty() ? "" : " + ") +
             fmt("%s@%s%+dms", fault_name(f.kind), c.sweep ? wire_event_name(c.sweep_event) : "", f.at_ms);
    }
    return d;
}

std::string plan_text(int round, const RoundConfig &c)
{
    std::string d;
    for (const auto &f : c.faults) {
        d += fmt("%s%s@%s%+dms(lift %dms)", d.empty() ? "" : " + ", fault_name(f.kind),
                 c.sweep ? wire_event_name(c.sweep_event) : "", f.at_ms, f.lift_ms);
    }
    return fmt("round %d: %s [%s]", round, d.c_str(), c.describe().c_str());
}

} // namespace chaos
