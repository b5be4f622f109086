/* pivot-admin: publish releases to a pivot-server and steer their rollout.
 *
 * Talks to the server's admin API (HTTP + JSON, bearer token). See --help and
 * server/README.md. Exit codes: 0 success; 1 failure (a local file, the network, a payload
 * that is not one, an error the server answered); 2 usage error; 3 the server refused the
 * token (401). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "hex.h"
#include "log.h"
#include "strbuf.h"
#include "util.h"
#ifdef HAVE_PAYLOAD
#include "payload.h"
#endif

#define DEFAULT_APP "{b9606f32-42ac-4029-aef4-20ed435e8c45}"
#define EXIT_USAGE 2
#define EXIT_AUTH 3
#define DEFAULT_TIMEOUT 60

static const char *server_url, *token_file, *app = DEFAULT_APP;
static char token[256];
static bool json_output;
static long timeout_s = DEFAULT_TIMEOUT;

/* The exit status of a failure, set where it is found: a usage error and the server's refusal
 * of the token have their own, anything else is 1. (An errno cannot tell them apart: a file
 * pivot-admin may not read is EACCES too.) */
static int failure_status = EXIT_FAILURE;

/* Logs a usage error and evaluates to -EINVAL. */
#define usage_error(...)                                                                           \
        ({                                                                                         \
                failure_status = EXIT_USAGE;                                                       \
                log_error(__VA_ARGS__);                                                            \
                -EINVAL;                                                                           \
        })

static void usage(FILE *f) {
        fputs("usage: pivot-admin [--server URL] [--token-file FILE] [--app ID] [--timeout SECONDS]\n"
              "                   COMMAND [ARGS]\n"
              "\n"
              "Commands:\n"
              "  publish PAYLOAD --channel NAME [--rollout PERCENT] [--base-url URL] [--key PUBLIC.pem]\n"
              "        Reads version, sizes and hashes from the signed payload itself, uploads it\n"
              "        (or, with --base-url, registers it as BASE-URL/NAME on a CDN or web server)\n"
              "        and makes it the channel's release (creating the channel if needed).\n"
              "        With --key the payload's signature is checked first.\n"
              "  rollout CHANNEL PERCENT      offer the release to PERCENT of the channel's machines\n"
              "  pause CHANNEL                stop offering updates on the channel\n"
              "  resume CHANNEL               resume, also after a safe-mode halt\n"
              "  policy CHANNEL [--max-inflight N] [--inflight-timeout SECONDS]\n"
              "                 [--safe-min-failures N] [--safe-failure-ratio R]\n"
              "        change the rollout limits (0 in-flight = no limit; safe mode halts at\n"
              "        >= N failures that are >= R of the finished attempts; defaults 5, 0.2)\n"
              "  channel-create NAME          create an empty channel\n"
              "  app-create ID [NAME]         register another application id\n"
              "  status [--json]              per channel: release, rollout, machines, failures\n"
              "  machines [--json] [--channel NAME] [--limit N]\n"
              "  events [--json] [--machine ID] [--limit N]\n"
              "\n"
              "Options:\n"
              "  --server URL       pivot-server base URL (default $PIVOT_SERVER or http://127.0.0.1:8080)\n"
              "  --token-file FILE  admin token file (the server's DATA/admin.token); the token may\n"
              "                     also come from $PIVOT_ADMIN_TOKEN\n"
              "  --app ID           application id (default " DEFAULT_APP ")\n"
              "  --timeout SECONDS  give up on a request after SECONDS (default 60); an upload\n"
              "                     takes as long as it needs, but not SECONDS without progress\n"
              "  --help             show this help\n"
              "\n"
              "Exit status: 0 success; 1 failure (a local file, the network, the server's answer);\n"
              "2 usage error; 3 the server refused the token.\n",
              f);
}

/* --- HTTP --- */

struct response {
        long status;
        struct strbuf body;
};

