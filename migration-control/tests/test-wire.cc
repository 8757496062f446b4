// Unit tests of the wire codec: round trips, exact byte layout, every
// wrong length, invalid values, small buffers.  Output is TAP.
//
// SPDX-License-Identifier: GPL-2.0-or-later

#include "migration-control-wire.h"
#include "tap.h"

#include <cstdio>
#include <cstring>
#include <string>

namespace {

using tap::check;

const uint32_t kSeqs[] = {1, 2, 0x42, 0x1234, 0x01020304, 0x7fffffff, 0x80000000,
                          0xfffffffe, 0xffffffff};
const McDenyReason kReasons[] = {MC_DENY_CANCELLED, MC_DENY_FAILED};

std::string hex(uint32_t v)
{
    char b[16];
    std::snprintf(b, sizeof(b), "0x%x", v);
    return b;
}

// StartRequest and StartGrant: be32 seq.
using EncodeSeq = size_t (*)(uint32_t, uint8_t *, size_t);
using DecodeSeq = int (*)(const uint8_t *, size_t, uint32_t *);

void test_seq_message(const char *name, EncodeSeq enc, DecodeSeq dec, size_t len)
{
    const std::string n = name;
    check(len == 4, n + ": payload is 4 bytes");

    bool rt = true, layout = true;
    for (uint32_t seq : kSeqs) {
        uint8_t buf[16];
        std::memset(buf, 0xaa, sizeof(buf));
        const size_t w = enc(seq, buf, sizeof(buf));
        layout = layout && w == len && buf[0] == uint8_t(seq >> 24) &&
                 buf[1] == uint8_t(seq >> 16) && buf[2] == uint8_t(seq >> 8) &&
                 buf[3] == uint8_t(seq) && buf[4] == 0xaa;
        uint32_t out = 0;
        rt = rt && dec(buf, w, &out) == MC_WIRE_OK && out == seq;
    }
    check(layout, n + ": encodes be32 seq, writes nothing past it");
    check(rt, n + ": decode(encode(seq)) == seq");

    const uint8_t known[] = {0x01, 0x02, 0x03, 0x04};
    uint32_t out = 0;
    check(dec(known, sizeof(known), &out) == MC_WIRE_OK && out == 0x01020304,
          n + ": decodes 01 02 03 04 as 0x01020304");

    // Every wrong length 0..16 is BAD_LENGTH and leaves the output alone.
    uint8_t ones[16];
    std::memset(ones, 0x11, sizeof(ones));
    for (size_t l = 0; l <= 16; l++) {
        if (l == len) {
            continue;
        }
        out = 0xdeadbeef;
        check(dec(ones, l, &out) == MC_WIRE_BAD_LENGTH && out == 0xdeadbeef,
              n + ": length " + std::to_string(l) + " -> bad-length, output kept");
    }
    out = 0xdeadbeef;
    check(dec(nullptr, 0, &out) == MC_WIRE_BAD_LENGTH && out == 0xdeadbeef,
          n + ": NULL buffer, length 0 -> bad-length");

    const uint8_t zero[4] = {0, 0, 0, 0};
    out = 0xdeadbeef;
    check(dec(zero, 4, &out) == MC_WIRE_BAD_VALUE && out == 0xdeadbeef,
          n + ": seq 0 -> bad-value, output kept");
    check(dec(known, 4, nullptr) == MC_WIRE_OK, n + ": NULL output allowed");

    uint8_t buf[16];
    std::memset(buf, 0xaa, sizeof(buf));
    check(enc(0, buf, sizeof(buf)) == 0 && buf[0] == 0xaa,
          n + ": encoding seq 0 refused, nothing written");
    bool small = true;
    for (size_t s = 0; s < len; s++) {
        std::memset(buf, 0xaa, sizeof(buf));
        small = small && enc(7, buf, s) == 0 && buf[0] == 0xaa;
    }
    check(small, n + ": buffer too small (0..3) refused, nothing written");
    check(enc(7, nullptr, 0) == 0, n + ": NULL buffer refused");
    check(enc(7, buf, len) == len, n + ": buffer of exactly the length accepted");
}

void test_start_deny()
{
    check(MC_START_DENY_LEN == 8, "StartDeny: payload is 8 bytes");

    bool rt = true, layout = true;
    for (uint32_t seq : kSeqs) {
        for (McDenyReason r : kReasons) {
            uint8_t buf[16];
            std::memset(buf, 0xaa, sizeof(buf));
            const size_t w = mc_wire_encode_start_deny(seq, r, buf, sizeof(buf));
            layout = layout && w == MC_START_DENY_LEN && buf[0] == uint8_t(seq >> 24) &&
                     buf[3] == uint8_t(seq) && buf[4] == 0 && buf[5] == 0 &&
                     buf[6] == 0 && buf[7] == uint8_t(r) && buf[8] == 0xaa;
            uint32_t s = 0;
            McDenyReason o = McDenyReason(0);
            rt = rt && mc_wire_decode_start_deny(buf, w, &s, &o) == MC_WIRE_OK &&
                 s == seq && o == r;
        }
    }
    check(layout, "StartDeny: encodes be32 seq, be32 reason, nothing past it");
    check(rt, "StartDeny: decode(encode(seq, reason)) == (seq, reason)");

    const uint8_t known[] = {0, 0, 0x10, 0x01, 0, 0, 0, 2};
    uint32_t s = 0;
    McDenyReason r = McDenyReason(0);
    check(mc_wire_decode_start_deny(known, 8, &s, &r) == MC_WIRE_OK && s == 0x1001 &&
          r == MC_DENY_FAILED,
          "StartDeny: decodes 00 00 10 01 00 00 00 02 as (0x1001, failed)");

    uint8_t ones[16];
    std::memset(ones, 0x11, sizeof(ones));
    for (size_t l = 0; l <= 16; l++) {
        if (l == MC_START_DENY_LEN) {
            continue;
        }
        s = 0xdeadbeef;
        r = McDenyReason(3);
        check(mc_wire_decode_start_deny(ones, l, &s, &r) == MC_WIRE_BAD_LENGTH &&
              s == 0xdeadbeef && r == McDenyReason(3),
              "StartDeny: length " + std::to_string(l) + " -> bad-length, outputs kept");
    }
    s = 0xdeadbeef;
    check(mc_wire_decode_start_deny(nullptr, 0, &s, &r) == MC_WIRE_BAD_LENGTH &&
          s == 0xdeadbeef,
          "StartDeny: NULL buffer, length 0 -> bad-length");

    const uint8_t seq0[] = {0, 0, 0, 0, 0, 0, 0, 1};
    s = 0xdeadbeef;
    r = McDenyReason(3);
    check(mc_wire_decode_start_deny(seq0, 8, &s, &r) == MC_WIRE_OK &&
          s == 0 && r == MC_DENY_CANCELLED,
          "StartDeny: seq 0 (no request yet) is valid");

    const uint32_t bad_reasons[] = {0, 3, 4, 0x100, 0x01000001, 0x80000001,
                                    0xffffffff};
    for (uint32_t br : bad_reasons) {
        uint8_t buf[8] = {0, 0, 0, 9};
        buf[4] = uint8_t(br >> 24);
        buf[5] = uint8_t(br >> 16);
        buf[6] = uint8_t(br >> 8);
        buf[7] = uint8_t(br);
        s = 0xdeadbeef;
        r = McDenyReason(3);
        check(mc_wire_decode_start_deny(buf, 8, &s, &r) == MC_WIRE_BAD_VALUE &&
              s == 0xdeadbeef && r == McDenyReason(3),
              "StartDeny: reason " + hex(br) + " -> bad-value, outputs kept");
        uint8_t out[16];
        std::memset(out, 0xaa, sizeof(out));
        check(mc_wire_encode_start_deny(9, McDenyReason(br), out, sizeof(out)) == 0 &&
              out[0] == 0xaa,
              "StartDeny: encoding reason " + hex(br) + " refused, nothing written");
    }
    check(mc_wire_decode_start_deny(known, 8, nullptr, nullptr) == MC_WIRE_OK,
          "StartDeny: NULL outputs allowed");

    uint8_t buf[16];
    std::memset(buf, 0xaa, sizeof(buf));
    check(mc_wire_encode_start_deny(0, MC_DENY_CANCELLED, buf, sizeof(buf)) ==
              MC_START_DENY_LEN &&
              buf[3] == 0 && buf[7] == MC_DENY_CANCELLED,
          "StartDeny: seq 0 (before any request) encodes");
    bool small = true;
    for (size_t sz = 0; sz < MC_START_DENY_LEN; sz++) {
        std::memset(buf, 0xaa, sizeof(buf));
        small = small && mc_wire_encode_start_deny(5, MC_DENY_FAILED, buf, sz) == 0 &&
                buf[0] == 0xaa;
    }
    check(small, "StartDeny: buffer too small (0..7) refused, nothing written");
    check(mc_wire_encode_start_deny(5, MC_DENY_FAILED, nullptr, 0) == 0,
          "StartDeny: NULL buffer refused");
    check(mc_wire_encode_start_deny(5, MC_DENY_FAILED, buf, MC_START_DENY_LEN) ==
          MC_START_DENY_LEN,
          "StartDeny: buffer of exactly the length accepted");
}

void test_cross_message()
{
    // A StartGrant payload is not a StartDeny and vice versa: the lengths differ.
    uint8_t grant[4], deny[8];
    mc_wire_encode_start_grant(3, grant, sizeof(grant));
    mc_wire_encode_start_deny(3, MC_DENY_CANCELLED, deny, sizeof(deny));
    uint32_t s;
    McDenyReason r;
    check(mc_wire_decode_start_deny(grant, sizeof(grant), &s, &r) == MC_WIRE_BAD_LENGTH,
          "a StartGrant payload is not a valid StartDeny");
    check(mc_wire_decode_start_grant(deny, sizeof(deny), &s) == MC_WIRE_BAD_LENGTH,
          "a StartDeny payload is not a valid StartGrant");
}

void test_pong_and_names()
{
    check(MC_PING_PACKAGE_LOADED == 0x42u && MC_PING_HEARTBEAT == 0x48u,
          "PING values: package loaded 0x42, heartbeat 0x48");
    check(mc_wire_classify_pong(0x42) == MC_PONG_PACKAGE_LOADED,
          "PONG 0x42 is package-loaded");
    check(mc_wire_classify_pong(0x48) == MC_PONG_HEARTBEAT, "PONG 0x48 is heartbeat");
    bool other = true;
    const uint32_t others[] = {0, 1, 0x41, 0x43, 0x47, 0x49, 0x4200, 0x42000000,
                               0x48000000, 0x142, 0xffffffff};
    for (uint32_t v : others) {
        other = other && mc_wire_classify_pong(v) == MC_PONG_OTHER;
    }
    check(other, "any other PONG value (0, 0x41, 0x4200, byte-swapped, ...) is other");

    // Negotiation of the start handshake
    check(mc_wire_classify_pong(MC_PING_HANDSHAKE_ACCEPT) == MC_PONG_HANDSHAKE_ACCEPTED &&
          mc_wire_classify_pong(MC_PING_HANDSHAKE_OFFER) == MC_PONG_HANDSHAKE_DECLINED &&
          mc_wire_classify_pong(MC_PING_HANDSHAKE_CONFIRM) == MC_PONG_HANDSHAKE_CONFIRMED,
          "handshake PONGs: accept, echoed offer (declined), echoed confirm");
    check(mc_wire_pong_for_ping(MC_PING_HANDSHAKE_OFFER, 1) == MC_PING_HANDSHAKE_ACCEPT &&
          mc_wire_pong_for_ping(MC_PING_HANDSHAKE_OFFER, 0) == MC_PING_HANDSHAKE_OFFER,
          "an offer is accepted only where negotiation is on, else echoed");
    bool echoes = true;
    const uint32_t pings[] = {0, 1, 2, 3, 4, MC_PING_PACKAGE_LOADED, MC_PING_HEARTBEAT,
                              MC_PING_HANDSHAKE_CONFIRM, MC_PING_HANDSHAKE_ACCEPT,
                              0xffffffff};
    for (uint32_t v : pings) {
        echoes = echoes && mc_wire_pong_for_ping(v, 1) == v &&
                 mc_wire_pong_for_ping(v, 0) == v;
    }
    check(echoes, "every other PING is echoed, as upstream QEMU does");
    const uint32_t upstream[] = {1, 2, 3, 4, MC_PING_PACKAGE_LOADED};
    bool apart = true;
    for (uint32_t v : upstream) {
        apart = apart && mc_wire_classify_pong(v) != MC_PONG_HANDSHAKE_ACCEPTED &&
                mc_wire_classify_pong(v) != MC_PONG_HANDSHAKE_DECLINED &&
                mc_wire_classify_pong(v) != MC_PONG_HANDSHAKE_CONFIRMED;
    }
    check(apart, "upstream's PING values are never taken for the negotiation");

    check(std::strcmp(mc_wire_result_name(MC_WIRE_OK), "ok") == 0 &&
          std::strcmp(mc_wire_result_name(MC_WIRE_BAD_LENGTH), "bad-length") == 0 &&
          std::strcmp(mc_wire_result_name(MC_WIRE_BAD_VALUE), "bad-value") == 0 &&
          std::strcmp(mc_wire_result_name(-3), "unknown") == 0 &&
          std::strcmp(mc_wire_result_name(1), "unknown") == 0,
          "result names: ok, bad-length, bad-value, unknown");
    check(std::strcmp(mc_deny_reason_name(MC_DENY_CANCELLED), "cancelled") == 0 &&
          std::strcmp(mc_deny_reason_name(MC_DENY_FAILED), "failed") == 0 &&
          std::strcmp(mc_deny_reason_name(McDenyReason(0)), "unknown") == 0 &&
          std::strcmp(mc_deny_reason_name(McDenyReason(3)), "unknown") == 0,
          "deny reason names: cancelled, failed, unknown");
}

} // namespace

int main()
{
    test_seq_message("StartRequest", mc_wire_encode_start_request,
                     mc_wire_decode_start_request, MC_START_REQUEST_LEN);
    test_seq_message("StartGrant", mc_wire_encode_start_grant,
                     mc_wire_decode_start_grant, MC_START_GRANT_LEN);
    test_start_deny();
    test_cross_message();
    test_pong_and_names();
    return tap::finish();
}
