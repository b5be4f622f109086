"""Boots Pivot disk images under QEMU for tests: OVMF, a qcow2 overlay over the built image
(the image itself is never written), the serial console read line by line, the i6300esb
watchdog, user networking (the host's loopback is 10.0.2.2 to the guest).

    with PivotVM(disk="out/disk.img", workdir=tmp) as vm:
        vm.start()
        vm.expect(r"pivot: booted slot=(\\w) version=(\\S+)", timeout=120)
"""
import os
import re
import shutil
import subprocess
import threading
import time

OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
BANNER = re.compile(r"pivot: booted slot=([A-Z]) version=(\S+)")


class Timeout(Exception):
    pass


def qemu_command(overlay, vars_file, memory=512, extra=()):
    return [
        "qemu-system-x86_64", "-machine", "q35", "-m", str(memory), "-smp", "1",
        "-display", "none", "-monitor", "none", "-serial", "stdio",
        "-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
        "-drive", f"if=pflash,format=raw,file={vars_file}",
        "-drive", f"file={overlay},format=qcow2,if=virtio,cache=unsafe",
        "-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0",
        # A hung boot must end in a reset, as on real hardware with a watchdog.
        "-device", "i6300esb", "-action", "watchdog=reset",
        *extra,
    ]


def make_overlay(disk, path, size=None):
    """A qcow2 file over the raw image: the guest's writes land here only."""
    cmd = ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", os.path.abspath(disk), path]
    if size:
        cmd.append(str(size))
    subprocess.run(cmd, check=True)


class PivotVM:
    def __init__(self, disk, workdir, name="vm", size="3G", memory=512, extra=(), log=None):
        self.disk = disk
        self.workdir = workdir
        self.name = name
        self.overlay = os.path.join(workdir, f"{name}.qcow2")
        self.vars = os.path.join(workdir, f"{name}-vars.fd")
        self.size = size
        self.memory = memory
        self.extra = list(extra)
        self.log_path = log or os.path.join(workdir, f"{name}-console.log")
        self.proc = None
        self.lines = []          # every console line so far, across boots
        self.cursor = 0          # expect() looks at lines from here on
        self._partial = ""
        self._cond = threading.Condition()
        self._reader = None
        if not os.path.exists(self.overlay):
            make_overlay(disk, self.overlay, size)
            shutil.copyfile(OVMF_VARS, self.vars)

    def start(self):
        """Powers the machine on (again). The overlay keeps what the last run wrote."""
        self.started = time.monotonic()
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            qemu_command(self.overlay, self.vars, self.memory, self.extra),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        while True:
            chunk = self.proc.stdout.read1(4096)
            if not chunk:
                break
            self._log.write(chunk)
            self._log.flush()
            text = self._partial + chunk.decode("utf-8", "replace").replace("\r", "")
            *done, self._partial = text.split("\n")
            with self._cond:
                self.lines.extend(done)
                self._cond.notify_all()
        with self._cond:
            if self._partial:
                self.lines.append(self._partial)
                self._partial = ""
            self._cond.notify_all()

    def expect(self, pattern, timeout):
        """Waits for a console line matching pattern (after the last match); returns the match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                while self.cursor < len(self.lines):
                    line = self.lines[self.cursor]
                    self.cursor += 1
                    m = rx.search(line)
                    if m:
                        return m
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise Timeout(f"QEMU exited ({self.proc.returncode}) before /{pattern}/")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Timeout(f"no /{pattern}/ within {timeout}s; console: {self.log_path}")
                self._cond.wait(min(left, 1.0))

    def send(self, text):
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def run(self, command, timeout=60):
        """Runs a shell command on the console shell, returns its output lines."""
        tag = f"@@{int(time.monotonic() * 1000)}@@"
        self.send(f"echo {tag}B; {command}; echo {tag}E $?\n")
        self.expect(re.escape(tag) + "B$", timeout)
        start = self.cursor
        m = self.expect(re.escape(tag) + r"E (\d+)$", timeout)
        return int(m.group(1)), self.lines[start:self.cursor - 1]

    def power_off(self):
        """Pulls the plug: no shutdown, no flush of the guest's caches."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self._reader:
            self._reader.join(timeout=5)
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.power_off()
