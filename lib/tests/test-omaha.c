/* Unit tests for lib/omaha.c: real-shaped Flatcar/Nebraska documents, round trips, and
 * documents a hostile peer could send. */
#include "omaha.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "test/test.h"
#include "util.h"

/* What Flatcar's update_engine sends on the first check after an update: the first-boot
 * event sits in the same <app> as the update check. */
static const char flatcar_request[] =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<request protocol=\"3.0\" version=\"update_engine-0.4.10\" updaterversion=\"update_engine-0.4.10\" "
        "installsource=\"scheduler\" ismachine=\"1\">\n"
        "    <os version=\"Chateau\" platform=\"CoreOS\" sp=\"3510.2.0_x86_64\"></os>\n"
        "    <app appid=\"{e96281a6-d1af-4bde-9a0a-97b76e56dc57}\" version=\"3510.2.0\" track=\"stable\" "
        "bootid=\"{7c4e3a5e-63e4-4f5e-9a3b-a1f0e5a3c0de}\" oem=\"qemu\" oemversion=\"\" alephversion=\"3374.2.0\" "
        "machineid=\"0123456789abcdef0123456789abcdef\" machinealias=\"\" lang=\"en-US\" board=\"amd64-usr\" "
        "hardware_class=\"\" delta_okay=\"false\" >\n"
        "        <ping active=\"1\"></ping>\n"
        "        <updatecheck></updatecheck>\n"
        "        <event eventtype=\"3\" eventresult=\"2\" previousversion=\"3374.2.0\"></event>\n"
        "    </app>\n"
        "</request>\n";

/* Nebraska's answer with an update, as its Go encoder writes it (one line, no blanks). */
static const char nebraska_response[] =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<response protocol=\"3.0\" server=\"nebraska\"><daystart elapsed_seconds=\"0\"></daystart>"
        "<app appid=\"{e96281a6-d1af-4bde-9a0a-97b76e56dc57}\" status=\"ok\"><event status=\"ok\"></event>"
        "<ping status=\"ok\"></ping><updatecheck status=\"ok\"><urls>"
        "<url codebase=\"https://update.example.net/amd64-usr/3602.2.0/\"></url></urls>"
        "<manifest version=\"3602.2.0\"><packages><package name=\"flatcar_production_update.gz\" "
        "hash=\"sjPVfob9dphFxVS1Ko+i/pi6z7o=\" "
        "hash_sha256=\"d6386c59a6bcfcb1e4ced6beeb4594757afaa891ac805388076d0c83d2f5260a\" size=\"5\" "
        "required=\"true\"></package></packages><actions><action event=\"postinstall\" "
        "ChromeOSVersion=\"\" sha256=\"1jhsWaa8/LHkzta+60WUdXr6qJGsgFOIB20Mg9L1Jgo=\" needsadmin=\"false\" "
        "IsDeltaPayload=\"false\" DisablePayloadBackoff=\"true\" MetadataSignatureRsa=\"\" MetadataSize=\"\" "
        "Deadline=\"\"></action></actions></manifest></updatecheck></app></response>";

static const uint8_t sha1_pivot[20] = { 0xb2, 0x33, 0xd5, 0x7e, 0x86, 0xfd, 0x76, 0x98, 0x45, 0xc5,
                                        0x54, 0xb5, 0x2a, 0x8f, 0xa2, 0xfe, 0x98, 0xba, 0xcf, 0xba };
static const uint8_t sha256_pivot[32] = { 0xd6, 0x38, 0x6c, 0x59, 0xa6, 0xbc, 0xfc, 0xb1, 0xe4, 0xce, 0xd6,
                                          0xbe, 0xeb, 0x45, 0x94, 0x75, 0x7a, 0xfa, 0xa8, 0x91, 0xac, 0x80,
                                          0x53, 0x88, 0x07, 0x6d, 0x0c, 0x83, 0xd2, 0xf5, 0x26, 0x0a };

