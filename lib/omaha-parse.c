/* Omaha v3: hardened parsing (libxml2: a tree for responses, SAX for requests; no network, no
 * entities, no DTD). See omaha.h. */
#include "omaha.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/tree.h>

#include "base64.h"
#include "hex.h"
#include "util.h"

#define MAX_DEPTH 12         /* the deepest legitimate element, <package>, is at depth 6 */
#define MAX_ELEMENTS 1024    /* elements in one document */
#define MAX_ATTR_LEN 4096    /* one attribute value */

/* ---- encodings ----------------------------------------------------------------------- */

static int hex_decode_exact(const char *s, uint8_t *out, size_t n) {
        if (strlen(s) != 2 * n)
                return -EBADMSG;
        for (size_t i = 0; i < n; i++) {
                int hi = hex_digit_value(s[2 * i]), lo = hex_digit_value(s[2 * i + 1]);
                if (hi < 0 || lo < 0)
                        return -EBADMSG;
                out[i] = hi << 4 | lo;
        }
        return 0;
}

/* ---- parsing ------------------------------------------------------------------------- */

/* Room for one more element at the end of an array of n, at most max: the array with the new
 * element zeroed in *ret, or -EMSGSIZE past max, or -ENOMEM. */
static int grow_by_one(void *array, size_t n, size_t max, size_t size, void **ret) {
        if (n >= max)
                return -EMSGSIZE;
        char *p = realloc(array, (n + 1) * size);
        if (!p)
                return -ENOMEM;
        memset(p + n * size, 0, size);
        *ret = p;
        return 0;
}

/* Appends a zeroed element to `array` of `n` (both updated), at most `max`: 0 or an errno. */
#define APPEND_ZEROED(array, n, max)                                                               \
        ({                                                                                         \
                void *grown_;                                                                      \
                int r_ = grow_by_one((array), (n), (max), sizeof(*(array)), &grown_);              \
                if (r_ == 0) {                                                                     \
                        (array) = grown_;                                                          \
                        (n)++;                                                                     \
                }                                                                                  \
                r_;                                                                                \
        })

static void xml_doc_freep(xmlDocPtr *d) {
        if (*d)
                xmlFreeDoc(*d);
}
static void xml_ctxt_freep(xmlParserCtxtPtr *c) {
        if (*c)
                xmlFreeParserCtxt(*c);
}

static bool name_is(const xmlNode *n, const char *name) {
        return n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0;
}

/* Duplicates attribute `name` of n into *ret (NULL when absent). */
static int attr_dup(const xmlNode *n, const char *name, char **ret) {
        for (const xmlAttr *a = n->properties; a; a = a->next) {
                if (strcmp((const char *)a->name, name) != 0)
                        continue;
                /* Attribute children are text nodes only: no entity references survive a
                 * parse without a DOCTYPE, but refuse anything else rather than guess. */
                size_t len = 0;
                for (const xmlNode *t = a->children; t; t = t->next) {
                        if (t->type != XML_TEXT_NODE)
                                return -EBADMSG;
                        len += strlen((const char *)t->content);
                }
                if (len > MAX_ATTR_LEN)
                        return -EMSGSIZE;
                char *s = malloc(len + 1), *p = s;
                if (!s)
                        return -ENOMEM;
                for (const xmlNode *t = a->children; t; t = t->next) {
                        size_t l = strlen((const char *)t->content);
                        memcpy(p, t->content, l);
                        p += l;
                }
                *p = 0;
                free(*ret);
                *ret = s;
                return 0;
        }
        return 0;
}

/* An attribute's value as a decimal number from min to max, for the tree and the SAX parser. */
static int value_long(const char *s, long min, long max, long *ret) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || end == s || *end || v < min || v > max)
                return -EBADMSG;
        *ret = v;
        return 0;
}

static bool value_bool(const char *s) {
        return strcmp(s, "true") == 0 || strcmp(s, "1") == 0;
}

/* Attribute `name` as a number into *ret, left as it is when absent (*present says which). */
static int attr_long(const xmlNode *n, const char *name, long min, long max, long *ret, bool *present) {
        _cleanup_free_ char *s = NULL;
        int r = attr_dup(n, name, &s);
        if (r < 0)
                return r;
        if (present)
                *present = !!s;
        return s ? value_long(s, min, max, ret) : 0;
}

