// A minimal TAP producer for the unit tests.
//
// SPDX-License-Identifier: GPL-2.0-or-later

#ifndef MIGRATION_CONTROL_TAP_H
#define MIGRATION_CONTROL_TAP_H

#include <cstdio>
#include <string>

namespace tap {

inline int &tests()
{
    static int n = 0;
    return n;
}

inline int &failures()
{
    static int n = 0;
    return n;
}

inline void check(bool ok, const std::string &name)
{
    ++tests();
    if (!ok) {
        ++failures();
    }
    std::printf("%s %d - %s\n", ok ? "ok" : "not ok", tests(), name.c_str());
}

// Print the plan and the summary; the exit status of the test program.
inline int finish()
{
    std::printf("1..%d\n", tests());
    std::printf("# %d passed, %d failed\n", tests() - failures(), failures());
    return failures() ? 1 : 0;
}

} // namespace tap

#endif
