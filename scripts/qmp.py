"""A small synchronous QMP client and QEMU launcher for the project's demo,
benchmarks and drivers.  Standard library only."""

import json
import os
import re
import socket
import subprocess
import threading
import time


# This fork's QAPI names carry a downstream prefix (qapi-code-gen,
# "Downstream extensions"): e.g. PCF + "postcopy-break-action".
PCF = "__invalid.postcopy-fork_"

class QMPError(Exception):
    pass


class QMP:
    """One QMP connection.  Events are collected with a monotonic timestamp
    by a reader thread, so none is lost while a command is in flight."""

    def __init__(self, path, timeout=30.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise QMPError(f"cannot connect to QMP socket {path}")
                time.sleep(0.02)
        self.file = self.sock.makefile("rwb", buffering=0)
        self.events = []
        self.cond = threading.Condition()
        self.replies = []
        self.closed = False
        # The greeting comes first on a new connection; tolerate (and drop)
        # anything else before it rather than failing a long run.
        for _ in range(100):
            line = self.file.readline()
            if not line:
                raise QMPError(f"{path}: connection closed before the greeting")
            greeting = json.loads(line)
            if "QMP" in greeting:
                break
        else:
            raise QMPError(f"{path}: no QMP greeting")
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.cmd("qmp_capabilities")

    def _read(self):
        try:
            for line in self.file:
                msg = json.loads(line)
                with self.cond:
                    if "event" in msg:
                        msg["_t"] = time.monotonic()
                        self.events.append(msg)
                    else:
                        self.replies.append(msg)
                    self.cond.notify_all()
        except (OSError, ValueError):
            pass
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def cmd_raw(self, name, timeout=30.0, **args):
        msg = {"execute": name}
        if args:
            # Python names for QMP's dashes; downstream names (PCF) as written
            msg["arguments"] = {k if k.startswith("__") else k.replace("_", "-"): v
                                for k, v in args.items()}
        with self.cond:
            self.file.write(json.dumps(msg).encode() + b"\n")
            deadline = time.monotonic() + timeout
            while not self.replies:
                if self.closed:
                    raise QMPError(f"{name}: connection closed")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise QMPError(f"{name}: no reply in {timeout} s")
                self.cond.wait(left)
            return self.replies.pop(0)

    def cmd(self, name, **args):
        reply = self.cmd_raw(name, **args)
        if "error" in reply:
            raise QMPError(f"{name}: {reply['error']['desc']}")
        return reply.get("return")

    def wait_event(self, pred, timeout=60.0, start=0):
        """Wait for an event satisfying pred(event); returns (index, event)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            i = start
            while True:
                while i < len(self.events):
                    if pred(self.events[i]):
                        return i, self.events[i]
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    raise QMPError("timed out waiting for an event")
                self.cond.wait(left)

    def wait_migration(self, status, timeout=60.0):
        return self.wait_event(lambda e: e["event"] == "MIGRATION" and
                               e["data"]["status"] == status, timeout)

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


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


class QEMU:
    def __init__(self, binary, name, workdir, extra=(), env=None):
        self.name = name
        self.qmp_path = os.path.join(workdir, f"{name}.qmp")
        self.serial = os.path.join(workdir, f"{name}.serial")
        self.log = open(os.path.join(workdir, f"{name}.log"), "wb")
        for p in (self.qmp_path, self.serial):
            if os.path.exists(p):
                os.unlink(p)
        args = [binary, "-nodefaults", "-display", "none",
                "-name", f"{name},debug-threads=on",
                "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
                "-serial", f"file:{self.serial}"] + list(extra)
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.qmp = QMP(self.qmp_path)

    def serial_bytes(self):
        try:
            with open(self.serial, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.log.close()

    def quit(self):
        try:
            self.qmp.cmd("quit")
        except (QMPError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.kill()


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
