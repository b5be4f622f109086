/* Pivot's boot selector: a UEFI application installed as \EFI\BOOT\BOOTX64.EFI on the ESP.
 *
 * It reads the GPT of the disk it was loaded from, lets the shared slot policy
 * (lib/slot-policy.c) pick a root slot, spends a try on the disk when the winner is not yet
 * successful, and starts that slot's kernel (EFI stub) from \pivot\<slot>\ on the ESP with the
 * slot's command line plus the pivot.slot= / pivot.root= arguments the initramfs expects.
 *
 * It never prompts and never waits for a key: a slot it cannot start is marked bad on disk and
 * the policy runs again; when nothing at all can be started it says why and resets the machine,
 * so the firmware (and the next boot) gets another chance. The console line format is described
 * in README.md. */
#include <efi.h>
#include <efilib.h>

#include "gpt.h"
#include "pci-path.h"
#include "selector-cmdline.h"
#include "selector-conf.h"
#include "slot-policy.h"

#define CONF_PATH L"\\pivot\\selector.conf"
#define SLOT_FILE_MAX 2048 /* the cmdline file; a kernel line cannot be longer anyway */

/* Large objects live here, not on the firmware's stack. */
static struct gpt gpt;
static struct selector_conf conf;
static char conf_text[SELECTOR_CONF_MAX_BYTES];
static char slot_file[SLOT_FILE_MAX + 1];
static char kernel_cmdline[SELECTOR_CMDLINE_MAX];
static CHAR16 kernel_cmdline16[SELECTOR_CMDLINE_MAX];
static char summary[512];
static char disk_pci[64]; /* the boot disk's PCI path, for pivot.disk (empty: not on PCI) */

static EFI_HANDLE self;
static EFI_HANDLE esp_handle;
static EFI_FILE_HANDLE esp_root;

/* --- output: every line starts with the program's name, so a serial log is easy to grep --- */

#define say(fmt, ...) Print(L"pivot-selector: " fmt L"\n", ##__VA_ARGS__)

/* Waits, then resets; the last resort when nothing can be booted. Never returns. */
static void __attribute__((noreturn)) give_up(const CHAR16 *why) {
        say(L"FATAL: %s; resetting in %d s", why, conf.reset_delay);
        BS->Stall((UINTN)conf.reset_delay * 1000000);
        RT->ResetSystem(EfiResetCold, EFI_LOAD_ERROR, 0, NULL);
        for (;;)
                ; /* ResetSystem does not return; this keeps the compiler convinced. */
}

/* --- the disk behind a struct gpt_io --- */

struct disk {
        EFI_BLOCK_IO *bio;
        EFI_DISK_IO *dio;
        UINT32 media_id;
        UINT32 block_size;
};

static struct disk disk;

static int disk_read(void *ctx, uint64_t lba, void *buf, size_t bytes) {
        struct disk *d = ctx;
        EFI_STATUS s = d->dio->ReadDisk(d->dio, d->media_id, lba * d->block_size, bytes, buf);
        return EFI_ERROR(s) ? GPT_EIO : 0;
}

static int disk_write(void *ctx, uint64_t lba, const void *buf, size_t bytes) {
        struct disk *d = ctx;
        EFI_STATUS s = d->dio->WriteDisk(d->dio, d->media_id, lba * d->block_size, bytes,
                                         (void *)buf);
        return EFI_ERROR(s) ? GPT_EIO : 0;
}

static int disk_flush(void *ctx) {
        struct disk *d = ctx;
        EFI_STATUS s = d->bio->FlushBlocks(d->bio);
        /* Media without a write cache may answer "unsupported": nothing to flush. */
        return EFI_ERROR(s) && s != EFI_UNSUPPORTED ? GPT_EIO : 0;
}

/* The Supported Protocol capabilities of the USB controller at the end of `path`'s PCI nodes,
 * read from its registers (BAR 0, xHCI's extended capabilities). Returns how many, 0 when it is
 * not an xHCI controller; -1 when that cannot be told. */
