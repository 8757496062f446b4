/*
 * migration-control wire codec: the payloads of the messages this QEMU
 * fork adds to the migration stream (main channel) and to the return
 * path, as a C ABI over a C++17 implementation.
 *
 * Pure: no I/O, no allocation.  QEMU frames the messages (command or
 * return-path message type and length) itself and hands the payload
 * bytes to the decoders, or takes them from the encoders.  Every
 * multi-byte value is big-endian.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef MIGRATION_CONTROL_WIRE_H
#define MIGRATION_CONTROL_WIRE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * PING values this fork uses on the main channel (the PONG on the return
 * path echoes them).
 *
 * MC_PING_PACKAGE_LOADED: placed in the post-copy package just before
 * POSTCOPY_RUN; its PONG tells the source that the destination loaded all
 * non-postcopiable device state.  Same value as upstream QEMU 10.2.
 *
 * MC_PING_HEARTBEAT: the post-copy failure detector's heartbeat
 * (postcopy-detect-timeout), sent by the source when due, the first one in
 * the post-copy package.  Its PONG is a sign of life, never an
 * acknowledgement.  This fork only.
 */
#define MC_PING_PACKAGE_LOADED 0x42u
#define MC_PING_HEARTBEAT      0x48u

/*
 * In-band negotiation of the post-copy start handshake, when neither side
 * set the capability (this fork only; -global
 * migration.x-postcopy-start-handshake-negotiate=off turns it off).
 *
 * MC_PING_HANDSHAKE_OFFER: sent by the source right after the return path
 * opened.  A QEMU that does not know it (any upstream QEMU) echoes it, as
 * it echoes every PING: the offer is declined.  This fork answers
 * MC_PING_HANDSHAKE_ACCEPT instead.
 *
 * MC_PING_HANDSHAKE_CONFIRM: sent by the source at the switchover, in the
 * post-copy package before POSTCOPY_LISTEN, if and only if it got the
 * acceptance: from then on both sides run the handshake.  A destination
 * that accepted but receives no confirmation runs without it.
 *
 * The values are far from upstream's PING values (1 to 4, 0x42).
 */
#define MC_PING_HANDSHAKE_OFFER   0x5053484fu   /* "PSHO" */
#define MC_PING_HANDSHAKE_ACCEPT  0x50534841u   /* "PSHA", only as a PONG */
#define MC_PING_HANDSHAKE_CONFIRM 0x50534843u   /* "PSHC" */

/*
 * Wire numbers of the start-handshake messages.  Upstream numbers its
 * MIG_CMD_* (main channel) and MIG_RP_MSG_* (return path) densely from 0,
 * and its next messages take the next free numbers; this fork's messages
 * live in a range of their own, 0x4600 + n ('F' in the high byte), so that
 * a message upstream adds later never collides with one of them.  Each
 * side rejects a number it does not know (the migration fails with
 * "MIG_CMD 0x... unknown" or "Received invalid message 0x...").  Only sent
 * once the start handshake is on for the migration, i.e. never to a peer
 * that is not this fork.
 */
#define MC_WIRE_CMD_START_GRANT   0x4601u   /* main channel: StartGrant */
#define MC_WIRE_CMD_START_DENY    0x4602u   /* main channel: StartDeny */
#define MC_WIRE_RP_START_REQUEST  0x4601u   /* return path: StartRequest */

/* Payload sizes of the start-handshake messages. */
#define MC_START_REQUEST_LEN 4   /* RP StartRequest: be32 seq */
#define MC_START_GRANT_LEN   4   /* main channel StartGrant: be32 seq */
#define MC_START_DENY_LEN    8   /* main channel StartDeny: be32 seq, be32 reason */

typedef enum McDenyReason {
    MC_DENY_CANCELLED = 1,  /* migrate_cancel on the source */
    MC_DENY_FAILED    = 2,  /* the source failed and resumed its guest */
} McDenyReason;

typedef enum McWireResult {
    MC_WIRE_OK = 0,
    MC_WIRE_BAD_LENGTH = -1,  /* payload length differs from the message's */
    MC_WIRE_BAD_VALUE = -2,   /* seq 0, unknown reason, ... */
} McWireResult;

typedef enum McPongKind {
    MC_PONG_OTHER,            /* not one of this fork's values */
    MC_PONG_PACKAGE_LOADED,
    MC_PONG_HEARTBEAT,
    MC_PONG_HANDSHAKE_ACCEPTED,  /* the destination accepted the offer */
    MC_PONG_HANDSHAKE_DECLINED,  /* the offer echoed: an upstream QEMU */
    MC_PONG_HANDSHAKE_CONFIRMED, /* the confirmation echoed */
} McPongKind;

/*
 * Encoders return the number of bytes written, 0 if buf is too small or
 * the arguments are invalid (seq 0, bad reason).  StartDeny accepts
 * seq 0: the source cancelled before it received any StartRequest.
 */
size_t mc_wire_encode_start_request(uint32_t seq, uint8_t *buf, size_t size);
size_t mc_wire_encode_start_grant(uint32_t seq, uint8_t *buf, size_t size);
size_t mc_wire_encode_start_deny(uint32_t seq, McDenyReason reason,
                                 uint8_t *buf, size_t size);

/*
 * Decoders: len must be exactly the message's length; seq must be
 * non-zero (except in StartDeny, see above).  Return McWireResult; outputs are written only on
 * MC_WIRE_OK.  NULL buf with len 0 is allowed (-> BAD_LENGTH).
 */
int mc_wire_decode_start_request(const uint8_t *buf, size_t len, uint32_t *seq);
int mc_wire_decode_start_grant(const uint8_t *buf, size_t len, uint32_t *seq);
int mc_wire_decode_start_deny(const uint8_t *buf, size_t len, uint32_t *seq,
                              McDenyReason *reason);

/* Which of this fork's PONGs @value is. */
McPongKind mc_wire_classify_pong(uint32_t value);

/*
 * Destination: the PONG value that answers PING @value: an echo, except
 * that an offer of the start handshake is accepted when @accept_handshake
 * (this side may negotiate it).
 */
uint32_t mc_wire_pong_for_ping(uint32_t value, int accept_handshake);

/* Stable names for messages and traces. */
const char *mc_wire_result_name(int result);     /* "ok", "bad-length", "bad-value", "unknown" */
const char *mc_deny_reason_name(McDenyReason r); /* "cancelled", "failed", "unknown" */

#ifdef __cplusplus
}
#endif

#endif /* MIGRATION_CONTROL_WIRE_H */
