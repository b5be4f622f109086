# updater/: pivot-payload (build host), pivot-agent and pivotctl (device, and offline on disk
# image files). See updater/README.md.

EXTRA_CFLAGS_updater := -Iupdater $(call pkg-cflags,fdisk blkid libcurl)
UPDATER_LIBS = $(call pkg-libs,libcurl fdisk blkid libcrypto libzstd) -pthread \
               -Wl,--export-dynamic-symbol=_gnutls_global_init_skip

# What pivot-agent and pivotctl share: everything but their main().
UPDATER_SRCS := updater/chunk-ring.c updater/config.c updater/disk.c updater/esp.c updater/http.c \
                updater/install.c updater/omaha-module.c updater/reboot.c updater/run.c updater/state.c \
                updater/target.c updater/update.c \
                lib/payload.c lib/version.c lib/omaha.c lib/log.c lib/slot-policy.c lib/gpt.c lib/gpt-fd.c lib/crc32.c
UPDATER_OBJS := $(UPDATER_SRCS:%.c=$(OUT)/obj/%.o)
UPDATER_SAN_OBJS := $(UPDATER_SRCS:%.c=$(OUT)/obj-san/%.o)

BINS += $(OUT)/bin/pivot-payload $(OUT)/bin/pivot-agent $(OUT)/bin/pivotctl

$(OUT)/bin/pivot-payload: $(OUT)/obj/updater/pivot-payload.o $(PAYLOAD_OBJS)
	@mkdir -p $(@D)
	$(CC) -o $@ $^ $(PAYLOAD_LIBS)

# They load the Omaha parser (updater/omaha-module.h) from ../lib/pivot/ when they parse.
$(OUT)/bin/pivot-agent $(OUT)/bin/pivotctl: $(OUT)/bin/%: $(OUT)/obj/updater/%.o $(UPDATER_OBJS) \
		| $(OMAHA_MODULE)
	@mkdir -p $(@D)
	$(CC) -o $@ $(filter %.o,$^) $(UPDATER_LIBS)

# Sanitizer builds of the device programs, for the shell test suites.
$(OUT)/test/san/pivot-agent $(OUT)/test/san/pivotctl: $(OUT)/test/san/%: $(OUT)/obj-san/updater/%.o \
		$(UPDATER_SAN_OBJS) | $(OMAHA_SAN_MODULE)
	@mkdir -p $(@D)
	$(CC) $(SAN) -o $@ $(filter %.o,$^) $(UPDATER_LIBS)

# Unit tests of the small modules (config, windows, state, child processes).
# The parser module's loader, built beside the sanitizer-built programs to load what they load.
UNIT_TESTS += $(OUT)/test/san/test-omaha-module
$(OUT)/test/san/test-omaha-module: $(OUT)/obj-san/updater/tests/test-omaha-module.o \
		$(OUT)/obj-san/updater/omaha-module.o $(OUT)/obj-san/lib/omaha.o $(OUT)/obj-san/lib/log.o \
		$(OUT)/obj-san/lib/test/test-main.o | $(OMAHA_SAN_MODULE)
	@mkdir -p $(@D)
	$(CC) $(SAN) -o $@ $(filter %.o,$^)

UNIT_TESTS += $(OUT)/test/test-updater
$(OUT)/test/test-updater: $(OUT)/obj-san/updater/tests/test-updater.o $(UPDATER_SAN_OBJS) \
		$(OUT)/obj-san/lib/test/test-main.o
	@mkdir -p $(@D)
	$(CC) $(SAN) -o $@ $^ $(UPDATER_LIBS)

# End to end on disk image files, against a local Omaha responder and the real pivot-server.
CHECK_SUITES += updater-e2e=updater/tests/run.sh
BENCHES += updater/bench/install-bench.sh
