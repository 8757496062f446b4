// The driver's TCP proxy between the source and the destination: every
// connection made to its port (the main channel with its return path, the
// preempt channel, recovery channels) is forwarded to the destination's
// port, and channel faults are injected here.
//
// Direction 0 is source -> destination (the migration stream), 1 is
// destination -> source (the return path).  Faults: stop forwarding a
// direction while still reading the sender (a silent partition that heals
// without loss when lifted), half-close a direction, reset everything,
// delay every chunk.
//
// It also recognises the switchover's messages in the byte stream
// (wire.h): the sweep mode places its faults relative to them.
//
// SPDX-License-Identifier: GPL-2.0-or-later

#ifndef CHAOS_PROXY_H
#define CHAOS_PROXY_H

#include "wire.h"

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace chaos {

class Proxy {
public:
    // Listens on a free port of 127.0.0.1 and starts forwarding.
    bool start();
    void stop();
    int port() const { return port_; }
    // Where new connections go (the destination's port; retargeted for a
    // recovery).
    void set_target(int port) { target_ = port; }

    void set_block(int dir, bool on);
    void set_delay(double ms);
    void half_close(int dir);
    void reset_all();
    int connections_seen() const { return seen_; }

    // The package is looked for only from now on (migrate-start-postcopy
    // is being sent): pre-copy pages cannot be mistaken for it.
    void expect_package() { expect_package_ = true; }
    // The first time @e is seen, its bytes and everything after them in
    // that direction of that connection are held for @hold_ms before they
    // are forwarded (the sweep's negative offsets: a fault fired at that
    // moment comes @hold_ms before the peer gets the message).
    void arm_hold(WireEvent e, double hold_ms);
    // When the proxy read @e (now_ms() clock, before forwarding it), -1
    // if not yet.
    double event_time(WireEvent e);
    // Waits until @e was seen (returns its time), @until_ms passed or
    // @cancel was set (returns -1).
    double wait_event(WireEvent e, double until_ms, const std::atomic<bool> &cancel);
    struct WireNote {
        double t;
        std::string what;
    };
    // Every recognised message, for the round's timeline.
    std::vector<WireNote> wire_notes();

private:
    struct Chunk {
        double due;
        std::string data;
        size_t off;
    };
    struct Conn {
        int fd[2];                 // 0: source side (accepted), 1: destination side
        std::deque<Chunk> q[2];    // q[d]: read from fd[d], to be written to fd[1-d]
        size_t qbytes[2] = {0, 0};
        bool rd_eof[2] = {false, false};
        bool wr_shut[2] = {false, false};   // wr_shut[d]: FIN sent for direction d
        bool halfclosed[2] = {false, false};
        bool dead = false;
        int id = 0;                // 1, 2, ... in accept order
        uint64_t pos[2] = {0, 0};  // bytes read so far per direction
        // Direction 0: pattern scan of the migration stream.
        std::string tail;          // bytes before pos[0] that may start a pattern
        bool pkg = false;
        uint64_t run_off = 0;      // stream offset of POSTCOPY_RUN
        bool run_done = false;
        // Direction 1: return-path framing (be16 type, be16 length, data).
        std::string rp;            // bytes of an incomplete message
        uint64_t rp_pos = 0;       // stream offset of rp[0]
        int bitmap = 0;            // in a received bitmap: 1 size, 2 data, 3 ending
        uint64_t bitmap_left = 0;
        bool rp_lost = false;      // not a return path, or out of step: stop
    };
    struct Found {
        WireEvent e;
        uint64_t off;              // stream offset of the message's first byte
        std::string what;
    };

    void scan_main(Conn &c, const std::string &data, std::vector<Found> &out);
    void scan_rp(Conn &c, const std::string &data, std::vector<Found> &out);
    // Records what scan_*() found in a chunk (its first byte at stream
    // offset @chunk_start) read at @t; returns for how long the chunk must
    // be held (0: not) from offset *hold_from on.
    double record(std::vector<Found> &found, uint64_t chunk_start, double t, size_t *hold_from);

    static constexpr size_t kMaxBuffered = 64u << 20;

    static void close_conn(Conn &c, bool rst);
    void accept_new();
    void loop();

    int lfd_ = -1;
    int port_ = 0;
    std::atomic<int> target_{0};
    std::atomic<bool> quit_{false};
    std::thread th_;
    std::mutex m_;
    bool block_[2] = {false, false};
    bool halfclose_req_[2] = {false, false};
    bool reset_req_ = false;
    double delay_ = 0;
    std::vector<std::unique_ptr<Conn>> conns_;
    std::atomic<int> seen_{0};
    std::atomic<bool> expect_package_{false};
    // Recognised messages (under m_).
    std::condition_variable ev_cv_;
    double ev_time_[int(WireEvent::Count)] = {-1, -1, -1, -1, -1};
    double hold_ms_[int(WireEvent::Count)] = {0, 0, 0, 0, 0};
    bool start_requested_ = false;
    std::vector<WireNote> notes_;
};

} // namespace chaos

#endif