static int parse_req(const char *s, struct omaha_request *r) {
        return omaha_request_parse(s, strlen(s), r);
}
static int parse_resp(const char *s, struct omaha_response *r) {
        return omaha_response_parse(s, strlen(s), r);
}

TEST(parses_flatcar_request) {
        _cleanup_(omaha_request_done) struct omaha_request req = {};
        omaha_init();
        CHECK_EQ(parse_req(flatcar_request, &req), 0);
        CHECK_STREQ(req.protocol, "3.0");
        CHECK_STREQ(req.installsource, "scheduler");
        CHECK(req.ismachine);
        CHECK_STREQ(req.os_platform, "CoreOS");
        CHECK_STREQ(req.os_sp, "3510.2.0_x86_64");
        CHECK_EQ(req.n_apps, 1);
        if (req.n_apps != 1)
                return;
        struct omaha_app_request *a = &req.apps[0];
        CHECK_STREQ(a->appid, "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}");
        CHECK_STREQ(a->version, "3510.2.0");
        CHECK_STREQ(a->track, "stable");
        CHECK_STREQ(a->bootid, "{7c4e3a5e-63e4-4f5e-9a3b-a1f0e5a3c0de}");
        CHECK_STREQ(a->machineid, "0123456789abcdef0123456789abcdef");
        CHECK_STREQ(a->alephversion, "3374.2.0");
        CHECK_STREQ(a->oem, "qemu");
        CHECK_STREQ(a->board, "amd64-usr");
        CHECK(!a->delta_okay);
        CHECK(a->ping);
        CHECK_EQ(a->ping_active, 1);
        CHECK(a->updatecheck);
        CHECK_EQ(a->n_events, 1);
        CHECK_EQ(a->events[0].type, OMAHA_EVENT_UPDATE_COMPLETE);
        CHECK_EQ(a->events[0].result, OMAHA_RESULT_SUCCESS_REBOOT);
        CHECK_EQ(a->events[0].error_code, 0);
        CHECK_STREQ(a->events[0].previous_version, "3374.2.0");
}

TEST(parses_nebraska_response) {
        _cleanup_(omaha_response_done) struct omaha_response resp = {};
        CHECK_EQ(parse_resp(nebraska_response, &resp), 0);
        CHECK_STREQ(resp.server, "nebraska");
        CHECK_EQ(resp.n_apps, 1);
        if (resp.n_apps != 1)
                return;
        struct omaha_app_response *a = &resp.apps[0];
        CHECK_STREQ(a->status, "ok");
        CHECK(a->ping);
        CHECK_EQ(a->n_events, 1);
        CHECK_STREQ(a->updatecheck, "ok");
        CHECK_EQ(a->n_urls, 1);
        CHECK_STREQ(a->urls[0], "https://update.example.net/amd64-usr/3602.2.0/");
        CHECK_STREQ(a->manifest_version, "3602.2.0");
        CHECK_EQ(a->n_packages, 1);
        CHECK_STREQ(a->packages[0].name, "flatcar_production_update.gz");
        CHECK_EQ(a->packages[0].size, 5);
        CHECK(a->packages[0].required);
        CHECK(a->packages[0].has_sha1);
        CHECK(memcmp(a->packages[0].sha1, sha1_pivot, 20) == 0);
        CHECK(a->packages[0].has_sha256);
        CHECK(memcmp(a->packages[0].sha256, sha256_pivot, 32) == 0);
        CHECK(a->postinstall);
        CHECK(a->has_postinstall_sha256);
        CHECK(memcmp(a->postinstall_sha256, sha256_pivot, 32) == 0);
        CHECK(a->disable_payload_backoff);
}

