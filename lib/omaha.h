/* Omaha v3: the update-check protocol Flatcar's update_engine and the Nebraska server speak.
 *
 * One module for both ends: pivot-agent builds requests and parses responses, pivot-server
 * parses requests and builds responses. The shapes are those docs/design.md ("Omaha v3")
 * describes. omaha.c builds and frees; omaha-parse.c parses, the one part that needs libxml2:
 * pivot-server links it, the device programs load it as a module for each parse
 * (updater/omaha-module.h).
 *
 * Parsing is hardened for input from the network: documents larger than OMAHA_MAX_DOCUMENT
 * are refused, a document with a DOCTYPE (and so any entity declaration) is refused, entities
 * are never substituted and nothing is ever fetched, and element depth and counts are bounded.
 * Unknown elements and attributes are ignored, so newer peers stay compatible.
 *
 * Every string in these structures is owned by the structure and freed by its *_done()
 * function; NULL means "absent". Building never takes ownership of anything.
 *
 * Return values: 0 on success, or a negative errno:
 *   -EMSGSIZE  the document is larger than OMAHA_MAX_DOCUMENT, or a limit was passed
 *   -EBADMSG   not well-formed XML, a DOCTYPE, the wrong root element or a bad attribute value
 *   -EPROTO    protocol is not "3.0"
 *   -ENOMEM    out of memory */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OMAHA_MAX_DOCUMENT (64 * 1024) /* bytes, for requests and responses alike */
#define OMAHA_MAX_APPS 16
#define OMAHA_MAX_EVENTS 32 /* per app */
#define OMAHA_MAX_URLS 16
#define OMAHA_MAX_PACKAGES 16

/* Event types and results as update_engine sends them. */
enum {
        OMAHA_EVENT_UPDATE_COMPLETE = 3,
        OMAHA_EVENT_DOWNLOAD_STARTED = 13,
        OMAHA_EVENT_DOWNLOAD_FINISHED = 14,
};
enum {
        OMAHA_RESULT_ERROR = 0,
        OMAHA_RESULT_SUCCESS = 1,
        OMAHA_RESULT_SUCCESS_REBOOT = 2,
        OMAHA_RESULT_DEFERRED = 9,
};
/* A few of update_engine's error codes; HTTP failures are 2000 + status. */
enum {
        OMAHA_ERROR_POSTINSTALL_FAILED = 5,
        OMAHA_ERROR_PAYLOAD_HASH_MISMATCH = 10,
        OMAHA_ERROR_SIGNATURE_FAILED = 18,
        OMAHA_ERROR_INVALID_RESPONSE = 34,
        OMAHA_ERROR_ROLLED_BACK = 44, /* the new version failed to boot */
        OMAHA_ERROR_HTTP_BASE = 2000,
};

struct omaha_event {
        int type;       /* OMAHA_EVENT_* */
        int result;     /* OMAHA_RESULT_* */
        int error_code; /* 0 when absent */
        char *previous_version; /* the version before the update */
        /* The version the update goes to ("nextversion"): it names the attempt, so that a report
         * that comes late (a rollback found at the next boot) is charged to the release it is
         * about, not to one granted meanwhile. NULL when absent (update_engine sends none). */
        char *next_version;
};

struct omaha_app_request {
        char *appid;        /* "{b9606f32-...}" */
        char *version;      /* the version running now */
        char *track;        /* channel */
        char *bootid;       /* "{uuid}", braces included */
        char *machineid;    /* 32 hex characters, no braces */
        char *oem;
        char *alephversion; /* the version first installed */
        char *lang;
        char *board;
        bool delta_okay;
        bool ping;          /* a <ping> element is present */
        int ping_active;    /* its "active" attribute, 0 when absent */
        bool updatecheck;   /* an <updatecheck> element is present */
        struct omaha_event *events;
        size_t n_events;
};

struct omaha_request {
        char *protocol;       /* always "3.0" once parsed; NULL when building means "3.0" */
        char *version;        /* client version, e.g. "pivot-0.1" */
        char *updaterversion;
        char *installsource;  /* "scheduler" or "ondemandupdate" */
        bool ismachine;
        char *os_version;
        char *os_platform;
        char *os_sp;
        char *os_arch;
        struct omaha_app_request *apps;
        size_t n_apps;
};

struct omaha_package {
        char *name;           /* download URL = codebase + name */
        uint64_t size;
        bool required;
        bool has_sha1;        /* "hash": base64 SHA-1 */
        uint8_t sha1[20];
        bool has_sha256;      /* "hash_sha256": hex SHA-256 */
        uint8_t sha256[32];
};

struct omaha_app_response {
        char *appid;
        char *status;         /* "ok" or an "error-..." refusal; NULL when building means "ok" */
        bool ping;            /* answer <ping status="ok"/> */
        size_t n_events;      /* number of <event status="ok"/> acknowledgements */
        char *updatecheck;    /* NULL: no <updatecheck>; else its status: "ok", "noupdate", "error-..." */
        /* The rest only matters when updatecheck is "ok". */
        char **urls;          /* codebases, each ending in '/' */
        size_t n_urls;
        char *manifest_version;
        struct omaha_package *packages;
        size_t n_packages;
        bool postinstall;              /* <action event="postinstall"> */
        bool has_postinstall_sha256;   /* its "sha256": base64 SHA-256 of the first package */
        uint8_t postinstall_sha256[32];
        bool disable_payload_backoff;
};

struct omaha_response {
        char *protocol;       /* "3.0" once parsed; NULL when building means "3.0" */
        char *server;         /* the server's name, e.g. "pivot-server" */
        long daystart_elapsed_seconds;
        struct omaha_app_response *apps;
        size_t n_apps;
};

/* Call once before any thread parses (initializes libxml2). Safe to call more than once. */
void omaha_init(void);

/* Build: *ret_xml is a NUL-terminated document the caller frees; *ret_len its length. */
int omaha_request_build(const struct omaha_request *req, char **ret_xml, size_t *ret_len);
int omaha_response_build(const struct omaha_response *resp, char **ret_xml, size_t *ret_len);

/* Parse len bytes of xml (need not be NUL-terminated). On failure *ret is left empty. */
int omaha_request_parse(const char *xml, size_t len, struct omaha_request *ret);
int omaha_response_parse(const char *xml, size_t len, struct omaha_response *ret);

/* Free what a parse (or a caller filling the structure with malloc'd strings) put there,
 * and zero the structure. */
void omaha_request_done(struct omaha_request *req);
void omaha_response_done(struct omaha_response *resp);

/* Name of an event type for logs and metrics: "update_complete", ..., or "unknown". */
const char *omaha_event_type_name(int type);
const char *omaha_event_result_name(int result);
