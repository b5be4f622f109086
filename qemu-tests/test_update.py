"""The whole update story on real images: a machine on version 1 polls a real pivot-server
(SQLite store, on the host's loopback), finds version 2 published with pivot-admin, streams it
into slot B, flips the GPT, reboots into B, and marks B good; the server sees it all."""
import os
import subprocess
import time

from fleet import Server, build_image
from pivotvm import BANNER, PivotVM, make_overlay

BOOT_TIMEOUT = 180
INSTALL_TIMEOUT = 400


def booted(vm, timeout=BOOT_TIMEOUT):
    m = vm.expect(BANNER.pattern, timeout)
    return m.group(1), m.group(2)


def machine_record(server):
    machines = server.machines()
    rows = machines if isinstance(machines, list) else machines.get("machines", [])
    assert len(rows) == 1, f"expected one machine, the server knows {rows}"
    return rows[0]


def test_update_1_to_2(ctx):
    v1 = build_image("v1", "1")
    v2 = build_image("v2", "2")
    with Server(ctx.workdir) as server, PivotVM(os.path.join(v1, "disk.img"), ctx.workdir) as vm:
        server.admin("publish", os.path.join(v2, "update.payload"), "--channel", "stable")
        start = time.monotonic()
        vm.start()
        assert booted(vm) == ("A", "1")
        assert booted(vm, INSTALL_TIMEOUT) == ("B", "2"), "did not come up on B with version 2"
        print(f"  1 -> 2 installed and rebooted in {time.monotonic() - start:.0f}s")
        vm.expect(r"Slot B \(version 2\) marked successful", 120)
        # The server learns it from the agent's report after the boot.
        deadline = time.monotonic() + 60
        while True:
            record = machine_record(server)
            if record.get("version") == "2" and record.get("state") == "complete":
                break
            assert time.monotonic() < deadline, f"the server still has {record}"
            time.sleep(2)
        status = server.admin("status")
        assert "complete: 1" in status and "1 complete, 0 failed" in status, status
        vm.power_off()
        slots = vm.gpt()
        assert slots["ROOT-B"][2] == 1 and slots["ROOT-B"][0] > slots["ROOT-A"][0], slots


# The node below the controller that the boot disk's path ends in, on each bus (pivotvm.BUSES).
BOOT_DISK_NODES = {"nvme": "/nvme1", "sata": "/ata1", "scsi": "/scsi0.0", "usb": "/ssusb2",
                   "usb-ehci": "/usb2", "nvme-ns": "/nvme2"}


def make_copy(base, path, unbootable):
    """A copy of the image (an overlay); unbootable: without a file system on its ESP, so that
    the firmware passes it over (where it would not go by bootindex)."""
    make_overlay(base, path)
    if unbootable:
        subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -z {1 << 20} 4096", path], check=True,
                       stdout=subprocess.DEVNULL)


def update_with_a_copy(ctx, bus="virtio", boot_disk_first=False, copy_beside=False,
                       copy_unbootable=False):
    """Every disk written from one image has the same partition GUIDs. With a copy of the image
    on a second disk (an installer stick left in), on a virtio disk before the boot disk on the
    PCI bus (or after it, boot_disk_first; or, copy_beside, on the boot disk's own controller),
    the machine boots its root from the disk the firmware started (its path, down to the node
    below the controller, as the firmware and as Linux see it agree), updates that disk, and
    leaves the copy alone. bus: how the boot disk is attached (pivotvm.BUSES);
    the initramfs loads the drivers for it. copy_unbootable: see make_copy()."""
    v1 = build_image("v1", "1")
    v2 = build_image("v2", "2")
    base = os.path.join(v1, "disk.img")
    copy = os.path.join(ctx.workdir, "copy.qcow2")
    reference = os.path.join(ctx.workdir, "copy-reference.qcow2")
    make_copy(base, copy, copy_unbootable)
    make_copy(base, reference, copy_unbootable)
    node = BOOT_DISK_NODES.get(bus, "")
    with Server(ctx.workdir) as server, \
            PivotVM(base, ctx.workdir, bus=bus, other_disks=[copy], boot_disk_first=boot_disk_first,
                    others_beside=copy_beside) as vm:
        server.admin("publish", os.path.join(v2, "update.payload"), "--channel", "stable")
        vm.start()
        # Disk names follow the order the disks show up in: read the boot disk's from the log.
        disk = vm.expect(rf"is on 2 disks: using (\S+), the boot disk \(PCI [0-9a-f.]+(/[0-9a-f.]+)*{node}\)",
                         BOOT_TIMEOUT).group(1)
        if bus == "virtio":
            assert disk == ("/dev/vda" if boot_disk_first else "/dev/vdb"), disk
        part = disk + "p" if disk[-1].isdigit() else disk  # nvme0n1p2, sda2
        vm.expect(rf"slot A: root \S+ on {part}2, switching root", BOOT_TIMEOUT)
        assert booted(vm) == ("A", "1")
        disk = vm.expect(rf"is on 2 disks: using (\S+), the boot disk", INSTALL_TIMEOUT).group(1)
        part = disk + "p" if disk[-1].isdigit() else disk
        vm.expect(rf"slot B: root \S+ on {part}3, switching root", INSTALL_TIMEOUT)
        assert booted(vm) == ("B", "2"), "did not come up on B with version 2"
        vm.expect(r"Slot B \(version 2\) marked successful", 120)
        vm.power_off()
        slots = vm.gpt()
        assert slots["ROOT-B"][2] == 1 and slots["ROOT-B"][0] > slots["ROOT-A"][0], slots
    same = subprocess.run(["qemu-img", "compare", "-q", copy, reference])
    assert same.returncode == 0, "the copy on the other disk was written to"


def test_copy_of_the_image_on_a_disk_before(ctx):
    update_with_a_copy(ctx)


def test_copy_of_the_image_on_a_disk_after(ctx):
    update_with_a_copy(ctx, boot_disk_first=True)


def test_copy_of_the_image_on_the_same_sata_controller(ctx):
    # Linux lists sdb (the copy, port 3) before sda: a choice by PCI path alone took the copy.
    update_with_a_copy(ctx, "sata", copy_beside=True)


def test_copy_of_the_image_on_the_same_scsi_controller(ctx):
    update_with_a_copy(ctx, "scsi", copy_beside=True)


def test_copy_of_the_image_on_the_same_usb_controller(ctx):
    # The copy on port 1 tends to show up first: a choice by PCI path alone took it at once.
    update_with_a_copy(ctx, "usb", copy_beside=True)



def test_copy_of_the_image_on_the_same_usb2_controller(ctx):
    update_with_a_copy(ctx, "usb-ehci", copy_beside=True)


def test_copy_of_the_image_on_the_same_nvme_drive(ctx):
    # Two namespaces of one NVMe controller: the copy is namespace 1, which Linux lists first, the
    # boot disk namespace 2. OVMF boots namespace 1 whatever the bootindex: the copy's ESP has no
    # file system, so that OVMF goes on to namespace 2.
    update_with_a_copy(ctx, "nvme-ns", copy_beside=True, copy_unbootable=True)


def test_update_on_nvme(ctx):
    update_with_a_copy(ctx, "nvme")


def test_update_on_sata(ctx):
    update_with_a_copy(ctx, "sata")


def test_update_on_usb_stick(ctx):
    update_with_a_copy(ctx, "usb")