TEST(parses_noupdate_and_error_statuses) {
        _cleanup_(omaha_response_done) struct omaha_response resp = {};
        const char *doc = "<response protocol=\"3.0\" server=\"nebraska\"><daystart elapsed_seconds=\"0\"/>"
                          "<app appid=\"{a}\" status=\"ok\"><ping status=\"ok\"/><updatecheck status=\"noupdate\"/></app>"
                          "<app appid=\"{b}\" status=\"error-unknownApplication\"></app>"
                          "<app appid=\"{c}\" status=\"error-maxUpdatesPerPeriodLimitReached\">"
                          "<updatecheck status=\"error-internal\"/></app></response>";
        CHECK_EQ(parse_resp(doc, &resp), 0);
        CHECK_EQ(resp.n_apps, 3);
        if (resp.n_apps != 3)
                return;
        CHECK_STREQ(resp.apps[0].updatecheck, "noupdate");
        CHECK_STREQ(resp.apps[1].status, "error-unknownApplication");
        CHECK(resp.apps[1].updatecheck == NULL);
        CHECK_STREQ(resp.apps[2].status, "error-maxUpdatesPerPeriodLimitReached");
        CHECK_STREQ(resp.apps[2].updatecheck, "error-internal");
}

TEST(request_round_trip) {
        struct omaha_event events[] = {
                { .type = 3, .result = 0, .error_code = 44, .previous_version = "1.2.0",
                  .next_version = "1.3.0" },
                { .type = 13, .result = 1 },
        };
        struct omaha_app_request app = {
                .appid = "{b9606f32-42ac-4029-aef4-20ed435e8c45}",
                .version = "1.2.0",
                .track = "beta & \"friends\" <x>",
                .bootid = "{00000000-0000-4000-8000-000000000001}",
                .machineid = "00000000000000000000000000000001",
                .alephversion = "1.0.0",
                .ping = true,
                .ping_active = 1,
                .updatecheck = true,
                .events = events,
                .n_events = ELEMENTSOF(events),
        };
        struct omaha_request req = {
                .version = "pivot-0.1",
                .updaterversion = "pivot-0.1",
                .installsource = "ondemandupdate",
                .ismachine = true,
                .os_platform = "Pivot",
                .os_sp = "1.2.0_x86_64",
                .apps = &app,
                .n_apps = 1,
        };
        _cleanup_free_ char *xml = NULL;
        size_t len = 0;
        CHECK_EQ(omaha_request_build(&req, &xml, &len), 0);
        CHECK_EQ(len, strlen(xml));

        _cleanup_(omaha_request_done) struct omaha_request back = {};
        CHECK_EQ(omaha_request_parse(xml, len, &back), 0);
        CHECK_STREQ(back.installsource, "ondemandupdate");
        CHECK_STREQ(back.os_platform, "Pivot");
        CHECK_EQ(back.n_apps, 1);
        if (back.n_apps != 1)
                return;
        CHECK_STREQ(back.apps[0].track, "beta & \"friends\" <x>");
        CHECK_STREQ(back.apps[0].machineid, "00000000000000000000000000000001");
        CHECK(back.apps[0].updatecheck);
        CHECK_EQ(back.apps[0].n_events, 2);
        CHECK_EQ(back.apps[0].events[0].error_code, 44);
        CHECK_STREQ(back.apps[0].events[0].previous_version, "1.2.0");
        CHECK_STREQ(back.apps[0].events[0].next_version, "1.3.0");
        CHECK_EQ(back.apps[0].events[1].type, 13);
        CHECK(back.apps[0].events[1].previous_version == NULL);
        CHECK(back.apps[0].events[1].next_version == NULL);
}

