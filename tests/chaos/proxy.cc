// SPDX-License-Identifier: GPL-2.0-or-later

#include "proxy.h"

#include "migration-control-wire.h"

#include "util.h"

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace chaos {

bool Proxy::start()
{
    lfd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd_, reinterpret_cast<sockaddr *>(&sa), sizeof(sa)) < 0 || listen(lfd_, 16) < 0) {
        return false;
    }
    socklen_t len = sizeof(sa);
    getsockname(lfd_, reinterpret_cast<sockaddr *>(&sa), &len);
    port_ = ntohs(sa.sin_port);
    fcntl(lfd_, F_SETFL, O_NONBLOCK);
    th_ = std::thread([this] { loop(); });
    return true;
}

void Proxy::stop()
{
    quit_ = true;
    if (th_.joinable()) {
        th_.join();
    }
    for (auto &c : conns_) {
        close_conn(*c, false);
    }
    if (lfd_ >= 0) {
        ::close(lfd_);
    }
}

void Proxy::set_block(int dir, bool on)
{
    std::lock_guard<std::mutex> g(m_);
    block_[dir] = on;
}

void Proxy::set_delay(double ms)
{
    std::lock_guard<std::mutex> g(m_);
    delay_ = ms;
}

void Proxy::half_close(int dir)
{
    std::lock_guard<std::mutex> g(m_);
    halfclose_req_[dir] = true;
}

void Proxy::reset_all()
{
    std::lock_guard<std::mutex> g(m_);
    reset_req_ = true;
}

void Proxy::arm_hold(WireEvent e, double hold_ms)
{
    std::lock_guard<std::mutex> g(m_);
    hold_ms_[int(e)] = hold_ms;
}

double Proxy::event_time(WireEvent e)
{
    std::lock_guard<std::mutex> g(m_);
    return ev_time_[int(e)];
}

double Proxy::wait_event(WireEvent e, double until_ms, const std::atomic<bool> &cancel)
{
    std::unique_lock<std::mutex> l(m_);
    while (ev_time_[int(e)] < 0 && !cancel && now_ms() < until_ms) {
        ev_cv_.wait_for(l, std::chrono::milliseconds(2));
    }
    return ev_time_[int(e)];
}

std::vector<Proxy::WireNote> Proxy::wire_notes()
{
    std::lock_guard<std::mutex> g(m_);
    return notes_;
}

// ---------------------------------------- recognising the switchover on the wire
//
// Main channel (direction 0): QEMU's commands are QEMU_VM_COMMAND (0x08),
// be16 command, be16 length, payload (migration/savevm.c).  The stream in
// between is not parsed (RAM pages carry guest data); the proxy looks for
// byte patterns long enough, and checked against what must follow them,
// not to occur in this guest's pages:
//
// - the package (looked for once migrate-start-postcopy is being sent):
//   PACKAGED (7) with its be32 length L, followed by
//   POSTCOPY_LISTEN (4, empty) or by the handshake confirmation PING
//   0x50534843 that the fork puts before it: 08 00 07 00 04 L L L L, then
//   08 00 04 00 00 or 08 00 02 00 04 50 53 48 43.  The package is the
//   next L bytes;
// - RUN: POSTCOPY_RUN (5, empty: 08 00 05 00 00) is the package's last
//   command, so it is at a known offset (header + 9 + L - 5); the bytes
//   there are checked (the timeline says so);
// - the grant: POSTCOPY_START_GRANT (the fork's wire number 0x4601,
//   MC_WIRE_CMD_START_GRANT) with a be32 sequence number below 65536
//   (08 46 01 00 04 00 00 s s), looked for only once a START_REQUEST went
//   the other way.
//
// Return path (direction 1): every byte belongs to a message (be16 type,
// be16 length, payload; after RECV_BITMAP the raw bitmap: be64 size, the
// bitmap, be64 ending), so it is parsed exactly from the connection's
// first byte: PONG (2) with value 0x42 is the package's acknowledgement,
// START_REQUEST (0x4601, MC_WIRE_RP_START_REQUEST) the handshake's
// request.  An invalid type stops the parse of that connection.
//
// A message is timed when the proxy reads its first byte from the sender,
// before forwarding it.

