/*
 * migration-control: the post-copy switchover state machine of this QEMU
 * fork, as a C ABI over a C++17 implementation.
 *
 * The library is pure: no threads, no clocks, no I/O.  QEMU reports what
 * happened (an McEvent) and the library answers with the next state and
 * the actions QEMU must take, or rejects the event with a message.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef MIGRATION_CONTROL_H
#define MIGRATION_CONTROL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any incompatible change of this header. */
#define MC_ABI_VERSION 1

typedef enum McRole {
    MC_ROLE_SOURCE,
    MC_ROLE_DESTINATION,
    MC_ROLE__MAX,
    /* Make every int a valid value in C++: no UB on bad input */
    MC_ROLE__INT_MIN = -0x7fffffff - 1,
    MC_ROLE__INT_MAX = 0x7fffffff
} McRole;

/* The switchover phases.  Names match QEMU's MigrationStatus. */
typedef enum McState {
    MC_STATE_ACTIVE,            /* pre-copy (source) / incoming pre-copy */
    MC_STATE_DEVICE,            /* source: guest stopped, saving device state */
    MC_STATE_POSTCOPY_DEVICE,   /* package sent/being loaded, not yet acknowledged */
    MC_STATE_POSTCOPY_ACTIVE,
    MC_STATE_POSTCOPY_PAUSED,
    MC_STATE_COMPLETED,
    MC_STATE_FAILED,
    /* Start handshake (MC_FLAG_START_HANDSHAKE) */
    MC_STATE_POSTCOPY_COMMITTED,   /* source: granted the start, cannot resume */
    MC_STATE_START_REQUESTED,      /* destination: asked to start, vCPUs stopped */
    MC_STATE_STARTED,              /* destination: start granted, vCPUs may run */
    MC_STATE_START_REQUESTED_PAUSED, /* destination: channel broke while asking */
    MC_STATE_CANCELLED,
    /*
     * Source without the start handshake: the channel broke after the
     * package left and before its acknowledgement.  Paused (the
     * destination may be running the guest); a recovery completes the
     * switchover, and migrate_cancel is the operator's word that the
     * destination does not run it (it died or failed): the source resumes.
     */
    MC_STATE_POSTCOPY_DEVICE_PAUSED,
    /*
     * Destination with the start handshake: the channel broke in
     * postcopy-active before it asked to start.  The source may have
     * committed (everything sent, AllSent): wait for a recovery, vCPUs
     * stopped; a recovery is only possible with a committed source.
     */
    MC_STATE_UNGRANTED_PAUSED,
    MC_STATE__MAX,
    /* Make every int a valid value in C++: no UB on bad input */
    MC_STATE__INT_MIN = -0x7fffffff - 1,
    MC_STATE__INT_MAX = 0x7fffffff
} McState;

typedef enum McEvent {
    MC_EVENT_SWITCHOVER_STARTED,  /* source: guest stopped for switchover */
    MC_EVENT_PACKAGE_SENT,        /* source: post-copy package written */
    MC_EVENT_LISTEN,              /* destination: POSTCOPY_LISTEN processed */
    MC_EVENT_PACKAGE_LOADED,      /* source: PONG 0x42 received */
    MC_EVENT_RUN,                 /* destination: POSTCOPY_RUN processed */
    MC_EVENT_LOAD_FAILED,         /* destination: device state load failed;
                                     source: the destination reported it */
    MC_EVENT_CHANNEL_BROKEN,      /* either side: migration channel error */
    MC_EVENT_ACK_TIMEOUT,         /* source: silent peer, no acknowledgement */
    MC_EVENT_SWITCHOVER_FAILED,   /* source: local error while switching over */
    MC_EVENT_RECOVERED,           /* either side: post-copy recovery done */
    MC_EVENT_COMPLETED,           /* either side: all RAM transferred */
    /* Start handshake (MC_FLAG_START_HANDSHAKE) */
    MC_EVENT_START_REQUESTED,     /* dest: 'cont'/autostart; source: request received */
    MC_EVENT_START_GRANTED,       /* destination: StartGrant received */
    MC_EVENT_START_DENIED,        /* destination: StartDeny received */
    MC_EVENT_CANCEL_REQUESTED,    /* source: migrate_cancel */
    /*
     * source: everything sent without a start request (handshake): it
     * commits before it completes
     */
    MC_EVENT_ALL_SENT,
    MC_EVENT__MAX,
    /* Make every int a valid value in C++: no UB on bad input */
    MC_EVENT__INT_MIN = -0x7fffffff - 1,
    MC_EVENT__INT_MAX = 0x7fffffff
} McEvent;

/* Actions QEMU must carry out after a transition; a bit mask. */
typedef enum McAction {
    MC_ACTION_NONE          = 0,
    MC_ACTION_RESUME_SOURCE = 1u << 0, /* re-activate disks, run the source guest */
    MC_ACTION_KEEP_STOPPED  = 1u << 1, /* destination guest must never run */
    MC_ACTION_SEND_START_REQUEST = 1u << 2, /* dest: send StartRequest */
    MC_ACTION_SEND_START_GRANT   = 1u << 3, /* source: send StartGrant (committed) */
    MC_ACTION_SEND_START_DENY    = 1u << 4, /* source: send StartDeny if it can */
    MC_ACTION_START_VCPUS        = 1u << 5, /* dest: the start is granted */
} McAction;

