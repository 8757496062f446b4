// SPDX-License-Identifier: GPL-2.0-or-later

#include "faults.h"

#include "proxy.h"
#include "qemu.h"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace chaos {

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

bool fault_apply(Fault f, FaultTargets &t, std::string *err)
{
    bool ok = true;
    switch (f) {
    case Fault::PartitionBoth:
        t.proxy.set_block(0, true);
        t.proxy.set_block(1, true);
        break;
    case Fault::PartitionToDst:
        t.proxy.set_block(0, true);
        break;
    case Fault::PartitionToSrc:
        t.proxy.set_block(1, true);
        break;
    case Fault::HalfCloseToDst:
        t.proxy.half_close(0);
        break;
    case Fault::HalfCloseToSrc:
        t.proxy.half_close(1);
        break;
    case Fault::Reset:
        t.proxy.reset_all();
        break;
    case Fault::Delay:
        t.proxy.set_delay(200);
        break;
    case Fault::KillSrc:
        t.src.killed_by_us = true;
        t.src.signal(SIGKILL);
        break;
    case Fault::KillDst:
        t.dst.killed_by_us = true;
        t.dst.signal(SIGKILL);
        break;
    case Fault::StopSrc:
        t.src.sigstopped = true;
        t.src.signal(SIGSTOP);
        break;
    case Fault::StopDst:
        t.dst.sigstopped = true;
        t.dst.signal(SIGSTOP);
        break;
    case Fault::CancelSrc:
        ok = t.src.qmp.ok("migrate_cancel", "", err, 5000);
        break;
    case Fault::ContDst:
        ok = t.dst.qmp.ok("cont", "", err, 5000);
        break;
    case Fault::StopCmdDst:
        ok = t.dst.qmp.ok("stop", "", err, 15000);   // it may wait 5 s for a page
        break;
    case Fault::PauseSrc:
        ok = t.src.qmp.ok("migrate-pause", "", err, 5000);
        break;
    case Fault::PauseDst:
        ok = t.dst.qmp.ok("migrate-pause", "", err, 5000);
        break;
    case Fault::Count:
        break;
    }
    return ok;
}

void fault_lift(Fault f, FaultTargets &t)
{
    switch (f) {
    case Fault::PartitionBoth:
        t.proxy.set_block(0, false);
        t.proxy.set_block(1, false);
        break;
    case Fault::PartitionToDst:
        t.proxy.set_block(0, false);
        break;
    case Fault::PartitionToSrc:
        t.proxy.set_block(1, false);
        break;
    case Fault::Delay:
        t.proxy.set_delay(0);
        break;
    case Fault::StopSrc:
        t.src.signal(SIGCONT);
        t.src.sigstopped = false;
        break;
    case Fault::StopDst:
        t.dst.signal(SIGCONT);
        t.dst.sigstopped = false;
        break;
    default:
        break;
    }
}

bool ImageLock::hold(const std::string &path, std::string *err)
{
    release();
    int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        *err = path + ": " + strerror(errno);
        return false;
    }
    // QEMU's RAW_LOCK_PERM_BASE and RAW_LOCK_SHARED_BASE, plus the bit
    // numbers of BLK_PERM_CONSISTENT_READ (0), WRITE (1) and RESIZE (3).
    for (int off : {100 + 0, 100 + 1, 200 + 1, 200 + 3}) {
        struct flock fl = {};
        fl.l_type = F_RDLCK;
        fl.l_whence = SEEK_SET;
        fl.l_start = off;
        fl.l_len = 1;
        if (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
            *err = std::string("F_OFD_SETLK: ") + strerror(errno);
            close(fd);
            return false;
        }
    }
    fd_ = fd;
    return true;
}

void ImageLock::release()
{
    if (fd_ >= 0) {
        close(fd_);   // drops the OFD locks
        fd_ = -1;
    }
}

} // namespace chaos
