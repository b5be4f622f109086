# Pivot: immutable OS images with A/B updates.
#
#   make            build every host and device program into out/bin/
#   make image      build out/disk.img (and out/update.payload) from image/ and rootfs-overlay/
#   make qemu       boot out/disk.img under OVMF on a throw-away qcow2 overlay
#   make check      every test: unit, image, boot selector, QEMU
#   make bench      the measurements the README reports
#
# Each part of the tree brings its own fragment, */module.mk; see mk/common.mk.

include mk/common.mk

BINS        :=
UNIT_TESTS  :=
CHECK_SUITES:=
BENCHES     :=

.DEFAULT_GOAL := all
include $(sort $(wildcard */module.mk))

# Prerequisites that need every fragment's programs declared first.
image: $(IMAGE_PREREQS)

.PHONY: all unit check bench clean deps-build
all: deps-build $(BINS)

deps-build:
	@tools/deps.sh build efi

unit: deps-build $(UNIT_TESTS)
	@tools/run-suites $(foreach t,$(UNIT_TESTS),$(notdir $(t))=$(t))

# Unit tests run first: they are fast and a broken library makes every later failure noise.
# The image is built with the default settings: the image and QEMU suites test it.
check: all $(UNIT_TESTS)
	@tools/deps.sh test qemu
	@$(MAKE) --no-print-directory image
	@tools/run-suites $(foreach t,$(UNIT_TESTS),$(notdir $(t))=$(t)) $(CHECK_SUITES)

bench: all
	@tools/deps.sh bench
	@set -e; for b in $(BENCHES); do $$b; done

clean:
	rm -rf $(OUT)/bin $(OUT)/lib $(OUT)/obj $(OUT)/obj-pic $(OUT)/obj-san-pic $(OUT)/test $(OUT)/efi

# Generic rules: objects for programs, and sanitizer-built objects for tests.
$(OUT)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(EXTRA_CFLAGS_$(firstword $(subst /, ,$*))) -MMD -MP -c $< -o $@

$(OUT)/obj-san/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(SAN) $(EXTRA_CFLAGS_$(firstword $(subst /, ,$*))) -MMD -MP -c $< -o $@

# Position-independent objects, for modules loaded at run time (lib/module.mk).
$(OUT)/obj-pic/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -fPIC $(EXTRA_CFLAGS_$(firstword $(subst /, ,$*))) -MMD -MP -c $< -o $@

$(OUT)/obj-san-pic/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -fPIC $(SAN) $(EXTRA_CFLAGS_$(firstword $(subst /, ,$*))) -MMD -MP -c $< -o $@

-include $(shell find $(OUT)/obj $(OUT)/obj-san $(OUT)/obj-pic $(OUT)/obj-san-pic -name '*.d' 2>/dev/null)