static int attr_bool(const xmlNode *n, const char *name, bool *ret) {
        _cleanup_free_ char *s = NULL;
        int r = attr_dup(n, name, &s);
        if (r < 0 || !s)
                return r;
        *ret = value_bool(s);
        return 0;
}

/* Walks the whole tree once and refuses anything a legitimate document never has. */
static int check_tree(const xmlNode *n, unsigned depth, unsigned *count) {
        for (; n; n = n->next) {
                switch (n->type) {
                case XML_ELEMENT_NODE:
                        if (depth > MAX_DEPTH || ++*count > MAX_ELEMENTS)
                                return -EMSGSIZE;
                        int r = check_tree(n->children, depth + 1, count);
                        if (r < 0)
                                return r;
                        break;
                case XML_TEXT_NODE:
                case XML_CDATA_SECTION_NODE:
                case XML_COMMENT_NODE:
                case XML_PI_NODE:
                        break;
                default: /* entity references, DTD nodes, XInclude markers ... */
                        return -EBADMSG;
                }
        }
        return 0;
}

static bool contains(const char *hay, size_t n, const char *needle) {
        return memmem(hay, n, needle, strlen(needle)) != NULL;
}

static void xml_error_silent(void *ctx, const char *msg, ...) {
}

static int parse_document(const char *xml, size_t len, const char *root_name, xmlDocPtr *ret_doc) {
        _cleanup_(xml_ctxt_freep) xmlParserCtxtPtr ctxt = NULL;
        _cleanup_(xml_doc_freep) xmlDocPtr doc = NULL;

        if (len > OMAHA_MAX_DOCUMENT)
                return -EMSGSIZE;
        if (len > INT_MAX)
                return -EMSGSIZE;
        /* No legitimate Omaha document has a DTD. Refusing it before the parser sees it means
         * no entity is ever declared, so nothing can be expanded or fetched. */
        if (contains(xml, len, "<!DOCTYPE") || contains(xml, len, "<!ENTITY"))
                return -EBADMSG;

        /* libxml2 reports some errors (encodings) through the generic handler whatever the
         * options say; the handler is per thread, so set it for this one. */
        xmlSetGenericErrorFunc(NULL, xml_error_silent);
        ctxt = xmlNewParserCtxt();
        if (!ctxt)
                return -ENOMEM;
        /* Not XML_PARSE_NOENT (substitution), not XML_PARSE_DTDLOAD/DTDATTR/DTDVALID,
         * not XML_PARSE_HUGE (keeps libxml2's own limits), not XML_PARSE_XINCLUDE. */
        doc = xmlCtxtReadMemory(ctxt, xml, (int)len, NULL, NULL,
                                XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |
                                        XML_PARSE_NOCDATA | XML_PARSE_NOBLANKS);
        if (!doc || !ctxt->wellFormed)
                return -EBADMSG;
        if (doc->intSubset || doc->extSubset)
                return -EBADMSG;

        xmlNode *root = xmlDocGetRootElement(doc);
        if (!root || !name_is(root, root_name))
                return -EBADMSG;
        unsigned count = 0;
        int r = check_tree(root, 1, &count);
        if (r < 0)
                return r;
        *ret_doc = TAKE_PTR(doc);
        return 0;
}

static int check_protocol(const xmlNode *root, char **ret) {
        int r = attr_dup(root, "protocol", ret);
        if (r < 0)
                return r;
        if (!*ret || strcmp(*ret, "3.0") != 0)
                return -EPROTO;
        return 0;
}

/* ---- requests: SAX callbacks, no tree ------------------------------------------------
 *
 * pivot-server parses one request per update check, so requests skip the tree: libxml2's
 * SAX2 callbacks fill struct omaha_request as the start tags go by, on a parser context each
 * thread keeps and reuses. It is the same parser with the same options and limits as for
 * responses: libxml2 still checks the whole document for well-formedness, a DOCTYPE is still
 * refused (before parsing, and by the callbacks should one get through), entities are still
 * never substituted. What the tree walk checked (element depth and count, then the fields in
 * document order) the callbacks check, and the errors keep the tree walk's precedence: not
 * well-formed, then the wrong root element, then the limits, then the protocol and the first
 * bad field. */

struct request_sax {
        struct omaha_request *req;
        unsigned depth;                 /* of the open element; the root is 1 */
        unsigned count;                 /* elements so far */
        bool dtd;                       /* a DOCTYPE got to the parser */
        int root;                       /* 1: <request>, -1: another root element */
        int limits;                     /* -EMSGSIZE once an element is too deep or too many */
        int error;                      /* the first bad field, in document order */
        struct omaha_app_request *app;  /* the <app> open at depth 2 */
};

