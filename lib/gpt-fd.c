#include "gpt-fd.h"

#include <errno.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

static int fd_read(void *ctx, uint64_t lba, void *buf, size_t bytes) {
        const struct gpt_fd *f = ctx;
        ssize_t n = pread(f->fd, buf, bytes, (off_t)(lba * f->sector_size));
        return n == (ssize_t)bytes ? 0 : n < 0 ? negative_errno() : -EIO;
}

static int fd_write(void *ctx, uint64_t lba, const void *buf, size_t bytes) {
        const struct gpt_fd *f = ctx;
        ssize_t n = pwrite(f->fd, buf, bytes, (off_t)(lba * f->sector_size));
        return n == (ssize_t)bytes ? 0 : n < 0 ? negative_errno() : -EIO;
}

static int fd_flush(void *ctx) {
        const struct gpt_fd *f = ctx;
        return fsync(f->fd) < 0 ? negative_errno() : 0;
}

int gpt_fd_io(struct gpt_fd *f, int fd, struct gpt_io *ret) {
        struct stat st;
        uint64_t bytes;
        int ss = 512;

        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (S_ISBLK(st.st_mode)) {
                if (ioctl(fd, BLKGETSIZE64, &bytes) < 0 || ioctl(fd, BLKSSZGET, &ss) < 0)
                        return negative_errno();
        } else
                bytes = (uint64_t)st.st_size;
        if (ss <= 0)
                return -EINVAL;
        *f = (struct gpt_fd){.fd = fd, .sector_size = (uint32_t)ss};
        *ret = (struct gpt_io){.ctx = f, .sector_size = (uint32_t)ss,
                               .n_sectors = bytes / (uint64_t)ss, .read = fd_read,
                               .write = fd_write, .flush = fd_flush};
        return 0;
}
