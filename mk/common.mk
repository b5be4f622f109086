# Flags and conventions every module fragment (*/module.mk) shares.
#
# A fragment appends to:
#   BINS         programs installed into out/bin/ by plain `make`
#   UNIT_TESTS   test executables (built with ASan+UBSan) run by `make unit`
#   CHECK_SUITES commands run by `make check`; each prints "N passed, N failed"
#   BENCHES      commands run by `make bench`

OUT      ?= out
CC       ?= gcc
CSTD     := -std=gnu11
WARN     := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
CFLAGS   ?= -O2 -g
CPPFLAGS += -D_GNU_SOURCE -Ilib
SAN      := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

ALL_CFLAGS = $(CSTD) $(WARN) $(CFLAGS) $(CPPFLAGS)

# $(call pkg-cflags,pkgs) / $(call pkg-libs,pkgs): pkg-config, evaluated lazily so a
# missing -dev package only matters to the targets that need it.
pkg-cflags = $(shell pkg-config --cflags $(1) 2>/dev/null)
pkg-libs   = $(shell pkg-config --libs $(1) 2>/dev/null)

TEST_MAIN := lib/test/test-main.c
