// Failure detector and pause policy of a post-copy migration.
//
// SPDX-License-Identifier: GPL-2.0-or-later

#include "migration-control.h"

#include <algorithm>
#include <array>
#include <new>

struct McDetector {
    McRole role;
    uint64_t timeout;       // T, 0 = off
    uint64_t last_rx;       // last time something arrived from the peer
    uint64_t last_tx;       // last time something was sent to the peer
    bool armed;             // the destination saw a heartbeat
    bool broken;
    bool have_progress;     // the transport reported at least once
    uint64_t progress;      // its last report (bytes acked / received)
    uint64_t window;        // largest receive window the peer advertised
    // Source: the unanswered heartbeats, oldest first (a ring; an answer
    // pops the oldest).  A slot is taken when the heartbeat is sent
    // (mc_detector_sent()) and gets its position in the byte stream once
    // written (mc_detector_heartbeat_position()): its answer may come
    // first.  kUnknown: not known yet, i.e. still being written.
    std::array<uint64_t, 64> hb;
    size_t hb_head, hb_count;
    uint64_t hb_sent;       // heartbeats sent, the newest one's number
    uint64_t hb_newest;     // number of the newest slot's heartbeat
};

namespace {
constexpr uint64_t kUnknown = UINT64_MAX;
}

namespace {

uint64_t heartbeat_interval(const McDetector *d)
{
    return std::max<uint64_t>(d->timeout / 4, 1);
}

// a + b, saturating (a deadline for the next poll).
uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

// now >= since + span, without overflow (since <= now normally; a clock
// that went back is not past anything).
bool elapsed(uint64_t now, uint64_t since, uint64_t span)
{
    return now >= since && now - since >= span;
}

} // namespace

extern "C" {

McDetector *mc_detector_new(McRole role, uint64_t timeout_ms, uint64_t now_ms)
{
    if (role != MC_ROLE_SOURCE && role != MC_ROLE_DESTINATION) {
        return nullptr;
    }
    // The source always expects answers to its heartbeats; the destination
    // waits for a first heartbeat to know that the source sends them.
    return new (std::nothrow)
        McDetector{role, timeout_ms, now_ms, now_ms, role == MC_ROLE_SOURCE,
                   false, false, 0, 0, {}, 0, 0, 0, 0};
}

void mc_detector_free(McDetector *d)
{
    delete d;
}

void mc_detector_received(McDetector *d, uint64_t now_ms, int heartbeat)
{
    d->last_rx = std::max(d->last_rx, now_ms);
    if (heartbeat) {
        d->armed = true;
        if (d->role == MC_ROLE_SOURCE && d->hb_count) {
            // The answer to the oldest heartbeat on the way
            d->hb_head = (d->hb_head + 1) % d->hb.size();
            d->hb_count--;
            if (!d->hb_count) {
                d->hb_newest = 0;   // its position, when it comes, is moot
            }
        }
    }
}

void mc_detector_sent(McDetector *d, uint64_t now_ms)
{
    d->last_tx = std::max(d->last_tx, now_ms);
    if (d->role == MC_ROLE_SOURCE) {
        d->hb_sent++;
        if (d->hb_count < d->hb.size()) {
            d->hb[(d->hb_head + d->hb_count) % d->hb.size()] = kUnknown;
            d->hb_count++;
            d->hb_newest = d->hb_sent;
        }
        // Full: 64 heartbeats unanswered; the oldest is what counts anyway
    }
}

void mc_detector_reset(McDetector *d, uint64_t now_ms)
{
    d->last_rx = d->last_tx = now_ms;
    d->broken = false;
    d->armed = d->role == MC_ROLE_SOURCE;
    d->have_progress = false;
    d->progress = d->window = 0;
    d->hb_head = d->hb_count = 0;
    d->hb_sent = d->hb_newest = 0;
}

void mc_detector_restart(McDetector *d, uint64_t now_ms)
{
    // Same connection: what is on the way stays on the way
    d->last_rx = d->last_tx = now_ms;
    d->broken = false;
}

void mc_detector_transport(McDetector *d, uint64_t now_ms, uint64_t progress,
                           uint64_t window, int receiver_limited)
{
    bool moved = d->have_progress && progress > d->progress;

    d->have_progress = true;
    d->progress = progress;
    d->window = std::max(d->window, window);
    if (!moved || d->broken) {
        // (A count that went back is another connection: a new baseline)
        return;
    }
    if (d->role == MC_ROLE_DESTINATION) {
        d->last_rx = std::max(d->last_rx, now_ms);
        return;
    }
    if (!d->hb_count) {
        return;     // nothing unanswered: the answers speak for themselves
    }
    uint64_t oldest = d->hb[d->hb_head];   // kUnknown: being written
    // Still on the link, or (when the peer's reading paces the link) still
    // in the peer's receive buffer, behind data its QEMU is reading
    if (progress < oldest ||
        (receiver_limited && progress < add_sat(oldest, d->window))) {
        d->last_rx = std::max(d->last_rx, now_ms);
    }
}

void mc_detector_heartbeat_position(McDetector *d, uint64_t position)
{
    // The newest heartbeat, if its slot is still there (not yet answered)
    if (d->hb_count && d->hb_newest == d->hb_sent) {
        size_t last = (d->hb_head + d->hb_count - 1) % d->hb.size();

        if (d->hb[last] == kUnknown) {
            d->hb[last] = position;
        }
    }
}

int mc_detector_heartbeat_due(const McDetector *d, uint64_t now_ms)
{
    return d->role == MC_ROLE_SOURCE && d->timeout && !d->broken &&
           elapsed(now_ms, d->last_tx, heartbeat_interval(d));
}

uint64_t mc_detector_poll_period(const McDetector *d)
{
    // T/10, between 10 and 50 ms: a partition is seen within T + 100 ms
    return std::clamp<uint64_t>(d->timeout / 10, 10, 50);
}

McDetectorVerdict mc_detector_poll(McDetector *d, uint64_t now_ms, uint64_t *next_ms)
{
    uint64_t next = UINT64_MAX;
    McDetectorVerdict v = MC_DETECTOR_QUIET;

    if (d->timeout == 0) {
        // Off: never broken, never a heartbeat.
    } else if (d->broken) {
        v = MC_DETECTOR_BROKEN;
    } else if (d->armed && elapsed(now_ms, d->last_rx, d->timeout)) {
        d->broken = true;
        v = MC_DETECTOR_BROKEN;
    } else {
        if (d->armed) {
            next = add_sat(d->last_rx, d->timeout);
        }
        if (d->role == MC_ROLE_SOURCE) {
            if (elapsed(now_ms, d->last_tx, heartbeat_interval(d))) {
                v = MC_DETECTOR_SEND_HEARTBEAT;
                next = std::min(next, add_sat(now_ms, heartbeat_interval(d)));
            } else {
                next = std::min(next, add_sat(d->last_tx, heartbeat_interval(d)));
            }
        }
    }
    if (next_ms) {
        *next_ms = next;
    }
    return v;
}

const char *mc_detector_verdict_name(McDetectorVerdict v)
{
    switch (v) {
    case MC_DETECTOR_QUIET:
        return "quiet";
    case MC_DETECTOR_SEND_HEARTBEAT:
        return "send-heartbeat";
    case MC_DETECTOR_BROKEN:
        return "broken";
    }
    return "invalid-verdict";
}

} // extern "C"

