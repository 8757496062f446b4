/*
 * The post-copy switchover as QEMU runs it: the glue's threads, written
 * by hand, around the switchover table, generated from the shim
 * (gen-model > switchover-table.pml).  Checked by scripts/check-model;
 * what is modelled, what is left out and the results:
 * docs/model.md.
 *
 * Names: table states and events are the library's (PostcopyDevice,
 * OnChannelBroken = MC_EVENT_CHANNEL_BROKEN); M* is the source's
 * MigrationStatus (s->state); messages are the wire's.
 *
 * Threads (proctypes), each step as the C code takes it:
 *   source: SrcMigration (migration_thread), SrcReturnPath
 *           (source_return_path_thread), SrcMain (QMP migrate_cancel,
 *           timers, migration_cleanup; the main loop, under the BQL),
 *           SrcDetector (the failure detector's thread, without it);
 *   destination: DstMain (the load coroutine, bottom halves, QMP cont,
 *           timers), DstListen (postcopy_ram_listen_thread);
 *   Env: the network, crashes, post-copy recovery.
 * A section under switchover_lock is one atomic step (every access to
 * what the lock protects is under it).  What the C code does outside the
 * lock and before a wait, a send or another thread's lock section (reads
 * of s->state or of postcopy_state, sends, waits) is a step of its own;
 * reads of one thread with nothing of that sort in between are merged.
 * A QEMU that dies stops acting (its vCPUs, its sends); its threads are
 * left to run out.
 *
 * Configuration (-D): HANDSHAKE (the start handshake, negotiated or set;
 * without it a stock/upstream peer), RELEASE_RAM, AUTOSTART_ONLY /
 * CONT_ONLY (the destination's start: autostart or 'cont', both
 * explored by default), the bounds below, OPERATOR_ANYTIME.
 * NO_ALLSENT (never commit without a grant), GUEST_PAUSED (above FLAGS).
 * Deliberately broken glue, which must fail: STATE_READ_OUTSIDE_LOCK,
 * GRANT_BEFORE_COMMIT, RELEASE_WITHOUT_QUERY, and the glue as it was
 * before the fixes of findings F1 and F2 (docs/model.md): BUG_RUN_WINDOW
 * (RUN reported to the table before POSTCOPY_INCOMING_RUNNING, and the
 * listen thread deciding on the latter outside the lock),
 * BUG_ACK_BEFORE_RUN (PING 0x42 answered before RUN is processed).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

/*
 * The source's guest runs when post-copy starts (MC_FLAG_GUEST_RUNNING);
 * GUEST_PAUSED: the glue takes it for a guest migrated paused (AllSent
 * commits), while the model's guest still runs, which only makes the
 * safety properties harder to meet.
 */
#ifdef GUEST_PAUSED
#define F_GUEST 0
#else
#define F_GUEST F_GR
#endif
#ifdef HANDSHAKE
#define FLAGS (F_RP | F_HS | F_GUEST)
#define HS 1
#else
#define FLAGS (F_RP | F_GUEST)
#define HS 0
#endif
#ifdef BUG_RUN_WINDOW
#define FIXED_RUN_WINDOW 0
#else
#define FIXED_RUN_WINDOW 1
#endif
#ifdef RELEASE_RAM
#define RRAM 1
#else
#define RRAM 0
#endif
/* Bounds: how many of each fault or user action may happen (0 or 1,
 * MAX_BREAKS network failures, MAX_RECOVERIES recoveries) */
#ifndef MAX_BREAKS
#define MAX_BREAKS 2
#endif
#ifndef MAX_RECOVERIES
#define MAX_RECOVERIES 1
#endif
#ifndef F_CRASH
#define F_CRASH 1           /* either QEMU dies */
#endif
#ifndef F_CANCEL
#define F_CANCEL 1          /* migrate_cancel on the source */
#endif
#ifndef F_LOCAL_ERR
#define F_LOCAL_ERR 1       /* the source fails to save its device state */
#endif
#ifndef F_LOAD_ERR
#define F_LOAD_ERR 1        /* the destination fails to load it */
#endif
#ifndef F_DETECTOR
#define F_DETECTOR 1        /* postcopy-detect-timeout in postcopy-device */
#endif

#include "switchover-table.pml"

/* The source's MigrationStatus */
mtype = {
    MActive, MDevice, MPostcopyDevice, MPostcopyActive, MPostcopyPaused,
    MPostcopyRecover, MCancelling, MCancelled, MFailed, MCompleted
};

/* Messages.  Main channel: source -> destination */
mtype = { Package, PageB, Grant, Deny, Resume, Eof };
/* Return path: destination -> source */
mtype = { Pong42, StartRequest, ShutOk, ShutErr, ResumeAck };

chan m = [4] of { mtype };
chan r = [4] of { mtype };
bit up = 1;             /* the connection works (both directions) */

/* Source */
mtype sst = MActive;    /* s->state */
bit src_alive = 1;
bit src_running = 1;    /* vCPUs */
bit src_bql;            /* the migration thread holds the BQL */
bit src_resume;         /* s->switchover_resume */
bit grant_pending, deny_pending, deny_sent;
bit m_err;              /* error on to_dst_file (a failed write, a shutdown) */
bit s_err;              /* migrate_has_error() */
byte rp_state = 1;      /* return path thread: 0 joined, 1 running, 2 exited */
bit hold_over;          /* MIGRATION_START_HOLD_MS passed */
bit cancel_timer;
bit mt_done;            /* migration_iteration_finish() ran */
bit cleaned;            /* migration_cleanup() ran */
/* Guest memory: page A was sent in pre-copy (the destination has it),
 * page B is dirty and goes in post-copy. */
bit src_A = 1, src_B = 1;
bit B_sent, b_in_m, deferred;
bit ram_released;       /* s->ram_released: release-ram discarded something */

