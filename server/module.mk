# server/: pivot-server (Omaha endpoint, release store, rollout policy, admin API, dashboard,
# metrics) and pivot-admin (its command line). See server/README.md.
EXTRA_CFLAGS_server += -Iserver $(call pkg-cflags,libxml-2.0 libmicrohttpd sqlite3 libpq jansson libcurl) \
	-I$(shell pg_config --includedir 2>/dev/null || echo /usr/include/postgresql)

SERVER_LIBS = $(call pkg-libs,libxml-2.0 libmicrohttpd sqlite3 libpq jansson libcrypto) -lpthread
SERVER_SRCS := server/main.c server/http.c server/payloads.c server/omaha-handler.c server/admin-api.c server/dashboard.c \
	server/metrics.c server/store.c server/store-sqlite.c server/store-postgres.c server/policy.c \
	server/strbuf.c lib/omaha.c lib/omaha-parse.c lib/version.c lib/log.c
ADMIN_SRCS := server/admin/pivot-admin.c server/strbuf.c lib/log.c lib/version.c $(wildcard lib/payload.c)
ADMIN_LIBS = $(call pkg-libs,libcurl jansson libcrypto) $(if $(wildcard lib/payload.c),$(call pkg-libs,libzstd)) -lpthread

BINS += $(OUT)/bin/pivot-server $(OUT)/bin/pivot-admin

$(OUT)/bin/pivot-server: $(SERVER_SRCS:%.c=$(OUT)/obj/%.o)
	@mkdir -p $(@D)
	$(CC) -o $@ $^ $(SERVER_LIBS)

$(OUT)/bin/pivot-admin: $(ADMIN_SRCS:%.c=$(OUT)/obj/%.o)
	@mkdir -p $(@D)
	$(CC) -o $@ $^ $(ADMIN_LIBS)

# Unit tests of the pure parts (policy) and of the store against SQLite.
UNIT_TESTS += $(OUT)/test/test-server-policy
$(OUT)/test/test-server-policy: $(OUT)/obj-san/server/tests/test-policy.o $(OUT)/obj-san/server/policy.o $(OUT)/obj-san/lib/version.o \
		$(OUT)/obj-san/server/store.o $(OUT)/obj-san/server/store-sqlite.o $(OUT)/obj-san/server/store-postgres.o \
		$(OUT)/obj-san/lib/log.o $(OUT)/obj-san/lib/test/test-main.o
	@mkdir -p $(@D)
	$(CC) $(SAN) -o $@ $^ $(call pkg-libs,sqlite3 libpq) -lpthread

# End-to-end suites: real HTTP against a running pivot-server, on SQLite and on a private
# PostgreSQL cluster the suite starts itself.
CHECK_SUITES += server-sqlite=server/tests/run.sh\ sqlite server-postgres=server/tests/run.sh\ postgres

BENCHES += server/bench/run.sh

# pivot-admin reads payloads through lib/payload.c when that module is in the tree.
ifneq ($(wildcard lib/payload.c),)
$(OUT)/obj/server/admin/pivot-admin.o: CPPFLAGS += -DHAVE_PAYLOAD
endif

# The server group of tools/deps.sh (libmicrohttpd, SQLite, libpq, jansson, PostgreSQL) before
# anything of server/ compiles.
.PHONY: server-deps
server-deps:
	@tools/deps.sh server
$(SERVER_SRCS:%.c=$(OUT)/obj/%.o) $(ADMIN_SRCS:%.c=$(OUT)/obj/%.o): | server-deps
$(addprefix $(OUT)/obj-san/server/,tests/test-policy.o policy.o store.o store-sqlite.o store-postgres.o): | server-deps

# Test helper for the suites: a signed payload made with lib/payload.c.
$(OUT)/test/mkpayload: $(OUT)/obj/server/tests/mkpayload.o $(OUT)/obj/lib/payload.o $(OUT)/obj/lib/version.o $(OUT)/obj/lib/log.o
	@mkdir -p $(@D)
	$(CC) -o $@ $^ $(call pkg-libs,libcrypto libzstd) -lpthread
