"""The boot selector on the real image: slot choice, spent tries, rollback, a damaged GPT and a
missing kernel. Each test edits its own qcow2 overlay (GPT attributes with sfdisk, ESP files with
mtools) while the machine is off, boots, and reads the console and the GPT back.

The image ships ROOT-A (priority 2) and ROOT-B (priority 1) with the same root, both successful.
"""
import os
import re
import subprocess

from pivotvm import BANNER, PivotVM, set_slot_attrs

BOOT_TIMEOUT = 180
SELECTOR_LINE = r"pivot-selector: (.*) -> (\w+): (.*)$"
ROOT_A, ROOT_B = 2, 3


def esp_image(path):
    """mtools' name for the ESP inside a disk file: file@@byte-offset."""
    out = subprocess.run(["sfdisk", "--json", path], check=True, capture_output=True, text=True).stdout
    import json
    table = json.loads(out)["partitiontable"]
    sector = table.get("sectorsize", 512)
    for part in table["partitions"]:
        if part.get("name") == "EFI-SYSTEM":
            return f"{path}@@{part['start'] * sector}"
    raise AssertionError("no EFI-SYSTEM partition")


def partition_start(path, partno):
    out = subprocess.run(["sfdisk", "--dump", path], check=True, capture_output=True, text=True).stdout
    m = re.search(rf"{re.escape(path)}{partno} : start=\s*(\d+)", out)
    assert m, out
    return int(m.group(1))


def boot_to_banner(vm, timeout=BOOT_TIMEOUT):
    """Starts the machine; returns (selector line match, booted slot)."""
    vm.start()
    sel = vm.expect(SELECTOR_LINE, timeout)
    slot = vm.expect(BANNER.pattern, timeout).group(1)
    return sel, slot


def test_successful_b_above_a(ctx):
    with PivotVM(ctx.disk, ctx.workdir) as vm:
        with vm.disk_file() as raw:
            set_slot_attrs(raw, ROOT_B, 3, 0, 1)
        sel, slot = boot_to_banner(vm)
        assert sel.group(2) == "B" and sel.group(3) == "highest priority, successful", sel.group(0)
        assert slot == "B", f"booted {slot}"
        vm.power_off()
        assert vm.gpt()["ROOT-B"] == (3, 0, 1)


def test_trying_b_spends_a_try(ctx):
    with PivotVM(ctx.disk, ctx.workdir) as vm:
        with vm.disk_file() as raw:
            set_slot_attrs(raw, ROOT_B, 3, 2, 0)
        sel, slot = boot_to_banner(vm)
        assert sel.group(0).endswith("-> B: highest priority, trying (tries 2->1)"), sel.group(0)
        assert slot == "B", f"booted {slot}"
        vm.power_off()
        b = vm.gpt()["ROOT-B"]
        # Tries 1 left as the selector wrote it, or marked good since by a health check.
        assert b in ((3, 1, 0), (3, 0, 1)), f"ROOT-B attributes after the boot: {b}"


def test_destroyed_b_rolls_back_to_a(ctx):
    """B's last try on a root that fails verification: the initramfs reboots, with no one at the
    console, and the next boot is A's."""
    with PivotVM(ctx.disk, ctx.workdir) as vm:
        with vm.disk_file() as raw:
            set_slot_attrs(raw, ROOT_B, 3, 1, 0)
            start = partition_start(raw, ROOT_B)
            subprocess.run(["dd", "if=/dev/zero", f"of={raw}", "bs=512", f"seek={start}",
                            "count=8192", "conv=notrunc", "status=none"], check=True)
        vm.start()
        first = vm.expect(SELECTOR_LINE, BOOT_TIMEOUT)
        assert first.group(0).endswith("-> B: highest priority, trying (tries 1->0)"), first.group(0)
        second = vm.expect(SELECTOR_LINE, 2 * BOOT_TIMEOUT)
        assert second.group(2) == "A", second.group(0)
        assert "B(prio=3 tries=0 ok=0)" in second.group(1), second.group(0)
        slot = vm.expect(BANNER.pattern, BOOT_TIMEOUT).group(1)
        assert slot == "A", f"booted {slot}"
        vm.power_off()
        assert vm.gpt()["ROOT-B"] == (3, 0, 0)


