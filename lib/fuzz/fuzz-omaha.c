/* Fuzz target for lib/omaha.c. Each input is parsed as a request and as a response; whatever
 * parses is built again and must parse again to the same thing (a round trip).
 *
 * Built two ways (lib/module.mk): with clang -fsanitize=fuzzer,address as a real libFuzzer
 * binary (`make fuzz-omaha`), and with lib/fuzz/fuzz-main.c as an ordinary test that runs every
 * file of lib/fuzz/corpus/omaha/ under ASan+UBSan in `make check`. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "omaha.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void round_trip_request(const struct omaha_request *req) {
        char *xml = NULL;
        size_t len = 0;
        struct omaha_request back = {};

        if (omaha_request_build(req, &xml, &len) < 0)
                abort();
        /* What was built from a parsed document may only fail to parse for its size. */
        int r = omaha_request_parse(xml, len, &back);
        if (r < 0 && len <= OMAHA_MAX_DOCUMENT)
                abort();
        if (r == 0 && back.n_apps != req->n_apps)
                abort();
        for (size_t i = 0; r == 0 && i < back.n_apps; i++)
                if (strcmp(back.apps[i].appid, req->apps[i].appid) != 0 ||
                    back.apps[i].n_events != req->apps[i].n_events)
                        abort();
        omaha_request_done(&back);
        free(xml);
}

static void round_trip_response(const struct omaha_response *resp) {
        char *xml = NULL;
        size_t len = 0;
        struct omaha_response back = {};

        if (omaha_response_build(resp, &xml, &len) < 0)
                abort();
        int r = omaha_response_parse(xml, len, &back);
        if (r < 0 && len <= OMAHA_MAX_DOCUMENT)
                abort();
        if (r == 0 && back.n_apps != resp->n_apps)
                abort();
        for (size_t i = 0; r == 0 && i < back.n_apps; i++) {
                const struct omaha_app_response *a = &resp->apps[i], *b = &back.apps[i];
                /* Only an "ok" update check carries urls and a manifest when built. */
                if (!a->updatecheck || strcmp(a->updatecheck, "ok") != 0)
                        continue;
                if (a->n_packages != b->n_packages || a->n_urls != b->n_urls)
                        abort();
                for (size_t k = 0; k < a->n_packages; k++)
                        if (a->packages[k].size != b->packages[k].size ||
                            memcmp(a->packages[k].sha256, b->packages[k].sha256, 32) != 0)
                                abort();
        }
        omaha_response_done(&back);
        free(xml);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct omaha_request req = {};
        struct omaha_response resp = {};
        static int initialized;

        if (!initialized) {
                omaha_init();
                initialized = 1;
        }
        if (omaha_request_parse((const char *)data, size, &req) == 0) {
                round_trip_request(&req);
                omaha_request_done(&req);
        }
        if (omaha_response_parse((const char *)data, size, &resp) == 0) {
                round_trip_response(&resp);
                omaha_response_done(&resp);
        }
        return 0;
}
