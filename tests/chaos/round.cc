// SPDX-License-Identifier: GPL-2.0-or-later

#include "round.h"

#include "util.h"

#include <algorithm>
#include <climits>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace chaos {

std::string qemu_path_abs(const std::string &p)
{
    char buf[PATH_MAX];
    if (realpath(p.c_str(), buf)) {
        return buf;
    }
    return p;
}

namespace {
std::vector<uint8_t> g_bootsect;
}

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
    const Json &cl = jpath(caps, {"return"});
    for (const auto &c : cl.is_array() ? cl : Json::array()) {
        if (jstring(jpath(c, {"capability"})) == kPcf + "postcopy-start-handshake") {
            f.handshake = true;
        }
    }
    Json props = q.qmp.cmd("qom-list-properties", "{\"typename\":\"migration\"}");
    const Json &pl = jpath(props, {"return"});
    for (const auto &p : pl.is_array() ? pl : Json::array()) {
        if (jstring(jpath(p, {"name"})) == "x-postcopy-start-handshake-negotiate") {
            f.negotiate = true;
        }
    }
    Json params = q.qmp.cmd("query-migrate-parameters");
    f.break_action = jhas(jpath(params, {"return"}), (kPcf + "postcopy-break-action").c_str());
    f.detect_timeout = jhas(jpath(params, {"return"}), (kPcf + "postcopy-detect-timeout").c_str());
    q.finish();
    return f;
}

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
    if (cfg_.x.hugepages) {
        a.push_back("-object");
        a.push_back("memory-backend-memfd,id=ram0,size=150M,hugetlb=on,hugetlbsize=2M");
        a.push_back("-machine");
        a.push_back("memory-backend=ram0");
    }
    if (dest) {
        if (!cfg_.x.autostart) {
            a.push_back("-S");
        }
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
        caps += ",{\"capability\":\"" + kPcf + "postcopy-start-handshake\",\"state\":" +
                std::string(cfg_.handshake ? "true" : "false") + "}";
    }
    if (!dest && cfg_.x.release_ram) {
        caps += ",{\"capability\":\"release-ram\",\"state\":true}";
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
        if (cfg_.x.paused_guest) {
            // 32 MiB/s: the first pass lasts ~3 s, post-copy starts in it
            params += ",\"max-bandwidth\":33554432";
        }
    }
    if (!cfg_.break_action.empty()) {
        params += std::string(params.empty() ? "" : ",") + "\"" + kPcf + "postcopy-break-action\":" +
                  json_quote(cfg_.break_action);
    }
    if (cfg_.detect_timeout >= 0) {
        params += std::string(params.empty() ? "" : ",") +
                  fmt("\"%spostcopy-detect-timeout\":%d", kPcf.c_str(), cfg_.detect_timeout);
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

void Round::dump_threads()
{
    if (std::system("command -v gdb >/dev/null 2>&1") != 0) {
        note("hang: no gdb here, no thread dump");
        return;
    }
    for (Qemu *q : {&src_, &dst_}) {
        if (!q->alive() || q->sigstopped) {
            continue;
        }
        std::string out = dir_ + "/" + q->name + ".threads";
        std::string cmd = fmt("timeout 60 gdb -p %d -batch -ex 'thread apply all bt' > '%s' 2>&1",
                              int(q->pid), out.c_str());
        if (std::system(cmd.c_str()) == 0) {
            note(q->name + ": thread backtraces in " + out);
        } else {
            note(q->name + ": gdb failed, see " + out);
        }
    }
}

Round::Round(const Options &o, const Features &feat, int round, const std::string &dir)
    : o_(o), feat_(feat), round_(round), dir_(dir)
{
    cfg_ = make_plan(o.seed, round, feat, o.sweep);
}

void Round::note(const std::string &s)
{
    std::lock_guard<std::mutex> g(log_m_);
    res_.timeline.push_back(fmt("%9.1f  %s", now_ms() - t_round_, s.c_str()));
}

void Round::fire(FaultPlan &f)
{
    f.fired = true;
    f.fired_at = now_ms();
    f.src_phase = side_status(src_);
    f.dst_phase = side_status(dst_);
    std::string err;
    bool ok = fault_apply(f.kind, targets_, &err);
    f.result = ok ? "done" : "refused: " + err;
    note(fmt("fault %s (source %s, destination %s): %s", fault_name(f.kind), f.src_phase.c_str(),
             f.dst_phase.c_str(), f.result.c_str()));
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
        // Upstream's rule: pages sent and discarded may be lost
        if (cfg_.x.release_ram && err.find("release-ram") != std::string::npos) {
            no_recovery_ = true;
        }
        return;
    }
    note("recovery: migrate-recover + migrate resume=true");
}

