/* Omaha v3 requests and responses: building (plain string output), and freeing what a parse
 * made. Parsing, the one part that needs libxml2, is omaha-parse.c. See omaha.h. */
#include "omaha.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "hex.h"

/* ---- output buffer ------------------------------------------------------------------- */

struct buf {
        char *data;
        size_t len, size;
        bool oom;
};

static void buf_grow(struct buf *b, size_t more) {
        if (b->oom)
                return;
        if (b->len + more + 1 <= b->size)
                return;
        size_t size = b->size ? b->size : 1024;
        while (size < b->len + more + 1)
                size *= 2;
        char *p = realloc(b->data, size);
        if (!p) {
                b->oom = true;
                return;
        }
        b->data = p;
        b->size = size;
}

static void buf_put(struct buf *b, const char *s, size_t n) {
        buf_grow(b, n);
        if (b->oom)
                return;
        memcpy(b->data + b->len, s, n);
        b->len += n;
        b->data[b->len] = 0;
}

static void buf_puts(struct buf *b, const char *s) {
        buf_put(b, s, strlen(s));
}

/* Characters an attribute value cannot hold as they are: 1 escaped, 2 dropped (the other
 * control characters, not allowed in XML 1.0 at all). */
static const uint8_t attr_special[256] = {
        [1] = 2, [2] = 2, [3] = 2, [4] = 2, [5] = 2, [6] = 2, [7] = 2, [8] = 2, ['\t'] = 1, ['\n'] = 1,
        [11] = 2, [12] = 2, ['\r'] = 1, [14] = 2, [15] = 2, [16] = 2, [17] = 2, [18] = 2, [19] = 2, [20] = 2,
        [21] = 2, [22] = 2, [23] = 2, [24] = 2, [25] = 2, [26] = 2, [27] = 2, [28] = 2, [29] = 2, [30] = 2,
        [31] = 2, ['&'] = 1, ['<'] = 1, ['>'] = 1, ['"'] = 1, ['\''] = 1,
};

/* Appends ` name="value"` with value escaped for an attribute. NULL value: nothing. */
static void buf_attr(struct buf *b, const char *name, const char *value) {
        if (!value)
                return;
        buf_puts(b, " ");
        buf_puts(b, name);
        buf_puts(b, "=\"");
        const char *run = value, *p = value;
        for (;; p++) {
                uint8_t c = (uint8_t)*p, k = attr_special[c];
                if (c && !k)
                        continue;
                buf_put(b, run, p - run);
                if (!c)
                        break;
                run = p + 1;
                if (k == 2)
                        continue;
                switch (c) {
                case '&': buf_puts(b, "&amp;"); break;
                case '<': buf_puts(b, "&lt;"); break;
                case '>': buf_puts(b, "&gt;"); break;
                case '"': buf_puts(b, "&quot;"); break;
                case '\'': buf_puts(b, "&apos;"); break;
                case '\n': buf_puts(b, "&#10;"); break;
                case '\r': buf_puts(b, "&#13;"); break;
                case '\t': buf_puts(b, "&#9;"); break;
                }
        }
        buf_puts(b, "\"");
}

static void buf_attr_int(struct buf *b, const char *name, long long v) {
        char s[24], *p = s + sizeof(s);
        unsigned long long u = v < 0 ? -(unsigned long long)v : (unsigned long long)v;
        *--p = 0;
        do
                *--p = (char)('0' + u % 10);
        while (u /= 10);
        if (v < 0)
                *--p = '-';
        buf_attr(b, name, p);
}

static int buf_finish(struct buf *b, char **ret_xml, size_t *ret_len) {
        if (b->oom) {
                free(b->data);
                return -ENOMEM;
        }
        *ret_xml = b->data;
        if (ret_len)
                *ret_len = b->len;
        return 0;
}

/* ---- building ------------------------------------------------------------------------ */

