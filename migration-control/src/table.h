// The switchover tables as data, shared by the library (switchover.cc,
// which owns them) and the spin model generator (model/gen-model.cc,
// which turns them into Promela).  Internal: not part of the C ABI.
//
// SPDX-License-Identifier: GPL-2.0-or-later

#ifndef MIGRATION_CONTROL_TABLE_H
#define MIGRATION_CONTROL_TABLE_H

#include "migration-control.h"

#include <cstddef>

namespace mc {

// A row applies when the migration has every flag of `need` and none of
// `without` (MC_FLAG_*).  The first row that applies wins.
struct Row {
    McState from;
    McEvent event;
    uint32_t need;
    uint32_t without;
    McState to;
    uint32_t actions;
};

// Rejections that deserve more than "not valid in this state".
struct Refusal {
    McRole role;
    McState state;
    McEvent event;
    const char *why;
};

template <typename T>
struct Span {
    const T *data;
    size_t size;
    const T *begin() const { return data; }
    const T *end() const { return data + size; }
};

// kSourceTable / kDestinationTable (empty for an invalid role).
Span<Row> switchover_table(McRole role);
Span<Refusal> switchover_refusals();

} // namespace mc

#endif