static int xhci_protocols(EFI_DEVICE_PATH *path, struct pci_path_xhci_ports *caps, int max) {
        EFI_PCI_IO_PROTOCOL *pci;
        EFI_HANDLE handle;
        UINT8 class[3]; /* programming interface, subclass, class */
        UINT32 params, cap, ports;
        int n = 0;

        if (EFI_ERROR(BS->LocateDevicePath(&PciIoProtocol, &path, &handle)) ||
            EFI_ERROR(BS->HandleProtocol(handle, &PciIoProtocol, (void **)&pci)) ||
            EFI_ERROR(pci->Pci.Read(pci, EfiPciIoWidthUint8, 0x09, 3, class)))
                return -1;
        if (class[2] != 0x0c || class[1] != 0x03 || class[0] != 0x30)
                return 0; /* EHCI, OHCI, UHCI: one root hub, numbered as Linux does */
        if (EFI_ERROR(pci->Mem.Read(pci, EfiPciIoWidthUint32, 0, 0x10, 1, &params)))
                return -1;
        UINT64 at = (UINT64)(params >> 16) * 4; /* HCCPARAMS1's xECP, in dwords */
        for (int guard = 0; at && guard < 64 && n < max; guard++) {
                if (EFI_ERROR(pci->Mem.Read(pci, EfiPciIoWidthUint32, 0, at, 1, &cap)))
                        return -1;
                if ((cap & 0xff) == 2) { /* Supported Protocol: major revision, then ports */
                        if (EFI_ERROR(pci->Mem.Read(pci, EfiPciIoWidthUint32, 0, at + 8, 1, &ports)))
                                return -1;
                        caps[n++] = (struct pci_path_xhci_ports){
                                .major = cap >> 24, .first = ports & 0xff, .count = (ports >> 8) & 0xff};
                }
                at = (cap >> 8) & 0xff ? at + ((cap >> 8) & 0xff) * 4 : 0;
        }
        return n ? n : -1;
}

/* UEFI's NVMe namespace node (specification 2.x, 10.3.4.19), which gnu-efi does not define. */
#define MSG_NVME_NAMESPACE_DP 0x17
typedef struct {
        EFI_DEVICE_PATH Header;
        UINT32 NamespaceId;
        UINT64 NamespaceUuid; /* the EUI-64 */
} __attribute__((packed)) NVME_NAMESPACE_DEVICE_PATH;

/* A disk path node below the PCI controller: what tells its disks apart (lib/pci-path.h), in
 * Linux's numbering. Other nodes (SAS, say), and any node after one of another kind, add
 * nothing: the initramfs goes by what the path has then. `path` is the whole device path, for
 * the controller's registers. */
static int add_node_below_pci(EFI_DEVICE_PATH *path, const EFI_DEVICE_PATH *node) {
        size_t below = pci_path_pci_len(disk_pci);
        if (disk_pci[below] && !(DevicePathSubType(node) == MSG_USB_DP && pci_path_has_usb(disk_pci)))
                return 0;
        switch (DevicePathSubType(node)) {
        case MSG_SATA_DP: {
                const SATA_DEVICE_PATH *sata = (const SATA_DEVICE_PATH *)node;
                /* Behind a port multiplier Linux numbers the disks otherwise. Some firmware
                 * writes 0 here for a disk on the port itself, against the specification's
                 * 0xFFFF: that disk gets the controller alone, as behind a multiplier. */
                if (sata->PortMultiplierPortNumber != 0xffff)
                        return 0;
                return pci_path_add_ata(disk_pci, sizeof(disk_pci), sata->HBAPortNumber + 1u);
        }
        case MSG_SCSI_DP: {
                const SCSI_DEVICE_PATH *scsi = (const SCSI_DEVICE_PATH *)node;
                return pci_path_add_scsi(disk_pci, sizeof(disk_pci), scsi->Pun, scsi->Lun);
        }
        case MSG_NVME_NAMESPACE_DP: {
                const NVME_NAMESPACE_DEVICE_PATH *ns = (const NVME_NAMESPACE_DEVICE_PATH *)node;
                return pci_path_add_nvme(disk_pci, sizeof(disk_pci), ns->NamespaceId);
        }
        case MSG_USB_DP: { /* one node for each hub on the way: the ports of the chain */
                unsigned port = ((const USB_DEVICE_PATH *)node)->Port + 1u;
                int superspeed = 0;
                if (!disk_pci[below]) { /* a root port: xHCI's are renumbered (see above) */
                        struct pci_path_xhci_ports caps[8];
                        int n = xhci_protocols(path, caps, 8);
                        if (n < 0)
                                return PCI_PATH_E2BIG;
                        if (n > 0 && !(port = pci_path_xhci_port(caps, (size_t)n, port, &superspeed)))
                                return PCI_PATH_E2BIG;
                }
                return pci_path_add_usb_port(disk_pci, sizeof(disk_pci), port, superspeed);
        }
        default:
                return 0;
        }
}