namespace {

// How long a sweep round waits for its event after migrate-start-postcopy.
constexpr double kSweepWaitMs = 15000;

bool is_final_src(const std::string &s)
{
    return s == "completed" || s == "failed" || s == "cancelled" || s == "dead";
}

bool is_final_dst(const std::string &s)
{
    return s == "completed" || s == "failed" || s == "cancelled" || s == "dead";
}

} // namespace

void Round::free_image()
{
    if (lock_.held()) {
        lock_.release();
        t_lock_off_ = now_ms();
        note("lock-held: the other process frees the image");
    }
}

void Round::lock_cont_failed(const std::string &err)
{
    lk_.cont_failed = true;
    for (const auto &f : cfg_.faults) {
        lk_.faults_before |= f.fired;
    }
    note("lock-held: the destination cannot take its disk (" + err + "): the manager cancels");
    free_image();
    lk_.cancel_ok = src_.qmp.ok("migrate_cancel", "", &lk_.cancel_err, 5000);
    if (lk_.cancel_ok) {
        note("source: migrate_cancel");
        return;
    }
    note("source: migrate_cancel refused: " + lk_.cancel_err);
    // The migration goes on (without the start handshake it cannot be
    // cancelled here): start the destination, now that the image is free.
    std::string e2;
    if (dst_.qmp.ok("cont", "", &e2, 5000)) {
        note("destination: cont again (the image is free)");
    } else {
        note("destination: cont refused again: " + e2);
    }
}

bool Round::dump_memory(Qemu &q, const std::string &file, std::string *err)
{
    return q.qmp.ok("pmemsave",
                    fmt("{\"val\":%zu,\"size\":%zu,\"filename\":%s}", kTestMemStart, kTestMemEnd - kTestMemStart,
                        json_quote(file).c_str()),
                    err, 60000);
}

// The guest loop increments the first byte of every page of the test RAM:
// a guest that runs changes the one at 1 MiB within a few milliseconds.
bool Round::guest_progresses(Qemu &q, std::string *why)
{
    auto read = [&](int *v) {
        Json r = q.qmp.cmd("human-monitor-command",
                           fmt("{\"command-line\":\"xp /1bx 0x%zx\"}", kTestMemStart), 5000);
        std::string s = jstring(jpath(r, {"return"}));
        size_t c = s.find(": 0x");
        if (c == std::string::npos) {
            *why = "xp: " + (r.is_null() ? std::string("no reply") : s + jstring(jpath(r, {"error", "desc"})));
            return false;
        }
        *v = int(std::strtol(s.c_str() + c + 2, nullptr, 16));
        return true;
    };
    int first, v;
    if (!read(&first)) {
        return false;
    }
    for (double d = now_ms() + 3000; now_ms() < d;) {
        sleep_ms(20);
        if (!read(&v)) {
            return false;
        }
        if (v != first) {
            return true;
        }
    }
    *why = fmt("the byte at 0x%zx stayed 0x%02x for 3 s", kTestMemStart, first);
    return false;
}

