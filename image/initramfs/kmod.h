#pragma once
/* Loads the kernel modules listed, one path per line relative to /lib/modules/<version>/,
 * in the order given (the build writes them dependencies first). A module that is already
 * loaded or built in is fine. Returns 0 or the first negative errno. */
int kmod_load_list(const char *list_path);
