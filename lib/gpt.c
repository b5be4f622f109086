/* GPT reader/writer. See gpt.h for the contract; the UEFI specification (chapter "GUID
 * Partition Table Disk Layout") for the format.
 *
 * No libc: this file is compiled into the UEFI boot selector with -nostdinc. Byte copies use the
 * local helpers below, and structures are filled field by field so the compiler has no reason
 * to emit memcpy/memset calls for large objects. */
#include "gpt.h"

#include "crc32.h"
#include "hex.h"

/* On-disk header layout. */
#define HDR_SIGNATURE 0
#define HDR_REVISION 8
#define HDR_SIZE 12
#define HDR_CRC 16
#define HDR_RESERVED 20
#define HDR_MY_LBA 24
#define HDR_ALTERNATE_LBA 32
#define HDR_FIRST_USABLE 40
#define HDR_LAST_USABLE 48
#define HDR_DISK_GUID 56
#define HDR_ENTRIES_LBA 72
#define HDR_N_ENTRIES 80
#define HDR_ENTRY_SIZE 84
#define HDR_ENTRIES_CRC 88
#define HDR_STD_SIZE 92

/* On-disk entry layout. */
#define ENT_TYPE 0
#define ENT_UUID 16
#define ENT_FIRST_LBA 32
#define ENT_LAST_LBA 40
#define ENT_ATTRS 48
#define ENT_NAME 56

#define GPT_REVISION_1_0 0x00010000u

static const uint8_t gpt_signature[8] = {'E', 'F', 'I', ' ', 'P', 'A', 'R', 'T'};

static void mem_copy(void *dst, const void *src, size_t n) {
        uint8_t *d = dst;
        const uint8_t *s = src;
        while (n--)
                *d++ = *s++;
}

static void mem_zero(void *dst, size_t n) {
        /* volatile keeps gcc from turning the loop back into a memset call. */
        volatile uint8_t *d = dst;
        while (n--)
                *d++ = 0;
}

static bool mem_equal(const void *a, const void *b, size_t n) {
        const uint8_t *x = a, *y = b;
        for (size_t i = 0; i < n; i++)
                if (x[i] != y[i])
                        return false;
        return true;
}

