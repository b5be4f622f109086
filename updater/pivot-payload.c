/* pivot-payload: makes, shows, verifies and unpacks update payloads (lib/payload.h).
 *
 * Exit codes: 0 success; 1 failure (including a payload that does not verify); 2 usage. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "log.h"
#include "payload.h"
#include "util.h"

#define EXIT_USAGE 2
#define USAGE_ERROR (-10000) /* not an errno: "print usage, exit 2" */

static void usage(FILE *f) {
        fputs("usage: pivot-payload COMMAND [OPTIONS]\n"
              "\n"
              "Commands:\n"
              "  create   --root FILE --kernel FILE --initrd FILE (--cmdline-file FILE | --cmdline TEXT)\n"
              "           --version V [--min-version V] [--verity-roothash HEX] --key PRIVATE.pem\n"
              "           --out FILE [--chunk-size BYTES] [--level N] [--threads N] [--quiet]\n"
              "           Writes a signed payload. The root hash defaults to the command line's\n"
              "           pivot.verity.roothash=; the same inputs and key give the same bytes.\n"
              "           Defaults: 256K chunks, zstd level 9, a thread per CPU.\n"
              "  keygen   --out-private FILE --out-public FILE\n"
              "           Makes an Ed25519 key pair (PEM; the private file is mode 0600).\n"
              "  pubkey   --key PRIVATE.pem --out FILE\n"
              "           Writes the public half of a private key.\n"
              "  show     [--key PUBLIC.pem] [--json] FILE\n"
              "           Prints the manifest; with --key it also checks the signature.\n"
              "  verify   --key PUBLIC.pem [--quiet] FILE\n"
              "           Checks the signature, every chunk and every image hash.\n"
              "  extract  --key PUBLIC.pem [--root FILE] [--kernel FILE] [--initrd FILE] FILE\n"
              "           Verifies and writes the images out.\n"
              "\n"
              "Exit status: 0 success, 1 failure (a payload that does not verify included), 2 usage.\n",
              f);
}

static int read_text_file(const char *path, char **ret) {
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f)
                return negative_errno();
        char *buf = calloc(1, PAYLOAD_MAX_CMDLINE_LEN + 2);
        if (!buf)
                return -ENOMEM;
        size_t n = fread(buf, 1, PAYLOAD_MAX_CMDLINE_LEN + 1, f);
        if (n > PAYLOAD_MAX_CMDLINE_LEN) {
                free(buf);
                return -E2BIG;
        }
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
                buf[--n] = 0;
        *ret = buf;
        return 0;
}

static int parse_u32(const char *s, uint32_t *ret) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 0);
        if (errno || end == s || v > UINT32_MAX)
                return -EINVAL;
        if (*end == 'K' || *end == 'k')
                v <<= 10, end++;
        else if (*end == 'M' || *end == 'm')
                v <<= 20, end++;
        if (*end || v > UINT32_MAX)
                return -EINVAL;
        *ret = (uint32_t)v;
        return 0;
}

static int load_public(const char *path, struct payload_key **ret) {
        int r = payload_key_load_public(path, ret);
        if (r == -ENOKEY)
                return log_error_errno(r, "%s holds no Ed25519 public key", path);
        if (r < 0)
                return log_error_errno(r, "Cannot read public key %s: %m", path);
        return 0;
}

/* Explains a failure to open and authenticate a payload. */
static int open_error(int r, const char *path, const struct payload_key *key) {
        if (r == -EKEYREJECTED) {
                struct payload_manifest m;
                uint8_t id[PAYLOAD_KEY_ID_SIZE];
                char want[2 * PAYLOAD_KEY_ID_SIZE + 1], got[2 * PAYLOAD_KEY_ID_SIZE + 1];
                payload_key_id(key, id);
                hex_encode(id, sizeof(id), want);
                if (payload_open_file(path, NULL, &m, NULL) == 0) {
                        hex_encode(m.key_id, sizeof(m.key_id), got);
                        payload_manifest_done(&m);
                        if (strcmp(got, want) != 0)
                                return log_error_errno(r, "%s: bad signature: signed by key %s, "
                                                          "not by the trusted key %s", path, got, want);
                }
                return log_error_errno(r, "%s: bad signature (the manifest was altered or the "
                                          "signature is damaged)", path);
        }
        if (r == -ENODATA)
                return log_error_errno(r, "%s: truncated payload", path);
        if (r == -EBADMSG)
                return log_error_errno(r, "%s: not a valid payload (malformed header or manifest)",
                                       path);
        if (r == -EPROTONOSUPPORT)
                return log_error_errno(r, "%s: payload format or field unknown to this tool", path);
        return log_error_errno(r, "%s: %m", path);
}

