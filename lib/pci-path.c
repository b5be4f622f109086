/* See pci-path.h. */
#include "pci-path.h"

static size_t length(const char *s) {
        size_t n = 0;
        while (s[n])
                n++;
        return n;
}

static int starts_with(const char *s, const char *prefix) {
        while (*prefix)
                if (*s++ != *prefix++)
                        return 0;
        return 1;
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

int pci_path_add_nvme(char *buf, size_t size, unsigned nsid) {
        if (nsid < 1 || nsid > PCI_PATH_NUMBER_MAX)
                return PCI_PATH_E2BIG;
        char node[8] = {'n', 'v', 'm', 'e'};
        return append(buf, size, node, 4 + decimal(node + 4, nsid), 1);
}

int pci_path_add_usb_port(char *buf, size_t size, unsigned port, int superspeed) {
        if (port < 1 || port > PCI_PATH_NUMBER_MAX)
                return PCI_PATH_E2BIG;
        char node[12];
        size_t n = 0;
        int more = pci_path_has_usb(buf);
        if (more)
                node[n++] = '.';
        else {
                for (const char *k = superspeed ? "ssusb" : "usb"; *k; k++)
                        node[n++] = *k;
        }
        n += decimal(node + n, port);
        return append(buf, size, node, n, !more);
}

/* Linux's root hub for a USB major revision: 1 the USB 3 one, 0 the USB 2 one, -1 none. */
static int usb3_hub(unsigned major) {
        return major == 3 ? 1 : major >= 1 && major <= 2 ? 0 : -1;
}

unsigned pci_path_xhci_port(const struct pci_path_xhci_ports *caps, size_t n, unsigned port,
                            int *superspeed) {
        int hub = -1;
        for (size_t i = 0; i < n; i++)
                if (port >= caps[i].first && port - caps[i].first < caps[i].count)
                        hub = usb3_hub(caps[i].major);
        if (hub < 0)
                return 0;
        /* The ports before it on the same root hub, from every capability of that hub. */
        unsigned number = 0;
        for (size_t i = 0; i < n; i++)
                if (usb3_hub(caps[i].major) == hub && caps[i].first <= port)
                        number += port - caps[i].first < caps[i].count ? port - caps[i].first + 1
                                                                      : caps[i].count;
        *superspeed = hub;
        return number;
}

int pci_path_has_usb(const char *path) {
        const char *below = path + pci_path_pci_len(path);
        return *below == '/' && (starts_with(below + 1, "usb") || starts_with(below + 1, "ssusb"));
}

size_t pci_path_pci_len(const char *path) {
        /* PCI nodes start with a digit (devices are 00-1f), the nodes below with a letter. */
        for (size_t i = 0; path[i]; i++)
                if (path[i] == '/' && path[i + 1] >= 'a' && path[i + 1] <= 'z')
                        return i;
        return length(path);
}
