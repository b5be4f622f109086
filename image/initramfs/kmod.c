#include "kmod.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

static int load_one(const char *path) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return log_error_errno(negative_errno(), "Cannot open module %s: %m", path);
        if (syscall(SYS_finit_module, fd, "", 0) == 0 || errno == EEXIST)
                return 0;
        /* A driver for hardware this machine lacks (crc32c-intel without SSE 4.2): the image
         * carries modules for more machines than this one. */
        if (errno == ENODEV || errno == ENXIO) {
                log_debug("Module %s: no such hardware here", path);
                return 0;
        }
        return log_error_errno(negative_errno(), "Cannot load module %s: %m", path);
}

int kmod_load_list(const char *list_path) {
        _cleanup_fclose_ FILE *f = fopen(list_path, "re");
        struct utsname u;
        char line[512], path[1024];

        if (!f)
                return log_error_errno(negative_errno(), "Cannot open %s: %m", list_path);
        if (uname(&u) < 0)
                return log_error_errno(negative_errno(), "uname failed: %m");
        while (fgets(line, sizeof(line), f)) {
                line[strcspn(line, "\n")] = '\0';
                if (!line[0] || line[0] == '#')
                        continue;
                snprintf(path, sizeof(path), "/lib/modules/%s/%s", u.release, line);
                int r = load_one(path);
                if (r < 0)
                        return r;
        }
        return 0;
}