static size_t on_data(char *p, size_t size, size_t n, void *userdata) {
        struct response *r = userdata;
        strbuf_put(&r->body, p, size * n);
        return r->body.oom ? 0 : size * n;
}

static void curl_easy_cleanupp(CURL **c) {
        if (*c)
                curl_easy_cleanup(*c);
}
static void curl_slist_freep(struct curl_slist **l) {
        if (*l)
                curl_slist_free_all(*l);
}
#define _cleanup_json_ _cleanup_(json_decrefp)

/* Sends a request; body_json (may be NULL) is sent as JSON, upload_fd (>= 0) as the raw body.
 * On success *ret is the parsed JSON answer. Errors are printed here. */
static int api(const char *method, const char *path, json_t *body_json, int upload_fd, uint64_t upload_size,
               const char *extra_header, json_t **ret) {
        _cleanup_(curl_easy_cleanupp) CURL *c = curl_easy_init();
        _cleanup_(curl_slist_freep) struct curl_slist *h = NULL;
        _cleanup_free_ char *url = NULL, *auth = NULL, *payload = NULL;
        _cleanup_fclose_ FILE *upload = NULL;
        struct response resp = {};

        if (!c)
                return log_error_errno(-ENOMEM, "Cannot set up libcurl");
        size_t l = strlen(server_url);
        if (asprintf(&url, "%s%s", server_url, path + (l && server_url[l - 1] == '/')) < 0 ||
            asprintf(&auth, "Authorization: Bearer %s", token) < 0)
                return -ENOMEM;
        h = curl_slist_append(h, auth);
        if (extra_header)
                h = curl_slist_append(h, extra_header);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, timeout_s);
        /* Whatever the request: fail when nothing moves (below a byte a second) for the timeout,
         * as with a server that accepts and never answers. */
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, timeout_s);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        if (body_json) {
                payload = json_dumps(body_json, JSON_COMPACT);
                if (!payload)
                        return -ENOMEM;
                h = curl_slist_append(h, "Content-Type: application/json");
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload);
        } else if (upload_fd >= 0) {
                upload = fdopen(upload_fd, "rb");
                if (!upload)
                        return -errno;
                h = curl_slist_append(h, "Content-Type: application/octet-stream");
                h = curl_slist_append(h, "Expect:");
                curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
                curl_easy_setopt(c, CURLOPT_READDATA, upload);
                curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)upload_size);
        } else if (!strcmp(method, "POST"))
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, "{}");
        /* An upload of gigabytes is bounded by its progress alone, every other call by time. */
        if (upload_fd < 0)
                curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout_s);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);

        CURLcode cc = curl_easy_perform(c);
        if (cc != CURLE_OK) {
                strbuf_done(&resp.body);
                log_error("%s %s: %s", method, url, curl_easy_strerror(cc));
                return -ECONNREFUSED;
        }
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp.status);
        json_error_t err;
        json_t *j = resp.body.data ? json_loads(resp.body.data, 0, &err) : NULL;
        if (resp.status == 401) {
                failure_status = EXIT_AUTH;
                log_error("the server refused the admin token (check --token-file or PIVOT_ADMIN_TOKEN)");
                strbuf_done(&resp.body);
                json_decref(j);
                return -EACCES;
        }
        if (resp.status < 200 || resp.status >= 300) {
                const char *msg = json_string_value(json_object_get(j, "error"));
                log_error("%s %s: HTTP %ld: %s", method, path, resp.status,
                          msg ? msg : resp.body.data ? resp.body.data : "");
                strbuf_done(&resp.body);
                json_decref(j);
                return resp.status == 404 ? -ENOENT : resp.status == 409 ? -EEXIST : -EIO;
        }
        strbuf_done(&resp.body);
        if (!j)
                return log_error_errno(-EBADMSG, "%s %s: the server's answer is not JSON", method, path);
        if (ret)
                *ret = j;
        else
                json_decref(j);
        return 0;
}