/* Creation flags. */
#define MC_FLAG_RETURN_PATH (1u << 0) /* the source has a return path */
/* Both sides run the start handshake; requires MC_FLAG_RETURN_PATH. */
#define MC_FLAG_START_HANDSHAKE (1u << 1)
/*
 * Source: the guest was running when post-copy started, so a destination
 * is to start it (autostart or 'cont').  With the start handshake such a
 * source never commits without a grant: it holds the guest, and
 * migrate_cancel gives it back, until the destination starts.  Without
 * this flag (a guest migrated paused) it commits once everything is sent
 * (AllSent) and completes, as QEMU 10.0 does.
 */
#define MC_FLAG_GUEST_RUNNING (1u << 2)

typedef struct McSwitchover McSwitchover;

typedef struct McTransition {
    McState from;
    McState to;
    uint32_t actions;           /* McAction bits */
} McTransition;

/* Returns MC_ABI_VERSION of the library actually linked. */
unsigned mc_abi_version(void);

/* Returns NULL only on invalid arguments or allocation failure. */
McSwitchover *mc_switchover_new(McRole role, uint32_t flags);
void mc_switchover_free(McSwitchover *sw);

McState mc_switchover_state(const McSwitchover *sw);
/* The MC_FLAG_* bits the machine runs with (0 for NULL). */
uint32_t mc_switchover_flags(const McSwitchover *sw);
/*
 * The start handshake was negotiated in-band: add MC_FLAG_START_HANDSHAKE.
 * Only before the post-copy package (states active and device) and with
 * MC_FLAG_RETURN_PATH; returns -1 and leaves the machine alone otherwise.
 */
int mc_switchover_enable_handshake(McSwitchover *sw);
/*
 * The source's guest was running when post-copy started: add
 * MC_FLAG_GUEST_RUNNING.  Only on the source, before the post-copy
 * package (states active and device); returns -1 otherwise.
 */
int mc_switchover_set_guest_running(McSwitchover *sw);
McRole mc_switchover_role(const McSwitchover *sw);

/*
 * Apply @event.  On success returns 0, moves to the next state and fills
 * @out (if not NULL).  If (state, event) is not a valid pair for this role,
 * returns -1, leaves the state unchanged and writes a NUL-terminated
 * message into @err (at most @errlen bytes, if @err is not NULL).
 */
int mc_switchover_fire(McSwitchover *sw, McEvent event, McTransition *out,
                       char *err, size_t errlen);

/* Pure table look-up: what firing @event in @state would do. Same returns. */
int mc_switchover_lookup(McRole role, uint32_t flags, McState state,
                         McEvent event, McTransition *out,
                         char *err, size_t errlen);

/*
 * What firing @event on @sw now would do, without firing it: the look-up
 * with the machine's own role, flags and state.  Same returns; the state
 * is never changed.
 */
int mc_switchover_check(const McSwitchover *sw, McEvent event,
                        McTransition *out, char *err, size_t errlen);

/*
 * Source only: does the source still hold the only copy of the guest that
 * may run, so that a failure now resumes it?  True before the switchover,
 * while the package is not acknowledged, with the start handshake until
 * the start is granted, and once ended by a row that resumed the source.
 * Every "may the source resume / discard the RAM it sent / must it keep
 * the guest stopped" question of the glue is this query, derived from
 * the table: in a post-copy state it is true exactly when a failure
 * (ChannelBroken, LoadFailed, AckTimeout, SwitchoverFailed) or a cancel
 * would answer MC_ACTION_RESUME_SOURCE.  False for a destination or NULL.
 */
int mc_switchover_source_holds_guest(const McSwitchover *sw);

/* Stable names, as in QEMU's QAPI ("postcopy-device") and the docs. */
const char *mc_state_name(McState state);
const char *mc_event_name(McEvent event);
const char *mc_role_name(McRole role);

/*
 * Failure detector of one side of a post-copy migration.
 *
 * A silent network partition (no RST, packets vanish) is noticed by TCP
 * only after many minutes.  With a timeout T, a side declares the channel
 * broken when nothing arrived from the peer for T.  So that a healthy but
 * idle channel is never declared broken, the source sends a heartbeat
 * whenever it sent nothing for T/4, and the destination answers it.  The
 * first heartbeat travels in the post-copy package, and the destination
 * arms its detector only once it has seen one, so a source that sends
 * none (an older QEMU) never trips it.
 *
 * Time is passed in by the caller (milliseconds of any monotonic clock).
 */
typedef struct McDetector McDetector;

typedef enum McDetectorVerdict {
    MC_DETECTOR_QUIET,           /* nothing to do before *next_ms */
    MC_DETECTOR_SEND_HEARTBEAT,  /* send a heartbeat now */
    MC_DETECTOR_BROKEN,          /* nothing from the peer for T: ChannelBroken */
} McDetectorVerdict;

