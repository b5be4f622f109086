/* pivot-init: the initramfs's /init.
 *
 * Loads the few modules the image needs, arms the watchdog, opens the slot's root through
 * dm-verity, mounts it read-only, mounts STATE at /var (made on first boot, grown to the end
 * of the disk), lays /etc's writable upper layer from STATE over the read-only /etc, and
 * switches root. Any failure reboots the machine: a failed boot must turn into a spent try
 * at the boot selector, never into a shell or a hang. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cmdline.h"
#include "disk.h"
#include "dm-verity.h"
#include "hex.h"
#include "kmod.h"
#include "log.h"
#include "util.h"
#include "watchdog.h"

#define NEWROOT "/newroot"
#define STATE_DIR NEWROOT "/var/lib/pivot"

static _Noreturn void die(const char *fmt, ...) {
        va_list ap;
        fprintf(stderr, "pivot-init: FATAL: ");
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, "; rebooting\n");
        sync();
        sleep(2); /* let the console drain */
        reboot(RB_AUTOBOOT);
        for (;;) /* reboot() only returns without privilege; as PID 1 the kernel panics */
                pause();
}

static void mount_or_die(const char *src, const char *dst, const char *type, unsigned long flags,
                         const char *data) {
        mkdir(dst, 0755);
        if (mount(src, dst, type, flags, data) < 0)
                die("cannot mount %s on %s (%s): %m", src, dst, type);
}

/* Runs a program of the new root (mke2fs, e2fsck, resize2fs): the initramfs stays small by
 * not carrying copies of them. */
