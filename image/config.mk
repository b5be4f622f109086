# Image configuration. Every value can be set on the command line:
#   make image VERSION=1.2.3 KERNEL_FLAVOUR=cloud-amd64
#
VERSION           ?= 0.1.0
MIN_VERSION       ?= 0.0.0
SUITE             ?= bookworm
MIRROR            ?= http://deb.debian.org/debian
# Debian kernel flavour. The generic one is the default because it carries the i6300esb
# watchdog driver QEMU emulates (cloud-amd64 has no hardware watchdog driver at all).
KERNEL_FLAVOUR    ?= amd64
PACKAGES          ?= image/packages.list
# zstd level of the squashfs root. Measured on the default package set (README): 15 gives
# 27.2 MiB in ~5 s, 9 gives 29.9 MiB in ~1.5 s. Fleets download the root: 15 by default.
ROOT_ZSTD_LEVEL   ?= 15
OVERLAY           ?= rootfs-overlay
# Disk and partition GUIDs, the verity salt and the ESP's volume id derive from the seed.
SEED              ?= pivot
# Timestamps in every file system: the last commit's time, so a commit builds the same bytes.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 1700000000)
ESP_SIZE_MIB      ?= 256
SLOT_SIZE_MIB     ?= 1024
STATE_SIZE_MIB    ?= 64
# Seconds the hardware watchdog gives a boot before it resets the machine (0: off).
WATCHDOG_SEC      ?= 60
# Kernel modules for the initramfs (their dependencies come along). The root file system
# carries no modules: what the image needs is loaded here, at boot.
# Disks: virtio (QEMU and clouds), NVMe, SATA (AHCI), USB sticks (xHCI, EHCI; usb-storage, UAS)
# and eMMC/SD (SDHCI on PCI or ACPI), so that one image boots a virtual machine, a server or an
# x86 appliance; a driver for hardware a machine lacks loads and finds nothing.
# ext4 asks the crypto API for crc32c when it mounts, and no modprobe is there to load it.
INITRAMFS_MODULES ?= virtio_pci virtio_blk virtio_scsi sd_mod virtio_net \
                     nvme ahci xhci_pci ehci_pci usb_storage uas sdhci_pci sdhci_acpi mmc_block \
                     dm_verity squashfs ext4 crc32c_generic crc32c_intel \
                     overlay vfat nls_cp437 nls_ascii nls_utf8 i6300esb softdog
CONSOLE           ?= ttyS0,115200
CMDLINE_EXTRA     ?=
# Update agent defaults, written to /etc/pivot/update.conf. 10.0.2.2 is the host as a QEMU
# guest on user networking sees it.
UPDATE_SERVER     ?= http://10.0.2.2:8080/v1/update/
CHANNEL           ?= stable
POLL_INTERVAL     ?= 2700
# Seconds from agent start to its first check, and the random spread around each poll.
FIRST_CHECK_DELAY ?= 420
POLL_JITTER       ?= 300
# reboot, off, or a maintenance window: REBOOT_STRATEGY="window Sun 03:00 2h"
REBOOT_STRATEGY   ?= reboot
# Boot attempts a freshly installed slot gets before the machine falls back.
UPDATE_TRIES      ?= 1
SIGNING_KEY       ?=
CACHE             ?= $(OUT)/cache