static void app_url_name(const char *a, char *out, size_t size) {
        size_t n = 0;
        for (const char *p = a; *p && n + 1 < size; p++)
                if (*p != '{' && *p != '}')
                        out[n++] = *p;
        out[n] = 0;
}

static char *path_with_app(const char *fmt, const char *arg) {
        CURL *c = curl_easy_init();
        char *eapp = curl_easy_escape(c, app, 0), *earg = arg ? curl_easy_escape(c, arg, 0) : NULL, *p = NULL, *q = NULL;
        if (asprintf(&p, fmt, earg ? earg : "") < 0)
                p = NULL;
        if (p && asprintf(&q, "%s%sapp=%s", p, strchr(p, '?') ? "&" : "?", eapp) < 0)
                q = NULL;
        free(p);
        curl_free(eapp);
        curl_free(earg);
        curl_easy_cleanup(c);
        return q;
}

/* --- output --- */

static void print_json(json_t *j) {
        char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
        if (s)
                puts(s);
        free(s);
}

static void print_channel(json_t *c) {
        json_t *rel = json_object_get(c, "release"), *ro = json_object_get(c, "rollout"),
               *m = json_object_get(c, "machines"), *att = json_object_get(c, "attempts");
        const char *state = json_is_true(json_object_get(ro, "halted"))   ? "HALTED"
                            : json_is_true(json_object_get(ro, "paused")) ? "paused"
                            : json_is_object(rel)                         ? "active"
                                                                          : "no release";
        printf("channel %s (%s)\n", json_string_value(json_object_get(c, "name")),
               json_string_value(json_object_get(c, "app")));
        if (json_is_object(rel))
                printf("  release   %s  %s, %" JSON_INTEGER_FORMAT " bytes, sha256 %.16s...\n",
                       json_string_value(json_object_get(rel, "version")),
                       json_is_true(json_object_get(rel, "hosted")) ? "hosted here"
                                                                    : json_string_value(json_object_get(rel, "base_url")),
                       json_integer_value(json_object_get(rel, "size")),
                       json_string_value(json_object_get(rel, "sha256")));
        else
                printf("  release   none\n");
        printf("  rollout   %g%%  %s", json_number_value(json_object_get(ro, "percent")), state);
        if (json_is_string(json_object_get(ro, "halt_reason")))
                printf(" (%s)", json_string_value(json_object_get(ro, "halt_reason")));
        printf("\n  policy    max in flight %" JSON_INTEGER_FORMAT ", safe mode at >= %" JSON_INTEGER_FORMAT
               " failures and >= %g%%\n",
               json_integer_value(json_object_get(ro, "max_inflight")),
               json_integer_value(json_object_get(ro, "safe_min_failures")),
               100 * json_number_value(json_object_get(ro, "safe_failure_ratio")));
        printf("  machines  %" JSON_INTEGER_FORMAT " total;", json_integer_value(json_object_get(m, "total")));
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(m, "by_version"), k, v) printf(" %s: %" JSON_INTEGER_FORMAT ";", k,
                                                                           json_integer_value(v));
        printf("\n  states   ");
        json_object_foreach(json_object_get(m, "by_state"), k, v) printf(" %s: %" JSON_INTEGER_FORMAT ";", k,
                                                                         json_integer_value(v));
        printf("\n");
        if (json_object_size(att))
                printf("  attempts  %" JSON_INTEGER_FORMAT " granted, %" JSON_INTEGER_FORMAT " in flight, %" JSON_INTEGER_FORMAT
                       " complete, %" JSON_INTEGER_FORMAT " failed (%" JSON_INTEGER_FORMAT " rolled back)\n",
                       json_integer_value(json_object_get(att, "granted")),
                       json_integer_value(json_object_get(att, "inflight")),
                       json_integer_value(json_object_get(att, "complete")),
                       json_integer_value(json_object_get(att, "failed")),
                       json_integer_value(json_object_get(att, "rolledback")));
}