namespace {

const std::string kPackaged("\x08\x00\x07\x00\x04", 5);
const std::string kListen("\x08\x00\x04\x00\x00", 5);
const std::string kConfirm("\x08\x00\x02\x00\x04\x50\x53\x48\x43", 9);
const std::string kRun("\x08\x00\x05\x00\x00", 5);
const std::string kGrant{'\x08', char(MC_WIRE_CMD_START_GRANT >> 8),
                         char(MC_WIRE_CMD_START_GRANT & 0xff), '\x00', '\x04'};
constexpr size_t kTailMax = 17;   // the longest pattern (18 bytes) minus one

uint32_t be32(const std::string &s, size_t i)
{
    return uint32_t(uint8_t(s[i])) << 24 | uint32_t(uint8_t(s[i + 1])) << 16 |
           uint32_t(uint8_t(s[i + 2])) << 8 | uint32_t(uint8_t(s[i + 3]));
}

uint16_t be16(const std::string &s, size_t i)
{
    return uint16_t(uint8_t(s[i]) << 8 | uint8_t(s[i + 1]));
}

} // namespace

void Proxy::scan_main(Conn &c, const std::string &data, std::vector<Found> &out)
{
    std::string w = c.tail + data;
    uint64_t base = c.pos[0] - c.tail.size();   // stream offset of w[0]
    size_t keep_from = w.size() > kTailMax ? w.size() - kTailMax : 0;
    if (!c.pkg && expect_package_) {
        for (size_t k = w.find(kPackaged); k != std::string::npos; k = w.find(kPackaged, k + 1)) {
            bool listen = k + 14 <= w.size() && w.compare(k + 9, 5, kListen) == 0;
            bool confirm = k + 18 <= w.size() && w.compare(k + 9, 9, kConfirm) == 0;
            if (!listen && !confirm && k + 18 > w.size()) {
                keep_from = std::min(keep_from, k);   // decide with the next chunk
                break;
            }
            uint32_t len = be32(w, k + 5);
            if ((listen || confirm) && len >= 14 && len < (256u << 20)) {
                c.pkg = true;
                c.run_off = base + k + 9 + len - 5;
                out.push_back({WireEvent::Package, base + k,
                               fmt("package (%u bytes%s) on connection %d", len,
                                   confirm ? ", handshake confirmed" : "", c.id)});
                break;
            }
        }
    }
    if (c.pkg && !c.run_done && c.run_off < base + w.size()) {
        c.run_done = true;
        size_t k = c.run_off >= base ? size_t(c.run_off - base) : 0;
        const char *check = k + 5 > w.size() ? ""
                            : w.compare(k, 5, kRun) == 0 ? ", POSTCOPY_RUN checked"
                                                         : ", NOT POSTCOPY_RUN";
        out.push_back({WireEvent::Run, c.run_off, fmt("run (the package's end%s)", check)});
    }
    if (start_requested_) {
        for (size_t k = w.find(kGrant); k != std::string::npos; k = w.find(kGrant, k + 1)) {
            if (k + 9 > w.size()) {
                keep_from = std::min(keep_from, k);
                break;
            }
            uint32_t seq = be32(w, k + 5);
            if (seq > 0 && seq < 65536) {
                out.push_back({WireEvent::Grant, base + k, fmt("grant seq %u", seq)});
                // Not seen twice through the tail.
                keep_from = std::max(keep_from, std::min(w.size(), k + 9));
                break;
            }
        }
    }
    c.tail = w.substr(std::min(keep_from, w.size()));
}

