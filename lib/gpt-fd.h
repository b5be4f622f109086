/* lib/gpt on a file descriptor (hosted programs: the initramfs, the agent). */
#pragma once

#include <stdint.h>

#include "gpt.h"

struct gpt_fd {
        int fd;
        uint32_t sector_size;
};

/* Fills *ret to read and write the disk behind fd through f (which must outlive *ret): a block
 * device with its logical sector size and size, or a disk image file (512-byte sectors). Returns
 * 0 or a negative errno. */
int gpt_fd_io(struct gpt_fd *f, int fd, struct gpt_io *ret);