static int show_channel_result(json_t *c) {
        if (json_output)
                print_json(c);
        else
                print_channel(c);
        return 0;
}

/* --- publish --- */

static int hash_file(int fd, char sha1_hex[41], char sha256_hex[65], uint64_t *ret_size) {
        EVP_MD_CTX *a = EVP_MD_CTX_new(), *b = EVP_MD_CTX_new();
        uint8_t buf[1 << 16], md[32];
        uint64_t total = 0;
        int r = 0;

        if (!a || !b || !EVP_DigestInit_ex(a, EVP_sha1(), NULL) || !EVP_DigestInit_ex(b, EVP_sha256(), NULL))
                r = -ENOMEM;
        while (r == 0) {
                ssize_t n = pread(fd, buf, sizeof(buf), total);
                if (n < 0) {
                        r = negative_errno();
                        break;
                }
                if (n == 0)
                        break;
                EVP_DigestUpdate(a, buf, n);
                EVP_DigestUpdate(b, buf, n);
                total += n;
        }
        if (r == 0) {
                unsigned l;
                EVP_DigestFinal_ex(a, md, &l);
                hex_encode(md, 20, sha1_hex);
                EVP_DigestFinal_ex(b, md, &l);
                hex_encode(md, 32, sha256_hex);
                *ret_size = total;
        }
        EVP_MD_CTX_free(a);
        EVP_MD_CTX_free(b);
        return r;
}

/* What the signed manifest says, as JSON for the release record. */
static int read_manifest(const char *path, const char *key_path, char **ret_version, json_t **ret_manifest) {
#ifdef HAVE_PAYLOAD
        struct payload_key *key = NULL;
        struct payload_manifest m = {};
        int r;

        if (key_path) {
                r = payload_key_load_public(key_path, &key);
                if (r < 0)
                        return log_error_errno(r, "Cannot load public key %s: %m", key_path);
        }
        r = payload_open_file(path, key, &m, NULL);
        payload_key_free(key);
        if (r == -EKEYREJECTED)
                return log_error_errno(r, "%s: the signature does not verify with %s", path, key_path);
        if (r < 0)
                return log_error_errno(r, "%s is not a readable Pivot payload: %m", path);
        char kid[2 * PAYLOAD_KEY_ID_SIZE + 1], roothash[PAYLOAD_MAX_ROOTHASH_LEN + 1];
        hex_encode(m.key_id, PAYLOAD_KEY_ID_SIZE, kid);
        snprintf(roothash, sizeof(roothash), "%s", m.verity_roothash ? m.verity_roothash : "");
        json_t *j = json_object(), *images = json_object();
        json_object_set_new(j, "version", json_string(m.version));
        json_object_set_new(j, "min_version", m.min_version ? json_string(m.min_version) : json_null());
        json_object_set_new(j, "verity_roothash", json_string(roothash));
        json_object_set_new(j, "key_id", json_string(kid));
        json_object_set_new(j, "signature_checked", json_boolean(key_path != NULL));
        json_object_set_new(j, "chunk_size", json_integer(m.chunk_size));
        json_object_set_new(j, "chunks", json_integer(m.n_chunks));
        json_object_set_new(j, "payload_size", json_integer(m.payload_size));
        for (int i = 0; i < PAYLOAD_IMAGE_MAX; i++) {
                char h[65];
                hex_encode(m.images[i].sha256, 32, h);
                json_object_set_new(images, payload_image_name(i),
                                    json_pack("{s:I,s:s}", "size", (json_int_t)m.images[i].size, "sha256", h));
        }
        json_object_set_new(j, "images", images);
        *ret_version = strdup(m.version);
        payload_manifest_done(&m);
        *ret_manifest = j;
        return *ret_version ? 0 : -ENOMEM;
#else
        return log_error_errno(-EOPNOTSUPP, "this pivot-admin was built without lib/payload.c and cannot read %s",
                               path);
#endif
}

