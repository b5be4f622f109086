/* The kernel command line the boot selector and the image build agree on. */
#pragma once

#include <stddef.h>

#include "slot-policy.h" /* SLOT_NAME_MAX */

struct boot_args {
        char slot[SLOT_NAME_MAX]; /* pivot.slot=A: any name the selector accepts */
        char root_partuuid[40];  /* pivot.root=PARTUUID=<uuid> */
        /* pivot.disk=pci:<DD.F>[/<DD.F>...]: the PCI path of the disk the selector ran from,
         * to tell it from a copy of the image on another disk; "" when not given, or given in
         * a form this initramfs does not know (a hint: never a reason not to boot). */
        char disk_pci[64];
        char verity_roothash[129];
        char verity_salt[129];
        unsigned long long verity_data_blocks; /* 4 KiB blocks of file system */
        unsigned long long verity_hash_start;  /* 4 KiB block where the hash tree starts */
        char fstype[16];         /* pivot.fstype=squashfs */
        unsigned watchdog_sec;   /* pivot.watchdog=SECONDS, 0 = leave the watchdog alone */
        char init[64];           /* pivot.init=/sbin/init */
};

/* Parses a command line. Returns 0, or -EINVAL naming the bad argument in *bad. */
int boot_args_parse(const char *cmdline, struct boot_args *args, const char **bad);
