/* The payload files pivot-server hosts, stored by content: DATA/payloads/sha256/<hex SHA-256>.
 *
 * A release names its file by version and package name (the URL machines download,
 * /v1/payloads/APP/VERSION/NAME) and announces its hashes; the file it is served from is the
 * one named by its SHA-256. An upload is hashed as it is written and renamed to its own name,
 * so it can never take the place of another content, whatever path it was sent to: a file a
 * release announces stays what the release says for as long as the release exists. (When one
 * path held one file, re-uploading a published version replaced the bytes machines downloaded
 * while the release kept announcing the old hashes.) */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "hex.h"
#include "log.h"
#include "server.h"
#include "util.h"

static void evp_md_ctx_freep(EVP_MD_CTX **c) {
        EVP_MD_CTX_free(*c);
}

int payload_path(const struct server *srv, const char *sha256, char **ret) {
        if (sha256 && !is_hex(sha256, 64))
                return -EINVAL;
        int n = sha256 ? asprintf(ret, "%s/payloads/sha256/%s", srv->data_dir, sha256)
                       : asprintf(ret, "%s/payloads/sha256", srv->data_dir);
        return n < 0 ? -ENOMEM : 0;
}

int payload_find(struct server *srv, const char *app_name, const char *version, const char *name,
                 char sha256[static 65]) {
        _cleanup_rows_ struct db_rows rows = {};
        const struct db_param p[] = { DB_TEXT(version), DB_TEXT(name) };
        int r = store_query(srv->store,
                            "SELECT app, sha256 FROM releases WHERE version = $1 AND package_name = $2"
                            " AND base_url IS NULL",
                            p, ELEMENTSOF(p), &rows);
        if (r < 0)
                return r;
        /* The URL carries the application id without its braces. */
        for (size_t i = 0; i < rows.n_rows; i++) {
                char app[128];
                const char *sha = db_cell(&rows, i, 1);
                app_url_name(db_cell(&rows, i, 0), app, sizeof(app));
                if (!strcmp(app, app_name) && is_hex(sha, 64)) {
                        memcpy(sha256, sha, 65);
                        return 0;
                }
        }
        return -ENOENT;
}

static int file_sha256(int fd, char hex[static 65]) {
        _cleanup_(evp_md_ctx_freep) EVP_MD_CTX *md = EVP_MD_CTX_new();
        uint8_t buf[1 << 16], digest[32];
        unsigned len = 0;
        if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL))
                return -ENOMEM;
        for (;;) {
                ssize_t n = read(fd, buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return negative_errno();
                if (n == 0)
                        break;
                EVP_DigestUpdate(md, buf, n);
        }
        EVP_DigestFinal_ex(md, digest, &len);
        hex_encode(digest, sizeof(digest), hex);
        return 0;
}

/* Moves one release's file from DATA/payloads/APP/VERSION/NAME, where earlier versions of the
 * server kept it, to its content path, if it still holds the bytes the release announces. */
static void adopt_one(const struct server *srv, const char *app, const char *version, const char *name,
                      const char *sha256) {
        _cleanup_free_ char *target = NULL, *old = NULL;
        char app_name[128], hex[65];
        struct stat st;

        if (payload_path(srv, sha256, &target) < 0 || stat(target, &st) == 0)
                return;
        app_url_name(app, app_name, sizeof(app_name));
        if (!safe_name(app_name) || !safe_name(version) || !safe_name(name) ||
            asprintf(&old, "%s/payloads/%s/%s/%s", srv->data_dir, app_name, version, name) < 0)
                return;
        _cleanup_close_ int fd = open(old, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
                log_warning("release %s of %s has no file (%s): it cannot be downloaded until it is uploaded again",
                            version, app, old);
                return;
        }
        int r = file_sha256(fd, hex);
        if (r < 0) {
                log_error_errno(r, "Cannot read %s: %m", old);
                return;
        }
        if (strcmp(hex, sha256) != 0) {
                log_error("%s has other bytes (SHA-256 %s) than release %s of %s announces (%s): not served;"
                          " upload the release's own file again",
                          old, hex, version, app, sha256);
                return;
        }
        /* Another process sharing the directory may have moved it meanwhile. */
        if (rename(old, target) < 0 && !(errno == ENOENT && stat(target, &st) == 0)) {
                log_error_errno(negative_errno(), "Cannot move %s to %s: %m", old, target);
                return;
        }
        log_info("moved the file of release %s of %s to %s", version, app, target);
}

int payloads_init(struct server *srv) {
        _cleanup_free_ char *top = NULL, *dir = NULL;
        if (asprintf(&top, "%s/payloads", srv->data_dir) < 0 || payload_path(srv, NULL, &dir) < 0)
                return -ENOMEM;
        if ((mkdir(top, 0755) < 0 && errno != EEXIST) || (mkdir(dir, 0755) < 0 && errno != EEXIST))
                return log_error_errno(negative_errno(), "Cannot create %s: %m", dir);

        _cleanup_rows_ struct db_rows rows = {};
        int r = store_query(srv->store,
                            "SELECT app, version, package_name, sha256 FROM releases WHERE base_url IS NULL", NULL, 0,
                            &rows);
        if (r < 0)
                return r;
        for (size_t i = 0; i < rows.n_rows; i++)
                adopt_one(srv, db_cell(&rows, i, 0), db_cell(&rows, i, 1), db_cell(&rows, i, 2), db_cell(&rows, i, 3));
        return 0;
}