TEST(response_round_trip) {
        char *urls[] = { "http://127.0.0.1:8080/v1/payloads/x/1.3.0/", "https://cdn.example.net/1.3.0/" };
        struct omaha_package pkg = { .name = "update.payload", .size = 1234, .required = true,
                                     .has_sha1 = true, .has_sha256 = true };
        memcpy(pkg.sha1, sha1_pivot, 20);
        memcpy(pkg.sha256, sha256_pivot, 32);
        struct omaha_app_response app = {
                .appid = "{b9606f32-42ac-4029-aef4-20ed435e8c45}",
                .ping = true,
                .n_events = 2,
                .updatecheck = "ok",
                .urls = urls,
                .n_urls = 2,
                .manifest_version = "1.3.0",
                .packages = &pkg,
                .n_packages = 1,
                .postinstall = true,
                .has_postinstall_sha256 = true,
                .disable_payload_backoff = true,
        };
        memcpy(app.postinstall_sha256, sha256_pivot, 32);
        struct omaha_response resp = { .server = "pivot-server", .apps = &app, .n_apps = 1 };
        _cleanup_free_ char *xml = NULL;
        size_t len = 0;
        CHECK_EQ(omaha_response_build(&resp, &xml, &len), 0);
        /* The encodings Flatcar reads: base64 SHA-1, hex SHA-256, base64 SHA-256 in the action. */
        CHECK(strstr(xml, "hash=\"sjPVfob9dphFxVS1Ko+i/pi6z7o=\""));
        CHECK(strstr(xml, "hash_sha256=\"d6386c59a6bcfcb1e4ced6beeb4594757afaa891ac805388076d0c83d2f5260a\""));
        CHECK(strstr(xml, "sha256=\"1jhsWaa8/LHkzta+60WUdXr6qJGsgFOIB20Mg9L1Jgo=\""));
        CHECK(strstr(xml, "<daystart elapsed_seconds=\"0\">"));

        _cleanup_(omaha_response_done) struct omaha_response back = {};
        CHECK_EQ(omaha_response_parse(xml, len, &back), 0);
        CHECK_EQ(back.n_apps, 1);
        if (back.n_apps != 1)
                return;
        struct omaha_app_response *a = &back.apps[0];
        CHECK_STREQ(a->status, "ok");
        CHECK_EQ(a->n_events, 2);
        CHECK_EQ(a->n_urls, 2);
        CHECK_STREQ(a->urls[1], "https://cdn.example.net/1.3.0/");
        CHECK_EQ(a->packages[0].size, 1234);
        CHECK(memcmp(a->packages[0].sha1, sha1_pivot, 20) == 0);
        CHECK(memcmp(a->packages[0].sha256, sha256_pivot, 32) == 0);
        CHECK(memcmp(a->postinstall_sha256, sha256_pivot, 32) == 0);
}

TEST(builds_noupdate_and_errors) {
        struct omaha_app_response apps[] = {
                { .appid = "{a}", .ping = true, .updatecheck = "noupdate" },
                { .appid = "{b}", .status = "error-unknownApplication" },
        };
        struct omaha_response resp = { .server = "pivot-server", .apps = apps, .n_apps = 2 };
        _cleanup_free_ char *xml = NULL;
        CHECK_EQ(omaha_response_build(&resp, &xml, NULL), 0);
        CHECK(strstr(xml, "<updatecheck status=\"noupdate\"></updatecheck>"));
        CHECK(strstr(xml, "<app appid=\"{b}\" status=\"error-unknownApplication\">"));
        CHECK(!strstr(xml, "<manifest"));
}

TEST(refuses_malformed_and_truncated) {
        static const char *bad[] = {
                "",
                "not xml at all",
                "<request protocol=\"3.0\"><app appid=\"{a}\">",
                "<request protocol=\"3.0\"><app appid=\"{a}\"></request>",
                "<request protocol=\"3.0\"><app appid=\"{a}\"><event eventtype=\"x\"/></app></request>",
                "<request protocol=\"3.0\"><app appid=\"{a}\"><event eventtype=\"-3\"/></app></request>",
                "<request protocol=\"3.0\"><app/></request>",                 /* no appid */
                "<response protocol=\"3.0\"></response>",                     /* wrong root */
                "<request protocol=\"3.0\" a=\"1\" a=\"2\"></request>",       /* duplicate attribute */
                "<request protocol=\"3.0\">&unknown;</request>",
                "<request protocol=\"3.0\"><app appid=\"\xff\xfe\"></app></request>", /* bad UTF-8 */
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                struct omaha_request req = {};
                int r = parse_req(bad[i], &req);
                if (r != -EBADMSG)
                        test_fail(__FILE__, __LINE__, "document %zu: %d", i, r);
                CHECK(req.apps == NULL);
        }
        /* Every prefix of a real document is refused, and none crashes. */
        size_t n = strlen(flatcar_request);
        for (size_t l = 0; l + 2 < n; l++) {
                struct omaha_request req = {};
                if (omaha_request_parse(flatcar_request, l, &req) == 0) {
                        test_fail(__FILE__, __LINE__, "prefix of %zu bytes parsed", l);
                        omaha_request_done(&req);
                }
        }
        n = strlen(nebraska_response);
        for (size_t l = 0; l < n; l++) {
                struct omaha_response resp = {};
                if (omaha_response_parse(nebraska_response, l, &resp) == 0) {
                        test_fail(__FILE__, __LINE__, "prefix of %zu bytes parsed", l);
                        omaha_response_done(&resp);
                }
        }
}

