"""Rollback on real images: version 3 is built to fail to boot in three ways. Each time the
machine (on version 2) installs 3, fails to boot it, and comes back on 2 by itself; it reports
the rollback (error code 44), the server's safe mode halts the rollout, and the machine does not
install 3 again.

  exit   /sbin/init exits at once: the kernel panics ("Attempted to kill init"), panic=10 reboots
  panic  /sbin/init crashes the kernel through sysrq
  hang   /sbin/init sleeps for ever: only the watchdog the initramfs armed can reset it
"""
import os
import time

from fleet import Server, broken_overlay, build_image
from pivotvm import BANNER, PivotVM

BOOT_TIMEOUT = 180
BROKEN_INIT = {
    "exit": "exit 1",
    "panic": "echo c > /proc/sysrq-trigger; sleep 60",
    "hang": "exec sleep 2147483647",
}


def rollback_story(ctx, variant, failure_line):
    v2 = build_image("v2", "2")
    v3 = build_image(f"v3-{variant}", "3", overlay=broken_overlay(f"v3-{variant}", BROKEN_INIT[variant]))
    with Server(ctx.workdir) as server, PivotVM(os.path.join(v2, "disk.img"), ctx.workdir) as vm:
        # One machine: halt the rollout at its first failure.
        server.admin("publish", os.path.join(v3, "update.payload"), "--channel", "stable")
        server.admin("policy", "stable", "--safe-min-failures", "1")
        vm.start()
        first = vm.expect(BANNER.pattern, BOOT_TIMEOUT)
        assert (first.group(1), first.group(2)) == ("A", "2"), first.group(0)
        vm.expect(r"Version 3 installed in slot B", 300)
        vm.expect(r"-> B: highest priority, trying \(tries 1->0\)", BOOT_TIMEOUT)
        vm.expect(failure_line, BOOT_TIMEOUT)
        back = vm.expect(r"pivot-selector: .* -> A: highest priority, successful", 2 * BOOT_TIMEOUT)
        assert "B(prio=3 tries=0 ok=0)" in back.group(0), back.group(0)
        again = vm.expect(BANNER.pattern, BOOT_TIMEOUT)
        assert (again.group(1), again.group(2)) == ("A", "2"), again.group(0)
        vm.expect(r"did not come up; running 2 from slot A \(rolled back\)", 120)

        # The server has the failure and has halted the rollout.
        deadline = time.monotonic() + 60
        while True:
            events = server.events()
            rows = events if isinstance(events, list) else events.get("events", [])
            if any(int(e.get("error_code") or e.get("errorcode") or 0) == 44 for e in rows):
                break
            assert time.monotonic() < deadline, f"no rollback event (code 44) on the server: {rows}"
            time.sleep(2)
        status = server.admin("status")
        assert "halt" in status.lower(), f"safe mode did not halt the rollout:\n{status}"

        # Several polls later, 3 has not been installed again.
        mark = len(vm.lines)
        time.sleep(30)
        later = "\n".join(vm.lines[mark:])
        assert "Version 3 installed" not in later and "Update available: 3" not in later, later
        vm.power_off()
        slots = vm.gpt()
        assert slots["ROOT-A"][2] == 1 and slots["ROOT-B"][1:] == (0, 0), slots


def test_init_exits(ctx):
    rollback_story(ctx, "exit", r"Kernel panic|Attempted to kill init")


def test_kernel_panics(ctx):
    rollback_story(ctx, "panic", r"Kernel panic|sysrq: Trigger a crash")


def test_boot_hangs(ctx):
    rollback_story(ctx, "hang", r"pivot-init: slot B: .*switching root")
