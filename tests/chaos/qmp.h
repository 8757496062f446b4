// QMP client of the fault-injection driver: one connection to one QEMU,
// commands with replies, and the connection's ordered output stream
// (events and replies in the order QEMU wrote them), which the oracle's
// run-state analysis relies on.  JSON is nlohmann::json (Debian's
// nlohmann-json3-dev), read through the null-safe accessors below.
//
// SPDX-License-Identifier: GPL-2.0-or-later

#ifndef CHAOS_QMP_H
#define CHAOS_QMP_H

#include <nlohmann/json.hpp>

#include <condition_variable>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace chaos {

using Json = nlohmann::json;

// Null-safe reads: a missing key, a non-object or another type gives
// null, "", 0 or false (a QMP reply is never trusted to have a shape).
const Json &jpath(const Json &j, std::initializer_list<const char *> keys);
bool jhas(const Json &j, const char *key);
std::string jstring(const Json &j);
double jnumber(const Json &j);
bool jbool(const Json &j);
// A JSON string literal for @s (QMP arguments are built as text).
std::string json_quote(const std::string &s);
// Parses one QMP line; false on malformed input (never throws).
bool json_parse(const std::string &text, Json &out);

// One item of a QMP connection's output stream, in the order QEMU wrote
// it: events and replies share one ordered stream, which is what makes the
// run-state analysis sound (see analyse_runs in oracle.h).
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

    // Connects (retrying until @timeout_ms), reads the greeting, starts the
    // reader thread and negotiates capabilities.
    bool connect_to(const std::string &path, double timeout_ms);

    // Sends a command and waits for its reply; returns the reply object
    // ({"return": ...} or {"error": ...}) or null on timeout or close.
    // @args is the arguments object as JSON text, "" for none.
    Json cmd(const std::string &name, const std::string &args = "", double timeout_ms = 10000);

    // The command succeeded; else *err (if given) says why.
    bool ok(const std::string &name, const std::string &args = "", std::string *err = nullptr,
            double timeout_ms = 10000);

    std::vector<StreamItem> stream();
    // The status of the last MIGRATION event, "" if none yet.
    std::string last_migration();
    bool seen_migration(const std::string &status);
    bool closed();
    void close_conn();

private:
    struct PendingCmd {
        std::string name;
        double sent;
    };

    bool read_line_blocking(std::string &line);
    void read_loop();

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

} // namespace chaos

#endif