/* The tree names an element or attribute with an undeclared prefix "prefix:name", and any
 * other by its local name; none of the names looked for has a colon. */
static bool sax_name_is(const xmlChar *localname, const xmlChar *prefix, const xmlChar *uri, const char *name) {
        return localname[0] == (xmlChar)name[0] && !(prefix && !uri) && strcmp((const char *)localname, name) == 0;
}

/* attrs: libxml2's SAX2 array, 5 pointers per attribute (localname, prefix, URI, value, end).
 * Duplicates attribute `name` (the first of that name) into *ret; absent leaves *ret alone. */
static int sax_attr_dup(int n, const xmlChar **attrs, const char *name, char **ret) {
        for (int i = 0; i < n; i++) {
                const xmlChar **a = attrs + 5 * i;
                if (!sax_name_is(a[0], a[1], a[2], name))
                        continue;
                const char *v = (const char *)a[3], *end = (const char *)a[4];
                /* Without entity substitution libxml2 passes a '&' of the value on as "&#38;"
                 * (the tree decodes it); no other reference can be left in a document without
                 * a DTD, so anything else is refused rather than guessed at. */
                size_t len = end - v;
                const char *amp = memchr(v, '&', len);
                for (const char *p = amp; p; p = memchr(p + 5, '&', end - p - 5)) {
                        if (end - p < 5 || memcmp(p, "&#38;", 5) != 0)
                                return -EBADMSG;
                        len -= 4;
                        if (end - p == 5)
                                break;
                }
                if (len > MAX_ATTR_LEN)
                        return -EMSGSIZE;
                char *s = malloc(len + 1), *o = s;
                if (!s)
                        return -ENOMEM;
                if (!amp)
                        memcpy(s, v, len);
                else
                        for (const char *p = v; p < end; p++) {
                                *o++ = *p;
                                if (*p == '&')
                                        p += 4;
                        }
                s[len] = 0;
                free(*ret);
                *ret = s;
                return 0;
        }
        return 0;
}

static int sax_attr_bool(int n, const xmlChar **attrs, const char *name, bool *ret) {
        _cleanup_free_ char *s = NULL;
        int r = sax_attr_dup(n, attrs, name, &s);
        if (r < 0 || !s)
                return r;
        *ret = value_bool(s);
        return 0;
}

static int sax_attr_long(int n, const xmlChar **attrs, const char *name, long min, long max, long *ret) {
        _cleanup_free_ char *s = NULL;
        int r = sax_attr_dup(n, attrs, name, &s);
        if (r < 0 || !s)
                return r;
        return value_long(s, min, max, ret);
}

static int sax_request(struct omaha_request *req, int n, const xmlChar **attrs) {
        int r = sax_attr_dup(n, attrs, "protocol", &req->protocol);
        if (r < 0)
                return r;
        if (!req->protocol || strcmp(req->protocol, "3.0") != 0)
                return -EPROTO;
        if ((r = sax_attr_dup(n, attrs, "version", &req->version)) < 0 ||
            (r = sax_attr_dup(n, attrs, "updaterversion", &req->updaterversion)) < 0 ||
            (r = sax_attr_dup(n, attrs, "installsource", &req->installsource)) < 0 ||
            (r = sax_attr_bool(n, attrs, "ismachine", &req->ismachine)) < 0)
                return r;
        return 0;
}

static int sax_os(struct omaha_request *req, int n, const xmlChar **attrs) {
        int r;
        if ((r = sax_attr_dup(n, attrs, "version", &req->os_version)) < 0 ||
            (r = sax_attr_dup(n, attrs, "platform", &req->os_platform)) < 0 ||
            (r = sax_attr_dup(n, attrs, "sp", &req->os_sp)) < 0 ||
            (r = sax_attr_dup(n, attrs, "arch", &req->os_arch)) < 0)
                return r;
        return 0;
}

