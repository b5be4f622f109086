"""Boots Pivot disk images under QEMU for tests: OVMF, a qcow2 overlay over the built image
(the image itself is never written), the serial console read line by line, the i6300esb
watchdog, user networking (the host's loopback is 10.0.2.2 to the guest).

    with PivotVM(disk="out/disk.img", workdir=tmp) as vm:
        vm.start()
        vm.expect(r"pivot: booted slot=(\\w) version=(\\S+)", timeout=120)
"""
import contextlib
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


# How the boot disk is attached, by bus: the controller devices it needs, its own device, and
# the device of another disk beside it on the same controller (for the i-th other disk), if the
# bus has room for more. q35 has its SATA controller (AHCI, PCI 1f.2) built in.
BUSES = {
    "virtio": ([], "virtio-blk-pci,drive=boot", None),
    "nvme": ([], "nvme,drive=boot,serial=pivot-boot", None),
    # Port 1; the others on ports 3, 4, ...
    "sata": ([], "ide-hd,drive=boot,bus=ide.0", lambda i: f"ide-hd,drive=other{i},bus=ide.{i + 2}"),
    # Target 0; the others on targets 2, 3, ...
    "scsi": (["-device", "virtio-scsi-pci,id=scsi0"], "scsi-hd,drive=boot,bus=scsi0.0,scsi-id=0,lun=0",
             lambda i: f"scsi-hd,drive=other{i},bus=scsi0.0,scsi-id={i + 2},lun=0"),
    # Port 2; the others on ports 1, 3, ... The sticks are USB 3 ones.
    "usb": (["-device", "qemu-xhci,id=xhci"], "usb-storage,drive=boot,bus=xhci.0,port=2",
            lambda i: f"usb-storage,drive=other{i},bus=xhci.0,port={1 if i == 0 else i + 2}"),
    # Namespace 2 of an NVMe controller; the others are its namespaces 1, 3, ...
    "nvme-ns": (["-device", "nvme,id=nvme0,serial=pivot-boot"], "nvme-ns,drive=boot,bus=nvme0,nsid=2",
                lambda i: f"nvme-ns,drive=other{i},bus=nvme0,nsid={1 if i == 0 else i + 2}"),
    # The same on a USB 2 (EHCI) controller: one root hub, numbered alike by firmware and Linux.
    "usb-ehci": (["-device", "ich9-usb-ehci1,id=ehci"], "usb-storage,drive=boot,bus=ehci.0,port=2",
                 lambda i: f"usb-storage,drive=other{i},bus=ehci.0,port={1 if i == 0 else i + 2}"),
}


def disk_args(overlay, other_disks=(), boot_disk_first=False, bus="virtio", others_beside=False):
    """The boot disk, alone on an automatic PCI slot; or, with other disks (qcow2 files), those
    on the PCI slots before the boot disk (or after it, boot_disk_first), and the firmware told
    to boot from the boot disk (bootindex). bus: one of BUSES, for the boot disk. others_beside:
    the other disks on the boot disk's own controller instead (see BUSES)."""
    if not other_disks and bus == "virtio":
        return ["-drive", f"file={overlay},format=qcow2,if=virtio,cache=unsafe"]
    controllers, device, beside = BUSES[bus]
    assert beside or not others_beside, f"{bus} has no room for another disk on its controller"
    others = []
    for i, disk in enumerate(other_disks):
        others += ["-drive", f"file={disk},format=qcow2,if=none,id=other{i},cache=unsafe",
                   "-device", beside(i) if others_beside else f"virtio-blk-pci,drive=other{i}"]
    boot = ["-drive", f"file={overlay},format=qcow2,if=none,id=boot,cache=unsafe",
            "-device", f"{device},bootindex=0"]
    if others_beside:
        return controllers + boot + others
    return controllers + (boot + others if boot_disk_first else others + boot)


