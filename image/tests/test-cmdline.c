/* The initramfs's reading of the kernel command line the selector and the build write. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../initramfs/cmdline.h"
#include "../initramfs/disk.h"
#include "test/test.h"

static const char *full =
        "ro panic=10 quiet pivot.version=1.2.3 pivot.fstype=squashfs "
        "pivot.verity.roothash=d281be5d4fd62e85b65937adbe9627cad2d10044a96a2271e143aeb8236a9d75 "
        "pivot.verity.salt=6ec7 pivot.verity.datablocks=6829 pivot.verity.hashstart=6829 "
        "pivot.watchdog=60 console=ttyS0,115200 initrd=\\pivot\\A\\initrd pivot.slot=A "
        "pivot.root=PARTUUID=29b0b16a-cdf3-458c-9ca9-4e0cbe1a36de\n";

TEST(parses_what_selector_and_build_write) {
        struct boot_args a;
        const char *bad;
        CHECK_EQ(boot_args_parse(full, &a, &bad), 0);
        CHECK_STREQ(a.slot, "A");
        CHECK_STREQ(a.root_partuuid, "29b0b16a-cdf3-458c-9ca9-4e0cbe1a36de");
        CHECK_STREQ(a.verity_salt, "6ec7");
        CHECK_EQ(a.verity_data_blocks, 6829);
        CHECK_EQ(a.verity_hash_start, 6829);
        CHECK_EQ(a.watchdog_sec, 60);
        CHECK_STREQ(a.fstype, "squashfs");
        CHECK_STREQ(a.init, "/sbin/init");
}

TEST(missing_required_argument_is_named) {
        struct boot_args a;
        const char *bad;
        CHECK_EQ(boot_args_parse("ro pivot.slot=A pivot.root=PARTUUID=x", &a, &bad), -EINVAL);
        CHECK_STREQ(bad, "pivot.verity.roothash");
        CHECK_EQ(boot_args_parse("ro quiet", &a, &bad), -EINVAL);
        CHECK_STREQ(bad, "pivot.slot");
}

TEST(bad_values_are_refused) {
        struct boot_args a;
        const char *bad;
        CHECK_EQ(boot_args_parse("pivot.verity.datablocks=12x", &a, &bad), -EINVAL);
        CHECK(bad && strncmp(bad, "pivot.verity.datablocks", 23) == 0);
        CHECK_EQ(boot_args_parse("pivot.root=/dev/vda2", &a, &bad), -EINVAL);
        CHECK_EQ(boot_args_parse("pivot.watchdog=99999", &a, &bad), -EINVAL);
        CHECK_EQ(boot_args_parse("pivot.slot=", &a, &bad), -EINVAL);
        /* A value longer than its field is refused, not cut. */
        char longslot[64] = "pivot.slot=";
        memset(longslot + 11, 'A', 40);
        CHECK_EQ(boot_args_parse(longslot, &a, &bad), -EINVAL);
}

/* Every slot name the selector accepts (up to SLOT_NAME_MAX - 1 characters) boots: a longer
 * limit in the selector than here made such a slot reboot for ever. */
TEST(slot_names_as_long_as_the_selector_takes) {
        struct boot_args a;
        const char *bad;
        char buf[1024];
        char name[SLOT_NAME_MAX];
        memset(name, 'S', sizeof(name) - 1);
        name[sizeof(name) - 1] = '\0';
        snprintf(buf, sizeof(buf), "%s pivot.slot=%s", full, name);
        CHECK_EQ(boot_args_parse(buf, &a, &bad), 0);
        CHECK_STREQ(a.slot, name);
        snprintf(buf, sizeof(buf), "%s pivot.slot=%sS", full, name);
        CHECK_EQ(boot_args_parse(buf, &a, &bad), -EINVAL);
}

TEST(later_argument_wins_and_others_are_ignored) {
        struct boot_args a;
        const char *bad;
        char buf[1024];
        snprintf(buf, sizeof(buf), "%s pivot.init=/bin/cat pivot.unknown=1 pivotx=2", full);
        CHECK_EQ(boot_args_parse(buf, &a, &bad), 0);
        CHECK_STREQ(a.init, "/bin/cat");
}

