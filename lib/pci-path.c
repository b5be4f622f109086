/* See pci-path.h. */
#include "pci-path.h"

int pci_path_add(char *buf, size_t size, unsigned device, unsigned function) {
        static const char hex[] = "0123456789abcdef";
        size_t len = 0;
        while (len < size && buf[len])
                len++;
        size_t need = len + (len ? 1 : 0) + 4 + 1;
        if (len >= size || need > size || device > 0x1f || function > 7)
                return PCI_PATH_E2BIG;
        if (len)
                buf[len++] = '/';
        buf[len++] = hex[device >> 4];
        buf[len++] = hex[device & 15];
        buf[len++] = '.';
        buf[len++] = hex[function];
        buf[len] = '\0';
        return 0;
}