static int cmd_create(int argc, char **argv) {
        enum { ARG_ROOT = 0x100, ARG_KERNEL, ARG_INITRD, ARG_CMDLINE_FILE, ARG_CMDLINE, ARG_VERSION,
               ARG_MIN_VERSION, ARG_ROOTHASH, ARG_KEY, ARG_OUT, ARG_CHUNK, ARG_LEVEL, ARG_THREADS,
               ARG_QUIET };
        static const struct option opts[] = {
                {"root", required_argument, NULL, ARG_ROOT},
                {"kernel", required_argument, NULL, ARG_KERNEL},
                {"initrd", required_argument, NULL, ARG_INITRD},
                {"cmdline-file", required_argument, NULL, ARG_CMDLINE_FILE},
                {"cmdline", required_argument, NULL, ARG_CMDLINE},
                {"version", required_argument, NULL, ARG_VERSION},
                {"min-version", required_argument, NULL, ARG_MIN_VERSION},
                {"verity-roothash", required_argument, NULL, ARG_ROOTHASH},
                {"key", required_argument, NULL, ARG_KEY},
                {"out", required_argument, NULL, ARG_OUT},
                {"chunk-size", required_argument, NULL, ARG_CHUNK},
                {"level", required_argument, NULL, ARG_LEVEL},
                {"threads", required_argument, NULL, ARG_THREADS},
                {"quiet", no_argument, NULL, ARG_QUIET},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        struct payload_create_params p = {.quiet = !isatty(STDERR_FILENO)};
        _cleanup_free_ char *cmdline = NULL;
        const char *cmdline_file = NULL, *key_path = NULL;
        _cleanup_(payload_key_freep) struct payload_key *key = NULL;
        uint32_t v;
        int c, r;

        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                switch (c) {
                case ARG_ROOT: p.image_paths[PAYLOAD_IMAGE_ROOT] = optarg; break;
                case ARG_KERNEL: p.image_paths[PAYLOAD_IMAGE_KERNEL] = optarg; break;
                case ARG_INITRD: p.image_paths[PAYLOAD_IMAGE_INITRD] = optarg; break;
                case ARG_CMDLINE_FILE: cmdline_file = optarg; break;
                case ARG_CMDLINE:
                        free(cmdline);
                        cmdline = strdup(optarg);
                        if (!cmdline)
                                return log_error_errno(-ENOMEM, "Out of memory");
                        break;
                case ARG_VERSION: p.version = optarg; break;
                case ARG_MIN_VERSION: p.min_version = optarg; break;
                case ARG_ROOTHASH: p.verity_roothash = optarg; break;
                case ARG_KEY: key_path = optarg; break;
                case ARG_OUT: p.out_path = optarg; break;
                case ARG_CHUNK:
                        if (parse_u32(optarg, &p.chunk_size) < 0) {
                                log_error("Bad --chunk-size %s", optarg);
                                return USAGE_ERROR;
                        }
                        break;
                case ARG_LEVEL:
                        if (parse_u32(optarg, &v) < 0 || v < 1 || v > 22) {
                                log_error("--level wants 1..22");
                                return USAGE_ERROR;
                        }
                        p.level = (int)v;
                        break;
                case ARG_THREADS:
                        if (parse_u32(optarg, &p.threads) < 0 || p.threads > 256) {
                                log_error("Bad --threads %s", optarg);
                                return USAGE_ERROR;
                        }
                        break;
                case ARG_QUIET: p.quiet = true; break;
                case 'h': usage(stdout); return 0;
                default: return USAGE_ERROR;
                }
        }
        if (optind != argc || !p.image_paths[0] || !p.image_paths[1] || !p.image_paths[2] ||
            !p.version || !key_path || !p.out_path || (!cmdline_file == !cmdline)) {
                log_error("create needs --root, --kernel, --initrd, --version, --key, --out and one "
                          "of --cmdline-file or --cmdline (see --help)");
                return USAGE_ERROR;
        }
        if (!version_valid(p.version) ||
            (p.min_version && !version_valid(p.min_version)))
                return log_error_errno(-EINVAL, "Versions look like 1.2.3 (digits first; letters, "
                                                "digits and . - + _ ~ after)");
        if (p.min_version && version_compare(p.min_version, p.version) > 0)
                return log_error_errno(-EINVAL, "--min-version %s is newer than --version %s",
                                       p.min_version, p.version);
        if (cmdline_file) {
                r = read_text_file(cmdline_file, &cmdline);
                if (r == -E2BIG)
                        return log_error_errno(r, "%s: command line longer than %u bytes",
                                               cmdline_file, PAYLOAD_MAX_CMDLINE_LEN);
                if (r < 0)
                        return log_error_errno(r, "Cannot read %s: %m", cmdline_file);
        }
        p.cmdline = cmdline;
        r = payload_key_load_private(key_path, &key);
        if (r == -ENOKEY)
                return log_error_errno(r, "%s holds no Ed25519 private key", key_path);
        if (r < 0)
                return log_error_errno(r, "Cannot read signing key %s: %m", key_path);
        p.key = key;

        r = payload_create(&p);
        if (r == -ENOENT && access(p.image_paths[0], R_OK) == 0 &&
            access(p.image_paths[1], R_OK) == 0 && access(p.image_paths[2], R_OK) == 0)
                return log_error_errno(r, "No verity root hash: give --verity-roothash or put "
                                          "pivot.verity.roothash= on the command line");
        if (r == -ENOTUNIQ)
                return log_error_errno(r, "--verity-roothash differs from the command line's "
                                          "pivot.verity.roothash=");
        if (r == -EINVAL)
                return log_error_errno(r, "Invalid input: an image is empty or not a regular file, "
                                          "or the command line, root hash or chunk size is malformed "
                                          "(chunk size: a power of two, 64K..4M)");
        if (r == -EFBIG)
                return log_error_errno(r, "Images too large for one manifest; use a larger "
                                          "--chunk-size");
        if (r < 0)
                return log_error_errno(r, "Cannot write %s: %m", p.out_path);

        if (p.quiet && !isatty(STDERR_FILENO))
                return 0;
        struct payload_manifest m;
        r = payload_open_file(p.out_path, NULL, &m, NULL);
        if (r < 0)
                return log_error_errno(r, "Cannot read back %s: %m", p.out_path);
        uint64_t raw = m.images[0].size + m.images[1].size + m.images[2].size;
        log_info("wrote %s: version %s, %u chunks, %" PRIu64 " -> %" PRIu64 " bytes (%.1f%%)",
                 p.out_path, m.version, m.n_chunks, raw, m.payload_size,
                 100.0 * (double)m.payload_size / (double)raw);
        payload_manifest_done(&m);
        return 0;
}