def test_primary_gpt_header_corrupt(ctx):
    with PivotVM(ctx.disk, ctx.workdir) as vm:
        with vm.disk_file() as raw:
            set_slot_attrs(raw, ROOT_B, 3, 2, 0)
            # The disk GUID in the primary header: its CRC no longer matches.
            with open(raw, "r+b") as f:
                f.seek(512 + 56)
                f.write(b"\xde\xad\xbe\xef")
        sel, slot = boot_to_banner(vm)
        assert sel.group(0).endswith("-> B: highest priority, trying (tries 2->1)"), sel.group(0)
        assert slot == "B", f"booted {slot}"
        vm.power_off()
        with vm.disk_file() as raw:
            verify = subprocess.run(["sfdisk", "--verify", raw], capture_output=True, text=True)
            assert "No errors detected" in verify.stdout, verify.stdout + verify.stderr
            with open(raw, "rb") as f:
                f.seek(512)
                assert f.read(8) == b"EFI PART"


def test_b_kernel_missing_falls_back_to_a(ctx):
    with PivotVM(ctx.disk, ctx.workdir) as vm:
        with vm.disk_file() as raw:
            set_slot_attrs(raw, ROOT_B, 3, 0, 1)
            env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
            subprocess.run(["mdel", "-i", esp_image(raw), "::/pivot/B/vmlinuz"], check=True, env=env)
        vm.start()
        vm.expect(r"pivot-selector: slot B: kernel missing", BOOT_TIMEOUT)
        sel = vm.expect(SELECTOR_LINE, 30)
        assert sel.group(2) == "A" and "B(prio=3 tries=0 ok=0 unbootable)" in sel.group(1), sel.group(0)
        slot = vm.expect(BANNER.pattern, BOOT_TIMEOUT).group(1)
        assert slot == "A", f"booted {slot}"
        vm.power_off()
        assert vm.gpt()["ROOT-B"] == (3, 0, 0)


def test_successful_a_kept_after_load_error(ctx):
    """An update to B failed (B: priority 3, no tries, not successful) and A, the way back, fails
    to load once. A is skipped for that boot but stays successful on disk: marked bad, it would
    leave B, the failed update, as the fallback at every boot after."""
    with PivotVM(ctx.disk, ctx.workdir) as vm:
        with vm.disk_file() as raw:
            set_slot_attrs(raw, ROOT_B, 3, 0, 0)
            set_slot_attrs(raw, ROOT_A, 2, 0, 1)
            garbage = os.path.join(ctx.workdir, "not-a-kernel")
            with open(garbage, "wb") as f:
                f.write(b"MZ" + b"\x00" * 4094)
            env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
            image = esp_image(raw)
            subprocess.run(["mcopy", "-o", "-i", image, "::/pivot/A/vmlinuz", f"{ctx.workdir}/vmlinuz-a"],
                           check=True, env=env)
            subprocess.run(["mcopy", "-o", "-i", image, garbage, "::/pivot/A/vmlinuz"], check=True, env=env)
        vm.start()
        vm.expect(r"pivot-selector: slot A: cannot load kernel .*skipping it for this boot", BOOT_TIMEOUT)
        sel = vm.expect(SELECTOR_LINE, 30)
        assert sel.group(2) == "B", sel.group(0)
        vm.expect(BANNER.pattern, BOOT_TIMEOUT)
        vm.power_off()
        assert vm.gpt()["ROOT-A"] == (2, 0, 1), vm.gpt()
        # With A's kernel back, A boots again: nothing of the passing error stayed.
        with vm.disk_file() as raw:
            env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
            subprocess.run(["mcopy", "-o", "-i", esp_image(raw), f"{ctx.workdir}/vmlinuz-a", "::/pivot/A/vmlinuz"],
                           check=True, env=env)
        sel, slot = boot_to_banner(vm)
        assert sel.group(2) == "A" and slot == "A", sel.group(0)
