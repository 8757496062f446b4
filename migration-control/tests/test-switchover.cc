// Unit tests of the switchover state machine: every (role, return-path,
// state, event) combination is checked against an expectation written
// here independently of the library's table.  Output is TAP.
//
// SPDX-License-Identifier: GPL-2.0-or-later

#include "migration-control.h"

#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <tuple>
#include <vector>

namespace {

int g_test = 0;
int g_failed = 0;

void check(bool ok, const std::string &name)
{
    ++g_test;
    if (!ok) {
        ++g_failed;
    }
    std::printf("%s %d - %s\n", ok ? "ok" : "not ok", g_test, name.c_str());
}

struct Expect {
    McState to;
    uint32_t actions;
};

using Key = std::tuple<McRole, bool, McState, McEvent>;

// The protocol as the design document states it (docs/devel/migration/
// postcopy-switchover.rst).  Anything absent must be rejected.
std::map<Key, Expect> expected()
{
    std::map<Key, Expect> m;
    for (bool rp : {false, true}) {
        auto src = [&](McState s, McEvent e, McState to, uint32_t a) {
            m[{MC_ROLE_SOURCE, rp, s, e}] = {to, a};
        };
        auto dst = [&](McState s, McEvent e, McState to, uint32_t a) {
            m[{MC_ROLE_DESTINATION, rp, s, e}] = {to, a};
        };
        src(MC_STATE_ACTIVE, MC_EVENT_SWITCHOVER_STARTED, MC_STATE_DEVICE, 0);
        src(MC_STATE_ACTIVE, MC_EVENT_SWITCHOVER_FAILED, MC_STATE_FAILED,
            MC_ACTION_RESUME_SOURCE);
        src(MC_STATE_DEVICE, MC_EVENT_COMPLETED, MC_STATE_COMPLETED, 0);
        src(MC_STATE_DEVICE, MC_EVENT_SWITCHOVER_FAILED, MC_STATE_FAILED,
            MC_ACTION_RESUME_SOURCE);
        src(MC_STATE_DEVICE, MC_EVENT_PACKAGE_SENT,
            rp ? MC_STATE_POSTCOPY_DEVICE : MC_STATE_POSTCOPY_ACTIVE, 0);
        src(MC_STATE_DEVICE, MC_EVENT_CHANNEL_BROKEN, MC_STATE_FAILED,
            MC_ACTION_RESUME_SOURCE);
        src(MC_STATE_POSTCOPY_DEVICE, MC_EVENT_PACKAGE_LOADED,
            MC_STATE_POSTCOPY_ACTIVE, 0);
        src(MC_STATE_POSTCOPY_DEVICE, MC_EVENT_CHANNEL_BROKEN, MC_STATE_FAILED,
            MC_ACTION_RESUME_SOURCE);
        src(MC_STATE_POSTCOPY_DEVICE, MC_EVENT_ACK_TIMEOUT, MC_STATE_FAILED,
            MC_ACTION_RESUME_SOURCE);
        src(MC_STATE_POSTCOPY_DEVICE, MC_EVENT_SWITCHOVER_FAILED, MC_STATE_FAILED,
            MC_ACTION_RESUME_SOURCE);
        src(MC_STATE_POSTCOPY_ACTIVE, MC_EVENT_CHANNEL_BROKEN,
            MC_STATE_POSTCOPY_PAUSED, 0);
        src(MC_STATE_POSTCOPY_ACTIVE, MC_EVENT_COMPLETED, MC_STATE_COMPLETED, 0);
        src(MC_STATE_POSTCOPY_PAUSED, MC_EVENT_RECOVERED,
            MC_STATE_POSTCOPY_ACTIVE, 0);

        dst(MC_STATE_ACTIVE, MC_EVENT_LISTEN,
            rp ? MC_STATE_POSTCOPY_DEVICE : MC_STATE_POSTCOPY_ACTIVE, 0);
        dst(MC_STATE_POSTCOPY_DEVICE, MC_EVENT_RUN, MC_STATE_POSTCOPY_ACTIVE, 0);
        if (!rp) {
            // Without a return path LISTEN went straight to postcopy-active.
            dst(MC_STATE_POSTCOPY_ACTIVE, MC_EVENT_RUN, MC_STATE_POSTCOPY_ACTIVE, 0);
        }
        dst(MC_STATE_POSTCOPY_ACTIVE, MC_EVENT_LOAD_FAILED, MC_STATE_FAILED, 0);
        dst(MC_STATE_POSTCOPY_DEVICE, MC_EVENT_LOAD_FAILED, MC_STATE_FAILED,
            MC_ACTION_KEEP_STOPPED);
        dst(MC_STATE_POSTCOPY_DEVICE, MC_EVENT_CHANNEL_BROKEN, MC_STATE_FAILED,
            MC_ACTION_KEEP_STOPPED);
        dst(MC_STATE_POSTCOPY_ACTIVE, MC_EVENT_CHANNEL_BROKEN,
            MC_STATE_POSTCOPY_PAUSED, 0);
        dst(MC_STATE_POSTCOPY_ACTIVE, MC_EVENT_COMPLETED, MC_STATE_COMPLETED, 0);
        dst(MC_STATE_POSTCOPY_PAUSED, MC_EVENT_RECOVERED,
            MC_STATE_POSTCOPY_ACTIVE, 0);
    }
    return m;
}

std::string pair_name(McRole r, bool rp, McState s, McEvent e)
{
    return std::string(mc_role_name(r)) + (rp ? "/return-path/" : "/no-return-path/") +
           mc_state_name(s) + "/" + mc_event_name(e);
}

void test_every_pair()
{
    const auto exp = expected();
    for (int r = 0; r < MC_ROLE__MAX; r++) {
        for (bool rp : {false, true}) {
            for (int s = 0; s < MC_STATE__MAX; s++) {
                for (int e = 0; e < MC_EVENT__MAX; e++) {
                    const McRole role = McRole(r);
                    const McState st = McState(s);
                    const McEvent ev = McEvent(e);
                    McTransition t{};
                    char err[256] = "";
                    int ret = mc_switchover_lookup(role, rp ? MC_FLAG_RETURN_PATH : 0,
                                                   st, ev, &t, err, sizeof(err));
                    auto it = exp.find({role, rp, st, ev});
                    bool ok;
                    if (it == exp.end()) {
                        // Rejected with a message that names event and state.
                        ok = ret == -1 && std::strstr(err, mc_event_name(ev)) &&
                             std::strstr(err, mc_state_name(st));
                    } else {
                        ok = ret == 0 && t.from == st && t.to == it->second.to &&
                             t.actions == it->second.actions;
                    }
                    check(ok, "pair " + pair_name(role, rp, st, ev));
                }
            }
        }
    }
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
    check(mc_switchover_fire(sw, MC_EVENT_ACK_TIMEOUT, &t, nullptr, 0) == 0 &&
          t.to == MC_STATE_FAILED && (t.actions & MC_ACTION_RESUME_SOURCE),
          "source: no acknowledgement in time -> failed, resume source");
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

} // namespace

int main()
{
    test_every_pair();
    test_object_paths();
    std::printf("1..%d\n", g_test);
    std::printf("# %d passed, %d failed\n", g_test - g_failed, g_failed);
    return g_failed ? 1 : 0;
}