/* The ESP's device path ends in a hard-drive media node: drop it and what is left names the
 * whole disk, whose BlockIo/DiskIo handle we need for the GPT. Its PCI nodes (and the node below
 * them) are the disk's path, which the initramfs matches to tell this disk from a copy of it
 * (pivot.disk). */
static EFI_STATUS find_boot_disk(EFI_HANDLE esp, struct gpt_io *io) {
        EFI_DEVICE_PATH *path, *copy, *node, *last = NULL, *rest;
        EFI_HANDLE handle;
        EFI_STATUS s;

        path = DevicePathFromHandle(esp);
        if (!path)
                return EFI_NOT_FOUND;
        copy = DuplicateDevicePath(path);
        if (!copy)
                return EFI_OUT_OF_RESOURCES;
        disk_pci[0] = '\0';
        bool pci_ok = true, below_ok = true;
        for (node = copy; !IsDevicePathEnd(node); node = NextDevicePathNode(node)) {
                last = node;
                if (DevicePathType(node) == HARDWARE_DEVICE_PATH && DevicePathSubType(node) == HW_PCI_DP) {
                        const PCI_DEVICE_PATH *pci = (const PCI_DEVICE_PATH *)node;
                        pci_ok = pci_ok && pci_path_add(disk_pci, sizeof(disk_pci), pci->Device,
                                                                 pci->Function) == 0;
                } else if (DevicePathType(node) == MESSAGING_DEVICE_PATH && disk_pci[0])
                        below_ok = below_ok && add_node_below_pci(copy, node) == 0;
        }
        if (!below_ok)
                disk_pci[pci_path_pci_len(disk_pci)] = '\0'; /* the controller alone */
        if (!pci_ok)
                disk_pci[0] = '\0'; /* a path too deep to pass: the initramfs goes by pivot.root */
        if (!last || DevicePathType(last) != MEDIA_DEVICE_PATH ||
            DevicePathSubType(last) != MEDIA_HARDDRIVE_DP) {
                FreePool(copy);
                return EFI_UNSUPPORTED;
        }
        SetDevicePathEndNode(last);

        rest = copy;
        s = BS->LocateDevicePath(&BlockIoProtocol, &rest, &handle);
        /* LocateDevicePath returns the closest match; only an exact one is the disk itself. */
        if (!EFI_ERROR(s) && !IsDevicePathEnd(rest))
                s = EFI_NOT_FOUND;
        FreePool(copy);
        if (EFI_ERROR(s))
                return s;

        s = BS->HandleProtocol(handle, &BlockIoProtocol, (void **)&disk.bio);
        if (EFI_ERROR(s))
                return s;
        s = BS->HandleProtocol(handle, &DiskIoProtocol, (void **)&disk.dio);
        if (EFI_ERROR(s))
                return s;
        if (disk.bio->Media->LogicalPartition || !disk.bio->Media->MediaPresent)
                return EFI_UNSUPPORTED;
        disk.media_id = disk.bio->Media->MediaId;
        disk.block_size = disk.bio->Media->BlockSize;

        io->ctx = &disk;
        io->sector_size = disk.block_size;
        io->n_sectors = disk.bio->Media->LastBlock + 1;
        io->read = disk_read;
        io->write = disk_write;
        io->flush = disk_flush;
        return EFI_SUCCESS;
}

