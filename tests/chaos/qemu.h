// One QEMU process of a round: started by fork/exec with its QMP monitor
// on a Unix socket, signalled by faults, reaped without blocking, and
// ended with 'quit' (SIGKILL if it does not go).
//
// SPDX-License-Identifier: GPL-2.0-or-later

#ifndef CHAOS_QEMU_H
#define CHAOS_QEMU_H

#include "qmp.h"

#include <atomic>
#include <mutex>
#include <string>
#include <sys/types.h>
#include <vector>

namespace chaos {

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

    // Starts @args (args[0] is the binary; the child gets PR_SET_PDEATHSIG
    // and its output goes to log_path) and connects to its monitor.
    bool start(const std::vector<std::string> &args);
    // Non-blocking reap; returns true if the process is gone.
    bool reap();
    bool alive() { return !reap(); }
    void signal(int sig);
    // What the guest wrote to its serial port so far.
    std::string serial();
    // 'quit', then SIGKILL if needed; reaps and closes the monitor.
    void finish();
};

} // namespace chaos

#endif
