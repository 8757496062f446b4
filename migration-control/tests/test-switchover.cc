// Unit tests of the switchover state machine: every (role, return-path,
// state, event) combination is checked against an expectation written
// here independently of the library's table.  Output is TAP.
//
// SPDX-License-Identifier: GPL-2.0-or-later

#include "migration-control.h"
#include "tap.h"

#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <tuple>
#include <vector>

namespace {

using tap::check;

struct Expect {
    McState to;
    uint32_t actions;
};

struct Flags {
    bool rp;   // return path
    bool hs;   // start handshake
    bool gr;   // source: the guest was running when post-copy started
    uint32_t bits() const
    {
        return (rp ? MC_FLAG_RETURN_PATH : 0) | (hs ? MC_FLAG_START_HANDSHAKE : 0) |
               (gr ? MC_FLAG_GUEST_RUNNING : 0);
    }
    std::string name() const
    {
        return std::string(!rp ? "no-return-path" : hs ? "handshake" : "return-path") +
               (gr ? "+guest-running" : "");
    }
};

const Flags kFlagSets[] = {{false, false, false}, {true, false, false}, {true, true, false},
                           {false, false, true},  {true, false, true},  {true, true, true}};

using Key = std::tuple<McRole, uint32_t, McState, McEvent>;

// The protocol as the design document (docs/devel/migration/
// postcopy-switchover.rst) and the spin model state it.  Anything absent
// must be rejected.
std::map<Key, Expect> expected()
{
    std::map<Key, Expect> m;
    const uint32_t resume = MC_ACTION_RESUME_SOURCE;
    const uint32_t stopped = MC_ACTION_KEEP_STOPPED;
    for (const Flags &f : kFlagSets) {
        const bool rp = f.rp, hs = f.hs;
        auto src = [&](McState s, McEvent e, McState to, uint32_t a) {
            m[{MC_ROLE_SOURCE, f.bits(), s, e}] = {to, a};
        };
        auto dst = [&](McState s, McEvent e, McState to, uint32_t a) {
            m[{MC_ROLE_DESTINATION, f.bits(), s, e}] = {to, a};
        };
        // Source, switchover core
        src(MC_STATE_ACTIVE, MC_EVENT_SWITCHOVER_STARTED, MC_STATE_DEVICE, 0);
        src(MC_STATE_ACTIVE, MC_EVENT_SWITCHOVER_FAILED, MC_STATE_FAILED, resume);
        src(MC_STATE_DEVICE, MC_EVENT_COMPLETED, MC_STATE_COMPLETED, 0);
        src(MC_STATE_DEVICE, MC_EVENT_SWITCHOVER_FAILED, MC_STATE_FAILED, resume);
        src(MC_STATE_DEVICE, MC_EVENT_PACKAGE_SENT,
            rp ? MC_STATE_POSTCOPY_DEVICE : MC_STATE_POSTCOPY_ACTIVE, 0);
        src(MC_STATE_DEVICE, MC_EVENT_CHANNEL_BROKEN, MC_STATE_FAILED, resume);
        src(MC_STATE_DEVICE, MC_EVENT_CANCEL_REQUESTED, MC_STATE_CANCELLED, resume);
        src(MC_STATE_POSTCOPY_DEVICE, MC_EVENT_PACKAGE_LOADED,
            MC_STATE_POSTCOPY_ACTIVE, 0);
        // A reported load failure resumes in every mode; a bare break only
        // with the handshake (without it the destination may have run).
        src(MC_STATE_POSTCOPY_DEVICE, MC_EVENT_LOAD_FAILED, MC_STATE_FAILED, resume);
        if (hs) {
            src(MC_STATE_POSTCOPY_DEVICE, MC_EVENT_CHANNEL_BROKEN, MC_STATE_FAILED,
                resume);
        } else if (rp) {
            // Paused before the acknowledgement: recovery, a late failure
            // report, or the operator's cancel
            const McState dp = MC_STATE_POSTCOPY_DEVICE_PAUSED;
            src(MC_STATE_POSTCOPY_DEVICE, MC_EVENT_CHANNEL_BROKEN, dp, 0);
            src(dp, MC_EVENT_CHANNEL_BROKEN, dp, 0);
            src(dp, MC_EVENT_RECOVERED, MC_STATE_POSTCOPY_ACTIVE, 0);
            src(dp, MC_EVENT_LOAD_FAILED, MC_STATE_FAILED, resume);
            src(dp, MC_EVENT_CANCEL_REQUESTED, MC_STATE_CANCELLED, resume);
        }
        src(MC_STATE_POSTCOPY_DEVICE, MC_EVENT_SWITCHOVER_FAILED, MC_STATE_FAILED,
            resume);
        if (!hs) {
            src(MC_STATE_POSTCOPY_ACTIVE, MC_EVENT_CHANNEL_BROKEN,
                MC_STATE_POSTCOPY_PAUSED, 0);
            src(MC_STATE_POSTCOPY_ACTIVE, MC_EVENT_COMPLETED, MC_STATE_COMPLETED, 0);
            src(MC_STATE_POSTCOPY_PAUSED, MC_EVENT_RECOVERED,
                MC_STATE_POSTCOPY_ACTIVE, 0);
        } else {
            // Source, start handshake
            const uint32_t deny = MC_ACTION_SEND_START_DENY;
            const uint32_t grant = MC_ACTION_SEND_START_GRANT;
            src(MC_STATE_POSTCOPY_DEVICE, MC_EVENT_CANCEL_REQUESTED,
                MC_STATE_CANCELLED, resume | deny);
            src(MC_STATE_POSTCOPY_DEVICE, MC_EVENT_START_REQUESTED,
                MC_STATE_FAILED, resume | deny);
            // Giving up on a silent destination is safe only when it
            // cannot start without a grant.
            src(MC_STATE_POSTCOPY_DEVICE, MC_EVENT_ACK_TIMEOUT, MC_STATE_FAILED,
                resume);
            src(MC_STATE_POSTCOPY_ACTIVE, MC_EVENT_CHANNEL_BROKEN, MC_STATE_FAILED,
                resume);
            src(MC_STATE_POSTCOPY_ACTIVE, MC_EVENT_CANCEL_REQUESTED,
                MC_STATE_CANCELLED, resume | deny);
            src(MC_STATE_POSTCOPY_ACTIVE, MC_EVENT_START_REQUESTED,
                MC_STATE_POSTCOPY_COMMITTED, grant);
            src(MC_STATE_POSTCOPY_COMMITTED, MC_EVENT_START_REQUESTED,
                MC_STATE_POSTCOPY_COMMITTED, grant);
            src(MC_STATE_POSTCOPY_COMMITTED, MC_EVENT_CHANNEL_BROKEN,
                MC_STATE_POSTCOPY_PAUSED, 0);
            src(MC_STATE_POSTCOPY_COMMITTED, MC_EVENT_COMPLETED,
                MC_STATE_COMPLETED, 0);
            // Everything sent without a request: a paused guest's source
            // commits, then completes; a running guest's keeps waiting
            // for the request (or a cancel)
            if (!f.gr) {
                src(MC_STATE_POSTCOPY_ACTIVE, MC_EVENT_ALL_SENT,
                    MC_STATE_POSTCOPY_COMMITTED, 0);
            }
            src(MC_STATE_POSTCOPY_PAUSED, MC_EVENT_RECOVERED,
                MC_STATE_POSTCOPY_COMMITTED, 0);
        }

        // A recovery attempt broke: still paused, on both sides
        src(MC_STATE_POSTCOPY_PAUSED, MC_EVENT_CHANNEL_BROKEN,
            MC_STATE_POSTCOPY_PAUSED, 0);
        dst(MC_STATE_POSTCOPY_PAUSED, MC_EVENT_CHANNEL_BROKEN,
            MC_STATE_POSTCOPY_PAUSED, 0);

        // Destination, switchover core
        dst(MC_STATE_ACTIVE, MC_EVENT_LISTEN,
            rp ? MC_STATE_POSTCOPY_DEVICE : MC_STATE_POSTCOPY_ACTIVE, 0);
        dst(MC_STATE_POSTCOPY_DEVICE, MC_EVENT_RUN, MC_STATE_POSTCOPY_ACTIVE, 0);
        if (!rp) {
            // Without a return path LISTEN went straight to postcopy-active.
            dst(MC_STATE_POSTCOPY_ACTIVE, MC_EVENT_RUN, MC_STATE_POSTCOPY_ACTIVE, 0);
        }
        dst(MC_STATE_POSTCOPY_DEVICE, MC_EVENT_LOAD_FAILED, MC_STATE_FAILED, stopped);
        dst(MC_STATE_POSTCOPY_DEVICE, MC_EVENT_CHANNEL_BROKEN, MC_STATE_FAILED,
            stopped);
        if (!hs) {
            dst(MC_STATE_POSTCOPY_ACTIVE, MC_EVENT_LOAD_FAILED, MC_STATE_FAILED, 0);
            dst(MC_STATE_POSTCOPY_ACTIVE, MC_EVENT_CHANNEL_BROKEN,
                MC_STATE_POSTCOPY_PAUSED, 0);
            dst(MC_STATE_POSTCOPY_ACTIVE, MC_EVENT_COMPLETED, MC_STATE_COMPLETED, 0);
            dst(MC_STATE_POSTCOPY_PAUSED, MC_EVENT_RECOVERED,
                MC_STATE_POSTCOPY_ACTIVE, 0);
        } else {
            // Destination, start handshake
            dst(MC_STATE_POSTCOPY_DEVICE, MC_EVENT_START_DENIED, MC_STATE_CANCELLED,
                stopped);
            dst(MC_STATE_POSTCOPY_ACTIVE, MC_EVENT_LOAD_FAILED, MC_STATE_FAILED,
                stopped);
            const McState up = MC_STATE_UNGRANTED_PAUSED;
            dst(MC_STATE_POSTCOPY_ACTIVE, MC_EVENT_CHANNEL_BROKEN, up, stopped);
            dst(up, MC_EVENT_CHANNEL_BROKEN, up, stopped);
            dst(up, MC_EVENT_RECOVERED, MC_STATE_POSTCOPY_ACTIVE, 0);
            dst(up, MC_EVENT_LOAD_FAILED, MC_STATE_FAILED, stopped);
            dst(MC_STATE_POSTCOPY_ACTIVE, MC_EVENT_START_REQUESTED,
                MC_STATE_START_REQUESTED, MC_ACTION_SEND_START_REQUEST);
            dst(MC_STATE_POSTCOPY_ACTIVE, MC_EVENT_START_DENIED, MC_STATE_CANCELLED,
                stopped);
            dst(MC_STATE_POSTCOPY_ACTIVE, MC_EVENT_START_GRANTED, MC_STATE_FAILED,
                stopped);
            dst(MC_STATE_START_REQUESTED, MC_EVENT_START_GRANTED, MC_STATE_STARTED,
                MC_ACTION_START_VCPUS);
            dst(MC_STATE_START_REQUESTED, MC_EVENT_START_DENIED, MC_STATE_CANCELLED,
                stopped);
            dst(MC_STATE_START_REQUESTED, MC_EVENT_LOAD_FAILED, MC_STATE_FAILED,
                stopped);
            dst(MC_STATE_START_REQUESTED, MC_EVENT_CHANNEL_BROKEN,
                MC_STATE_START_REQUESTED_PAUSED, 0);
            dst(MC_STATE_START_REQUESTED_PAUSED, MC_EVENT_RECOVERED,
                MC_STATE_START_REQUESTED, MC_ACTION_SEND_START_REQUEST);
            dst(MC_STATE_START_REQUESTED_PAUSED, MC_EVENT_CHANNEL_BROKEN,
                MC_STATE_START_REQUESTED_PAUSED, 0);
            dst(MC_STATE_STARTED, MC_EVENT_START_GRANTED, MC_STATE_STARTED, 0);
            dst(MC_STATE_STARTED, MC_EVENT_LOAD_FAILED, MC_STATE_FAILED, 0);
            dst(MC_STATE_STARTED, MC_EVENT_CHANNEL_BROKEN, MC_STATE_POSTCOPY_PAUSED, 0);
            dst(MC_STATE_STARTED, MC_EVENT_COMPLETED, MC_STATE_COMPLETED, 0);
            dst(MC_STATE_POSTCOPY_ACTIVE, MC_EVENT_COMPLETED, MC_STATE_COMPLETED, 0);
            dst(MC_STATE_START_REQUESTED, MC_EVENT_COMPLETED, MC_STATE_COMPLETED,
                MC_ACTION_START_VCPUS);
            dst(MC_STATE_POSTCOPY_PAUSED, MC_EVENT_RECOVERED, MC_STATE_STARTED, 0);
        }
    }
    return m;
}

std::string pair_name(McRole r, const Flags &f, McState s, McEvent e)
{
    return std::string(mc_role_name(r)) + "/" + f.name() + "/" + mc_state_name(s) +
           "/" + mc_event_name(e);
}

void test_every_pair()
{
    const auto exp = expected();
    for (int r = 0; r < MC_ROLE__MAX; r++) {
        for (const Flags &f : kFlagSets) {
            for (int s = 0; s < MC_STATE__MAX; s++) {
                for (int e = 0; e < MC_EVENT__MAX; e++) {
                    const McRole role = McRole(r);
                    const McState st = McState(s);
                    const McEvent ev = McEvent(e);
                    McTransition t{};
                    char err[512] = "";
                    int ret = mc_switchover_lookup(role, f.bits(), st, ev, &t, err,
                                                   sizeof(err));
                    auto it = exp.find({role, f.bits(), st, ev});
                    bool ok;
                    if (it == exp.end()) {
                        // Rejected with a message that names event and state.
                        ok = ret == -1 && std::strstr(err, mc_event_name(ev)) &&
                             std::strstr(err, mc_state_name(st));
                    } else {
                        ok = ret == 0 && t.from == st && t.to == it->second.to &&
                             t.actions == it->second.actions;
                    }
                    check(ok, "pair " + pair_name(role, f, st, ev));
                }
            }
        }
    }
}

// The handshake's safety rule, checked over the whole table: no
// destination transition starts the vCPUs except on StartGranted, and no
// source transition resumes the source guest from postcopy-committed.
void test_handshake_invariants()
{
    const uint32_t hs = MC_FLAG_RETURN_PATH | MC_FLAG_START_HANDSHAKE;
    bool start_only_on_grant = true;
    bool no_resume_after_commit = true;
    for (int s = 0; s < MC_STATE__MAX; s++) {
        for (int e = 0; e < MC_EVENT__MAX; e++) {
            McTransition t{};
            if (mc_switchover_lookup(MC_ROLE_DESTINATION, hs, McState(s), McEvent(e),
                                     &t, nullptr, 0) == 0 &&
                (t.actions & MC_ACTION_START_VCPUS) && e != MC_EVENT_START_GRANTED &&
                e != MC_EVENT_COMPLETED) {
                start_only_on_grant = false;
            }
            if (mc_switchover_lookup(MC_ROLE_SOURCE, hs, McState(s), McEvent(e), &t,
                                     nullptr, 0) == 0 &&
                (s == MC_STATE_POSTCOPY_COMMITTED || s == MC_STATE_POSTCOPY_PAUSED) &&
                (t.actions & MC_ACTION_RESUME_SOURCE)) {
                no_resume_after_commit = false;
            }
        }
    }
    check(start_only_on_grant,
          "handshake: only StartGranted (or the source's completion, which "
          "commits it) starts the vCPUs");
    check(no_resume_after_commit,
          "handshake: nothing resumes the source once it is committed");

    char err[512];
    check(mc_switchover_lookup(MC_ROLE_SOURCE, hs, MC_STATE_POSTCOPY_COMMITTED,
                               MC_EVENT_CANCEL_REQUESTED, nullptr, err,
                               sizeof(err)) == -1 &&
          std::strstr(err, "post-copy recovery"),
          "handshake: cancel after the grant is refused, pointing at recovery");
    check(mc_switchover_new(MC_ROLE_SOURCE, MC_FLAG_START_HANDSHAKE) == nullptr,
          "handshake without a return path is refused");
}

// A whole run through the machine object, and rejection keeps the state.
void test_object_paths()
{
    McSwitchover *sw = mc_switchover_new(MC_ROLE_SOURCE, MC_FLAG_RETURN_PATH);
    McTransition t{};
    char err[256];
    check(sw && mc_switchover_state(sw) == MC_STATE_ACTIVE, "source starts active");
    check(mc_switchover_fire(sw, MC_EVENT_SWITCHOVER_STARTED, &t, err, sizeof(err)) == 0 &&
          t.to == MC_STATE_DEVICE, "source: switchover started -> device");
    check(mc_switchover_fire(sw, MC_EVENT_PACKAGE_LOADED, &t, err, sizeof(err)) == -1 &&
          mc_switchover_state(sw) == MC_STATE_DEVICE,
          "source: acknowledgement before the package is rejected, state kept");
    check(mc_switchover_fire(sw, MC_EVENT_PACKAGE_SENT, &t, err, sizeof(err)) == 0 &&
          mc_switchover_state(sw) == MC_STATE_POSTCOPY_DEVICE,
          "source: package sent -> postcopy-device");
    check(mc_switchover_fire(sw, MC_EVENT_PACKAGE_LOADED, &t, err, sizeof(err)) == 0 &&
          mc_switchover_state(sw) == MC_STATE_POSTCOPY_ACTIVE,
          "source: package loaded -> postcopy-active");
    check(mc_switchover_fire(sw, MC_EVENT_PACKAGE_LOADED, &t, err, sizeof(err)) == -1 &&
          std::strstr(err, "postcopy-active") &&
          mc_switchover_state(sw) == MC_STATE_POSTCOPY_ACTIVE,
          "source: duplicate acknowledgement rejected, state kept");
    mc_switchover_free(sw);

    sw = mc_switchover_new(MC_ROLE_SOURCE, MC_FLAG_RETURN_PATH);
    mc_switchover_fire(sw, MC_EVENT_SWITCHOVER_STARTED, nullptr, nullptr, 0);
    mc_switchover_fire(sw, MC_EVENT_PACKAGE_SENT, nullptr, nullptr, 0);
    check(mc_switchover_check(sw, MC_EVENT_ACK_TIMEOUT, &t, err, sizeof(err)) == -1 &&
          std::strstr(err, "__invalid.postcopy-fork_postcopy-start-handshake") &&
          mc_switchover_state(sw) == MC_STATE_POSTCOPY_DEVICE,
          "source without handshake: check says a silent destination is waited for");
    check(mc_switchover_fire(sw, MC_EVENT_ACK_TIMEOUT, &t, err, sizeof(err)) == -1 &&
          std::strstr(err, "__invalid.postcopy-fork_postcopy-start-handshake") &&
          mc_switchover_state(sw) == MC_STATE_POSTCOPY_DEVICE,
          "source without handshake: silent destination -> keeps waiting, says why");
    mc_switchover_free(sw);

    sw = mc_switchover_new(MC_ROLE_SOURCE, MC_FLAG_RETURN_PATH | MC_FLAG_START_HANDSHAKE);
    mc_switchover_fire(sw, MC_EVENT_SWITCHOVER_STARTED, nullptr, nullptr, 0);
    mc_switchover_fire(sw, MC_EVENT_PACKAGE_SENT, nullptr, nullptr, 0);
    check(mc_switchover_check(sw, MC_EVENT_ACK_TIMEOUT, &t, nullptr, 0) == 0 &&
          t.to == MC_STATE_FAILED && mc_switchover_state(sw) == MC_STATE_POSTCOPY_DEVICE,
          "check: answers like fire, the state is kept");
    check(mc_switchover_check(nullptr, MC_EVENT_ACK_TIMEOUT, &t, err, sizeof(err)) == -1 &&
          std::strstr(err, "no switchover"),
          "check: NULL machine refused");
    check(mc_switchover_fire(sw, MC_EVENT_ACK_TIMEOUT, &t, nullptr, 0) == 0 &&
          t.to == MC_STATE_FAILED && (t.actions & MC_ACTION_RESUME_SOURCE),
          "source with handshake: silent destination -> failed, resume source");
    mc_switchover_free(sw);

    // A running guest's source does not commit without a grant, and says why
    sw = mc_switchover_new(MC_ROLE_SOURCE, MC_FLAG_RETURN_PATH | MC_FLAG_START_HANDSHAKE);
    mc_switchover_fire(sw, MC_EVENT_SWITCHOVER_STARTED, nullptr, nullptr, 0);
    check(mc_switchover_set_guest_running(sw) == 0 &&
          (mc_switchover_flags(sw) & MC_FLAG_GUEST_RUNNING),
          "guest running: set before the package");
    mc_switchover_fire(sw, MC_EVENT_PACKAGE_SENT, nullptr, nullptr, 0);
    mc_switchover_fire(sw, MC_EVENT_PACKAGE_LOADED, nullptr, nullptr, 0);
    check(mc_switchover_fire(sw, MC_EVENT_ALL_SENT, &t, err, sizeof(err)) == -1 &&
          std::strstr(err, "migrate_cancel") &&
          mc_switchover_state(sw) == MC_STATE_POSTCOPY_ACTIVE,
          "guest running: everything sent, no request -> no commit, says why");
    check(mc_switchover_fire(sw, MC_EVENT_CANCEL_REQUESTED, &t, nullptr, 0) == 0 &&
          t.to == MC_STATE_CANCELLED && (t.actions & MC_ACTION_RESUME_SOURCE),
          "guest running: everything sent -> migrate_cancel still resumes");
    check(mc_switchover_set_guest_running(sw) == -1,
          "guest running: refused after the package");
    mc_switchover_free(sw);
    sw = mc_switchover_new(MC_ROLE_DESTINATION, MC_FLAG_RETURN_PATH);
    check(mc_switchover_set_guest_running(sw) == -1 &&
          mc_switchover_set_guest_running(nullptr) == -1,
          "guest running: refused on the destination and for NULL");
    mc_switchover_free(sw);

    // In-band negotiation turns the handshake on before the package only
    sw = mc_switchover_new(MC_ROLE_SOURCE, MC_FLAG_RETURN_PATH);
    check(mc_switchover_enable_handshake(sw) == 0 &&
          mc_switchover_flags(sw) == (MC_FLAG_RETURN_PATH | MC_FLAG_START_HANDSHAKE),
          "negotiated handshake: enabled while active");
    mc_switchover_free(sw);
    sw = mc_switchover_new(MC_ROLE_SOURCE, MC_FLAG_RETURN_PATH);
    mc_switchover_fire(sw, MC_EVENT_SWITCHOVER_STARTED, nullptr, nullptr, 0);
    mc_switchover_fire(sw, MC_EVENT_PACKAGE_SENT, nullptr, nullptr, 0);
    check(mc_switchover_enable_handshake(sw) == -1 &&
          mc_switchover_flags(sw) == MC_FLAG_RETURN_PATH,
          "negotiated handshake: refused once the package left");
    mc_switchover_free(sw);
    sw = mc_switchover_new(MC_ROLE_SOURCE, 0);
    check(mc_switchover_enable_handshake(sw) == -1 && mc_switchover_flags(sw) == 0 &&
          mc_switchover_enable_handshake(nullptr) == -1,
          "negotiated handshake: refused without a return path, and for NULL");
    mc_switchover_free(sw);

    check(mc_switchover_new(McRole(7), 0) == nullptr, "invalid role refused");
    check(mc_switchover_fire(nullptr, MC_EVENT_RUN, &t, err, sizeof(err)) == -1,
          "NULL machine refused");
    check(mc_switchover_lookup(MC_ROLE_SOURCE, 0, McState(99), MC_EVENT_RUN, &t, err,
                               sizeof(err)) == -1 && std::strstr(err, "state"),
          "out-of-range state refused");
    check(mc_switchover_lookup(MC_ROLE_SOURCE, 0, MC_STATE_ACTIVE, McEvent(-1), &t, err,
                               4) == -1 && std::strlen(err) == 3,
          "error message truncated to the buffer");
    check(mc_abi_version() == MC_ABI_VERSION, "ABI version matches the header");
    check(std::strcmp(mc_state_name(MC_STATE_POSTCOPY_DEVICE), "postcopy-device") == 0,
          "state names match QAPI");
}

// mc_switchover_source_holds_guest() along each mode's paths, against an
// expectation written here: the source keeps the only runnable copy until
// the package is acknowledged (without the handshake) or the start is
// granted (with it); a row that resumed it gives the guest back.
void test_source_holds_guest()
{
    struct Step {
        McEvent event;
        bool holds;
    };
    struct Path {
        const char *name;
        uint32_t flags;
        std::vector<Step> steps;
    };
    const uint32_t rp = MC_FLAG_RETURN_PATH;
    const uint32_t hs = MC_FLAG_RETURN_PATH | MC_FLAG_START_HANDSHAKE;
    const Path paths[] = {
        {"no-return-path", 0,
         {{MC_EVENT_SWITCHOVER_STARTED, true}, {MC_EVENT_PACKAGE_SENT, false},
          {MC_EVENT_CHANNEL_BROKEN, false}, {MC_EVENT_RECOVERED, false},
          {MC_EVENT_COMPLETED, false}}},
        {"return-path", rp,
         {{MC_EVENT_SWITCHOVER_STARTED, true}, {MC_EVENT_PACKAGE_SENT, true},
          {MC_EVENT_PACKAGE_LOADED, false}, {MC_EVENT_CHANNEL_BROKEN, false},
          {MC_EVENT_RECOVERED, false}, {MC_EVENT_COMPLETED, false}}},
        {"return-path, broken before the acknowledgement, recovered", rp,
         {{MC_EVENT_SWITCHOVER_STARTED, true}, {MC_EVENT_PACKAGE_SENT, true},
          {MC_EVENT_CHANNEL_BROKEN, true}, {MC_EVENT_CHANNEL_BROKEN, true},
          {MC_EVENT_RECOVERED, false}}},
        {"return-path, broken before the acknowledgement, cancelled", rp,
         {{MC_EVENT_SWITCHOVER_STARTED, true}, {MC_EVENT_PACKAGE_SENT, true},
          {MC_EVENT_CHANNEL_BROKEN, true}, {MC_EVENT_CANCEL_REQUESTED, true}}},
        {"return-path, destination failed to load", rp,
         {{MC_EVENT_SWITCHOVER_STARTED, true}, {MC_EVENT_PACKAGE_SENT, true},
          {MC_EVENT_LOAD_FAILED, true}}},
        {"handshake", hs,
         {{MC_EVENT_SWITCHOVER_STARTED, true}, {MC_EVENT_PACKAGE_SENT, true},
          {MC_EVENT_PACKAGE_LOADED, true}, {MC_EVENT_START_REQUESTED, false},
          {MC_EVENT_CHANNEL_BROKEN, false}, {MC_EVENT_RECOVERED, false},
          {MC_EVENT_COMPLETED, false}}},
        {"handshake, cancelled before the grant", hs,
         {{MC_EVENT_SWITCHOVER_STARTED, true}, {MC_EVENT_PACKAGE_SENT, true},
          {MC_EVENT_PACKAGE_LOADED, true}, {MC_EVENT_CANCEL_REQUESTED, true}}},
        {"handshake, broken before the grant", hs,
         {{MC_EVENT_SWITCHOVER_STARTED, true}, {MC_EVENT_PACKAGE_SENT, true},
          {MC_EVENT_PACKAGE_LOADED, true}, {MC_EVENT_CHANNEL_BROKEN, true}}},
    };
    for (const Path &p : paths) {
        McSwitchover *sw = mc_switchover_new(MC_ROLE_SOURCE, p.flags);
        bool ok = sw && mc_switchover_source_holds_guest(sw) == 1;
        for (const Step &st : p.steps) {
            ok = ok && mc_switchover_fire(sw, st.event, nullptr, nullptr, 0) == 0 &&
                 (mc_switchover_source_holds_guest(sw) == 1) == st.holds;
        }
        check(ok, std::string("source holds the guest: ") + p.name);
        mc_switchover_free(sw);
    }

    // The safety rule behind the query, over the whole table: once the
    // source gave the guest away (postcopy-active without the handshake,
    // committed, paused, completed), no row resumes it; before, a break
    // resumes it only with the handshake.
    bool given_away_never_resumes = true, break_resumes_only_with_hs = true;
    for (const uint32_t f : {0u, rp, hs}) {
        for (int s = 0; s < MC_STATE__MAX; s++) {
            // (postcopy-device-paused is not away: its cancel resumes)
            const bool away = s == MC_STATE_POSTCOPY_COMMITTED ||
                              s == MC_STATE_POSTCOPY_PAUSED || s == MC_STATE_COMPLETED ||
                              (s == MC_STATE_POSTCOPY_ACTIVE && !(f & MC_FLAG_START_HANDSHAKE));
            for (int e = 0; e < MC_EVENT__MAX; e++) {
                McTransition t{};
                if (mc_switchover_lookup(MC_ROLE_SOURCE, f, McState(s), McEvent(e), &t,
                                         nullptr, 0) < 0) {
                    continue;
                }
                const bool resume = t.actions & MC_ACTION_RESUME_SOURCE;
                if (away && resume) {
                    given_away_never_resumes = false;
                }
                if (e == MC_EVENT_CHANNEL_BROKEN &&
                    (s == MC_STATE_POSTCOPY_DEVICE || s == MC_STATE_POSTCOPY_DEVICE_PAUSED) &&
                    resume != bool(f & MC_FLAG_START_HANDSHAKE)) {
                    break_resumes_only_with_hs = false;
                }
            }
        }
    }
    check(given_away_never_resumes, "nothing resumes a source that gave the guest away");
    check(break_resumes_only_with_hs,
          "a break in postcopy-device resumes the source only with the handshake");

    McSwitchover *d = mc_switchover_new(MC_ROLE_DESTINATION, rp);
    check(mc_switchover_source_holds_guest(d) == 0 &&
          mc_switchover_source_holds_guest(nullptr) == 0,
          "holds-guest: false for a destination and for NULL");
    mc_switchover_free(d);
}

} // namespace

int main()
{
    test_every_pair();
    test_handshake_invariants();
    test_object_paths();
    test_source_holds_guest();
    return tap::finish();
}
