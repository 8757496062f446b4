// gen-model: write the switchover tables of the shim as Promela, for the
// spin model of the glue (model/glue.pml, scripts/check-model).
//
// The rows come from the library itself (src/table.h: the very arrays
// mc_switchover_lookup() reads), so the model checks the table QEMU runs,
// not a copy of it.
//
//   gen-model [--mutate-row ROW --to STATE [--actions LIST]]... > table.pml
//   gen-model --conformance > conformance.pml   spin harness: the emitted
//                                               look-up against the library
//   gen-model --list-rows                       the row names
//   gen-model --self-test                       TAP (meson test)
//
// ROW is a name printed by --list-rows (e.g. source:postcopy-committed+
// ChannelBroken[rp,hs]) or role:index; STATE a state name (postcopy-paused);
// LIST actions separated by commas (resume-source, keep-stopped,
// send-start-request, send-start-grant, send-start-deny, start-vcpus) or
// "none".  A mutated row is what a broken table would do: the model must
// then fail (scripts/check-model).
//
// SPDX-License-Identifier: GPL-2.0-or-later

#include "migration-control.h"
#include "../src/table.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <vector>

namespace {

constexpr uint32_t kAllFlags[] = {
    0, MC_FLAG_RETURN_PATH, MC_FLAG_RETURN_PATH | MC_FLAG_START_HANDSHAKE,
    MC_FLAG_GUEST_RUNNING, MC_FLAG_RETURN_PATH | MC_FLAG_GUEST_RUNNING,
    MC_FLAG_RETURN_PATH | MC_FLAG_START_HANDSHAKE | MC_FLAG_GUEST_RUNNING,
};

struct ActionName {
    uint32_t bit;
    const char *name;    // command line
    const char *macro;   // Promela
};

const ActionName kActions[] = {
    {MC_ACTION_RESUME_SOURCE, "resume-source", "A_RESUME_SOURCE"},
    {MC_ACTION_KEEP_STOPPED, "keep-stopped", "A_KEEP_STOPPED"},
    {MC_ACTION_SEND_START_REQUEST, "send-start-request", "A_SEND_START_REQUEST"},
    {MC_ACTION_SEND_START_GRANT, "send-start-grant", "A_SEND_START_GRANT"},
    {MC_ACTION_SEND_START_DENY, "send-start-deny", "A_SEND_START_DENY"},
    {MC_ACTION_START_VCPUS, "start-vcpus", "A_START_VCPUS"},
};

// "postcopy-device" -> "PostcopyDevice": the Promela name of a state.
std::string state_id(McState s)
{
    std::string out;
    bool up = true;
    for (const char *p = mc_state_name(s); *p; p++) {
        if (*p == '-') {
            up = true;
            continue;
        }
        out += up ? char(*p - 'a' + 'A') : *p;
        up = false;
    }
    return out;
}

// Events are "On" + the library's name: states and events share one
// Promela namespace (Completed, StartRequested are both).
std::string event_id(McEvent e)
{
    return std::string("On") + mc_event_name(e);
}

std::string flags_text(uint32_t need, uint32_t without)
{
    std::string out;
    auto add = [&](const char *s) {
        if (!out.empty()) {
            out += ',';
        }
        out += s;
    };
    if (need & MC_FLAG_RETURN_PATH) add("rp");
    if (without & MC_FLAG_RETURN_PATH) add("!rp");
    if (need & MC_FLAG_START_HANDSHAKE) add("hs");
    if (without & MC_FLAG_START_HANDSHAKE) add("!hs");
    if (need & MC_FLAG_GUEST_RUNNING) add("gr");
    if (without & MC_FLAG_GUEST_RUNNING) add("!gr");
    return out;
}

std::string actions_text(uint32_t a, bool promela)
{
    std::string out;
    for (const ActionName &n : kActions) {
        if (a & n.bit) {
            if (!out.empty()) {
                out += promela ? " | " : ",";
            }
            out += promela ? n.macro : n.name;
        }
    }
    return out.empty() ? (promela ? "0" : "none") : out;
}

std::string flag_bits(uint32_t f)
{
    std::string out;
    if (f & MC_FLAG_RETURN_PATH) {
        out = "F_RP";
    }
    if (f & MC_FLAG_START_HANDSHAKE) {
        out += out.empty() ? "F_HS" : " | F_HS";
    }
    if (f & MC_FLAG_GUEST_RUNNING) {
        out += out.empty() ? "F_GR" : " | F_GR";
    }
    return out.empty() ? "0" : out;
}

std::string flags_expr(uint32_t need, uint32_t without)
{
    if (!need && !without) {
        return "";
    }
    return "FLAGS_OK(" + flag_bits(need) + ", " + flag_bits(without) + ")";
}

bool applies(const mc::Row &r, uint32_t flags)
{
    return (flags & r.need) == r.need && (flags & r.without) == 0;
}

// Some flag set satisfies both rows' conditions.
bool overlap(const mc::Row &a, const mc::Row &b)
{
    return ((a.need | b.need) & (a.without | b.without)) == 0;
}

struct Emit {
    McRole role;
    size_t index;
    mc::Row row;            // as emitted (mutated or not)
    mc::Row original;
    bool mutated;
    std::vector<size_t> shadowed_by;   // earlier rows that win when both apply
};

std::string role_prefix(McRole r) { return r == MC_ROLE_SOURCE ? "src" : "dst"; }

std::string row_name(McRole role, const mc::Row &r)
{
    std::string n = std::string(mc_role_name(role)) + ":" + mc_state_name(r.from) +
                    "+" + mc_event_name(r.event);
    std::string f = flags_text(r.need, r.without);
    if (!f.empty()) {
        n += "[" + f + "]";
    }
    return n;
}

struct Mutation {
    std::string row;
    McState to = MC_STATE__MAX;
    bool set_actions = false;
    uint32_t actions = 0;
    bool used = false;
};

std::vector<Emit> build(McRole role, std::vector<Mutation> &muts)
{
    std::vector<Emit> out;
    mc::Span<mc::Row> t = mc::switchover_table(role);
    for (size_t i = 0; i < t.size; i++) {
        Emit e{role, i, t.data[i], t.data[i], false, {}};
        std::string name = row_name(role, e.row);
        std::string idx = std::string(mc_role_name(role)) + ":" + std::to_string(i);
        for (Mutation &m : muts) {
            if (m.row == name || m.row == idx) {
                e.row.to = m.to;
                if (m.set_actions) {
                    e.row.actions = m.actions;
                }
                e.mutated = true;
                m.used = true;
            }
        }
        for (size_t j = 0; j < i; j++) {
            const mc::Row &p = t.data[j];
            if (p.from == e.row.from && p.event == e.row.event && overlap(p, e.row)) {
                e.shadowed_by.push_back(j);
            }
        }
        out.push_back(e);
    }
    return out;
}

// What the emitted look-up answers, evaluated the way the Promela does it
// (every guard, with the exclusions of earlier rows): for the self-test.
int emitted_lookup(const std::vector<Emit> &rows, uint32_t flags, McState s,
                   McEvent ev, McTransition *t)
{
    const Emit *hit = nullptr;
    for (const Emit &e : rows) {
        bool g = e.row.from == s && e.row.event == ev && applies(e.row, flags);
        for (size_t j : e.shadowed_by) {
            g = g && !applies(rows[j].row, flags);
        }
        if (g) {
            if (hit) {
                return -2;   // two guards open: Promela would choose at random
            }
            hit = &e;
        }
    }
    if (!hit) {
        return -1;
    }
    t->from = s;
    t->to = hit->row.to;
    t->actions = hit->row.actions;
    return 0;
}

// mc_switchover_source_holds_guest(), derived the same way from the rows
// given (mutated or not); checked against the library in the self-test
// and before any unmutated output is written.
bool derived_holds_guest(const std::vector<Emit> &src, uint32_t flags, McState s)
{
    if (s == MC_STATE_ACTIVE || s == MC_STATE_DEVICE || s == MC_STATE_FAILED ||
        s == MC_STATE_CANCELLED) {
        return true;
    }
    for (McEvent e : {MC_EVENT_CHANNEL_BROKEN, MC_EVENT_LOAD_FAILED,
                      MC_EVENT_ACK_TIMEOUT, MC_EVENT_SWITCHOVER_FAILED,
                      MC_EVENT_CANCEL_REQUESTED}) {
        McTransition t;
        if (emitted_lookup(src, flags, s, e, &t) == 0 &&
            (t.actions & MC_ACTION_RESUME_SOURCE)) {
            return true;
        }
    }
    return false;
}

// The states a real machine reaches from active with @flags, each with the
// library's own mc_switchover_source_holds_guest() answer.
std::vector<std::pair<McState, bool>> reachable_holds(uint32_t flags)
{
    std::vector<std::pair<McState, bool>> out;
    std::vector<std::vector<McEvent>> paths = {{}};
    std::set<McState> seen;
    for (size_t k = 0; k < paths.size(); k++) {
        McSwitchover *sw = mc_switchover_new(MC_ROLE_SOURCE, flags);
        if (!sw) {
            return out;
        }
        for (McEvent e : paths[k]) {
            mc_switchover_fire(sw, e, nullptr, nullptr, 0);
        }
        McState s = mc_switchover_state(sw);
        if (seen.insert(s).second) {
            out.push_back({s, mc_switchover_source_holds_guest(sw) != 0});
            for (int e = 0; e < MC_EVENT__MAX; e++) {
                if (mc_switchover_check(sw, McEvent(e), nullptr, nullptr, 0) == 0) {
                    std::vector<McEvent> p = paths[k];
                    p.push_back(McEvent(e));
                    paths.push_back(p);
                }
            }
        }
        mc_switchover_free(sw);
    }
    return out;
}

void emit_lookup(std::string &o, const std::vector<Emit> &rows)
{
    McRole role = rows.empty() ? MC_ROLE_SOURCE : rows[0].role;
    const std::string p = role_prefix(role);
    char buf[512];

    o += "/*\n * mc_switchover_lookup() for the " + std::string(mc_role_name(role)) +
         ": " + (role == MC_ROLE_SOURCE ? "kSourceTable" : "kDestinationTable") +
         ", row by row.\n * rc = R_OK and (to, act) from the first row that applies, or\n"
         " * R_REFUSED / R_INVALID with to = st, act = 0.\n */\n";
    o += "inline " + p + "_lookup(st, ev, rc, to, act)\n{\n    if\n";
    for (const Emit &e : rows) {
        std::string guard = "st == " + state_id(e.row.from) + " && ev == " +
                            event_id(e.row.event);
        std::string f = flags_expr(e.row.need, e.row.without);
        if (!f.empty()) {
            guard += " && " + f;
        }
        for (size_t j : e.shadowed_by) {
            guard += " && !" + flags_expr(rows[j].row.need, rows[j].row.without);
        }
        std::snprintf(buf, sizeof(buf), "    /* %s:%zu %s%s */\n", mc_role_name(role),
                      e.index, row_name(role, e.row).c_str(),
                      e.mutated ? " MUTATED" : "");
        o += buf;
        if (e.mutated) {
            o += "    /*   the library says: -> " + state_id(e.original.to) + ", " +
                 actions_text(e.original.actions, true) + " */\n";
        }
        o += "    :: " + guard + " ->\n        rc = R_OK; to = " + state_id(e.row.to) +
             "; act = " + actions_text(e.row.actions, true) + "\n";
    }
    o += "    :: else ->\n        if\n";
    for (const mc::Refusal &r : mc::switchover_refusals()) {
        if (r.role != role) {
            continue;
        }
        o += "        /* refusal " + std::string(mc_role_name(role)) + ":" +
             mc_state_name(r.state) + "+" + mc_event_name(r.event) + ": " + r.why +
             " */\n";
        o += "        :: st == " + state_id(r.state) + " && ev == " + event_id(r.event) +
             " -> rc = R_REFUSED\n";
    }
    o += "        :: else -> rc = R_INVALID\n        fi;\n        to = st; act = 0\n    fi\n}\n\n";

    o += "/* mc_switchover_check(): what firing ev would do, state unchanged */\n";
    o += "inline " + p + "_check(ev, rc, act)\n{\n    " + p + "_lookup(" + p + "_st, ev, rc, " +
         p + "_next, act);\n    " + p + "_next = " + p + "_st\n}\n\n";
    o += "/* mc_switchover_fire(): apply the row, or reject and keep the state */\n";
    o += "inline " + p + "_fire(ev, rc, act)\n{\n    " + p + "_lookup(" + p + "_st, ev, rc, " +
         p + "_next, act);\n    " + p + "_st = " + p + "_next\n}\n\n";
}

void emit_holds(std::string &o, const std::vector<Emit> &src)
{
    o += "/*\n * mc_switchover_source_holds_guest(): the source states in which a failure\n"
         " * (ChannelBroken, LoadFailed, AckTimeout, SwitchoverFailed) or a cancel\n"
         " * resumes the source, plus active, device, failed and cancelled; per\n"
         " * flag set, derived from the rows above.\n */\n";
    o += "#define SRC_HOLDS_GUEST(st) ( \\\n";
    bool first = true;
    for (uint32_t f : kAllFlags) {
        std::string states;
        for (int s = 0; s < MC_STATE__MAX; s++) {
            if (derived_holds_guest(src, f, McState(s))) {
                states += (states.empty() ? "" : " || ") + std::string("st == ") +
                          state_id(McState(s));
            }
        }
        o += std::string(first ? "    " : " || ") + "(FLAGS == (" + flag_bits(f) + ") && (" +
             states + ")) \\\n";
        first = false;
    }
    o += ")\n\n";
}

std::string emit_table(std::vector<Mutation> &muts, bool flags_variable)
{
    std::vector<Emit> src = build(MC_ROLE_SOURCE, muts);
    std::vector<Emit> dst = build(MC_ROLE_DESTINATION, muts);
    std::string o;
    char buf[128];

    o += "/*\n * Generated by migration-control/model/gen-model from the shim's tables\n"
         " * (src/switchover.cc: kSourceTable, kDestinationTable, kRefusals).\n"
         " * Do not edit: change the table and regenerate.\n";
    bool any = false;
    for (const Mutation &m : muts) {
        o += " * MUTATION: " + m.row + " -> " + mc_state_name(m.to) +
             (m.set_actions ? ", actions " + actions_text(m.actions, false) : "") + "\n";
        any = true;
    }
    if (!any) {
        o += " * No mutation.\n";
    }
    o += " */\n\n";
    std::snprintf(buf, sizeof(buf), "#define F_RP %u\n#define F_HS %u\n#define F_GR %u\n",
                  MC_FLAG_RETURN_PATH, MC_FLAG_START_HANDSHAKE, MC_FLAG_GUEST_RUNNING);
    o += buf;
    for (const ActionName &a : kActions) {
        std::snprintf(buf, sizeof(buf), "#define %s %u\n", a.macro, a.bit);
        o += buf;
    }
    o += "#define R_OK 0\n#define R_REFUSED 1\n#define R_INVALID 2\n";
    o += "#define FLAGS_OK(need, without) \\\n    ((FLAGS & (need)) == (need) && (FLAGS & (without)) == 0)\n\n";
    if (flags_variable) {
        o += "byte FLAGS;\n\n";
    }
    o += "/* McState */\nmtype = {\n";
    for (int s = 0; s < MC_STATE__MAX; s++) {
        o += "    " + state_id(McState(s)) + (s + 1 < MC_STATE__MAX ? ",\n" : "\n");
    }
    o += "};\n\n/* McEvent */\nmtype = {\n";
    for (int e = 0; e < MC_EVENT__MAX; e++) {
        o += "    " + event_id(McEvent(e)) + (e + 1 < MC_EVENT__MAX ? ",\n" : "\n");
    }
    o += "};\n\n";
    o += "mtype src_st = Active, src_next = Active;   /* McSwitchover.state */\n";
    o += "mtype dst_st = Active, dst_next = Active;\n\n";
    emit_lookup(o, src);
    emit_lookup(o, dst);
    emit_holds(o, src);
    return o;
}

std::string emit_conformance()
{
    std::vector<Mutation> none;
    std::string o = emit_table(none, true);
    const int nflags = int(sizeof(kAllFlags) / sizeof(kAllFlags[0]));
    const int ncases = nflags * MC_ROLE__MAX * MC_STATE__MAX * MC_EVENT__MAX;
    char buf[2048];

    o += "/*\n * Conformance: the look-up above against mc_switchover_lookup() and\n"
         " * mc_switchover_source_holds_guest() of the library, for every flag set,\n"
         " * role, state and event.  Run with spin (simulation); a mismatch asserts.\n"
         " * want_*[((flags * 2 + role) * states + state) * events + event]\n */\n";
    std::snprintf(buf, sizeof(buf),
                  "byte flagv[%d];\nmtype stv[%d];\nmtype evv[%d];\n"
                  "bit want_ok[%d];\nmtype want_to[%d];\nbyte want_act[%d];\n",
                  nflags, MC_STATE__MAX, MC_EVENT__MAX, ncases, ncases, ncases);
    o += buf;
    o += "mtype c_to;\nbyte c_rc, c_act;\nint c_cases, k;\nbyte fx, si, ei;\n\n";
    o += "inline expect(rc, to, act)\n{\n"
         "    assert((rc == R_OK) == want_ok[k]);\n"
         "    assert(rc != R_OK || (to == want_to[k] && act == want_act[k]));\n"
         "    c_cases++\n}\n\n";
    o += "init {\n";
    for (int f = 0; f < nflags; f++) {
        std::snprintf(buf, sizeof(buf), "    flagv[%d] = %s;\n", f, flag_bits(kAllFlags[f]).c_str());
        o += buf;
    }
    for (int s = 0; s < MC_STATE__MAX; s++) {
        std::snprintf(buf, sizeof(buf), "    stv[%d] = %s;\n", s, state_id(McState(s)).c_str());
        o += buf;
    }
    for (int e = 0; e < MC_EVENT__MAX; e++) {
        std::snprintf(buf, sizeof(buf), "    evv[%d] = %s;\n", e, event_id(McEvent(e)).c_str());
        o += buf;
    }
    for (int f = 0; f < nflags; f++) {
        for (int role = 0; role < MC_ROLE__MAX; role++) {
            for (int s = 0; s < MC_STATE__MAX; s++) {
                for (int e = 0; e < MC_EVENT__MAX; e++) {
                    int k = ((f * MC_ROLE__MAX + role) * MC_STATE__MAX + s) * MC_EVENT__MAX + e;
                    McTransition t;
                    if (mc_switchover_lookup(McRole(role), kAllFlags[f], McState(s),
                                             McEvent(e), &t, nullptr, 0) == 0) {
                        std::snprintf(buf, sizeof(buf),
                                      "    want_ok[%d] = 1; want_to[%d] = %s; want_act[%d] = %s;\n",
                                      k, k, state_id(t.to).c_str(), k,
                                      actions_text(t.actions, true).c_str());
                        o += buf;
                    }
                }
            }
        }
    }
    std::snprintf(buf, sizeof(buf),
                  "    fx = 0;\n"
                  "    do\n    :: fx < %d ->\n"
                  "        FLAGS = flagv[fx];\n"
                  "        si = 0;\n"
                  "        do\n        :: si < %d ->\n"
                  "            ei = 0;\n"
                  "            do\n            :: ei < %d ->\n"
                  "                k = ((fx * 2 + 0) * %d + si) * %d + ei;\n"
                  "                src_lookup(stv[si], evv[ei], c_rc, c_to, c_act);\n"
                  "                expect(c_rc, c_to, c_act);\n"
                  "                k = ((fx * 2 + 1) * %d + si) * %d + ei;\n"
                  "                dst_lookup(stv[si], evv[ei], c_rc, c_to, c_act);\n"
                  "                expect(c_rc, c_to, c_act);\n"
                  "                ei++\n"
                  "            :: else -> break\n            od;\n"
                  "            si++\n"
                  "        :: else -> break\n        od;\n"
                  "        fx++\n"
                  "    :: else -> break\n    od;\n",
                  nflags, MC_STATE__MAX, MC_EVENT__MAX, MC_STATE__MAX, MC_EVENT__MAX,
                  MC_STATE__MAX, MC_EVENT__MAX);
    o += buf;
    int nholds = 0;
    for (int f = 0; f < nflags; f++) {
        o += "    FLAGS = " + flag_bits(kAllFlags[f]) + ";\n";
        for (auto &sh : reachable_holds(kAllFlags[f])) {
            o += "    assert(" + std::string(sh.second ? "" : "!") + "SRC_HOLDS_GUEST(" +
                 state_id(sh.first) + "));\n";
            nholds++;
        }
    }
    std::snprintf(buf, sizeof(buf), "    assert(c_cases == %d);\n"
                  "    printf(\"conformance: %%d look-ups and %d holds-guest answers agree "
                  "with the library\\n\", c_cases)\n}\n", ncases, nholds);
    o += buf;
    return o;
}

int tap_n = 0, tap_fail = 0;

void tap(bool ok, const std::string &what)
{
    ++tap_n;
    tap_fail += !ok;
    std::printf("%s %d - %s\n", ok ? "ok" : "not ok", tap_n, what.c_str());
}

size_t count(const std::string &hay, const std::string &needle)
{
    size_t n = 0;
    for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) {
        n++;
    }
    return n;
}

