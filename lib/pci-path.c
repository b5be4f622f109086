/* See pci-path.h. */
#include "pci-path.h"

static size_t length(const char *s) {
        size_t n = 0;
        while (s[n])
                n++;
        return n;
}

/* Appends the n characters of text, after a "/" when slash and buf is not empty; or nothing
 * when it does not fit. */
static int append(char *buf, size_t size, const char *text, size_t n, int slash) {
        size_t len = 0;
        while (len < size && buf[len])
                len++;
        slash = slash && len;
        if (len >= size || len + (size_t)slash + n + 1 > size)
                return PCI_PATH_E2BIG;
        if (slash)
                buf[len++] = '/';
        for (size_t i = 0; i < n; i++)
                buf[len++] = text[i];
        buf[len] = '\0';
        return 0;
}

/* Writes v (at most PCI_PATH_NUMBER_MAX) in decimal at out; returns its length. */
static size_t decimal(char *out, unsigned v) {
        size_t n = 0;
        if (v >= 100)
                out[n++] = (char)('0' + v / 100);
        if (v >= 10)
                out[n++] = (char)('0' + v / 10 % 10);
        out[n++] = (char)('0' + v % 10);
        return n;
}

int pci_path_add(char *buf, size_t size, unsigned device, unsigned function) {
        static const char hex[] = "0123456789abcdef";
        if (device > 0x1f || function > 7)
                return PCI_PATH_E2BIG;
        const char node[] = {hex[device >> 4], hex[device & 15], '.', hex[function]};
        return append(buf, size, node, sizeof(node), 1);
}

int pci_path_add_ata(char *buf, size_t size, unsigned port) {
        if (port < 1 || port > PCI_PATH_ATA_PORTS)
                return PCI_PATH_E2BIG;
        char node[8] = {'a', 't', 'a'};
        return append(buf, size, node, 3 + decimal(node + 3, port), 1);
}

int pci_path_add_scsi(char *buf, size_t size, unsigned target, unsigned lun) {
        if (target > PCI_PATH_NUMBER_MAX || lun > PCI_PATH_NUMBER_MAX)
                return PCI_PATH_E2BIG;
        char node[12] = {'s', 'c', 's', 'i'};
        size_t n = 4 + decimal(node + 4, target);
        node[n++] = '.';
        n += decimal(node + n, lun);
        return append(buf, size, node, n, 1);
}

int pci_path_add_usb_port(char *buf, size_t size, unsigned port) {
        if (port < 1 || port > PCI_PATH_NUMBER_MAX)
                return PCI_PATH_E2BIG;
        char node[8];
        size_t below = pci_path_pci_len(buf), n = 0;
        int more = buf[below] == '/' && buf[below + 1] == 'u'; /* it has its USB node already */
        if (more)
                node[n++] = '.';
        else {
                node[n++] = 'u';
                node[n++] = 's';
                node[n++] = 'b';
        }
        n += decimal(node + n, port);
        return append(buf, size, node, n, !more);
}

size_t pci_path_pci_len(const char *path) {
        /* PCI nodes start with a digit (devices are 00-1f), the nodes below with a letter. */
        for (size_t i = 0; path[i]; i++)
                if (path[i] == '/' && path[i + 1] >= 'a' && path[i + 1] <= 'z')
                        return i;
        return length(path);
}
