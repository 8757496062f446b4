// libFuzzer target: the failure detector and the pause policy driven by
// arbitrary clock and event sequences, against a reference model.
//
// Detector input: role byte, timeout T, start time, then operations
// (advance the clock, something received (heartbeat or not, possibly
// stamped in the past: a thread reporting late), something sent, reset,
// poll).  Checked at every poll, with exact (128-bit) arithmetic:
//   - T = 0: always quiet, next poll "never";
//   - never BROKEN before T of silence since the latest receipt (or
//     reset), and always BROKEN once armed and silent for T;
//   - BROKEN stays BROKEN until reset; late receipts never move the
//     last-receipt time backwards;
//   - the destination is never armed before a heartbeat and never sends
//     heartbeats; the source asks for one exactly when T/4 passed since it
//     last sent;
//   - QUIET names a next poll time after now and no later than the next
//     deadline (heartbeat due, or break).
// Policy input (when the first byte is 0xfe): enabled byte, then
// (event, guest running) bytes, checked against the rules of
// tests/test-detector.cc.
//
// SPDX-License-Identifier: GPL-2.0-or-later

#include "migration-control.h"
#include "input.h"

#include <algorithm>
#include <cstring>

namespace {

using u128 = unsigned __int128;

// Clock values and timeouts span all 64 bits: mc_detector_poll() used to
// wrap last_rx + T for a huge T and declare the channel broken at once
// (docs/reliability.md, Fuzzing); it saturates now.
const uint64_t kMaxValue = UINT64_MAX;

// A timestamp or duration: mostly small numbers so that scenarios are
// dense, sometimes anything up to kMaxValue.
uint64_t value(fuzz::Input &in)
{
    switch (in.u8() & 3) {
    case 0:
        return in.u8();
    case 1:
        return uint64_t(in.u8()) << 8 | in.u8();
    case 2:
        return in.u32();
    default:
        return in.u64() & kMaxValue;
    }
}

struct Model {
    McRole role;
    uint64_t T;
    uint64_t last_rx, last_tx;
    bool armed, broken;

