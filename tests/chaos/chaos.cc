// Fault-injection driver for the post-copy switchover (issue 6).
//
// Each round starts a source and a destination QEMU, puts a TCP proxy of
// its own between them, drives a post-copy migration the way libvirt does,
// injects one or two faults at a random moment around migrate-start-postcopy,
// samples both sides all along, and checks the invariants listed in
// docs/reliability.md.  A round is a pure function of (seed, round) as far
// as the driver's choices go: --seed S --round R replays it.
//
// SPDX-License-Identifier: GPL-2.0-or-later

#include "json.h"
#include "migration-control.h"

#include <algorithm>
#include <arpa/inet.h>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <set>
#include <sstream>
#include <string>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

// ---------------------------------------------------------------- time

using Clock = std::chrono::steady_clock;
Clock::time_point g_t0 = Clock::now();

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

std::string fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char *f, ...)
{
    char buf[4096];
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, sizeof(buf), f, ap);
    va_end(ap);
    return buf;
}

// ---------------------------------------------------------------- random

// splitmix64: the same numbers on every platform, unlike <random>'s
// distributions.
struct Rng {
    uint64_t x;
    explicit Rng(uint64_t seed) : x(seed) {}
    uint64_t next()
    {
        uint64_t z = (x += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    int range(int lo, int hi) { return lo + int(next() % uint64_t(hi - lo + 1)); }  // [lo, hi]
    bool chance(int percent) { return range(0, 99) < percent; }
};

// ---------------------------------------------------------------- QMP

// One item of a QMP connection's output stream, in the order QEMU wrote
// it: events and replies share one ordered stream, which is what makes the
// run-state analysis sound (see analyse_runs).
struct StreamItem {
    double recv;          // when the driver read it
    double sent;          // replies: when the command was written; events: -1
    bool event;
    std::string name;     // event name, or the command's name
    Json msg;
};

class Qmp {
public:
    ~Qmp() { close_conn(); }

    bool connect_to(const std::string &path, double timeout_ms)
    {
        double deadline = now_ms() + timeout_ms;
        for (;;) {
            fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            sockaddr_un sa{};
            sa.sun_family = AF_UNIX;
            snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path.c_str());
            if (connect(fd_, reinterpret_cast<sockaddr *>(&sa), sizeof(sa)) == 0) {
                break;
            }
            ::close(fd_);
            fd_ = -1;
            if (now_ms() > deadline) {
                return false;
            }
            sleep_ms(20);
        }
        // The greeting.
        std::string line;
        for (int i = 0; i < 100; i++) {
            if (!read_line_blocking(line)) {
                return false;
            }
            Json j;
            if (Json::parse(line, j) && j.has("QMP")) {
                break;
            }
        }
        reader_ = std::thread([this] { read_loop(); });
        Json r = cmd("qmp_capabilities", "", 10000);
        return r.has("return");
    }

    // Sends a command and waits for its reply; returns the reply object
    // ({"return": ...} or {"error": ...}) or null on timeout or close.
    Json cmd(const std::string &name, const std::string &args = "", double timeout_ms = 10000)
    {
        uint64_t id;
        double sent;
        {
            std::lock_guard<std::mutex> g(wlock_);
            id = ++next_id_;
            std::string msg = "{\"execute\":" + jstr(name) +
                              (args.empty() ? "" : ",\"arguments\":" + args) +
                              ",\"id\":" + std::to_string(id) + "}\n";
            {
                std::lock_guard<std::mutex> g2(m_);
                if (closed_) {
                    return Json();
                }
                pending_[id] = PendingCmd{name, now_ms()};
                sent = pending_[id].sent;
            }
            (void)sent;
            size_t off = 0;
            while (off < msg.size()) {
                ssize_t n = ::send(fd_, msg.data() + off, msg.size() - off, MSG_NOSIGNAL);
                if (n <= 0) {
                    if (n < 0 && errno == EINTR) {
                        continue;
                    }
                    return Json();
                }
                off += size_t(n);
            }
        }
        std::unique_lock<std::mutex> l(m_);
        auto until = Clock::now() + std::chrono::microseconds(int64_t(timeout_ms * 1000));
        while (!replies_.count(id) && !closed_) {
            if (cv_.wait_until(l, until) == std::cv_status::timeout) {
                break;
            }
        }
        auto it = replies_.find(id);
        if (it == replies_.end()) {
            return Json();
        }
        Json r = std::move(it->second);
        replies_.erase(it);
        return r;
    }

    bool ok(const std::string &name, const std::string &args = "", std::string *err = nullptr,
            double timeout_ms = 10000)
    {
        Json r = cmd(name, args, timeout_ms);
        if (r.has("return")) {
            return true;
        }
        if (err) {
            *err = r.is_null() ? "no reply" : r["error"]["desc"].str();
        }
        return false;
    }

    std::vector<StreamItem> stream()
    {
        std::lock_guard<std::mutex> g(m_);
        return stream_;
    }

    // The status of the last MIGRATION event, "" if none yet.
    std::string last_migration()
    {
        std::lock_guard<std::mutex> g(m_);
        return last_mig_;
    }

    bool seen_migration(const std::string &status)
    {
        std::lock_guard<std::mutex> g(m_);
        return seen_mig_.count(status) != 0;
    }

    bool closed()
    {
        std::lock_guard<std::mutex> g(m_);
        return closed_;
    }

    void close_conn()
    {
        if (fd_ >= 0) {
            ::shutdown(fd_, SHUT_RDWR);
        }
        if (reader_.joinable()) {
            reader_.join();
        }
        if (fd_ >= 0) {
            ::close(fd_);
            fd_ = -1;
        }
    }

private:
    struct PendingCmd {
        std::string name;
        double sent;
    };

    bool read_line_blocking(std::string &line)
    {
        for (;;) {
            size_t nl = buf_.find('\n');
            if (nl != std::string::npos) {
                line = buf_.substr(0, nl);
                buf_.erase(0, nl + 1);
                return true;
            }
            char tmp[65536];
            ssize_t n = ::recv(fd_, tmp, sizeof(tmp), 0);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                return false;
            }
            buf_.append(tmp, size_t(n));
        }
    }

    void read_loop()
    {
        std::string line;
        while (read_line_blocking(line)) {
            Json j;
            if (!Json::parse(line, j)) {
                continue;
            }
            double t = now_ms();
            std::lock_guard<std::mutex> g(m_);
            if (j.has("event")) {
                stream_.push_back(StreamItem{t, -1, true, j["event"].str(), j});
                if (j["event"].str() == "MIGRATION") {
                    last_mig_ = j["data"]["status"].str();
                    seen_mig_.insert(last_mig_);
                }
            } else if (j.has("id")) {
                uint64_t id = uint64_t(j["id"].num());
                auto p = pending_.find(id);
                if (p != pending_.end()) {
                    stream_.push_back(StreamItem{t, p->second.sent, false, p->second.name, j});
                    pending_.erase(p);
                }
                replies_[id] = std::move(j);
            }
            cv_.notify_all();
        }
        std::lock_guard<std::mutex> g(m_);
        closed_ = true;
        cv_.notify_all();
    }

    int fd_ = -1;
    std::string buf_;
    std::thread reader_;
    std::mutex wlock_;
    std::mutex m_;
    std::condition_variable cv_;
    uint64_t next_id_ = 0;
    std::map<uint64_t, PendingCmd> pending_;
    std::map<uint64_t, Json> replies_;
    std::vector<StreamItem> stream_;
    std::string last_mig_;
    std::set<std::string> seen_mig_;
    bool closed_ = false;
};

// ---------------------------------------------------------------- QEMU process

struct Qemu {
    std::string name;
    pid_t pid = -1;
    Qmp qmp;
    std::string qmp_path, serial_path, log_path;
    std::mutex m;
    bool exited = false;
    int wstatus = 0;
    double exit_time = 0;
    bool killed_by_us = false;     // SIGKILL sent by a fault
    bool quit_by_us = false;       // end of round
    std::atomic<bool> sigstopped{false};

