"""The built image boots under OVMF through the boot selector and keeps STATE across boots."""
import json
import subprocess
import time

from pivotvm import BANNER, PivotVM

# Software emulation: OVMF alone takes ~12 s. Generous, since the machine is shared.
BOOT_TIMEOUT = 180


def state_start(path):
    """The first sector of the STATE partition in a disk file."""
    out = subprocess.run(["sfdisk", "--json", path], check=True, capture_output=True, text=True).stdout
    for part in json.loads(out)["partitiontable"]["partitions"]:
        if part.get("name") == "STATE":
            return part["start"]
    raise AssertionError("no STATE partition")


def test_banner_and_state(ctx):
    with PivotVM(ctx.disk, ctx.workdir) as vm:
        start = time.monotonic()
        vm.start()
        m = vm.expect(BANNER.pattern, BOOT_TIMEOUT)
        assert m.group(1) == "A", f"booted slot {m.group(1)}, expected A (priority 2)"
        assert m.group(2) == ctx.version, f"version {m.group(2)}, built as {ctx.version}"
        print(f"  banner after {time.monotonic() - start:.1f}s")
        vm.send("\n")
        rc, out = vm.run("cat /etc/machine-id; grep ' / ' /proc/mounts; grep ' /var ' /proc/mounts; "
                         "touch /etc/kept-across-boots")
        assert rc == 0, out
        machine_id = out[0]
        assert any(line.startswith("/dev/dm-") and " squashfs ro," in line for line in out), \
            f"root is not the read-only verity device: {out}"
        assert any(" /var ext4 rw," in line for line in out), f"STATE is not at /var: {out}"
        rc, _ = vm.run("touch /usr/should-fail 2>/dev/null")
        assert rc != 0, "the root file system is writable"
        vm.run("sync")
        vm.power_off()

        # The second boot finds STATE made: same machine id, /etc changes kept.
        vm.start()
        vm.expect(BANNER.pattern, BOOT_TIMEOUT)
        vm.send("\n")
        rc, out = vm.run("cat /etc/machine-id; ls /etc/kept-across-boots")
        assert rc == 0 and out[0] == machine_id, f"STATE was not kept: {out} vs {machine_id}"
        vm.run("sync")
        vm.power_off()

        # STATE's primary superblock destroyed: the initramfs repairs it from a backup copy
        # instead of making a new file system, and nothing on STATE is lost.
        with vm.disk_file() as raw:
            start = state_start(raw)
            with open(raw, "r+b") as f:
                f.seek(start * 512 + 1024)
                f.write(b"\x00" * 1024)
        vm.start()
        vm.expect(r"STATE \S+ repaired", BOOT_TIMEOUT)
        vm.expect(BANNER.pattern, BOOT_TIMEOUT)
        vm.send("\n")
        rc, out = vm.run("cat /etc/machine-id; ls /etc/kept-across-boots")
        assert rc == 0 and out[0] == machine_id, f"STATE was not repaired: {out} vs {machine_id}"