def qemu_command(overlay, vars_file, memory=512, extra=(), other_disks=(), boot_disk_first=False,
                 bus="virtio", others_beside=False):
    return [
        # -nodefaults: no default DVD drive for the firmware to try first, no VGA.
        "qemu-system-x86_64", "-nodefaults", "-machine", "q35", "-m", str(memory), "-smp", "1",
        "-display", "none", "-monitor", "none", "-serial", "stdio",
        "-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
        "-drive", f"if=pflash,format=raw,file={vars_file}",
        *disk_args(overlay, other_disks, boot_disk_first, bus, others_beside),
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
    def __init__(self, disk, workdir, name="vm", size="3G", memory=512, extra=(), log=None, other_disks=(),
                 boot_disk_first=False, bus="virtio", others_beside=False):
        self.disk = disk
        self.workdir = workdir
        self.name = name
        self.overlay = os.path.join(workdir, f"{name}.qcow2")
        self.vars = os.path.join(workdir, f"{name}-vars.fd")
        self.size = size
        self.memory = memory
        self.extra = list(extra)
        self.other_disks = list(other_disks)
        self.boot_disk_first = boot_disk_first
        self.bus = bus
        self.others_beside = others_beside
        self.log_path = log or os.path.join(workdir, f"{name}-console.log")
        self.proc = None
        self.lines = []          # every console line so far, across boots
        self.times = []          # when each line arrived (time.monotonic())
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
            qemu_command(self.overlay, self.vars, self.memory, self.extra, self.other_disks,
                         self.boot_disk_first, self.bus, self.others_beside),
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
            now = time.monotonic()
            with self._cond:
                self.lines.extend(done)
                self.times.extend([now] * len(done))
                self._cond.notify_all()
        with self._cond:
            if self._partial:
                self.lines.append(self._partial)
                self.times.append(time.monotonic())
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

    def line_time(self, pattern):
        """When the first console line matching pattern arrived, or None."""
        rx = re.compile(pattern)
        with self._cond:
            for line, t in zip(self.lines, self.times):
                if rx.search(line):
                    return t
        return None

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

    @contextlib.contextmanager
    def disk_file(self):
        """The overlay as a plain file, for sfdisk, dd and mtools while the machine is off.

        qemu-storage-daemon exports the qcow2 over FUSE, so standard tools edit the overlay
        and the built image stays untouched."""
        assert self.proc is None or self.proc.poll() is not None, "power the machine off first"
        mnt = os.path.join(self.workdir, f"{self.name}.raw")
        open(mnt, "a").close()
        qsd = subprocess.Popen([
            "qemu-storage-daemon",
            "--blockdev", f"driver=qcow2,node-name=d,file.driver=file,file.filename={self.overlay}",
            "--export", f"type=fuse,id=e,node-name=d,mountpoint={mnt},writable=on"])
        try:
            for _ in range(100):
                if os.path.ismount(mnt):
                    break
                if qsd.poll() is not None:
                    raise RuntimeError("qemu-storage-daemon failed to export the overlay")
                time.sleep(0.1)
            else:
                raise RuntimeError("the overlay's FUSE export did not appear")
            yield mnt
        finally:
            subprocess.run(["umount", mnt], stderr=subprocess.DEVNULL)
            qsd.terminate()
            qsd.wait()

    def gpt(self):
        """{partition name: (priority, tries, successful)} as sfdisk reads the overlay."""
        with self.disk_file() as path:
            return read_slot_attrs(path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.power_off()


def read_slot_attrs(path):
    """Slot attributes of every partition in a disk file, read with sfdisk --json."""
    import json
    out = subprocess.run(["sfdisk", "--json", path], check=True, capture_output=True, text=True).stdout
    slots = {}
    for part in json.loads(out)["partitiontable"]["partitions"]:
        bits = set()
        attrs = part.get("attrs", "")
        for field in attrs.split():
            if field.startswith("GUID:"):
                bits |= {int(b) for b in field[5:].split(",") if b}
        value = sum(1 << b for b in bits)
        slots[part.get("name", "")] = ((value >> 48) & 15, (value >> 52) & 15, (value >> 56) & 1)
    return slots


def set_slot_attrs(path, partno, priority, tries, successful):
    """Sets a partition's slot bits with sfdisk --part-attrs, as an operator would."""
    value = (priority & 15) << 48 | (tries & 15) << 52 | (successful & 1) << 56
    bits = ",".join(str(b) for b in range(48, 57) if value >> b & 1)
    subprocess.run(["sfdisk", "-q", "--part-attrs", path, str(partno), f"GUID:{bits}" if bits else ""],
                   check=True, stdout=subprocess.DEVNULL)
