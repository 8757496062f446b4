// Unit tests of the failure detector (with a fake clock) and of the pause
// policy.  Output is TAP.
//
// SPDX-License-Identifier: GPL-2.0-or-later

#include "migration-control.h"
#include "tap.h"

#include <cstdio>
#include <algorithm>
#include <string>
#include <vector>

namespace {

using tap::check;

void test_off()
{
    McDetector *d = mc_detector_new(MC_ROLE_SOURCE, 0, 0);
    uint64_t next = 0;
    bool quiet = true;
    for (uint64_t t = 0; t < 1000000; t += 997) {
        quiet = quiet && mc_detector_poll(d, t, &next) == MC_DETECTOR_QUIET;
    }
    check(quiet && next == UINT64_MAX, "T=0: off, never a heartbeat or a break");
    mc_detector_free(d);
}

// Found by fuzz-detector: last_rx + T wrapped around for a huge T.
void test_huge_timeout()
{
    for (McRole role : {MC_ROLE_SOURCE, MC_ROLE_DESTINATION}) {
        McDetector *d = mc_detector_new(role, UINT64_MAX, 1000);
        uint64_t next = 0;
        mc_detector_received(d, 1000, 1);
        bool ok = true;
        for (uint64_t t : {uint64_t(1000), uint64_t(2000), UINT64_MAX / 2, UINT64_MAX - 1}) {
            ok = ok && mc_detector_poll(d, t, &next) != MC_DETECTOR_BROKEN;
        }
        check(ok, std::string(mc_role_name(role)) +
                      ": T=UINT64_MAX never declares the channel broken");
        mc_detector_free(d);
    }
}

void test_source()
{
    const uint64_t T = 1000;
    McDetector *d = mc_detector_new(MC_ROLE_SOURCE, T, 0);
    uint64_t next = 0;

    check(mc_detector_poll(d, 0, &next) == MC_DETECTOR_QUIET && next == T / 4,
          "source: quiet at start, next poll when a heartbeat is due");
    check(mc_detector_poll(d, T / 4, &next) == MC_DETECTOR_SEND_HEARTBEAT,
          "source: heartbeat due after T/4 without sending");
    mc_detector_sent(d, T / 4);
    check(mc_detector_poll(d, T / 4 + 1, &next) == MC_DETECTOR_QUIET,
          "source: sending resets the heartbeat timer");
    mc_detector_sent(d, T - 1);
    check(mc_detector_poll(d, T - 1, &next) == MC_DETECTOR_QUIET && next == T,
          "source: next poll at the deadline T after the last receive");
    check(mc_detector_poll(d, T, &next) == MC_DETECTOR_BROKEN,
          "source: nothing received for T -> broken");
    mc_detector_received(d, T + 10, 0);
    check(mc_detector_poll(d, T + 20, &next) == MC_DETECTOR_BROKEN,
          "source: broken stays broken until reset");
    mc_detector_reset(d, 5000);
    check(mc_detector_poll(d, 5000 + T - 1, &next) != MC_DETECTOR_BROKEN &&
          mc_detector_poll(d, 5000 + T, &next) == MC_DETECTOR_BROKEN,
          "source: reset (recovery) starts counting afresh");
    mc_detector_free(d);

    d = mc_detector_new(MC_ROLE_SOURCE, T, 0);
    bool broken = false;
    for (uint64_t t = 0; t <= 100 * T; t += 10) {
        mc_detector_received(d, t, 0);
        broken = broken || mc_detector_poll(d, t, nullptr) == MC_DETECTOR_BROKEN;
    }
    check(!broken, "source: traffic every 10 ms for 100 T is never broken");
    mc_detector_free(d);
}

void test_destination()
{
    const uint64_t T = 1000;
    McDetector *d = mc_detector_new(MC_ROLE_DESTINATION, T, 0);
    bool ok = true;
    for (uint64_t t = 0; t <= 10 * T; t += 50) {
        ok = ok && mc_detector_poll(d, t, nullptr) == MC_DETECTOR_QUIET;
    }
    check(ok, "destination: not armed before a heartbeat (older source)");
    mc_detector_received(d, 10 * T, 1);
    check(mc_detector_poll(d, 11 * T - 1, nullptr) == MC_DETECTOR_QUIET,
          "destination: armed by a heartbeat, quiet before T");
    check(mc_detector_poll(d, 11 * T, nullptr) == MC_DETECTOR_BROKEN,
          "destination: nothing for T after the heartbeat -> broken");
    mc_detector_reset(d, 20 * T);
    check(mc_detector_poll(d, 30 * T, nullptr) == MC_DETECTOR_QUIET,
          "destination: reset disarms until the next heartbeat");
    bool never_sends = true;
    for (uint64_t t = 30 * T; t < 40 * T; t += 100) {
        never_sends = never_sends &&
                      mc_detector_poll(d, t, nullptr) != MC_DETECTOR_SEND_HEARTBEAT;
    }
    check(never_sends, "destination: never sends heartbeats itself");
    mc_detector_free(d);
}

// Both sides with a network that can be cut (a silent partition), from
// the moment the destination has the post-copy package: every heartbeat
// of the source is answered by the destination while the network is up.  Both must declare the channel broken within T of the
// cut, and never before it.
void test_partition(uint64_t T, uint64_t cut)
{
    McDetector *src = mc_detector_new(MC_ROLE_SOURCE, T, 0);
    McDetector *dst = mc_detector_new(MC_ROLE_DESTINATION, T, 0);
    uint64_t src_broken = 0, dst_broken = 0;

    // The post-copy package carries the first heartbeat.
    mc_detector_received(dst, 0, 1);
    for (uint64_t t = 0; t <= cut + 3 * T; t += 5) {
        const bool up = t < cut;
        if (mc_detector_poll(src, t, nullptr) == MC_DETECTOR_SEND_HEARTBEAT) {
            mc_detector_sent(src, t);
            if (up) {
                mc_detector_received(dst, t, 1);
                mc_detector_sent(dst, t);          // the answer (PONG)
                mc_detector_received(src, t, 0);
            }
        }
        if (!src_broken && mc_detector_poll(src, t, nullptr) == MC_DETECTOR_BROKEN) {
            src_broken = t;
        }
        if (!dst_broken && mc_detector_poll(dst, t, nullptr) == MC_DETECTOR_BROKEN) {
            dst_broken = t;
        }
    }
    const std::string what = "partition at " + std::to_string(cut) + " ms, T=" +
                             std::to_string(T) + " ms: ";
    check(src_broken >= cut && src_broken <= cut + T,
          what + "source detects within T (at +" + std::to_string(src_broken - cut) +
              " ms)");
    check(dst_broken >= cut && dst_broken <= cut + T,
          what + "destination detects within T (at +" +
              std::to_string(dst_broken - cut) + " ms)");
    mc_detector_free(src);
    mc_detector_free(dst);
}

// A link of @rate bytes/ms between a source that always has pages to send
// (its socket keeps @queue bytes queued ahead of the link) and a
// destination that answers each heartbeat once its QEMU read its last
// byte.  The source's migration thread checks every 7 ms whether a
// heartbeat is due and writes it to the back of the queue; the main loop
// polls every mc_detector_poll_period(), at an offset @phase from the
// heartbeat checks, and first reports the kernel's counters: bytes the
// destination acknowledged (source) or received (destination).  Returns
// the time of the first BROKEN verdict on @role's side, or 0 if none
// within @duration.  Faults from a given time on: @cut, the link carries
// nothing (silent partition); @frozen, the destination's QEMU reads and
// answers nothing while its kernel still takes @rcvbuf bytes; @mute, it
// reads on but its answers never reach the source.  @app_rate: the
// destination's QEMU reads at most that many bytes/ms (a busy destination
// paces the connection through its receive window).  @restart: a state
// change on the same connection (mc_detector_restart()).  @transport:
// report the counters at all (off: heartbeats only, the old detector).
struct Link {
    uint64_t T = 1000;
    uint64_t rate = 2000;        // 2 MB/s
    uint64_t queue = 4 << 20;    // bytes ahead of each new heartbeat
    uint64_t duration = 60000;
    uint64_t cut = UINT64_MAX;
    uint64_t frozen = UINT64_MAX;
    uint64_t mute = UINT64_MAX;
    uint64_t restart = UINT64_MAX;
    uint64_t rcvbuf = 6 << 20;
    uint64_t phase = 3;
    uint64_t app_rate = UINT64_MAX;
    uint64_t chunk = 0;          // the source writes pages in blocking
                                 // flushes of this size (0: continuously),
                                 // and checks for heartbeats between them
    bool transport = true;
};

uint64_t simulate(const Link &l, McRole role)
{
    McDetector *d = mc_detector_new(role, l.T, 0);
    uint64_t period = mc_detector_poll_period(d);
    uint64_t written = l.queue;   // byte position the source wrote up to
    uint64_t delivered = 0;       // bytes the destination's kernel took
    uint64_t consumed = 0;        // bytes the destination QEMU read
    std::vector<uint64_t> hbs;    // positions of heartbeats not yet read
    uint64_t broken_at = 0;
    bool rwnd_limited = false;    // since the last poll

    if (role == MC_ROLE_DESTINATION) {
        mc_detector_received(d, 0, 1);   // armed by the package's heartbeat
    } else {
        mc_detector_sent(d, 0);          // the heartbeat in the package
        hbs.push_back(written);
        if (l.transport) {
            mc_detector_heartbeat_position(d, written);
        }
    }
    for (uint64_t t = 1; t <= l.duration && !broken_at; t++) {
        bool reads_all = t < l.frozen && l.app_rate == UINT64_MAX;
        uint64_t room = reads_all ? UINT64_MAX : consumed + l.rcvbuf - delivered;
        uint64_t step = t >= l.cut ? 0 : std::min<uint64_t>(l.rate, room);
        rwnd_limited = rwnd_limited || (t < l.cut && room < l.rate);
        delivered = std::min(written, delivered + step);
        if (t < l.frozen) {
            consumed = reads_all ? delivered : std::min(delivered, consumed + l.app_rate);
        }
        bool between = true;
        if (!l.chunk) {
            written = std::max(written, delivered + l.queue);
        } else if (written + l.chunk <= delivered + l.queue) {
            written += l.chunk;  // a flush returns once it fits
        } else {
            between = false;     // blocked in the flush
        }
        while (!hbs.empty() && hbs.front() <= consumed) {
            hbs.erase(hbs.begin());
            // The answer crosses the uncongested return path at once; the
            // destination itself sees the heartbeat
            if (t < l.cut && (role == MC_ROLE_DESTINATION || t < l.mute)) {
                mc_detector_received(d, t, 1);
            }
        }
        if (role == MC_ROLE_SOURCE && between && (l.chunk || t % 7 == 0) &&
            mc_detector_heartbeat_due(d, t)) {
            mc_detector_sent(d, t);
            written += 64;
            hbs.push_back(written);
            if (l.transport) {
                mc_detector_heartbeat_position(d, written);
            }
        } else if (role == MC_ROLE_DESTINATION && t % (l.T / 4) == 7) {
            written += 64;       // the source's heartbeats, every T/4
            hbs.push_back(written);
        }
        if (t == l.restart) {
            mc_detector_restart(d, t);
        }
        if (t % period == l.phase % period) {   // the main loop's poll
            if (l.transport) {
                mc_detector_transport(d, t, role == MC_ROLE_SOURCE ? delivered : consumed,
                                      l.rcvbuf, rwnd_limited);
                rwnd_limited = false;
            }
            if (mc_detector_poll(d, t, nullptr) == MC_DETECTOR_BROKEN) {
                broken_at = t;
            }
        }
    }
    mc_detector_free(d);
    return broken_at;
}

std::string ms(uint64_t v)
{
    return std::to_string(v) + " ms";
}

void test_slow_link()
{
    for (McRole role : {MC_ROLE_SOURCE, MC_ROLE_DESTINATION}) {
        std::string side = mc_role_name(role);
        Link l;
        uint64_t b = simulate(l, role);
        check(b == 0, side + ": 2 MB/s with 4 MB queued ahead of every heartbeat: "
                      "healthy for 60 s (broken at " + ms(b) + ")");
        l.transport = false;
        b = simulate(l, role);
        check(b != 0 && b < 3000, side + ": the same link counted by heartbeats only "
                                  "is declared broken (the defect; at " + ms(b) + ")");
        // A partition, with T that is not a multiple of the poll period
        bool bounded = true;
        std::string worst;
        uint64_t excess = 0;
        for (uint64_t T : {1000, 1001, 1301, 1999, 2500, 5000}) {
            for (uint64_t cut : {5000, 12345, 30001}) {
                for (uint64_t phase : {0, 3, 9, 33}) {
                    Link p;
                    p.T = T;
                    p.cut = cut;
                    p.phase = phase;
                    b = simulate(p, role);
                    bounded = bounded && b > cut && b <= cut + T + 250;
                    if (b > cut + T && b - cut - T > excess) {
                        excess = b - cut - T;
                    }
                    if (b <= cut || b > cut + T + 250) {
                        worst = "T=" + ms(T) + " cut at " + ms(cut) + ": " + ms(b);
                    }
                }
            }
        }
        check(bounded, side + ": slow link, partitions for T from 1000 to 5000 ms "
                              "detected within T + 250 ms (at most T + " + ms(excess) +
                              ")" + (worst.empty() ? "" : "; " + worst));
    }
    // A frozen destination QEMU whose kernel still takes data: the
    // acknowledgements past the heartbeat's position plus the window do
    // not count.
    for (uint64_t rcvbuf : {uint64_t(0), uint64_t(64) << 10, uint64_t(6) << 20}) {
        for (uint64_t queue : {uint64_t(0), uint64_t(4) << 20}) {
            Link f;
            f.frozen = 10000;
            f.rcvbuf = rcvbuf;
            f.queue = queue;
            uint64_t b = simulate(f, MC_ROLE_SOURCE);
            uint64_t bound = f.frozen + f.T + 100 + (rcvbuf + queue) / f.rate;
            check(b > f.frozen && b <= bound,
                  "source: destination frozen at 10 s (receive buffer " +
                      std::to_string(rcvbuf >> 10) + " KiB, queue " +
                      std::to_string(queue >> 10) + " KiB) detected by " + ms(bound) +
                      " (at " + ms(b) + ")");
        }
    }
    // The destination reads on, but its answers never reach the source
    // (found by review: crediting up to the latest heartbeat forgot the
    // unanswered older ones on a congested link).
    for (uint64_t rate : {uint64_t(2000), uint64_t(12500), uint64_t(125000)}) {
        for (uint64_t queue : {uint64_t(300) << 10, uint64_t(4) << 20}) {
            Link m;
            m.mute = 10000;
            m.rate = rate;
            m.queue = queue;
            m.duration = 120000;
            uint64_t b = simulate(m, MC_ROLE_SOURCE);
            uint64_t bound = m.mute + m.T + 100 + (queue + m.rcvbuf) / rate;
            check(b > m.mute && b <= bound,
                  "source: answers lost from 10 s while the destination reads on (" +
                      std::to_string(rate) + " B/ms, queue " +
                      std::to_string(queue >> 10) + " KiB) detected by " + ms(bound) +
                      " (at " + ms(b) + ")");
        }
    }
    // A busy destination paces a fast link through its receive window:
    // healthy; and if its answers are lost there, still detected.
    {
        Link busy;
        busy.rate = 125000;      // 1 Gbit/s
        busy.app_rate = 1500;    // the destination reads 1.5 MB/s
        uint64_t b = simulate(busy, MC_ROLE_SOURCE);
        check(b == 0, "source: a destination that reads 1.5 MB/s of a 1 Gbit/s link "
                      "(6 MB receive buffer): healthy (broken at " + ms(b) + ")");
        busy.mute = 10000;
        busy.duration = 120000;
        b = simulate(busy, MC_ROLE_SOURCE);
        uint64_t bound = busy.mute + busy.T + 100 + busy.rcvbuf / busy.app_rate;
        check(b > busy.mute && b <= bound,
              "source: ... its answers lost from 10 s: detected by " + ms(bound) +
                  " (at " + ms(b) + ")");
    }
    // A state change on the same connection keeps what is on the way
    // (found by review: a full reset there forgot the queued heartbeats).
    bool healthy = true;
    for (uint64_t restart = 5000; restart < 6000; restart += 37) {
        Link r;
        r.rate = 125;            // 1 Mbit/s
        r.chunk = 128 << 10;
        r.restart = restart;
        r.duration = 40000;
        healthy = healthy && simulate(r, MC_ROLE_SOURCE) == 0;
    }
    check(healthy, "source: 1 Mbit/s with 4 MB queued, pages in blocking 128 KiB flushes, "
                   "restarted at 27 phases: healthy");
    // An answer quicker than the record of its heartbeat's position
    // (found by review): the next heartbeats still count.
    {
        McDetector *q = mc_detector_new(MC_ROLE_SOURCE, 1000, 0);
        mc_detector_sent(q, 0);
        mc_detector_received(q, 1, 1);             // the answer, first
        mc_detector_heartbeat_position(q, 64);     // then its position
        uint64_t acked = 64, written = 64, broken = 0;
        std::vector<uint64_t> on_the_way;
        mc_detector_transport(q, 0, 0, 0, 0);
        for (uint64_t t = 1; t <= 20000 && !broken; t++) {
            acked = std::min(written, acked + 2000);
            written = std::max(written, acked + (4 << 20));   // 4 MB queued
            while (!on_the_way.empty() && on_the_way.front() <= acked) {
                on_the_way.erase(on_the_way.begin());
                mc_detector_received(q, t, 1);
            }
            if (t % 250 == 0) {
                mc_detector_sent(q, t);
                written += 64;
                on_the_way.push_back(written);
                mc_detector_heartbeat_position(q, written);
            }
            if (t % 50 == 0) {
                mc_detector_transport(q, t, acked, 0, 0);
                if (mc_detector_poll(q, t, nullptr) == MC_DETECTOR_BROKEN) {
                    broken = t;
                }
            }
        }
        check(broken == 0, "source: an answer ahead of its heartbeat's position does not "
                           "shift the queue (broken at " + ms(broken) + ")");
        mc_detector_free(q);
    }
    // A new connection starts a new byte count: no sign of life from it.
    McDetector *d = mc_detector_new(MC_ROLE_DESTINATION, 1000, 0);
    mc_detector_received(d, 0, 1);
    mc_detector_transport(d, 100, 5000000, 0, 0);
    mc_detector_transport(d, 900, 10, 0, 0);
    check(mc_detector_poll(d, 1000, nullptr) == MC_DETECTOR_BROKEN,
          "destination: a byte count that went back is no sign of life");
    mc_detector_free(d);
    // Asking whether a heartbeat is due decides nothing
    d = mc_detector_new(MC_ROLE_SOURCE, 1000, 0);
    bool due = mc_detector_heartbeat_due(d, 5000);
    mc_detector_received(d, 4500, 0);
    check(due && mc_detector_poll(d, 5000, nullptr) != MC_DETECTOR_BROKEN,
          "source: mc_detector_heartbeat_due() long after the last sign of life "
          "does not latch a break");
    mc_detector_free(d);
    check(mc_detector_poll_period(d = mc_detector_new(MC_ROLE_SOURCE, 60000, 0)) == 50,
          "poll period at most 50 ms");
    mc_detector_free(d);
}

void test_policy()
{
    McPausePolicy *p = mc_pause_policy_new(1);
    check(mc_pause_policy_on(p, MC_POLICY_CHANNEL_BROKEN, 1) == MC_POLICY_PAUSE_GUEST &&
          mc_pause_policy_paused(p),
          "policy: a break while running pauses the guest");
    check(mc_pause_policy_on(p, MC_POLICY_RECOVERED, 0) == MC_POLICY_RESUME_GUEST &&
          !mc_pause_policy_paused(p),
          "policy: recovery resumes what the policy paused");

    mc_pause_policy_on(p, MC_POLICY_CHANNEL_BROKEN, 1);
    mc_pause_policy_on(p, MC_POLICY_USER_STOP, 0);
    check(mc_pause_policy_on(p, MC_POLICY_RECOVERED, 0) == MC_POLICY_NONE,
          "policy: a user 'stop' during the break is not undone by recovery");

    mc_pause_policy_on(p, MC_POLICY_CHANNEL_BROKEN, 1);
    mc_pause_policy_on(p, MC_POLICY_USER_CONT, 1);
    check(!mc_pause_policy_paused(p) &&
          mc_pause_policy_on(p, MC_POLICY_RECOVERED, 1) == MC_POLICY_NONE,
          "policy: a user 'cont' during the break is obeyed, recovery does nothing");

    check(mc_pause_policy_on(p, MC_POLICY_CHANNEL_BROKEN, 0) == MC_POLICY_NONE &&
          mc_pause_policy_on(p, MC_POLICY_RECOVERED, 0) == MC_POLICY_NONE,
          "policy: a guest already stopped is neither paused nor resumed");
    mc_pause_policy_free(p);

    p = mc_pause_policy_new(0);
    bool none = true;
    for (int e = 0; e < MC_POLICY_EVENT__MAX; e++) {
        for (int running = 0; running < 2; running++) {
            none = none && mc_pause_policy_on(p, McPolicyEvent(e), running) ==
                               MC_POLICY_NONE;
        }
    }
    check(none && !mc_pause_policy_paused(p), "policy off: never acts (QEMU 10.0)");
    mc_pause_policy_free(p);

    // Every (paused, event, running) combination is defined and only a
    // break pauses, only a recovery resumes.
    bool sound = true;
    for (int paused = 0; paused < 2; paused++) {
        for (int e = 0; e < MC_POLICY_EVENT__MAX; e++) {
            for (int running = 0; running < 2; running++) {
                p = mc_pause_policy_new(1);
                if (paused) {
                    mc_pause_policy_on(p, MC_POLICY_CHANNEL_BROKEN, 1);
                }
                McPolicyAction a = mc_pause_policy_on(p, McPolicyEvent(e), running);
                if (a == MC_POLICY_PAUSE_GUEST) {
                    sound = sound && e == MC_POLICY_CHANNEL_BROKEN && running;
                }
                if (a == MC_POLICY_RESUME_GUEST) {
                    sound = sound && e == MC_POLICY_RECOVERED && paused && !running;
                }
                mc_pause_policy_free(p);
            }
        }
    }
    check(sound, "policy: only a break pauses, only a recovery of our pause resumes");
}

} // namespace

int main()
{
    test_off();
    test_huge_timeout();
    test_source();
    test_destination();
    for (uint64_t T : {1000, 3000}) {
        for (uint64_t cut : {0, 1, 777, 10000}) {
            test_partition(T, cut);
        }
    }
    test_slow_link();
    test_policy();
    return tap::finish();
}
