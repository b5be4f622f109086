/* A disk's path as the boot selector passes it to the initramfs (pivot.disk=pci:...): the
 * device.function of each bridge and of the controller from the root, in hex as Linux writes
 * them in sysfs, joined by "/" ("1c.4/00.0"); for a SATA disk then its port on the controller,
 * numbered from 1 as Linux's ata_port port_no is ("1f.2/ata1"). Built here once for both ends:
 * the selector from its UEFI device path, the initramfs from sysfs. No C library (the selector
 * is freestanding). */
#pragma once

#include <stddef.h>

#define PCI_PATH_E2BIG (-7)
#define PCI_PATH_ATA_PORTS 32 /* AHCI's most */

/* Appends one PCI node (device 0-0x1f, function 0-7) to the NUL-terminated path in buf (size
 * bytes). Returns 0, or PCI_PATH_E2BIG (buf left as it was) when it does not fit or the node
 * cannot exist. */
int pci_path_add(char *buf, size_t size, unsigned device, unsigned function);

/* Appends a SATA port (1 to PCI_PATH_ATA_PORTS) after the controller's PCI node, the same way. */
int pci_path_add_ata(char *buf, size_t size, unsigned port);

/* The length of the path's PCI part: all of it, or up to its "/ata" node. */
size_t pci_path_pci_len(const char *path);
