/* pivot-mkdisk: writes Pivot's GPT disk image onto a plain file with libfdisk, then copies
 * the partition images into place. No loop devices, no mounts, no root needed.
 *
 * Layout (docs/design.md): EFI-SYSTEM, ROOT-A, ROOT-B, STATE (rest of the disk). The disk and
 * partition GUIDs are derived from a seed, so the same inputs give the same bytes. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fdisk-util.h"
#include "gpt.h"
#include "log.h"
#include "util.h"

#define MIB (1024ULL * 1024ULL)
#define SECTOR 512ULL


struct part_spec {
        const char *name;
        const char *type;
        uint64_t size_mib; /* 0: to the end of the disk */
        const char *content; /* image file written at the partition's start, or NULL */
        uint64_t attrs;
};


/* A UUID (version 4 layout) from SHA-256(seed "/" name): stable across builds. */
static int derive_uuid(const char *seed, const char *name, char out[37]) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned md_len;
        char input[512];
        int n = snprintf(input, sizeof(input), "%s/%s", seed, name);

        if (n < 0 || (size_t)n >= sizeof(input))
                return -ENAMETOOLONG;
        if (!EVP_Digest(input, (size_t)n, md, &md_len, EVP_sha256(), NULL))
                return -EIO;
        md[6] = (md[6] & 0x0f) | 0x40;
        md[8] = (md[8] & 0x3f) | 0x80;
        snprintf(out, 37,
                 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", md[0],
                 md[1], md[2], md[3], md[4], md[5], md[6], md[7], md[8], md[9], md[10], md[11],
                 md[12], md[13], md[14], md[15]);
        return 0;
}

static int file_size(const char *path, uint64_t *size) {
        struct stat st;
        if (stat(path, &st) < 0)
                return log_error_errno(negative_errno(), "Cannot read %s: %m", path);
        *size = (uint64_t)st.st_size;
        return 0;
}

/* Copies src into fd at offset, leaving holes where src has zero blocks: a 1 GiB slot holding
 * a 30 MiB root costs 30 MiB on disk. */
static int copy_into(int fd, uint64_t offset, const char *src) {
        _cleanup_close_ int in = open(src, O_RDONLY | O_CLOEXEC);
        _cleanup_free_ char *buf = malloc(MIB);
        static const char zero[4096];

        if (in < 0)
                return log_error_errno(negative_errno(), "Cannot open %s: %m", src);
        if (!buf)
                return log_error_errno(-ENOMEM, "Out of memory");
        for (;;) {
                ssize_t n = read(in, buf, MIB);
                if (n < 0)
                        return log_error_errno(negative_errno(), "Cannot read %s: %m", src);
                if (n == 0)
                        return 0;
                for (ssize_t off = 0; off < n; off += 4096) {
                        size_t len = (size_t)(n - off) < 4096 ? (size_t)(n - off) : 4096;
                        if (memcmp(buf + off, zero, len) == 0)
                                continue;
                        if (pwrite(fd, buf + off, len, (off_t)(offset + (uint64_t)off)) !=
                            (ssize_t)len)
                                return log_error_errno(negative_errno(), "Cannot write: %m");
                }
                offset += (uint64_t)n;
        }
}

static int write_label(const char *path, const char *seed, const struct part_spec *parts,
                       size_t n_parts) {
        _cleanup_(fdisk_unref_contextp) struct fdisk_context *cxt = fdisk_new_context();
        char uuid[37];
        int r;

        if (!cxt)
                return log_error_errno(-ENOMEM, "Out of memory");
        if ((r = fdisk_assign_device(cxt, path, 0)) < 0)
                return log_error_errno(r, "libfdisk cannot open %s: %m", path);
        fdisk_disable_dialogs(cxt, 1);
        if ((r = fdisk_create_disklabel(cxt, "gpt")) < 0)
                return log_error_errno(r, "Cannot create a GPT: %m");
        if ((r = derive_uuid(seed, "disk", uuid)) < 0 ||
            (r = fdisk_set_disklabel_id_from_string(cxt, uuid)) < 0)
                return log_error_errno(r, "Cannot set the disk GUID: %m");

        struct fdisk_label *label = fdisk_get_label(cxt, "gpt");
        uint64_t start = MIB / SECTOR;
        for (size_t i = 0; i < n_parts; i++) {
                _cleanup_(fdisk_unref_partitionp) struct fdisk_partition *pa = fdisk_new_partition();
                struct fdisk_parttype *type = fdisk_label_get_parttype_from_string(label, parts[i].type);

                if (!pa || !type)
                        return log_error_errno(-ENOMEM, "Cannot describe partition %s", parts[i].name);
                fdisk_partition_set_partno(pa, i);
                fdisk_partition_set_start(pa, start);
                if (parts[i].size_mib)
                        fdisk_partition_set_size(pa, parts[i].size_mib * MIB / SECTOR);
                else
                        fdisk_partition_end_follow_default(pa, 1);
                fdisk_partition_set_type(pa, type);
                fdisk_unref_parttype(type);
                if ((r = fdisk_partition_set_name(pa, parts[i].name)) < 0)
                        return log_error_errno(r, "Cannot name partition %s: %m", parts[i].name);
                if ((r = derive_uuid(seed, parts[i].name, uuid)) < 0 ||
                    (r = fdisk_partition_set_uuid(pa, uuid)) < 0)
                        return log_error_errno(r, "Cannot set the GUID of %s: %m", parts[i].name);
                if ((r = fdisk_add_partition(cxt, pa, NULL)) < 0)
                        return log_error_errno(r, "Cannot add partition %s: %m", parts[i].name);
                if (parts[i].attrs &&
                    (r = fdisk_gpt_set_partition_attrs(cxt, i, parts[i].attrs)) < 0)
                        return log_error_errno(r, "Cannot set attributes of %s: %m", parts[i].name);
                start += parts[i].size_mib * MIB / SECTOR;
        }
        if ((r = fdisk_write_disklabel(cxt)) < 0)
                return log_error_errno(r, "Cannot write the GPT to %s: %m", path);
        if ((r = fdisk_deassign_device(cxt, 0)) < 0)
                return log_error_errno(r, "Cannot close %s: %m", path);
        return 0;
}