/* Destination */
bit dst_alive = 1;
bit dst_running;
bit autostart;          /* DstMain chooses: autostart, or -S and 'cont' */
bit dst_inmigrate = 1;  /* run state inmigrate: the RUN bottom half did not run */
bit listen_started;
bit dst_loaded;         /* main_thread_load_event */
bit ps_running;         /* postcopy_state == POSTCOPY_INCOMING_RUNNING */
bit run_bh, granted_bh, start_timer;
bit start_refused;      /* mis->start_refused */
bit dst_forced_failed;  /* the glue set 'failed' without the table */
bit dst_paused;         /* listen thread waits in postcopy_pause_incoming() */
bit dst_recover;        /* mis->state == postcopy-recover */
bit dst_has_pkg;        /* device state loaded */
bit dst_B;
bit dst_torn;           /* incoming migration torn down (no more pages) */

/* Faults and user actions, bounded */
bit ext = 1;            /* they may still happen */
byte breaks, recoveries;
bit crashed, local_err, load_err, cancelled_once, conted;
bit b_lost_release;     /* release-ram dropped B before it arrived */

/* Scratch of the keep_prefix() step (reset after use) */
byte k_len, k_keep, k_i;
mtype k_msg;

/*
 * When the operator sends migrate_cancel: with the handshake at any
 * time; without it, once post-copy began, only as the operator's word
 * that the destination does not run the guest: the source shows
 * postcopy-paused in postcopy-device-paused, and the destination is gone
 * or reports failed/cancelled (libvirt refuses to abort a post-copy
 * migration otherwise).  OPERATOR_ANYTIME: at any time in every mode.
 */
#ifdef OPERATOR_ANYTIME
#define OPERATOR_MAY_CANCEL 1
#else
#define OPERATOR_MAY_CANCEL (HS || !IN_POSTCOPY(sst) || \
        (src_st == PostcopyDevicePaused && sst == MPostcopyPaused && \
         (!dst_alive || DST_REPORTS_ENDED)))
#endif

#define IN_POSTCOPY(s) ((s) == MPostcopyDevice || (s) == MPostcopyActive || \
                        (s) == MPostcopyPaused || (s) == MPostcopyRecover)
#define DST_REPORTS_ENDED (dst_forced_failed || dst_st == Failed || \
                           dst_st == Cancelled || dst_torn)

/* A page B that is nowhere any more, because release-ram dropped it */
#define NOTE_B_LOSS() \
    if :: RRAM && !src_B && !dst_B && !b_in_m -> b_lost_release = 1 \
       :: else -> skip fi

/*
 * The destination may run only with the device state and page B at hand:
 * received, in flight, or still at a source it can ask (post-copy's own
 * losses exempt: the source died, release-ram dropped it).
 */
#define DST_MEMORY_OK (dst_has_pkg && (dst_B || b_in_m || \
                       (!dst_torn && (src_B || !src_alive || b_lost_release))))

/* What is in flight when the connection breaks: a prefix arrives. */
inline keep_prefix(ch)
{
    k_len = len(ch);
    k_keep = 0;
    do
    :: k_keep < k_len -> k_keep++
    :: break
    od;
    k_i = 0;
    do
    :: k_i < k_len ->
        ch?k_msg;
        if
        :: k_i < k_keep -> ch!k_msg
        :: else ->
            if
            :: k_msg == PageB -> b_in_m = 0; NOTE_B_LOSS()
            :: else -> skip
            fi
        fi;
        k_i++
    :: else -> break
    od;
    k_len = 0; k_keep = 0; k_i = 0; k_msg = 0
}

/* A network failure, a crash, or either side's qemu_file_shutdown() */
inline conn_break()
{
    if
    :: up -> up = 0; keep_prefix(m); keep_prefix(r)
    :: else -> skip
    fi
}

/* Writes on a broken connection vanish; the source's fail (m_err) */
inline send_m(msg)
{
    atomic {
    if
    :: up -> assert(nfull(m)); m!msg;
        if
        :: msg == PageB -> b_in_m = 1
        :: else -> skip
        fi
    :: else -> m_err = 1;
        if
        :: msg == PageB -> NOTE_B_LOSS()
        :: else -> skip
        fi
    fi
    }
}

inline send_r(msg)
{
    atomic {
        if
        :: up && nfull(r) -> r!msg
        :: !up || full(r) -> skip     /* nobody reads any more: lost */
        fi
    }
}

/* The guest starts: never on both sides, never with missing memory */
inline src_vm_start()
{
    if
    :: src_alive ->
        assert(!dst_running);
        assert(src_A && src_B);
        src_running = 1
    :: else -> skip
    fi
}

inline dst_vm_start()
{
    if
    :: dst_alive ->
        assert(!src_running);
        assert(DST_MEMORY_OK);
        dst_running = 1;
        dst_inmigrate = 0
    :: else -> skip
    fi
}

/* release-ram discards a page: never under a running source */
inline discard_A()
{
    assert(!src_running);
    src_A = 0
}

inline discard_B()
{
    assert(!src_running);
    src_B = 0;
    NOTE_B_LOSS()
}

/*
 * migration_may_release_ram(): in post-copy (s->state, read without the
 * lock) and the table says the source no longer holds the guest; a yes
 * sets s->ram_released (a recovery is refused after that).
 */
#ifdef RELEASE_WITHOUT_QUERY
/* Broken: as before the table was asked, "once past postcopy-device" */
#define MAY_RELEASE_RAM (RRAM && IN_POSTCOPY(sst) && sst != MPostcopyDevice)
#else
#define MAY_RELEASE_RAM (RRAM && IN_POSTCOPY(sst) && !SRC_HOLDS_GUEST(src_st))
#endif

/* migration_source_may_resume() */
#define RESUMABLE ((sst == MPostcopyDevice || sst == MPostcopyActive) && \
                   SRC_HOLDS_GUEST(src_st))

/* ------------------------------------------------------------------ */
/* Source: the migration thread                                        */
/* ------------------------------------------------------------------ */