int self_test()
{
    std::vector<Mutation> none;
    std::string out = emit_table(none, false);

    for (int role = 0; role < MC_ROLE__MAX; role++) {
        mc::Span<mc::Row> t = mc::switchover_table(McRole(role));
        size_t missing = 0;
        for (size_t i = 0; i < t.size; i++) {
            std::string marker = "/* " + std::string(mc_role_name(McRole(role))) + ":" +
                                 std::to_string(i) + " " + row_name(McRole(role), t.data[i]) +
                                 " */";
            missing += count(out, marker) != 1;
        }
        size_t arms = 0;
        for (size_t i = 0; i < t.size; i++) {
            arms += count(out, "/* " + std::string(mc_role_name(McRole(role))) + ":" +
                                   std::to_string(i) + " ");
        }
        tap(t.size > 0 && missing == 0 && arms == t.size,
            std::string("every ") + mc_role_name(McRole(role)) + " row (" +
                std::to_string(t.size) + ") is emitted exactly once");
    }
    size_t nref = 0, found = 0;
    for (const mc::Refusal &r : mc::switchover_refusals()) {
        nref++;
        found += count(out, std::string("/* refusal ") + mc_role_name(r.role) + ":" +
                                mc_state_name(r.state) + "+" + mc_event_name(r.event) +
                                ": ") == 1;
    }
    tap(nref > 0 && found == nref,
        "every refusal (" + std::to_string(nref) + ") is emitted exactly once");

    // The guards as emitted, evaluated here, against the library.
    std::vector<Emit> rows[MC_ROLE__MAX] = {build(MC_ROLE_SOURCE, none),
                                            build(MC_ROLE_DESTINATION, none)};
    int cases = 0, bad = 0;
    for (uint32_t f : kAllFlags) {
        for (int role = 0; role < MC_ROLE__MAX; role++) {
            for (int s = 0; s < MC_STATE__MAX; s++) {
                for (int e = 0; e < MC_EVENT__MAX; e++) {
                    McTransition a{}, b{};
                    int ra = mc_switchover_lookup(McRole(role), f, McState(s), McEvent(e), &a,
                                                  nullptr, 0);
                    int rb = emitted_lookup(rows[role], f, McState(s), McEvent(e), &b);
                    cases++;
                    if ((ra == 0) != (rb == 0) || rb == -2 ||
                        (ra == 0 && (a.to != b.to || a.actions != b.actions))) {
                        bad++;
                        std::printf("# mismatch: %s flags %u %s + %s\n",
                                    mc_role_name(McRole(role)), f, mc_state_name(McState(s)),
                                    mc_event_name(McEvent(e)));
                    }
                }
            }
        }
    }
    tap(bad == 0, "the emitted guards answer as mc_switchover_lookup() in all " +
                      std::to_string(cases) + " cases");

    int hcases = 0, hbad = 0;
    for (uint32_t f : kAllFlags) {
        for (auto &sh : reachable_holds(f)) {
            hcases++;
            if (derived_holds_guest(rows[MC_ROLE_SOURCE], f, sh.first) != sh.second) {
                hbad++;
                std::printf("# holds-guest mismatch: flags %u %s\n", f,
                            mc_state_name(sh.first));
            }
        }
    }
    tap(hcases > 0 && hbad == 0,
        "SRC_HOLDS_GUEST answers as mc_switchover_source_holds_guest() in all " +
            std::to_string(hcases) + " reachable (flags, state) cases");

    std::vector<Mutation> one(1);
    one[0].row = "source:0";
    one[0].to = MC_STATE_FAILED;
    std::string mut = emit_table(one, false);
    tap(one[0].used && count(mut, " MUTATED */") == 1, "--mutate-row changes exactly one row");

    std::printf("1..%d\n", tap_n);
    return tap_fail ? 1 : 0;
}