TEST(refuses_wrong_protocol) {
        struct omaha_request req = {};
        CHECK_EQ(parse_req("<request protocol=\"2.0\"></request>", &req), -EPROTO);
        CHECK_EQ(parse_req("<request></request>", &req), -EPROTO);
}

TEST(refuses_bad_hashes) {
        static const char *bad[] = {
                "hash=\"sjPVfob9dphFxVS1Ko+i/pi6z7o\"",   /* no padding */
                "hash=\"sjPVfob9dphFxVS1Ko+i/pi6z7o=AAAA\"",
                "hash=\"b233d57e86fd769845c554b52a8fa2fe98bacfba\"", /* hex where base64 belongs */
                "hash_sha256=\"1jhsWaa8/LHkzta+60WUdXr6qJGsgFOIB20Mg9L1Jgo=\"", /* base64 where hex belongs */
                "hash_sha256=\"d6386c59a6bcfcb1e4ced6beeb4594757afaa891ac805388076d0c83d2f5260\"",
                "hash_sha256=\"z6386c59a6bcfcb1e4ced6beeb4594757afaa891ac805388076d0c83d2f5260a\"",
                "size=\"-1\"",
                "size=\"12x\"",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char doc[1024];
                snprintf(doc, sizeof(doc),
                         "<response protocol=\"3.0\"><app appid=\"{a}\" status=\"ok\"><updatecheck status=\"ok\">"
                         "<urls><url codebase=\"http://x/\"/></urls><manifest version=\"1\"><packages>"
                         "<package name=\"p\" %s/></packages></manifest></updatecheck></app></response>",
                         bad[i]);
                struct omaha_response resp = {};
                int r = parse_resp(doc, &resp);
                if (r != -EBADMSG)
                        test_fail(__FILE__, __LINE__, "case %zu: %d", i, r);
        }
        /* An "ok" without anything to download is no answer. */
        struct omaha_response resp = {};
        CHECK_EQ(parse_resp("<response protocol=\"3.0\"><app appid=\"{a}\" status=\"ok\">"
                            "<updatecheck status=\"ok\"/></app></response>",
                            &resp),
                 -EBADMSG);
}

TEST(refuses_billion_laughs) {
        const char *doc = "<?xml version=\"1.0\"?>\n"
                          "<!DOCTYPE request [\n"
                          " <!ENTITY lol \"lol\">\n"
                          " <!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n"
                          " <!ENTITY lol2 \"&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;\">\n"
                          " <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">\n"
                          " <!ENTITY lol4 \"&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;\">\n"
                          " <!ENTITY lol5 \"&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;\">\n"
                          " <!ENTITY lol6 \"&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;\">\n"
                          " <!ENTITY lol7 \"&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;\">\n"
                          " <!ENTITY lol8 \"&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;\">\n"
                          " <!ENTITY lol9 \"&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;\">\n"
                          "]>\n"
                          "<request protocol=\"3.0\"><app appid=\"&lol9;\"/></request>";
        struct omaha_request req = {};
        CHECK_EQ(parse_req(doc, &req), -EBADMSG);
        /* Lower-case or spaced variants are not XML at all and fail in the parser. */
        CHECK_EQ(parse_req("<!doctype request><request protocol=\"3.0\"/>", &req), -EBADMSG);
}

