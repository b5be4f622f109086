#include "cmdline.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static bool copy_value(char *dst, size_t size, const char *value, size_t len) {
        if (len == 0 || len >= size)
                return false;
        memcpy(dst, value, len);
        dst[len] = '\0';
        return true;
}

static bool parse_ull(const char *value, size_t len, unsigned long long *out) {
        char buf[32], *end;
        if (!copy_value(buf, sizeof(buf), value, len))
                return false;
        errno = 0;
        *out = strtoull(buf, &end, 10);
        return errno == 0 && *end == '\0';
}

int boot_args_parse(const char *cmdline, struct boot_args *args, const char **bad) {
        memset(args, 0, sizeof(*args));
        strcpy(args->fstype, "squashfs");
        strcpy(args->init, "/sbin/init");
        *bad = NULL;

        for (const char *p = cmdline; *p;) {
                p += strspn(p, " \t\n");
                size_t len = strcspn(p, " \t\n");
                if (len == 0)
                        break;
                const char *eq = memchr(p, '=', len);
                if (eq && len > 6 && strncmp(p, "pivot.", 6) == 0) {
                        size_t klen = (size_t)(eq - p);
                        const char *v = eq + 1;
                        size_t vlen = len - klen - 1;
                        bool ok = true;
                        unsigned long long n;

#define KEY(k) (klen == strlen(k) && strncmp(p, k, klen) == 0)
                        if (KEY("pivot.slot"))
                                ok = copy_value(args->slot, sizeof(args->slot), v, vlen);
                        else if (KEY("pivot.root")) {
                                ok = vlen > 9 && strncmp(v, "PARTUUID=", 9) == 0 &&
                                     copy_value(args->root_partuuid, sizeof(args->root_partuuid),
                                                v + 9, vlen - 9);
                        } else if (KEY("pivot.disk")) {
                                if (!(vlen > 4 && strncmp(v, "pci:", 4) == 0 &&
                                      copy_value(args->disk_pci, sizeof(args->disk_pci), v + 4, vlen - 4)))
                                        args->disk_pci[0] = '\0';
                        } else if (KEY("pivot.verity.roothash"))
                                ok = copy_value(args->verity_roothash,
                                                sizeof(args->verity_roothash), v, vlen);
                        else if (KEY("pivot.verity.salt"))
                                ok = copy_value(args->verity_salt, sizeof(args->verity_salt), v,
                                                vlen);
                        else if (KEY("pivot.verity.datablocks"))
                                ok = parse_ull(v, vlen, &args->verity_data_blocks);
                        else if (KEY("pivot.verity.hashstart"))
                                ok = parse_ull(v, vlen, &args->verity_hash_start);
                        else if (KEY("pivot.fstype"))
                                ok = copy_value(args->fstype, sizeof(args->fstype), v, vlen);
                        else if (KEY("pivot.init"))
                                ok = copy_value(args->init, sizeof(args->init), v, vlen);
                        else if (KEY("pivot.watchdog")) {
                                ok = parse_ull(v, vlen, &n) && n <= 3600;
                                args->watchdog_sec = (unsigned)n;
                        }
#undef KEY
                        if (!ok) {
                                *bad = p;
                                return -EINVAL;
                        }
                }
                p += len;
        }

        if (!args->slot[0])
                *bad = "pivot.slot";
        else if (!args->root_partuuid[0])
                *bad = "pivot.root";
        else if (!args->verity_roothash[0])
                *bad = "pivot.verity.roothash";
        else if (!args->verity_data_blocks)
                *bad = "pivot.verity.datablocks";
        else if (!args->verity_hash_start)
                *bad = "pivot.verity.hashstart";
        return *bad ? -EINVAL : 0;
}