active proctype SrcMigration()
{
    byte rc, act;
    mtype now, w_sst, w_st;
    bit q, g, d, gave;
    byte dec;

    {
    /* postcopy_start(): under the BQL until the package left */
    atomic { src_bql = 1; src_running = 0 };     /* migration_stop_vm() */
    /* it may fail (still active: SwitchoverFailed there) */
    if
    :: atomic { ext && F_LOCAL_ERR && !local_err -> local_err = 1 }; goto start_fail
    :: skip
    fi;
    /* migration_switchover_enter_device(): SwitchoverStarted, device */
    atomic {
        src_fire(OnSwitchoverStarted, rc, act);
        if
        :: rc == R_OK && sst == MActive -> sst = MDevice
        :: else -> rc = R_INVALID    /* cancelled meanwhile */
        fi
    };
    if
    :: rc != R_OK -> rc = 0; act = 0; goto start_fail
    :: else -> rc = 0; act = 0
    fi;
    /* A local error while saving the device state */
    if
    :: atomic { ext && F_LOCAL_ERR && !local_err -> local_err = 1 }; goto start_fail
    :: skip
    fi;
    /* PackageSent: postcopy-device before the package leaves */
    atomic {
        src_fire(OnPackageSent, rc, act);
        q = (rc == R_OK && sst == MDevice);
        if
        :: q -> sst = MPostcopyDevice
        :: else -> skip
        fi;
        rc = 0; act = 0
    };
    if
    :: !q -> goto start_fail
    :: else -> q = 0
    fi;
    atomic {
        send_m(Package);
        q = m_err
    };
    if
    :: q -> q = 0; goto start_fail     /* qemu_savevm_send_packaged() failed */
    :: else -> skip
    fi;
    /* release-ram, after the package */
    if
    :: RRAM ->
        atomic { q = MAY_RELEASE_RAM; ram_released = ram_released || q };
        if
        :: q -> atomic { discard_A(); q = 0 }
        :: else -> deferred = 1
        fi
    :: else -> skip
    fi;
    src_bql = 0;
    goto loop;

start_fail:
    /* postcopy_start() fail: SwitchoverFailed, unless cancelling; the
     * caller sets the error (migrate_set_error()) */
    atomic {
        s_err = 1;
        now = sst;
        if
        :: now != MCancelling ->
            src_fire(OnSwitchoverFailed, rc, act);
            if
            :: rc == R_OK && (act & A_RESUME_SOURCE) -> src_resume = 1
            :: else -> skip
            fi;
            sst = MFailed
        :: else -> skip
        fi;
        now = 0; rc = 0; act = 0
    };
    src_bql = 0;
    goto after_loop;

loop:
    /*
     * while (migration_is_active()), then migration_iteration_run(): take
     * the answer queued under the lock (migration_source_send_start_answer())
     * and ask whether the deferred release may happen; one step, as no
     * wait separates them.
     */
    atomic {
        if
        :: !(sst == MPostcopyDevice || sst == MPostcopyActive) -> dec = 5
        :: else ->
            g = grant_pending; d = deny_pending;
            grant_pending = 0; deny_pending = 0;
            q = (deferred && MAY_RELEASE_RAM);
            ram_released = ram_released || q
        fi
    };
    if
    :: dec == 5 -> dec = 0; goto after_loop
    :: else -> skip
    fi;
    /* the answer leaves, outside the lock */
    if
    :: g -> atomic { send_m(Grant); g = 0; d = 0 }
    :: !g && d -> atomic { send_m(Deny); deny_sent = 1; d = 0 }
    :: else -> skip
    fi;
    /* the release postcopy_start() deferred */
    if
    :: q -> atomic { discard_A(); deferred = 0; q = 0 }
    :: else -> skip
    fi;
    /* Everything sent?  Otherwise page B, unless background pages are
     * held (start handshake, not granted, first MIGRATION_START_HOLD_MS). */
    atomic {
        w_sst = sst; w_st = src_st;    /* what a wait below waits to change */
        if
        :: !B_sent ->
            dec = ((HS && src_st != PostcopyCommitted &&
                    (sst == MPostcopyDevice || !hold_over)) -> 0 : 1)
        :: else ->
            /* 2: wait, 3: AllSent first, 4: complete */
#ifdef NO_ALLSENT
            /* candidate fix of F2: never commit without a grant */
            dec = ((sst == MPostcopyDevice) -> 2 :
                   ((HS && src_st != PostcopyCommitted) -> 2 : 4))
#else
            /* a commit by AllSent trusts the destination to be past RUN
             * (finding F2 in docs/model.md) */
            dec = ((sst == MPostcopyDevice) -> 2 :
                   ((HS && src_st != PostcopyCommitted) -> (hold_over -> 3 : 2) : 4))
#endif
        fi
    };
    if
    :: dec == 1 ->
        dec = 0; w_sst = 0; w_st = 0;
        send_m(PageB);
        B_sent = 1;
        if
        :: RRAM ->
            /* ram_release_page() */
            atomic { q = MAY_RELEASE_RAM; ram_released = ram_released || q };
            if
            :: q -> atomic { discard_B(); q = 0 }
            :: else -> skip
            fi
        :: else -> skip
        fi;
        goto detect
    :: dec == 3 ->
        dec = 0;
        /* migration_source_all_sent() */
        atomic {
            src_fire(OnAllSent, rc, act);
            q = (rc == R_OK);
            rc = 0; act = 0
        };
        if
        :: q -> q = 0; w_sst = 0; w_st = 0; goto completion
        :: else -> goto end_polling
        fi
    :: dec == 4 -> dec = 0; w_sst = 0; w_st = 0; goto completion
    :: dec == 0 || dec == 2 -> dec = 0; goto end_polling
    fi;

end_polling:
    /*
     * qemu_sem_timedwait() and around again: modelled as waiting for
     * anything that makes the next pass differ.  Waiting for the
     * destination is no deadlock (end label); whether the user still
     * has a way out is WayOut's question.
     */
    if
    :: atomic { (sst != w_sst || src_st != w_st || grant_pending ||
                 deny_pending || (deferred && MAY_RELEASE_RAM) ||
                 /* what migration_detect_error() acts upon */
                 !(sst == MPostcopyDevice || sst == MPostcopyActive) ||
                 m_err || (s_err && RESUMABLE)) ->
        w_sst = 0; w_st = 0 }
    :: atomic { !hold_over -> hold_over = 1; w_sst = 0; w_st = 0 }
    :: !src_alive -> goto end_dead
    fi;
    goto detect;

completion:
    /* migration_completion_postcopy(): the rest, then the end of the stream */
    send_m(Eof);
    /* close_return_path_on_source(): shut it down on error or cancel, join */
    atomic {
        if
        :: s_err || sst == MCancelling || sst == MCancelled -> conn_break()
        :: else -> skip
        fi
    };
    if
    :: atomic { rp_state != 1 -> rp_state = 0 }
    :: !src_alive -> goto end_dead
    fi;
    if
    :: s_err || m_err -> goto completion_fail
    :: else -> skip
    fi;
    atomic {
        src_fire(OnCompleted, rc, act);
        q = (rc == R_OK);
        rc = 0; act = 0
    };
    if
    :: !q -> goto completion_fail
    :: else -> q = 0
    fi;
    sst = MCompleted;        /* migration_completion_end() */
    goto after_loop;

completion_fail:
    /* migration_source_gave_guest_away(): pause for a recovery */
    atomic { gave = (!src_resume && src_st != Active && src_st != Device) };
    if
    :: sst == MPostcopyActive && gave -> gave = 0; m_err = 1; goto detect
    :: else -> gave = 0;
        if
        :: sst != MCancelling -> sst = MFailed
        :: else -> skip
        fi;
        goto after_loop
    fi;

detect:
    /* migration_detect_error(): the state, the errors (reads, one step) */
    atomic {
        now = sst;
        q = (m_err || (s_err && RESUMABLE))
    };
    if
    :: now == MCancelling || now == MCancelled -> now = 0; q = 0; goto after_loop
    :: else -> skip
    fi;
    if
    :: !q -> now = 0; goto loop
    :: q && (now == MPostcopyDevice || now == MPostcopyActive) -> q = 0
    :: q && !(now == MPostcopyDevice || now == MPostcopyActive) ->
        q = 0; now = 0; sst = MFailed; goto after_loop
    fi;
    /* migration_source_channel_broken(): one decision under the lock */
    atomic {
        now = sst;
        src_fire(OnChannelBroken, rc, act);
        if
        :: rc != R_OK && (now == MCancelling || now == MCancelled || now == MFailed) ->
            dec = 1     /* ended already */
        :: rc != R_OK && !(now == MCancelling || now == MCancelled || now == MFailed) ->
            if
            :: SRC_HOLDS_GUEST(src_st) -> src_resume = 1
            :: else -> skip
            fi;
            sst = MFailed; dec = 1
        :: rc == R_OK && (src_st == PostcopyPaused || src_st == PostcopyDevicePaused) ->
            dec = 2     /* postcopy_pause() */
        :: rc == R_OK && !(src_st == PostcopyPaused || src_st == PostcopyDevicePaused) ->
            if
            :: act & A_RESUME_SOURCE -> src_resume = 1
            :: else -> skip
            fi;
            sst = MFailed;   /* every other answer is 'failed' */
            dec = 1
        fi;
        now = 0; rc = 0; act = 0
    };
    if
    :: dec == 1 -> dec = 0; goto after_loop
    :: dec == 2 -> dec = 0
    fi;

pause:
    /* postcopy_pause(): close the return path (join), release the channel */
    atomic {
        if
        :: s_err || sst == MCancelling || sst == MCancelled -> conn_break()
        :: else -> skip
        fi
    };
    if
    :: atomic { rp_state != 1 -> rp_state = 0 }
    :: !src_alive -> goto end_dead
    fi;
    atomic { conn_break() };
    /* migration_source_enter_paused() */
    atomic {
        q = (sst == MCancelling || sst == MCancelled || sst == MFailed);
        if
        :: !q -> sst = MPostcopyPaused
        :: else -> skip
        fi
    };
    if
    :: q -> q = 0; goto after_loop
    :: else -> skip
    fi;
end_paused:
    if
    :: sst != MPostcopyPaused
    :: !src_alive -> goto end_dead
    fi;
    if
    :: sst == MPostcopyRecover -> skip
    :: else -> goto after_loop
    fi;
    /* postcopy_do_resume() */
    send_m(Resume);
    if
    :: (sst != MPostcopyRecover || rp_state != 1 || s_err)
    :: !src_alive -> goto end_dead
    fi;
    if
    :: sst == MPostcopyActive -> goto loop
    :: else -> goto pause
    fi;

after_loop:
    if
    :: sst == MCancelling ->
        /* migration_source_cancel_before_start() */
        if
        :: atomic { (grant_pending || deny_pending) ->
            g = grant_pending; grant_pending = 0; deny_pending = 0 };
            atomic {
                if
                :: g -> send_m(Grant)
                :: else -> send_m(Deny); deny_sent = 1
                fi;
                g = 0
            }
        :: else -> skip
        fi;
        if
        :: deny_sent -> atomic { conn_break() }
        :: else -> skip
        fi
    :: else -> skip
    fi;
    /* migration_iteration_finish() (BQL) */
    atomic { gave = (!src_resume && src_st != Active && src_st != Device) };
    atomic {
        if
        :: (sst == MFailed || sst == MCancelling || sst == MCancelled) && !gave ->
            src_vm_start()
        :: else -> skip
        fi;
        gave = 0;
        mt_done = 1
    }
    }
end_dead:
    skip
}

