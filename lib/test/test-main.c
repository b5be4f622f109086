/* Runs every TEST() linked into the executable and prints "N passed, N failed". */
#include "test/test.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>

#define MAX_TESTS 1024

static struct {
        const char *name;
        test_fn fn;
} tests[MAX_TESTS];
static size_t n_tests;
static bool current_failed;
static const char *current_name;

void test_register(const char *name, test_fn fn) {
        if (n_tests == MAX_TESTS) {
                fprintf(stderr, "too many tests; raise MAX_TESTS\n");
                abort();
        }
        tests[n_tests].name = name;
        tests[n_tests].fn = fn;
        n_tests++;
}

void test_fail(const char *file, int line, const char *fmt, ...) {
        va_list ap;
        fprintf(stderr, "  FAIL %s (%s:%d): ", current_name, file, line);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        current_failed = true;
}

int main(int argc, char **argv) {
        const char *only = argc > 1 ? argv[1] : NULL;
        unsigned passed = 0, failed = 0;

        /* Constructors run in link order, reversed on some toolchains: run in name order of
         * registration as seen, which is deterministic for one binary. */
        for (size_t i = 0; i < n_tests; i++) {
                if (only && !strstr(tests[i].name, only))
                        continue;
                current_name = tests[i].name;
                current_failed = false;
                tests[i].fn();
                if (current_failed) {
                        failed++;
                        fprintf(stderr, "not ok %s\n", tests[i].name);
                } else {
                        passed++;
                        printf("ok %s\n", tests[i].name);
                }
        }
        printf("%u passed, %u failed\n", passed, failed);
        return failed ? 1 : 0;
}
