/* The Omaha parser as a module (updater/omaha-module.h): it parses as the parser linked
 * directly does, and it leaves nothing loaded behind. Built into out/test/san/ beside the
 * sanitizer-built programs, so that it loads the sanitizer-built module as they do. */
#include <dlfcn.h>
#include <errno.h>
#include <string.h>

#include "omaha-module.h"
#include "test/test.h"

static const char RESPONSE[] =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<response protocol=\"3.0\" server=\"pivot-server\">"
        "<daystart elapsed_seconds=\"49008\"/>"
        "<app appid=\"{b9606f32-42ac-4029-aef4-20ed435e8c45}\" status=\"ok\">"
        "<updatecheck status=\"ok\"><urls><url codebase=\"http://10.0.2.2/p/\"/></urls>"
        "<manifest version=\"2.0.0\"><packages><package name=\"update.payload\" size=\"1234\" "
        "hash_sha256=\"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\" "
        "required=\"true\"/></packages></manifest></updatecheck></app></response>";

static bool loaded(const char *name) {
        void *h = dlopen(name, RTLD_LAZY | RTLD_NOLOAD);
        if (h)
                dlclose(h);
        return h != NULL;
}

TEST(module_parses_a_response) {
        struct omaha_response r;
        CHECK_EQ(omaha_module_parse_response(RESPONSE, strlen(RESPONSE), &r), 0);
        CHECK_STREQ(r.server, "pivot-server");
        CHECK_EQ(r.daystart_elapsed_seconds, 49008);
        CHECK_EQ(r.n_apps, 1);
        if (r.n_apps == 1) {
                CHECK_STREQ(r.apps[0].updatecheck, "ok");
                CHECK_STREQ(r.apps[0].manifest_version, "2.0.0");
                CHECK_EQ(r.apps[0].n_packages, 1);
                CHECK_EQ(r.apps[0].n_packages ? r.apps[0].packages[0].size : 0, 1234);
                CHECK(r.apps[0].n_packages && r.apps[0].packages[0].sha256[31] == 0xff);
        }
        omaha_response_done(&r);
}

TEST(module_refuses_what_the_parser_refuses) {
        struct omaha_response r;
        static const char dtd[] = "<?xml version=\"1.0\"?><!DOCTYPE response [<!ENTITY a \"b\">]>"
                                  "<response protocol=\"3.0\">&a;</response>";
        CHECK_EQ(omaha_module_parse_response(dtd, strlen(dtd), &r), -EBADMSG);
        CHECK_EQ(r.n_apps, 0);
        static const char old[] = "<response protocol=\"2.0\"></response>";
        CHECK_EQ(omaha_module_parse_response(old, strlen(old), &r), -EPROTO);
        CHECK_EQ(omaha_module_parse_response("<respo", 6, &r), -EBADMSG);
}

/* The point of the module: between parses, neither it nor libxml2 and ICU are in memory. */
TEST(module_and_libxml2_unloaded_after_a_parse) {
        CHECK(!loaded("libxml2.so.2"));
        struct omaha_response r;
        CHECK_EQ(omaha_module_parse_response(RESPONSE, strlen(RESPONSE), &r), 0);
        omaha_response_done(&r);
        CHECK(!loaded("libxml2.so.2"));
        CHECK(!loaded("omaha-parser.so"));
}

/* Each load takes a thread key and must give it back: a process has 1024, and an agent that
 * checks every 45 minutes loads the module more often than that in a month. */
TEST(module_loads_more_often_than_there_are_thread_keys) {
        int failures = 0;
        for (int i = 0; i < 1100; i++) {
                struct omaha_response r;
                failures += omaha_module_parse_response(RESPONSE, strlen(RESPONSE), &r) != 0;
                omaha_response_done(&r);
        }
        CHECK_EQ(failures, 0);
}