static void usage(FILE *f) {
        fprintf(f,
                "Usage: pivot-mkdisk --output FILE --esp FILE --root FILE [options]\n"
                "\n"
                "Writes a Pivot GPT disk image: EFI-SYSTEM, ROOT-A, ROOT-B, STATE.\n"
                "\n"
                "  -o, --output FILE      disk image to write (replaced)\n"
                "      --esp FILE         vfat image for EFI-SYSTEM\n"
                "      --root FILE        root image (file system + dm-verity tree) for ROOT-A\n"
                "      --root-b FILE      root image for ROOT-B (default: the same as ROOT-A)\n"
                "      --seed TEXT        seed the disk and partition GUIDs derive from\n"
                "      --esp-size MIB     default 256\n"
                "      --slot-size MIB    size of ROOT-A and ROOT-B, default 1024\n"
                "      --state-size MIB   initial STATE size (grown on first boot), default 64\n"
                "  -h, --help             this text\n"
                "\n"
                "ROOT-A gets priority 2 and ROOT-B priority 1, both successful: A boots.\n"
                "Exit status: 0 written, 1 error, 2 bad usage.\n");
}

static int parse_mib(const char *s, uint64_t *out) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || *end || v == 0 || v > 1024ULL * 1024ULL)
                return -EINVAL;
        *out = v;
        return 0;
}

int main(int argc, char **argv) {
        const char *output = NULL, *esp = NULL, *root_a = NULL, *root_b = NULL,
                   *seed = "pivot";
        uint64_t esp_mib = 256, slot_mib = 1024, state_mib = 64;
        static const struct option options[] = {
                {"output", required_argument, NULL, 'o'}, {"esp", required_argument, NULL, 'e'},
                {"root", required_argument, NULL, 'a'},   {"root-b", required_argument, NULL, 'b'},
                {"seed", required_argument, NULL, 's'},   {"esp-size", required_argument, NULL, 'E'},
                {"slot-size", required_argument, NULL, 'S'},
                {"state-size", required_argument, NULL, 'T'},
                {"help", no_argument, NULL, 'h'},         {0},
        };
        int c, r;

        log_set_program("pivot-mkdisk");
        while ((c = getopt_long(argc, argv, "o:h", options, NULL)) >= 0) {
                switch (c) {
                case 'o': output = optarg; break;
                case 'e': esp = optarg; break;
                case 'a': root_a = optarg; break;
                case 'b': root_b = optarg; break;
                case 's': seed = optarg; break;
                case 'E': r = parse_mib(optarg, &esp_mib); goto check;
                case 'S': r = parse_mib(optarg, &slot_mib); goto check;
                case 'T': r = parse_mib(optarg, &state_mib);
                check:
                        if (r < 0) {
                                log_error("bad size '%s': a whole number of MiB", optarg);
                                return 2;
                        }
                        break;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        }
        if (!output || !esp || !root_a || optind != argc) {
                usage(stderr);
                return 2;
        }
        if (!root_b)
                root_b = root_a;

        const struct part_spec parts[] = {
                {"EFI-SYSTEM", FDISK_TYPE_ESP, esp_mib, esp, 0},
                {"ROOT-A", FDISK_TYPE_ROOT_X86_64, slot_mib, root_a, gpt_attr_set_slot(0, 2, 0, true)},
                {"ROOT-B", FDISK_TYPE_ROOT_X86_64, slot_mib, root_b, gpt_attr_set_slot(0, 1, 0, true)},
                {"STATE", FDISK_TYPE_LINUX_DATA, 0, NULL, 0},
        };
        const uint64_t part_mib[] = {esp_mib, slot_mib, slot_mib};
        for (size_t i = 0; i < 3; i++) {
                uint64_t size = 0;
                if (file_size(parts[i].content, &size) < 0)
                        return 1;
                if (size > part_mib[i] * MIB) {
                        log_error("%s is %llu MiB, larger than its partition %s (%llu MiB)",
                                  parts[i].content, (unsigned long long)((size + MIB - 1) / MIB),
                                  parts[i].name, (unsigned long long)part_mib[i]);
                        return 1;
                }
        }

        /* 1 MiB for the primary GPT and alignment, 1 MiB at the end for the backup GPT. */
        uint64_t total = (1 + esp_mib + 2 * slot_mib + state_mib + 1) * MIB;
        _cleanup_close_ int fd = open(output, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
                return log_error_errno(negative_errno(), "Cannot create %s: %m", output), 1;
        if (ftruncate(fd, (off_t)total) < 0)
                return log_error_errno(negative_errno(), "Cannot size %s: %m", output), 1;
        if (write_label(output, seed, parts, ELEMENTSOF(parts)) < 0)
                return 1;

        uint64_t offset = MIB;
        for (size_t i = 0; i < 3; i++) {
                if (copy_into(fd, offset, parts[i].content) < 0)
                        return 1;
                offset += part_mib[i] * MIB;
        }
        if (fsync(fd) < 0)
                return log_error_errno(negative_errno(), "Cannot sync %s: %m", output), 1;
        return 0;
}
