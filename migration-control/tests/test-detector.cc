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
// destination that answers each heartbeat once its last byte arrived.
// Heartbeats go out every T/4 into the back of the queue.  The source's
// kernel sees the acknowledged byte count advance as the link drains;
// the destination's sees the received count advance.  Returns the time
// of the first BROKEN verdict on @role's side, or 0 if none within
// @duration.  @cut: from then on the link carries nothing (silent
// partition); @frozen: from then on the destination's QEMU answers
// nothing, while its kernel still takes @rcvbuf bytes.  @transport:
// report the kernel's counters to the detector (the fix of defect 5).
struct Link {
    uint64_t T = 1000;
    uint64_t rate = 2000;        // 2 MB/s
    uint64_t queue = 4 << 20;    // bytes ahead of each new heartbeat
    uint64_t duration = 60000;
    uint64_t cut = UINT64_MAX;
    uint64_t frozen = UINT64_MAX;
    uint64_t rcvbuf = 6 << 20;
    bool transport = true;
};

uint64_t simulate(const Link &l, McRole role)
{
    McDetector *d = mc_detector_new(role, l.T, 0);
    uint64_t written = l.queue;   // byte position the source wrote up to
    uint64_t delivered = 0;       // bytes that crossed the link
    uint64_t consumed = 0;        // bytes the destination QEMU read
    std::vector<uint64_t> hbs;    // positions of heartbeats in flight
    uint64_t broken_at = 0;

    if (role == MC_ROLE_DESTINATION) {
        mc_detector_received(d, 0, 1);   // armed by the package's heartbeat
    }
    for (uint64_t t = 1; t <= l.duration && !broken_at; t++) {
        // The link drains; a frozen destination's kernel stops taking
        // data once its receive buffer is full.
        uint64_t room = t >= l.frozen ? consumed + l.rcvbuf - delivered : UINT64_MAX;
        uint64_t step = t >= l.cut ? 0 : std::min<uint64_t>(l.rate, room);
        delivered = std::min(written, delivered + step);
        if (t < l.frozen) {
            consumed = delivered;
        }
        // The source keeps its queue full (it always has pages)
        written = std::max(written, delivered + l.queue);
        // Heartbeats whose last byte the destination QEMU read: answered
        // (the answer crosses the uncongested return path at once), and
        // seen by the destination itself
        while (!hbs.empty() && hbs.front() <= consumed) {
            hbs.erase(hbs.begin());
            if (t < l.cut) {
                mc_detector_received(d, t, 1);
            }
        }
        if (role == MC_ROLE_SOURCE &&
            mc_detector_poll(d, t, nullptr) == MC_DETECTOR_SEND_HEARTBEAT) {
            mc_detector_sent(d, t);
            written += 64;
            hbs.push_back(written);
            if (l.transport) {
                mc_detector_heartbeat_position(d, written);
            }
        } else if (role == MC_ROLE_DESTINATION && t % (l.T / 4) == 0) {
            written += 64;       // the source's heartbeats, every T/4
            hbs.push_back(written);
        }
        if (t % (l.T / 10) == 0) {   // the main loop's poll
            if (l.transport) {
                mc_detector_transport(d, t, role == MC_ROLE_SOURCE ? delivered : consumed);
            }
            if (mc_detector_poll(d, t, nullptr) == MC_DETECTOR_BROKEN) {
                broken_at = t;
            }
        }
    }
    mc_detector_free(d);
    return broken_at;
}

void test_slow_link()
{
    for (McRole role : {MC_ROLE_SOURCE, MC_ROLE_DESTINATION}) {
        std::string side = mc_role_name(role);
        Link l;
        uint64_t b = simulate(l, role);
        check(b == 0, side + ": 2 MB/s with 4 MB queued ahead of every heartbeat: "
                      "healthy for 60 s (broken at " + std::to_string(b) + " ms)");
        l.transport = false;
        b = simulate(l, role);
        check(b != 0 && b < 3000, side + ": the same link counted by heartbeats only "
                                  "is declared broken (the defect; at " +
                                  std::to_string(b) + " ms)");
        for (uint64_t cut : {5000, 12345, 30001}) {
            Link p;
            p.cut = cut;
            b = simulate(p, role);
            check(b > cut && b <= cut + p.T + p.T / 10,
                  side + ": slow link, partition at " + std::to_string(cut) +
                      " ms detected within T + T/10 (at " + std::to_string(b) + " ms)");
        }
    }
    // A frozen destination QEMU whose kernel still takes data: the
    // acknowledgements after the heartbeat entered its receive buffer do
    // not count.
    for (uint64_t rcvbuf : {uint64_t(0), uint64_t(64) << 10, uint64_t(6) << 20}) {
        for (uint64_t queue : {uint64_t(0), uint64_t(4) << 20}) {
            Link f;
            f.frozen = 10000;
            f.rcvbuf = rcvbuf;
            f.queue = queue;
            uint64_t b = simulate(f, MC_ROLE_SOURCE);
            uint64_t bound = f.frozen + f.T + f.T / 10 + (rcvbuf + queue) / f.rate;
            check(b > f.frozen && b <= bound,
                  "source: destination frozen at 10 s (receive buffer " +
                      std::to_string(rcvbuf >> 10) + " KiB, queue " +
                      std::to_string(queue >> 10) + " KiB) detected by " +
                      std::to_string(bound) + " ms (at " + std::to_string(b) + " ms)");
        }
    }
    // A new connection starts a new byte count: no sign of life from it.
    McDetector *d = mc_detector_new(MC_ROLE_DESTINATION, 1000, 0);
    mc_detector_received(d, 0, 1);
    mc_detector_transport(d, 100, 5000000);
    mc_detector_transport(d, 900, 10);
    check(mc_detector_poll(d, 1000, nullptr) == MC_DETECTOR_BROKEN,
          "destination: a byte count that went back is no sign of life");
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
