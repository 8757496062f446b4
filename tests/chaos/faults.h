// The faults the driver injects: their names, which of them are lifted
// later, and how each is applied to (and lifted from) a round's proxy and
// QEMU processes.
//
// SPDX-License-Identifier: GPL-2.0-or-later

#ifndef CHAOS_FAULTS_H
#define CHAOS_FAULTS_H

#include <string>

namespace chaos {

class Proxy;
struct Qemu;

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

const char *fault_name(Fault f);
// Partitions, delay and SIGSTOP are lifted lift_ms after they fired.
bool fault_lifts(Fault f);

// What a fault acts on.
struct FaultTargets {
    Proxy &proxy;
    Qemu &src;
    Qemu &dst;
};

// Applies @f; false if QEMU refused the command (*err says why).
bool fault_apply(Fault f, FaultTargets &t, std::string *err);
// Lifts @f (nothing for a fault that is not lifted).
void fault_lift(Fault f, FaultTargets &t);

// The lock-held configuration: holds a disk image's locks the way another
// QEMU that has it open read-write does (block/file-posix.c): shared OFD
// locks on the permission bytes 100 + consistent-read and 100 + write, and
// on the "not shared" bytes 200 + write and 200 + resize.  A QEMU that
// activates the image then fails with 'Failed to get "write" lock'; one
// that holds it already (the source, before the switchover) does not look
// again until it re-activates it.
class ImageLock {
public:
    ~ImageLock() { release(); }
    bool hold(const std::string &path, std::string *err);
    void release();
    bool held() const { return fd_ >= 0; }

private:
    int fd_ = -1;
};

} // namespace chaos

#endif