static int cmd_keygen(int argc, char **argv) {
        static const struct option opts[] = {
                {"out-private", required_argument, NULL, 'p'},
                {"out-public", required_argument, NULL, 'P'},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        const char *priv = NULL, *pub = NULL;
        int c;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                switch (c) {
                case 'p': priv = optarg; break;
                case 'P': pub = optarg; break;
                case 'h': usage(stdout); return 0;
                default: return USAGE_ERROR;
                }
        }
        if (!priv || !pub || optind != argc) {
                log_error("keygen needs --out-private FILE and --out-public FILE");
                return USAGE_ERROR;
        }
        int r = payload_keygen(priv, pub);
        if (r == -EEXIST)
                return log_error_errno(r, "%s or %s exists already; not overwriting a key", priv,
                                       pub);
        if (r < 0)
                return log_error_errno(r, "Cannot write the key pair: %m");
        return 0;
}

static int cmd_pubkey(int argc, char **argv) {
        static const struct option opts[] = {
                {"key", required_argument, NULL, 'k'},
                {"out", required_argument, NULL, 'o'},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        const char *key_path = NULL, *out = NULL;
        _cleanup_(payload_key_freep) struct payload_key *key = NULL;
        int c, r;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                switch (c) {
                case 'k': key_path = optarg; break;
                case 'o': out = optarg; break;
                case 'h': usage(stdout); return 0;
                default: return USAGE_ERROR;
                }
        }
        if (!key_path || !out || optind != argc) {
                log_error("pubkey needs --key PRIVATE.pem and --out FILE");
                return USAGE_ERROR;
        }
        r = payload_key_load_private(key_path, &key);
        if (r < 0)
                return log_error_errno(r, "Cannot read private key %s: %s", key_path,
                                       r == -ENOKEY ? "no Ed25519 private key in it" : strerror(-r));
        _cleanup_free_ char *tmp = NULL;
        if (asprintf(&tmp, "%s.tmp", out) < 0)
                return log_error_errno(-ENOMEM, "Out of memory");
        unlink(tmp);
        r = payload_key_write_public(key, tmp);
        if (r == 0 && rename(tmp, out) < 0)
                r = negative_errno();
        if (r < 0) {
                unlink(tmp);
                return log_error_errno(r, "Cannot write %s: %m", out);
        }
        return 0;
}