static int cmd_publish(int argc, char **argv) {
        static const char usage_line[] =
                "usage: publish PAYLOAD --channel NAME [--rollout PERCENT] [--base-url URL] [--key PUBLIC.pem]";
        static const struct option opts[] = {
                { "channel", required_argument, NULL, 'c' }, { "rollout", required_argument, NULL, 'r' },
                { "base-url", required_argument, NULL, 'b' }, { "key", required_argument, NULL, 'k' },
                {},
        };
        const char *channel = NULL, *base_url = NULL, *key = NULL;
        double rollout = -1;
        int c, r;

        optind = 0; /* 0: glibc starts over (after the global options were parsed with "+") */
        while ((c = getopt_long(argc, argv, "", opts, NULL)) >= 0) {
                switch (c) {
                case 'c': channel = optarg; break;
                case 'b': base_url = optarg; break;
                case 'k': key = optarg; break;
                case 'r': {
                        char *end;
                        rollout = strtod(optarg, &end);
                        if (*end || !(rollout >= 0 && rollout <= 100))
                                return usage_error("--rollout takes a percentage, 0 to 100");
                        break;
                }
                default: return usage_error("%s", usage_line);
                }
        }
        if (optind + 1 != argc || !channel)
                return usage_error("%s", usage_line);
        const char *path = argv[optind];
        _cleanup_free_ char *version = NULL;
        _cleanup_json_ json_t *manifest = NULL;
        r = read_manifest(path, key, &version, &manifest);
        if (r < 0)
                return r;

        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return log_error_errno(negative_errno(), "Cannot open %s: %m", path);
        char sha1[41], sha256[65];
        uint64_t size;
        r = hash_file(fd, sha1, sha256, &size);
        if (r < 0)
                return log_error_errno(r, "Cannot read %s: %m", path);
        _cleanup_free_ char *pathcopy = strdup(path);
        const char *name = basename(pathcopy);

        if (!base_url) {
                char appname[128], hdr[100];
                _cleanup_free_ char *upath = NULL;
                app_url_name(app, appname, sizeof(appname));
                if (asprintf(&upath, "/api/v1/payloads/%s/%s/%s", appname, version, name) < 0)
                        return -ENOMEM;
                snprintf(hdr, sizeof(hdr), "X-Pivot-SHA256: %s", sha256);
                fprintf(stderr, "uploading %s (%" PRIu64 " bytes) ...\n", name, size);
                r = api("PUT", upath, NULL, TAKE_FD(fd), size, hdr, NULL);
                if (r < 0)
                        return r;
        }
        _cleanup_json_ json_t *body = json_pack("{s:s,s:s,s:s,s:I,s:s,s:s,s:s,s:O}", "app", app, "version", version,
                                                "package_name", name, "size", (json_int_t)size, "sha1", sha1, "sha256",
                                                sha256, "channel", channel, "manifest", manifest);
        if (base_url)
                json_object_set_new(body, "base_url", json_string(base_url));
        if (rollout >= 0)
                json_object_set_new(body, "rollout", json_real(rollout));
        _cleanup_json_ json_t *res = NULL;
        r = api("POST", "/api/v1/releases", body, -1, 0, NULL, &res);
        if (r < 0)
                return r;
        fprintf(stderr, "published %s on channel %s\n", version, channel);
        return show_channel_result(res);
}

/* --- the other commands --- */

static int channel_action(const char *channel, const char *action, json_t *body) {
        _cleanup_free_ char *path = NULL;
        _cleanup_json_ json_t *res = NULL;
        CURL *c = curl_easy_init();
        char *e = curl_easy_escape(c, channel, 0);
        int r = asprintf(&path, "/api/v1/channels/%s/%s", e, action);
        curl_free(e);
        curl_easy_cleanup(c);
        if (r < 0)
                return -ENOMEM;
        _cleanup_json_ json_t *b = body ? json_incref(body) : json_object();
        json_object_set_new(b, "app", json_string(app));
        r = api("POST", path, b, -1, 0, NULL, &res);
        if (r < 0)
                return r;
        return show_channel_result(res);
}

