# lib/: code two or more parts share. Each module has its unit test in lib/tests/.
LIB_HOSTED_SRCS := lib/log.c

# --- Omaha v3 codec (lib/omaha.c): libxml2 ---
LIB_HOSTED_SRCS += lib/omaha.c
OMAHA_LIBS = $(call pkg-libs,libxml-2.0)
EXTRA_CFLAGS_lib += $(call pkg-cflags,libxml-2.0)
UNIT_TESTS += $(OUT)/test/test-omaha $(OUT)/test/fuzz-omaha

$(OUT)/test/test-omaha: $(OUT)/obj-san/lib/tests/test-omaha.o $(OUT)/obj-san/lib/omaha.o \
		$(OUT)/obj-san/lib/log.o $(OUT)/obj-san/lib/test/test-main.o
	@mkdir -p $(@D)
	$(CC) $(SAN) -o $@ $^ $(OMAHA_LIBS)

# The fuzz target as an ordinary test: every corpus file, under ASan+UBSan.
$(OUT)/obj-san/lib/fuzz/fuzz-main.o: CPPFLAGS += -DFUZZ_CORPUS_DIR='"$(CURDIR)/lib/fuzz/corpus/omaha"'
$(OUT)/test/fuzz-omaha: $(OUT)/obj-san/lib/fuzz/fuzz-omaha.o $(OUT)/obj-san/lib/fuzz/fuzz-main.o \
		$(OUT)/obj-san/lib/omaha.o
	@mkdir -p $(@D)
	$(CC) $(SAN) -o $@ $^ $(OMAHA_LIBS)

# The real libFuzzer binary (clang): make fuzz-omaha; then
#   out/fuzz/fuzz-omaha -max_total_time=60 lib/fuzz/corpus/omaha
.PHONY: fuzz-omaha
fuzz-omaha: $(OUT)/fuzz/fuzz-omaha
$(OUT)/fuzz/fuzz-omaha: lib/fuzz/fuzz-omaha.c lib/omaha.c lib/omaha.h
	@mkdir -p $(@D)
	clang $(CSTD) -g -O1 -D_GNU_SOURCE -Ilib $(call pkg-cflags,libxml-2.0) \
		-fsanitize=fuzzer,address,undefined -o $@ lib/fuzz/fuzz-omaha.c lib/omaha.c $(OMAHA_LIBS)

# make check also gives libFuzzer's engine a short, bounded run from the corpus.
CHECK_SUITES += fuzz-omaha-engine=lib/fuzz/run-engine.sh