/* ------------------------------------------------------------------ */
/* Source: the return path thread                                      */
/* ------------------------------------------------------------------ */

active proctype SrcReturnPath()
{
    byte rc, act, nx;
    mtype msg, now;
    bit q;

    {
    skip;
end_idle:
    do
    :: rp_state == 1 ->
end_read:
        do
        /*
         * A message and what the thread does with it, one step: only this
         * thread reads the return path, so nothing can tell the receive
         * from the handling apart except the lock section, which comes
         * right after it (hold points source-rp-*).
         */
        :: atomic { r?msg ->
            if
            :: msg == Pong42 ->
                /* migration_source_package_loaded() */
                src_fire(OnPackageLoaded, rc, act);
                if
                :: rc == R_OK && sst == MPostcopyDevice -> sst = MPostcopyActive
                :: else -> skip
                fi;
                nx = 0
            :: msg == StartRequest ->
                /* migration_source_start_requested() */
#ifdef GRANT_BEFORE_COMMIT
                /* Broken: the grant is queued, the commit recorded later */
                q = (HS && src_st != Cancelled && sst == MPostcopyActive);
                if
                :: q -> grant_pending = 1; nx = 2
                :: else -> nx = 0
                fi
#else
                if
                :: !HS -> q = 0
                :: HS && src_st == Cancelled -> q = 1    /* StartDeny answers */
                :: HS && src_st != Cancelled && sst != MPostcopyActive -> q = 0
                :: HS && src_st != Cancelled && sst == MPostcopyActive ->
                    src_fire(OnStartRequested, rc, act);
                    q = (rc == R_OK && (act & A_SEND_START_GRANT));
                    if
                    :: q -> grant_pending = 1
                    :: else -> skip
                    fi
                fi;
                nx = (q -> 0 : 1);      /* an error ends the thread */
                if
                :: !q -> s_err = 1
                :: else -> skip
                fi
#endif
            :: msg == ShutErr ->
                /* migration_source_peer_load_failed() */
                now = sst;
                if
                :: now == MPostcopyDevice || now == MPostcopyPaused ->
                    src_fire(OnLoadFailed, rc, act);
                    if
                    :: rc == R_OK ->
                        if
                        :: act & A_RESUME_SOURCE -> src_resume = 1
                        :: else -> skip
                        fi;
                        sst = MFailed
                    :: else -> skip
                    fi
                :: else -> skip
                fi;
                s_err = 1; nx = 1
            :: msg == ShutOk -> nx = 1
            :: msg == ResumeAck ->
                /* migrate_handle_rp_resume_ack(): under the lock ... */
                q = (sst == MPostcopyRecover);
                if
                :: q ->
                    src_fire(OnRecovered, rc, act);
                    if
                    :: rc != R_OK -> q = 0; s_err = 1; nx = 1
                    :: else -> nx = 3
                    fi
                :: else -> nx = 0
                fi
            :: else -> nx = 0
            fi;
            msg = 0; now = 0; rc = 0; act = 0; q = 0 };
            if
            :: nx == 1 -> nx = 0; break
#ifdef GRANT_BEFORE_COMMIT
            :: nx == 2 ->
                nx = 0;
                atomic {
                    src_fire(OnStartRequested, rc, act);
                    q = (rc == R_OK && (act & A_SEND_START_GRANT));
                    rc = 0; act = 0
                };
                if
                :: !q -> s_err = 1; break
                :: else -> q = 0
                fi
#endif
            :: nx == 3 ->
                /* ... and the state after it */
                nx = 0;
                if
                :: sst == MPostcopyRecover -> sst = MPostcopyActive
                :: else -> skip
                fi
            :: nx == 0 -> skip
            fi
        :: atomic { empty(r) && !up -> s_err = 1 }; break
        od;
        msg = 0;
        rp_state = 2
    od
    }
end_dead:
    skip
}