static int sax_app(struct omaha_request *req, int n, const xmlChar **attrs, struct omaha_app_request **ret) {
        static const struct {
                const char *name;
                size_t offset;
        } fields[] = {
                { "appid", offsetof(struct omaha_app_request, appid) },
                { "version", offsetof(struct omaha_app_request, version) },
                { "track", offsetof(struct omaha_app_request, track) },
                { "bootid", offsetof(struct omaha_app_request, bootid) },
                { "machineid", offsetof(struct omaha_app_request, machineid) },
                { "oem", offsetof(struct omaha_app_request, oem) },
                { "alephversion", offsetof(struct omaha_app_request, alephversion) },
                { "lang", offsetof(struct omaha_app_request, lang) },
                { "board", offsetof(struct omaha_app_request, board) },
        };
        int r;

        if ((r = APPEND_ZEROED(req->apps, req->n_apps, OMAHA_MAX_APPS)) < 0)
                return r;
        struct omaha_app_request *a = &req->apps[req->n_apps - 1];
        for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                r = sax_attr_dup(n, attrs, fields[i].name, (char **)((char *)a + fields[i].offset));
                if (r < 0)
                        return r;
        }
        if (!a->appid)
                return -EBADMSG;
        r = sax_attr_bool(n, attrs, "delta_okay", &a->delta_okay);
        if (r < 0)
                return r;
        *ret = a;
        return 0;
}

static int sax_event(struct omaha_app_request *a, int n, const xmlChar **attrs) {
        long v;
        int r;

        if ((r = APPEND_ZEROED(a->events, a->n_events, OMAHA_MAX_EVENTS)) < 0)
                return r;
        struct omaha_event *e = &a->events[a->n_events - 1];
        v = 0;
        if ((r = sax_attr_long(n, attrs, "eventtype", 0, INT_MAX, &v)) < 0)
                return r;
        e->type = (int)v;
        v = 0;
        if ((r = sax_attr_long(n, attrs, "eventresult", 0, INT_MAX, &v)) < 0)
                return r;
        e->result = (int)v;
        v = 0;
        if ((r = sax_attr_long(n, attrs, "errorcode", INT_MIN, INT_MAX, &v)) < 0)
                return r;
        e->error_code = (int)v;
        if ((r = sax_attr_dup(n, attrs, "previousversion", &e->previous_version)) < 0)
                return r;
        return sax_attr_dup(n, attrs, "nextversion", &e->next_version);
}

static void sax_start(void *ctx, const xmlChar *localname, const xmlChar *prefix, const xmlChar *uri,
                      int nb_namespaces, const xmlChar **namespaces, int n, int nb_defaulted,
                      const xmlChar **attrs) {
        struct request_sax *s = ((xmlParserCtxtPtr)ctx)->_private;
        unsigned depth = ++s->depth;
        int r = 0;

        if (depth == 1)
                s->root = sax_name_is(localname, prefix, uri, "request") ? 1 : -1;
        if (!s->limits && (depth > MAX_DEPTH || ++s->count > MAX_ELEMENTS))
                s->limits = -EMSGSIZE;
        if (s->root < 0 || s->limits || s->error)
                return; /* the answer is decided; libxml2 still checks the rest */

        if (depth == 1)
                r = sax_request(s->req, n, attrs);
        else if (depth == 2) {
                if (sax_name_is(localname, prefix, uri, "os"))
                        r = sax_os(s->req, n, attrs);
                else if (sax_name_is(localname, prefix, uri, "app"))
                        r = sax_app(s->req, n, attrs, &s->app);
        } else if (depth == 3 && s->app) {
                struct omaha_app_request *a = s->app;
                if (sax_name_is(localname, prefix, uri, "ping")) {
                        long v = 0;
                        a->ping = true;
                        r = sax_attr_long(n, attrs, "active", INT_MIN, INT_MAX, &v);
                        a->ping_active = (int)v;
                } else if (sax_name_is(localname, prefix, uri, "updatecheck"))
                        a->updatecheck = true;
                else if (sax_name_is(localname, prefix, uri, "event"))
                        r = sax_event(a, n, attrs);
        }
        if (r < 0)
                s->error = r;
}

static void sax_end(void *ctx, const xmlChar *localname, const xmlChar *prefix, const xmlChar *uri) {
        struct request_sax *s = ((xmlParserCtxtPtr)ctx)->_private;
        if (--s->depth == 1)
                s->app = NULL;
}

/* A DOCTYPE, internal or external: refused, and the parser stops here. */
static void sax_subset(void *ctx, const xmlChar *name, const xmlChar *external_id, const xmlChar *system_id) {
        xmlParserCtxtPtr ctxt = ctx;
        ((struct request_sax *)ctxt->_private)->dtd = true;
        xmlStopParser(ctxt);
}