static void print_manifest(const struct payload_manifest *m, bool json, const char *signature) {
        char id[2 * PAYLOAD_KEY_ID_SIZE + 1], hash[65];
        hex_encode(m->key_id, sizeof(m->key_id), id);
        if (!json) {
                printf("version:          %s\n", m->version);
                printf("min version:      %s\n", m->min_version);
                printf("cmdline:          %s\n", m->cmdline);
                printf("verity root hash: %s\n", m->verity_roothash);
                printf("signed by key:    %s (%s)\n", id, signature);
                printf("chunk size:       %u\n", m->chunk_size);
                printf("chunks:           %u\n", m->n_chunks);
                printf("payload size:     %" PRIu64 " (chunk table from offset %" PRIu64
                       ", data from %" PRIu64 ")\n", m->payload_size, m->table_offset, m->data_offset);
                for (unsigned t = 0; t < PAYLOAD_IMAGE_MAX; t++) {
                        hex_encode(m->images[t].sha256, 32, hash);
                        printf("%-6s            %" PRIu64 " bytes, %u chunks from %u, sha256 %s\n",
                               payload_image_name(t), m->images[t].size, m->images[t].n_chunks,
                               m->images[t].first_chunk, hash);
                }
                return;
        }
        printf("{\"version\":");
        json_string(stdout, m->version);
        printf(",\"min_version\":");
        json_string(stdout, m->min_version);
        printf(",\"cmdline\":");
        json_string(stdout, m->cmdline);
        printf(",\"verity_roothash\":");
        json_string(stdout, m->verity_roothash);
        printf(",\"key_id\":\"%s\",\"signature\":\"%s\",\"chunk_size\":%u,\"chunks\":%u,"
               "\"payload_size\":%" PRIu64 ",\"table_offset\":%" PRIu64 ",\"data_offset\":%" PRIu64
               ",\"images\":{",
               id, signature, m->chunk_size, m->n_chunks, m->payload_size, m->table_offset,
               m->data_offset);
        for (unsigned t = 0; t < PAYLOAD_IMAGE_MAX; t++) {
                hex_encode(m->images[t].sha256, 32, hash);
                printf("%s\"%s\":{\"size\":%" PRIu64 ",\"sha256\":\"%s\",\"chunks\":%u}",
                       t ? "," : "", payload_image_name(t), m->images[t].size, hash,
                       m->images[t].n_chunks);
        }
        printf("}}\n");
}