/* ------------------------------------------------------------------ */
/* Source: main loop (QMP, timers, cleanup), under the BQL             */
/* ------------------------------------------------------------------ */

active proctype SrcMain()
{
    byte rc, act;
    mtype now, seen;

    {
    skip;
end_main:
    do
    /* migrate_cancel (qmp_migrate_cancel) */
    :: atomic { ext && F_CANCEL && src_alive && !cancelled_once && !src_bql && !mt_done &&
                OPERATOR_MAY_CANCEL ->
        cancelled_once = 1; now = sst };
        if
        :: IN_POSTCOPY(now) ->
            /* migration_source_cancel_postcopy(by_operator) */
#ifdef STATE_READ_OUTSIDE_LOCK
            seen = src_st;         /* broken: read before the lock ... */
#endif
            atomic {
                now = sst;
                if
                :: src_st == PostcopyDevicePaused && now != MPostcopyPaused -> skip
                :: else ->
#ifdef STATE_READ_OUTSIDE_LOCK
                    src_st = seen;     /* ... and acted upon under it */
#endif
                    src_fire(OnCancelRequested, rc, act);
                    if
                    :: rc == R_OK ->
                        if
                        :: act & A_RESUME_SOURCE -> src_resume = 1
                        :: else -> skip
                        fi;
                        if
                        :: act & A_SEND_START_DENY -> deny_pending = 1
                        :: else -> skip
                        fi;
                        sst = MCancelling;
                        cancel_timer = 1
                    :: else -> skip
                    fi
                fi;
                now = 0; seen = 0; rc = 0; act = 0
            }
        :: now == MDevice || now == MActive ->
            /* migration_cancel(): migration_source_cancel_device(), or
             * pre-copy; then the channel is shut down */
            atomic {
                if
                :: sst == MDevice ->
                    src_fire(OnCancelRequested, rc, act);
                    if
                    :: act & A_RESUME_SOURCE -> src_resume = 1
                    :: else -> skip
                    fi;
                    sst = MCancelling
                :: sst == MActive -> sst = MCancelling
                :: else -> skip
                fi;
                if
                :: sst == MCancelling -> conn_break(); m_err = 1
                :: else -> skip
                fi;
                now = 0; rc = 0; act = 0
            }
        :: else -> now = 0
        fi
    /* migration_cancel_timeout(): StartDeny did not leave in time */
    :: atomic { cancel_timer && src_alive && !src_bql ->
        cancel_timer = 0;
        if
        :: sst == MCancelling && !deny_sent -> conn_break(); m_err = 1
        :: else -> skip
        fi }
    /* migration_cleanup(): shut the return path down if failed, join it */
    :: atomic { mt_done && src_alive && !cleaned -> cleaned = 1;
        if
        :: s_err || sst == MCancelling || sst == MCancelled -> conn_break()
        :: else -> skip
        fi };
        atomic { (rp_state != 1 || !src_alive) -> rp_state = 0;
            conn_break();       /* the channels are closed */
            if
            :: sst == MCancelling -> sst = MCancelled
            :: else -> skip
            fi }
    od
    }
end_dead:
    skip
}