TEST(refuses_external_entities) {
        /* Would read a local file or fetch a URL if entities were ever resolved. */
        const char *docs[] = {
                "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>"
                "<request protocol=\"3.0\"><app appid=\"&x;\"/></request>",
                "<?xml version=\"1.0\"?><!DOCTYPE request SYSTEM \"http://127.0.0.1:1/evil.dtd\">"
                "<request protocol=\"3.0\"/>",
                "<?xml version=\"1.0\"?><request protocol=\"3.0\" xmlns:xi=\"http://www.w3.org/2001/XInclude\">"
                "<xi:include href=\"file:///etc/passwd\" parse=\"text\"/><app appid=\"{a}\"/></request>",
        };
        for (size_t i = 0; i < 2; i++) {
                struct omaha_request req = {};
                CHECK_EQ(parse_req(docs[i], &req), -EBADMSG);
        }
        /* XInclude is never processed: the element is just an unknown one, ignored. */
        _cleanup_(omaha_request_done) struct omaha_request req = {};
        CHECK_EQ(parse_req(docs[2], &req), 0);
        CHECK_EQ(req.n_apps, 1);
        if (req.n_apps == 1)
                CHECK_STREQ(req.apps[0].appid, "{a}");
}

TEST(refuses_oversized_and_deep) {
        size_t big = OMAHA_MAX_DOCUMENT + 1;
        _cleanup_free_ char *doc = malloc(big + 1);
        struct omaha_request req = {};
        memset(doc, ' ', big);
        memcpy(doc, "<request protocol=\"3.0\">", 24);
        memcpy(doc + big - 10, "</request>", 10);
        doc[big] = 0;
        CHECK_EQ(omaha_request_parse(doc, big, &req), -EMSGSIZE);

        /* Deep nesting inside an unknown element. */
        char deep[4096] = "<request protocol=\"3.0\">";
        for (int i = 0; i < 40; i++)
                strcat(deep, "<x>");
        for (int i = 0; i < 40; i++)
                strcat(deep, "</x>");
        strcat(deep, "</request>");
        CHECK_EQ(parse_req(deep, &req), -EMSGSIZE);

        /* Too many apps, too many events. */
        char many[8192] = "<request protocol=\"3.0\">";
        for (int i = 0; i < OMAHA_MAX_APPS + 1; i++)
                strcat(many, "<app appid=\"{a}\"/>");
        strcat(many, "</request>");
        CHECK_EQ(parse_req(many, &req), -EMSGSIZE);
        strcpy(many, "<request protocol=\"3.0\"><app appid=\"{a}\">");
        for (int i = 0; i < OMAHA_MAX_EVENTS + 1; i++)
                strcat(many, "<event eventtype=\"3\" eventresult=\"1\"/>");
        strcat(many, "</app></request>");
        CHECK_EQ(parse_req(many, &req), -EMSGSIZE);

        /* Many elements, each shallow. */
        _cleanup_free_ char *wide = malloc(OMAHA_MAX_DOCUMENT);
        strcpy(wide, "<request protocol=\"3.0\">");
        for (int i = 0; i < 2000; i++)
                strcat(wide, "<y/>");
        strcat(wide, "</request>");
        CHECK_EQ(parse_req(wide, &req), -EMSGSIZE);
}

TEST(ignores_unknown_elements_and_attributes) {
        _cleanup_(omaha_request_done) struct omaha_request req = {};
        const char *doc = "<?xml version=\"1.0\"?><!-- a comment --><request protocol=\"3.0\" future=\"x\">"
                          "<hw physmemory=\"4\"/><app appid=\"{a}\" cohort=\"x\"><data name=\"x\">text</data>"
                          "<updatecheck targetversionprefix=\"1.\"/></app></request>";
        CHECK_EQ(parse_req(doc, &req), 0);
        CHECK_EQ(req.n_apps, 1);
        if (req.n_apps == 1)
                CHECK(req.apps[0].updatecheck);
}

