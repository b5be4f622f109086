# lib/: code two or more parts share. Each module has its unit test in lib/tests/.
LIB_HOSTED_SRCS := lib/log.c

# --- Omaha v3 codec: lib/omaha.c builds, lib/omaha-parse.c parses (libxml2) ---
LIB_HOSTED_SRCS += lib/omaha.c lib/omaha-parse.c
OMAHA_LIBS = $(call pkg-libs,libxml-2.0)
EXTRA_CFLAGS_lib += $(call pkg-cflags,libxml-2.0)
UNIT_TESTS += $(OUT)/test/test-omaha $(OUT)/test/fuzz-omaha

# The parser as a module the device programs load for each parse (updater/omaha-module.h);
# only what they call is exported. The sanitizer build goes where the sanitizer-built programs
# (out/test/san/) look for it.
OMAHA_MODULE := $(OUT)/lib/pivot/omaha-parser.so
OMAHA_SAN_MODULE := $(OUT)/test/lib/pivot/omaha-parser.so
OMAHA_MODULE_SRCS := lib/omaha-parse.c lib/omaha.c
OMAHA_MODULE_LDFLAGS := -shared -Wl,-soname,omaha-parser.so -Wl,--version-script=lib/omaha-parser.map
BINS += $(OMAHA_MODULE)
$(OMAHA_MODULE): $(OMAHA_MODULE_SRCS:%.c=$(OUT)/obj-pic/%.o) lib/omaha-parser.map
	@mkdir -p $(@D)
	$(CC) $(OMAHA_MODULE_LDFLAGS) -Wl,-z,defs -o $@ $(filter %.o,$^) $(OMAHA_LIBS)
$(OMAHA_SAN_MODULE): $(OMAHA_MODULE_SRCS:%.c=$(OUT)/obj-san-pic/%.o) lib/omaha-parser.map
	@mkdir -p $(@D)
	$(CC) $(SAN) $(OMAHA_MODULE_LDFLAGS) -o $@ $(filter %.o,$^) $(OMAHA_LIBS)

$(OUT)/test/test-omaha: $(OUT)/obj-san/lib/tests/test-omaha.o $(OUT)/obj-san/lib/omaha.o \
		$(OUT)/obj-san/lib/omaha-parse.o $(OUT)/obj-san/lib/log.o $(OUT)/obj-san/lib/test/test-main.o
	@mkdir -p $(@D)
	$(CC) $(SAN) -o $@ $^ $(OMAHA_LIBS)

# The fuzz target as an ordinary test: every corpus file, under ASan+UBSan.
$(OUT)/obj-san/lib/fuzz/fuzz-main.o: CPPFLAGS += -DFUZZ_CORPUS_DIR='"$(CURDIR)/lib/fuzz/corpus/omaha"'
$(OUT)/test/fuzz-omaha: $(OUT)/obj-san/lib/fuzz/fuzz-omaha.o $(OUT)/obj-san/lib/fuzz/fuzz-main.o \
		$(OUT)/obj-san/lib/omaha.o $(OUT)/obj-san/lib/omaha-parse.o
	@mkdir -p $(@D)
	$(CC) $(SAN) -o $@ $^ $(OMAHA_LIBS)

# The real libFuzzer binary (clang): make fuzz-omaha; then
#   out/fuzz/fuzz-omaha -max_total_time=60 lib/fuzz/corpus/omaha
.PHONY: fuzz-omaha
fuzz-omaha: $(OUT)/fuzz/fuzz-omaha
$(OUT)/fuzz/fuzz-omaha: lib/fuzz/fuzz-omaha.c lib/omaha.c lib/omaha-parse.c lib/omaha.h
	@mkdir -p $(@D)
	clang $(CSTD) -g -O1 -D_GNU_SOURCE -Ilib $(call pkg-cflags,libxml-2.0) \
		-fsanitize=fuzzer,address,undefined -o $@ lib/fuzz/fuzz-omaha.c lib/omaha.c lib/omaha-parse.c \
		$(OMAHA_LIBS)

# make check also gives libFuzzer's engine a short, bounded run from the corpus.
CHECK_SUITES += fuzz-omaha-engine=lib/fuzz/run-engine.sh