void Proxy::scan_rp(Conn &c, const std::string &data, std::vector<Found> &out)
{
    if (c.rp_lost) {
        return;
    }
    if (c.rp.empty()) {
        c.rp_pos = c.pos[1];
    }
    c.rp += data;
    size_t i = 0;
    for (;;) {
        size_t avail = c.rp.size() - i;
        if (c.bitmap == 1 || c.bitmap == 3) {
            if (avail < 8) {
                break;
            }
            if (c.bitmap == 1) {
                c.bitmap_left = uint64_t(be32(c.rp, i)) << 32 | be32(c.rp, i + 4);
                c.bitmap = 2;
            } else {
                c.bitmap = 0;
            }
            i += 8;
            continue;
        }
        if (c.bitmap == 2) {
            size_t n = size_t(std::min<uint64_t>(c.bitmap_left, avail));
            i += n;
            c.bitmap_left -= n;
            if (c.bitmap_left) {
                break;
            }
            c.bitmap = 3;
            continue;
        }
        if (avail < 4) {
            break;
        }
        uint16_t type = be16(c.rp, i), len = be16(c.rp, i + 2);
        if (type == 0 || (type > 16 && type != MC_WIRE_RP_START_REQUEST)) {
            c.rp_lost = true;
            break;
        }
        if (avail < 4 + size_t(len)) {
            break;
        }
        uint64_t off = c.rp_pos + i;
        if (type == 2 && len == 4 && be32(c.rp, i + 4) == 0x42) {
            out.push_back({WireEvent::Pong, off, fmt("pong 0x42 (package loaded) on connection %d", c.id)});
        } else if (type == MC_WIRE_RP_START_REQUEST && len == 4) {
            out.push_back({WireEvent::StartRequest, off,
                           fmt("start-request seq %u on connection %d", be32(c.rp, i + 4), c.id)});
        } else if (type == 5) {
            c.bitmap = 1;   // RECV_BITMAP: the raw bitmap follows
        }
        i += 4 + len;
    }
    c.rp.erase(0, i);
    c.rp_pos += i;
}

double Proxy::record(std::vector<Found> &found, uint64_t chunk_start, double t, size_t *hold_from)
{
    double hold = 0;
    std::lock_guard<std::mutex> g(m_);
    for (const auto &f : found) {
        int e = int(f.e);
        if (f.e == WireEvent::StartRequest) {
            start_requested_ = true;
        }
        if (notes_.size() < 50) {
            notes_.push_back({t, "wire: " + f.what});
        }
        if (ev_time_[e] >= 0) {
            continue;
        }
        ev_time_[e] = t;
        if (hold_ms_[e] > 0 && hold == 0) {
            hold = hold_ms_[e];
            *hold_from = f.off > chunk_start ? size_t(f.off - chunk_start) : 0;
            notes_.push_back({t, fmt("wire: %s held %.0f ms", wire_event_name(f.e), hold)});
        }
    }
    ev_cv_.notify_all();
    return hold;
}