/* Each thread's parser context, reused from one request to the next, with a buffer for a
 * NUL-terminated copy of the document. */
struct request_parser {
        xmlParserCtxtPtr ctxt;
        char *copy;
        size_t size;
};

static pthread_once_t parser_once = PTHREAD_ONCE_INIT;
static pthread_key_t parser_key;
static bool quick_parse; /* see parse_quick() */
static bool parser_key_made;

static void parser_free(void *userdata) {
        struct request_parser *p = userdata;
        if (p->ctxt)
                xmlFreeParserCtxt(p->ctxt);
        free(p->copy);
        free(p);
}

static void parser_setup(void) {
        xmlInitParser();
        if (pthread_key_create(&parser_key, parser_free) != 0)
                abort();
        parser_key_made = true;
        long v = strtol(xmlParserVersion, NULL, 10);
        quick_parse = v >= 20900 && v < 21000;
}

/* Loaded as a module and unloaded after each parse (updater/omaha-module.h), the parser must
 * give its key back: a process has only so many, and a thread ending later would call
 * parser_free() where it no longer is. */
__attribute__((destructor)) static void parser_teardown(void) {
        if (parser_key_made)
                pthread_key_delete(parser_key);
}

void omaha_init(void) {
        pthread_once(&parser_once, parser_setup);
}

/* The names a context's dictionary may hold before the context is dropped: a legitimate
 * request has a few dozen, and a peer sending ever new names must not grow it forever. */
#define MAX_DICT_NAMES 512

static struct request_parser *request_parser(void) {
        struct request_parser *p = pthread_getspecific(parser_key);
        if (!p) {
                p = calloc(1, sizeof(*p));
                if (!p)
                        return NULL;
                if (pthread_setspecific(parser_key, p) != 0) {
                        free(p);
                        return NULL;
                }
        }
        if (p->ctxt)
                return p;
        p->ctxt = xmlNewParserCtxt();
        if (!p->ctxt)
                return NULL;
        /* SAX2 start and end callbacks only: no tree, text and comments are checked and
         * dropped, no entity is looked up beyond the predefined ones. */
        memset(p->ctxt->sax, 0, sizeof(*p->ctxt->sax));
        p->ctxt->sax->initialized = XML_SAX2_MAGIC;
        p->ctxt->sax->startElementNs = sax_start;
        p->ctxt->sax->endElementNs = sax_end;
        p->ctxt->sax->internalSubset = sax_subset;
        p->ctxt->sax->externalSubset = sax_subset;
        return p;
}

/* The options of parse_document() but XML_PARSE_NOBLANKS, which only picks between two text
 * callbacks, and there are none. */
#define REQUEST_OPTIONS (XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOCDATA)

/* The quick way, for the documents every client sends (UTF-8), with libxml2 2.9. It reads a
 * document from memory the way it reads a stream: it copies it into a buffer of its own
 * (8 KiB at least), asks that buffer for more input every few characters near its end (a
 * third of the parse of a request) and moves consumed input out of it. Here it reads a
 * NUL-terminated copy in place instead, and the context's `progressive` flag, which in 2.9
 * only switches that asking and moving off outside push parsing, keeps it from doing either
 * (moving is what 2.9 gets wrong on memory it does not own). A decoder for another encoding
 * converts only as it is asked: true when the parse is good as the ordinary way would have
 * made it, well-formed and no decoder involved. */
static bool parse_quick(struct request_parser *p, const char *xml, size_t len) {
        xmlParserCtxtPtr ctxt = p->ctxt;

        if (p->size < len + 1) {
                char *c = realloc(p->copy, len + 1);
                if (!c)
                        return false;
                p->copy = c;
                p->size = len + 1;
        }
        memcpy(p->copy, xml, len);
        p->copy[len] = 0;
        xmlCtxtReset(ctxt);
        xmlParserInputBufferPtr buf = xmlParserInputBufferCreateStatic(p->copy, (int)len, XML_CHAR_ENCODING_NONE);
        if (!buf)
                return false;
        xmlParserInputPtr input = xmlNewIOInputStream(ctxt, buf, XML_CHAR_ENCODING_NONE);
        if (!input) {
                xmlFreeParserInputBuffer(buf);
                return false;
        }
        if (inputPush(ctxt, input) < 0)
                return false;
        xmlCtxtUseOptions(ctxt, REQUEST_OPTIONS);
        ctxt->progressive = 1;
        (void)xmlParseDocument(ctxt);
        ctxt->progressive = 0;
        return ctxt->wellFormed && ctxt->input && ctxt->input->buf && !ctxt->input->buf->encoder;
}

