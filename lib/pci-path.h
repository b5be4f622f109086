/* A disk's path as the boot selector passes it to the initramfs (pivot.disk=pci:...), built here
 * once for both ends: the selector from its UEFI device path, the initramfs from sysfs. No C
 * library (the selector is freestanding).
 *
 * First the device.function of each bridge and of the controller from the root, in hex as
 * Linux writes them in sysfs, joined by "/" ("1c.4/00.0"). Then, when the controller has more
 * than one disk, one node below it that tells them apart, numbered as Linux numbers it:
 *   "ata3"      a SATA disk on the controller's third port (Linux's port_no, from 1);
 *   "scsi2.0"   a disk on virtio-scsi: SCSI target 2, LUN 0;
 *   "nvme2"     an NVMe namespace: namespace ID 2 (Linux's nsid; a controller can have several);
 *   "usb2.1"    a USB disk: port 2 of the USB 2 root hub, then port 1 of the hub there (from 1);
 *   "ssusb2.1"  the same on the USB 3 (SuperSpeed) root hub. Linux gives an xHCI controller a
 *               root hub for each of the two, each numbering its ports from 1, where the
 *               firmware numbers all the controller's ports in one row (pci_path_xhci_port). */
#pragma once

#include <stddef.h>

#define PCI_PATH_E2BIG (-7)
#define PCI_PATH_ATA_PORTS 32 /* AHCI's most */
#define PCI_PATH_NUMBER_MAX 255 /* SCSI targets and LUNs, USB ports, NVMe namespace IDs */

/* Appends one PCI node (device 0-0x1f, function 0-7) to the NUL-terminated path in buf (size
 * bytes). Returns 0, or PCI_PATH_E2BIG (buf left as it was) when it does not fit or the node
 * cannot exist. */
int pci_path_add(char *buf, size_t size, unsigned device, unsigned function);

/* The nodes below the controller, the same way. pci_path_add_usb_port() adds a port to the
 * USB node the path ends in, or starts one. */
int pci_path_add_ata(char *buf, size_t size, unsigned port);
int pci_path_add_scsi(char *buf, size_t size, unsigned target, unsigned lun);
int pci_path_add_nvme(char *buf, size_t size, unsigned nsid);
int pci_path_add_usb_port(char *buf, size_t size, unsigned port, int superspeed);

/* One of an xHCI controller's Supported Protocol capabilities: its ports first to first + count
 * - 1 (counted from 1 over all the controller's ports) speak USB `major`.x. */
struct pci_path_xhci_ports {
        unsigned major, first, count;
};

/* Linux's number (from 1) of xHCI port `port` (counted as the firmware does, from 1 over all
 * the controller's ports) on its root hub, and in *superspeed whether that is the USB 3 one:
 * Linux gives each root hub the ports of its protocol, in order. 0 when no capability of
 * USB 2 or 3 holds the port. */
unsigned pci_path_xhci_port(const struct pci_path_xhci_ports *caps, size_t n, unsigned port,
                            int *superspeed);

/* The length of the path's PCI part: all of it, or up to its node below the controller. */
size_t pci_path_pci_len(const char *path);

/* Whether the path's node below the controller is a USB one. */
int pci_path_has_usb(const char *path);
