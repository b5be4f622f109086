# image/: the build pipeline behind `make image`. Configuration: image/config.mk.
include image/config.mk

EXTRA_CFLAGS_image := $(call pkg-cflags,fdisk)

MKDISK_OBJS := $(OUT)/obj/image/mkdisk/mkdisk.o $(OUT)/obj/lib/log.o
$(OUT)/bin/pivot-mkdisk: $(MKDISK_OBJS)
	@mkdir -p $(@D)
	$(CC) -o $@ $^ $(call pkg-libs,fdisk libcrypto)

# The initramfs's /init: static, so the initramfs needs no C library of its own.
INIT_SRCS := $(wildcard image/initramfs/*.c) lib/log.c lib/gpt.c lib/gpt-fd.c lib/crc32.c lib/pci-path.c
$(OUT)/bin/pivot-init: $(INIT_SRCS:%.c=$(OUT)/obj/%.o)
	@mkdir -p $(@D)
	$(CC) -static -o $@ $^

BINS += $(OUT)/bin/pivot-mkdisk $(OUT)/bin/pivot-init

# Every image setting goes to the build script through the environment.
IMAGE_VARS := VERSION MIN_VERSION SUITE MIRROR KERNEL_FLAVOUR PACKAGES ROOT_ZSTD_LEVEL OVERLAY SEED \
              SOURCE_DATE_EPOCH ESP_SIZE_MIB SLOT_SIZE_MIB STATE_SIZE_MIB WATCHDOG_SEC \
              INITRAMFS_MODULES CONSOLE CMDLINE_EXTRA UPDATE_SERVER CHANNEL POLL_INTERVAL \
              FIRST_CHECK_DELAY POLL_JITTER REBOOT_STRATEGY UPDATE_TRIES SIGNING_KEY CACHE OUT
IMAGE_ENV = $(foreach v,$(IMAGE_VARS),$(v)='$($(v))')

# What the image is made of; the top Makefile adds the prerequisites once every fragment has
# declared its programs.
IMAGE_PREREQS = $(OUT)/bin/pivot-mkdisk $(OUT)/bin/pivot-init $(OUT)/efi/BOOTX64.EFI \
                $(filter %/pivot-agent %/pivotctl %/pivot-payload,$(BINS)) $(OMAHA_MODULE)

.PHONY: image qemu
image: deps-build
	@tools/deps.sh image
	@$(IMAGE_ENV) image/build-image

qemu:
	@tools/deps.sh qemu
	@test -f $(OUT)/disk.img || { echo "no $(OUT)/disk.img: run 'make image' first" >&2; exit 1; }
	@qemu-tests/boot --disk $(OUT)/disk.img --interactive

.PHONY: qemu-test
qemu-test: all image # the fleet tests run out/bin/pivot-server too
	@tools/deps.sh qemu
	@qemu-tests/run

CHECK_SUITES += image-config=image/tests/test-config.sh \
                image-reproducible=image/tests/test-reproducible.sh \
                qemu=qemu-tests/run
BENCHES += image/bench/bench-image.sh

UNIT_TESTS += $(OUT)/test/test-initramfs-cmdline
$(OUT)/test/test-initramfs-cmdline: $(OUT)/obj-san/image/tests/test-cmdline.o \
		$(OUT)/obj-san/image/initramfs/cmdline.o $(OUT)/obj-san/image/initramfs/disk.o \
		$(OUT)/obj-san/lib/gpt.o $(OUT)/obj-san/lib/gpt-fd.o $(OUT)/obj-san/lib/crc32.o \
		$(OUT)/obj-san/lib/log.o $(OUT)/obj-san/lib/pci-path.o $(OUT)/obj-san/lib/test/test-main.o
	@mkdir -p $(@D)
	$(CC) $(SAN) -o $@ $^
