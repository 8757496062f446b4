"""The project's demo, benchmark and partition-test helpers, on top of what
QEMU ships: QEMU's own python/qemu (qemu.machine.QEMUMachine launches QEMU
and owns its QMP connection, qemu.qmp speaks QMP), as QEMU's iotests use
them.  The pinned tree's copy is used (qemu/python), so no package is
installed.  What is added here is this project's: the guests, the
downstream QAPI prefix, events kept with their time, post-copy set-up."""

import os
import re
import socket
import sys
import time

TOP = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(TOP, "qemu", "python"))

from qemu.machine import QEMUMachine  # noqa: E402
from qemu.qmp import QMPError as _QMPProtocolError  # noqa: E402

# This fork's QAPI names carry a downstream prefix (qapi-code-gen,
# "Downstream extensions"): e.g. PCF + "postcopy-break-action".
PCF = "__invalid.postcopy-fork_"

# QEMU stamps each event with the host's wall clock; the helpers compare
# times with time.monotonic()
_WALL_TO_MONO = time.monotonic() - time.time()


class QMPError(Exception):
    pass


class Monitor:
    """The QMP side of a QEMU: commands, and every event kept in .events
    with "_t", the moment QEMU emitted it (its own timestamp, on the
    time.monotonic() scale)."""

    def __init__(self, vm):
        self._vm = vm
        self._events = []
        self.closed = False

    def _pull(self, wait=False):
        if self.closed:
            return
        try:
            new = self._vm.get_qmp_events(wait=wait)
        except (TimeoutError, OSError, EOFError, _QMPProtocolError):
            new = []
        except Exception:  # the connection went away with QEMU
            if not self._vm.is_running():
                self.closed = True
            new = []
        for e in new:
            ts = e.get("timestamp", {})
            e["_t"] = ts.get("seconds", 0) + ts.get("microseconds", 0) / 1e6 + _WALL_TO_MONO
            self._events.append(e)
        if not self._vm.is_running():
            self.closed = True

    @property
    def events(self):
        self._pull()
        return self._events

    def cmd_raw(self, name, **args):
        """The reply, {"return": ...} or {"error": ...}.  Python names for
        QMP's dashes; downstream names (PCF) as written."""
        qargs = {k if k.startswith("__") else k.replace("_", "-"): v
                 for k, v in args.items()}
        try:
            reply = self._vm.qmp(name, args_dict=qargs)
        except Exception as e:  # noqa: BLE001 - any transport failure
            raise QMPError(f"{name}: {e or type(e).__name__}") from e
        finally:
            self._pull()
        return reply

    def cmd(self, name, **args):
        reply = self.cmd_raw(name, **args)
        if "error" in reply:
            raise QMPError(f"{name}: {reply['error']['desc']}")
        return reply.get("return")

    def wait_event(self, pred, timeout=60.0, start=0):
        """Wait for an event satisfying pred(event); returns (index, event)."""
        deadline = time.monotonic() + timeout
        i = start
        while True:
            while i < len(self._events):
                if pred(self._events[i]):
                    return i, self._events[i]
                i += 1
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                raise QMPError("timed out waiting for an event")
            self._pull(wait=min(left, 0.2))

    def wait_migration(self, status, timeout=60.0):
        return self.wait_event(lambda e: e["event"] == "MIGRATION" and
                               e["data"]["status"] == status, timeout)