/* ------------------------------------------------------------------ */
/* Source: the failure detector's thread (mig/detector, no BQL)        */
/* ------------------------------------------------------------------ */

active proctype SrcDetector()
{
    byte rc, act;

end_detector:
    do
    /* The failure detector in postcopy-device: may the source give up? */
    :: atomic { ext && F_DETECTOR && src_alive && breaks < MAX_BREAKS && up && sst == MPostcopyDevice ->
        src_check(OnAckTimeout, rc, act);
        if
        :: rc == R_OK -> breaks++; s_err = 1; conn_break(); m_err = 1
        :: else -> skip
        fi;
        rc = 0; act = 0 }
    od
}

/* ------------------------------------------------------------------ */
/* Destination: the main thread                                        */
/* ------------------------------------------------------------------ */

/* migration_incoming_request_start_locked(), switchover_lock held */
inline dst_request_start()
{
    dst_fire(OnStartRequested, rc, act);
    if
    :: rc == R_OK && (act & A_SEND_START_REQUEST) ->
        send_r(StartRequest); start_timer = 1
    :: else -> skip
    fi
}

active proctype DstMain()
{
    byte rc, act;
    bit q, cancelled;

    {
    /* autostart, or -S and a later 'cont' */
#if defined(AUTOSTART_ONLY)
    autostart = 1;
#elif defined(CONT_ONLY)
    autostart = 0;
#else
    if
    :: autostart = 1
    :: autostart = 0
    fi;
#endif
    /* process_incoming_migration_co(): pre-copy, then the package */
end_package:
    if
    :: m?Package -> skip
    :: atomic { empty(m) && !up -> dst_forced_failed = 1; dst_loaded = 1 };
        goto end_loop       /* failed before POSTCOPY_LISTEN: never runs */
    fi;
    /* POSTCOPY_LISTEN: the listen thread reports Listen, then this goes on */
    atomic {
        dst_fire(OnListen, rc, act);
        listen_started = 1;
        rc = 0; act = 0
    };
    /* loading the devices may fail */
    if
    :: atomic { ext && F_LOAD_ERR && !load_err -> load_err = 1 }; goto load_fail
    :: skip
    fi;
    /* PING 0x42: migration_incoming_may_ack_package() */
    atomic {
        dst_check(OnRun, rc, act);
        q = (rc == R_OK);
        dst_has_pkg = q;
        rc = 0; act = 0
    };
    if
    :: !q -> goto load_fail
    :: else -> q = 0
    fi;
#ifdef BUG_ACK_BEFORE_RUN
    send_r(Pong42);
#endif
    /* POSTCOPY_RUN: migration_incoming_run() */
    atomic {
        dst_fire(OnRun, rc, act);
        q = (rc == R_OK);
#ifndef BUG_RUN_WINDOW
        /* POSTCOPY_INCOMING_RUNNING with the table's Run, under the lock */
        ps_running = q;
#endif
        rc = 0; act = 0
    };
    if
    :: !q -> goto load_fail
    :: else -> q = 0
    fi;
#ifdef BUG_RUN_WINDOW
    /*
     * As before the fix of F1: postcopy_state_set() after the table's
     * Run, outside the lock, and the listen thread decides between
     * pausing and failing on it
     */
    ps_running = 1;
#endif
#ifndef BUG_ACK_BEFORE_RUN
    /* F2: the acknowledgement leaves only once RUN is processed */
    send_r(Pong42);
#endif
    atomic { run_bh = 1; dst_loaded = 1 };
    goto end_loop;

load_fail:
    /* process_incoming_migration_co() fail */
    atomic { cancelled = (HS && dst_st == Cancelled) };
    if
    :: !cancelled ->
        atomic {
            dst_fire(OnLoadFailed, rc, act);
            if
            :: rc != R_OK -> dst_forced_failed = 1
            :: else -> skip
            fi;
            if
            :: HS -> start_refused = 1
            :: else -> skip
            fi;
            rc = 0; act = 0
        };
        send_r(ShutErr)
    :: else -> skip
    fi;
    cancelled = 0;
    atomic { conn_break(); dst_loaded = 1 };

end_loop:
    do
    /* loadvm_postcopy_handle_run_bh() */
    :: atomic { run_bh && dst_alive -> run_bh = 0 };
        if
        :: autostart && HS ->
            /* migration_incoming_autostart() */
            atomic {
                if
                :: dst_st == Completed -> q = 1
                :: else -> q = 0; dst_request_start()
                fi;
                rc = 0; act = 0
            };
            if
            :: q -> q = 0; atomic { dst_vm_start() }
            :: else -> skip
            fi
        :: autostart && !HS -> atomic { dst_vm_start() }
        :: !autostart -> dst_inmigrate = 0      /* paused, for 'cont' */
        fi
    /* migration_incoming_start_granted_bh() */
    :: atomic { granted_bh && dst_alive -> granted_bh = 0;
        if
        :: !dst_running -> dst_vm_start()
        :: else -> skip
        fi }
    /* QMP 'cont': migration_incoming_may_cont(), migration_incoming_cont() */
    :: atomic { ext && dst_alive && !conted && !autostart &&
                /* without the handshake: on postcopy-active or completed,
                 * as management does */
                (HS || ((dst_st == PostcopyActive || dst_st == Completed) &&
                        !dst_paused && !DST_REPORTS_ENDED)) ->
        conted = 1;
        if
        :: HS ->
            if
            :: start_refused || dst_st == StartRequestedPaused ||
               dst_st == UngrantedPaused || dst_st == Cancelled ||
               dst_st == Failed -> skip      /* refused */
            :: dst_st == Started || dst_st == PostcopyPaused ||
               dst_st == Completed ->
                if
                :: dst_inmigrate -> autostart = 1
                :: else ->
                    if
                    :: !dst_running -> dst_vm_start()
                    :: else -> skip
                    fi
                fi
            :: dst_st == Active || dst_st == PostcopyDevice -> autostart = 1
            :: dst_st == PostcopyActive ->
                if
                :: dst_inmigrate -> autostart = 1   /* the RUN bottom half asks */
                :: else -> dst_request_start()
                fi
            :: else -> skip                          /* start-requested: wait */
            fi
        :: else ->
            if
            :: dst_inmigrate -> autostart = 1
            :: else -> dst_vm_start()
            fi
        fi;
        rc = 0; act = 0 }
    /* migration_incoming_start_timeout(): no answer in time */
    :: atomic { start_timer && dst_alive -> start_timer = 0; q = (dst_st == StartRequested) };
        if
        :: q -> q = 0; atomic { conn_break() }
        :: else -> skip
        fi
    od
    }
end_dead:
    skip
}