static int run_in_newroot(char *const argv[]) {
        pid_t pid = fork();
        if (pid < 0)
                return negative_errno();
        if (pid == 0) {
                if (chroot(NEWROOT) < 0 || chdir("/") < 0)
                        _exit(127);
                execv(argv[0], argv);
                _exit(127);
        }
        int status;
        if (waitpid(pid, &status, 0) < 0)
                return negative_errno();
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* What the start of STATE holds: an ext4 superblock, nothing (a new machine: the image ships
 * STATE blank), or something else: a damaged superblock, or what the disk held before the
 * image was written to it. */
enum state_content { STATE_EXT4, STATE_BLANK, STATE_OTHER };

struct state_probe {
        enum state_content content;
        uint64_t fs_bytes;    /* STATE_EXT4: the file system's size */
        uint64_t block_bytes; /* STATE_EXT4: its block size */
        uint64_t dev_bytes;   /* the partition's size */
};

static uint32_t le32(const unsigned char *p) {
        uint32_t v;
        memcpy(&v, p, sizeof(v));
        return le32toh(v);
}

static bool ext4_magic(const unsigned char *sb) {
        return sb[56] == 0x53 && sb[57] == 0xEF;
}

static int probe_state(const char *dev, struct state_probe *ret) {
        static unsigned char buf[64 * 1024];
        _cleanup_close_ int fd = open(dev, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        *ret = (struct state_probe){.content = STATE_BLANK};
        if (ioctl(fd, BLKGETSIZE64, &ret->dev_bytes) < 0)
                return negative_errno();
        ssize_t n = pread(fd, buf, sizeof(buf), 0);
        if (n < 0)
                return negative_errno();
        if (n != (ssize_t)sizeof(buf))
                return -EIO;
        /* ext2/3/4 superblock at 1024: s_blocks_count_lo at 4, s_log_block_size at 24, s_magic
         * 0xEF53 at 56, s_feature_incompat at 96 (64bit: 0x80), s_blocks_count_hi at 336. */
        const unsigned char *sb = buf + 1024;
        if (ext4_magic(sb)) {
                uint64_t blocks = le32(sb + 4);
                if (le32(sb + 96) & 0x80)
                        blocks |= (uint64_t)le32(sb + 336) << 32;
                ret->content = STATE_EXT4;
                ret->block_bytes = 1024ull << (le32(sb + 24) & 15);
                ret->fs_bytes = blocks * ret->block_bytes;
                return 0;
        }
        for (size_t i = 0; i < sizeof(buf); i++)
                if (buf[i]) {
                        ret->content = STATE_OTHER;
                        return 0;
                }
        /* Blank at the start. A file system whose start was wiped still has the backup
         * superblocks of its first group after the first: 1, 2 and 4 KiB blocks. */
        static const uint64_t backups[] = {8193ull * 1024, 16384ull * 2048, 32768ull * 4096};
        for (size_t i = 0; i < sizeof(backups) / sizeof(backups[0]); i++) {
                if (backups[i] + 1024 > ret->dev_bytes)
                        continue;
                n = pread(fd, buf, 1024, (off_t)backups[i]);
                if (n != 1024)
                        return n < 0 ? negative_errno() : -EIO;
                if (ext4_magic(buf)) {
                        ret->content = STATE_OTHER;
                        return 0;
                }
        }
        return 0;
}

static void ensure_machine_id(void) {
        const char *path = STATE_DIR "/machine-id";
        unsigned char raw[16];
        char hex[34];

        if (access(path, F_OK) == 0)
                return;
        if (getrandom(raw, sizeof(raw), 0) != sizeof(raw))
                die("no randomness for the machine id: %m");
        hex_encode(raw, sizeof(raw), hex);
        hex[32] = '\n';
        hex[33] = '\0';
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
        if (fd < 0 || write(fd, hex, 33) != 33 || fsync(fd) < 0)
                die("cannot write %s: %m", path);
}

static void mount_state(const char *disk) {
        char part[64];
        bool grown = false;
        int r;

        r = disk_find_and_grow(disk, "STATE", true, part, sizeof(part), &grown);
        if (r < 0)
                die("no STATE partition on %s", disk);
        char *dev = part; /* the same name inside the new root, which has its own /dev */

        /* A read error says nothing about what STATE holds: formatting then could wipe a good
         * file system over a passing fault. Better to reboot and read again. */
        struct state_probe st;
        r = probe_state(part, &st);
        if (r < 0)
                die("cannot read STATE %s: %s", part, strerror(-r));
        if (st.content == STATE_OTHER) {
                /* A damaged primary superblock: e2fsck finds a backup copy and repairs from it
                 * (unattended: -y). The machine id, /etc and the agent's records are kept. */
                log_warning("STATE %s has no ext4 superblock; trying to repair it", part);
                char *argv[] = {"/sbin/e2fsck", "-y", dev, NULL};
                r = run_in_newroot(argv);
                if (r < 4 && probe_state(part, &st) == 0 && st.content == STATE_EXT4)
                        log_info("STATE %s repaired (e2fsck returned %d)", part, r);
                else
                        log_warning("STATE %s cannot be repaired (e2fsck returned %d): making a new "
                                    "file system, its contents are lost", part, r);
        }
        if (st.content != STATE_EXT4) {
                log_info("making the STATE file system on %s%s", part,
                         st.content == STATE_BLANK ? " (first boot)" : "");
                char *argv[] = {"/sbin/mke2fs", "-q", "-F", "-t", "ext4", "-L", "STATE", "-E",
                                "lazy_itable_init=1,lazy_journal_init=1", dev, NULL};
                if ((r = run_in_newroot(argv)) != 0)
                        die("mke2fs %s failed (status %d)", part, r);
        } else {
                /* Preen: fixes what an unclean shutdown leaves, refuses to guess otherwise. */
                char *argv[] = {"/sbin/e2fsck", "-p", dev, NULL};
                r = run_in_newroot(argv);
                if (r >= 4)
                        log_warning("e2fsck -p %s returned %d", part, r);
        }
        mount_or_die(part, NEWROOT "/var", "ext4", MS_NOSUID | MS_NODEV, NULL);
        /* Grown whenever it is smaller than its partition, not only at the boot that grew the
         * partition: a power cut or a failure between the two would leave it small for good. */
        if (st.content == STATE_EXT4 && st.fs_bytes + st.block_bytes <= st.dev_bytes) {
                log_info("growing the STATE file system to the end of its partition%s",
                         grown ? " (grown to the end of the disk)" : "");
                char *argv[] = {"/sbin/resize2fs", dev, NULL};
                if ((r = run_in_newroot(argv)) != 0)
                        log_warning("resize2fs %s returned %d; STATE keeps its size", part, r);
        }

        if (mkdir(NEWROOT "/var/lib", 0755) < 0 && errno != EEXIST)
                die("mkdir /var/lib: %m");
        mkdir(STATE_DIR, 0755);
        mkdir(STATE_DIR "/etc", 0755);
        mkdir(STATE_DIR "/etc/upper", 0755);
        mkdir(STATE_DIR "/etc/work", 0755);
        ensure_machine_id();
        mount_or_die("overlay", NEWROOT "/etc", "overlay", MS_NOSUID | MS_NODEV,
                     "lowerdir=" NEWROOT "/etc,upperdir=" STATE_DIR "/etc/upper,workdir=" STATE_DIR
                     "/etc/work");
}

static char *read_cmdline(void) {
        static char buf[4096];
        _cleanup_close_ int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
        ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
        if (n < 0)
                die("cannot read /proc/cmdline: %m");
        buf[n] = '\0';
        return buf;
}

int main(void) {
        struct boot_args args;
        const char *bad;
        char disk[64], part[64], root_dev[64];

        log_set_program("pivot-init");
        mount_or_die("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
        mount_or_die("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
        mount_or_die("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");

        if (boot_args_parse(read_cmdline(), &args, &bad) < 0)
                die("bad or missing kernel argument: %.40s", bad);

        if (kmod_load_list("/lib/modules/load.list") < 0)
                die("cannot load the kernel modules");

        /* A machine without a watchdog still boots: the try is spent either way, only a hang
         * would go unnoticed. */
        if (args.watchdog_sec && watchdog_arm(args.watchdog_sec) < 0)
                log_warning("booting without a watchdog");

        if (disk_find_partuuid(args.root_partuuid, args.disk_pci, 30, disk, sizeof(disk), part, sizeof(part)) < 0)
                die("root partition PARTUUID=%s not found", args.root_partuuid);
        if (dm_verity_create("root", part, &args, root_dev, sizeof(root_dev)) < 0)
                die("cannot set up dm-verity on %s", part);
        mount_or_die(root_dev, NEWROOT, args.fstype, MS_RDONLY | MS_NODEV, NULL);

        /* The new root gets its own view of devtmpfs, proc and sysfs now, so that programs
         * run from it (mke2fs) see the devices; the initramfs's mounts are detached at the
         * switch. */
        mount_or_die("devtmpfs", NEWROOT "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
        mount_or_die("proc", NEWROOT "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
        mount_or_die("sysfs", NEWROOT "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);

        mount_state(disk);

        log_info("slot %s: root %s on %s, switching root", args.slot, root_dev, part);
        umount2("/dev", MNT_DETACH);
        umount2("/proc", MNT_DETACH);
        umount2("/sys", MNT_DETACH);
        if (chdir(NEWROOT) < 0 || mount(".", "/", NULL, MS_MOVE, NULL) < 0 || chroot(".") < 0 ||
            chdir("/") < 0)
                die("cannot switch root: %m");
        execl(args.init, args.init, (char *)NULL);
        die("cannot start %s: %m", args.init);
}