    bool start(const std::vector<std::string> &args)
    {
        unlink(qmp_path.c_str());
        unlink(serial_path.c_str());
        pid = fork();
        if (pid < 0) {
            return false;
        }
        if (pid == 0) {
            // Never outlive the driver.
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd >= 0) {
                dup2(fd, 1);
                dup2(fd, 2);
            }
            int nul = open("/dev/null", O_RDONLY);
            if (nul >= 0) {
                dup2(nul, 0);
            }
            std::vector<char *> argv;
            for (const auto &a : args) {
                argv.push_back(const_cast<char *>(a.c_str()));
            }
            argv.push_back(nullptr);
            execv(argv[0], argv.data());
            _exit(127);
        }
        return qmp.connect_to(qmp_path, 30000);
    }

    // Non-blocking reap; returns true if the process is gone.
    bool reap()
    {
        std::lock_guard<std::mutex> g(m);
        if (exited || pid <= 0) {
            return true;
        }
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            exited = true;
            wstatus = st;
            exit_time = now_ms();
            return true;
        }
        return false;
    }

    bool alive() { return !reap(); }

    void signal(int sig)
    {
        std::lock_guard<std::mutex> g(m);
        if (!exited && pid > 0) {
            kill(pid, sig);
        }
    }

    std::string serial()
    {
        std::ifstream f(serial_path, std::ios::binary);
        std::stringstream ss;
        ss << f.rdbuf();
        return ss.str();
    }

    void finish()
    {
        if (alive()) {
            sigstopped = false;
            signal(SIGCONT);
            quit_by_us = true;
            qmp.cmd("quit", "", 3000);
            for (int i = 0; i < 200 && alive(); i++) {
                sleep_ms(25);
            }
            if (alive()) {
                signal(SIGKILL);
            }
        }
        std::lock_guard<std::mutex> g(m);
        if (!exited && pid > 0) {
            waitpid(pid, &wstatus, 0);
            exited = true;
            exit_time = now_ms();
        }
        qmp.close_conn();
    }
};

// ---------------------------------------------------------------- TCP proxy

// Forwards every connection made to its port to the destination's port.
// Direction 0 is source -> destination (the migration stream), 1 is
// destination -> source (the return path).  Faults: stop forwarding a
// direction while still reading the sender (a silent partition that heals
// without loss when lifted), half-close a direction, reset everything,
// delay every chunk.
class Proxy {
public:
    bool start()
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
    void stop()
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
    int port() const { return port_; }
    void set_target(int port) { target_ = port; }

    void set_block(int dir, bool on)
    {
        std::lock_guard<std::mutex> g(m_);
        block_[dir] = on;
    }
    void set_delay(double ms)
    {
        std::lock_guard<std::mutex> g(m_);
        delay_ = ms;
    }
    void half_close(int dir)
    {
        std::lock_guard<std::mutex> g(m_);
        halfclose_req_[dir] = true;
    }
    void reset_all()
    {
        std::lock_guard<std::mutex> g(m_);
        reset_req_ = true;
    }
    int connections_seen() const { return seen_; }

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
    };

    static constexpr size_t kMaxBuffered = 64u << 20;

    static void close_conn(Conn &c, bool rst)
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

    void accept_new()
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
            c->fd[0] = a;
            c->fd[1] = b;
            conns_.push_back(std::move(c));
        }
    }

    void loop()
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
                                c->q[i].push_back(Chunk{t + delay, std::string(buf, size_t(n)), 0});
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
};

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

// ---------------------------------------------------------------- faults

enum class Fault {
    PartitionBoth,    // stop forwarding both directions, keep reading; lift later
    PartitionToDst,   // only source -> destination
    PartitionToSrc,   // only the return path
    HalfCloseToDst,   // FIN to the destination, swallow the source's bytes
    HalfCloseToSrc,   // FIN to the source on the return path
    Reset,            // RST every connection
    Delay,            // 200 ms on every chunk, both directions; lift later
    KillSrc,
    KillDst,
    StopSrc,          // SIGSTOP, SIGCONT later
    StopDst,
    CancelSrc,        // migrate_cancel on the source
    ContDst,          // cont on the destination
    StopCmdDst,       // stop on the destination
    PauseSrc,         // migrate-pause on the source
    PauseDst,         // migrate-pause on the destination
    Count
};

const char *fault_name(Fault f)
{
    static const char *names[] = {
        "partition-both", "partition-to-dst", "partition-to-src", "halfclose-to-dst",
        "halfclose-to-src", "reset", "delay", "kill-src", "kill-dst", "sigstop-src",
        "sigstop-dst", "cancel-src", "cont-dst", "stop-dst", "pause-src", "pause-dst",
    };
    return names[int(f)];
}

bool fault_lifts(Fault f)
{
    return f == Fault::PartitionBoth || f == Fault::PartitionToDst || f == Fault::PartitionToSrc ||
           f == Fault::Delay || f == Fault::StopSrc || f == Fault::StopDst;
}

struct FaultPlan {
    Fault kind;
    int at_ms;       // relative to migrate-start-postcopy (negative: before)
    int lift_ms;     // after at_ms, for faults that are lifted
    // Filled in when it fires.
    bool fired = false;
    double fired_at = 0;
    std::string src_phase, dst_phase, result;
};

struct RoundConfig {
    bool preempt = false;
    bool slow = false;        // max-postcopy-bandwidth 48 MiB/s: a longer postcopy-active
    int handshake = -1;       // -1: the binary lacks the capability
    // With the capability off: negotiated in-band (both binaries can),
    // or negotiation turned off on both sides (-1: cannot negotiate)
    int negotiate = -1;
    // The start handshake runs: set, or negotiated
    bool hs() const { return handshake == 1 || (handshake == 0 && negotiate == 1); }
    std::string break_action; // "" if the binary lacks the parameter
    int detect_timeout = -1;  // -1 if the binary lacks the parameter
    std::vector<FaultPlan> faults;
    std::string describe() const
    {
        std::string s = fmt("preempt=%s%s", preempt ? "on" : "off", slow ? " slow" : "");
        if (handshake >= 0) {
            s += fmt(" handshake=%s", handshake ? "on" : negotiate == 1 ? "negotiated" : "off");
        }
        if (!break_action.empty()) {
            s += " break-action=" + break_action;
        }
        if (detect_timeout >= 0) {
            s += fmt(" detect-timeout=%d", detect_timeout);
        }
        return s;
    }
};

struct Features {
    bool handshake = false;
    bool negotiate = false;   // x-postcopy-start-handshake-negotiate
    bool break_action = false;
    bool detect_timeout = false;
};

RoundConfig plan_round(uint64_t seed, int round, const Features &feat)
{
    Rng rng(seed * 0x100000001b3ull ^ (uint64_t(round) + 1) * 0x9e3779b97f4a7c15ull);
    rng.next();
    RoundConfig c;
    c.preempt = rng.chance(50);
    c.slow = rng.chance(50);
    int hs = rng.range(0, 1);
    int ba = rng.range(0, 1);
    int dt = rng.range(1000, 3000);
    if (feat.handshake) {
        c.handshake = hs;
    }
    if (feat.negotiate && c.handshake == 0) {
        // Half the rounds without the capability negotiate it (the
        // default between two binaries of this fork), half turn it off;
        // from the same draw, so that plans stay put
        c.negotiate = (dt >> 1) & 1;
    }
    if (feat.break_action) {
        c.break_action = ba ? "pause" : "keep-running";
    }
    if (feat.detect_timeout) {
        // On (1-3 s) or off (0) without another draw, so plans stay put
        c.detect_timeout = (dt & 1) ? dt : 0;
    }
    int nfaults = rng.chance(30) ? 2 : 1;
    int at = rng.range(-50, 400);
    for (int i = 0; i < nfaults; i++) {
        FaultPlan f;
        f.kind = Fault(rng.range(0, int(Fault::Count) - 1));
        f.at_ms = at;
        f.lift_ms = rng.range(1500, 4000);
        c.faults.push_back(f);
        at += rng.range(0, 300);
    }
    return c;
}

