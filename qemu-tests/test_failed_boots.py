"""Failed boots end in reboots, with nobody at the console: a slot whose init dies (the kernel
panics and panic=10 reboots) and a slot whose boot hangs (the i6300esb watchdog the initramfs
armed resets the machine) each spend their last try, and the machine comes back on A.

B's command line on the ESP is edited to start a different init: /bin/false exits at once,
/bin/cat blocks for ever reading the console.
"""
import os
import subprocess
import tempfile

from pivotvm import BANNER, PivotVM, set_slot_attrs
from test_selector import SELECTOR_LINE, esp_image

ROOT_B = 3
BOOT_TIMEOUT = 180
WATCHDOG_SEC = 60


def set_b_init(raw, init):
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    esp = esp_image(raw)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "cmdline")
        subprocess.run(["mcopy", "-n", "-i", esp, "::/pivot/B/cmdline", path], check=True, env=env)
        with open(path) as f:
            args = f.read().split()
        args = [a for a in args if not a.startswith("pivot.init=")] + [f"pivot.init={init}"]
        with open(path, "w") as f:
            f.write(" ".join(args) + "\n")
        subprocess.run(["mcopy", "-o", "-i", esp, path, "::/pivot/B/cmdline"], check=True, env=env)


def last_try_on_b_comes_back_on_a(ctx, init, failure_pattern, timeout):
    with PivotVM(ctx.disk, ctx.workdir) as vm:
        with vm.disk_file() as raw:
            set_slot_attrs(raw, ROOT_B, 3, 1, 0)
            set_b_init(raw, init)
        vm.start()
        first = vm.expect(SELECTOR_LINE, BOOT_TIMEOUT)
        assert first.group(0).endswith("-> B: highest priority, trying (tries 1->0)"), first.group(0)
        vm.expect(failure_pattern, timeout)
        second = vm.expect(SELECTOR_LINE, BOOT_TIMEOUT)
        assert second.group(2) == "A" and "B(prio=3 tries=0 ok=0)" in second.group(1), second.group(0)
        slot = vm.expect(BANNER.pattern, BOOT_TIMEOUT).group(1)
        assert slot == "A", f"booted {slot}"
        vm.power_off()
        assert vm.gpt()["ROOT-B"] == (3, 0, 0)


def test_init_exits_panic_reboots(ctx):
    last_try_on_b_comes_back_on_a(ctx, "/bin/false", r"Kernel panic|reboot: Restarting", BOOT_TIMEOUT)


def test_boot_hangs_watchdog_resets(ctx):
    # The initramfs arms the watchdog; /bin/cat never starts the keeper, so nothing feeds it.
    last_try_on_b_comes_back_on_a(ctx, "/bin/cat", r"pivot-init: slot B: .*switching root",
                                  BOOT_TIMEOUT)
