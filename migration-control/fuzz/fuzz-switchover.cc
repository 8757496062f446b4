// libFuzzer target: the switchover state machine driven by arbitrary
// (role, flags, event sequence) scenarios.
//
// Input: role byte, flags (be32), then per step an event byte and the size
// of the caller's error buffer.  Every step checks that fire() and check()
// agree with the pure look-up, that check() never changes the state, that
// a rejection keeps the state and writes a bounded
// message, and the safety rules of the table (tests/test-switchover.cc,
// docs/devel/migration/postcopy-switchover.rst) along the whole path:
//   - only StartGranted yields START_VCPUS, and only on the destination;
//   - nothing resumes the source once the destination may run the guest
//     (postcopy-active without the handshake, postcopy-committed with it);
//   - a started destination is never told to keep its guest stopped;
//   - completed, failed and cancelled are final;
//   - no handshake state or action without MC_FLAG_START_HANDSHAKE, no
//     postcopy-device without a return path;
//   - without the handshake the source never gives up on a silent
//     destination (AckTimeout is refused).
// Role, state and event values cover the enums' whole value range (the
// smallest bit-field holding their enumerators), including values past
// __MAX that the library must reject.  Values beyond that range are
// undefined in C++ (see docs/reliability.md, Fuzzing).
//
// SPDX-License-Identifier: GPL-2.0-or-later

#include "migration-control.h"
#include "input.h"

#include <cstring>
#include <vector>