/* pivot.disk is a hint: kept when it is a PCI path, and never a reason to refuse a boot (a
 * newer selector may name a disk another way). */
TEST(disk_hint_never_fails) {
        struct boot_args a;
        const char *bad;
        char line[1024];
        snprintf(line, sizeof(line), "pivot.disk=pci:1c.0/00.0 %s", full);
        CHECK_EQ(boot_args_parse(line, &a, &bad), 0);
        CHECK_STREQ(a.disk_pci, "1c.0/00.0");
        static const char *const odd[] = { "pivot.disk=nvme:eui.0025", "pivot.disk=", "pivot.disk=pci:",
                                           "pivot.disk=pci:0123456789012345678901234567890123456789"
                                           "0123456789012345678901234567890123456789" };
        for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
                snprintf(line, sizeof(line), "%s %s", odd[i], full);
                CHECK_EQ(boot_args_parse(line, &a, &bad), 0);
                CHECK_STREQ(a.disk_pci, "");
        }
        CHECK_EQ(boot_args_parse(full, &a, &bad), 0);
        CHECK_STREQ(a.disk_pci, "");
}

/* The PCI path of a disk as its sysfs path shows it, in the form the selector writes. */
TEST(disk_pci_path_from_sysfs) {
        char out[64];
        disk_pci_path("/sys/devices/pci0000:00/0000:00:01.0/virtio1/block/vda", out, sizeof(out));
        CHECK_STREQ(out, "01.0");
        disk_pci_path("/sys/devices/pci0000:00/0000:00:1c.4/0000:02:00.0/nvme/nvme0/nvme0n1", out, sizeof(out));
        CHECK_STREQ(out, "1c.4/00.0");
        disk_pci_path("/sys/devices/virtual/block/loop0", out, sizeof(out));
        CHECK_STREQ(out, "");
        char small[8];
        disk_pci_path("/sys/devices/pci0000:00/0000:00:1c.4/0000:02:00.0/x", small, sizeof(small));
        CHECK_STREQ(small, ""); /* too deep for the room: no path rather than half of one */
}

/* Whether pivot.disk names a PCI function Linux sees: a tree shaped like /sys, where
 * bus/pci/devices holds links into devices/. */
TEST(disk_pci_present_follows_the_device_links) {
        char dir[] = "/tmp/test-initramfs-pci.XXXXXX";
        char path[256], target[256];
        CHECK(mkdtemp(dir) != NULL);
        static const char *const functions[] = {
                "pci0000:00/0000:00:01.0",
                "pci0000:00/0000:00:1c.4",
                "pci0000:00/0000:00:1c.4/0000:02:00.0",
        };
        snprintf(path, sizeof(path), "%s/devices", dir);
        CHECK_EQ(mkdir(path, 0755), 0);
        snprintf(path, sizeof(path), "%s/devices/pci0000:00", dir);
        CHECK_EQ(mkdir(path, 0755), 0);
        snprintf(path, sizeof(path), "%s/bus", dir);
        CHECK_EQ(mkdir(path, 0755), 0);
        for (size_t i = 0; i < sizeof(functions) / sizeof(functions[0]); i++) {
                snprintf(path, sizeof(path), "%s/devices/%s", dir, functions[i]);
                CHECK_EQ(mkdir(path, 0755), 0);
                snprintf(target, sizeof(target), "../devices/%s", functions[i]);
                snprintf(path, sizeof(path), "%s/bus/%s", dir, strrchr(functions[i], '/') + 1);
                CHECK_EQ(symlink(target, path), 0);
        }
        snprintf(path, sizeof(path), "%s/bus", dir);
        CHECK(disk_pci_present(path, "01.0"));
        CHECK(disk_pci_present(path, "1c.4/00.0"));
        CHECK(!disk_pci_present(path, "00.0"));      /* behind a bridge, not on the root bus */
        CHECK(!disk_pci_present(path, "1f.2"));      /* a path this machine does not have */
        CHECK(!disk_pci_present(path, "01.0/00.0")); /* nothing behind 01.0 */
        CHECK(disk_pci_present(path, "01.0/ata2"));  /* a SATA port: its controller's PCI part */
        snprintf(path, sizeof(path), "%s/none", dir);
        CHECK(!disk_pci_present(path, "01.0"));      /* no PCI at all */

        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        CHECK_EQ(system(cmd), 0);
}