/* --- files on the ESP --- */

static void ascii_to_ucs2(CHAR16 *dst, size_t size, const char *src) {
        size_t i;
        for (i = 0; i + 1 < size && src[i]; i++)
                dst[i] = (CHAR16)(unsigned char)src[i];
        dst[i] = 0;
}

/* \pivot\<slot>\<leaf> */
static void slot_path(CHAR16 *dst, size_t size, const struct slot *s, const char *leaf) {
        char tmp[64];
        size_t n = 0;
        const char *parts[] = {"\\pivot\\", s->name, "\\", leaf};

        for (size_t p = 0; p < sizeof(parts) / sizeof(parts[0]); p++)
                for (const char *c = parts[p]; *c && n + 1 < sizeof(tmp); c++)
                        tmp[n++] = *c;
        tmp[n] = '\0';
        ascii_to_ucs2(dst, size, tmp);
}

/* Reads up to max bytes of a file into buf; *len gets the byte count. EFI_BAD_BUFFER_SIZE
 * when the file is larger than max. */
static EFI_STATUS read_file(const CHAR16 *path, char *buf, UINTN max, UINTN *len) {
        EFI_FILE_HANDLE fh;
        EFI_STATUS s;
        UINTN n, total = 0;
        char probe;

        s = esp_root->Open(esp_root, &fh, (CHAR16 *)path, EFI_FILE_MODE_READ, 0);
        if (EFI_ERROR(s))
                return s;
        do {
                n = max - total;
                s = fh->Read(fh, &n, buf + total);
                total += n;
        } while (!EFI_ERROR(s) && n > 0 && total < max);
        if (!EFI_ERROR(s) && total == max) {
                n = 1;
                if (!EFI_ERROR(fh->Read(fh, &n, &probe)) && n > 0)
                        s = EFI_BAD_BUFFER_SIZE;
        }
        fh->Close(fh);
        *len = total;
        return s;
}

static EFI_STATUS file_check(const CHAR16 *path) {
        EFI_FILE_HANDLE fh;
        EFI_STATUS s = esp_root->Open(esp_root, &fh, (CHAR16 *)path, EFI_FILE_MODE_READ, 0);
        if (!EFI_ERROR(s))
                fh->Close(fh);
        return s;
}

/* --- configuration --- */

static void conf_warning(void *ctx, unsigned line, const char *what, const char *detail) {
        say(L"warning: selector.conf line %d: %a: %a", line, what, detail);
}

static void load_conf(void) {
        UINTN len = 0;
        EFI_STATUS s;

        selector_conf_defaults(&conf);
        s = read_file(CONF_PATH, conf_text, sizeof(conf_text), &len);
        if (s == EFI_NOT_FOUND)
                return; /* no file: defaults */
        if (s == EFI_BAD_BUFFER_SIZE)
                say(L"warning: selector.conf longer than %d bytes; reading only the start",
                    (int)sizeof(conf_text));
        else if (EFI_ERROR(s)) {
                say(L"warning: cannot read selector.conf (%r); using defaults", s);
                return;
        }
        selector_conf_parse(&conf, conf_text, len, conf_warning, NULL);
}

/* --- slots --- */

static struct gpt_io io;
static struct slot slots[SLOT_MAX];
static size_t n_slots;

/* Writes new attributes for a slot's partition. Returns 0 or a GPT error. */
static int store_attrs(const struct slot *s, uint64_t attrs) {
        int r = gpt_entry_set_attrs(&gpt, s->partno - 1, attrs);
        if (r == 0)
                r = gpt_write(&gpt, &io);
        return r;
}

