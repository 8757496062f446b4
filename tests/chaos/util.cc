// SPDX-License-Identifier: GPL-2.0-or-later

#include "util.h"

#include <arpa/inet.h>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <netinet/in.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

namespace chaos {

namespace {
const Clock::time_point g_t0 = Clock::now();
}

double now_ms()
{
    return std::chrono::duration<double, std::milli>(Clock::now() - g_t0).count();
}

void sleep_ms(double ms)
{
    if (ms > 0) {
        std::this_thread::sleep_for(std::chrono::microseconds(int64_t(ms * 1000)));
    }
}

std::string fmt(const char *f, ...)
{
    char buf[4096];
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, sizeof(buf), f, ap);
    va_end(ap);
    return buf;
}

std::string shell_quote(const std::string &s)
{
    if (s.find_first_of(" '\"$\\") == std::string::npos) {
        return s;
    }
    std::string o = "'";
    for (char c : s) {
        if (c == '\'') {
            o += "'\\''";
        } else {
            o += c;
        }
    }
    return o + "'";
}

int free_port()
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(s, reinterpret_cast<sockaddr *>(&sa), sizeof(sa));
    socklen_t len = sizeof(sa);
    getsockname(s, reinterpret_cast<sockaddr *>(&sa), &len);
    ::close(s);
    return ntohs(sa.sin_port);
}

} // namespace chaos