/* A SATA disk's port comes from sysfs: ata3 is the third port Linux numbered, on whatever
 * controller; its port_no says which port of its own controller it is. */
/* disk_pci_path() of sysfs path `rel` under the fake sysfs `dir`. */
static const char *path_under(const char *dir, const char *rel) {
        static char out[64];
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", dir, rel);
        disk_pci_path(path, out, sizeof(out));
        return out;
}

TEST(disk_pci_path_reads_the_sata_port) {
        char dir[] = "/tmp/test-initramfs-ata.XXXXXX";
        char cmd[512], out[64];
        CHECK(mkdtemp(dir) != NULL);
        snprintf(cmd, sizeof(cmd), "cd '%s' && mkdir -p 0000:00:1f.2/ata3/ata_port/ata3 0000:00:14.0/usb2"
                 " && echo 1 >0000:00:1f.2/ata3/ata_port/ata3/port_no && echo 5000 >0000:00:14.0/usb2/speed",
                 dir);
        CHECK_EQ(system(cmd), 0);
        CHECK_STREQ(path_under(dir, "0000:00:1f.2/ata3/host2/target2:0:0/2:0:0:0/block/sdb"), "1f.2/ata1");
        /* No port_no (another sysfs): the PCI part only. */
        CHECK_STREQ(path_under(dir, "0000:00:1f.2/ata4/host3/target3:0:0/3:0:0:0/block/sdc"), "1f.2");
        /* "ata" before any PCI node is not a port. */
        disk_pci_path("/sys/devices/platform/ata1/host0/block/sda", out, sizeof(out));
        CHECK_STREQ(out, "");
        /* A USB 3 root hub says so by its speed. */
        CHECK_STREQ(path_under(dir, "0000:00:14.0/usb2/2-3/2-3:1.0/host6/target6:0:0/6:0:0:0/block/sdc"),
                    "14.0/ssusb3");
        CHECK_STREQ(path_under(dir, "0000:00:14.0/usb1/1-3/1-3:1.0/host6/target6:0:0/6:0:0:0/block/sdc"),
                    "14.0/usb3");
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        CHECK_EQ(system(cmd), 0);
}

/* An NVMe namespace by its namespace ID, read from sysfs: the number in its name is Linux's
 * own count. The controller's directory ("nvme0") adds nothing. */
TEST(disk_pci_path_reads_the_nvme_namespace) {
        char dir[] = "/tmp/test-initramfs-nvme.XXXXXX";
        char cmd[512];
        CHECK(mkdtemp(dir) != NULL);
        snprintf(cmd, sizeof(cmd), "cd '%s' && mkdir -p 0000:00:04.0/nvme/nvme0/nvme0n1 "
                 "0000:00:04.0/nvme/nvme0/nvme0c0n1 0000:00:04.0/nvme/nvme0/nvme0n3 && "
                 "echo 2 >0000:00:04.0/nvme/nvme0/nvme0n1/nsid && echo 7 >0000:00:04.0/nvme/nvme0/nvme0c0n1/nsid",
                 dir);
        CHECK_EQ(system(cmd), 0);
        CHECK_STREQ(path_under(dir, "0000:00:04.0/nvme/nvme0/nvme0n1"), "04.0/nvme2");
        CHECK_STREQ(path_under(dir, "0000:00:04.0/nvme/nvme0/nvme0c0n1"), "04.0/nvme7"); /* multipath */
        CHECK_STREQ(path_under(dir, "0000:00:04.0/nvme/nvme0/nvme0n3"), "04.0"); /* no nsid file */
        CHECK(disk_pci_matches("04.0/nvme2", "04.0/nvme2"));
        CHECK(!disk_pci_matches("04.0/nvme1", "04.0/nvme2"));
        CHECK(disk_pci_matches("04.0", "04.0/nvme2")); /* a sysfs without nsid */
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        CHECK_EQ(system(cmd), 0);
}

