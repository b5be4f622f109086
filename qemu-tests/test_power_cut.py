"""Power cuts during an update: QEMU is killed, with no shutdown, at several points of the
install of version 2 on a machine running 1. Started again, it boots a working slot every time
(old or new), and the update completes afterwards.

  mid-download   early in the stream: little of slot B written
  mid-write      late in the stream: most of slot B written (download, check, decompress and
                 write are one stream)
  esp-write      while the new kernel and initrd are being copied to the ESP (which happens
                 as soon as their chunks are verified, while the root image still streams)
  before-flip    the new kernel and initrd are on the ESP, the GPT is not flipped yet
  after-flip     the GPT says B, the machine has not rebooted yet

The last two stop the agent at exactly that step with its debug_pause hook (one-shot, so the
boot after the cut goes on normally).
"""
import os
import time

from fleet import Server, agent_conf_overlay, build_image
from pivotvm import BANNER, PivotVM

BOOT_TIMEOUT = 180
INSTALL_TIMEOUT = 300


def power_cut_story(ctx, cut_at, image="v1", slot_after_cut="A"):
    v1 = build_image(image, "1", overlay=None if image == "v1" else
                     agent_conf_overlay(image, [f"debug_pause = {image.split('-', 1)[1]}"]))
    v2 = build_image("v2", "2")
    with Server(ctx.workdir) as server, PivotVM(os.path.join(v1, "disk.img"), ctx.workdir) as vm:
        server.admin("publish", os.path.join(v2, "update.payload"), "--channel", "stable")
        vm.start()
        m = vm.expect(BANNER.pattern, BOOT_TIMEOUT)
        assert (m.group(1), m.group(2)) == ("A", "1"), m.group(0)
        vm.expect(cut_at, INSTALL_TIMEOUT)
        vm.power_off()  # the plug, not a shutdown
        slots = vm.gpt()
        if slot_after_cut == "A":
            # Half-installed: B must not be bootable.
            assert slots["ROOT-B"][0] == 0 and slots["ROOT-B"][2] == 0, f"B bootable after the cut: {slots}"
        else:
            assert slots["ROOT-B"][:3] == (3, 1, 0), f"the flip did not stick: {slots}"

        start = time.monotonic()
        vm.start()
        m = vm.expect(BANNER.pattern, BOOT_TIMEOUT)
        assert m.group(1) == slot_after_cut, f"after the cut it booted {m.group(0)}"
        # ... and the update completes.
        if slot_after_cut == "A":
            m = vm.expect(BANNER.pattern, INSTALL_TIMEOUT + BOOT_TIMEOUT)
        assert (m.group(1), m.group(2)) == ("B", "2"), m.group(0)
        vm.expect(r"Slot B \(version 2\) marked successful", 120)
        print(f"  update completed {time.monotonic() - start:.0f}s after power came back")
        vm.power_off()
        slots = vm.gpt()
        assert slots["ROOT-B"][2] == 1 and slots["ROOT-B"][0] > slots["ROOT-A"][0], slots


def test_mid_download(ctx):
    power_cut_story(ctx, r"^downloading\s+[2-5]\d%")


def test_mid_write(ctx):
    power_cut_story(ctx, r"^downloading\s+[7-9]\d%")


def test_during_esp_write(ctx):
    power_cut_story(ctx, r"^installing boot files 0%")


def test_between_esp_write_and_flip(ctx):
    power_cut_story(ctx, r"debug_pause: stopped before flip", image="v1-flip")


def test_just_after_flip(ctx):
    power_cut_story(ctx, r"debug_pause: stopped before reboot", image="v1-reboot", slot_after_cut="B")
