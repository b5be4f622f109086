/* The Omaha response parser, loaded for each parse. See omaha-module.h. */
#include "omaha-module.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

static int module_path(char *buf, size_t size) {
        char exe[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        if (n < 0)
                return log_error_errno(-errno, "Cannot find this program's path (/proc/self/exe): %m");
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash)
                *slash = 0;
        if ((size_t)snprintf(buf, size, "%s/%s", exe, OMAHA_PARSER_MODULE) >= size)
                return log_error_errno(-ENAMETOOLONG, "The Omaha parser's path is too long");
        return 0;
}

static void dlclosep(void **handle) {
        if (*handle)
                dlclose(*handle);
}

int omaha_module_parse_response(const char *xml, size_t len, struct omaha_response *ret) {
        char path[PATH_MAX + sizeof(OMAHA_PARSER_MODULE)];
        int r;

        *ret = (struct omaha_response){};
        r = module_path(path, sizeof(path));
        if (r < 0)
                return -ELIBACC;
        /* Local: nothing else in the program may bind to libxml2 and keep it loaded. */
        _cleanup_(dlclosep) void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!handle)
                return log_error_errno(-ELIBACC, "Cannot load the Omaha parser: %s", dlerror());
        typeof(&omaha_init) init = (typeof(init))dlsym(handle, "omaha_init");
        typeof(&omaha_response_parse) parse = (typeof(parse))dlsym(handle, "omaha_response_parse");
        if (!init || !parse)
                return log_error_errno(-ELIBBAD, "%s is not the Omaha parser", path);
        init();
        return parse(xml, len, ret);
}
