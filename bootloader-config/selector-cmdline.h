/* The kernel command line the boot selector passes, assembled from the slot's cmdline file,
 * selector.conf and the chosen partition. No libc.
 *
 *   <slot cmdline> <cmdline_extra> console=<c1> [console=<c2>...] initrd=\pivot\<X>\initrd
 *   [pivot.disk=pci:<DD.F>[/<DD.F>...]] pivot.slot=<X> pivot.root=PARTUUID=<lowercase unique GUID>
 *
 * pivot.slot and pivot.root are the contract with the initramfs: same names, always last.
 * pivot.disk names the disk the selector ran from by its PCI path (device.function of each
 * bridge and of the controller, from the root, in hex as Linux writes them in sysfs): every
 * disk written from one image has the same partition GUIDs, so with a copy of the image on a
 * second disk (an installer stick) pivot.root alone matches two partitions. */
#pragma once

#include <stddef.h>

/* x86's COMMAND_LINE_SIZE: a longer line would be cut by the kernel, dropping the pivot.*
 * arguments at its end. */
#define SELECTOR_CMDLINE_MAX 2048

#define SELECTOR_E2BIG (-7)
#define SELECTOR_EINVAL (-22)

/* slot_cmdline is the cmdline file as read (len bytes, not NUL-terminated): its first line is
 * used, tabs count as spaces, surrounding space and a CR/LF ending are dropped. Any other
 * control or non-ASCII byte in that line is -EINVAL (a damaged file); a result that does not
 * fit in size (at most SELECTOR_CMDLINE_MAX) bytes is -E2BIG. Returns the length. */
int selector_cmdline_build(char *buf, size_t size, const char *slot_cmdline, size_t len,
                           const char *cmdline_extra, const char *console, const char *disk_pci,
                           const char *slot_name, const char *partuuid);