static int parse_output_flags(int argc, char **argv, const char **channel, const char **machine, const char **limit) {
        static const struct option opts[] = {
                { "json", no_argument, NULL, 'j' },
                { "channel", required_argument, NULL, 'c' },
                { "machine", required_argument, NULL, 'm' },
                { "limit", required_argument, NULL, 'n' },
                {},
        };
        int c;
        optind = 0; /* 0: glibc starts over (after the global options were parsed with "+") */
        while ((c = getopt_long(argc, argv, "", opts, NULL)) >= 0) {
                switch (c) {
                case 'j': json_output = true; break;
                case 'c': if (!channel) return -EINVAL; *channel = optarg; break;
                case 'm': if (!machine) return -EINVAL; *machine = optarg; break;
                case 'n':
                        /* A number: it goes into a URL (and a format) as it is. */
                        if (!limit || !*optarg || strspn(optarg, "0123456789") != strlen(optarg) ||
                            strlen(optarg) > 9)
                                return -EINVAL;
                        *limit = optarg;
                        break;
                default: return -EINVAL;
                }
        }
        return optind == argc ? 0 : -EINVAL;
}

static int cmd_status(int argc, char **argv) {
        _cleanup_json_ json_t *res = NULL;
        if (parse_output_flags(argc, argv, NULL, NULL, NULL) < 0)
                return usage_error("usage: status [--json]");
        int r = api("GET", "/api/v1/status", NULL, -1, 0, NULL, &res);
        if (r < 0)
                return r;
        if (json_output) {
                print_json(res);
                return 0;
        }
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(res, "channels"), i, c) {
                if (i)
                        putchar('\n');
                print_channel(c);
        }
        if (!json_array_size(json_object_get(res, "channels")))
                printf("no channels yet: publish a release first\n");
        return 0;
}

static void fmt_age(json_int_t t, char *out, size_t n) {
        long long age = (long long)time(NULL) - t;
        if (age < 120)
                snprintf(out, n, "%llds ago", age);
        else if (age < 7200)
                snprintf(out, n, "%lldm ago", age / 60);
        else
                snprintf(out, n, "%lldh ago", age / 3600);
}

static int cmd_machines(int argc, char **argv) {
        const char *channel = NULL, *limit = NULL;
        _cleanup_json_ json_t *res = NULL;
        _cleanup_free_ char *path = NULL, *q = NULL;
        if (parse_output_flags(argc, argv, &channel, NULL, &limit) < 0)
                return usage_error("usage: machines [--json] [--channel NAME] [--limit N]");
        if (asprintf(&q, "/api/v1/machines?limit=%s%s%%s", limit ? limit : "1000", channel ? "&channel=" : "") < 0)
                return -ENOMEM;
        path = path_with_app(q, channel);
        int r = api("GET", path, NULL, -1, 0, NULL, &res);
        if (r < 0)
                return r;
        if (json_output) {
                print_json(res);
                return 0;
        }
        printf("%-34s %-10s %-12s %-12s %-12s %s\n", "MACHINE", "CHANNEL", "VERSION", "STATE", "TARGET", "LAST CHECK-IN");
        size_t i;
        json_t *m;
        json_array_foreach(json_object_get(res, "machines"), i, m) {
                char age[32];
                fmt_age(json_integer_value(json_object_get(m, "last_checkin")), age, sizeof(age));
                const char *t = json_string_value(json_object_get(m, "target_version"));
                printf("%-34s %-10s %-12s %-12s %-12s %s\n", json_string_value(json_object_get(m, "id")),
                       json_string_value(json_object_get(m, "channel")) ?: "-",
                       json_string_value(json_object_get(m, "version")) ?: "-",
                       json_string_value(json_object_get(m, "state")) ?: "-", t ? t : "-", age);
        }
        return 0;
}

