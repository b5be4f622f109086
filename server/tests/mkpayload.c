/* Test helper: makes a small signed payload with lib/payload.c.
 *   mkpayload DIR VERSION OUT     keys in DIR (made on first use), images made up in DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "payload.h"

static int write_file(const char *path, const char *fill, size_t n) {
        FILE *f = fopen(path, "wb");
        if (!f)
                return -1;
        for (size_t i = 0; i < n; i++)
                fputc(fill[i % strlen(fill)], f);
        return fclose(f);
}

int main(int argc, char **argv) {
        if (argc != 4) {
                fprintf(stderr, "usage: mkpayload DIR VERSION OUT\n");
                return 2;
        }
        char priv[4096], pub[4096], root[4096], kernel[4096], initrd[4096];
        snprintf(priv, sizeof(priv), "%s/key.pem", argv[1]);
        snprintf(pub, sizeof(pub), "%s/key.pub.pem", argv[1]);
        snprintf(root, sizeof(root), "%s/root.img", argv[1]);
        snprintf(kernel, sizeof(kernel), "%s/vmlinuz", argv[1]);
        snprintf(initrd, sizeof(initrd), "%s/initrd", argv[1]);
        if (access(priv, R_OK) < 0 && payload_keygen(priv, pub) < 0)
                return 1;
        if (write_file(root, argv[2], 300000) < 0 || write_file(kernel, "kernel", 70000) < 0 ||
            write_file(initrd, "initrd", 50000) < 0)
                return 1;
        struct payload_key *key = NULL;
        if (payload_key_load_private(priv, &key) < 0)
                return 1;
        struct payload_create_params p = {
                .image_paths = { root, kernel, initrd },
                .version = argv[2],
                .cmdline = "console=ttyS0 pivot.verity.roothash=00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
                .key = key,
                .out_path = argv[3],
                .quiet = true,
                .threads = 1,
        };
        int r = payload_create(&p);
        payload_key_free(key);
        if (r < 0) {
                fprintf(stderr, "mkpayload: %s\n", strerror(-r));
                return 1;
        }
        return 0;
}
