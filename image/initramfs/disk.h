#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Waits up to timeout_sec for a partition with this unique GUID to show up, and names the
 * partition (/dev/vda2) and its disk (/dev/vda). Every disk written from one image has the
 * same GUIDs: when several disks hold it, the one at PCI path disk_pci (pivot.disk, the disk
 * the boot selector ran from) is taken, waited for a few seconds when it is not there yet. */
int disk_find_partuuid(const char *partuuid, const char *disk_pci, unsigned timeout_sec, char *disk,
                       size_t disk_size, char *part, size_t part_size);

/* The PCI path of a device from its sysfs path ("/sys/devices/pci0000:00/0000:00:1c.0/
 * 0000:02:00.0/nvme/nvme0/nvme0n1" -> "1c.0/00.0"), as pivot.disk gives it; "" when it is not
 * on PCI. */
void disk_pci_path(const char *sysfs_path, char *out, size_t size);

/* Whether a PCI function at this PCI path is among the entries of `devices_dir`
 * (/sys/bus/pci/devices). A firmware whose PCI path Linux sees otherwise names none. */
bool disk_pci_present(const char *devices_dir, const char *pci);

/* Finds the partition labelled `label` on `disk`. When it is the last partition and the disk
 * is larger than the GPT says (an image written to a bigger disk), moves the backup GPT to
 * the end of the disk, grows the partition to it and tells the kernel; *grown says so. */
int disk_find_and_grow(const char *disk, const char *label, bool grow, char *part,
                       size_t part_size, bool *grown);