/* ------------------------------------------------------------------ */
/* Destination: the listen thread                                      */
/* ------------------------------------------------------------------ */

active proctype DstListen()
{
    byte rc, act, nx;
    mtype msg;
    bit q, started, cancelled;

    {
    skip;
end_wait:
    if
    :: listen_started
    :: !dst_alive -> goto end_dead
    fi;
end_read:
    /*
     * qemu_loadvm_state_main(): a message and its handling up to the
     * first wait or send, one step (only this thread reads the channel).
     */
    do
    :: atomic { m?msg ->
        if
        :: msg == PageB -> dst_B = 1; b_in_m = 0; nx = 0
        :: msg == Grant && !HS -> nx = 1     /* unexpected: -EINVAL */
        :: msg == Grant && HS ->
            /* migration_incoming_start_granted() */
            dst_fire(OnStartGranted, rc, act);
            q = (rc == R_OK);
            if
            :: q && (act & A_START_VCPUS) -> start_timer = 0; granted_bh = 1
            :: q && !(act & A_START_VCPUS) && (act & A_KEEP_STOPPED) ->
                start_refused = 1; q = 0
            :: q && !(act & (A_START_VCPUS | A_KEEP_STOPPED)) -> skip
            :: !q -> skip
            fi;
            if
            :: dst_st == Failed || dst_st == Cancelled -> start_refused = 1
            :: else -> skip
            fi;
            nx = (q -> 0 : 1)
        :: msg == Deny && !HS -> nx = 1
        :: msg == Deny && HS ->
            /* migration_incoming_start_denied() */
            dst_fire(OnStartDenied, rc, act);
            q = (rc == R_OK);
            if
            :: q -> start_refused = 1; start_timer = 0; nx = 2
            :: else -> nx = 1
            fi
        :: msg == Resume ->
            /* loadvm_postcopy_handle_resume() */
            if
            :: dst_recover -> dst_recover = 0; send_r(ResumeAck); nx = 3
            :: else -> nx = 0
            fi
        :: msg == Eof -> nx = 4
        :: else -> nx = 0
        fi;
        msg = 0; rc = 0; act = 0; q = 0 };
        if
        :: nx == 0 -> skip
        :: nx == 1 -> nx = 0; goto error
        :: nx == 2 ->
            /* disks given back (BQL), then RP SHUT; -ECANCELED */
            nx = 0; send_r(ShutOk); goto error
        :: nx == 3 ->
            nx = 0;
            /* migration_incoming_start_recovered() */
            if
            :: HS || FIXED_RUN_WINDOW ->
                atomic {
                    dst_fire(OnRecovered, rc, act);
                    if
                    :: rc == R_OK && (act & A_SEND_START_REQUEST) -> send_r(StartRequest)
                    :: else -> skip
                    fi;
                    rc = 0; act = 0
                }
            :: else -> skip
            fi
        :: nx == 4 -> nx = 0; goto eof
        fi
    :: atomic { empty(m) && !up } -> goto error
    od;

error:
    msg = 0;
#ifndef BUG_RUN_WINDOW
    /*
     * migration_incoming_postcopy_may_pause() (F1): one decision under
     * the lock, on the table's state: report ChannelBroken in every mode
     * and pause iff the answer is a paused state (failed before RUN,
     * paused after it).
     */
    atomic {
        dst_fire(OnChannelBroken, rc, act);
        q = (rc == R_OK && (dst_st == StartRequestedPaused ||
                            dst_st == UngrantedPaused ||
                            dst_st == PostcopyPaused));
        if
        :: HS && rc == R_OK && !q -> start_refused = 1
        :: else -> skip
        fi;
        rc = 0; act = 0
    };
    if
    :: q ->
        q = 0;
        atomic { conn_break(); dst_paused = 1 };
end_paused_fix:
        if
        :: !dst_paused
        :: !dst_alive -> goto end_dead
        fi;
        goto end_read
    :: else -> skip
    fi;
#else
    /* qemu_loadvm_state_main() out: pause instead, if running post-copy */
    if
    :: ps_running ->
        /* migration_incoming_postcopy_may_pause() */
        if
        :: HS ->
            atomic {
                dst_fire(OnChannelBroken, rc, act);
                if
                :: rc != R_OK -> q = 0
                :: rc == R_OK && (dst_st == StartRequestedPaused ||
                                  dst_st == UngrantedPaused ||
                                  dst_st == PostcopyPaused) -> q = 1
                :: else -> q = 0; start_refused = 1
                fi;
                rc = 0; act = 0
            }
        :: else -> q = 1
        fi;
        if
        :: q ->
            q = 0;
            /* postcopy_pause_incoming() */
            atomic { conn_break(); dst_paused = 1 };
end_paused:
            if
            :: !dst_paused
            :: !dst_alive -> goto end_dead
            fi;
            goto end_read
        :: else -> skip
        fi
    :: else -> skip
    fi;
#endif
    /* load_res < 0 */
    atomic {
        started = (HS -> (dst_st == Started || dst_st == PostcopyPaused ||
                          dst_st == Completed) : ps_running);
        cancelled = (HS && dst_st == Cancelled)
    };
    if
    :: !cancelled ->
        atomic {
            dst_fire(OnLoadFailed, rc, act);
            if
            :: rc != R_OK -> dst_forced_failed = 1
            :: else -> skip
            fi;
            if
            :: HS && (dst_st == Failed || dst_st == Cancelled || rc != R_OK) ->
                start_refused = 1
            :: else -> skip
            fi;
            rc = 0; act = 0
        }
    :: else -> skip
    fi;
    if
    :: !started ->
        /* exit-on-error off (libvirt): wait for the load, tear down */
        cancelled = 0;
        if
        :: dst_loaded
        :: !dst_alive -> goto end_dead
        fi;
        atomic { dst_torn = 1; send_r(ShutErr) };
        goto end_done
    :: else ->
        /* exit(EXIT_FAILURE) */
        atomic { dst_alive = 0; dst_running = 0; conn_break() };
        goto end_done
    fi;

eof:
    /* the main thread's load is over (main_thread_load_event) */
    if
    :: dst_loaded
    :: !dst_alive -> goto end_dead
    fi;
    /* migration_incoming_completed() */
    atomic {
        dst_fire(OnCompleted, rc, act);
        if
        :: rc == R_OK && (act & A_START_VCPUS) -> start_timer = 0; granted_bh = 1
        :: else -> skip
        fi;
        rc = 0; act = 0
    };
    /* migration_incoming_state_destroy(): RP SHUT */
    send_r(ShutOk);
end_done:
    skip
    }
end_dead:
    skip
}

