/* Runs a libFuzzer target over every file of a corpus directory, without libFuzzer: the
 * ordinary-test form of a fuzz target. A file passes when the target returns without a
 * sanitizer report or abort (either ends the process, and run-suites counts that).
 *
 *   fuzz-omaha [DIR]    DIR defaults to the corpus compiled in as FUZZ_CORPUS_DIR
 * Exit: 0 all passed, 1 a file could not be read, 2 usage error. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#ifndef FUZZ_CORPUS_DIR
#define FUZZ_CORPUS_DIR "."
#endif

static int filter(const struct dirent *d) {
        return d->d_name[0] != '.';
}

int main(int argc, char **argv) {
        const char *dir = argc > 1 ? argv[1] : FUZZ_CORPUS_DIR;
        struct dirent **names = NULL;
        unsigned passed = 0, failed = 0;

        if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
                printf("usage: %s [CORPUS-DIR]\nRuns the fuzz target over every file of CORPUS-DIR "
                       "(default %s).\n", argv[0], FUZZ_CORPUS_DIR);
                return 0;
        }
        int n = scandir(dir, &names, filter, alphasort);
        if (n < 0) {
                fprintf(stderr, "cannot read corpus %s: %m\n", dir);
                return 2;
        }
        for (int i = 0; i < n; i++) {
                char path[4096];
                snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
                _cleanup_fclose_ FILE *f = fopen(path, "rb");
                _cleanup_free_ uint8_t *data = NULL;
                size_t len = 0, size = 0;
                if (!f) {
                        fprintf(stderr, "not ok %s: %m\n", names[i]->d_name);
                        failed++;
                        free(names[i]);
                        continue;
                }
                for (;;) {
                        if (len == size) {
                                size = size ? size * 2 : 4096;
                                uint8_t *p = realloc(data, size);
                                if (!p)
                                        abort();
                                data = p;
                        }
                        size_t got = fread(data + len, 1, size - len, f);
                        if (!got)
                                break;
                        len += got;
                }
                LLVMFuzzerTestOneInput(data, len);
                printf("ok %s\n", names[i]->d_name);
                passed++;
                free(names[i]);
        }
        free(names);
        printf("%u passed, %u failed\n", passed, failed);
        return failed ? 1 : 0;
}