/* @timeout_ms: T; 0 turns the detector off.  NULL on allocation failure. */
McDetector *mc_detector_new(McRole role, uint64_t timeout_ms, uint64_t now_ms);
void mc_detector_free(McDetector *d);
/* Something arrived from the peer; @heartbeat: it was a heartbeat. */
void mc_detector_received(McDetector *d, uint64_t now_ms, int heartbeat);
/*
 * Something was sent to the peer.  On the source: a heartbeat is about to
 * be written (call before writing it, so that an answer quicker than
 * mc_detector_heartbeat_position() finds it).
 */
void mc_detector_sent(McDetector *d, uint64_t now_ms);
/* A new connection (post-copy recovery): start counting afresh. */
void mc_detector_reset(McDetector *d, uint64_t now_ms);
/*
 * The same connection in a new phase (the package acknowledged, a wait
 * given up): count T afresh, keep what is known of the bytes on the way.
 */
void mc_detector_restart(McDetector *d, uint64_t now_ms);
/*
 * What the transport (the kernel's TCP state of the main channel) says
 * about the peer, so that a slow but healthy link is not taken for a
 * broken one: over a slow link, heartbeats and their answers queue
 * behind megabytes of pages and come later than T, while the peer keeps
 * taking data.
 *
 * Destination: @progress is the number of bytes received so far on the
 * main channel; any increase is a sign of life (data arrives, so the
 * link and the source's kernel work; a frozen source's queued data is
 * noticed at most a send buffer's worth of link time late).
 *
 * Source: @progress is the number of bytes the peer's kernel has
 * acknowledged, @window the receive window it advertises (0 if
 * unknown), @receiver_limited whether, since the last report, sending
 * waited on that window (the peer's QEMU reading paced the connection).
 * An increase counts as a sign of life only while the oldest unanswered
 * heartbeat (mc_detector_heartbeat_position()) is still on the link
 * (@progress below its position) or, with @receiver_limited, may still
 * wait in the peer's receive buffer (below its position plus the largest
 * window seen).  Past that only its answer counts: a frozen peer, or one
 * whose answers never arrive, is caught at most (queue + window) / link
 * rate late.
 *
 * @progress must not decrease while a connection lasts; reset with
 * mc_detector_reset() on a new connection.  Without these calls (no TCP,
 * or the information is unavailable) only heartbeats count.
 */
void mc_detector_transport(McDetector *d, uint64_t now_ms, uint64_t progress,
                           uint64_t window, int receiver_limited);
/*
 * Source: the heartbeat just sent ends at byte @position of the main
 * channel (bytes acknowledged by the peer + bytes still queued, right
 * after the heartbeat was written).  Its answer (mc_detector_received()
 * with @heartbeat) retires the oldest position.
 */
void mc_detector_heartbeat_position(McDetector *d, uint64_t position);
/* Source: is a heartbeat due?  (Unlike mc_detector_poll(), decides nothing.) */
int mc_detector_heartbeat_due(const McDetector *d, uint64_t now_ms);
/* How often to call mc_detector_poll() (ms) */
uint64_t mc_detector_poll_period(const McDetector *d);
/*
 * What to do at @now_ms.  *@next_ms (if not NULL) is the latest time at
 * which to poll again.  Once BROKEN, stays BROKEN until reset.
 */
McDetectorVerdict mc_detector_poll(McDetector *d, uint64_t now_ms,
                                   uint64_t *next_ms);
const char *mc_detector_verdict_name(McDetectorVerdict v);

/*
 * The destination's pause policy: when the post-copy channel breaks while
 * the guest runs, pause it; after a successful recovery, resume it if and
 * only if the policy paused it and the user did not 'stop' or 'cont' in
 * between.
 */
typedef enum McPolicyEvent {
    MC_POLICY_CHANNEL_BROKEN,
    MC_POLICY_RECOVERED,
    MC_POLICY_USER_STOP,
    MC_POLICY_USER_CONT,
    MC_POLICY_EVENT__MAX,
    /* Make every int a valid value in C++: no UB on bad input */
    MC_POLICY_EVENT__INT_MIN = -0x7fffffff - 1,
    MC_POLICY_EVENT__INT_MAX = 0x7fffffff
} McPolicyEvent;

typedef enum McPolicyAction {
    MC_POLICY_NONE,
    MC_POLICY_PAUSE_GUEST,
    MC_POLICY_RESUME_GUEST,
} McPolicyAction;

typedef struct McPausePolicy McPausePolicy;

/* @enabled: the user chose the pause policy.  NULL on allocation failure. */
McPausePolicy *mc_pause_policy_new(int enabled);
void mc_pause_policy_free(McPausePolicy *p);
/* @guest_running: whether the guest runs when the event happens. */
McPolicyAction mc_pause_policy_on(McPausePolicy *p, McPolicyEvent event,
                                  int guest_running);
/* Is the guest paused because of the policy (for query-status)? */
int mc_pause_policy_paused(const McPausePolicy *p);
const char *mc_policy_event_name(McPolicyEvent e);

#ifdef __cplusplus
}
#endif

#endif /* MIGRATION_CONTROL_H */