static int cmd_events(int argc, char **argv) {
        const char *machine = NULL, *limit = NULL;
        _cleanup_json_ json_t *res = NULL;
        _cleanup_free_ char *path = NULL, *q = NULL;
        if (parse_output_flags(argc, argv, NULL, &machine, &limit) < 0)
                return usage_error("usage: events [--json] [--machine ID] [--limit N]");
        if (asprintf(&q, "/api/v1/events?limit=%s%s%%s", limit ? limit : "100", machine ? "&machine=" : "") < 0)
                return -ENOMEM;
        path = path_with_app(q, machine);
        int r = api("GET", path, NULL, -1, 0, NULL, &res);
        if (r < 0)
                return r;
        if (json_output) {
                print_json(res);
                return 0;
        }
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(res, "events"), i, e) {
                char age[32];
                fmt_age(json_integer_value(json_object_get(e, "time")), age, sizeof(age));
                printf("%-10s %-34s type %2" JSON_INTEGER_FORMAT " result %" JSON_INTEGER_FORMAT " error %-5" JSON_INTEGER_FORMAT
                       " version %s -> %s\n",
                       age, json_string_value(json_object_get(e, "machine")), json_integer_value(json_object_get(e, "type")),
                       json_integer_value(json_object_get(e, "result")),
                       json_integer_value(json_object_get(e, "error_code")),
                       json_string_value(json_object_get(e, "version")) ?: "-",
                       json_string_value(json_object_get(e, "target_version")) ?: "-");
        }
        return 0;
}

static int cmd_policy(int argc, char **argv) {
        static const char usage_line[] = "usage: policy CHANNEL [--max-inflight N] [--inflight-timeout S]"
                                         " [--safe-min-failures N] [--safe-failure-ratio R]";
        static const struct option opts[] = {
                { "max-inflight", required_argument, NULL, 'm' },
                { "inflight-timeout", required_argument, NULL, 't' },
                { "safe-min-failures", required_argument, NULL, 'f' },
                { "safe-failure-ratio", required_argument, NULL, 'r' },
                { "json", no_argument, NULL, 'j' },
                {},
        };
        _cleanup_json_ json_t *b = json_object();
        int c;
        optind = 0; /* 0: glibc starts over (after the global options were parsed with "+") */
        while ((c = getopt_long(argc, argv, "", opts, NULL)) >= 0) {
                char *end;
                switch (c) {
                case 'm':
                case 't':
                case 'f': {
                        long long v = strtoll(optarg, &end, 10);
                        if (*end || v < 0)
                                return usage_error("%s takes a non-negative integer", argv[optind - 1]);
                        json_object_set_new(b, c == 'm' ? "max_inflight" : c == 't' ? "inflight_timeout" : "safe_min_failures",
                                            json_integer(v));
                        break;
                }
                case 'r': {
                        double v = strtod(optarg, &end);
                        if (*end || !(v >= 0 && v <= 1))
                                return usage_error("--safe-failure-ratio takes a number from 0 to 1");
                        json_object_set_new(b, "safe_failure_ratio", json_real(v));
                        break;
                }
                case 'j': json_output = true; break;
                default: return usage_error("%s", usage_line);
                }
        }
        if (optind + 1 != argc)
                return usage_error("%s", usage_line);
        return channel_action(argv[optind], "policy", b);
}