static int cmd_show_verify(int argc, char **argv, bool verify) {
        static const struct option opts[] = {
                {"key", required_argument, NULL, 'k'},
                {"json", no_argument, NULL, 'j'},
                {"quiet", no_argument, NULL, 'q'},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        const char *key_path = NULL;
        bool json = false, quiet = false;
        _cleanup_(payload_key_freep) struct payload_key *key = NULL;
        int c, r;
        while ((c = getopt_long(argc, argv, "hq", opts, NULL)) >= 0) {
                switch (c) {
                case 'k': key_path = optarg; break;
                case 'j': json = true; break;
                case 'q': quiet = true; break;
                case 'h': usage(stdout); return 0;
                default: return USAGE_ERROR;
                }
        }
        if (optind + 1 != argc || (verify && !key_path)) {
                log_error(verify ? "verify needs --key PUBLIC.pem and one payload file"
                                 : "show needs one payload file");
                return USAGE_ERROR;
        }
        const char *path = argv[optind];
        if (key_path && (r = load_public(key_path, &key)) < 0)
                return r;
        struct payload_manifest m;
        _cleanup_close_ int fd = -1;
        r = payload_open_file(path, key, &m, &fd);
        if (r < 0)
                return open_error(r, path, key);
        if (!verify) {
                print_manifest(&m, json, key ? "verified" : "not checked");
                payload_manifest_done(&m);
                return 0;
        }
        r = payload_verify_data(fd, &m, NULL, NULL);
        if (r == -EILSEQ || r == -EBADMSG)
                r = log_error_errno(r, "%s: payload data does not match its manifest", path);
        else if (r == -ENODATA)
                r = log_error_errno(r, "%s: truncated payload", path);
        else if (r < 0)
                r = log_error_errno(r, "%s: %m", path);
        else if (!quiet)
                log_info("%s: version %s verified (%u chunks)", path, m.version, m.n_chunks);
        payload_manifest_done(&m);
        return r;
}

static int write_image(int fd, struct payload_decoder *d, const struct payload_manifest *m,
                       unsigned type, const char *out) {
        const struct payload_image *img = &m->images[type];
        _cleanup_free_ uint8_t *in = malloc(m->chunk_size + m->chunk_size / 128 + 4096);
        _cleanup_free_ uint8_t *raw = malloc(m->chunk_size);
        _cleanup_free_ char *tmp = NULL;
        if (!in || !raw || asprintf(&tmp, "%s.tmp", out) < 0)
                return log_error_errno(-ENOMEM, "Out of memory");
        _cleanup_close_ int ofd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (ofd < 0)
                return log_error_errno(negative_errno(), "Cannot create %s: %m", tmp);
        for (uint32_t i = 0; i < img->n_chunks; i++) {
                const struct payload_chunk *c = &m->chunks[img->first_chunk + i];
                if (pread(fd, in, c->size, (off_t)c->offset) != (ssize_t)c->size)
                        return log_error_errno(-ENODATA, "Short read of chunk %u",
                                               img->first_chunk + i);
                int r = payload_chunk_decode(d, c, in, raw, true);
                if (r < 0) {
                        unlink(tmp);
                        return log_error_errno(r, "Chunk %u of %s is bad", img->first_chunk + i,
                                               payload_image_name(type));
                }
                if (pwrite(ofd, raw, c->raw_size, (off_t)c->image_offset) != (ssize_t)c->raw_size)
                        return log_error_errno(negative_errno(), "Cannot write %s: %m", tmp);
        }
        if (fsync(ofd) < 0 || rename(tmp, out) < 0)
                return log_error_errno(negative_errno(), "Cannot write %s: %m", out);
        return 0;
}

static int cmd_extract(int argc, char **argv) {
        static const struct option opts[] = {
                {"key", required_argument, NULL, 'k'},
                {"root", required_argument, NULL, 'r'},
                {"kernel", required_argument, NULL, 'K'},
                {"initrd", required_argument, NULL, 'i'},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        const char *key_path = NULL, *outs[PAYLOAD_IMAGE_MAX] = {0};
        _cleanup_(payload_key_freep) struct payload_key *key = NULL;
        _cleanup_(payload_decoder_freep) struct payload_decoder *d = NULL;
        int c, r;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                switch (c) {
                case 'k': key_path = optarg; break;
                case 'r': outs[PAYLOAD_IMAGE_ROOT] = optarg; break;
                case 'K': outs[PAYLOAD_IMAGE_KERNEL] = optarg; break;
                case 'i': outs[PAYLOAD_IMAGE_INITRD] = optarg; break;
                case 'h': usage(stdout); return 0;
                default: return USAGE_ERROR;
                }
        }
        if (optind + 1 != argc || !key_path) {
                log_error("extract needs --key PUBLIC.pem and one payload file");
                return USAGE_ERROR;
        }
        const char *path = argv[optind];
        if ((r = load_public(key_path, &key)) < 0)
                return r;
        struct payload_manifest m;
        _cleanup_close_ int fd = -1;
        r = payload_open_file(path, key, &m, &fd);
        if (r < 0)
                return open_error(r, path, key);
        r = payload_decoder_new(&d);
        for (unsigned t = 0; t < PAYLOAD_IMAGE_MAX && r >= 0; t++)
                if (outs[t])
                        r = write_image(fd, d, &m, t, outs[t]);
        payload_manifest_done(&m);
        return r;
}

int main(int argc, char **argv) {
        log_set_program("pivot-payload");
        if (argc < 2) {
                usage(stderr);
                return EXIT_USAGE;
        }
        const char *cmd = argv[1];
        int r;
        argc--, argv++;
        if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
                usage(stdout);
                return 0;
        } else if (!strcmp(cmd, "create"))
                r = cmd_create(argc, argv);
        else if (!strcmp(cmd, "keygen"))
                r = cmd_keygen(argc, argv);
        else if (!strcmp(cmd, "pubkey"))
                r = cmd_pubkey(argc, argv);
        else if (!strcmp(cmd, "show"))
                r = cmd_show_verify(argc, argv, false);
        else if (!strcmp(cmd, "verify"))
                r = cmd_show_verify(argc, argv, true);
        else if (!strcmp(cmd, "extract"))
                r = cmd_extract(argc, argv);
        else {
                log_error("unknown command \"%s\" (see --help)", cmd);
                return EXIT_USAGE;
        }
        if (r == USAGE_ERROR)
                return EXIT_USAGE;
        return r < 0 ? 1 : 0;
}