bool Round::disks_active(Qemu &q, std::string *why)
{
    Json r = q.qmp.cmd("query-block", "", 10000);
    const Json &l = jpath(r, {"return"});
    if (!l.is_array()) {
        *why = "query-block: no answer";
        return false;
    }
    for (const auto &b : l) {
        const Json &ins = jpath(b, {"inserted"});
        if (jhas(ins, "active") && !jbool(jpath(ins, {"active"}))) {
            *why = "disk " + jstring(jpath(b, {"device"})) + " is inactive";
            return false;
        }
    }
    return true;
}

bool Round::resumed_since(Qemu &q, double t, double until)
{
    for (const auto &it : q.qmp.stream()) {
        if (it.event && it.name == "RESUME" && it.recv >= t && (until < 0 || it.recv < until)) {
            return true;
        }
    }
    return false;
}

void Round::check_can_run(Qemu &q, const SideEnd &e, bool *can, bool other_can, bool other_running)
{
    std::string why;
    // A guest stopped before the migration, and never run since: exactly
    // the memory it had then.
    if (cfg_.x.paused_guest && !pre_mem_.empty() && !e.running && !resumed_since(q, t_pre_dump_, -1)) {
        std::string file = dir_ + "/" + q.name + ".after.mem";
        if (!dump_memory(q, file, &why)) {
            violation(q.name + ": pmemsave failed: " + why);
        } else if (!same_memory(pre_mem_, file, &why)) {
            violation(q.name + ": guest memory is not what it was before the migration: " + why);
        } else {
            note(q.name + ": guest memory as before the migration");
        }
        unlink(file.c_str());
    }
    if (!e.running) {
        if (other_can || other_running) {
            note("oracle: no cont on the " + q.name + ": the other side can run the guest too");
            return;
        }
        if (&q == &src_) {
            double death = -1;
            dst_.reap();
            {
                std::lock_guard<std::mutex> g(dst_.m);
                if (dst_.exited && !dst_.quit_by_us) {
                    death = dst_.exit_time;
                }
            }
            if (analyse_runs(dst_.qmp.stream(), false, now_ms(), death).first_surely_running >= 0) {
                note("oracle: no cont on the source: the destination ran the guest");
                return;
            }
            t_oracle_cont_ = now_ms();
        }
        std::string err;
        if (!q.qmp.ok("cont", "", &err, 10000)) {
            note("oracle: cont on the " + q.name + " refused: " + err);
            *can = false;
            return;
        }
        note("oracle: cont on the " + q.name + " (counted as able to run the guest)");
        bool running = false;
        for (double d = now_ms() + 3000; now_ms() < d && !running;) {
            running = jbool(jpath(q.qmp.cmd("query-status", "", 5000), {"return", "running"}));
            if (!running) {
                sleep_ms(20);
            }
        }
        if (!running) {
            violation(q.name + ": cont succeeded, but query-status does not report it running within 3 s");
            *can = false;
            return;
        }
    }
    bool progress = guest_progresses(q, &why);
    if (!progress) {
        violation(q.name + ": counted as running the guest, but it makes no progress: " + why);
        *can = false;
    }
    bool disk = disks_active(q, &why);
    if (!disk) {
        violation(q.name + ": runs the guest without its disk: " + why);
    }
    if (progress && disk) {
        note(q.name + ": the guest runs (its memory changes), disk active");
    }
}

