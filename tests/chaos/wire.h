// The switchover messages the proxy recognises in the byte stream, for the
// sweep mode (faults placed at fine steps around each of them) and for the
// rounds' timelines.  How each is recognised: proxy.cc, "Recognising the
// switchover on the wire".
//
// SPDX-License-Identifier: GPL-2.0-or-later

#ifndef CHAOS_WIRE_H
#define CHAOS_WIRE_H

#include <string>

namespace chaos {

enum class WireEvent {
    Package,        // main channel: the post-copy package's header (MIG_CMD_PACKAGED)
    Run,            // main channel: POSTCOPY_RUN, the package's last command
    Pong,           // return path: PONG 0x42, the package-loaded acknowledgement
    StartRequest,   // return path: START_REQUEST (start handshake)
    Grant,          // main channel: POSTCOPY_START_GRANT (start handshake)
    Count
};

inline const char *wire_event_name(WireEvent e)
{
    static const char *names[] = {"package", "run", "pong", "start-request", "grant"};
    return names[int(e)];
}

inline bool wire_event_from_name(const std::string &s, WireEvent *e)
{
    for (int i = 0; i < int(WireEvent::Count); i++) {
        if (s == wire_event_name(WireEvent(i))) {
            *e = WireEvent(i);
            return true;
        }
    }
    return false;
}

} // namespace chaos

#endif