int omaha_request_parse(const char *xml, size_t len, struct omaha_request *ret) {
        _cleanup_(omaha_request_done) struct omaha_request req = {};
        struct request_sax s = { .req = &req };

        *ret = (struct omaha_request){};
        if (len > OMAHA_MAX_DOCUMENT || len > INT_MAX)
                return -EMSGSIZE;
        /* As for every document: no DTD, so no entity is ever declared. One pass for both
         * words: a request seldom has a '!' at all. */
        const char *end = xml + len;
        for (const char *p = memchr(xml, '!', len); p; p = memchr(p + 1, '!', end - p - 1)) {
                size_t rest = end - p;
                if (p > xml && p[-1] == '<' &&
                    ((rest >= 8 && memcmp(p, "!DOCTYPE", 8) == 0) || (rest >= 7 && memcmp(p, "!ENTITY", 7) == 0)))
                        return -EBADMSG;
                if (rest == 1)
                        break;
        }

        omaha_init();
        xmlSetGenericErrorFunc(NULL, xml_error_silent);
        struct request_parser *p = request_parser();
        if (!p)
                return -ENOMEM;
        xmlParserCtxtPtr ctxt = p->ctxt;
        ctxt->_private = &s;
        if (!quick_parse || !parse_quick(p, xml, len) || s.dtd) {
                /* Anything else the ordinary way, from the start: other encodings, and every
                 * document that is refused, so that the answer is always that way's. */
                omaha_request_done(&req);
                s = (struct request_sax){ .req = &req };
                (void)xmlCtxtReadMemory(ctxt, xml, (int)len, NULL, NULL, REQUEST_OPTIONS);
        }
        bool well_formed = ctxt->wellFormed && !s.dtd;
        ctxt->_private = NULL;
        xmlCtxtReset(ctxt); /* lets go of the input now, not at the next request */
        if (xmlDictSize(ctxt->dict) > MAX_DICT_NAMES) {
                xmlFreeParserCtxt(ctxt);
                p->ctxt = NULL;
        }

        if (!well_formed || s.root != 1)
                return -EBADMSG;
        if (s.limits < 0)
                return s.limits;
        if (s.error < 0)
                return s.error;
        /* On every early return above, the cleanup frees what was parsed so far. */
        *ret = req;
        req = (struct omaha_request){};
        return 0;
}

static int parse_manifest(const xmlNode *m, struct omaha_app_response *a) {
        int r = attr_dup(m, "version", &a->manifest_version);
        if (r < 0)
                return r;
        for (const xmlNode *c = m->children; c; c = c->next) {
                if (name_is(c, "packages")) {
                        for (const xmlNode *p = c->children; p; p = p->next) {
                                if (!name_is(p, "package"))
                                        continue;
                                if ((r = APPEND_ZEROED(a->packages, a->n_packages, OMAHA_MAX_PACKAGES)) < 0)
                                        return r;
                                struct omaha_package *pk = &a->packages[a->n_packages - 1];
                                _cleanup_free_ char *sha1 = NULL, *sha256 = NULL, *size = NULL;
                                if ((r = attr_dup(p, "name", &pk->name)) < 0 ||
                                    (r = attr_dup(p, "hash", &sha1)) < 0 ||
                                    (r = attr_dup(p, "hash_sha256", &sha256)) < 0 ||
                                    (r = attr_dup(p, "size", &size)) < 0 ||
                                    (r = attr_bool(p, "required", &pk->required)) < 0)
                                        return r;
                                if (!pk->name)
                                        return -EBADMSG;
                                if (sha1 && *sha1) {
                                        if (base64_decode_exact(sha1, pk->sha1, sizeof(pk->sha1)) < 0)
                                                return -EBADMSG;
                                        pk->has_sha1 = true;
                                }
                                if (sha256 && *sha256) {
                                        if (hex_decode_exact(sha256, pk->sha256, sizeof(pk->sha256)) < 0)
                                                return -EBADMSG;
                                        pk->has_sha256 = true;
                                }
                                if (size) {
                                        char *end;
                                        errno = 0;
                                        if (*size == '-')
                                                return -EBADMSG;
                                        unsigned long long v = strtoull(size, &end, 10);
                                        if (errno || end == size || *end)
                                                return -EBADMSG;
                                        pk->size = v;
                                }
                        }
                } else if (name_is(c, "actions")) {
                        for (const xmlNode *ac = c->children; ac; ac = ac->next) {
                                _cleanup_free_ char *event = NULL, *sha256 = NULL;
                                if (!name_is(ac, "action"))
                                        continue;
                                if ((r = attr_dup(ac, "event", &event)) < 0)
                                        return r;
                                if (!event || strcmp(event, "postinstall") != 0)
                                        continue;
                                a->postinstall = true;
                                if ((r = attr_dup(ac, "sha256", &sha256)) < 0 ||
                                    (r = attr_bool(ac, "DisablePayloadBackoff", &a->disable_payload_backoff)) < 0)
                                        return r;
                                if (sha256 && *sha256) {
                                        if (base64_decode_exact(sha256, a->postinstall_sha256,
                                                                sizeof(a->postinstall_sha256)) < 0)
                                                return -EBADMSG;
                                        a->has_postinstall_sha256 = true;
                                }
                        }
                }
        }
        return 0;
}

