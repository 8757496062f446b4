// Small helpers shared by the fault-injection driver's parts: the
// driver's clock, printf-style formatting, shell quoting, a free port.
//
// SPDX-License-Identifier: GPL-2.0-or-later

#ifndef CHAOS_UTIL_H
#define CHAOS_UTIL_H

#include <chrono>
#include <string>

namespace chaos {

// The fork's QAPI names carry a downstream prefix (qapi-code-gen,
// "Downstream extensions"): kPcf + "postcopy-break-action".
const std::string kPcf = "__invalid.postcopy-fork_";

using Clock = std::chrono::steady_clock;

// Milliseconds since the driver started (one clock for every timeline).
double now_ms();
void sleep_ms(double ms);

std::string fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));

// @s quoted for a POSIX shell when it needs it (replay commands).
std::string shell_quote(const std::string &s);

// A TCP port on 127.0.0.1 that was free a moment ago.
int free_port();

} // namespace chaos

#endif
