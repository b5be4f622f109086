/* A small unit-test harness.
 *
 *   TEST(parses_empty_header) { CHECK(parse("") == -EINVAL); }
 *
 * Tests register themselves at load time; lib/test/test-main.c runs them all and ends with
 * the line "N passed, N failed". A test fails when any CHECK in it fails; it keeps running
 * after a failed CHECK so one run shows every broken expectation. */
#pragma once

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

typedef void (*test_fn)(void);

void test_register(const char *name, test_fn fn);
void test_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define TEST(name)                                                                                 \
        static void test_##name(void);                                                             \
        __attribute__((constructor)) static void test_register_##name(void) {                      \
                test_register(#name, test_##name);                                                 \
        }                                                                                          \
        static void test_##name(void)

#define CHECK(cond)                                                                                \
        do {                                                                                       \
                if (!(cond))                                                                       \
                        test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);                         \
        } while (0)

#define CHECK_EQ(a, b)                                                                             \
        do {                                                                                       \
                long long check_a_ = (long long)(a), check_b_ = (long long)(b);                    \
                if (check_a_ != check_b_)                                                          \
                        test_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, check_a_,  \
                                  check_b_);                                                       \
        } while (0)

#define CHECK_STREQ(a, b)                                                                          \
        do {                                                                                       \
                const char *check_a_ = (a), *check_b_ = (b);                                       \
                if (!check_a_ || !check_b_ || strcmp(check_a_, check_b_) != 0)                     \
                        test_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b,        \
                                  check_a_ ? check_a_ : "(null)", check_b_ ? check_b_ : "(null)"); \
        } while (0)