/* virtio-scsi disks by target and LUN, USB disks by their port chain; SCSI addresses of other
 * controllers (a USB stick's, a SAS HBA's) are not the firmware's numbering and add nothing. */
TEST(disk_pci_path_scsi_and_usb) {
        char out[64];
        disk_pci_path("/sys/devices/pci0000:00/0000:00:01.0/virtio0/host0/target0:0:2/0:0:2:0/block/sdb",
                      out, sizeof(out));
        CHECK_STREQ(out, "01.0/scsi2.0");
        disk_pci_path("/sys/devices/pci0000:00/0000:00:01.0/virtio0/host0/target0:1:2/0:1:2:0/block/sdb",
                      out, sizeof(out));
        CHECK_STREQ(out, "01.0"); /* a channel the firmware's Scsi node has no room for */
        disk_pci_path("/sys/devices/pci0000:00/0000:00:01.0/usb2/2-2/2-2:1.0/host7/target7:0:0/7:0:0:0/block/sdb",
                      out, sizeof(out));
        CHECK_STREQ(out, "01.0/usb2");
        disk_pci_path("/sys/devices/pci0000:00/0000:00:14.0/usb1/1-4/1-4.3/1-4.3.1/1-4.3.1:1.0/host6/"
                      "target6:0:0/6:0:0:0/block/sdc", out, sizeof(out));
        CHECK_STREQ(out, "14.0/usb4.3.1");
        disk_pci_path("/sys/devices/pci0000:00/0000:00:03.0/0000:03:00.0/host0/port-0:0/end_device-0:0/"
                      "target0:0:0/0:0:0:0/block/sda", out, sizeof(out));
        CHECK_STREQ(out, "03.0/00.0");
        char small[10];
        disk_pci_path("/sys/devices/pci0000:00/0000:00:14.0/usb1/1-4/1-4.3/1-4.3.1/1-4.3.1:1.0/host6/"
                      "target6:0:0/6:0:0:0/block/sdc", small, sizeof(small));
        CHECK_STREQ(small, "14.0"); /* no room for the whole chain: the controller alone */
}

/* Which disk pivot.disk names: the whole path, or the PCI part when either side has no port. */
TEST(disk_pci_matches_ports_and_older_hints) {
        CHECK(disk_pci_matches("1f.2/ata1", "1f.2/ata1"));
        CHECK(!disk_pci_matches("1f.2/ata3", "1f.2/ata1"));
        CHECK(disk_pci_matches("1f.2/ata3", "1f.2"));  /* a selector that passes no port */
        CHECK(disk_pci_matches("1f.2", "1f.2/ata1"));  /* a sysfs that tells no port */
        CHECK(!disk_pci_matches("1f.3/ata1", "1f.2/ata1"));
        CHECK(!disk_pci_matches("1f.2/ata1", "1f.20"));
        CHECK(disk_pci_matches("01.0", "01.0"));
        CHECK(!disk_pci_matches("01.0/00.0", "01.0"));  /* behind a bridge: another device */
        CHECK(disk_pci_matches("01.0/scsi2.0", "01.0/scsi2.0"));
        CHECK(!disk_pci_matches("01.0/scsi0.0", "01.0/scsi2.0"));
        CHECK(!disk_pci_matches("01.0/usb1", "01.0/usb2"));
        CHECK(!disk_pci_matches("01.0/usb2.1", "01.0/usb2"));  /* behind the hub on port 2 */
        CHECK(disk_pci_matches("03.0/ata1", "03.0/scsi0.0"));  /* two views of one controller */
        CHECK(disk_pci_matches("14.0/ssusb3", "14.0/usb3"));   /* one socket, two protocols */
        CHECK(!disk_pci_matches("14.0/ssusb3", "14.0/ssusb1"));
}
