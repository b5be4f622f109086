/* dm-verity through the device-mapper ioctls directly: the initramfs needs nothing more
 * than three ioctls, and no libdevmapper/libcryptsetup. */
#include "dm-verity.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/dm-ioctl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define DM_BUF_SIZE 16384

static void dm_init(struct dm_ioctl *io, const char *name, size_t size) {
        memset(io, 0, size);
        io->version[0] = DM_VERSION_MAJOR;
        io->version[1] = 0;
        io->version[2] = 0;
        io->data_size = (uint32_t)size;
        io->data_start = sizeof(struct dm_ioctl);
        snprintf(io->name, sizeof(io->name), "%s", name);
}

int dm_verity_create(const char *name, const char *data_dev, const struct boot_args *args,
                     char *node, size_t node_size) {
        static _Alignas(8) char buf[DM_BUF_SIZE];
        struct dm_ioctl *io = (struct dm_ioctl *)buf;
        struct stat st;
        _cleanup_close_ int ctl = -1;

        if (stat(data_dev, &st) < 0)
                return log_error_errno(negative_errno(), "Cannot stat %s: %m", data_dev);

        for (int i = 0; i < 50 && ctl < 0; i++) {
                ctl = open("/dev/mapper/control", O_RDWR | O_CLOEXEC);
                if (ctl < 0)
                        usleep(100 * 1000);
        }
        if (ctl < 0)
                return log_error_errno(negative_errno(), "Cannot open /dev/mapper/control: %m");

        dm_init(io, name, sizeof(struct dm_ioctl));
        if (ioctl(ctl, DM_DEV_CREATE, io) < 0)
                return log_error_errno(negative_errno(), "DM_DEV_CREATE %s: %m", name);

        dm_init(io, name, sizeof(buf));
        io->flags = DM_READONLY_FLAG;
        io->target_count = 1;
        struct dm_target_spec *spec = (struct dm_target_spec *)(buf + sizeof(struct dm_ioctl));
        spec->sector_start = 0;
        spec->length = args->verity_data_blocks * 8; /* 4 KiB blocks in 512-byte sectors */
        snprintf(spec->target_type, sizeof(spec->target_type), "verity");
        char *params = (char *)(spec + 1);
        size_t room = sizeof(buf) - (size_t)(params - buf);
        int n = snprintf(params, room, "1 %u:%u %u:%u 4096 4096 %llu %llu sha256 %s %s",
                         major(st.st_rdev), minor(st.st_rdev), major(st.st_rdev),
                         minor(st.st_rdev), args->verity_data_blocks, args->verity_hash_start,
                         args->verity_roothash, args->verity_salt[0] ? args->verity_salt : "-");
        if (n < 0 || (size_t)n >= room)
                return log_error_errno(-ENAMETOOLONG, "dm-verity table too long");
        /* The kernel expects the next spec (there is none) at an 8-byte aligned offset. */
        spec->next = 0;
        if (ioctl(ctl, DM_TABLE_LOAD, io) < 0)
                return log_error_errno(negative_errno(), "Loading the dm-verity table failed: %m");

        dm_init(io, name, sizeof(struct dm_ioctl));
        if (ioctl(ctl, DM_DEV_SUSPEND, io) < 0) /* without DM_SUSPEND_FLAG: resume */
                return log_error_errno(negative_errno(), "Resuming %s failed: %m", name);

        snprintf(node, node_size, "/dev/dm-%u", minor(io->dev));
        for (int i = 0; i < 50 && access(node, F_OK) < 0; i++)
                usleep(100 * 1000);
        if (access(node, F_OK) < 0)
                return log_error_errno(negative_errno(), "%s did not appear: %m", node);
        return 0;
}