# --- Update payload (lib/payload.c): libcrypto, libzstd; docs/payload-format.md ---
# Programs link $(PAYLOAD_OBJS) (tests: $(PAYLOAD_SAN_OBJS)) and $(PAYLOAD_LIBS).
PAYLOAD_OBJS := $(OUT)/obj/lib/payload.o $(OUT)/obj/lib/version.o $(OUT)/obj/lib/log.o
PAYLOAD_SAN_OBJS := $(OUT)/obj-san/lib/payload.o $(OUT)/obj-san/lib/version.o $(OUT)/obj-san/lib/log.o
PAYLOAD_LIBS = $(call pkg-libs,libcrypto libzstd) -pthread
UNIT_TESTS += $(OUT)/test/test-payload $(OUT)/test/fuzz-payload-manifest

$(OUT)/test/test-payload: $(OUT)/obj-san/lib/tests/test-payload.o $(PAYLOAD_SAN_OBJS) \
		$(OUT)/obj-san/lib/test/test-main.o
	@mkdir -p $(@D)
	$(CC) $(SAN) -o $@ $^ $(PAYLOAD_LIBS)

# The manifest fuzz target as an ordinary test over its seed corpus, and as libFuzzer binary:
#   make fuzz-payload-manifest && out/fuzz/fuzz-payload-manifest lib/fuzz/corpus/payload-manifest
$(OUT)/obj-san/lib/fuzz/fuzz-main-payload-manifest.o: lib/fuzz/fuzz-main.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(SAN) -DFUZZ_CORPUS_DIR='"$(CURDIR)/lib/fuzz/corpus/payload-manifest"' \
		-MMD -MP -c $< -o $@
$(OUT)/test/fuzz-payload-manifest: $(OUT)/obj-san/lib/fuzz/fuzz-payload-manifest.o \
		$(OUT)/obj-san/lib/fuzz/fuzz-main-payload-manifest.o $(PAYLOAD_SAN_OBJS)
	@mkdir -p $(@D)
	$(CC) $(SAN) -o $@ $^ $(PAYLOAD_LIBS)

.PHONY: fuzz-payload-manifest
fuzz-payload-manifest: $(OUT)/fuzz/fuzz-payload-manifest
$(OUT)/fuzz/fuzz-payload-manifest: lib/fuzz/fuzz-payload-manifest.c lib/payload.c lib/payload.h lib/version.c lib/log.c
	@mkdir -p $(@D)
	clang $(CSTD) -g -O1 -D_GNU_SOURCE -Ilib -fsanitize=fuzzer,address,undefined -o $@ \
		lib/fuzz/fuzz-payload-manifest.c lib/payload.c lib/version.c lib/log.c $(PAYLOAD_LIBS)
CHECK_SUITES += fuzz-payload-manifest-engine='lib/fuzz/run-payload-manifest-engine.sh'

# Portable modules with no libc: the boot selector (UEFI), the initramfs and the host tools all
# compile these same files.
LIB_PORTABLE_SRCS := lib/crc32.c lib/gpt.c lib/slot-policy.c

# Compiled once more with no C library headers at all, so a stray #include <string.h> or a
# libc call breaks `make unit` and not only the UEFI build.
FREESTANDING_CFLAGS = -ffreestanding -nostdinc -isystem $(shell $(CC) -print-file-name=include)
LIB_FREESTANDING_OBJS := $(LIB_PORTABLE_SRCS:%.c=$(OUT)/obj-freestanding/%.o)
$(OUT)/obj-freestanding/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) $(CFLAGS) -Ilib $(FREESTANDING_CFLAGS) -c $< -o $@

LIB_TESTS := $(addprefix $(OUT)/test/,test-gpt test-gpt-powercut test-slot-policy)
UNIT_TESTS += $(LIB_TESTS)

$(LIB_TESTS): $(OUT)/test/%: $(OUT)/obj-san/lib/tests/%.o \
		$(LIB_PORTABLE_SRCS:%.c=$(OUT)/obj-san/%.o) $(OUT)/obj-san/$(TEST_MAIN:.c=.o) \
		| $(LIB_FREESTANDING_OBJS)
	@mkdir -p $(@D)
	$(CC) $(SAN) -o $@ $(filter %.o,$^)