/* ------------------------------------------------------------------ */
/* The network, crashes, post-copy recovery                            */
/* ------------------------------------------------------------------ */

/* migrate-recover on the destination + migrate resume=true on the source
 * (refused with release-ram once a page was discarded: s->ram_released) */
#define RECOVERY_POSSIBLE ((!RRAM || !ram_released) && src_alive && dst_alive && \
                           sst == MPostcopyPaused && dst_paused && rp_state == 0)

inline drain(ch)
{
    do
    :: nempty(ch) -> ch?_
    :: empty(ch) -> break
    od
}

active proctype Env()
{
end_env:
    do
    /* the network fails, or migrate-pause on either side */
    :: atomic { ext && up && breaks < MAX_BREAKS -> breaks++; conn_break() }
    /* either QEMU dies */
    :: atomic { ext && F_CRASH && !crashed -> crashed = 1;
        src_alive = 0; src_running = 0; conn_break() }
    :: atomic { ext && F_CRASH && !crashed -> crashed = 1;
        dst_alive = 0; dst_running = 0; conn_break() }
    /* post-copy recovery: a new connection, what was in flight is gone */
    :: atomic { ext && recoveries < MAX_RECOVERIES && RECOVERY_POSSIBLE ->
        recoveries++;
        drain(m); drain(r);
        b_in_m = 0;
        B_sent = dst_B;         /* the received bitmap */
        up = 1; m_err = 0; s_err = 0;
        rp_state = 1;
        sst = MPostcopyRecover;
        dst_recover = 1; dst_paused = 0 }
    /* nothing more happens */
    :: atomic { ext -> ext = 0 }
    od
}

/*
 * Whenever nothing can move any more (faults and user actions may stop
 * at any point), the guest runs somewhere or the user still has a way
 * out: migrate_cancel resumes the source, 'cont' starts the destination,
 * or post-copy recovery can proceed.  Post-copy's own losses are exempt:
 * the source died (it held what was not sent), or the destination died
 * once the source had given the guest away; with release-ram, once it
 * discarded a page, no recovery is possible (migrate_prepare() refuses
 * it, as upstream does for release-ram at all).
 */
active proctype WayOut()
{
    byte rc, act;
    bit cancel_resumes, cont_starts;

    timeout ->
    atomic {
        src_lookup(src_st, OnCancelRequested, rc, src_next, act);
        src_next = src_st;
        cancel_resumes = src_alive && !mt_done && (rc == R_OK) &&
                         (act & A_RESUME_SOURCE) &&
                         (src_st != PostcopyDevicePaused ||
                          (sst == MPostcopyPaused && (!dst_alive || DST_REPORTS_ENDED)));
        cont_starts = dst_alive && !dst_torn && dst_has_pkg &&
                      (HS -> (dst_st == Started || dst_st == Completed ||
                              dst_st == PostcopyPaused ||
                              (dst_st == PostcopyActive && up && !start_refused)) :
                             ((dst_st == PostcopyActive || dst_st == Completed) &&
                              ps_running && !dst_paused && !DST_REPORTS_ENDED));
        assert(!src_alive ||
               (!dst_alive && !SRC_HOLDS_GUEST(src_st)) ||
               src_running || dst_running ||
               cancel_resumes || cont_starts ||
               ((!RRAM || !ram_released) && sst == MPostcopyPaused && dst_paused) ||
               (RRAM && ram_released && sst == MPostcopyPaused))
    }
}
