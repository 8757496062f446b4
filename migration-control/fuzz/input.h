// Reading typed values from a libFuzzer input, front to back.  When the
// input runs out, every read returns 0, so any input is a valid scenario.
//
// SPDX-License-Identifier: GPL-2.0-or-later

#ifndef MIGRATION_CONTROL_FUZZ_INPUT_H
#define MIGRATION_CONTROL_FUZZ_INPUT_H

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace fuzz {

class Input {
public:
    Input(const uint8_t *data, size_t size) : p_(data), end_(data + size) {}

    bool empty() const { return p_ == end_; }

    uint8_t u8()
    {
        return p_ < end_ ? *p_++ : 0;
    }

    uint32_t u32()
    {
        uint32_t v = 0;
        for (int i = 0; i < 4; i++) {
            v = v << 8 | u8();
        }
        return v;
    }

    uint64_t u64()
    {
        return uint64_t(u32()) << 32 | u32();
    }

private:
    const uint8_t *p_;
    const uint8_t *end_;
};

// An invariant the target checks: print it and abort, so that libFuzzer
// records the input as a crash.
[[noreturn]] inline void violated(const char *file, int line, const char *what)
{
    std::fprintf(stderr, "%s:%d: invariant violated: %s\n", file, line, what);
    std::abort();
}

} // namespace fuzz

#define FUZZ_ASSERT(cond) \
    ((cond) ? (void)0 : fuzz::violated(__FILE__, __LINE__, #cond))

#endif