// ---------------------------------------------------------------- invariants

struct Violation {
    std::string what;
};

// Run-state analysis of one side's QMP stream.
//
// Events and replies come out of one QMP connection in the order QEMU
// produced them, so item i was generated at some real time g_i with
// lo_i <= g_i <= hi_i, where hi_i is when the driver read it and lo_i is
// the latest send time of any command answered at or before i.  The run
// state between g_i and g_{i+1} is the one set by item i (STOP, RESUME, or
// a query-status reply).  So the side surely ran over [hi_i, lo_{i+1}] when
// item i left it running, and may have run over [lo_i, hi_{i+1}].
struct Interval {
    double a, b;
};

struct RunAnalysis {
    std::vector<Interval> surely;    // surely running
    std::vector<Interval> maybe;     // possibly running
    double first_surely_running = -1;  // hi of the first item that showed it running
};

RunAnalysis analyse_runs(const std::vector<StreamItem> &st, bool initially_running, double end_time,
                         double death_time)
{
    RunAnalysis r;
    bool running = initially_running;
    double lo = 0, hi = 0;
    bool have = false;
    double prev_lo = 0, prev_hi = 0;
    bool prev_running = initially_running;
    auto close_span = [&](double next_lo, double next_hi) {
        if (have && prev_running) {
            if (next_lo > prev_hi) {
                r.surely.push_back({prev_hi, next_lo});
            }
            r.maybe.push_back({prev_lo, next_hi});
        }
    };
    for (const auto &it : st) {
        bool changes = false;
        bool val = running;
        if (it.event && (it.name == "STOP" || it.name == "SHUTDOWN")) {
            changes = true;
            val = false;
        } else if (it.event && it.name == "RESUME") {
            changes = true;
            val = true;
        } else if (!it.event && it.name == "query-status" && it.msg.has("return")) {
            changes = true;
            val = it.msg["return"]["running"].boolean();
        }
        if (!changes) {
            continue;
        }
        lo = std::max(lo, it.sent >= 0 ? it.sent : 0.0);
        lo = std::max(lo, prev_lo);
        hi = it.recv;
        close_span(lo, hi);
        running = val;
        if (running && r.first_surely_running < 0) {
            r.first_surely_running = hi;
        }
        prev_lo = lo;
        prev_hi = hi;
        prev_running = running;
        have = true;
    }
    // After the last item: running until death (surely not after), or
    // possibly until the end of the round.
    if (have && prev_running) {
        double until = death_time >= 0 ? death_time : end_time;
        r.maybe.push_back({prev_lo, until});
    }
    return r;
}

// Where x and y overlap: the first instant, the last, and the total length.
bool overlap(const std::vector<Interval> &x, const std::vector<Interval> &y, Interval *where,
             double *total = nullptr)
{
    bool any = false;
    double sum = 0;
    for (const auto &a : x) {
        for (const auto &b : y) {
            double s = std::max(a.a, b.a), e = std::min(a.b, b.b);
            if (e > s) {
                if (!any) {
                    *where = {s, e};
                }
                where->a = std::min(where->a, s);
                where->b = std::max(where->b, e);
                sum += e - s;
                any = true;
            }
        }
    }
    if (total) {
        *total = sum;
    }
    return any;
}

// The MIGRATION status QEMU reports for each shim state: a copy of
// migration_switchover_status() in migration/switchover.c (series).  Several
// states share a status (the handshake's states look like postcopy-active),
// so a status sequence is checked as the image of a path of the table.
const char *projected_status(McState s)
{
    switch (s) {
    case MC_STATE_ACTIVE:
        return "active";
    case MC_STATE_DEVICE:
        return "device";
    case MC_STATE_POSTCOPY_DEVICE:
        return "postcopy-device";
    case MC_STATE_POSTCOPY_ACTIVE:
    case MC_STATE_POSTCOPY_COMMITTED:
    case MC_STATE_START_REQUESTED:
    case MC_STATE_STARTED:
        return "postcopy-active";
    case MC_STATE_POSTCOPY_PAUSED:
    case MC_STATE_START_REQUESTED_PAUSED:
    case MC_STATE_POSTCOPY_DEVICE_PAUSED:
    case MC_STATE_UNGRANTED_PAUSED:
        return "postcopy-paused";
    case MC_STATE_CANCELLED:
        return "cancelled";
    case MC_STATE_COMPLETED:
        return "completed";
    case MC_STATE_FAILED:
        return "failed";
    default:
        return "?";
    }
}

// Collapse the statuses the shim does not model: "" drops the item.
std::string normalise_status(const std::string &s)
{
    if (s == "setup" || s == "cancelling" || s == "wait-unplug" || s == "pre-switchover") {
        return "";
    }
    if (s == "postcopy-recover-setup" || s == "postcopy-recover") {
        return "postcopy-paused";
    }
    return s;
}

// Is every MIGRATION status sequence of one side the image of a path
// through the shim's table?  The set of shim states consistent with what
// was seen is tracked; between two reported statuses the machine may move
// through states that report the same status.  Upstream pre-copy
// transitions out of 'active' (failed, cancelled) are outside the shim's
// scope and accepted.
void check_path(McRole role, uint32_t flags, const std::vector<StreamItem> &st,
                std::vector<Violation> &out, std::string &seq)
{
    std::set<int> cur = {MC_STATE_ACTIVE};
    std::string cur_status = "active";
    bool reported = false;
    for (const auto &it : st) {
        if (!it.event || it.name != "MIGRATION") {
            continue;
        }
        std::string raw = it.msg["data"]["status"].str();
        seq += (seq.empty() ? "" : " ") + raw;
        std::string x = normalise_status(raw);
        if (x.empty() || x == cur_status) {
            continue;
        }
        bool known = false;
        for (int i = 0; i < MC_STATE__MAX; i++) {
            known |= x == projected_status(McState(i));
        }
        if (!known) {
            out.push_back({fmt("%s: unknown MIGRATION status '%s'", mc_role_name(role), raw.c_str())});
            reported = true;
            break;
        }
        // Silent moves within the current status.
        std::vector<int> work(cur.begin(), cur.end());
        while (!work.empty()) {
            int s = work.back();
            work.pop_back();
            for (int e = 0; e < MC_EVENT__MAX; e++) {
                McTransition t;
                if (mc_switchover_lookup(role, flags, McState(s), McEvent(e), &t, nullptr, 0) == 0 &&
                    cur_status == projected_status(t.to) && !cur.count(t.to)) {
                    cur.insert(t.to);
                    work.push_back(t.to);
                }
            }
        }
        std::set<int> next;
        for (int s : cur) {
            for (int e = 0; e < MC_EVENT__MAX; e++) {
                McTransition t;
                if (mc_switchover_lookup(role, flags, McState(s), McEvent(e), &t, nullptr, 0) == 0 &&
                    x == projected_status(t.to)) {
                    next.insert(t.to);
                }
            }
        }
        if (cur.count(MC_STATE_ACTIVE) && cur_status == "active" && (x == "failed" || x == "cancelled")) {
            next.insert(x == "failed" ? MC_STATE_FAILED : MC_STATE_CANCELLED);
        }
        if (next.empty()) {
            out.push_back({fmt("%s: MIGRATION %s -> %s is not a transition of the shim's table",
                               mc_role_name(role), cur_status.c_str(), x.c_str())});
            reported = true;
            break;
        }
        cur = next;
        cur_status = x;
    }
    (void)reported;
}