RoundResult Round::run()
{
    t_round_ = now_ms();
    double t_start = t_round_;
    src_.name = "source";
    dst_.name = "destination";
    res_.fault_desc = describe_faults(cfg_);
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
    bool operator_cancel = false;   // the operator's migrate_cancel, once
    bool bad_setup = false;
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
    if (!bad_setup && cfg_.x.paused_guest) {
        pre_mem_ = dir_ + "/source.before.mem";
        if (!src_.qmp.ok("stop", "", &err, 10000) || !dump_memory(src_, pre_mem_, &err)) {
            violation("harness: cannot stop the guest and save its memory: " + err);
            bad_setup = true;
        } else {
            t_pre_dump_ = now_ms();
            note("source: guest stopped before the migration, memory saved");
        }
    }
    if (!bad_setup) {
        Json st = src_.qmp.cmd("query-status");
        src_initially_running_ = jbool(jpath(st, {"return", "running"}));
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
            if (jnumber(jpath(r, {"return", "ram", "dirty-sync-count"})) >= 2) {
                pass = true;
                break;
            }
            // A stopped guest dirties nothing: pre-copy would complete
            // after its first pass (slowed down by max-bandwidth), so
            // post-copy starts during it.
            if (cfg_.x.paused_guest && jnumber(jpath(r, {"return", "ram", "transferred"})) >= (16 << 20)) {
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
    if (!bad_setup && cfg_.x.lock_held) {
        if (lock_.hold(dir_ + "/boot.raw", &err)) {
            t_lock_on_ = now_ms();
            note("lock-held: another process holds the image's locks");
        } else {
            violation("harness: cannot lock the image: " + err);
            bad_setup = true;
        }
    }
    if (!bad_setup) {
        // Schedule: migrate-start-postcopy at t_sp, fault i at t_sp + at_ms
        // (sweep rounds: at_ms after the proxy saw the event).
        int earliest = 0;
        for (auto &f : cfg_.faults) {
            earliest = std::min(earliest, cfg_.sweep ? 0 : f.at_ms);
        }
        t_sp = now_ms() - earliest + 5;
        t_sp_ = t_sp;
        double lift_all = 0;
        for (auto &f : cfg_.faults) {
            double at = cfg_.sweep ? t_sp + kSweepWaitMs : t_sp + f.at_ms;
            lift_all = std::max(lift_all, at + (fault_lifts(f.kind) ? f.lift_ms : 0));
        }
        lift_all_ = lift_all;
        for (auto &f : cfg_.faults) {
            FaultPlan *fp = &f;
            if (!cfg_.sweep) {
                faulters.emplace_back([this, fp, t_sp] {
                    sleep_ms(t_sp + fp->at_ms - now_ms());
                    fire(*fp);
                    if (fault_lifts(fp->kind)) {
                        sleep_ms(fp->fired_at + fp->lift_ms - now_ms());
                        fault_lift(fp->kind, targets_);
                        note(fmt("lifted %s", fault_name(fp->kind)));
                    }
                });
                continue;
            }
            // Before the event: the proxy holds the message back for the
            // offset and the fault fires when it reads it; after: the
            // fault fires at the offset after it read it.
            proxy_.arm_hold(cfg_.sweep_event, fp->at_ms < 0 ? -fp->at_ms : 0);
            faulters.emplace_back([this, fp, t_sp] {
                double te = proxy_.wait_event(cfg_.sweep_event, t_sp + kSweepWaitMs, sweep_cancel_);
                if (te < 0) {
                    note(fmt("sweep: no %s on the wire: the fault did not fire",
                             wire_event_name(cfg_.sweep_event)));
                    lift_all_ = now_ms();
                    return;
                }
                sweep_event_at_ = te;
                sleep_ms(te + fp->at_ms - now_ms());
                fire(*fp);
                lift_all_ = fp->fired_at + (fault_lifts(fp->kind) ? fp->lift_ms : 0);
                if (fault_lifts(fp->kind)) {
                    sleep_ms(fp->fired_at + fp->lift_ms - now_ms());
                    fault_lift(fp->kind, targets_);
                    note(fmt("lifted %s", fault_name(fp->kind)));
                }
            });
        }
        sleep_ms(t_sp - now_ms());
        // A SIGSTOPped source cannot answer: send it once it is continued,
        // as libvirt would retry.
        while (src_.alive() && src_.sigstopped && now_ms() < lift_all_ + 1000) {
            sleep_ms(10);
        }
        if (src_.alive() && !src_.sigstopped) {
            proxy_.expect_package();
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
        // paused post-copy once the faults are lifted.  A paused guest
        // stays paused (libvirt does not start a domain that was paused),
        // an autostarting destination starts by itself; with the image
        // locked the manager tries all the same (and sees it fail).
        bool manager_conts = cfg_.x.lock_held || (!cfg_.x.autostart && !cfg_.x.paused_guest);
        double next_recovery = 0;
        int recoveries = 0;
        double both_half_paused_since = -1;
        bool broke = false;
        bool done = false;
        for (;;) {
            double lift_all_now = lift_all_;
            if (now_ms() >= std::max(lift_all_now + o_.settle_ms, t_sp + o_.settle_ms)) {
                break;
            }
            std::string s = side_status(src_), d = side_status(dst_);
            // With the start handshake, 'cont' as soon as the destination
            // reports postcopy-active (the flow: the handshake makes
            // it safe).  Without it, like libvirt: once the source reports
            // postcopy-active, i.e. received the package acknowledgement;
            // before that, a destination started by 'cont' may run while
            // the source fails and resumes (no protocol can tell them apart
            // without the handshake; docs/reliability.md).  A cont=early
            // manager does not wait for the source.
            bool cont_due = cfg_.hs() || cfg_.x.early_cont
                                ? d == "postcopy-active"
                                : d == "postcopy-active" &&
                                      src_.qmp.seen_migration("postcopy-active");
            if (manager_conts && !cont_sent && cont_due && dst_.alive()) {
                cont_sent = true;
                if (dst_.qmp.ok("cont", "", &err, 5000)) {
                    note("destination: cont (libvirt)");
                } else {
                    note("destination: cont refused: " + err);
                    if (lock_.held() && err.find("lock") != std::string::npos) {
                        lock_cont_failed(err);
                    }
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
            bool lifted = now_ms() >= lift_all_now;
            bool src_final = is_final_src(s);
            bool dst_final = is_final_dst(d);
            if (cfg_.sweep && src_final && dst_final && !cfg_.faults[0].fired) {
                sweep_cancel_ = true;   // its event cannot come any more
            }
            // The other process keeps the image until the destination's
            // cont failed on it, for 5 s of post-copy at most (or until the
            // faults are lifted, if later).
            if (lock_.held() && ((src_final && dst_final) ||
                                 now_ms() >= std::max(lift_all_now, t_sp + 5000))) {
                free_image();
            }
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
                if (now_ms() > lift_all_now + 10000) {
                    violation(fmt("hang: the destination is still in %s 10 s after the source died",
                                  d.c_str()));
                    dump_threads();
                    done = true;
                    break;
                }
            }
            if (lifted && d == "dead" && (s == "postcopy-paused")) {
                done = true;
                break;
            }
            // The operator contract without the handshake: the source
            // paused on a break before the package acknowledgement, and
            // the destination reports that it failed (it never ran the
            // guest): the operator's migrate_cancel gives the source its
            // guest back.  Refused only if the source had been
            // acknowledged; then nobody can run the guest, and the hang
            // below reports it.
            if (lifted && !cfg_.hs() && !operator_cancel && s == "postcopy-paused" &&
                (d == "failed" || d == "cancelled") && dst_.alive()) {
                operator_cancel = true;
                if (src_.qmp.ok("migrate_cancel", "", &err, 5000)) {
                    note("source: migrate_cancel (operator: the destination failed)");
                } else {
                    note("source: migrate_cancel refused: " + err);
                }
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
                now_ms() > lift_all_now + 6000) {
                // The source gave up; the destination may wait forever for
                // a stream that will not come (no return path fault is
                // visible to it).  That is its right: it never ran.
                done = true;
                break;
            }
            if (lifted && no_recovery_ && s == "postcopy-paused") {
                note("release-ram: the source refuses post-copy recovery, nothing more to try");
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
            dump_threads();
            violation(fmt("hang: no final state %d s after the faults were lifted (source %s, "
                          "destination %s)",
                          o_.settle_ms / 1000, side_status(src_).c_str(), side_status(dst_).c_str()));
        }
    }
    sweep_cancel_ = true;
    for (auto &t : faulters) {
        t.join();
    }
    for (auto &f : cfg_.faults) {
        if (f.fired && !fault_lifts(f.kind)) {
            continue;
        }
        fault_lift(f.kind, targets_);
    }
    free_image();
    sleep_ms(300);   // let the last events arrive
    stop_sampling_ = true;
    if (samp.joinable()) {
        samp.join();
    }
    if (!cfg_.faults.empty()) {
        res_.phase = cfg_.faults[0].fired ? cfg_.faults[0].src_phase : "not-fired";
    }
    if (cfg_.sweep) {
        res_.sweep_event = int(cfg_.sweep_event);
        res_.sweep_offset = cfg_.faults[0].at_ms;
        if (sweep_event_at_ >= 0) {
            note(fmt("sweep: %s read by the proxy %.1f ms after migrate-start-postcopy%s",
                     wire_event_name(cfg_.sweep_event), sweep_event_at_ - t_sp_,
                     cfg_.faults[0].fired
                         ? fmt(", fault %.1f ms after it", cfg_.faults[0].fired_at - sweep_event_at_).c_str()
                         : ""));
        }
    }

    // ---- final state and invariants
    SideEnd se, de;
    se.alive = src_.alive();
    de.alive = dst_.alive();
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
            SideEnd &e = q == &src_ ? se : de;
            e.running = jbool(jpath(r, {"return", "running"}));
            e.runstate = jstring(jpath(r, {"return", "status"}));
            note(fmt("%s: final run state %s, migration %s", q->name.c_str(), e.runstate.c_str(),
                     side_status(*q).c_str()));
        }
    }
    se.mig = src_.qmp.last_migration();
    de.mig = dst_.qmp.last_migration();
    bool src_can = source_can_run(se);
    bool dst_can = destination_can_run(de);

    // Crashes: any exit we did not cause.
    for (Qemu *q : {&src_, &dst_}) {
        q->reap();
        std::lock_guard<std::mutex> g(q->m);
        SideEnd &e = q == &src_ ? se : de;
        e.killed_by_us = q->killed_by_us;
        e.exited_by_itself = q->exited && !q->killed_by_us;
        e.wstatus = q->wstatus;
        std::string v = crash_violation(q->name, e);
        if (!v.empty()) {
            violation(v);
        }
    }

    // A side counted as able to run the guest must really run it: 'cont'
    // if it is stopped, then its guest must make progress with its disk
    // active (and a guest stopped before the migration must have its
    // memory exactly as it was).
    if (!bad_setup) {
        if (src_can && src_.alive()) {
            check_can_run(src_, se, &src_can, dst_can, de.running);
        }
        if (dst_can && dst_.alive()) {
            check_can_run(dst_, de, &dst_can, src_can, se.running);
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
            if (!dump_memory(*q, file, &why)) {
                violation(q->name + ": pmemsave failed: " + why);
            } else if (!check_memory(file, why)) {
                violation(q->name + ": guest memory corrupt: " + why);
            } else {
                note(q->name + ": guest memory intact");
            }
            unlink(file.c_str());
        }
    }
    if (!pre_mem_.empty()) {
        unlink(pre_mem_.c_str());
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
    bool dst_ever_ran = rb.first_surely_running >= 0;
    if (!bad_setup) {
        RunVerdict rv = check_runs(ra, rb, t_round_, src_can, dst_can, de.running, se.mig, de.mig,
                                   res_.violations);
        if (!rv.note.empty()) {
            note(rv.note);
        }
    }

    // Paths through the shim's table.
    uint32_t flags = MC_FLAG_RETURN_PATH | (cfg_.hs() ? MC_FLAG_START_HANDSHAKE : 0);
    std::string sseq, dseq;
    check_path(MC_ROLE_SOURCE, flags, ss, res_.violations, sseq);
    check_path(MC_ROLE_DESTINATION, flags, ds, res_.violations, dseq);

    // paused-guest: the source never starts a guest that was stopped
    // before the migration (QEMU restores the run state it had).
    if (!bad_setup && cfg_.x.paused_guest && t_pre_dump_ >= 0 &&
        resumed_since(src_, t_pre_dump_, t_oracle_cont_)) {
        violation("paused-guest: the source started a guest that was stopped before the migration");
    }

    // Outcome.
    OutcomeFacts of;
    of.bad_setup = bad_setup;
    of.src_can = src_can;
    of.dst_can = dst_can;
    of.src_killed = src_.killed_by_us;
    of.dst_killed = dst_.killed_by_us;
    of.dst_ever_ran = dst_ever_ran;
    of.src_reached_active = src_.qmp.seen_migration("postcopy-active");
    of.src_reached_device = src_.qmp.seen_migration("postcopy-device");
    of.hs = cfg_.hs();
    of.no_recovery = no_recovery_;
    of.grant_sent = proxy_.event_time(WireEvent::Grant) >= 0;
    of.s_mig = se.mig;
    of.d_mig = de.mig;
    res_.outcome = classify(of, res_.violations);
    // Before the acknowledgement the source discards nothing (release-ram
    // waits, docs/devel/migration/postcopy-switchover.rst): nothing can be
    // lost, so nothing justifies refusing the recovery.
    if (!bad_setup && no_recovery_ && !of.src_reached_active) {
        violation("release-ram: the source refuses post-copy recovery although it paused in "
                  "postcopy-device, before it may discard any RAM");
    }

    // lock-held, with the start handshake: the destination's cont failed
    // before it asked to start, so the migration is cancellable, and the
    // cancel gives the source its guest back, with its disk (checked
    // above).  Only when no planned fault came first.
    if (!bad_setup && cfg_.x.lock_held) {
        if (t_lock_on_ >= 0 && resumed_since(dst_, t_lock_on_, t_lock_off_)) {
            violation("harness: lock-held: the destination started its guest although the image was locked");
        }
        if (cfg_.hs() && lk_.cont_failed && !lk_.faults_before) {
            if (!lk_.cancel_ok) {
                violation("lock-held: migrate_cancel refused after the destination's cont failed "
                          "(start handshake): " + lk_.cancel_err);
            } else if (src_.killed_by_us) {
                // A planned fault killed the source after the cancel:
                // whatever it had is gone (classified lost:source-killed)
            } else if (se.mig != "cancelled" || !src_can) {
                violation(fmt("lock-held: the cancelled migration did not give the source its guest back "
                              "(source %s, run state %s)",
                              se.mig.c_str(), se.runstate.c_str()));
            }
        }
    }

    // Timeline for the report.
    for (const auto &w : proxy_.wire_notes()) {
        res_.timeline.push_back(fmt("%9.1f  %s", w.t - t_round_, w.what.c_str()));
    }
    for (auto *pr : {&ss, &ds}) {
        const char *who = pr == &ss ? "source" : "destination";
        for (const auto &it : *pr) {
            if (it.event && (it.name == "MIGRATION" || it.name == "STOP" || it.name == "RESUME")) {
                std::string what = it.name == "MIGRATION" ? "MIGRATION " + jstring(jpath(it.msg, {"data", "status"}))
                                                          : it.name;
                res_.timeline.push_back(fmt("%9.1f  %s: %s", it.recv - t_round_, who, what.c_str()));
            }
        }
    }
    std::stable_sort(res_.timeline.begin(), res_.timeline.end(), [](const std::string &a, const std::string &b) {
        return std::strtod(a.c_str(), nullptr) < std::strtod(b.c_str(), nullptr);
    });
    res_.timeline.push_back("source MIGRATION: " + sseq);
    res_.timeline.push_back("destination MIGRATION: " + dseq);
    res_.seconds = (now_ms() - t_start) / 1000.0;
    return res_;
}

} // namespace chaos
