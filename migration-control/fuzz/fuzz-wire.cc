// libFuzzer target: every decoder of the wire codec on arbitrary bytes.
//
// The whole input is the payload.  Each decoder must return one of the
// McWireResult values, refuse any length but its own, leave its outputs
// alone unless it returns MC_WIRE_OK, and what it accepts must encode
// back to exactly the same bytes.
//
// SPDX-License-Identifier: GPL-2.0-or-later

#include "migration-control-wire.h"
#include "input.h"

#include <cstring>
#include <vector>

namespace {

const uint32_t kSentinel = 0xdeadbeef;
// In the enum's value range (0..3) but not a reason: comparing it is defined.
const McDenyReason kReasonSentinel = McDenyReason(3);

bool valid_result(int r)
{
    return r == MC_WIRE_OK || r == MC_WIRE_BAD_LENGTH || r == MC_WIRE_BAD_VALUE;
}

template <typename Decode, typename Encode>
void check_seq_message(const uint8_t *data, size_t size, size_t len, Decode dec,
                       Encode enc)
{
    uint32_t seq = kSentinel;
    const int r = dec(data, size, &seq);
    FUZZ_ASSERT(valid_result(r));
    FUZZ_ASSERT(std::strcmp(mc_wire_result_name(r), "unknown") != 0);
    if (size != len) {
        FUZZ_ASSERT(r == MC_WIRE_BAD_LENGTH);
    }
    if (r != MC_WIRE_OK) {
        FUZZ_ASSERT(seq == kSentinel);
        return;
    }
    FUZZ_ASSERT(seq != 0);
    // Round trip: the accepted payload is exactly what the encoder writes,
    // and the encoder never writes past the message, even given more room.
    uint8_t out[32];
    std::memset(out, 0xa5, sizeof(out));
    FUZZ_ASSERT(enc(seq, out, sizeof(out)) == len);
    FUZZ_ASSERT(std::memcmp(out, data, len) == 0);
    FUZZ_ASSERT(out[len] == 0xa5);
    // Any smaller buffer is refused without writing.
    std::memset(out, 0xa5, sizeof(out));
    FUZZ_ASSERT(enc(seq, out, len - 1) == 0 && out[0] == 0xa5);
    // Decoding without an output pointer gives the same verdict.
    FUZZ_ASSERT(dec(data, size, nullptr) == MC_WIRE_OK);
}

void check_start_deny(const uint8_t *data, size_t size)
{
    uint32_t seq = kSentinel;
    McDenyReason reason = kReasonSentinel;
    const int r = mc_wire_decode_start_deny(data, size, &seq, &reason);
    FUZZ_ASSERT(valid_result(r));
    if (size != MC_START_DENY_LEN) {
        FUZZ_ASSERT(r == MC_WIRE_BAD_LENGTH);
    }
    if (r != MC_WIRE_OK) {
        FUZZ_ASSERT(seq == kSentinel && reason == kReasonSentinel);
        return;
    }
    // seq 0 is valid in a StartDeny: the source cancelled before any request.
    FUZZ_ASSERT(reason == MC_DENY_CANCELLED || reason == MC_DENY_FAILED);
    FUZZ_ASSERT(std::strcmp(mc_deny_reason_name(reason), "unknown") != 0);
    uint8_t out[32];
    std::memset(out, 0xa5, sizeof(out));
    FUZZ_ASSERT(mc_wire_encode_start_deny(seq, reason, out, sizeof(out)) ==
                MC_START_DENY_LEN);
    FUZZ_ASSERT(std::memcmp(out, data, MC_START_DENY_LEN) == 0);
    FUZZ_ASSERT(out[MC_START_DENY_LEN] == 0xa5);
    std::memset(out, 0xa5, sizeof(out));
    FUZZ_ASSERT(mc_wire_encode_start_deny(seq, reason, out, MC_START_DENY_LEN - 1) == 0 &&
                out[0] == 0xa5);
    FUZZ_ASSERT(mc_wire_decode_start_deny(data, size, nullptr, nullptr) == MC_WIRE_OK);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    // A copy of exactly @size bytes on the heap, so that ASan catches any
    // read past the payload; NULL for an empty input, as QEMU may pass.
    std::vector<uint8_t> copy(data, data + size);
    const uint8_t *buf = size ? copy.data() : nullptr;

    check_seq_message(buf, size, MC_START_REQUEST_LEN, mc_wire_decode_start_request,
                      mc_wire_encode_start_request);
    check_seq_message(buf, size, MC_START_GRANT_LEN, mc_wire_decode_start_grant,
                      mc_wire_encode_start_grant);
    check_start_deny(buf, size);

    // The PONG value of a return-path message is a be32 too.
    fuzz::Input in(data, size);
    const uint32_t v = in.u32();
    const McPongKind k = mc_wire_classify_pong(v);
    FUZZ_ASSERT(k == (v == MC_PING_PACKAGE_LOADED ? MC_PONG_PACKAGE_LOADED
                      : v == MC_PING_HEARTBEAT    ? MC_PONG_HEARTBEAT
                                                  : MC_PONG_OTHER));
    // Names are defined for any value.
    FUZZ_ASSERT(mc_wire_result_name(int(v)) != nullptr);
    FUZZ_ASSERT(mc_deny_reason_name(McDenyReason(v)) != nullptr);
    return 0;
}