static int parse_response_app(const xmlNode *n, struct omaha_app_response *a) {
        int r;

        if ((r = attr_dup(n, "appid", &a->appid)) < 0 || (r = attr_dup(n, "status", &a->status)) < 0)
                return r;
        if (!a->appid || !a->status)
                return -EBADMSG;
        for (const xmlNode *c = n->children; c; c = c->next) {
                if (name_is(c, "ping"))
                        a->ping = true;
                else if (name_is(c, "event")) {
                        if (++a->n_events > OMAHA_MAX_EVENTS)
                                return -EMSGSIZE;
                } else if (name_is(c, "updatecheck")) {
                        if ((r = attr_dup(c, "status", &a->updatecheck)) < 0)
                                return r;
                        if (!a->updatecheck)
                                return -EBADMSG;
                        for (const xmlNode *u = c->children; u; u = u->next) {
                                if (name_is(u, "urls")) {
                                        for (const xmlNode *url = u->children; url; url = url->next) {
                                                if (!name_is(url, "url"))
                                                        continue;
                                                if ((r = APPEND_ZEROED(a->urls, a->n_urls, OMAHA_MAX_URLS)) < 0)
                                                        return r;
                                                char **codebase = &a->urls[a->n_urls - 1];
                                                if ((r = attr_dup(url, "codebase", codebase)) < 0)
                                                        return r;
                                                if (!*codebase)
                                                        return -EBADMSG;
                                        }
                                } else if (name_is(u, "manifest")) {
                                        r = parse_manifest(u, a);
                                        if (r < 0)
                                                return r;
                                }
                        }
                }
        }
        /* An "ok" update check must say what to fetch and from where. */
        if (a->updatecheck && strcmp(a->updatecheck, "ok") == 0 &&
            (!a->n_urls || !a->n_packages || !a->manifest_version))
                return -EBADMSG;
        return 0;
}

int omaha_response_parse(const char *xml, size_t len, struct omaha_response *ret) {
        _cleanup_(xml_doc_freep) xmlDocPtr doc = NULL;
        _cleanup_(omaha_response_done) struct omaha_response resp = {};
        int r;

        *ret = (struct omaha_response){};
        r = parse_document(xml, len, "response", &doc);
        if (r < 0)
                return r;
        xmlNode *root = xmlDocGetRootElement(doc);

        r = check_protocol(root, &resp.protocol);
        if (r < 0)
                return r;
        if ((r = attr_dup(root, "server", &resp.server)) < 0)
                return r;
        for (const xmlNode *c = root->children; c; c = c->next) {
                if (name_is(c, "daystart")) {
                        long v = 0;
                        r = attr_long(c, "elapsed_seconds", LONG_MIN, LONG_MAX, &v, NULL);
                        if (r < 0)
                                return r;
                        resp.daystart_elapsed_seconds = v;
                } else if (name_is(c, "app")) {
                        if ((r = APPEND_ZEROED(resp.apps, resp.n_apps, OMAHA_MAX_APPS)) < 0)
                                return r;
                        r = parse_response_app(c, &resp.apps[resp.n_apps - 1]);
                        if (r < 0)
                                return r;
                }
        }
        *ret = resp;
        resp = (struct omaha_response){};
        return 0;
}
