#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Waits up to timeout_sec for a partition with this unique GUID to show up, and names the
 * partition (/dev/vda2) and its disk (/dev/vda). Every disk written from one image has the
 * same GUIDs: when several disks hold it, the one at PCI path disk_pci (pivot.disk, the disk
 * the boot selector ran from) is taken, waited for a few seconds when it is not there yet. */
int disk_find_partuuid(const char *partuuid, const char *disk_pci, unsigned timeout_sec, char *disk,
                       size_t disk_size, char *part, size_t part_size);

/* The path of a device from its sysfs path, as pivot.disk gives it (lib/pci-path.h): its PCI
 * nodes ("/sys/devices/pci0000:00/0000:00:1c.0/0000:02:00.0/nvme/nvme0/nvme0n1" -> "1c.0/00.0"),
 * then for a SATA disk its port on the controller, read from sysfs ("1f.2/ata1"); "" when it
 * is not on PCI. */
void disk_pci_path(const char *sysfs_path, char *out, size_t size);

/* Whether a PCI function at the PCI part of this path is among the entries of `devices_dir`
 * (/sys/bus/pci/devices). A firmware whose PCI path Linux sees otherwise names none. */
bool disk_pci_present(const char *devices_dir, const char *path);

/* Whether a disk at `path` is the one pivot.disk names. A hint or a disk path without the SATA
 * port (a selector from before ports were passed, a port multiplier, a sysfs that does not say)
 * matches on the PCI part alone. */
bool disk_pci_matches(const char *path, const char *hint);

/* Finds the partition labelled `label` on `disk`. When it is the last partition and the disk
 * is larger than the GPT says (an image written to a bigger disk), moves the backup GPT to
 * the end of the disk, grows the partition to it and tells the kernel; *grown says so. */
int disk_find_and_grow(const char *disk, const char *label, bool grow, char *part,
                       size_t part_size, bool *grown);
