/* pivot-init: the initramfs's /init.
 *
 * Loads the few modules the image needs, arms the watchdog, opens the slot's root through
 * dm-verity, mounts it read-only, mounts STATE at /var (made on first boot, grown to the end
 * of the disk), lays /etc's writable upper layer from STATE over the read-only /etc, and
 * switches root. Any failure reboots the machine: a failed boot must turn into a spent try
 * at the boot selector, never into a shell or a hang. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static bool has_ext4(const char *dev) {
        unsigned char magic[2];
        _cleanup_close_ int fd = open(dev, O_RDONLY | O_CLOEXEC);
        /* ext2/3/4 superblock at 1024, s_magic 0xEF53 at offset 56 within it. */
        return fd >= 0 && pread(fd, magic, 2, 1024 + 56) == 2 && magic[0] == 0x53 &&
               magic[1] == 0xEF;
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

        if (!has_ext4(part)) {
                log_info("making the STATE file system on %s (first boot)", part);
                char *argv[] = {"/sbin/mke2fs", "-q", "-F", "-t", "ext4", "-L", "STATE", "-E",
                                "lazy_itable_init=1,lazy_journal_init=1", dev, NULL};
                if ((r = run_in_newroot(argv)) != 0)
                        die("mke2fs %s failed (status %d)", part, r);
                grown = false; /* made at its full size */
        } else {
                /* Preen: fixes what an unclean shutdown leaves, refuses to guess otherwise. */
                char *argv[] = {"/sbin/e2fsck", "-p", dev, NULL};
                r = run_in_newroot(argv);
                if (r >= 4)
                        log_warning("e2fsck -p %s returned %d", part, r);
        }
        mount_or_die(part, NEWROOT "/var", "ext4", MS_NOSUID | MS_NODEV, NULL);
        if (grown) {
                log_info("growing the STATE file system to the end of the disk");
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

        if (disk_find_partuuid(args.root_partuuid, 30, disk, sizeof(disk), part, sizeof(part)) < 0)
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
