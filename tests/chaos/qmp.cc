// SPDX-License-Identifier: GPL-2.0-or-later

#include "qmp.h"

#include "util.h"

#include <cerrno>
#include <cstdio>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace chaos {

const Json &jpath(const Json &j, std::initializer_list<const char *> keys)
{
    static const Json null;
    const Json *p = &j;
    for (const char *k : keys) {
        if (!p->is_object()) {
            return null;
        }
        auto it = p->find(k);
        if (it == p->end()) {
            return null;
        }
        p = &*it;
    }
    return *p;
}

bool jhas(const Json &j, const char *key)
{
    return j.is_object() && j.contains(key);
}

std::string jstring(const Json &j)
{
    return j.is_string() ? j.get<std::string>() : std::string();
}

double jnumber(const Json &j)
{
    return j.is_number() ? j.get<double>() : 0;
}

bool jbool(const Json &j)
{
    return j.is_boolean() && j.get<bool>();
}

std::string json_quote(const std::string &s)
{
    return Json(s).dump(-1, ' ', false, Json::error_handler_t::replace);
}

bool json_parse(const std::string &text, Json &out)
{
    out = Json::parse(text, nullptr, false);
    return !out.is_discarded();
}

bool Qmp::connect_to(const std::string &path, double timeout_ms)
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
        if (json_parse(line, j) && jhas(j, "QMP")) {
            break;
        }
    }
    reader_ = std::thread([this] { read_loop(); });
    Json r = cmd("qmp_capabilities", "", 10000);
    return jhas(r, "return");
}

Json Qmp::cmd(const std::string &name, const std::string &args, double timeout_ms)
{
    uint64_t id;
    {
        std::lock_guard<std::mutex> g(wlock_);
        id = ++next_id_;
        std::string msg = "{\"execute\":" + json_quote(name) +
                          (args.empty() ? "" : ",\"arguments\":" + args) +
                          ",\"id\":" + std::to_string(id) + "}\n";
        {
            std::lock_guard<std::mutex> g2(m_);
            if (closed_) {
                return Json();
            }
            pending_[id] = PendingCmd{name, now_ms()};
        }
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

bool Qmp::ok(const std::string &name, const std::string &args, std::string *err, double timeout_ms)
{
    Json r = cmd(name, args, timeout_ms);
    if (jhas(r, "return")) {
        return true;
    }
    if (err) {
        *err = r.is_null() ? "no reply" : jstring(jpath(r, {"error", "desc"}));
    }
    return false;
}

std::vector<StreamItem> Qmp::stream()
{
    std::lock_guard<std::mutex> g(m_);
    return stream_;
}

std::string Qmp::last_migration()
{
    std::lock_guard<std::mutex> g(m_);
    return last_mig_;
}

bool Qmp::seen_migration(const std::string &status)
{
    std::lock_guard<std::mutex> g(m_);
    return seen_mig_.count(status) != 0;
}

bool Qmp::closed()
{
    std::lock_guard<std::mutex> g(m_);
    return closed_;
}

void Qmp::close_conn()
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

bool Qmp::read_line_blocking(std::string &line)
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

void Qmp::read_loop()
{
    std::string line;
    while (read_line_blocking(line)) {
        Json j;
        if (!json_parse(line, j) || !j.is_object()) {
            continue;
        }
        double t = now_ms();
        std::lock_guard<std::mutex> g(m_);
        if (jhas(j, "event")) {
            std::string ev = jstring(j["event"]);
            stream_.push_back(StreamItem{t, -1, true, ev, j});
            if (ev == "MIGRATION") {
                last_mig_ = jstring(jpath(j, {"data", "status"}));
                seen_mig_.insert(last_mig_);
            }
        } else if (jhas(j, "id")) {
            uint64_t id = uint64_t(jnumber(j["id"]));
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

} // namespace chaos