int main(int argc, char **argv) {
        static const struct option opts[] = {
                { "server", required_argument, NULL, 's' },
                { "token-file", required_argument, NULL, 't' },
                { "app", required_argument, NULL, 'a' },
                { "timeout", required_argument, NULL, 'T' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        int c, r;

        log_set_program("pivot-admin");
        server_url = getenv("PIVOT_SERVER") ?: "http://127.0.0.1:8080";
        /* Options before the command; the command parses its own. */
        while ((c = getopt_long(argc, argv, "+h", opts, NULL)) >= 0) {
                switch (c) {
                case 's': server_url = optarg; break;
                case 't': token_file = optarg; break;
                case 'a': app = optarg; break;
                case 'T': {
                        char *end;
                        errno = 0;
                        timeout_s = strtol(optarg, &end, 10);
                        if (errno || end == optarg || *end || timeout_s < 1 || timeout_s > 86400) {
                                log_error("--timeout takes a number of seconds, 1 to 86400");
                                return EXIT_USAGE;
                        }
                        break;
                }
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return EXIT_USAGE;
                }
        }
        if (optind >= argc) {
                usage(stderr);
                return EXIT_USAGE;
        }
        const char *cmd = argv[optind];
        char **args = argv + optind;
        int nargs = argc - optind;

        /* The token is the text without the whitespace around it, as the server reads its file. */
        char text[sizeof(token)] = "";
        if (token_file) {
                _cleanup_fclose_ FILE *f = fopen(token_file, "re");
                if (!f || (fread(text, 1, sizeof(text) - 1, f) == 0 && ferror(f))) {
                        log_error("cannot read the token from %s: %m", token_file);
                        return EXIT_FAILURE;
                }
        } else if (getenv("PIVOT_ADMIN_TOKEN"))
                snprintf(text, sizeof(text), "%s", getenv("PIVOT_ADMIN_TOKEN"));
        else {
                log_error("no admin token: pass --token-file DATA/admin.token or set PIVOT_ADMIN_TOKEN");
                return EXIT_USAGE;
        }
        snprintf(token, sizeof(token), "%s", str_strip(text));
        if (!*token) {
                log_error("no admin token in %s", token_file ? token_file : "PIVOT_ADMIN_TOKEN");
                return EXIT_FAILURE;
        }

        curl_global_init(CURL_GLOBAL_DEFAULT);
        if (!strcmp(cmd, "publish"))
                r = cmd_publish(nargs, args);
        else if (!strcmp(cmd, "rollout") && nargs == 3) {
                char *end;
                double p = strtod(args[2], &end);
                if (*end || !(p >= 0 && p <= 100))
                        r = usage_error("PERCENT must be a number from 0 to 100");
                else {
                        _cleanup_json_ json_t *b = json_pack("{s:f}", "percent", p);
                        r = channel_action(args[1], "rollout", b);
                }
        } else if ((!strcmp(cmd, "pause") || !strcmp(cmd, "resume")) && nargs == 2)
                r = channel_action(args[1], cmd, NULL);
        else if (!strcmp(cmd, "policy"))
                r = cmd_policy(nargs, args);
        else if (!strcmp(cmd, "status"))
                r = cmd_status(nargs, args);
        else if (!strcmp(cmd, "machines"))
                r = cmd_machines(nargs, args);
        else if (!strcmp(cmd, "events"))
                r = cmd_events(nargs, args);
        else if (!strcmp(cmd, "channel-create") && nargs == 2) {
                _cleanup_json_ json_t *b = json_pack("{s:s,s:s}", "name", args[1], "app", app), *res = NULL;
                r = api("POST", "/api/v1/channels", b, -1, 0, NULL, &res);
                if (r >= 0)
                        r = show_channel_result(res);
        } else if (!strcmp(cmd, "app-create") && (nargs == 2 || nargs == 3)) {
                _cleanup_json_ json_t *b = json_pack("{s:s,s:s}", "id", args[1], "name", nargs == 3 ? args[2] : args[1]);
                r = api("POST", "/api/v1/apps", b, -1, 0, NULL, NULL);
                if (r >= 0)
                        printf("application %s registered\n", args[1]);
        } else
                r = usage_error("unknown command or wrong arguments: %s (see --help)", cmd);
        curl_global_cleanup();
        return r < 0 ? failure_status : EXIT_SUCCESS;
}
