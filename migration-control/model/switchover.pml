/*
 * Post-copy switchover with the start handshake, as a Promela model for
 * spin.  States, events and messages carry the names of the
 * migration-control library (include/migration-control.h) and of
 * docs/devel/migration/postcopy-switchover.rst: S_X / D_X is state
 * MC_STATE_X of the source / destination in CamelCase, and the messages
 * PackageLoaded, StartRequest, StartGrant and StartDeny raise the events
 * PackageLoaded, StartRequested, StartGranted and StartDenied.
 *
 * What is modelled, from the moment the source has sent the post-copy
 * package (both sides in postcopy-device):
 *  - the return path (destination -> source) carries PackageLoaded (the
 *    PONG 0x42) and StartRequest; the main channel (source -> destination)
 *    carries StartGrant and StartDeny.  Both are FIFO, like TCP;
 *  - the network may fail at any moment: each message in flight may
 *    still be delivered or be lost, later sends vanish, and each side
 *    notices (ChannelBroken) at a moment of its choosing;
 *  - either QEMU may crash at any moment;
 *  - the user may migrate_cancel the source, 'cont' the destination (or
 *    the destination autostarts), and recover a paused post-copy;
 *  - the source's failure detector may give up on a destination that is
 *    silent in postcopy-device (AckTimeout).
 *
 * Checked exhaustively (make check):
 *  - safety: the guest never runs on both sides at once;
 *  - a way out: whenever nothing moves any more (faults and user actions
 *    may stop at any point), the user still has a way out: the guest
 *    runs somewhere, or the source can resume (migrate_cancel), or the
 *    destination can be started ('cont'), or both sides are paused and
 *    post-copy recovery can proceed.  Losses inherent to post-copy are
 *    exempt: the source crashed (it held the RAM not yet sent), or the
 *    destination crashed after a grant had left the source (it may have
 *    run the guest).
 *
 * -DGRANT_BEFORE_COMMIT builds a deliberately broken source that sends
 * StartGrant before it records that it is committed; spin must find the
 * split brain.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

mtype = {
    /* source states (MC_STATE_*) */
    S_PostcopyDevice, S_PostcopyActive, S_PostcopyCommitted,
    S_PostcopyPaused, S_Failed, S_Cancelled, S_Completed, S_Crashed,
    /* destination states */
    D_PostcopyDevice, D_PostcopyActive, D_StartRequested, D_Started,
    D_StartRequestedPaused, D_PostcopyPaused, D_Failed, D_Cancelled, D_Crashed,
    /* messages */
    PackageLoaded, StartRequest, StartGrant, StartDeny
};

chan to_src = [2] of { mtype };     /* return path */
chan to_dst = [2] of { mtype };     /* main channel */

mtype src = S_PostcopyDevice;
mtype dst = D_PostcopyDevice;
bool up = true;                     /* the connection works */
bool granted_sent = false;          /* a StartGrant left the source */

/* Budgets keep the state space finite. */
byte partitions = 0;
byte recoveries = 0;
bool cancel_tried = false;
bool src_crashed = false;
bool dst_crashed = false;
bool ext = true;                    /* faults and user actions may happen */

#define SRC_RUNNING (src == S_Failed || src == S_Cancelled)
#define DST_RUNNING (dst == D_Started || dst == D_PostcopyPaused)

/* A send on a broken connection vanishes. */
#define SEND(ch, m) if :: up -> ch!m :: else -> skip fi

inline drain()
{
    do
    :: to_src?_
    :: to_dst?_
    :: empty(to_src) && empty(to_dst) -> break
    od
}

inline connection_lost()
{
    up = false
}

active proctype Source()
{
    mtype m;
end:
    do
    /* PackageLoaded: postcopy-device -> postcopy-active */
    :: atomic { src == S_PostcopyDevice && to_src?[PackageLoaded] ->
        to_src?m; src = S_PostcopyActive }

    /* StartRequested: commit, then grant (the order is the point) */
    :: atomic { src == S_PostcopyActive && to_src?[StartRequest] ->
        to_src?m;
#ifdef GRANT_BEFORE_COMMIT
        SEND(to_dst, StartGrant); granted_sent = true
#else
        src = S_PostcopyCommitted;
        SEND(to_dst, StartGrant); granted_sent = true
#endif
       }
#ifdef GRANT_BEFORE_COMMIT
    :: atomic { src == S_PostcopyActive && granted_sent ->
        src = S_PostcopyCommitted }
#endif
    /* A repeated request after recovery: grant again */
    :: atomic { src == S_PostcopyCommitted && to_src?[StartRequest] ->
        to_src?m; SEND(to_dst, StartGrant) }
    /* Requests that come too late are dropped */
    :: atomic { (src == S_Failed || src == S_Cancelled) && nempty(to_src) ->
        to_src?m }
    /* A StartRequest before PackageLoaded breaks the protocol: fail */
    :: atomic { src == S_PostcopyDevice && to_src?[StartRequest] ->
        to_src?m; src = S_Failed }

    /* CancelRequested: before the commit the source resumes */
    :: atomic { ext && !cancel_tried &&
        (src == S_PostcopyDevice || src == S_PostcopyActive) ->
        cancel_tried = true; SEND(to_dst, StartDeny); src = S_Cancelled }
    /* ...after it, migrate_cancel is refused */
    :: atomic { ext && !cancel_tried && src == S_PostcopyCommitted ->
        cancel_tried = true }

    /*
     * AckTimeout: the failure detector heard nothing for T while the
     * destination may still be loading the package; the source shuts the
     * connection down (what is in flight may still arrive) and resumes.
     */
    :: atomic { ext && src == S_PostcopyDevice ->
        connection_lost(); src = S_Failed }

    /* ChannelBroken */
    :: atomic { !up && (src == S_PostcopyDevice || src == S_PostcopyActive) ->
        src = S_Failed }
    :: atomic { !up && src == S_PostcopyCommitted -> src = S_PostcopyPaused }

    /* Completed: only once committed and the destination got everything */
    :: atomic { src == S_PostcopyCommitted && up && dst == D_Started &&
        empty(to_dst) -> src = S_Completed }

    /* Crash */
    :: atomic { ext && !src_crashed && !dst_crashed &&
        src != S_Completed && src != S_Crashed ->
        src_crashed = true; src = S_Crashed; connection_lost() }
    od
}

