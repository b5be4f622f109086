/* A disk in memory behind a struct gpt_io, for the GPT and slot tests. It can "lose power":
 * with a write budget set, the write that would exceed it stops after the sectors that still
 * fit (each sector lands whole or not at all, as on a real disk that honours its atomic write
 * unit) and every later write or flush fails, until memdisk_power_on(). It can also fail one
 * write and carry on (an I/O error the caller survives): with fail_at set, the write that
 * reaches that many more sectors stops there with -EIO, and later writes work. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gpt.h"

struct memdisk {
        uint8_t *data;
        uint32_t sector_size;
        uint64_t n_sectors;
        long budget; /* sector writes left before the power goes; < 0: unlimited */
        long fail_at; /* sector writes left before one write fails; < 0: none */
        bool dead;
        unsigned sector_writes; /* counts every sector written since power on */
};

static inline int memdisk_read(void *ctx, uint64_t lba, void *buf, size_t bytes) {
        struct memdisk *d = ctx;
        if (bytes % d->sector_size || lba > d->n_sectors ||
            bytes / d->sector_size > d->n_sectors - lba)
                return -EIO;
        memcpy(buf, d->data + lba * d->sector_size, bytes);
        return 0;
}

static inline int memdisk_write(void *ctx, uint64_t lba, const void *buf, size_t bytes) {
        struct memdisk *d = ctx;
        const uint8_t *p = buf;
        if (d->dead)
                return -EIO;
        if (bytes % d->sector_size || lba > d->n_sectors ||
            bytes / d->sector_size > d->n_sectors - lba)
                return -EIO;
        for (size_t off = 0; off < bytes; off += d->sector_size) {
                if (d->budget == 0) {
                        d->dead = true;
                        return -EIO;
                }
                if (d->fail_at == 0) {
                        d->fail_at = -1;
                        return -EIO;
                }
                if (d->fail_at > 0)
                        d->fail_at--;
                if (d->budget > 0)
                        d->budget--;
                memcpy(d->data + lba * d->sector_size + off, p + off, d->sector_size);
                d->sector_writes++;
        }
        return 0;
}

static inline int memdisk_flush(void *ctx) {
        struct memdisk *d = ctx;
        return d->dead ? -EIO : 0;
}

static inline void memdisk_init(struct memdisk *d, uint32_t sector_size, uint64_t n_sectors) {
        d->sector_size = sector_size;
        d->n_sectors = n_sectors;
        d->data = calloc(n_sectors, sector_size);
        if (!d->data)
                abort();
        d->budget = -1;
        d->fail_at = -1;
        d->dead = false;
        d->sector_writes = 0;
}

static inline void memdisk_free(struct memdisk *d) {
        free(d->data);
        d->data = NULL;
}

/* A copy of src, optionally larger (the image written to a bigger disk: zeros after it). */
static inline void memdisk_clone(struct memdisk *dst, const struct memdisk *src,
                                 uint64_t n_sectors) {
        memdisk_init(dst, src->sector_size, n_sectors);
        memcpy(dst->data, src->data,
               (size_t)((n_sectors < src->n_sectors ? n_sectors : src->n_sectors) *
                        src->sector_size));
}

static inline void memdisk_power_on(struct memdisk *d) {
        d->budget = -1;
        d->dead = false;
        d->sector_writes = 0;
}

static inline struct gpt_io memdisk_io(struct memdisk *d) {
        return (struct gpt_io){
                .ctx = d,
                .sector_size = d->sector_size,
                .n_sectors = d->n_sectors,
                .read = memdisk_read,
                .write = memdisk_write,
                .flush = memdisk_flush,
        };
}

static inline uint8_t *memdisk_sector(struct memdisk *d, uint64_t lba) {
        return d->data + lba * d->sector_size;
}