int omaha_request_build(const struct omaha_request *req, char **ret_xml, size_t *ret_len) {
        struct buf b = {};

        buf_puts(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<request");
        buf_attr(&b, "protocol", req->protocol ? req->protocol : "3.0");
        buf_attr(&b, "version", req->version);
        buf_attr(&b, "updaterversion", req->updaterversion);
        buf_attr(&b, "installsource", req->installsource);
        buf_attr(&b, "ismachine", req->ismachine ? "1" : "0");
        buf_puts(&b, ">\n <os");
        buf_attr(&b, "version", req->os_version);
        buf_attr(&b, "platform", req->os_platform);
        buf_attr(&b, "sp", req->os_sp);
        buf_attr(&b, "arch", req->os_arch);
        buf_puts(&b, "></os>\n");
        for (size_t i = 0; i < req->n_apps; i++) {
                const struct omaha_app_request *a = &req->apps[i];
                buf_puts(&b, " <app");
                buf_attr(&b, "appid", a->appid);
                buf_attr(&b, "version", a->version);
                buf_attr(&b, "track", a->track);
                buf_attr(&b, "bootid", a->bootid);
                buf_attr(&b, "machineid", a->machineid);
                buf_attr(&b, "oem", a->oem);
                buf_attr(&b, "alephversion", a->alephversion);
                buf_attr(&b, "lang", a->lang);
                buf_attr(&b, "board", a->board);
                buf_attr(&b, "delta_okay", a->delta_okay ? "true" : "false");
                buf_puts(&b, ">\n");
                if (a->ping) {
                        buf_puts(&b, "  <ping");
                        buf_attr_int(&b, "active", a->ping_active);
                        buf_puts(&b, "></ping>\n");
                }
                if (a->updatecheck)
                        buf_puts(&b, "  <updatecheck></updatecheck>\n");
                for (size_t k = 0; k < a->n_events; k++) {
                        const struct omaha_event *e = &a->events[k];
                        buf_puts(&b, "  <event");
                        buf_attr_int(&b, "eventtype", e->type);
                        buf_attr_int(&b, "eventresult", e->result);
                        if (e->error_code)
                                buf_attr_int(&b, "errorcode", e->error_code);
                        buf_attr(&b, "previousversion", e->previous_version);
                        buf_attr(&b, "nextversion", e->next_version);
                        buf_puts(&b, "></event>\n");
                }
                buf_puts(&b, " </app>\n");
        }
        buf_puts(&b, "</request>\n");
        return buf_finish(&b, ret_xml, ret_len);
}

static void build_manifest(struct buf *b, const struct omaha_app_response *a) {
        buf_puts(b, "   <urls>");
        for (size_t i = 0; i < a->n_urls; i++) {
                buf_puts(b, "<url");
                buf_attr(b, "codebase", a->urls[i]);
                buf_puts(b, "></url>");
        }
        buf_puts(b, "</urls>\n   <manifest");
        buf_attr(b, "version", a->manifest_version);
        buf_puts(b, ">\n    <packages>");
        for (size_t i = 0; i < a->n_packages; i++) {
                const struct omaha_package *p = &a->packages[i];
                char s[65];
                buf_puts(b, "<package");
                buf_attr(b, "name", p->name);
                if (p->has_sha1) {
                        base64_encode(p->sha1, sizeof(p->sha1), s);
                        buf_attr(b, "hash", s);
                }
                if (p->has_sha256) {
                        hex_encode(p->sha256, sizeof(p->sha256), s);
                        buf_attr(b, "hash_sha256", s);
                }
                buf_attr_int(b, "size", (long long)p->size);
                buf_attr(b, "required", p->required ? "true" : "false");
                buf_puts(b, "></package>");
        }
        buf_puts(b, "</packages>\n");
        if (a->postinstall) {
                char s[64];
                buf_puts(b, "    <actions><action event=\"postinstall\"");
                if (a->has_postinstall_sha256) {
                        base64_encode(a->postinstall_sha256, sizeof(a->postinstall_sha256), s);
                        buf_attr(b, "sha256", s);
                }
                buf_puts(b, " needsadmin=\"false\" IsDeltaPayload=\"false\"");
                buf_attr(b, "DisablePayloadBackoff", a->disable_payload_backoff ? "true" : "false");
                buf_puts(b, "></action></actions>\n");
        }
        buf_puts(b, "   </manifest>\n");
}

int omaha_response_build(const struct omaha_response *resp, char **ret_xml, size_t *ret_len) {
        struct buf b = {};

        buf_puts(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<response");
        buf_attr(&b, "protocol", resp->protocol ? resp->protocol : "3.0");
        buf_attr(&b, "server", resp->server);
        buf_puts(&b, ">\n <daystart");
        buf_attr_int(&b, "elapsed_seconds", resp->daystart_elapsed_seconds);
        buf_puts(&b, "></daystart>\n");
        for (size_t i = 0; i < resp->n_apps; i++) {
                const struct omaha_app_response *a = &resp->apps[i];
                buf_puts(&b, " <app");
                buf_attr(&b, "appid", a->appid);
                buf_attr(&b, "status", a->status ? a->status : "ok");
                buf_puts(&b, ">\n");
                for (size_t k = 0; k < a->n_events; k++)
                        buf_puts(&b, "  <event status=\"ok\"></event>\n");
                if (a->ping)
                        buf_puts(&b, "  <ping status=\"ok\"></ping>\n");
                if (a->updatecheck) {
                        buf_puts(&b, "  <updatecheck");
                        buf_attr(&b, "status", a->updatecheck);
                        if (strcmp(a->updatecheck, "ok") == 0) {
                                buf_puts(&b, ">\n");
                                build_manifest(&b, a);
                                buf_puts(&b, "  </updatecheck>\n");
                        } else
                                buf_puts(&b, "></updatecheck>\n");
                }
                buf_puts(&b, " </app>\n");
        }
        buf_puts(&b, "</response>\n");
        return buf_finish(&b, ret_xml, ret_len);
}

/* ---- freeing ------------------------------------------------------------------------- */

void omaha_request_done(struct omaha_request *req) {
        free(req->protocol);
        free(req->version);
        free(req->updaterversion);
        free(req->installsource);
        free(req->os_version);
        free(req->os_platform);
        free(req->os_sp);
        free(req->os_arch);
        for (size_t i = 0; i < req->n_apps; i++) {
                struct omaha_app_request *a = &req->apps[i];
                free(a->appid);
                free(a->version);
                free(a->track);
                free(a->bootid);
                free(a->machineid);
                free(a->oem);
                free(a->alephversion);
                free(a->lang);
                free(a->board);
                for (size_t k = 0; k < a->n_events; k++) {
                        free(a->events[k].previous_version);
                        free(a->events[k].next_version);
                }
                free(a->events);
        }
        free(req->apps);
        *req = (struct omaha_request){};
}

void omaha_response_done(struct omaha_response *resp) {
        free(resp->protocol);
        free(resp->server);
        for (size_t i = 0; i < resp->n_apps; i++) {
                struct omaha_app_response *a = &resp->apps[i];
                free(a->appid);
                free(a->status);
                free(a->updatecheck);
                for (size_t k = 0; k < a->n_urls; k++)
                        free(a->urls[k]);
                free(a->urls);
                free(a->manifest_version);
                for (size_t k = 0; k < a->n_packages; k++)
                        free(a->packages[k].name);
                free(a->packages);
        }
        free(resp->apps);
        *resp = (struct omaha_response){};
}

const char *omaha_event_type_name(int type) {
        switch (type) {
        case OMAHA_EVENT_UPDATE_COMPLETE: return "update_complete";
        case OMAHA_EVENT_DOWNLOAD_STARTED: return "download_started";
        case OMAHA_EVENT_DOWNLOAD_FINISHED: return "download_finished";
        default: return "unknown";
        }
}

const char *omaha_event_result_name(int result) {
        switch (result) {
        case OMAHA_RESULT_ERROR: return "error";
        case OMAHA_RESULT_SUCCESS: return "success";
        case OMAHA_RESULT_SUCCESS_REBOOT: return "success_reboot";
        case OMAHA_RESULT_DEFERRED: return "deferred";
        default: return "unknown";
        }
}