/* A slot whose files are missing or whose kernel failed. A slot on trial is marked bad on
 * disk (no tries, not successful; backup first, as always), so that its failure counts and the
 * next boot does not try it again. A successful slot is the machine's way back, and is marked
 * bad only for files that are not there: any other error (a read that failed once, firmware
 * short of memory, a kernel that would not load) skips it for this boot alone. Marked bad for a
 * passing error, it would leave a failed update as the slot of highest priority, which the
 * fallback then boots at every boot. */
static void mark_bad(struct slot *s, const CHAR16 *why, EFI_STATUS status) {
        int r;

        s->bootable = false;
        if (s->successful && status != EFI_NOT_FOUND) {
                say(L"slot %a: %s (%r); skipping it for this boot (it stays successful)", s->name,
                    why, status);
                return;
        }
        say(L"slot %a: %s (%r); marking it bad (tries=0 ok=0)", s->name, why, status);
        s->tries = 0;
        s->successful = false;
        r = store_attrs(s, slot_attrs_mark_bad(gpt_entry_attrs(&gpt, s->partno - 1)));
        if (r < 0)
                say(L"warning: could not write the GPT (error %d); slot %a stays as it was on disk",
                    r, s->name);
}

/* Reads the slot's cmdline file and checks its initrd and kernel are there, before a try is
 * spent on it. Marks the slot bad and returns false when something is missing. */
static bool slot_files_ready(struct slot *s, UINTN *cmdline_len) {
        static const struct {
                const char *leaf;
                const CHAR16 *missing;
        } files[] = {
                {"cmdline", L"cannot read cmdline"},
                {"initrd", L"initrd missing"},
                {"vmlinuz", L"kernel missing"},
        };
        CHAR16 path[64];
        EFI_STATUS st;

        for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
                slot_path(path, 64, s, files[i].leaf);
                if (i == 0)
                        st = read_file(path, slot_file, SLOT_FILE_MAX, cmdline_len);
                else
                        st = file_check(path);
                if (EFI_ERROR(st)) {
                        mark_bad(s, files[i].missing, st);
                        return false;
                }
        }
        return true;
}

/* LoadImage + StartImage of the slot's kernel with kernel_cmdline16 as its options. Returns
 * only when that failed, with what to report. */
static EFI_STATUS start_kernel(struct slot *s, const CHAR16 **why) {
        CHAR16 path[64];
        EFI_DEVICE_PATH *file_dp;
        EFI_LOADED_IMAGE *info;
        EFI_HANDLE kimage = NULL;
        EFI_STATUS st;

        slot_path(path, 64, s, "vmlinuz");
        file_dp = FileDevicePath(esp_handle, path);
        if (!file_dp) {
                *why = L"cannot build the kernel's device path";
                return EFI_OUT_OF_RESOURCES;
        }
        st = BS->LoadImage(FALSE, self, file_dp, NULL, 0, &kimage);
        FreePool(file_dp);
        if (EFI_ERROR(st)) {
                /* A handle can come back even on failure (a rejected signature). */
                if (kimage)
                        BS->UnloadImage(kimage);
                *why = L"cannot load kernel";
                return st;
        }
        st = BS->HandleProtocol(kimage, &LoadedImageProtocol, (void **)&info);
        if (EFI_ERROR(st)) {
                BS->UnloadImage(kimage);
                *why = L"kernel image has no LoadedImage";
                return st;
        }
        info->LoadOptions = kernel_cmdline16;
        info->LoadOptionsSize = (UINT32)((StrLen(kernel_cmdline16) + 1) * sizeof(CHAR16));

        st = BS->StartImage(kimage, NULL, NULL);
        /* Only here when the kernel's EFI stub gave up (bad initrd, no memory, ...). */
        BS->UnloadImage(kimage);
        *why = L"kernel returned";
        return st;
}