/* Requests are read by SAX callbacks, not a tree: the values and names must come out as the
 * tree gives them (references decoded, a declared prefix ignored, an undeclared one not). */
TEST(request_references_and_prefixes) {
        _cleanup_(omaha_request_done) struct omaha_request req = {};
        const char *doc = "<?xml version=\"1.0\"?><x:request xmlns:x=\"urn:x\" protocol=\"3.0\" version=\"a&amp;b&#38;c&lt;&#x26;\">"
                          "<os version=\"1\"/><os platform=\"p\"/>"
                          "<x:app appid=\"{a}\" u:track=\"no\" x:track=\"t\" track=\"late\" oem=\"&amp;amp;\"><ping/>"
                          "<event eventtype=\"13\" eventresult=\"1\" previousversion=\"1&#10;2\"/></x:app>"
                          "<u:app appid=\"{undeclared prefix}\"/><app appid=\"{b}\"><deeper><ping active=\"1\"/></deeper></app>"
                          "</x:request>";
        CHECK_EQ(parse_req(doc, &req), 0);
        CHECK_STREQ(req.version, "a&b&c<&");
        CHECK_STREQ(req.os_version, "1");
        CHECK_STREQ(req.os_platform, "p");
        CHECK_EQ(req.n_apps, 2);
        if (req.n_apps == 2) {
                CHECK_STREQ(req.apps[0].appid, "{a}");
                CHECK_STREQ(req.apps[0].track, "t");
                CHECK_STREQ(req.apps[0].oem, "&amp;");
                CHECK(req.apps[0].ping);
                CHECK_EQ(req.apps[0].ping_active, 0);
                CHECK_EQ(req.apps[0].n_events, 1);
                if (req.apps[0].n_events == 1)
                        CHECK_STREQ(req.apps[0].events[0].previous_version, "1\n2"); /* a reference, not a blank */
                CHECK_STREQ(req.apps[1].appid, "{b}");
                CHECK(!req.apps[1].ping);
        }
        /* Errors keep their order: well-formedness first, then the limits, then fields. */
        struct omaha_request bad = {};
        CHECK_EQ(parse_req("<request protocol=\"2.0\"><app/></request", &bad), -EBADMSG);
        CHECK_EQ(parse_req("<request protocol=\"2.0\"><app/><a><b><c><d><e><f><g><h><i><j><k><l>"
                           "</l></k></j></i></h></g></f></e></d></c></b></a></request>", &bad),
                 -EMSGSIZE);
        CHECK_EQ(parse_req("<request protocol=\"2.0\"><app/></request>", &bad), -EPROTO);
        CHECK_EQ(parse_req("<request protocol=\"3.0\"><app/><app appid=\"{a}\"/></request>", &bad), -EBADMSG);
        CHECK_EQ(parse_req("<request protocol=\"3.0\"><app appid=\"{a}\"/>\n<!DOCTYPE x></request>", &bad), -EBADMSG);
        CHECK(bad.apps == NULL);
        /* The same thread parses again and again on one context. */
        for (int i = 0; i < 1000; i++) {
                char d[256];
                snprintf(d, sizeof(d), "<request protocol=\"3.0\"><app appid=\"{%d}\" n%d=\"x\"><e%d/></app></request>", i, i, i);
                struct omaha_request r = {};
                CHECK_EQ(parse_req(d, &r), 0);
                omaha_request_done(&r);
        }
}

TEST(event_names) {
        CHECK_STREQ(omaha_event_type_name(3), "update_complete");
        CHECK_STREQ(omaha_event_type_name(13), "download_started");
        CHECK_STREQ(omaha_event_type_name(99), "unknown");
        CHECK_STREQ(omaha_event_result_name(0), "error");
        CHECK_STREQ(omaha_event_result_name(2), "success_reboot");
}