static uint16_t get_le16(const uint8_t *p) {
        return (uint16_t)(p[0] | p[1] << 8);
}
static uint32_t get_le32(const uint8_t *p) {
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_le64(const uint8_t *p) {
        return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}
static void put_le16(uint8_t *p, uint16_t v) {
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
}
static void put_le32(uint8_t *p, uint32_t v) {
        for (int i = 0; i < 4; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}
static void put_le64(uint8_t *p, uint64_t v) {
        put_le32(p, (uint32_t)v);
        put_le32(p + 4, (uint32_t)(v >> 32));
}

static void guid_copy(struct gpt_guid *dst, const uint8_t *src) {
        mem_copy(dst->b, src, sizeof(dst->b));
}

static bool io_sane(const struct gpt_io *io) {
        uint32_t ss = io ? io->sector_size : 0;

        if (!io || !io->read || ss < GPT_MIN_SECTOR_SIZE || ss > GPT_MAX_SECTOR_SIZE ||
            (ss & (ss - 1)) != 0)
                return false;
        /* Room for the protective MBR, two headers and two one-sector entry arrays at least. */
        return io->n_sectors >= 6;
}

static uint32_t entries_bytes(const struct gpt_header *h) {
        return h->n_entries * h->entry_size;
}

static uint64_t entries_sectors(const struct gpt_header *h, uint32_t sector_size) {
        return ((uint64_t)entries_bytes(h) + sector_size - 1) / sector_size;
}

/* CRC of a header in a sector buffer, taken with its CRC field as zero. */
static uint32_t header_crc(const uint8_t *sec, uint32_t header_size) {
        static const uint8_t zero[4];
        uint32_t c = crc32_ieee(0, sec, HDR_CRC);
        c = crc32_ieee(c, zero, sizeof(zero));
        return crc32_ieee(c, sec + HDR_RESERVED, header_size - HDR_RESERVED);
}

/* Parses and checks the header in gpt->sector that was read from `lba`. Checks only what the
 * header says about itself and the disk; the entry array CRC is checked by the caller. */
static int parse_header(struct gpt *gpt, const struct gpt_io *io, uint64_t lba,
                        struct gpt_header *h) {
        const uint8_t *sec = gpt->sector;
        uint64_t n = io->n_sectors, ent_sectors, ent_end;

        if (!mem_equal(sec + HDR_SIGNATURE, gpt_signature, sizeof(gpt_signature)))
                return GPT_EBADMSG;
        h->revision = get_le32(sec + HDR_REVISION);
        h->header_size = get_le32(sec + HDR_SIZE);
        if (h->revision >> 16 != 1)
                return GPT_EBADMSG;
        if (h->header_size < HDR_STD_SIZE || h->header_size > GPT_MIN_SECTOR_SIZE)
                return GPT_EBADMSG;
        if (header_crc(sec, h->header_size) != get_le32(sec + HDR_CRC))
                return GPT_EBADMSG;

        h->my_lba = get_le64(sec + HDR_MY_LBA);
        h->alternate_lba = get_le64(sec + HDR_ALTERNATE_LBA);
        h->first_usable_lba = get_le64(sec + HDR_FIRST_USABLE);
        h->last_usable_lba = get_le64(sec + HDR_LAST_USABLE);
        guid_copy(&h->disk_guid, sec + HDR_DISK_GUID);
        h->entries_lba = get_le64(sec + HDR_ENTRIES_LBA);
        h->n_entries = get_le32(sec + HDR_N_ENTRIES);
        h->entry_size = get_le32(sec + HDR_ENTRY_SIZE);
        h->entries_crc = get_le32(sec + HDR_ENTRIES_CRC);

        if (h->my_lba != lba || h->alternate_lba >= n || h->alternate_lba == h->my_lba)
                return GPT_EBADMSG;
        /* Entry size is 128 * 2^k in the spec; accept any multiple of 8 from 128 on. Bound the
         * count before multiplying so the product cannot overflow. */
        if (h->entry_size < GPT_ENTRY_MIN_SIZE || h->entry_size % 8 != 0 ||
            h->entry_size > GPT_ENTRIES_MAX_BYTES || h->n_entries == 0 ||
            h->n_entries > GPT_ENTRIES_MAX_BYTES / h->entry_size)
                return GPT_E2BIG;
        if (h->first_usable_lba < 2 || h->last_usable_lba >= n ||
            h->first_usable_lba > h->last_usable_lba + 1)
                return GPT_EBADMSG;

        ent_sectors = entries_sectors(h, io->sector_size);
        if (h->entries_lba > n || ent_sectors > n - h->entries_lba)
                return GPT_EBADMSG;
        ent_end = h->entries_lba + ent_sectors;
        if (h->my_lba == 1) {
                /* Primary: entries between the header and the usable space; backup beyond it. */
                if (h->entries_lba < 2 || ent_end > h->first_usable_lba ||
                    h->alternate_lba <= h->last_usable_lba)
                        return GPT_EBADMSG;
        } else {
                /* Backup: entries and header both past the usable space, entries first. */
                if (h->alternate_lba != 1 || h->my_lba <= h->last_usable_lba ||
                    h->entries_lba <= h->last_usable_lba || ent_end > h->my_lba)
                        return GPT_EBADMSG;
        }
        return 0;
}

/* Keeps the bytes a larger-than-standard header carries, from the header in gpt->sector. */
static void keep_header_extra(struct gpt *gpt, const struct gpt_header *h) {
        if (h->header_size > HDR_STD_SIZE)
                mem_copy(gpt->hdr_extra, gpt->sector + HDR_STD_SIZE, h->header_size - HDR_STD_SIZE);
}

static int read_header(struct gpt *gpt, const struct gpt_io *io, uint64_t lba,
                       struct gpt_header *h) {
        int r;

        if (lba >= io->n_sectors)
                return GPT_EBADMSG;
        r = io->read(io->ctx, lba, gpt->sector, io->sector_size);
        if (r < 0)
                return r;
        return parse_header(gpt, io, lba, h);
}

/* Reads the entry array a header points to into gpt->entries and checks its CRC. */
static int read_entries(struct gpt *gpt, const struct gpt_io *io, const struct gpt_header *h) {
        uint64_t sectors = entries_sectors(h, io->sector_size);
        int r;

        r = io->read(io->ctx, h->entries_lba, gpt->entries, (size_t)(sectors * io->sector_size));
        if (r < 0)
                return r;
        if (crc32_ieee(0, gpt->entries, entries_bytes(h)) != h->entries_crc)
                return GPT_EBADMSG;
        return 0;
}

/* Checks the CRC of an entry array on disk without disturbing gpt->entries, one sector at a
 * time through the scratch buffer. */
static int check_entries_on_disk(struct gpt *gpt, const struct gpt_io *io,
                                 const struct gpt_header *h) {
        uint32_t left = entries_bytes(h), c = 0;

        for (uint64_t lba = h->entries_lba; left > 0; lba++) {
                uint32_t chunk = left < io->sector_size ? left : io->sector_size;
                int r = io->read(io->ctx, lba, gpt->sector, io->sector_size);
                if (r < 0)
                        return r;
                c = crc32_ieee(c, gpt->sector, chunk);
                left -= chunk;
        }
        return c == h->entries_crc ? 0 : GPT_EBADMSG;
}

/* Whether a backup header describes the same table as a primary header. */
static bool headers_agree(const struct gpt_header *p, const struct gpt_header *b) {
        return p->alternate_lba == b->my_lba && b->alternate_lba == p->my_lba &&
               p->first_usable_lba == b->first_usable_lba &&
               p->last_usable_lba == b->last_usable_lba &&
               gpt_guid_equal(&p->disk_guid, &b->disk_guid) && p->n_entries == b->n_entries &&
               p->entry_size == b->entry_size && p->entries_crc == b->entries_crc &&
               p->header_size == b->header_size;
}

static void header_assign(struct gpt_header *dst, const struct gpt_header *src) {
        dst->revision = src->revision;
        dst->header_size = src->header_size;
        dst->my_lba = src->my_lba;
        dst->alternate_lba = src->alternate_lba;
        dst->first_usable_lba = src->first_usable_lba;
        dst->last_usable_lba = src->last_usable_lba;
        dst->disk_guid = src->disk_guid;
        dst->entries_lba = src->entries_lba;
        dst->n_entries = src->n_entries;
        dst->entry_size = src->entry_size;
        dst->entries_crc = src->entries_crc;
}

#define MBR_PART0 446
#define MBR_TYPE_GPT 0xee

/* The last LBA of the disk a protective MBR in LBA 0 was written for: its 0xEE partition runs
 * from LBA 1 to there. -ENOENT when LBA 0 holds no usable protective MBR. */
static int pmbr_disk_end(struct gpt *gpt, const struct gpt_io *io, uint64_t *ret) {
        const uint8_t *sec = gpt->sector;
        int r = io->read(io->ctx, 0, gpt->sector, io->sector_size);

        if (r < 0)
                return r;
        if (sec[510] != 0x55 || sec[511] != 0xaa)
                return GPT_ENOENT;
        for (int i = 0; i < 4; i++) {
                const uint8_t *p = sec + MBR_PART0 + 16 * i;
                uint32_t size = get_le32(p + 12);
                if (p[4] != MBR_TYPE_GPT || get_le32(p + 8) != 1)
                        continue;
                if (size < 5 || size == 0xffffffffu || size >= io->n_sectors)
                        return GPT_ENOENT;
                *ret = size;
                return 0;
        }
        return GPT_ENOENT;
}

int gpt_read(struct gpt *gpt, const struct gpt_io *io) {
        struct gpt_header ph, bh;
        bool have_ph = false, io_error = false;
        int r;

        if (!gpt || !io_sane(io))
                return GPT_EINVAL;
        gpt->sector_size = io->sector_size;
        gpt->primary_valid = gpt->backup_valid = false;
        gpt->stale_backup_lba = 0;
        gpt->pmbr = GPT_PMBR_KEEP;

        r = read_header(gpt, io, 1, &ph);
        if (r == 0) {
                have_ph = true;
                keep_header_extra(gpt, &ph);
                r = read_entries(gpt, io, &ph);
                gpt->primary_valid = r == 0;
        }
        io_error |= r == GPT_EIO;

        if (gpt->primary_valid) {
                header_assign(&gpt->hdr, &ph);
                gpt->backup_entries_lba = ph.alternate_lba - entries_sectors(&ph, io->sector_size);
                if (read_header(gpt, io, ph.alternate_lba, &bh) == 0 && headers_agree(&ph, &bh)) {
                        gpt->backup_entries_lba = bh.entries_lba;
                        gpt->backup_valid = check_entries_on_disk(gpt, io, &bh) == 0;
                }
                return 0;
        }

        /* Where the backup may be: where the primary header says; the end of the disk; and
         * the end of the disk the image was made for, as the protective MBR records it (an
         * image written to a larger disk whose primary header then got damaged). */
        uint64_t candidates[3];
        size_t n_cand = 0;
        if (have_ph)
                candidates[n_cand++] = ph.alternate_lba;
        candidates[n_cand++] = io->n_sectors - 1;
        r = pmbr_disk_end(gpt, io, &candidates[n_cand]);
        if (r == 0)
                n_cand++;
        io_error |= r == GPT_EIO;

        r = GPT_EBADMSG;
        for (size_t i = 0; i < n_cand && r < 0; i++) {
                bool seen = false;
                for (size_t j = 0; j < i; j++)
                        seen |= candidates[j] == candidates[i];
                if (seen)
                        continue;
                r = read_header(gpt, io, candidates[i], &bh);
                if (r == 0) {
                        keep_header_extra(gpt, &bh);
                        r = read_entries(gpt, io, &bh);
                }
                io_error |= r == GPT_EIO;
        }
        if (r < 0)
                return io_error ? GPT_EIO : GPT_EBADMSG;
        gpt->backup_valid = true;

        /* Present the backup as the primary view. The primary entry array stays where the
         * primary header said if that header was intact (a write cut short in the entries),
         * else where every tool puts it, right after the primary header. */
        header_assign(&gpt->hdr, &bh);
        gpt->hdr.my_lba = 1;
        gpt->hdr.alternate_lba = bh.my_lba;
        gpt->hdr.entries_lba = have_ph && ph.entry_size == bh.entry_size &&
                                               ph.n_entries == bh.n_entries
                                       ? ph.entries_lba
                                       : 2;
        gpt->backup_entries_lba = bh.entries_lba;
        return 0;
}

/* Checks the in-memory table before anything is written, so a bad table never reaches disk. */
static int check_layout(const struct gpt *gpt, const struct gpt_io *io) {
        const struct gpt_header *h = &gpt->hdr;
        uint64_t secs;

        if (!io_sane(io) || !io->write || io->sector_size != gpt->sector_size)
                return GPT_EINVAL;
        if (h->entry_size < GPT_ENTRY_MIN_SIZE || h->entry_size % 8 != 0 ||
            h->entry_size > GPT_ENTRIES_MAX_BYTES || h->n_entries == 0 ||
            h->n_entries > GPT_ENTRIES_MAX_BYTES / h->entry_size)
                return GPT_E2BIG;
        if (h->header_size < HDR_STD_SIZE || h->header_size > GPT_MIN_SECTOR_SIZE ||
            h->header_size > io->sector_size)
                return GPT_EINVAL;
        secs = entries_sectors(h, io->sector_size);
        if (h->alternate_lba >= io->n_sectors || h->entries_lba < 2 ||
            h->entries_lba + secs > h->first_usable_lba ||
            h->first_usable_lba > h->last_usable_lba + 1 ||
            gpt->backup_entries_lba <= h->last_usable_lba ||
            gpt->backup_entries_lba + secs > h->alternate_lba)
                return GPT_ENOSPC;
        return 0;
}

/* Fills gpt->sector with the header for one copy. */
static void build_header(struct gpt *gpt, bool primary) {
        const struct gpt_header *h = &gpt->hdr;
        uint8_t *sec = gpt->sector;

        mem_zero(sec, gpt->sector_size);
        mem_copy(sec + HDR_SIGNATURE, gpt_signature, sizeof(gpt_signature));
        put_le32(sec + HDR_REVISION, h->revision);
        put_le32(sec + HDR_SIZE, h->header_size);
        put_le64(sec + HDR_MY_LBA, primary ? 1 : h->alternate_lba);
        put_le64(sec + HDR_ALTERNATE_LBA, primary ? h->alternate_lba : 1);
        put_le64(sec + HDR_FIRST_USABLE, h->first_usable_lba);
        put_le64(sec + HDR_LAST_USABLE, h->last_usable_lba);
        mem_copy(sec + HDR_DISK_GUID, h->disk_guid.b, sizeof(h->disk_guid.b));
        put_le64(sec + HDR_ENTRIES_LBA, primary ? h->entries_lba : gpt->backup_entries_lba);
        put_le32(sec + HDR_N_ENTRIES, h->n_entries);
        put_le32(sec + HDR_ENTRY_SIZE, h->entry_size);
        put_le32(sec + HDR_ENTRIES_CRC, h->entries_crc);
        if (h->header_size > HDR_STD_SIZE)
                mem_copy(sec + HDR_STD_SIZE, gpt->hdr_extra, h->header_size - HDR_STD_SIZE);
        put_le32(sec + HDR_CRC, header_crc(sec, h->header_size));
}

static int io_flush(const struct gpt_io *io) {
        return io->flush ? io->flush(io->ctx) : 0;
}

/* Writes one complete copy: entry array, then header, then flush. The header goes last so a
 * cut in the middle leaves a header whose entries CRC does not match: an invalid copy, never
 * a valid-looking mix of old and new. */
static int write_copy(struct gpt *gpt, const struct gpt_io *io, bool primary) {
        uint64_t secs = entries_sectors(&gpt->hdr, io->sector_size);
        uint64_t ent_lba = primary ? gpt->hdr.entries_lba : gpt->backup_entries_lba;
        int r;

        r = io->write(io->ctx, ent_lba, gpt->entries, (size_t)(secs * io->sector_size));
        if (r < 0)
                return r;
        build_header(gpt, primary);
        r = io->write(io->ctx, primary ? 1 : gpt->hdr.alternate_lba, gpt->sector, io->sector_size);
        if (r < 0)
                return r;
        return io_flush(io);
}

/* The protective MBR: one partition of type 0xEE from LBA 1 over the whole disk (capped at
 * 2^32 - 1 sectors), so MBR-only tools see the disk as used. It is not part of the GPT's
 * consistency, so it is written after both copies; a cut before it costs nothing. */

static int write_pmbr(struct gpt *gpt, const struct gpt_io *io) {
        uint8_t *sec = gpt->sector, *p = sec + MBR_PART0;
        uint64_t size = io->n_sectors - 1;
        int r;

        if (gpt->pmbr == GPT_PMBR_KEEP)
                return 0;
        r = io->read(io->ctx, 0, sec, io->sector_size);
        if (r < 0)
                return r;
        if (gpt->pmbr == GPT_PMBR_RESIZE) {
                /* Only a plain protective MBR is touched; a hybrid MBR is the owner's business. */
                if (sec[510] != 0x55 || sec[511] != 0xaa || p[4] != MBR_TYPE_GPT ||
                    get_le32(p + 8) != 1)
                        return 0;
        } else {
                /* Keep any boot code in the first 440 bytes; replace the rest. */
                mem_zero(sec + 440, io->sector_size - 440);
                p[1] = 0x00, p[2] = 0x02, p[3] = 0x00; /* CHS of LBA 1 */
                p[4] = MBR_TYPE_GPT;
                p[5] = p[6] = p[7] = 0xff; /* CHS "beyond addressable" */
                put_le32(p + 8, 1);
                sec[510] = 0x55;
                sec[511] = 0xaa;
        }
        put_le32(p + 12, size > 0xffffffffu ? 0xffffffffu : (uint32_t)size);
        r = io->write(io->ctx, 0, sec, io->sector_size);
        if (r < 0)
                return r;
        return io_flush(io);
}

int gpt_write(struct gpt *gpt, const struct gpt_io *io) {
        uint32_t used = entries_bytes(&gpt->hdr);
        uint64_t secs;
        bool primary_first, writing_primary;
        int r;

        r = check_layout(gpt, io);
        if (r < 0)
                return r;

        /* The sector padding after the last entry goes to disk too; keep it zero. */
        secs = entries_sectors(&gpt->hdr, io->sector_size);
        mem_zero(gpt->entries + used, (size_t)(secs * io->sector_size) - used);
        gpt->hdr.entries_crc = crc32_ieee(0, gpt->entries, used);

        /* Whichever copy we read from must stay intact until the other one is complete. Usually
         * that is the primary, so the backup goes first; when only the backup was good, the
         * primary is repaired first. */
        primary_first = !gpt->primary_valid && gpt->backup_valid;

        writing_primary = primary_first;
        r = write_copy(gpt, io, writing_primary);
        if (r < 0)
                goto fail;
        if (writing_primary)
                gpt->primary_valid = true;
        else
                gpt->backup_valid = true;

        writing_primary = !primary_first;
        r = write_copy(gpt, io, writing_primary);
        if (r < 0)
                goto fail;
        gpt->primary_valid = gpt->backup_valid = true;

        /* A backup that moved (the disk grew) leaves its old header behind: erase it, last, so
         * no tool mistakes it for a table. Both new copies are already safe on disk. */
        if (gpt->stale_backup_lba != 0 && gpt->stale_backup_lba != gpt->hdr.alternate_lba &&
            gpt->stale_backup_lba < io->n_sectors) {
                mem_zero(gpt->sector, io->sector_size);
                r = io->write(io->ctx, gpt->stale_backup_lba, gpt->sector, io->sector_size);
                if (r == 0)
                        r = io_flush(io);
                if (r < 0)
                        return r;
        }
        gpt->stale_backup_lba = 0;

        r = write_pmbr(gpt, io);
        if (r < 0)
                return r;
        gpt->pmbr = GPT_PMBR_KEEP;
        return 0;

fail:
        /* We cannot know how much of the copy being written reached the disk; the other one
         * is intact (untouched, or written in full just before). */
        if (writing_primary)
                gpt->primary_valid = false;
        else
                gpt->backup_valid = false;
        return r;
}

int gpt_init_empty(struct gpt *gpt, const struct gpt_io *io, const struct gpt_guid *disk_guid,
                   uint32_t n_entries, uint64_t first_usable_lba) {
        struct gpt_header *h;
        uint64_t secs, mib;

        if (!gpt || !io_sane(io) || !disk_guid)
                return GPT_EINVAL;
        if (n_entries == 0 || n_entries > GPT_ENTRIES_MAX_BYTES / GPT_ENTRY_MIN_SIZE)
                return GPT_E2BIG;

        h = &gpt->hdr;
        h->revision = GPT_REVISION_1_0;
        h->header_size = HDR_STD_SIZE;
        h->n_entries = n_entries;
        h->entry_size = GPT_ENTRY_MIN_SIZE;
        h->my_lba = 1;
        h->entries_lba = 2;
        h->disk_guid = *disk_guid;
        gpt->sector_size = io->sector_size;
        secs = entries_sectors(h, io->sector_size);
        mib = (1024u * 1024u) / io->sector_size;
        h->first_usable_lba = first_usable_lba ? first_usable_lba : mib;
        h->alternate_lba = io->n_sectors - 1;
        gpt->backup_entries_lba = h->alternate_lba - secs;
        h->last_usable_lba = gpt->backup_entries_lba - 1;
        h->entries_crc = 0;
        if (h->first_usable_lba < 2 + secs || gpt->backup_entries_lba < 2 + secs ||
            h->first_usable_lba > h->last_usable_lba + 1)
                return GPT_ENOSPC;
        mem_zero(gpt->entries, sizeof(gpt->entries));
        gpt->primary_valid = gpt->backup_valid = false;
        gpt->stale_backup_lba = 0;
        gpt->pmbr = GPT_PMBR_CREATE;
        return 0;
}

static uint8_t *entry_ptr(const struct gpt *gpt, uint32_t index) {
        return (uint8_t *)gpt->entries + (size_t)index * gpt->hdr.entry_size;
}

bool gpt_entry_used(const struct gpt *gpt, uint32_t index) {
        struct gpt_guid t;

        if (index >= gpt->hdr.n_entries)
                return false;
        gpt_entry_type(gpt, index, &t);
        return !gpt_guid_is_null(&t);
}

/* The getters below return zeros for an out-of-range index rather than read past the array. */
void gpt_entry_type(const struct gpt *gpt, uint32_t index, struct gpt_guid *ret) {
        if (index >= gpt->hdr.n_entries)
                mem_zero(ret->b, sizeof(ret->b));
        else
                guid_copy(ret, entry_ptr(gpt, index) + ENT_TYPE);
}

void gpt_entry_uuid(const struct gpt *gpt, uint32_t index, struct gpt_guid *ret) {
        if (index >= gpt->hdr.n_entries)
                mem_zero(ret->b, sizeof(ret->b));
        else
                guid_copy(ret, entry_ptr(gpt, index) + ENT_UUID);
}

uint64_t gpt_entry_first_lba(const struct gpt *gpt, uint32_t index) {
        return index < gpt->hdr.n_entries ? get_le64(entry_ptr(gpt, index) + ENT_FIRST_LBA) : 0;
}

uint64_t gpt_entry_last_lba(const struct gpt *gpt, uint32_t index) {
        return index < gpt->hdr.n_entries ? get_le64(entry_ptr(gpt, index) + ENT_LAST_LBA) : 0;
}

uint64_t gpt_entry_attrs(const struct gpt *gpt, uint32_t index) {
        return index < gpt->hdr.n_entries ? get_le64(entry_ptr(gpt, index) + ENT_ATTRS) : 0;
}

size_t gpt_entry_name(const struct gpt *gpt, uint32_t index, char *buf, size_t size) {
        const uint8_t *name;
        size_t n = 0;

        if (size == 0)
                return 0;
        if (index < gpt->hdr.n_entries) {
                name = entry_ptr(gpt, index) + ENT_NAME;
                for (; n < GPT_NAME_CHARS && n + 1 < size; n++) {
                        uint16_t c = get_le16(name + 2 * n);
                        if (c == 0)
                                break;
                        buf[n] = c >= 0x20 && c < 0x7f ? (char)c : '?';
                }
        }
        buf[n] = '\0';
        return n;
}

bool gpt_entry_name_eq(const struct gpt *gpt, uint32_t index, const char *ascii) {
        const uint8_t *name;
        size_t n;

        if (index >= gpt->hdr.n_entries)
                return false;
        name = entry_ptr(gpt, index) + ENT_NAME;
        for (n = 0; n < GPT_NAME_CHARS; n++) {
                uint16_t c = get_le16(name + 2 * n);
                if (c != (uint8_t)ascii[n])
                        return false;
                if (c == 0)
                        return true;
        }
        /* All 36 characters used: equal only if the ASCII string ends here too. */
        return ascii[n] == '\0';
}

int gpt_entry_set_attrs(struct gpt *gpt, uint32_t index, uint64_t attrs) {
        if (index >= gpt->hdr.n_entries)
                return GPT_ERANGE;
        put_le64(entry_ptr(gpt, index) + ENT_ATTRS, attrs);
        return 0;
}

/* Whether [first, last] overlaps a used entry other than `skip`. */
static bool overlaps_other(const struct gpt *gpt, uint32_t skip, uint64_t first, uint64_t last) {
        for (uint32_t i = 0; i < gpt->hdr.n_entries; i++) {
                if (i == skip || !gpt_entry_used(gpt, i))
                        continue;
                if (gpt_entry_first_lba(gpt, i) <= last && first <= gpt_entry_last_lba(gpt, i))
                        return true;
        }
        return false;
}

int gpt_entry_set_last_lba(struct gpt *gpt, uint32_t index, uint64_t last_lba) {
        uint64_t first;

        if (index >= gpt->hdr.n_entries)
                return GPT_ERANGE;
        first = gpt_entry_first_lba(gpt, index);
        if (last_lba < first || last_lba > gpt->hdr.last_usable_lba)
                return GPT_ERANGE;
        if (overlaps_other(gpt, index, first, last_lba))
                return GPT_ENOSPC;
        put_le64(entry_ptr(gpt, index) + ENT_LAST_LBA, last_lba);
        return 0;
}

int gpt_entry_set(struct gpt *gpt, uint32_t index, const struct gpt_guid *type,
                  const struct gpt_guid *uuid, uint64_t first_lba, uint64_t last_lba,
                  uint64_t attrs, const char *name) {
        uint8_t *e;
        size_t len = 0;

        if (index >= gpt->hdr.n_entries)
                return GPT_ERANGE;
        if (!type || !uuid || !name || gpt_guid_is_null(type))
                return GPT_EINVAL;
        while (name[len])
                if (len++ >= GPT_NAME_CHARS)
                        return GPT_EINVAL;
        if (first_lba < gpt->hdr.first_usable_lba || last_lba > gpt->hdr.last_usable_lba ||
            first_lba > last_lba)
                return GPT_ERANGE;
        if (overlaps_other(gpt, index, first_lba, last_lba))
                return GPT_ENOSPC;

        e = entry_ptr(gpt, index);
        mem_zero(e, gpt->hdr.entry_size);
        mem_copy(e + ENT_TYPE, type->b, 16);
        mem_copy(e + ENT_UUID, uuid->b, 16);
        put_le64(e + ENT_FIRST_LBA, first_lba);
        put_le64(e + ENT_LAST_LBA, last_lba);
        put_le64(e + ENT_ATTRS, attrs);
        for (size_t i = 0; i < len; i++)
                put_le16(e + ENT_NAME + 2 * i, (uint8_t)name[i]);
        return 0;
}

int gpt_find_by_uuid(const struct gpt *gpt, const struct gpt_guid *uuid) {
        for (uint32_t i = 0; i < gpt->hdr.n_entries; i++) {
                struct gpt_guid u;
                if (!gpt_entry_used(gpt, i))
                        continue;
                gpt_entry_uuid(gpt, i, &u);
                if (gpt_guid_equal(&u, uuid))
                        return (int)i;
        }
        return GPT_ENOENT;
}

int gpt_find_by_name(const struct gpt *gpt, const char *ascii) {
        for (uint32_t i = 0; i < gpt->hdr.n_entries; i++)
                if (gpt_entry_used(gpt, i) && gpt_entry_name_eq(gpt, i, ascii))
                        return (int)i;
        return GPT_ENOENT;
}

int gpt_grow_to_disk_end(struct gpt *gpt, const struct gpt_io *io, int grow_index) {
        struct gpt_header *h = &gpt->hdr;
        uint64_t secs, new_alt, align, end;
        int r, changed = 0;

        if (!io_sane(io) || io->sector_size != gpt->sector_size)
                return GPT_EINVAL;
        if (io->n_sectors - 1 < h->alternate_lba)
                return GPT_ERANGE; /* the disk shrank: nothing sensible to do */
        if (grow_index >= 0 && ((uint32_t)grow_index >= h->n_entries ||
                                !gpt_entry_used(gpt, (uint32_t)grow_index)))
                return GPT_ERANGE;

        /* Moving the backup while the primary is damaged would leave, for a moment, no copy a
         * reader can find (it looks for the backup at the end of the disk, where nothing is
         * yet). Repair in place first. */
        if (gpt_needs_repair(gpt)) {
                r = gpt_write(gpt, io);
                if (r < 0)
                        return r;
        }

        new_alt = io->n_sectors - 1;
        if (new_alt > h->alternate_lba) {
                secs = entries_sectors(h, io->sector_size);
                gpt->stale_backup_lba = h->alternate_lba;
                h->alternate_lba = new_alt;
                gpt->backup_entries_lba = new_alt - secs;
                h->last_usable_lba = gpt->backup_entries_lba - 1;
                gpt->pmbr = GPT_PMBR_RESIZE;
                changed = 1;
        }

        if (grow_index >= 0) {
                align = (1024u * 1024u) / io->sector_size;
                end = (h->last_usable_lba + 1) / align * align - 1;
                if (end > gpt_entry_last_lba(gpt, (uint32_t)grow_index)) {
                        r = gpt_entry_set_last_lba(gpt, (uint32_t)grow_index, end);
                        if (r < 0)
                                return r;
                        changed = 1;
                }
        }
        return changed;
}

bool gpt_guid_equal(const struct gpt_guid *a, const struct gpt_guid *b) {
        return mem_equal(a->b, b->b, sizeof(a->b));
}

bool gpt_guid_is_null(const struct gpt_guid *guid) {
        for (size_t i = 0; i < sizeof(guid->b); i++)
                if (guid->b[i])
                        return false;
        return true;
}

/* Text position of each on-disk byte: the first three groups are little-endian, so their
 * bytes print in reverse; the last two groups print in disk order. */
static const uint8_t guid_text_order[16] = {3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15};

void gpt_guid_to_string(const struct gpt_guid *guid, char buf[GPT_GUID_STRING_SIZE]) {
        size_t o = 0;

        for (size_t i = 0; i < 16; i++) {
                uint8_t v = guid->b[guid_text_order[i]];
                if (i == 4 || i == 6 || i == 8 || i == 10)
                        buf[o++] = '-';
                buf[o++] = hex_digit(v >> 4);
                buf[o++] = hex_digit(v);
        }
        buf[o] = '\0';
}

int gpt_guid_from_string(const char *s, struct gpt_guid *ret) {
        struct gpt_guid g;
        bool braced = s[0] == '{';
        size_t p = braced ? 1 : 0;

        for (size_t i = 0; i < 16; i++) {
                int hi, lo;
                if (i == 4 || i == 6 || i == 8 || i == 10) {
                        if (s[p] != '-')
                                return GPT_EINVAL;
                        p++;
                }
                hi = hex_digit_value(s[p]);
                lo = hi < 0 ? -1 : hex_digit_value(s[p + 1]);
                if (lo < 0)
                        return GPT_EINVAL;
                g.b[guid_text_order[i]] = (uint8_t)(hi << 4 | lo);
                p += 2;
        }
        if (braced && s[p++] != '}')
                return GPT_EINVAL;
        if (s[p] != '\0')
                return GPT_EINVAL;
        *ret = g;
        return 0;
}