// The qtests' check_guests_ram on a pmemsave dump of [1 MiB, 100 MiB).
bool check_memory(const std::string &file, std::string &why)
{
    const size_t page = 4096, start = 0x100000, end = 0x6400000;
    std::ifstream f(file, std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (data.size() != end - start) {
        why = fmt("memory dump has %zu bytes", data.size());
        return false;
    }
    uint8_t first = uint8_t(data[0]), last = first;
    bool edge = false;
    int bad = 0;
    size_t first_bad = 0;
    for (size_t off = page; off < end - start; off += page) {
        uint8_t b = uint8_t(data[off]);
        if (b != last) {
            if (uint8_t(b + 1) == last && !edge) {
                edge = true;
                last = b;
            } else {
                if (!bad) {
                    first_bad = start + off;
                }
                bad++;
            }
        }
    }
    if (bad) {
        why = fmt("%d inconsistent pages, first at 0x%zx (first byte 0x%02x)", bad, first_bad, first);
        return false;
    }
    return true;
}

// ---------------------------------------------------------------- a round

struct Options {
    std::string qemu = "qemu/build/qemu-system-x86_64";
    std::string qemu_dst;     // destination binary, if not --qemu (mixed versions)
    std::string machine = "q35";
    std::string qemu_src = "qemu";
    std::vector<std::string> firmware;
    std::vector<std::string> traces;   // -trace patterns for both QEMUs (debugging)
    std::string accel = "tcg";
    std::string workdir;
    uint64_t seed = 1;
    int first = 0;
    int rounds = 1;
    std::string brk;          // self-test: "source-resume"
    bool keep = false;
    bool verbose = false;
    bool expect_violation = false;   // self-test: succeed only if a violation is caught
    int settle_ms = 30000;    // bound to reach a final state after faults are lifted
};

struct RoundResult {
    std::vector<Violation> violations;
    std::string outcome;    // dst-runs, src-runs, lost-*, harness-error
    std::string fault_desc;
    std::string phase;      // source phase when the first fault fired
    double seconds = 0;
    std::vector<std::string> timeline;
};

std::string qemu_path_abs(const std::string &p)
{
    char buf[PATH_MAX];
    if (realpath(p.c_str(), buf)) {
        return buf;
    }
    return p;
}

std::vector<uint8_t> g_bootsect;

bool load_bootsector(const std::string &qemu_src)
{
    std::ifstream f(qemu_src + "/tests/qtest/migration/i386/a-b-bootblock.h");
    std::stringstream ss;
    ss << f.rdbuf();
    std::string t = ss.str();
    size_t p = t.find("x86_bootsect[] = {");
    if (p == std::string::npos) {
        return false;
    }
    size_t e = t.find('}', p);
    for (size_t i = p; i + 3 < e; i++) {
        if (t[i] == '0' && (t[i + 1] == 'x' || t[i + 1] == 'X') && isxdigit(t[i + 2]) &&
            isxdigit(t[i + 3])) {
            g_bootsect.push_back(uint8_t(std::strtoul(t.substr(i + 2, 2).c_str(), nullptr, 16)));
            i += 3;
        }
    }
    return g_bootsect.size() == 512;
}

Features probe_features(const Options &o, const std::string &binary, const std::string &dir)
{
    Features f;
    Qemu q;
    q.name = "probe";
    q.qmp_path = dir + "/probe.qmp";
    q.serial_path = dir + "/probe.serial";
    q.log_path = dir + "/probe.log";
    std::vector<std::string> args = {binary, "-nodefaults", "-display", "none", "-S",
                                     "-machine", o.machine, "-accel", o.accel,
                                     "-qmp", "unix:" + q.qmp_path + ",server=on,wait=off"};
    for (const auto &d : o.firmware) {
        args.push_back("-L");
        args.push_back(d);
    }
    if (!q.start(args)) {
        q.finish();
        return f;
    }
    Json caps = q.qmp.cmd("query-migrate-capabilities");
    for (const auto &c : caps["return"].a) {
        if (c["capability"].str() == "postcopy-start-handshake") {
            f.handshake = true;
        }
    }
    Json props = q.qmp.cmd("qom-list-properties", "{\"typename\":\"migration\"}");
    for (const auto &p : props["return"].a) {
        if (p["name"].str() == "x-postcopy-start-handshake-negotiate") {
            f.negotiate = true;
        }
    }
    Json params = q.qmp.cmd("query-migrate-parameters");
    f.break_action = params["return"].has("postcopy-break-action");
    f.detect_timeout = params["return"].has("postcopy-detect-timeout");
    q.finish();
    return f;
}

class Round {
public:
    Round(const Options &o, const Features &feat, int round, const std::string &dir)
        : o_(o), feat_(feat), round_(round), dir_(dir)
    {
        cfg_ = plan_round(o.seed, round, feat);
    }

    RoundResult run();

private:
    void note(const std::string &s)
    {
        std::lock_guard<std::mutex> g(log_m_);
        res_.timeline.push_back(fmt("%9.1f  %s", now_ms() - t_round_, s.c_str()));
    }
    void violation(const std::string &s) { res_.violations.push_back({s}); }
    std::vector<std::string> qemu_args(Qemu &q, bool dest);
    bool setup_side(Qemu &q, bool dest);
    void sampler();
    void fire(FaultPlan &f);
    void recovery_attempt();
    bool settled(std::string &outcome_hint);
    std::string side_status(Qemu &q);

    const Options &o_;
    Features feat_;
    int round_;
    std::string dir_;
    RoundConfig cfg_;
    RoundResult res_;
    std::mutex log_m_;
    double t_round_ = 0;
    Qemu src_, dst_;
    Proxy proxy_;
    std::atomic<bool> stop_sampling_{false};
    std::atomic<int> recover_port_{0};
    bool src_initially_running_ = true;
};

std::vector<std::string> Round::qemu_args(Qemu &q, bool dest)
{
    std::vector<std::string> a = {
        dest ? o_.qemu_dst : o_.qemu, "-nodefaults", "-display", "none", "-name",
        q.name + ",debug-threads=on", "-qmp", "unix:" + q.qmp_path + ",server=on,wait=off",
        "-serial", "file:" + q.serial_path, "-accel", o_.accel, "-machine", o_.machine, "-m", "150M",
        // The self-test turns image locking off: with it on, QEMU itself
        // refuses 'cont' on a source whose destination holds the disk.
        "-drive", "if=none,id=d0,file=" + dir_ + "/boot.raw,format=raw" +
                      (o_.brk.empty() ? "" : ",file.locking=off"),
        "-device", "ide-hd,drive=d0,secs=1,cyls=1,heads=1"};
    for (const auto &d : o_.firmware) {
        a.push_back("-L");
        a.push_back(d);
    }
    for (const auto &t : o_.traces) {
        a.push_back("-trace");
        a.push_back(t);
    }
    if (dest) {
        a.push_back("-S");
        a.push_back("-incoming");
        a.push_back("defer");
    }
    if (cfg_.negotiate == 0) {
        a.push_back("-global");
        a.push_back("migration.x-postcopy-start-handshake-negotiate=off");
    }
    return a;
}

bool Round::setup_side(Qemu &q, bool dest)
{
    q.qmp_path = dir_ + "/" + q.name + ".qmp";
    q.serial_path = dir_ + "/" + q.name + ".serial";
    q.log_path = dir_ + "/" + q.name + ".log";
    if (!q.start(qemu_args(q, dest))) {
        return false;
    }
    std::string caps = "[{\"capability\":\"postcopy-ram\",\"state\":true},"
                       "{\"capability\":\"events\",\"state\":true},"
                       "{\"capability\":\"return-path\",\"state\":true},"
                       "{\"capability\":\"postcopy-preempt\",\"state\":" +
                       std::string(cfg_.preempt ? "true" : "false") + "}";
    if (cfg_.handshake >= 0) {
        caps += ",{\"capability\":\"postcopy-start-handshake\",\"state\":" +
                std::string(cfg_.handshake ? "true" : "false") + "}";
    }
    caps += "]";
    std::string err;
    if (!q.qmp.ok("migrate-set-capabilities", "{\"capabilities\":" + caps + "}", &err)) {
        note(q.name + ": migrate-set-capabilities: " + err);
        return false;
    }
    std::string params;
    if (!dest) {
        params += "\"downtime-limit\":1";
        if (cfg_.slow) {
            params += ",\"max-postcopy-bandwidth\":50331648";
        }
    }
    if (!cfg_.break_action.empty()) {
        params += std::string(params.empty() ? "" : ",") + "\"postcopy-break-action\":" +
                  jstr(cfg_.break_action);
    }
    if (cfg_.detect_timeout >= 0) {
        params += std::string(params.empty() ? "" : ",") +
                  fmt("\"postcopy-detect-timeout\":%d", cfg_.detect_timeout);
    }
    if (!params.empty() && !q.qmp.ok("migrate-set-parameters", "{" + params + "}", &err)) {
        note(q.name + ": migrate-set-parameters: " + err);
        return false;
    }
    return true;
}

void Round::sampler()
{
    int tick = 0;
    while (!stop_sampling_) {
        for (Qemu *q : {&src_, &dst_}) {
            if (q->alive() && !q->sigstopped) {
                q->qmp.cmd("query-status", "", 2000);
                if (tick % 4 == 0) {
                    q->qmp.cmd("query-migrate", "", 2000);
                }
            }
        }
        tick++;
        sleep_ms(15);
    }
}

std::string Round::side_status(Qemu &q)
{
    if (!q.alive()) {
        return "dead";
    }
    std::string s = q.qmp.last_migration();
    return s.empty() ? "none" : s;
}

void Round::fire(FaultPlan &f)
{
    f.fired = true;
    f.fired_at = now_ms();
    f.src_phase = side_status(src_);
    f.dst_phase = side_status(dst_);
    std::string err;
    bool ok = true;
    switch (f.kind) {
    case Fault::PartitionBoth:
        proxy_.set_block(0, true);
        proxy_.set_block(1, true);
        break;
    case Fault::PartitionToDst:
        proxy_.set_block(0, true);
        break;
    case Fault::PartitionToSrc:
        proxy_.set_block(1, true);
        break;
    case Fault::HalfCloseToDst:
        proxy_.half_close(0);
        break;
    case Fault::HalfCloseToSrc:
        proxy_.half_close(1);
        break;
    case Fault::Reset:
        proxy_.reset_all();
        break;
    case Fault::Delay:
        proxy_.set_delay(200);
        break;
    case Fault::KillSrc:
        src_.killed_by_us = true;
        src_.signal(SIGKILL);
        break;
    case Fault::KillDst:
        dst_.killed_by_us = true;
        dst_.signal(SIGKILL);
        break;
    case Fault::StopSrc:
        src_.sigstopped = true;
        src_.signal(SIGSTOP);
        break;
    case Fault::StopDst:
        dst_.sigstopped = true;
        dst_.signal(SIGSTOP);
        break;
    case Fault::CancelSrc:
        ok = src_.qmp.ok("migrate_cancel", "", &err, 5000);
        break;
    case Fault::ContDst:
        ok = dst_.qmp.ok("cont", "", &err, 5000);
        break;
    case Fault::StopCmdDst:
        ok = dst_.qmp.ok("stop", "", &err, 5000);
        break;
    case Fault::PauseSrc:
        ok = src_.qmp.ok("migrate-pause", "", &err, 5000);
        break;
    case Fault::PauseDst:
        ok = dst_.qmp.ok("migrate-pause", "", &err, 5000);
        break;
    case Fault::Count:
        break;
    }
    f.result = ok ? "done" : "refused: " + err;
    note(fmt("fault %s (source %s, destination %s): %s", fault_name(f.kind), f.src_phase.c_str(),
             f.dst_phase.c_str(), f.result.c_str()));
}

void lift(FaultPlan &f, Proxy &proxy, Qemu &src, Qemu &dst)
{
    switch (f.kind) {
    case Fault::PartitionBoth:
        proxy.set_block(0, false);
        proxy.set_block(1, false);
        break;
    case Fault::PartitionToDst:
        proxy.set_block(0, false);
        break;
    case Fault::PartitionToSrc:
        proxy.set_block(1, false);
        break;
    case Fault::Delay:
        proxy.set_delay(0);
        break;
    case Fault::StopSrc:
        src.signal(SIGCONT);
        src.sigstopped = false;
        break;
    case Fault::StopDst:
        dst.signal(SIGCONT);
        dst.sigstopped = false;
        break;
    default:
        break;
    }
}

// Post-copy recovery, as an operator would do it: migrate-recover on the
// destination (a fresh port, the proxy retargeted), then migrate with
// resume=true on the source through the proxy.
void Round::recovery_attempt()
{
    int port = free_port();
    std::string err;
    if (dst_.qmp.last_migration() == "postcopy-paused") {
        if (!dst_.qmp.ok("migrate-recover", fmt("{\"uri\":\"tcp:127.0.0.1:%d\"}", port), &err)) {
            note("destination: migrate-recover refused: " + err);
            return;
        }
        recover_port_ = port;
        proxy_.set_target(port);
    }
    if (!src_.qmp.ok("migrate", fmt("{\"uri\":\"tcp:127.0.0.1:%d\",\"resume\":true}", proxy_.port()),
                     &err)) {
        note("source: migrate resume refused: " + err);
        return;
    }
    note("recovery: migrate-recover + migrate resume=true");
}

bool is_final_src(const std::string &s)
{
    return s == "completed" || s == "failed" || s == "cancelled" || s == "dead";
}

bool is_final_dst(const std::string &s)
{
    return s == "completed" || s == "failed" || s == "cancelled" || s == "dead";
}

RoundResult Round::run()
{
    t_round_ = now_ms();
    double t_start = t_round_;
    src_.name = "source";
    dst_.name = "destination";
    for (auto &f : cfg_.faults) {
        res_.fault_desc += std::string(res_.fault_desc.empty() ? "" : " + ") +
                           fmt("%s@%+dms", fault_name(f.kind), f.at_ms);
    }
    res_.outcome = "harness-error";
    {
        std::ofstream b(dir_ + "/boot.raw", std::ios::binary);
        b.write(reinterpret_cast<const char *>(g_bootsect.data()), std::streamsize(g_bootsect.size()));
    }
    int dst_port = free_port();
    if (!setup_side(src_, false) || !setup_side(dst_, true) || !proxy_.start()) {
        note("setup failed");
        violation("harness: cannot start or configure QEMU (see logs)");
        src_.finish();
        dst_.finish();
        proxy_.stop();
        return res_;
    }
    proxy_.set_target(dst_port);
    std::thread samp;
    std::vector<std::thread> faulters;
    std::string err;
    bool started = false;
    bool cont_sent = false;
    bool bad_setup = false;
    double lift_all = 0;
    double t_sp = 0;

    // Wait for the guest to boot.
    for (double d = now_ms() + 60000; now_ms() < d;) {
        if (src_.serial().find('B') != std::string::npos) {
            started = true;
            break;
        }
        sleep_ms(20);
    }
    if (!started) {
        violation("harness: the guest did not boot in 60 s");
        bad_setup = true;
    }
    if (!bad_setup) {
        Json st = src_.qmp.cmd("query-status");
        src_initially_running_ = st["return"]["running"].boolean();
        samp = std::thread([this] { sampler(); });
        if (!dst_.qmp.ok("migrate-incoming",
                         fmt("{\"uri\":\"tcp:127.0.0.1:%d\",\"exit-on-error\":false}", dst_port),
                         &err) ||
            !src_.qmp.ok("migrate", fmt("{\"uri\":\"tcp:127.0.0.1:%d\"}", proxy_.port()), &err)) {
            violation("harness: cannot start the migration: " + err);
            bad_setup = true;
        }
    }
    if (!bad_setup) {
        note("migrate");
        bool pass = false;
        for (double d = now_ms() + 90000; now_ms() < d;) {
            Json r = src_.qmp.cmd("query-migrate");
            if (r["return"]["ram"]["dirty-sync-count"].num() >= 2) {
                pass = true;
                break;
            }
            sleep_ms(20);
        }
        if (!pass) {
            violation("harness: no first pre-copy pass in 90 s");
            bad_setup = true;
        }
    }
    if (!bad_setup) {
        // Schedule: migrate-start-postcopy at t_sp, fault i at t_sp + at_ms.
        int earliest = 0;
        for (auto &f : cfg_.faults) {
            earliest = std::min(earliest, f.at_ms);
        }
        t_sp = now_ms() - earliest + 5;
        for (auto &f : cfg_.faults) {
            double at = t_sp + f.at_ms;
            lift_all = std::max(lift_all, at + (fault_lifts(f.kind) ? f.lift_ms : 0));
        }
        for (auto &f : cfg_.faults) {
            FaultPlan *fp = &f;
            faulters.emplace_back([this, fp, t_sp] {
                sleep_ms(t_sp + fp->at_ms - now_ms());
                fire(*fp);
                if (fault_lifts(fp->kind)) {
                    sleep_ms(fp->fired_at + fp->lift_ms - now_ms());
                    lift(*fp, proxy_, src_, dst_);
                    note(fmt("lifted %s", fault_name(fp->kind)));
                }
            });
        }
        sleep_ms(t_sp - now_ms());
        // A SIGSTOPped source cannot answer: send it once it is continued,
        // as libvirt would retry.
        while (src_.alive() && src_.sigstopped && now_ms() < lift_all + 1000) {
            sleep_ms(10);
        }
        if (src_.alive() && !src_.sigstopped) {
            if (src_.qmp.ok("migrate-start-postcopy", "", &err, 5000)) {
                note("migrate-start-postcopy");
            } else {
                note("migrate-start-postcopy refused: " + err);
            }
        } else {
            note("migrate-start-postcopy not sent: source dead or stopped");
        }

        // libvirt's part: cont on the destination once it reports
        // postcopy-active; then wait for a final state, recovering a
        // paused post-copy once the faults are lifted.
        double deadline = lift_all + o_.settle_ms;
        double next_recovery = 0;
        int recoveries = 0;
        double both_half_paused_since = -1;
        bool broke = false;
        bool done = false;
        while (now_ms() < std::max(deadline, t_sp + o_.settle_ms)) {
            std::string s = side_status(src_), d = side_status(dst_);
            // With the start handshake, 'cont' as soon as the destination
            // reports postcopy-active (the flow: the handshake makes
            // it safe).  Without it, like libvirt: once the source reports
            // postcopy-active, i.e. received the package acknowledgement;
            // before that, a destination started by 'cont' may run while
            // the source fails and resumes (no protocol can tell them apart
            // without the handshake; docs/reliability.md).
            bool cont_due = cfg_.hs()
                                ? d == "postcopy-active"
                                : d == "postcopy-active" &&
                                      src_.qmp.seen_migration("postcopy-active");
            if (!cont_sent && cont_due && dst_.alive()) {
                cont_sent = true;
                if (dst_.qmp.ok("cont", "", &err, 5000)) {
                    note("destination: cont (libvirt)");
                } else {
                    note("destination: cont refused: " + err);
                }
            }
            // Self-test of the driver: a broken source resumes its guest
            // after the switchover succeeded.
            if (o_.brk == "source-resume" && !broke && s == "completed" && src_.alive()) {
                broke = true;
                note("BREAK: cont on the source after the switchover");
                if (!src_.qmp.ok("cont", "", &err, 5000)) {
                    note("source: cont refused: " + err);
                }
                sleep_ms(1000);
            }
            bool lifted = now_ms() >= lift_all;
            bool src_final = is_final_src(s);
            bool dst_final = is_final_dst(d);
            if (lifted && src_final && dst_final) {
                done = true;
                break;
            }
            // A side that cannot go on without the other.
            if (lifted && s == "dead" && (d == "postcopy-paused" || d == "postcopy-active" ||
                                          d == "postcopy-device")) {
                if (d == "postcopy-paused") {
                    done = true;
                    break;
                }
                if (now_ms() > lift_all + 10000) {
                    violation(fmt("hang: the destination is still in %s 10 s after the source died",
                                  d.c_str()));
                    done = true;
                    break;
                }
            }
            if (lifted && d == "dead" && (s == "postcopy-paused")) {
                done = true;
                break;
            }
            // The return path broke while the source completed: it cannot
            // know that the destination got the end of the stream, so it
            // paused for a recovery rather than strand a destination that
            // might miss pages.  The destination completed: management
            // (libvirt's confirm phase) ends the source.
            if (lifted && s == "postcopy-paused" && d == "completed") {
                note("destination completed, source paused waiting for a recovery: "
                     "management ends the source");
                done = true;
                break;
            }
            if (lifted && (s == "failed" || s == "cancelled") && d != "dead" && !dst_final &&
                now_ms() > lift_all + 6000) {
                // The source gave up; the destination may wait forever for
                // a stream that will not come (no return path fault is
                // visible to it).  That is its right: it never ran.
                done = true;
                break;
            }
            if (lifted && s == "postcopy-paused" && d == "postcopy-paused" && now_ms() >= next_recovery &&
                recoveries < 3) {
                recoveries++;
                next_recovery = now_ms() + 5000;
                recovery_attempt();
            }
            // One side paused, the other still active long after the
            // faults were lifted: pause it too so that recovery can start.
            bool half = (s == "postcopy-paused") != (d == "postcopy-paused") &&
                        (s == "postcopy-active" || d == "postcopy-active");
            if (lifted && half) {
                if (both_half_paused_since < 0) {
                    both_half_paused_since = now_ms();
                } else if (now_ms() - both_half_paused_since > 5000) {
                    Qemu &q = s == "postcopy-active" ? src_ : dst_;
                    note(q.name + ": migrate-pause (the other side is paused)");
                    q.qmp.ok("migrate-pause", "", &err, 5000);
                    both_half_paused_since = -1;
                }
            } else {
                both_half_paused_since = -1;
            }
            sleep_ms(20);
        }
        if (!done) {
            violation(fmt("hang: no final state %d s after the faults were lifted (source %s, "
                          "destination %s)",
                          o_.settle_ms / 1000, side_status(src_).c_str(), side_status(dst_).c_str()));
        }
    }
    for (auto &t : faulters) {
        t.join();
    }
    for (auto &f : cfg_.faults) {
        if (f.fired && !fault_lifts(f.kind)) {
            continue;
        }
        lift(f, proxy_, src_, dst_);
    }
    sleep_ms(300);   // let the last events arrive
    stop_sampling_ = true;
    if (samp.joinable()) {
        samp.join();
    }
    if (!cfg_.faults.empty()) {
        res_.phase = cfg_.faults[0].fired ? cfg_.faults[0].src_phase : "not-fired";
    }

    // ---- final state and invariants
    bool src_alive = src_.alive(), dst_alive = dst_.alive();
    bool src_running = false, dst_running = false;
    std::string src_runstate;
    if (!bad_setup) {
        for (Qemu *q : {&src_, &dst_}) {
            if (!q->alive()) {
                continue;
            }
            Json r = q->qmp.cmd("query-status", "", 10000);
            if (r.is_null()) {
                violation(q->name + ": hang: query-status unanswered for 10 s at the end");
                continue;
            }
            bool run = r["return"]["running"].boolean();
            (q == &src_ ? src_running : dst_running) = run;
            if (q == &src_) {
                src_runstate = r["return"]["status"].str();
            }
            note(fmt("%s: final run state %s, migration %s", q->name.c_str(),
                     r["return"]["status"].str().c_str(), side_status(*q).c_str()));
        }
    }
    std::string s_mig = src_.qmp.last_migration(), d_mig = dst_.qmp.last_migration();
    // A failed or cancelled source can run the guest again unless it kept
    // it in finish-migrate, where QEMU refuses 'cont' (it gave the guest
    // away to the destination).
    bool src_can = src_alive &&
                   (src_running || ((s_mig == "failed" || s_mig == "cancelled") &&
                                    src_runstate != "finish-migrate"));
    bool dst_can = dst_alive && d_mig == "completed";
    bool dst_ever_ran = false;

    // Crashes: any exit we did not cause.
    for (Qemu *q : {&src_, &dst_}) {
        q->reap();
        std::lock_guard<std::mutex> g(q->m);
        if (q->exited && !q->killed_by_us) {
            if (WIFSIGNALED(q->wstatus)) {
                violation(fmt("crash: %s killed by signal %d", q->name.c_str(), WTERMSIG(q->wstatus)));
            } else {
                violation(fmt("crash: %s exited by itself with status %d", q->name.c_str(),
                              WEXITSTATUS(q->wstatus)));
            }
        }
    }

    // Memory of the guest that can run.
    if (!bad_setup) {
        for (Qemu *q : {&src_, &dst_}) {
            bool can = q == &src_ ? src_can : dst_can;
            if (!can || !q->alive()) {
                continue;
            }
            q->qmp.ok("stop", "", nullptr, 10000);
            std::string file = dir_ + "/" + q->name + ".mem";
            std::string why;
            if (!q->qmp.ok("pmemsave",
                           fmt("{\"val\":%d,\"size\":%d,\"filename\":%s}", 0x100000, 0x6400000 - 0x100000,
                               jstr(file).c_str()),
                           &why, 60000)) {
                violation(q->name + ": pmemsave failed: " + why);
            } else if (!check_memory(file, why)) {
                violation(q->name + ": guest memory corrupt: " + why);
            } else {
                note(q->name + ": guest memory intact");
            }
            unlink(file.c_str());
        }
    }

    double end = now_ms();
    src_.finish();
    dst_.finish();
    proxy_.stop();

    // Run-state analysis on the ordered QMP streams.
    auto ss = src_.qmp.stream(), ds = dst_.qmp.stream();
    auto death = [](Qemu &q) { return q.exited && !q.quit_by_us ? q.exit_time : -1.0; };
    RunAnalysis ra = analyse_runs(ss, src_initially_running_, end, death(src_));
    RunAnalysis rb = analyse_runs(ds, false, end, death(dst_));
    dst_ever_ran = rb.first_surely_running >= 0;
    Interval w;
    double both_ms = 0;
    if (!bad_setup && overlap(ra.surely, rb.surely, &w, &both_ms)) {
        violation(fmt("split brain: both guests surely running for %.1f ms between %.1f and %.1f ms",
                      both_ms, w.a - t_round_, w.b - t_round_));
    } else if (!bad_setup && overlap(ra.maybe, rb.maybe, &w)) {
        note(fmt("note: sampling cannot exclude both running over [%.1f, %.1f] ms", w.a - t_round_,
                 w.b - t_round_));
    }
    if (dst_ever_ran) {
        for (const auto &iv : ra.surely) {
            if (iv.b > rb.first_surely_running) {
                violation(fmt("duplicate: the source ran its guest at %.1f ms, after the destination "
                              "had run it (%.1f ms)",
                              std::max(iv.a, rb.first_surely_running) - t_round_,
                              rb.first_surely_running - t_round_));
                break;
            }
        }
    }
    if (!bad_setup && src_can && (dst_can || dst_running)) {
        violation(fmt("two owners: both sides can run the guest at the end (source %s, "
                      "destination %s%s)",
                      s_mig.c_str(), d_mig.c_str(), dst_running ? ", running" : ""));
    }

    // Paths through the shim's table.
    uint32_t flags = MC_FLAG_RETURN_PATH | (cfg_.hs() ? MC_FLAG_START_HANDSHAKE : 0);
    std::string sseq, dseq;
    check_path(MC_ROLE_SOURCE, flags, ss, res_.violations, sseq);
    check_path(MC_ROLE_DESTINATION, flags, ds, res_.violations, dseq);

    // Outcome.
    bool src_killed = src_.killed_by_us, dst_killed = dst_.killed_by_us;
    bool src_reached_active = src_.qmp.seen_migration("postcopy-active");
    if (bad_setup) {
        res_.outcome = "harness-error";
    } else if (dst_can) {
        res_.outcome = "dst-runs";
    } else if (src_can) {
        res_.outcome = "src-runs";
    } else if (src_killed && dst_killed) {
        res_.outcome = "lost:both-killed";
    } else if (src_killed) {
        // The source held the only copy of the RAM not yet sent.
        res_.outcome = "lost:source-killed";
    } else if (dst_killed && (dst_ever_ran || (src_reached_active && !cfg_.hs()))) {
        // The destination held the running guest, or the source cannot
        // know whether it did (no start handshake): post-copy's limit.
        res_.outcome = dst_ever_ran ? "lost:running-dst-killed" : "lost:dst-killed-after-ack";
    } else if (!cfg_.hs() && src_.qmp.seen_migration("postcopy-device") &&
               s_mig == "postcopy-paused") {
        // Without the start handshake the source cannot tell a destination
        // that runs the guest (its acknowledgement lost) from one that
        // never will: once the package left it pauses rather than resume,
        // as upstream QEMU does (docs/devel/migration/postcopy-switchover.rst).
        res_.outcome = "limit:no-handshake-paused-after-package";
    } else {
        res_.outcome = "stranded";
        violation(fmt("stranded: no side can run the guest (source %s, destination %s)", s_mig.c_str(),
                      d_mig.c_str()));
    }

    // Timeline for the report.
    for (auto *pr : {&ss, &ds}) {
        const char *who = pr == &ss ? "source" : "destination";
        for (const auto &it : *pr) {
            if (it.event && (it.name == "MIGRATION" || it.name == "STOP" || it.name == "RESUME")) {
                std::string what = it.name == "MIGRATION" ? "MIGRATION " + it.msg["data"]["status"].str()
                                                          : it.name;
                res_.timeline.push_back(fmt("%9.1f  %s: %s", it.recv - t_round_, who, what.c_str()));
            }
        }
    }
    std::sort(res_.timeline.begin(), res_.timeline.end(), [](const std::string &a, const std::string &b) {
        return std::strtod(a.c_str(), nullptr) < std::strtod(b.c_str(), nullptr);
    });
    res_.timeline.push_back("source MIGRATION: " + sseq);
    res_.timeline.push_back("destination MIGRATION: " + dseq);
    res_.seconds = (now_ms() - t_start) / 1000.0;
    return res_;
}

// ---------------------------------------------------------------- main

void usage()
{
    fprintf(stderr,
            "usage: chaos [--qemu BIN] [--qemu-dst BIN] [--machine TYPE] [--qemu-src DIR] [--firmware DIR]...\n"
            "             [--accel tcg|kvm] [--trace PATTERN]...\n"
            "             [--seed S] [--rounds N] [--first R] [--round R] [--break source-resume]\n"
            "             [--expect-violation] [--tap] [--settle-ms MS] [--workdir DIR] [--keep] [--verbose]\n");
}

bool g_tap = false;

// stdout; in TAP mode every line is a comment except the results.
void out(const char *f, ...) __attribute__((format(printf, 1, 2)));
void out(const char *f, ...)
{
    char buf[16384];
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, sizeof(buf), f, ap);
    va_end(ap);
    if (!g_tap) {
        fputs(buf, stdout);
        return;
    }
    static bool bol = true;
    for (const char *p = buf; *p; p++) {
        if (bol && *p != '\n') {
            fputs("# ", stdout);
        }
        fputc(*p, stdout);
        bol = *p == '\n';
    }
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

} // namespace

