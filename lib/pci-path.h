/* A disk's PCI path as the boot selector passes it to the initramfs (pivot.disk=pci:...): the
 * device.function of each bridge and of the controller from the root, in hex as Linux writes
 * them in sysfs, joined by "/" ("1c.4/00.0"). Built here once for both ends: the selector from
 * its UEFI device path, the initramfs from sysfs. No C library (the selector is freestanding). */
#pragma once

#include <stddef.h>

#define PCI_PATH_E2BIG (-7)

/* Appends one node (device 0-0x1f, function 0-7) to the NUL-terminated path in buf (size
 * bytes). Returns 0, or PCI_PATH_E2BIG (buf left as it was) when it does not fit or the node
 * cannot exist. */
int pci_path_add(char *buf, size_t size, unsigned device, unsigned function);