// The pause policy as a table: (paused by the policy?, event, guest
// running?) -> (paused by the policy?, action).
struct McPausePolicy {
    bool enabled;
    bool paused;   // the policy paused the guest and still owns the pause
};

namespace {

struct PolicyRow {
    bool paused;
    McPolicyEvent event;
    bool guest_running;
    bool next_paused;
    McPolicyAction action;
};

// clang-format off
constexpr PolicyRow kPolicy[] = {
    // The channel breaks while the guest runs: pause it.
    {false, MC_POLICY_CHANNEL_BROKEN, true,  true,  MC_POLICY_PAUSE_GUEST},
    // ...while it is stopped (by the user, or -S): not ours to resume.
    {false, MC_POLICY_CHANNEL_BROKEN, false, false, MC_POLICY_NONE},
    {true,  MC_POLICY_CHANNEL_BROKEN, false, true,  MC_POLICY_NONE},
    {true,  MC_POLICY_CHANNEL_BROKEN, true,  true,  MC_POLICY_PAUSE_GUEST},
    // Recovery resumes only what the policy paused.
    {true,  MC_POLICY_RECOVERED,      false, false, MC_POLICY_RESUME_GUEST},
    {true,  MC_POLICY_RECOVERED,      true,  false, MC_POLICY_NONE},
    {false, MC_POLICY_RECOVERED,      false, false, MC_POLICY_NONE},
    {false, MC_POLICY_RECOVERED,      true,  false, MC_POLICY_NONE},
    // The user takes over: 'stop' keeps it stopped, 'cont' runs it.
    {true,  MC_POLICY_USER_STOP,      false, false, MC_POLICY_NONE},
    {true,  MC_POLICY_USER_STOP,      true,  false, MC_POLICY_NONE},
    {true,  MC_POLICY_USER_CONT,      false, false, MC_POLICY_NONE},
    {true,  MC_POLICY_USER_CONT,      true,  false, MC_POLICY_NONE},
    {false, MC_POLICY_USER_STOP,      false, false, MC_POLICY_NONE},
    {false, MC_POLICY_USER_STOP,      true,  false, MC_POLICY_NONE},
    {false, MC_POLICY_USER_CONT,      false, false, MC_POLICY_NONE},
    {false, MC_POLICY_USER_CONT,      true,  false, MC_POLICY_NONE},
};
// clang-format on

} // namespace

extern "C" {

McPausePolicy *mc_pause_policy_new(int enabled)
{
    return new (std::nothrow) McPausePolicy{enabled != 0, false};
}

void mc_pause_policy_free(McPausePolicy *p)
{
    delete p;
}

McPolicyAction mc_pause_policy_on(McPausePolicy *p, McPolicyEvent event,
                                  int guest_running)
{
    if (!p->enabled) {
        return MC_POLICY_NONE;
    }
    for (const PolicyRow &r : kPolicy) {
        if (r.paused == p->paused && r.event == event &&
            r.guest_running == (guest_running != 0)) {
            p->paused = r.next_paused;
            return r.action;
        }
    }
    return MC_POLICY_NONE;   // unknown event: change nothing
}

int mc_pause_policy_paused(const McPausePolicy *p)
{
    return p->paused;
}

const char *mc_policy_event_name(McPolicyEvent e)
{
    switch (e) {
    case MC_POLICY_CHANNEL_BROKEN:
        return "ChannelBroken";
    case MC_POLICY_RECOVERED:
        return "Recovered";
    case MC_POLICY_USER_STOP:
        return "UserStop";
    case MC_POLICY_USER_CONT:
        return "UserCont";
    default:
        break;
    }
    return "InvalidPolicyEvent";
}

} // extern "C"