void Proxy::close_conn(Conn &c, bool rst)
{
    for (int i = 0; i < 2; i++) {
        if (c.fd[i] >= 0) {
            if (rst) {
                linger lg{1, 0};
                setsockopt(c.fd[i], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
            }
            ::close(c.fd[i]);
            c.fd[i] = -1;
        }
    }
    c.dead = true;
}

void Proxy::accept_new()
{
    for (;;) {
        int a = accept4(lfd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (a < 0) {
            return;
        }
        seen_++;
        int b = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sa.sin_port = htons(uint16_t(target_.load()));
        if (connect(b, reinterpret_cast<sockaddr *>(&sa), sizeof(sa)) < 0) {
            Conn tmp;
            tmp.fd[0] = a;
            tmp.fd[1] = b;
            close_conn(tmp, true);
            continue;
        }
        int one = 1;
        setsockopt(a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        setsockopt(b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        fcntl(a, F_SETFL, O_NONBLOCK);
        fcntl(b, F_SETFL, O_NONBLOCK);
        auto c = std::make_unique<Conn>();
        c->id = seen_;
        c->fd[0] = a;
        c->fd[1] = b;
        conns_.push_back(std::move(c));
    }
}

void Proxy::loop()
{
    while (!quit_) {
        bool block[2];
        double delay;
        bool hc[2];
        bool rst;
        {
            std::lock_guard<std::mutex> g(m_);
            block[0] = block_[0];
            block[1] = block_[1];
            delay = delay_;
            hc[0] = halfclose_req_[0];
            hc[1] = halfclose_req_[1];
            halfclose_req_[0] = halfclose_req_[1] = false;
            rst = reset_req_;
            reset_req_ = false;
        }
        if (rst) {
            for (auto &c : conns_) {
                close_conn(*c, true);
            }
        }
        for (auto &c : conns_) {
            for (int d = 0; d < 2; d++) {
                if (hc[d] && !c->dead) {
                    // The receiver of direction d sees EOF; what the
                    // sender writes from now on is swallowed.
                    c->halfclosed[d] = true;
                    c->q[d].clear();
                    c->qbytes[d] = 0;
                    ::shutdown(c->fd[1 - d], SHUT_WR);
                    c->wr_shut[d] = true;
                }
            }
        }
        conns_.erase(std::remove_if(conns_.begin(), conns_.end(),
                                    [](const std::unique_ptr<Conn> &c) { return c->dead; }),
                     conns_.end());

        std::vector<pollfd> pfds;
        std::vector<std::pair<Conn *, int>> who;
        pfds.push_back(pollfd{lfd_, POLLIN, 0});
        who.push_back({nullptr, 0});
        double t = now_ms();
        double next_due = t + 20;
        for (auto &c : conns_) {
            for (int i = 0; i < 2; i++) {
                short ev = 0;
                // Read fd[i] (direction i) while there is room.
                if (!c->rd_eof[i] && c->qbytes[i] < kMaxBuffered) {
                    ev |= POLLIN;
                }
                // Write fd[i] what direction 1-i carries.
                int d = 1 - i;
                if (!block[d] && !c->q[d].empty() && !c->wr_shut[d]) {
                    if (c->q[d].front().due <= t) {
                        ev |= POLLOUT;
                    } else {
                        next_due = std::min(next_due, c->q[d].front().due);
                    }
                }
                pfds.push_back(pollfd{c->fd[i], ev, 0});
                who.push_back({c.get(), i});
            }
        }
        int timeout = std::max(1, int(next_due - t));
        if (poll(pfds.data(), pfds.size(), std::min(timeout, 20)) < 0) {
            continue;
        }
        if (pfds[0].revents & POLLIN) {
            accept_new();
        }
        t = now_ms();
        for (size_t k = 1; k < pfds.size(); k++) {
            Conn *c = who[k].first;
            int i = who[k].second;
            if (c->dead) {
                continue;
            }
            short re = pfds[k].revents;
            if (re & (POLLIN | POLLHUP | POLLERR)) {
                if (!c->rd_eof[i] && (pfds[k].events & POLLIN)) {
                    char buf[65536];
                    ssize_t n = ::recv(c->fd[i], buf, sizeof(buf), 0);
                    if (n > 0) {
                        if (!c->halfclosed[i]) {
                            std::string data(buf, size_t(n));
                            uint64_t start = c->pos[i];
                            std::vector<Found> found;
                            if (i == 0) {
                                scan_main(*c, data, found);
                            } else {
                                scan_rp(*c, data, found);
                            }
                            c->pos[i] += size_t(n);
                            size_t from = 0;
                            double hold = found.empty() ? 0 : record(found, start, t, &from);
                            if (hold > 0 && from > 0) {
                                c->q[i].push_back(Chunk{t + delay, data.substr(0, from), 0});
                            }
                            c->q[i].push_back(
                                Chunk{t + delay + hold, hold > 0 ? data.substr(from) : std::move(data), 0});
                            c->qbytes[i] += size_t(n);
                        }
                    } else if (n == 0) {
                        c->rd_eof[i] = true;
                    } else if (errno != EAGAIN && errno != EINTR) {
                        close_conn(*c, true);   // propagate a reset
                        continue;
                    }
                } else if (re & POLLERR) {
                    close_conn(*c, true);
                    continue;
                }
            }
            if (re & POLLOUT) {
                int d = 1 - i;
                while (!c->q[d].empty() && c->q[d].front().due <= t) {
                    Chunk &ch = c->q[d].front();
                    ssize_t n = ::send(c->fd[i], ch.data.data() + ch.off, ch.data.size() - ch.off,
                                       MSG_NOSIGNAL);
                    if (n < 0) {
                        if (errno != EAGAIN && errno != EINTR) {
                            close_conn(*c, true);
                        }
                        break;
                    }
                    ch.off += size_t(n);
                    c->qbytes[d] -= size_t(n);
                    if (ch.off < ch.data.size()) {
                        break;
                    }
                    c->q[d].pop_front();
                }
            }
        }
        // Forward EOFs once everything before them was delivered.
        for (auto &c : conns_) {
            if (c->dead) {
                continue;
            }
            for (int d = 0; d < 2; d++) {
                if (c->rd_eof[d] && c->q[d].empty() && !c->wr_shut[d] && !block[d]) {
                    ::shutdown(c->fd[1 - d], SHUT_WR);
                    c->wr_shut[d] = true;
                }
            }
            if (c->rd_eof[0] && c->rd_eof[1] && c->wr_shut[0] && c->wr_shut[1]) {
                close_conn(*c, false);
            }
        }
    }
}

} // namespace chaos