/* Tries to start one slot. Returns only on failure, with the slot marked bad or unbootable. */
static void boot_slot(struct slot *s, const struct slot_choice *choice) {
        char uuid[GPT_GUID_STRING_SIZE];
        struct gpt_guid guid;
        const CHAR16 *why = L"";
        EFI_STATUS st;
        UINTN len = 0;
        int r;

        if (!slot_files_ready(s, &len))
                return;

        gpt_entry_uuid(&gpt, s->partno - 1, &guid);
        gpt_guid_to_string(&guid, uuid);
        r = selector_cmdline_build(kernel_cmdline, sizeof(kernel_cmdline), slot_file, len,
                                   conf.cmdline_extra, conf.console, disk_pci, s->name, uuid);
        if (r < 0) {
                mark_bad(s, r == SELECTOR_E2BIG ? L"command line too long"
                                                : L"cmdline file is not one line of ASCII",
                         EFI_INVALID_PARAMETER);
                return;
        }
        ascii_to_ucs2(kernel_cmdline16, SELECTOR_CMDLINE_MAX, kernel_cmdline);

        /* The summary shows the state as read, before the try below is spent. */
        slot_policy_summary(slots, n_slots, choice, summary, sizeof(summary));
        if (choice->spend_try) {
                r = store_attrs(s, slot_attrs_spend_try(gpt_entry_attrs(&gpt, s->partno - 1)));
                if (r < 0) {
                        /* Booting an untried slot without counting the try could loop for ever
                         * on a kernel that never comes up: let the policy choose again. */
                        say(L"slot %a: cannot spend a try (GPT write error %d); not booting it",
                            s->name, r);
                        s->bootable = false;
                        return;
                }
                s->tries--;
        }
        say(L"%a", summary);
        if (conf.verbose)
                say(L"command line: %a", kernel_cmdline);

        st = start_kernel(s, &why);
        mark_bad(s, why, st);
}

EFI_STATUS efi_main(EFI_HANDLE image, EFI_SYSTEM_TABLE *systab) {
        EFI_LOADED_IMAGE *loaded;
        EFI_STATUS s;
        int r;

        InitializeLib(image, systab);
        self = image;
        selector_conf_defaults(&conf);

        s = BS->HandleProtocol(image, &LoadedImageProtocol, (void **)&loaded);
        if (EFI_ERROR(s))
                give_up(L"no LoadedImage protocol for the selector itself");
        esp_handle = loaded->DeviceHandle;
        esp_root = LibOpenRoot(esp_handle);
        if (!esp_root)
                give_up(L"cannot open the file system the selector was loaded from");
        load_conf();

        s = find_boot_disk(esp_handle, &io);
        if (EFI_ERROR(s)) {
                say(L"cannot find the disk holding the ESP: %r", s);
                give_up(L"no boot disk");
        }

        r = gpt_read(&gpt, &io);
        if (r < 0) {
                say(L"cannot read a valid GPT from the boot disk (error %d)", r);
                give_up(L"no partition table");
        }
        if (!gpt.primary_valid)
                say(L"WARNING: primary GPT damaged; using the backup copy and repairing");
        else if (!gpt.backup_valid)
                say(L"warning: backup GPT damaged or stale; repairing");
        if (gpt_needs_repair(&gpt)) {
                r = gpt_write(&gpt, &io);
                if (r < 0)
                        say(L"warning: GPT repair failed (error %d)", r);
        }

        r = slot_policy_from_gpt(&gpt, slots, SLOT_MAX);
        if (r <= 0)
                give_up(r == 0 ? L"no ROOT-<slot> partitions of the root type"
                               : L"too many root slots");
        n_slots = (size_t)r;

        /* Each failed attempt makes one slot unbootable, so this ends. */
        for (;;) {
                struct slot_choice choice;

                if (slot_policy_choose(slots, n_slots, &choice) < 0) {
                        slot_policy_summary(slots, n_slots, NULL, summary, sizeof(summary));
                        say(L"%a", summary);
                        give_up(L"no slot can be booted");
                }
                if (choice.fallback)
                        say(L"WARNING: no root slot has tries left or is marked successful; "
                            L"booting %a anyway (%a)",
                            slots[choice.index].name, slot_reason_string(choice.reason));
                boot_slot(&slots[choice.index], &choice);
        }
}