class QEMU:
    """One QEMU process: a QEMUMachine with the serial port in a file and
    the log (stdout and stderr, traces included) in WORKDIR/NAME.log."""

    def __init__(self, binary, name, workdir, extra=()):
        self.name = name
        self.serial = os.path.join(workdir, f"{name}.serial")
        self.log_path = os.path.join(workdir, f"{name}.log")
        if os.path.exists(self.serial):
            os.unlink(self.serial)
        self.vm = QEMUMachine(binary, name=name, log_dir=workdir,
                              base_temp_dir=workdir)
        self.vm.add_args("-nodefaults", "-name", f"{name},debug-threads=on",
                         "-serial", f"file:{self.serial}", *extra)
        self.vm.launch()
        self.qmp = Monitor(self.vm)

    @property
    def pid(self):
        return self.vm.get_pid()

    def exitcode(self):
        """None while QEMU runs."""
        return None if self.vm.is_running() else self.vm.exitcode()

    def serial_bytes(self):
        try:
            with open(self.serial, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""

    def kill(self):
        try:
            self.vm.kill()
        except Exception:  # noqa: BLE001 - already gone
            pass

    def quit(self):
        try:
            self.vm.shutdown(timeout=10)
        except Exception:  # noqa: BLE001 - exited on its own, or hung
            self.kill()


def write_bootsector(qemu_src, path):
    """The migration qtests' x86 guest: a boot sector that increments one
    byte of every 4 KiB page between 1 MiB and 100 MiB in a loop, printing
    'A' once and 'B' after each pass on the serial port."""
    text = open(os.path.join(qemu_src, "tests/qtest/migration/i386/a-b-bootblock.h")).read()
    body = text.split("x86_bootsect[] = {", 1)[1].split("}", 1)[0]
    data = bytes(int(x, 16) for x in re.findall(r"0x[0-9a-fA-F]{2}", body))
    assert len(data) == 512, "boot sector must be 512 bytes"
    with open(path, "wb") as f:
        f.write(data)


def free_port():
    """A free TCP port on 127.0.0.1 for the migration stream."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def guest_args(boot, accel="tcg"):
    """The migration qtests' x86 guest: q35, 150 MiB, the boot sector."""
    return ["-accel", accel, "-machine", "q35", "-m", "150M",
            "-drive", f"if=none,id=d0,file={boot},format=raw",
            "-device", "ide-hd,drive=d0,secs=1,cyls=1,heads=1"]


def linux_guest_args(guest_dir, disk, accel="tcg", mem="256M"):
    """The Linux test guest (scripts/make-guest, tests/guest/init): Debian's
    kernel, a busybox initramfs, a virtio-blk disk and a virtio-net NIC on
    user-mode networking.  It prints 'guest: t=N ... mem=ok disk=ok:N
    net=ok' on the serial port every second."""
    return ["-accel", accel, "-machine", "q35", "-m", mem,
            "-kernel", os.path.join(guest_dir, "vmlinux"),
            "-initrd", os.path.join(guest_dir, "initrd.gz"),
            "-append", "console=ttyS0 quiet panic=-1",
            "-drive", f"if=none,id=d0,file={disk},format=raw",
            "-device", "virtio-blk-pci,drive=d0,id=disk0",
            "-netdev", "user,id=n0",
            "-device", "virtio-net-pci,netdev=n0,id=nic0"]


GUEST_LINE = re.compile(rb"guest: t=(\d+) up=([\d.]+) mem=(\S+) disk=(\S+) net=(\S+)")


def guest_lines(qemu):
    """The Linux guest's report lines on @qemu's serial port, parsed:
    [(t, uptime, mem, disk, net)]."""
    return [(int(m[1]), float(m[2]), m[3].decode(), m[4].decode(), m[5].decode())
            for m in GUEST_LINE.finditer(qemu.serial_bytes())]


def wait_until(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise QMPError(f"timed out waiting for {what}")
        time.sleep(0.005)


def postcopy_prepare(src, dst):
    """Enable post-copy (and events) on both sides, make pre-copy never
    converge so that post-copy does the switchover, wait for the guest."""
    for side in (src, dst):
        side.qmp.cmd("migrate-set-capabilities", capabilities=[
            {"capability": "postcopy-ram", "state": True},
            {"capability": "events", "state": True}])
    src.qmp.cmd("migrate-set-parameters", downtime_limit=1)
    wait_until(lambda: b"B" in src.serial_bytes(), 60, "the guest to boot")


def wait_first_pass(src):
    """Wait until pre-copy has sent all RAM once."""
    wait_until(lambda: src.qmp.cmd("query-migrate").get("ram", {})
               .get("dirty-sync-count", 0) >= 2, 60, "the first pre-copy pass")