namespace {

// Values that fit the enums' value ranges (0..3, 0..15, 0..15).
McRole role_of(uint8_t b) { return McRole(b & 3); }
McState state_of(uint8_t b) { return McState(b & 15); }
McEvent event_of(uint8_t b) { return McEvent(b & 15); }

bool final_state(McState s)
{
    return s == MC_STATE_COMPLETED || s == MC_STATE_FAILED || s == MC_STATE_CANCELLED;
}

bool handshake_state(McState s)
{
    return s == MC_STATE_POSTCOPY_COMMITTED || s == MC_STATE_START_REQUESTED ||
           s == MC_STATE_STARTED || s == MC_STATE_START_REQUESTED_PAUSED ||
           s == MC_STATE_CANCELLED;
}

const uint32_t kHandshakeActions = MC_ACTION_SEND_START_REQUEST |
                                   MC_ACTION_SEND_START_GRANT |
                                   MC_ACTION_SEND_START_DENY | MC_ACTION_START_VCPUS;
const uint32_t kSourceActions = MC_ACTION_RESUME_SOURCE | MC_ACTION_SEND_START_GRANT |
                                MC_ACTION_SEND_START_DENY;
const uint32_t kDestinationActions = MC_ACTION_KEEP_STOPPED |
                                     MC_ACTION_SEND_START_REQUEST |
                                     MC_ACTION_START_VCPUS;

// A message of at most @errlen bytes (heap buffer of exactly that size,
// so that ASan sees any overflow), NUL-terminated, not empty if it fits.
void check_message(const std::vector<char> &err)
{
    if (err.empty()) {
        return;
    }
    const size_t n = strnlen(err.data(), err.size());
    FUZZ_ASSERT(n < err.size());
    FUZZ_ASSERT(err.size() == 1 || n > 0);
}

void check_transition(McRole role, uint32_t flags, McEvent ev, const McTransition &t)
{
    const bool rp = flags & MC_FLAG_RETURN_PATH;
    const bool hs = flags & MC_FLAG_START_HANDSHAKE;
    FUZZ_ASSERT(t.to >= 0 && t.to < MC_STATE__MAX);
    FUZZ_ASSERT((t.actions & ~uint32_t(0x3f)) == 0);
    FUZZ_ASSERT(!(t.actions & (role == MC_ROLE_SOURCE ? kDestinationActions
                                                      : kSourceActions)));
    if (t.actions & MC_ACTION_START_VCPUS) {
        FUZZ_ASSERT(ev == MC_EVENT_START_GRANTED);
    }
    if (t.actions & MC_ACTION_RESUME_SOURCE) {
        FUZZ_ASSERT(t.to == MC_STATE_FAILED || t.to == MC_STATE_CANCELLED);
    }
    if (t.actions & MC_ACTION_SEND_START_GRANT) {
        FUZZ_ASSERT(t.to == MC_STATE_POSTCOPY_COMMITTED);
    }
    if (!hs) {
        FUZZ_ASSERT(!(t.actions & kHandshakeActions));
        // A silent destination may still start the guest: never give up
        // on it without the handshake.
        FUZZ_ASSERT(ev != MC_EVENT_ACK_TIMEOUT);
        // Without it, only a cancel before the package left (as in
        // QEMU 10.0) ends cancelled.
        FUZZ_ASSERT(!handshake_state(t.to) ||
                    (t.to == MC_STATE_CANCELLED && role == MC_ROLE_SOURCE &&
                     t.from == MC_STATE_DEVICE &&
                     ev == MC_EVENT_CANCEL_REQUESTED));
    }
    if (!rp) {
        FUZZ_ASSERT(t.to != MC_STATE_POSTCOPY_DEVICE);
    }
}

void probe_lookup(fuzz::Input &in, McRole role, uint32_t flags)
{
    const McState s = state_of(in.u8());
    const McEvent e = event_of(in.u8());
    McTransition t{};
    char err[64];
    const int ret = mc_switchover_lookup(role, flags, s, e, &t, err, sizeof(err));
    FUZZ_ASSERT(ret == 0 || ret == -1);
    if (role >= MC_ROLE__MAX || s >= MC_STATE__MAX || e >= MC_EVENT__MAX) {
        FUZZ_ASSERT(ret == -1 && std::strstr(err, "invalid"));
    }
    if (ret == 0) {
        FUZZ_ASSERT(t.from == s);
        check_transition(role, flags, e, t);
        if (final_state(s)) {
            FUZZ_ASSERT(false && "an event accepted in a final state");
        }
    }
    FUZZ_ASSERT(mc_state_name(s) && mc_event_name(e) && mc_role_name(role));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz::Input in(data, size);
    const McRole role = role_of(in.u8());
    const uint32_t flags = in.u32();
    const bool rp = flags & MC_FLAG_RETURN_PATH;
    const bool hs = flags & MC_FLAG_START_HANDSHAKE;

    FUZZ_ASSERT(mc_abi_version() == MC_ABI_VERSION);
    {
        char err[32];
        FUZZ_ASSERT(mc_switchover_fire(nullptr, event_of(uint8_t(flags)), nullptr, err,
                                       sizeof(err)) == -1 &&
                    err[0]);
    }

    McSwitchover *sw = mc_switchover_new(role, flags);
    const bool valid = role < MC_ROLE__MAX && (!hs || rp);
    FUZZ_ASSERT(valid == (sw != nullptr));
    if (!sw) {
        // Nothing to drive: the pure look-up must still be safe.
        while (!in.empty()) {
            probe_lookup(in, role, flags);
        }
        return 0;
    }
    FUZZ_ASSERT(mc_switchover_state(sw) == MC_STATE_ACTIVE);
    FUZZ_ASSERT(mc_switchover_role(sw) == role);

    bool superseded = false;    // source: the destination may run the guest
    bool started = false;       // destination: vCPUs started
    int steps = 0;
    while (!in.empty() && steps++ < 256) {
        const uint8_t b = in.u8();
        if (b & 0x80) {
            // Every so often, probe an arbitrary (state, event) pair.
            probe_lookup(in, role, flags);
            continue;
        }
        const McEvent ev = event_of(b);
        std::vector<char> err(in.u8() % 80);
        const McState before = mc_switchover_state(sw);

        McTransition look{}, t{};
        std::vector<char> lerr(128);
        const int lret = mc_switchover_lookup(role, flags, before, ev, &look,
                                              lerr.data(), lerr.size());
        McTransition chk{};
        FUZZ_ASSERT(mc_switchover_check(sw, ev, &chk, nullptr, 0) == lret);
        FUZZ_ASSERT(mc_switchover_state(sw) == before);
        FUZZ_ASSERT(lret != 0 || (chk.to == look.to && chk.actions == look.actions));
        const int ret = mc_switchover_fire(sw, ev, &t, err.empty() ? nullptr : err.data(),
                                           err.size());
        FUZZ_ASSERT(ret == lret);
        if (ret != 0) {
            FUZZ_ASSERT(ret == -1);
            FUZZ_ASSERT(mc_switchover_state(sw) == before);
            check_message(err);
            if (!err.empty()) {
                FUZZ_ASSERT(std::strncmp(err.data(), lerr.data(), err.size() - 1) == 0);
            }
            continue;
        }
        FUZZ_ASSERT(!final_state(before));
        FUZZ_ASSERT(t.from == before && t.to == look.to && t.actions == look.actions);
        FUZZ_ASSERT(mc_switchover_state(sw) == t.to);
        check_transition(role, flags, ev, t);

        if (role == MC_ROLE_SOURCE) {
            if (superseded) {
                FUZZ_ASSERT(!(t.actions & MC_ACTION_RESUME_SOURCE));
            }
            // Without the handshake the destination runs once the package
            // is acknowledged (or sent, without a return path); with it,
            // once the source granted the start.
            if (hs ? t.to == MC_STATE_POSTCOPY_COMMITTED
                   : t.to == MC_STATE_POSTCOPY_ACTIVE) {
                superseded = true;
            }
        } else {
            if (started) {
                FUZZ_ASSERT(!(t.actions & MC_ACTION_KEEP_STOPPED));
            }
            if (t.actions & MC_ACTION_START_VCPUS) {
                started = true;
            }
        }
    }
    // Fire with NULL outputs must behave too.
    mc_switchover_fire(sw, MC_EVENT_CHANNEL_BROKEN, nullptr, nullptr, 0);
    mc_switchover_free(sw);
    return 0;
}