bool parse_state(const char *s, McState *out)
{
    for (int i = 0; i < MC_STATE__MAX; i++) {
        if (!std::strcmp(s, mc_state_name(McState(i)))) {
            *out = McState(i);
            return true;
        }
    }
    return false;
}

bool parse_actions(const char *s, uint32_t *out)
{
    std::string list = s;
    *out = 0;
    if (list == "none") {
        return true;
    }
    size_t p = 0;
    while (p <= list.size()) {
        size_t q = list.find(',', p);
        std::string one = list.substr(p, q == std::string::npos ? std::string::npos : q - p);
        bool ok = false;
        for (const ActionName &a : kActions) {
            if (one == a.name) {
                *out |= a.bit;
                ok = true;
            }
        }
        if (!ok) {
            return false;
        }
        if (q == std::string::npos) {
            break;
        }
        p = q + 1;
    }
    return true;
}

int usage()
{
    std::fprintf(stderr,
                 "usage: gen-model [--mutate-row ROW --to STATE [--actions LIST]]...\n"
                 "       gen-model --conformance | --list-rows | --self-test\n");
    return 2;
}

} // namespace

int main(int argc, char **argv)
{
    std::vector<Mutation> muts;

    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (a == "--self-test") {
            return self_test();
        } else if (a == "--conformance") {
            std::fputs(emit_conformance().c_str(), stdout);
            return 0;
        } else if (a == "--list-rows") {
            for (int role = 0; role < MC_ROLE__MAX; role++) {
                mc::Span<mc::Row> t = mc::switchover_table(McRole(role));
                for (size_t k = 0; k < t.size; k++) {
                    std::printf("%s:%zu %s -> %s, %s\n", mc_role_name(McRole(role)), k,
                                row_name(McRole(role), t.data[k]).c_str(),
                                mc_state_name(t.data[k].to),
                                actions_text(t.data[k].actions, false).c_str());
                }
            }
            return 0;
        } else if (a == "--mutate-row" && i + 1 < argc) {
            muts.emplace_back();
            muts.back().row = argv[++i];
        } else if (a == "--to" && i + 1 < argc && !muts.empty()) {
            if (!parse_state(argv[++i], &muts.back().to)) {
                std::fprintf(stderr, "gen-model: unknown state '%s'\n", argv[i]);
                return 2;
            }
        } else if (a == "--actions" && i + 1 < argc && !muts.empty()) {
            muts.back().set_actions = true;
            if (!parse_actions(argv[++i], &muts.back().actions)) {
                std::fprintf(stderr, "gen-model: unknown action in '%s'\n", argv[i]);
                return 2;
            }
        } else {
            return usage();
        }
    }
    for (const Mutation &m : muts) {
        if (m.to == MC_STATE__MAX) {
            std::fprintf(stderr, "gen-model: --mutate-row %s needs --to STATE\n",
                         m.row.c_str());
            return 2;
        }
    }
    std::string out = emit_table(muts, false);
    for (const Mutation &m : muts) {
        if (!m.used) {
            std::fprintf(stderr, "gen-model: no row '%s' (see --list-rows)\n", m.row.c_str());
            return 2;
        }
    }
    if (muts.empty()) {
        // The derivation of SRC_HOLDS_GUEST must be the library's.
        std::vector<Mutation> none;
        std::vector<Emit> src = build(MC_ROLE_SOURCE, none);
        for (uint32_t f : kAllFlags) {
            for (auto &sh : reachable_holds(f)) {
                if (derived_holds_guest(src, f, sh.first) != sh.second) {
                    std::fprintf(stderr, "gen-model: SRC_HOLDS_GUEST differs from the "
                                 "library for flags %u in %s\n", f, mc_state_name(sh.first));
                    return 1;
                }
            }
        }
    }
    std::fputs(out.c_str(), stdout);
    return 0;
}