active proctype Destination()
{
    mtype m;
end:
    do
    /* All device state loaded: PONG 0x42, then RUN */
    :: atomic { dst == D_PostcopyDevice ->
        SEND(to_src, PackageLoaded); dst = D_PostcopyActive }
    /* LoadFailed */
    :: atomic { ext && dst == D_PostcopyDevice ->
        dst = D_Failed; connection_lost() }

    /* StartRequested: 'cont' or autostart; never run without a grant */
    :: atomic { ext && dst == D_PostcopyActive ->
        SEND(to_src, StartRequest); dst = D_StartRequested }
    /* StartGranted */
    :: atomic { dst == D_StartRequested && to_dst?[StartGrant] ->
        to_dst?m; dst = D_Started }
    :: atomic { dst == D_Started && to_dst?[StartGrant] -> to_dst?m }
    /* StartDenied: the source cancelled; this side can never start */
    :: atomic { (dst == D_PostcopyDevice || dst == D_PostcopyActive ||
                 dst == D_StartRequested) && to_dst?[StartDeny] ->
        to_dst?m; dst = D_Cancelled }
    :: atomic { (dst == D_Failed || dst == D_Cancelled) && nempty(to_dst) ->
        to_dst?m }

    /* ChannelBroken: without a request the source cannot have committed */
    :: atomic { !up && (dst == D_PostcopyDevice || dst == D_PostcopyActive) ->
        dst = D_Failed }
    :: atomic { !up && dst == D_StartRequested -> dst = D_StartRequestedPaused }
    :: atomic { !up && dst == D_Started -> dst = D_PostcopyPaused }

    /* Crash */
    :: atomic { ext && !src_crashed && !dst_crashed && dst != D_Crashed ->
        dst_crashed = true; dst = D_Crashed; connection_lost() }
    od
}

active proctype Environment()
{
    mtype m;
end:
    do
    /* Faults and user actions stop (or never happen) */
    :: atomic { ext -> ext = false }
    /* The network fails */
    :: atomic { ext && up && partitions < 2 ->
        partitions++; connection_lost() }
    /*
     * A broken connection loses the last message in flight: what still
     * arrives is always a prefix of what was sent, as with TCP.
     */
    :: atomic { !up && len(to_src) == 1 -> to_src?_ }
    :: atomic { !up && len(to_src) == 2 -> to_src?m; to_src?_; to_src!m }
    :: atomic { !up && len(to_dst) == 1 -> to_dst?_ }
    :: atomic { !up && len(to_dst) == 2 -> to_dst?m; to_dst?_; to_dst!m }
    /* migrate-recover + migrate resume, once both sides are paused */
    :: atomic { ext && recoveries < 2 && src == S_PostcopyPaused &&
        (dst == D_StartRequestedPaused || dst == D_PostcopyPaused) ->
        recoveries++;
        drain();        /* a new connection: nothing old arrives */
        up = true;
        src = S_PostcopyCommitted;
        if
        :: dst == D_StartRequestedPaused ->
            dst = D_StartRequested; to_src!StartRequest
        :: dst == D_PostcopyPaused -> dst = D_Started
        fi }
    od
}

/* Never both guests running. */
active proctype Safety()
{
    assert(!(SRC_RUNNING && DST_RUNNING))
}

/* Whenever nothing can move, the user has a way out. */
active proctype WayOut()
{
    timeout ->
    assert(src_crashed || (dst_crashed && granted_sent) ||
           SRC_RUNNING || DST_RUNNING ||
           /* migrate_cancel resumes the source */
           src == S_PostcopyDevice || src == S_PostcopyActive ||
           /* 'cont' starts the destination */
           (dst == D_PostcopyActive && up) ||
           /* post-copy recovery */
           (src == S_PostcopyPaused &&
            (dst == D_StartRequestedPaused || dst == D_PostcopyPaused)))
}
