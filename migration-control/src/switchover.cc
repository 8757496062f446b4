// The post-copy switchover state machine: one table per role.
//
// SPDX-License-Identifier: GPL-2.0-or-later

#include "migration-control.h"

#include <array>
#include <cstdio>
#include <new>

namespace {

// A row applies when its guard matches the migration's flags.
enum class Guard { Any, WithReturnPath, WithoutReturnPath };

struct Row {
    McState from;
    McEvent event;
    Guard guard;
    McState to;
    uint32_t actions;
};

constexpr uint32_t kResume = MC_ACTION_RESUME_SOURCE;
constexpr uint32_t kKeepStopped = MC_ACTION_KEEP_STOPPED;

// clang-format off
// Source: active -> device -> postcopy-device -> postcopy-active -> completed.
// Until the destination acknowledges the package (PONG 0x42), the source
// holds the only complete copy of the machine: every failure resumes it.
constexpr Row kSourceTable[] = {
    {MC_STATE_ACTIVE,           MC_EVENT_SWITCHOVER_STARTED, Guard::Any,               MC_STATE_DEVICE,           0},
    {MC_STATE_ACTIVE,           MC_EVENT_SWITCHOVER_FAILED,  Guard::Any,               MC_STATE_FAILED,           kResume},
    {MC_STATE_DEVICE,           MC_EVENT_COMPLETED,          Guard::Any,               MC_STATE_COMPLETED,        0},
    {MC_STATE_DEVICE,           MC_EVENT_SWITCHOVER_FAILED,  Guard::Any,               MC_STATE_FAILED,           kResume},
    {MC_STATE_DEVICE,           MC_EVENT_PACKAGE_SENT,       Guard::WithReturnPath,    MC_STATE_POSTCOPY_DEVICE,  0},
    {MC_STATE_DEVICE,           MC_EVENT_PACKAGE_SENT,       Guard::WithoutReturnPath, MC_STATE_POSTCOPY_ACTIVE,  0},
    {MC_STATE_DEVICE,           MC_EVENT_CHANNEL_BROKEN,     Guard::Any,               MC_STATE_FAILED,           kResume},
    {MC_STATE_POSTCOPY_DEVICE,  MC_EVENT_PACKAGE_LOADED,     Guard::Any,               MC_STATE_POSTCOPY_ACTIVE,  0},
    {MC_STATE_POSTCOPY_DEVICE,  MC_EVENT_CHANNEL_BROKEN,     Guard::Any,               MC_STATE_FAILED,           kResume},
    {MC_STATE_POSTCOPY_DEVICE,  MC_EVENT_ACK_TIMEOUT,        Guard::Any,               MC_STATE_FAILED,           kResume},
    {MC_STATE_POSTCOPY_DEVICE,  MC_EVENT_SWITCHOVER_FAILED,  Guard::Any,               MC_STATE_FAILED,           kResume},
    {MC_STATE_POSTCOPY_ACTIVE,  MC_EVENT_CHANNEL_BROKEN,     Guard::Any,               MC_STATE_POSTCOPY_PAUSED,  0},
    {MC_STATE_POSTCOPY_ACTIVE,  MC_EVENT_COMPLETED,          Guard::Any,               MC_STATE_COMPLETED,        0},
    {MC_STATE_POSTCOPY_PAUSED,  MC_EVENT_RECOVERED,          Guard::Any,               MC_STATE_POSTCOPY_ACTIVE,  0},
};

// Destination: active -> postcopy-device (LISTEN) -> postcopy-active (RUN).
// Without a return path the source cannot be told, so postcopy-device is
// skipped exactly as in QEMU 10.0.
constexpr Row kDestinationTable[] = {
    {MC_STATE_ACTIVE,           MC_EVENT_LISTEN,             Guard::WithReturnPath,    MC_STATE_POSTCOPY_DEVICE,  0},
    {MC_STATE_ACTIVE,           MC_EVENT_LISTEN,             Guard::WithoutReturnPath, MC_STATE_POSTCOPY_ACTIVE,  0},
    {MC_STATE_POSTCOPY_DEVICE,  MC_EVENT_RUN,                Guard::Any,               MC_STATE_POSTCOPY_ACTIVE,  0},
    {MC_STATE_POSTCOPY_ACTIVE,  MC_EVENT_RUN,                Guard::WithoutReturnPath, MC_STATE_POSTCOPY_ACTIVE,  0},
    {MC_STATE_POSTCOPY_DEVICE,  MC_EVENT_LOAD_FAILED,        Guard::Any,               MC_STATE_FAILED,           kKeepStopped},
    {MC_STATE_POSTCOPY_DEVICE,  MC_EVENT_CHANNEL_BROKEN,     Guard::Any,               MC_STATE_FAILED,           kKeepStopped},
    {MC_STATE_POSTCOPY_ACTIVE,  MC_EVENT_LOAD_FAILED,        Guard::Any,               MC_STATE_FAILED,           0},
    {MC_STATE_POSTCOPY_ACTIVE,  MC_EVENT_CHANNEL_BROKEN,     Guard::Any,               MC_STATE_POSTCOPY_PAUSED,  0},
    {MC_STATE_POSTCOPY_ACTIVE,  MC_EVENT_COMPLETED,          Guard::Any,               MC_STATE_COMPLETED,        0},
    {MC_STATE_POSTCOPY_PAUSED,  MC_EVENT_RECOVERED,          Guard::Any,               MC_STATE_POSTCOPY_ACTIVE,  0},
};
// clang-format on

constexpr std::array<const char *, MC_STATE__MAX> kStateNames = {
    "active", "device", "postcopy-device", "postcopy-active",
    "postcopy-paused", "completed", "failed",
};

constexpr std::array<const char *, MC_EVENT__MAX> kEventNames = {
    "SwitchoverStarted", "PackageSent", "Listen", "PackageLoaded", "Run",
    "LoadFailed", "ChannelBroken", "AckTimeout", "SwitchoverFailed",
    "Recovered", "Completed",
};

constexpr std::array<const char *, MC_ROLE__MAX> kRoleNames = {
    "source", "destination",
};

bool guard_holds(Guard g, uint32_t flags)
{
    const bool rp = (flags & MC_FLAG_RETURN_PATH) != 0;
    switch (g) {
    case Guard::Any:
        return true;
    case Guard::WithReturnPath:
        return rp;
    case Guard::WithoutReturnPath:
        return !rp;
    }
    return false;
}

template <size_t N>
const Row *find_row(const Row (&table)[N], uint32_t flags, McState s, McEvent e)
{
    for (const Row &r : table) {
        if (r.from == s && r.event == e && guard_holds(r.guard, flags)) {
            return &r;
        }
    }
    return nullptr;
}

void set_error(char *err, size_t errlen, const char *fmt, const char *a,
               const char *b, const char *c)
{
    if (err && errlen) {
        std::snprintf(err, errlen, fmt, a, b, c);
    }
}

bool valid_role(McRole r) { return r >= 0 && r < MC_ROLE__MAX; }
bool valid_state(McState s) { return s >= 0 && s < MC_STATE__MAX; }
bool valid_event(McEvent e) { return e >= 0 && e < MC_EVENT__MAX; }

} // namespace

