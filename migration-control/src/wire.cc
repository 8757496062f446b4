// Wire codec of the start-handshake messages and this fork's PONG values.
//
// SPDX-License-Identifier: GPL-2.0-or-later

#include "migration-control-wire.h"

#include <cstring>

namespace {

// A C caller may pass any 32-bit value as an McDenyReason.  In C++ an
// enumeration without a fixed underlying type only has the values of its
// smallest bit-field (0..3 here), so loading another value through the
// enum type is undefined (clang's and gcc's -fsanitize=enum report it).
// Read the argument's representation instead.
static_assert(sizeof(McDenyReason) == sizeof(uint32_t), "McDenyReason is 32-bit");

uint32_t reason_value(const McDenyReason *r)
{
    uint32_t v;
    std::memcpy(&v, r, sizeof(v));
    return v;
}

void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = uint8_t(v >> 24);
    p[1] = uint8_t(v >> 16);
    p[2] = uint8_t(v >> 8);
    p[3] = uint8_t(v);
}

uint32_t get_be32(const uint8_t *p)
{
    return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 |
           uint32_t(p[3]);
}

bool valid_reason(uint32_t r)
{
    return r == MC_DENY_CANCELLED || r == MC_DENY_FAILED;
}

// StartRequest and StartGrant share one layout: be32 seq.
size_t encode_seq(uint32_t seq, uint8_t *buf, size_t size)
{
    if (seq == 0 || !buf || size < 4) {
        return 0;
    }
    put_be32(buf, seq);
    return 4;
}

int decode_seq(const uint8_t *buf, size_t len, uint32_t *seq)
{
    if (len != 4 || !buf) {
        return MC_WIRE_BAD_LENGTH;
    }
    const uint32_t s = get_be32(buf);
    if (s == 0) {
        return MC_WIRE_BAD_VALUE;
    }
    if (seq) {
        *seq = s;
    }
    return MC_WIRE_OK;
}

} // namespace

extern "C" {

size_t mc_wire_encode_start_request(uint32_t seq, uint8_t *buf, size_t size)
{
    static_assert(MC_START_REQUEST_LEN == 4, "StartRequest is be32 seq");
    return encode_seq(seq, buf, size);
}

size_t mc_wire_encode_start_grant(uint32_t seq, uint8_t *buf, size_t size)
{
    static_assert(MC_START_GRANT_LEN == 4, "StartGrant is be32 seq");
    return encode_seq(seq, buf, size);
}

size_t mc_wire_encode_start_deny(uint32_t seq, McDenyReason reason, uint8_t *buf,
                                 size_t size)
{
    static_assert(MC_START_DENY_LEN == 8, "StartDeny is be32 seq, be32 reason");
    // seq 0: the source denies before it received any StartRequest.
    const uint32_t r = reason_value(&reason);
    if (!valid_reason(r) || !buf || size < MC_START_DENY_LEN) {
        return 0;
    }
    put_be32(buf, seq);
    put_be32(buf + 4, r);
    return MC_START_DENY_LEN;
}

int mc_wire_decode_start_request(const uint8_t *buf, size_t len, uint32_t *seq)
{
    return decode_seq(buf, len, seq);
}

int mc_wire_decode_start_grant(const uint8_t *buf, size_t len, uint32_t *seq)
{
    return decode_seq(buf, len, seq);
}

int mc_wire_decode_start_deny(const uint8_t *buf, size_t len, uint32_t *seq,
                              McDenyReason *reason)
{
    if (len != MC_START_DENY_LEN || !buf) {
        return MC_WIRE_BAD_LENGTH;
    }
    const uint32_t s = get_be32(buf);
    const uint32_t r = get_be32(buf + 4);
    if (!valid_reason(r)) {
        return MC_WIRE_BAD_VALUE;
    }
    if (seq) {
        *seq = s;
    }
    if (reason) {
        *reason = McDenyReason(r);
    }
    return MC_WIRE_OK;
}

McPongKind mc_wire_classify_pong(uint32_t value)
{
    switch (value) {
    case MC_PING_PACKAGE_LOADED:
        return MC_PONG_PACKAGE_LOADED;
    case MC_PING_HEARTBEAT:
        return MC_PONG_HEARTBEAT;
    case MC_PING_HANDSHAKE_ACCEPT:
        return MC_PONG_HANDSHAKE_ACCEPTED;
    case MC_PING_HANDSHAKE_OFFER:
        return MC_PONG_HANDSHAKE_DECLINED;
    case MC_PING_HANDSHAKE_CONFIRM:
        return MC_PONG_HANDSHAKE_CONFIRMED;
    default:
        return MC_PONG_OTHER;
    }
}

uint32_t mc_wire_pong_for_ping(uint32_t value, int accept_handshake)
{
    if (value == MC_PING_HANDSHAKE_OFFER && accept_handshake) {
        return MC_PING_HANDSHAKE_ACCEPT;
    }
    return value;
}

const char *mc_wire_result_name(int result)
{
    switch (result) {
    case MC_WIRE_OK:
        return "ok";
    case MC_WIRE_BAD_LENGTH:
        return "bad-length";
    case MC_WIRE_BAD_VALUE:
        return "bad-value";
    default:
        return "unknown";
    }
}

const char *mc_deny_reason_name(McDenyReason r)
{
    switch (reason_value(&r)) {
    case MC_DENY_CANCELLED:
        return "cancelled";
    case MC_DENY_FAILED:
        return "failed";
    default:
        return "unknown";
    }
}

} // extern "C"