    void reset(uint64_t t)
    {
        last_rx = last_tx = t;
        armed = role == MC_ROLE_SOURCE;
        broken = false;
    }
    uint64_t interval() const { return std::max<uint64_t>(T / 4, 1); }
};

void fuzz_detector(fuzz::Input &in)
{
    const McRole role = McRole(in.u8() & 3);
    const uint64_t T = value(in);
    uint64_t now = value(in);
    McDetector *d = mc_detector_new(role, T, now);
    if (role != MC_ROLE_SOURCE && role != MC_ROLE_DESTINATION) {
        FUZZ_ASSERT(d == nullptr);
        return;
    }
    FUZZ_ASSERT(d != nullptr);
    Model m{role, T, 0, 0, false, false};
    m.reset(now);

    for (int steps = 0; !in.empty() && steps < 512; steps++) {
        const uint8_t op = in.u8();
        switch (op % 6) {
        case 0: { // the clock advances (never backwards: a monotonic clock)
            const uint64_t dt = value(in);
            now = dt > kMaxValue - now ? kMaxValue : now + dt;
            break;
        }
        case 1: { // something arrived, perhaps stamped a little earlier
            const uint64_t late = (op & 0x40) ? std::min<uint64_t>(value(in), now) : 0;
            const bool hb = op & 0x80;
            mc_detector_received(d, now - late, hb);
            m.last_rx = std::max(m.last_rx, now - late);
            m.armed = m.armed || hb;
            break;
        }
        case 2: {
            const uint64_t late = (op & 0x40) ? std::min<uint64_t>(value(in), now) : 0;
            mc_detector_sent(d, now - late);
            m.last_tx = std::max(m.last_tx, now - late);
            break;
        }
        case 3:
            mc_detector_reset(d, now);
            m.reset(now);
            break;
        default: {
            uint64_t next = 0x5a5a5a5a5a5a5a5aull;
            const McDetectorVerdict v =
                mc_detector_poll(d, now, (op & 0x80) ? nullptr : &next);
            FUZZ_ASSERT(v == MC_DETECTOR_QUIET || v == MC_DETECTOR_SEND_HEARTBEAT ||
                        v == MC_DETECTOR_BROKEN);
            FUZZ_ASSERT(std::strcmp(mc_detector_verdict_name(v), "invalid-verdict") != 0);
            if (T == 0) {
                FUZZ_ASSERT(v == MC_DETECTOR_QUIET);
                FUZZ_ASSERT((op & 0x80) || next == UINT64_MAX);
                break;
            }
            const bool silent = m.armed && u128(now) >= u128(m.last_rx) + T;
            if (m.broken) {
                FUZZ_ASSERT(v == MC_DETECTOR_BROKEN);   // sticky until reset
                break;
            }
            // Never broken before T of silence, always broken after it.
            FUZZ_ASSERT((v == MC_DETECTOR_BROKEN) == silent);
            if (v == MC_DETECTOR_BROKEN) {
                m.broken = true;
                break;
            }
            const bool due = role == MC_ROLE_SOURCE &&
                             u128(now) >= u128(m.last_tx) + m.interval();
            FUZZ_ASSERT((v == MC_DETECTOR_SEND_HEARTBEAT) == due);
            if (op & 0x80) {
                break;
            }
            // The next poll: not in the past, never after a deadline.
            // (UINT64_MAX: never; deadlines saturate at the end of time)
            if (v == MC_DETECTOR_QUIET) {
                FUZZ_ASSERT(next > now || next == UINT64_MAX);
            }
            if (m.armed) {
                FUZZ_ASSERT(u128(next) <= u128(m.last_rx) + T);
            }
            if (role == MC_ROLE_SOURCE) {
                FUZZ_ASSERT(u128(next) <= (due ? u128(now) : u128(m.last_tx)) + m.interval());
            } else if (!m.armed) {
                FUZZ_ASSERT(next == UINT64_MAX);
            }
            break;
        }
        }
    }
    mc_detector_free(d);
}

void fuzz_policy(fuzz::Input &in)
{
    const bool enabled = in.u8() & 1;
    McPausePolicy *p = mc_pause_policy_new(enabled);
    FUZZ_ASSERT(p != nullptr);
    bool paused = false;    // model: the policy owns a pause
    for (int steps = 0; !in.empty() && steps < 512; steps++) {
        const uint8_t b = in.u8();
        // Any int is a valid McPolicyEvent value (the enum's sentinels);
        // most bytes pick a real event, the others an arbitrary value.
        const McPolicyEvent e = (b & 0x40) ? McPolicyEvent(int32_t(in.u32()))
                                           : McPolicyEvent(b & 3);
        const bool running = b & 0x80;
        const McPolicyAction a = mc_pause_policy_on(p, e, running);
        FUZZ_ASSERT(a == MC_POLICY_NONE || a == MC_POLICY_PAUSE_GUEST ||
                    a == MC_POLICY_RESUME_GUEST);
        FUZZ_ASSERT(mc_policy_event_name(e) != nullptr);
        if (!enabled || e < 0 || e >= MC_POLICY_EVENT__MAX) {
            FUZZ_ASSERT(a == MC_POLICY_NONE);
        } else if (e == MC_POLICY_CHANNEL_BROKEN) {
            // Pause a running guest; a stopped one is not ours.
            FUZZ_ASSERT(a == (running ? MC_POLICY_PAUSE_GUEST : MC_POLICY_NONE));
            paused = running || paused;
        } else if (e == MC_POLICY_RECOVERED) {
            // Resume only our own pause, and only a stopped guest.
            FUZZ_ASSERT(a == (paused && !running ? MC_POLICY_RESUME_GUEST
                                                 : MC_POLICY_NONE));
            paused = false;
        } else {
            // The user took over.
            FUZZ_ASSERT(a == MC_POLICY_NONE);
            paused = false;
        }
        FUZZ_ASSERT(bool(mc_pause_policy_paused(p)) == paused);
    }
    mc_pause_policy_free(p);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size && data[0] == 0xfe) {
        fuzz::Input in(data + 1, size - 1);
        fuzz_policy(in);
        return 0;
    }
    fuzz::Input in(data, size);
    fuzz_detector(in);
    return 0;
}