int main(int argc, char **argv)
{
    Options o;
    bool single = false;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto val = [&]() -> std::string {
            if (i + 1 >= argc) {
                usage();
                exit(2);
            }
            return argv[++i];
        };
        if (a == "--qemu") {
            o.qemu = val();
        } else if (a == "--qemu-dst") {
            o.qemu_dst = val();
        } else if (a == "--machine") {
            o.machine = val();
        } else if (a == "--qemu-src") {
            o.qemu_src = val();
        } else if (a == "--firmware") {
            o.firmware.push_back(val());
        } else if (a == "--trace") {
            o.traces.push_back(val());
        } else if (a == "--accel") {
            o.accel = val();
        } else if (a == "--seed") {
            o.seed = std::strtoull(val().c_str(), nullptr, 0);
        } else if (a == "--rounds") {
            o.rounds = atoi(val().c_str());
        } else if (a == "--first") {
            o.first = atoi(val().c_str());
        } else if (a == "--round") {
            o.first = atoi(val().c_str());
            o.rounds = 1;
            single = true;
        } else if (a == "--break") {
            o.brk = val();
            if (o.brk != "source-resume") {
                usage();
                return 2;
            }
        } else if (a == "--settle-ms") {
            o.settle_ms = atoi(val().c_str());
        } else if (a == "--workdir") {
            o.workdir = val();
        } else if (a == "--tap") {
            g_tap = true;
        } else if (a == "--expect-violation") {
            o.expect_violation = true;
        } else if (a == "--keep") {
            o.keep = true;
        } else if (a == "--verbose") {
            o.verbose = true;
        } else {
            usage();
            return 2;
        }
    }
    (void)single;
    signal(SIGPIPE, SIG_IGN);
    const bool mixed = !o.qemu_dst.empty();
    o.qemu = qemu_path_abs(o.qemu);
    o.qemu_dst = mixed ? qemu_path_abs(o.qemu_dst) : o.qemu;
    o.qemu_src = qemu_path_abs(o.qemu_src);
    for (const std::string &b : {o.qemu, o.qemu_dst}) {
        if (access(b.c_str(), X_OK) != 0) {
            fprintf(stderr, "chaos: %s: not an executable\n", b.c_str());
            return 2;
        }
    }
    if (!load_bootsector(o.qemu_src)) {
        fprintf(stderr, "chaos: cannot read the qtests' boot sector under %s\n", o.qemu_src.c_str());
        return 2;
    }
    if (o.firmware.empty()) {
        for (const char *d : {"/usr/share/seabios", "/usr/share/qemu", "/usr/lib/ipxe/qemu"}) {
            if (access(d, R_OK) == 0) {
                o.firmware.push_back(d);
            }
        }
    }
    if (o.workdir.empty()) {
        const char *t = getenv("TMPDIR");
        o.workdir = fmt("%s/chaos-%d", t ? t : "/tmp", int(getpid()));
    }
    mkdir(o.workdir.c_str(), 0755);

    // Mixed versions: only what both binaries have is turned on (an upstream
    // binary has none of this fork's features, so all of them stay off).
    Features feat = probe_features(o, o.qemu, o.workdir);
    if (mixed) {
        Features fd = probe_features(o, o.qemu_dst, o.workdir);
        feat.handshake &= fd.handshake;
        feat.negotiate &= fd.negotiate;
        feat.break_action &= fd.break_action;
        feat.detect_timeout &= fd.detect_timeout;
    }
    out("chaos: source %s\nchaos: destination %s\nchaos: machine %s\n"
           "chaos: features: postcopy-start-handshake %s, postcopy-break-action %s, "
           "postcopy-detect-timeout %s\n",
           o.qemu.c_str(), o.qemu_dst.c_str(), o.machine.c_str(), feat.handshake ? "yes" : "no (skipped)",
           feat.break_action ? "yes" : "no (skipped)", feat.detect_timeout ? "yes" : "no (skipped)");
    fflush(stdout);

    char self[PATH_MAX];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
    self[sl > 0 ? sl : 0] = 0;
    std::string replay_base = shell_quote(sl > 0 ? self : argv[0]) + " --qemu " + shell_quote(o.qemu) +
                              " --qemu-src " + shell_quote(o.qemu_src);
    if (mixed) {
        replay_base += " --qemu-dst " + shell_quote(o.qemu_dst);
    }
    if (o.machine != "q35") {
        replay_base += " --machine " + shell_quote(o.machine);
    }
    if (o.accel != "tcg") {
        replay_base += " --accel " + o.accel;
    }
    if (!o.brk.empty()) {
        replay_base += " --break " + o.brk;
    }

    if (g_tap) {
        printf("1..%d\n", o.expect_violation ? 1 : o.rounds);
    }
    int nviol = 0, nrounds = 0, nbad_rounds = 0;
    // kind x phase -> outcome -> count
    std::map<std::string, std::map<std::string, int>> table;
    std::map<std::string, int> outcomes;
    std::vector<std::string> failing;
    double t0 = now_ms();
    for (int r = o.first; r < o.first + o.rounds; r++) {
        std::string dir = fmt("%s/r%d", o.workdir.c_str(), r);
        mkdir(dir.c_str(), 0755);
        Round round(o, feat, r, dir);
        RoundConfig cfg = plan_round(o.seed, r, feat);
        RoundResult res = round.run();
        nrounds++;
        std::string replay = fmt("%s --seed %llu --round %d", replay_base.c_str(),
                                 (unsigned long long)o.seed, r);
        bool bad = !res.violations.empty();
        out("round %d: %s [%s] phase=%s -> %s%s (%.1f s)\n", r, res.fault_desc.c_str(),
               cfg.describe().c_str(), res.phase.c_str(), res.outcome.c_str(),
               bad ? fmt(", %zu VIOLATION(S)", res.violations.size()).c_str() : "", res.seconds);
        if (g_tap && !o.expect_violation) {
            printf("%s %d - round %d: %s -> %s%s\n", bad ? "not ok" : "ok", nrounds, r,
                   res.fault_desc.c_str(), res.outcome.c_str(),
                   bad ? fmt(" # replay: %s", replay.c_str()).c_str() : "");
        }
        if (bad || o.verbose) {
            for (const auto &v : res.violations) {
                out("  VIOLATION: %s\n", v.what.c_str());
            }
            for (const auto &l : res.timeline) {
                out("    %s\n", l.c_str());
            }
        }
        if (bad) {
            out("  replay: %s\n  logs: %s\n", replay.c_str(), dir.c_str());
            nviol += int(res.violations.size());
            nbad_rounds++;
            failing.push_back(replay);
        } else if (!o.keep) {
            std::string cmd = "rm -rf " + shell_quote(dir);
            if (system(cmd.c_str()) != 0) {
                fprintf(stderr, "chaos: cannot remove %s\n", dir.c_str());
            }
        }
        fflush(stdout);
        std::string oc = bad ? "VIOLATION" : res.outcome;
        for (size_t i = 0; i < cfg.faults.size(); i++) {
            std::string key = std::string(fault_name(cfg.faults[i].kind)) + " @ " +
                              (i == 0 ? res.phase : "(second fault)");
            table[key][oc]++;
        }
        outcomes[oc]++;
    }

    out("\n== summary: %d rounds, %d violating round(s), %d violation(s), %.0f s ==\n", nrounds,
           nbad_rounds, nviol, (now_ms() - t0) / 1000);
    out("outcomes:");
    for (const auto &kv : outcomes) {
        out(" %s=%d", kv.first.c_str(), kv.second);
    }
    out("\n\n| fault @ source phase when it fired | rounds | outcomes |\n|---|---:|---|\n");
    for (const auto &row : table) {
        int n = 0;
        std::string oc;
        for (const auto &kv : row.second) {
            n += kv.second;
            oc += fmt("%s%s %d", oc.empty() ? "" : ", ", kv.first.c_str(), kv.second);
        }
        out("| %s | %d | %s |\n", row.first.c_str(), n, oc.c_str());
    }
    if (!failing.empty()) {
        out("\nreplay the failing rounds with:\n");
        for (const auto &f : failing) {
            out("  %s\n", f.c_str());
        }
    }
    if (nbad_rounds == 0 && !o.keep) {
        rmdir(o.workdir.c_str());
        std::string cmd = "rm -rf " + shell_quote(o.workdir);
        (void)system(cmd.c_str());
    }
    if (o.expect_violation) {
        out("\nself-test: %s\n", nbad_rounds ? "the driver caught the broken behaviour"
                                             : "FAILED: no violation caught");
        if (g_tap) {
            printf("%s 1 - self-test: --break %s is caught\n", nbad_rounds ? "ok" : "not ok",
                   o.brk.c_str());
        }
        return nbad_rounds ? 0 : 1;
    }
    return nbad_rounds ? 1 : 0;
}
