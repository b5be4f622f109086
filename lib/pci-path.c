/* See pci-path.h. */
#include "pci-path.h"

static size_t length(const char *s) {
        size_t n = 0;
        while (s[n])
                n++;
        return n;
}

/* Appends "/" (unless buf is empty) and the n characters of node, or nothing when it does not
 * fit. */
static int append(char *buf, size_t size, const char *node, size_t n) {
        size_t len = 0;
        while (len < size && buf[len])
                len++;
        if (len >= size || len + (len ? 1 : 0) + n + 1 > size)
                return PCI_PATH_E2BIG;
        if (len)
                buf[len++] = '/';
        for (size_t i = 0; i < n; i++)
                buf[len++] = node[i];
        buf[len] = '\0';
        return 0;
}

int pci_path_add(char *buf, size_t size, unsigned device, unsigned function) {
        static const char hex[] = "0123456789abcdef";
        if (device > 0x1f || function > 7)
                return PCI_PATH_E2BIG;
        const char node[] = {hex[device >> 4], hex[device & 15], '.', hex[function]};
        return append(buf, size, node, sizeof(node));
}

int pci_path_add_ata(char *buf, size_t size, unsigned port) {
        if (port < 1 || port > PCI_PATH_ATA_PORTS)
                return PCI_PATH_E2BIG;
        char node[5] = {'a', 't', 'a'};
        size_t n = 3;
        if (port >= 10)
                node[n++] = (char)('0' + port / 10);
        node[n++] = (char)('0' + port % 10);
        return append(buf, size, node, n);
}

size_t pci_path_pci_len(const char *path) {
        for (size_t i = 0; path[i]; i++)
                if (path[i] == '/' && path[i + 1] == 'a' && path[i + 2] == 't' && path[i + 3] == 'a')
                        return i;
        return length(path);
}
