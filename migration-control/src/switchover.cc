// The post-copy switchover state machine: one table per role.
//
// SPDX-License-Identifier: GPL-2.0-or-later

#include "migration-control.h"
#include "table.h"

#include <array>
#include <cstdio>
#include <new>

namespace {

// Row and Refusal: see table.h (the model generator reads these tables).
using mc::Refusal;
using mc::Row;

constexpr uint32_t kAny = 0;
constexpr uint32_t kRP = MC_FLAG_RETURN_PATH;
constexpr uint32_t kHS = MC_FLAG_RETURN_PATH | MC_FLAG_START_HANDSHAKE;
constexpr uint32_t kNoHS = MC_FLAG_START_HANDSHAKE;   // as `without`
constexpr uint32_t kGuestRunning = MC_FLAG_GUEST_RUNNING;

constexpr uint32_t kResume = MC_ACTION_RESUME_SOURCE;
constexpr uint32_t kKeepStopped = MC_ACTION_KEEP_STOPPED;
constexpr uint32_t kRequest = MC_ACTION_SEND_START_REQUEST;
constexpr uint32_t kGrant = MC_ACTION_SEND_START_GRANT;
constexpr uint32_t kDeny = MC_ACTION_SEND_START_DENY;
constexpr uint32_t kStart = MC_ACTION_START_VCPUS;

// clang-format off
// Source: active -> device -> postcopy-device -> postcopy-active -> completed.
// Until the destination acknowledges the package (PONG 0x42), the source
// holds the only complete copy of the machine: every failure resumes it.
// With the start handshake, that holds until the source grants the start
// (postcopy-committed): it records the commit, then sends StartGrant.
constexpr Row kSourceTable[] = {
    // from                      event                        need  without  to                          actions
    {MC_STATE_ACTIVE,            MC_EVENT_SWITCHOVER_STARTED, kAny, 0,     MC_STATE_DEVICE,              0},
    {MC_STATE_ACTIVE,            MC_EVENT_SWITCHOVER_FAILED,  kAny, 0,     MC_STATE_FAILED,              kResume},
    {MC_STATE_DEVICE,            MC_EVENT_COMPLETED,          kAny, 0,     MC_STATE_COMPLETED,           0},
    {MC_STATE_DEVICE,            MC_EVENT_SWITCHOVER_FAILED,  kAny, 0,     MC_STATE_FAILED,              kResume},
    {MC_STATE_DEVICE,            MC_EVENT_PACKAGE_SENT,       kRP,  0,     MC_STATE_POSTCOPY_DEVICE,     0},
    {MC_STATE_DEVICE,            MC_EVENT_PACKAGE_SENT,       kAny, kRP,   MC_STATE_POSTCOPY_ACTIVE,     0},
    {MC_STATE_DEVICE,            MC_EVENT_CHANNEL_BROKEN,     kAny, 0,     MC_STATE_FAILED,              kResume},
    // migrate_cancel before the package left, as in QEMU 10.0.
    {MC_STATE_DEVICE,            MC_EVENT_CANCEL_REQUESTED,   kAny, 0,     MC_STATE_CANCELLED,           kResume},
    {MC_STATE_POSTCOPY_DEVICE,   MC_EVENT_PACKAGE_LOADED,     kAny, 0,     MC_STATE_POSTCOPY_ACTIVE,     0},
    // The destination said it failed to load the package (RP SHUT with an
    // error): it stops before RUN, so it never runs the guest.
    {MC_STATE_POSTCOPY_DEVICE,   MC_EVENT_LOAD_FAILED,        kAny, 0,     MC_STATE_FAILED,              kResume},
    // A break says nothing about RUN: without the handshake, a destination
    // whose acknowledgement was lost may be running (autostart, or a
    // manager that continues it on its own postcopy-active).  Pause, as
    // after the acknowledgement; a destination that did load recovers.
    {MC_STATE_POSTCOPY_DEVICE,   MC_EVENT_CHANNEL_BROKEN,     kRP,  kNoHS, MC_STATE_POSTCOPY_DEVICE_PAUSED, 0},
    // The destination answered a recovery: it loaded the package.
    {MC_STATE_POSTCOPY_DEVICE_PAUSED, MC_EVENT_RECOVERED,     kRP,  kNoHS, MC_STATE_POSTCOPY_ACTIVE,     0},
    {MC_STATE_POSTCOPY_DEVICE_PAUSED, MC_EVENT_CHANNEL_BROKEN, kRP,  kNoHS, MC_STATE_POSTCOPY_DEVICE_PAUSED, 0},
    // Its failure report came late: it never ran the guest.
    {MC_STATE_POSTCOPY_DEVICE_PAUSED, MC_EVENT_LOAD_FAILED,   kRP,  kNoHS, MC_STATE_FAILED,              kResume},
    // The operator says the destination is gone or failed: the source
    // holds all the memory (nothing was released) and takes it back.
    {MC_STATE_POSTCOPY_DEVICE_PAUSED, MC_EVENT_CANCEL_REQUESTED, kRP,  kNoHS, MC_STATE_CANCELLED,         kResume},
    // With it, nothing was granted: the destination cannot have run.
    {MC_STATE_POSTCOPY_DEVICE,   MC_EVENT_CHANNEL_BROKEN,     kHS,  0,     MC_STATE_FAILED,              kResume},
    // Nothing came back for the failure detector's T.  Only a destination
    // that cannot start without a grant may be given up on: without the
    // handshake it may still load the package and run (see kRefusals).
    {MC_STATE_POSTCOPY_DEVICE,   MC_EVENT_ACK_TIMEOUT,        kHS,  0,     MC_STATE_FAILED,              kResume},
    // A local error before the whole package left (QEMU reports a later
    // one as ChannelBroken): the destination cannot load a partial one.
    {MC_STATE_POSTCOPY_DEVICE,   MC_EVENT_SWITCHOVER_FAILED,  kAny, 0,     MC_STATE_FAILED,              kResume},
    {MC_STATE_POSTCOPY_DEVICE,   MC_EVENT_CANCEL_REQUESTED,   kHS,  0,     MC_STATE_CANCELLED,           kResume | kDeny},
    // A StartRequest can only follow the PONG on the return path.
    {MC_STATE_POSTCOPY_DEVICE,   MC_EVENT_START_REQUESTED,    kHS,  0,     MC_STATE_FAILED,              kResume | kDeny},
    {MC_STATE_POSTCOPY_ACTIVE,   MC_EVENT_CHANNEL_BROKEN,     kAny, kNoHS, MC_STATE_POSTCOPY_PAUSED,     0},
    {MC_STATE_POSTCOPY_ACTIVE,   MC_EVENT_COMPLETED,          kAny, kNoHS, MC_STATE_COMPLETED,           0},
    // Handshake: nothing was granted, so the destination cannot have run.
    {MC_STATE_POSTCOPY_ACTIVE,   MC_EVENT_CHANNEL_BROKEN,     kHS,  0,     MC_STATE_FAILED,              kResume},
    {MC_STATE_POSTCOPY_ACTIVE,   MC_EVENT_CANCEL_REQUESTED,   kHS,  0,     MC_STATE_CANCELLED,           kResume | kDeny},
    {MC_STATE_POSTCOPY_ACTIVE,   MC_EVENT_START_REQUESTED,    kHS,  0,     MC_STATE_POSTCOPY_COMMITTED,  kGrant},
    {MC_STATE_POSTCOPY_COMMITTED, MC_EVENT_START_REQUESTED,   kHS,  0,     MC_STATE_POSTCOPY_COMMITTED,  kGrant},
    {MC_STATE_POSTCOPY_COMMITTED, MC_EVENT_CHANNEL_BROKEN,    kHS,  0,     MC_STATE_POSTCOPY_PAUSED,     0},
    {MC_STATE_POSTCOPY_COMMITTED, MC_EVENT_COMPLETED,         kHS,  0,     MC_STATE_COMPLETED,           0},
    // A guest migrated paused: nobody is to start it.  Once everything is
    // sent the source commits, as a grant would, before it sends the end
    // of the stream; then it completes (the destination completes paused).
    // A running guest's source does not (kRefusals): it keeps the guest,
    // and migrate_cancel resumes it, until the destination asks to start.
    {MC_STATE_POSTCOPY_ACTIVE,   MC_EVENT_ALL_SENT,           kHS,  kGuestRunning, MC_STATE_POSTCOPY_COMMITTED,  0},
    {MC_STATE_POSTCOPY_PAUSED,   MC_EVENT_RECOVERED,          kAny, kNoHS, MC_STATE_POSTCOPY_ACTIVE,     0},
    {MC_STATE_POSTCOPY_PAUSED,   MC_EVENT_RECOVERED,          kHS,  0,     MC_STATE_POSTCOPY_COMMITTED,  0},
    // A recovery attempt broke: still paused, ready for the next one.
    {MC_STATE_POSTCOPY_PAUSED,   MC_EVENT_CHANNEL_BROKEN,     kAny, 0,     MC_STATE_POSTCOPY_PAUSED,     0},
};

// Destination: active -> postcopy-device (LISTEN) -> postcopy-active (RUN).
// Without a return path the source cannot be told, so postcopy-device is
// skipped exactly as in QEMU 10.0.  With the start handshake, the vCPUs
// never run before StartGrant.
constexpr Row kDestinationTable[] = {
    // from                      event                        need  without  to                          actions
    {MC_STATE_ACTIVE,            MC_EVENT_LISTEN,             kRP,  0,     MC_STATE_POSTCOPY_DEVICE,     0},
    {MC_STATE_ACTIVE,            MC_EVENT_LISTEN,             kAny, kRP,   MC_STATE_POSTCOPY_ACTIVE,     0},
    {MC_STATE_POSTCOPY_DEVICE,   MC_EVENT_RUN,                kAny, 0,     MC_STATE_POSTCOPY_ACTIVE,     0},
    {MC_STATE_POSTCOPY_ACTIVE,   MC_EVENT_RUN,                kAny, kRP,   MC_STATE_POSTCOPY_ACTIVE,     0},
    {MC_STATE_POSTCOPY_DEVICE,   MC_EVENT_LOAD_FAILED,        kAny, 0,     MC_STATE_FAILED,              kKeepStopped},
    {MC_STATE_POSTCOPY_DEVICE,   MC_EVENT_CHANNEL_BROKEN,     kAny, 0,     MC_STATE_FAILED,              kKeepStopped},
    {MC_STATE_POSTCOPY_DEVICE,   MC_EVENT_START_DENIED,       kHS,  0,     MC_STATE_CANCELLED,           kKeepStopped},
    {MC_STATE_POSTCOPY_ACTIVE,   MC_EVENT_LOAD_FAILED,        kAny, kNoHS, MC_STATE_FAILED,              0},
    {MC_STATE_POSTCOPY_ACTIVE,   MC_EVENT_CHANNEL_BROKEN,     kAny, kNoHS, MC_STATE_POSTCOPY_PAUSED,     0},
    {MC_STATE_POSTCOPY_ACTIVE,   MC_EVENT_COMPLETED,          kAny, kNoHS, MC_STATE_COMPLETED,           0},
    // Handshake: not started yet, and only a grant starts the vCPUs.
    {MC_STATE_POSTCOPY_ACTIVE,   MC_EVENT_LOAD_FAILED,        kHS,  0,     MC_STATE_FAILED,              kKeepStopped},
    // The source may have committed by sending everything (AllSent): wait
    // for a recovery, stopped (a failed source never recovers).
    {MC_STATE_POSTCOPY_ACTIVE,   MC_EVENT_CHANNEL_BROKEN,     kHS,  0,     MC_STATE_UNGRANTED_PAUSED,    kKeepStopped},
    {MC_STATE_UNGRANTED_PAUSED,  MC_EVENT_CHANNEL_BROKEN,     kHS,  0,     MC_STATE_UNGRANTED_PAUSED,    kKeepStopped},
    {MC_STATE_UNGRANTED_PAUSED,  MC_EVENT_RECOVERED,          kHS,  0,     MC_STATE_POSTCOPY_ACTIVE,     0},
    {MC_STATE_UNGRANTED_PAUSED,  MC_EVENT_LOAD_FAILED,        kHS,  0,     MC_STATE_FAILED,              kKeepStopped},
    {MC_STATE_POSTCOPY_ACTIVE,   MC_EVENT_START_REQUESTED,    kHS,  0,     MC_STATE_START_REQUESTED,     kRequest},
    {MC_STATE_POSTCOPY_ACTIVE,   MC_EVENT_START_DENIED,       kHS,  0,     MC_STATE_CANCELLED,           kKeepStopped},
    {MC_STATE_POSTCOPY_ACTIVE,   MC_EVENT_START_GRANTED,      kHS,  0,     MC_STATE_FAILED,              kKeepStopped},
    {MC_STATE_START_REQUESTED,   MC_EVENT_START_GRANTED,      kHS,  0,     MC_STATE_STARTED,             kStart},
    {MC_STATE_START_REQUESTED,   MC_EVENT_START_DENIED,       kHS,  0,     MC_STATE_CANCELLED,           kKeepStopped},
    {MC_STATE_START_REQUESTED,   MC_EVENT_LOAD_FAILED,        kHS,  0,     MC_STATE_FAILED,              kKeepStopped},
    // The source may have committed: wait for recovery, still stopped.
    {MC_STATE_START_REQUESTED,   MC_EVENT_CHANNEL_BROKEN,     kHS,  0,     MC_STATE_START_REQUESTED_PAUSED, 0},
    {MC_STATE_START_REQUESTED_PAUSED, MC_EVENT_RECOVERED,     kHS,  0,     MC_STATE_START_REQUESTED,     kRequest},
    {MC_STATE_STARTED,           MC_EVENT_START_GRANTED,      kHS,  0,     MC_STATE_STARTED,             0},
    {MC_STATE_STARTED,           MC_EVENT_LOAD_FAILED,        kHS,  0,     MC_STATE_FAILED,              0},
    {MC_STATE_STARTED,           MC_EVENT_CHANNEL_BROKEN,     kHS,  0,     MC_STATE_POSTCOPY_PAUSED,     0},
    {MC_STATE_STARTED,           MC_EVENT_COMPLETED,          kHS,  0,     MC_STATE_COMPLETED,           0},
    // The source completed without a grant (it commits by completing:
    // it can never resume): a start never asked for stays up to 'cont',
    // one asked for (the request crossed the end) starts now.
    {MC_STATE_POSTCOPY_ACTIVE,   MC_EVENT_COMPLETED,          kHS,  0,     MC_STATE_COMPLETED,           0},
    {MC_STATE_START_REQUESTED,   MC_EVENT_COMPLETED,          kHS,  0,     MC_STATE_COMPLETED,           kStart},
    {MC_STATE_POSTCOPY_PAUSED,   MC_EVENT_RECOVERED,          kAny, kNoHS, MC_STATE_POSTCOPY_ACTIVE,     0},
    {MC_STATE_POSTCOPY_PAUSED,   MC_EVENT_RECOVERED,          kHS,  0,     MC_STATE_STARTED,             0},
    // A recovery attempt broke: still paused (and still stopped if the
    // start was not granted yet), ready for the next one.  Failing here
    // would lose a guest the destination may be running.
    {MC_STATE_POSTCOPY_PAUSED,   MC_EVENT_CHANNEL_BROKEN,     kAny, 0,     MC_STATE_POSTCOPY_PAUSED,     0},
    {MC_STATE_START_REQUESTED_PAUSED, MC_EVENT_CHANNEL_BROKEN, kHS, 0,     MC_STATE_START_REQUESTED_PAUSED, 0},
};

constexpr Refusal kRefusals[] = {
    {MC_ROLE_SOURCE, MC_STATE_POSTCOPY_COMMITTED, MC_EVENT_CANCEL_REQUESTED,
     "the source granted the destination the start, so the destination may "
     "be running the guest and the source cannot resume it; use post-copy "
     "recovery (migrate-pause, migrate-recover, migrate with resume) instead"},
    {MC_ROLE_SOURCE, MC_STATE_POSTCOPY_DEVICE, MC_EVENT_ACK_TIMEOUT,
     "without the start handshake (capability "
     "__invalid.postcopy-fork_postcopy-start-handshake) a silent "
     "destination may still load "
     "the package and start the guest, so the source cannot resume it; it "
     "keeps waiting for the acknowledgement (a broken connection pauses "
     "the migration for a post-copy recovery)"},
    {MC_ROLE_SOURCE, MC_STATE_POSTCOPY_ACTIVE, MC_EVENT_ALL_SENT,
     "the guest was running when post-copy started and the destination "
     "has not asked to start it: the source keeps it (migrate_cancel "
     "resumes it) until the destination starts ('cont' or autostart)"},
    {MC_ROLE_SOURCE, MC_STATE_POSTCOPY_PAUSED, MC_EVENT_CANCEL_REQUESTED,
     "the destination may be running the guest, so the source cannot resume "
     "it; use post-copy recovery (migrate-recover, migrate with resume)"},
    {MC_ROLE_SOURCE, MC_STATE_POSTCOPY_ACTIVE, MC_EVENT_CANCEL_REQUESTED,
     "without the start handshake (capability "
     "__invalid.postcopy-fork_postcopy-start-handshake) the destination "
     "may be running the "
     "guest, so the source cannot resume it; post-copy migration in "
     "progress"},
};
// clang-format on

constexpr std::array<const char *, MC_STATE__MAX> kStateNames = {
    "active", "device", "postcopy-device", "postcopy-active",
    "postcopy-paused", "completed", "failed", "postcopy-committed",
    "start-requested", "started", "start-requested-paused", "cancelled",
    "postcopy-device-paused", "ungranted-paused",
};

constexpr std::array<const char *, MC_EVENT__MAX> kEventNames = {
    "SwitchoverStarted", "PackageSent", "Listen", "PackageLoaded", "Run",
    "LoadFailed", "ChannelBroken", "AckTimeout", "SwitchoverFailed",
    "Recovered", "Completed", "StartRequested", "StartGranted",
    "StartDenied", "CancelRequested", "AllSent",
};

constexpr std::array<const char *, MC_ROLE__MAX> kRoleNames = {
    "source", "destination",
};

bool row_applies(const Row &r, uint32_t flags)
{
    return (flags & r.need) == r.need && (flags & r.without) == 0;
}

template <size_t N>
const Row *find_row(const Row (&table)[N], uint32_t flags, McState s, McEvent e)
{
    for (const Row &r : table) {
        if (r.from == s && r.event == e && row_applies(r, flags)) {
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
        for (const Refusal &f : kRefusals) {
            if (f.role == role && f.state == state && f.event == event) {
                set_error(err, errlen, "%s refused in state '%s': %s",
                          mc_event_name(event), mc_state_name(state), f.why);
                return -1;
            }
        }
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
    if (!valid_role(role) ||
        ((flags & MC_FLAG_START_HANDSHAKE) && !(flags & MC_FLAG_RETURN_PATH))) {
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

uint32_t mc_switchover_flags(const McSwitchover *sw)
{
    return sw ? sw->flags : 0;
}

int mc_switchover_enable_handshake(McSwitchover *sw)
{
    if (!sw || !(sw->flags & MC_FLAG_RETURN_PATH) ||
        (sw->state != MC_STATE_ACTIVE && sw->state != MC_STATE_DEVICE)) {
        return -1;
    }
    sw->flags |= MC_FLAG_START_HANDSHAKE;
    return 0;
}

int mc_switchover_set_guest_running(McSwitchover *sw)
{
    if (!sw || sw->role != MC_ROLE_SOURCE ||
        (sw->state != MC_STATE_ACTIVE && sw->state != MC_STATE_DEVICE)) {
        return -1;
    }
    sw->flags |= MC_FLAG_GUEST_RUNNING;
    return 0;
}

McRole mc_switchover_role(const McSwitchover *sw)
{
    return sw->role;
}

int mc_switchover_check(const McSwitchover *sw, McEvent event, McTransition *out,
                        char *err, size_t errlen)
{
    if (!sw) {
        set_error(err, errlen, "%s%s%s", "no switchover state machine", "", "");
        return -1;
    }
    return mc_switchover_lookup(sw->role, sw->flags, sw->state, event, out, err,
                                errlen);
}

int mc_switchover_source_holds_guest(const McSwitchover *sw)
{
    McTransition t;

    if (!sw || sw->role != MC_ROLE_SOURCE) {
        return 0;
    }
    switch (sw->state) {
    case MC_STATE_ACTIVE:
    case MC_STATE_DEVICE:
        return 1;   // nothing was handed over yet
    case MC_STATE_FAILED:
    case MC_STATE_CANCELLED:
        return 1;   // every source row into these resumes the source
    default:
        break;
    }
    // Would any failure, or a cancel, now give the guest back to it?
    for (McEvent e : {MC_EVENT_CHANNEL_BROKEN, MC_EVENT_LOAD_FAILED,
                      MC_EVENT_ACK_TIMEOUT, MC_EVENT_SWITCHOVER_FAILED,
                      MC_EVENT_CANCEL_REQUESTED}) {
        if (mc_switchover_check(sw, e, &t, nullptr, 0) == 0 &&
            (t.actions & MC_ACTION_RESUME_SOURCE)) {
            return 1;
        }
    }
    return 0;
}

int mc_switchover_fire(McSwitchover *sw, McEvent event, McTransition *out,
                       char *err, size_t errlen)
{
    McTransition t;
    if (mc_switchover_check(sw, event, &t, err, errlen) < 0) {
        return -1;
    }
    sw->state = t.to;
    if (out) {
        *out = t;
    }
    return 0;
}

} // extern "C"

namespace mc {

Span<Row> switchover_table(McRole role)
{
    switch (role) {
    case MC_ROLE_SOURCE:
        return {kSourceTable, sizeof(kSourceTable) / sizeof(kSourceTable[0])};
    case MC_ROLE_DESTINATION:
        return {kDestinationTable,
                sizeof(kDestinationTable) / sizeof(kDestinationTable[0])};
    default:
        return {nullptr, 0};
    }
}

Span<Refusal> switchover_refusals()
{
    return {kRefusals, sizeof(kRefusals) / sizeof(kRefusals[0])};
}

} // namespace mc
