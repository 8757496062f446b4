// A tiny JSON reader and string escaper, enough for QMP.
//
// SPDX-License-Identifier: GPL-2.0-or-later

#ifndef CHAOS_JSON_H
#define CHAOS_JSON_H

#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

struct Json {
    enum Type { Null, Bool, Num, Str, Arr, Obj } type = Null;
    bool b = false;
    double n = 0;
    std::string s;
    std::vector<Json> a;
    std::vector<std::pair<std::string, Json>> o;

    const Json &operator[](const std::string &key) const
    {
        static const Json null;
        for (const auto &kv : o) {
            if (kv.first == key) {
                return kv.second;
            }
        }
        return null;
    }
    bool has(const std::string &key) const
    {
        for (const auto &kv : o) {
            if (kv.first == key) {
                return true;
            }
        }
        return false;
    }
    bool is_null() const { return type == Null; }
    std::string str() const { return type == Str ? s : std::string(); }
    double num() const { return type == Num ? n : 0; }
    bool boolean() const { return type == Bool && b; }

    // Returns false on malformed input.
    static bool parse(const std::string &text, Json &out)
    {
        size_t pos = 0;
        if (!parse_value(text, pos, out)) {
            return false;
        }
        skip_ws(text, pos);
        return pos == text.size();
    }

private:
    static void skip_ws(const std::string &t, size_t &p)
    {
        while (p < t.size() && (t[p] == ' ' || t[p] == '\n' || t[p] == '\r' || t[p] == '\t')) {
            p++;
        }
    }
    static void put_utf8(std::string &out, unsigned cp)
    {
        if (cp < 0x80) {
            out += char(cp);
        } else if (cp < 0x800) {
            out += char(0xc0 | (cp >> 6));
            out += char(0x80 | (cp & 0x3f));
        } else {
            out += char(0xe0 | (cp >> 12));
            out += char(0x80 | ((cp >> 6) & 0x3f));
            out += char(0x80 | (cp & 0x3f));
        }
    }
    static bool parse_string(const std::string &t, size_t &p, std::string &out)
    {
        if (p >= t.size() || t[p] != '"') {
            return false;
        }
        p++;
        while (p < t.size() && t[p] != '"') {
            char c = t[p++];
            if (c != '\\') {
                out += c;
                continue;
            }
            if (p >= t.size()) {
                return false;
            }
            char e = t[p++];
            switch (e) {
            case 'n': out += '\n'; break;
            case 't': out += '\t'; break;
            case 'r': out += '\r'; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'u':
                if (p + 4 > t.size()) {
                    return false;
                }
                put_utf8(out, unsigned(std::strtoul(t.substr(p, 4).c_str(), nullptr, 16)));
                p += 4;
                break;
            default: out += e; break;
            }
        }
        if (p >= t.size()) {
            return false;
        }
        p++;
        return true;
    }
    static bool parse_value(const std::string &t, size_t &p, Json &out)
    {
        skip_ws(t, p);
        if (p >= t.size()) {
            return false;
        }
        char c = t[p];
        if (c == '{') {
            out.type = Obj;
            p++;
            skip_ws(t, p);
            if (p < t.size() && t[p] == '}') {
                p++;
                return true;
            }
            for (;;) {
                std::string key;
                skip_ws(t, p);
                if (!parse_string(t, p, key)) {
                    return false;
                }
                skip_ws(t, p);
                if (p >= t.size() || t[p] != ':') {
                    return false;
                }
                p++;
                Json v;
                if (!parse_value(t, p, v)) {
                    return false;
                }
                out.o.emplace_back(std::move(key), std::move(v));
                skip_ws(t, p);
                if (p < t.size() && t[p] == ',') {
                    p++;
                    continue;
                }
                if (p < t.size() && t[p] == '}') {
                    p++;
                    return true;
                }
                return false;
            }
        }
        if (c == '[') {
            out.type = Arr;
            p++;
            skip_ws(t, p);
            if (p < t.size() && t[p] == ']') {
                p++;
                return true;
            }
            for (;;) {
                Json v;
                if (!parse_value(t, p, v)) {
                    return false;
                }
                out.a.push_back(std::move(v));
                skip_ws(t, p);
                if (p < t.size() && t[p] == ',') {
                    p++;
                    continue;
                }
                if (p < t.size() && t[p] == ']') {
                    p++;
                    return true;
                }
                return false;
            }
        }
        if (c == '"') {
            out.type = Str;
            return parse_string(t, p, out.s);
        }
        if (t.compare(p, 4, "true") == 0) {
            out.type = Bool;
            out.b = true;
            p += 4;
            return true;
        }
        if (t.compare(p, 5, "false") == 0) {
            out.type = Bool;
            p += 5;
            return true;
        }
        if (t.compare(p, 4, "null") == 0) {
            p += 4;
            return true;
        }
        char *end = nullptr;
        out.n = std::strtod(t.c_str() + p, &end);
        if (end == t.c_str() + p) {
            return false;
        }
        out.type = Num;
        p = size_t(end - t.c_str());
        return true;
    }
};

// A JSON string literal for @s.
inline std::string jstr(const std::string &s)
{
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
    return out + "\"";
}

#endif
