// SPDX-License-Identifier: GPL-2.0-or-later

#include "qemu.h"

#include "util.h"

#include <csignal>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace chaos {

bool Qemu::start(const std::vector<std::string> &args)
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

bool Qemu::reap()
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

void Qemu::signal(int sig)
{
    std::lock_guard<std::mutex> g(m);
    if (!exited && pid > 0) {
        kill(pid, sig);
    }
}

std::string Qemu::serial()
{
    std::ifstream f(serial_path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

void Qemu::finish()
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

} // namespace chaos