struct McSwitchover {
    McRole role;
    uint32_t flags;
    McState state;
};

extern "C" {

unsigned mc_abi_version(void)
{
    return MC_ABI_VERSION;
}

const char *mc_state_name(McState state)
{
    return valid_state(state) ? kStateNames[state] : "invalid-state";
}

const char *mc_event_name(McEvent event)
{
    return valid_event(event) ? kEventNames[event] : "InvalidEvent";
}

const char *mc_role_name(McRole role)
{
    return valid_role(role) ? kRoleNames[role] : "invalid-role";
}

int mc_switchover_lookup(McRole role, uint32_t flags, McState state,
                         McEvent event, McTransition *out,
                         char *err, size_t errlen)
{
    if (!valid_role(role) || !valid_state(state) || !valid_event(event)) {
        set_error(err, errlen, "invalid %s%s%s argument to the switchover state machine",
                  !valid_role(role) ? "role " : "", !valid_state(state) ? "state " : "",
                  !valid_event(event) ? "event " : "");
        return -1;
    }
    const Row *r = role == MC_ROLE_SOURCE
                       ? find_row(kSourceTable, flags, state, event)
                       : find_row(kDestinationTable, flags, state, event);
    if (!r) {
        set_error(err, errlen, "%s is not valid on the %s in state '%s'",
                  mc_event_name(event), mc_role_name(role), mc_state_name(state));
        return -1;
    }
    if (out) {
        out->from = r->from;
        out->to = r->to;
        out->actions = r->actions;
    }
    return 0;
}

McSwitchover *mc_switchover_new(McRole role, uint32_t flags)
{
    if (!valid_role(role)) {
        return nullptr;
    }
    return new (std::nothrow) McSwitchover{role, flags, MC_STATE_ACTIVE};
}

void mc_switchover_free(McSwitchover *sw)
{
    delete sw;
}

McState mc_switchover_state(const McSwitchover *sw)
{
    return sw->state;
}

McRole mc_switchover_role(const McSwitchover *sw)
{
    return sw->role;
}

int mc_switchover_fire(McSwitchover *sw, McEvent event, McTransition *out,
                       char *err, size_t errlen)
{
    McTransition t;
    if (!sw) {
        set_error(err, errlen, "%s%s%s", "no switchover state machine", "", "");
        return -1;
    }
    if (mc_switchover_lookup(sw->role, sw->flags, sw->state, event, &t,
                             err, errlen) < 0) {
        return -1;
    }
    sw->state = t.to;
    if (out) {
        *out = t;
    }
    return 0;
}

} // extern "C"
