/* The boot selector's firmware-free parts: selector.conf parsing and the kernel command line. */
#include "selector-cmdline.h"
#include "pci-path.h"
#include "selector-conf.h"
#include "test/test.h"

struct warnings {
        unsigned n;
        unsigned last_line;
        char last[256];
};

static void collect(void *ctx, unsigned line, const char *what, const char *detail) {
        struct warnings *w = ctx;
        w->n++;
        w->last_line = line;
        snprintf(w->last, sizeof(w->last), "%s: %s", what, detail);
}

static unsigned parse(struct selector_conf *c, struct warnings *w, const char *text) {
        selector_conf_defaults(c);
        *w = (struct warnings){0};
        return selector_conf_parse(c, text, strlen(text), collect, w);
}

TEST(conf_defaults) {
        struct selector_conf c;
        struct warnings w;

        CHECK_EQ(parse(&c, &w, ""), 0);
        CHECK_STREQ(c.cmdline_extra, "");
        CHECK_STREQ(c.console, "ttyS0,115200");
        CHECK_EQ(c.reset_delay, 5);
        CHECK(!c.verbose);
        CHECK_EQ(parse(&c, &w, "# only a comment\n\n   \n\t# indented comment"), 0);
        CHECK_STREQ(c.console, "ttyS0,115200");
}

TEST(conf_keys) {
        struct selector_conf c;
        struct warnings w;

        CHECK_EQ(parse(&c, &w,
                       "cmdline_extra = quiet loglevel=3 \r\n"
                       "  console=tty0 ttyS0,115200n8\n"
                       "reset_delay = 30\n"
                       "verbose = yes\n"),
                 0);
        CHECK_STREQ(c.cmdline_extra, "quiet loglevel=3");
        CHECK_STREQ(c.console, "tty0 ttyS0,115200n8");
        CHECK_EQ(c.reset_delay, 30);
        CHECK(c.verbose);

        /* Quotes show the edges of a value and are dropped; '=' in a value stays. */
        CHECK_EQ(parse(&c, &w, "cmdline_extra = \" a=b \"\nconsole =\n"), 0);
        CHECK_STREQ(c.cmdline_extra, " a=b ");
        CHECK_STREQ(c.console, "");
        /* The last line may lack its newline; later lines override earlier ones. */
        CHECK_EQ(parse(&c, &w, "verbose=1\nverbose=0"), 0);
        CHECK(!c.verbose);
}

TEST(conf_warnings_never_stop) {
        struct selector_conf c;
        struct warnings w;

        CHECK_EQ(parse(&c, &w, "colour = blue\nconsole = ttyS1\n"), 1);
        CHECK_EQ(w.last_line, 1);
        CHECK_STREQ(w.last, "unknown key ignored: colour");
        CHECK_STREQ(c.console, "ttyS1");

        CHECK_EQ(parse(&c, &w, "console ttyS1\nverbose = 1\n"), 1);
        CHECK_STREQ(w.last, "line without '=' ignored: console ttyS1");
        CHECK_STREQ(c.console, "ttyS0,115200");
        CHECK(c.verbose);

        CHECK_EQ(parse(&c, &w, "reset_delay = 301\nreset_delay = -1\nreset_delay=\nverbose = maybe\n"),
                 4);
        CHECK_EQ(c.reset_delay, 5);
        CHECK_EQ(w.last_line, 4);

        CHECK_EQ(parse(&c, &w, "cmdline_extra = caf\xc3\xa9\n"), 1);
        CHECK_STREQ(c.cmdline_extra, "");

        static char big[SELECTOR_CONF_VALUE_MAX + 64];
        memset(big, 'x', sizeof(big) - 1);
        memcpy(big, "console = ", 10);
        CHECK_EQ(parse(&c, &w, big), 1);
        CHECK_STREQ(c.console, "ttyS0,115200");

        /* Embedded NUL bytes do not end the file early or crash. */
        static const char nul[] = "verbose = 1\n\0garbage\nreset_delay = 9\n";
        selector_conf_defaults(&c);
        CHECK_EQ(selector_conf_parse(&c, nul, sizeof(nul) - 1, NULL, NULL), 1);
        CHECK(c.verbose);
        CHECK_EQ(c.reset_delay, 9);
        /* ... also inside a key: compared with a known key, it ends the match, and nothing is
         * read past the end of the known key's name. */
        static const char nul_key[] = "console\0XYZ = ttyS1\nverbose = 0\n";
        selector_conf_defaults(&c);
        CHECK_EQ(selector_conf_parse(&c, nul_key, sizeof(nul_key) - 1, NULL, NULL), 1);
        CHECK_STREQ(c.console, SELECTOR_CONF_DEFAULT_CONSOLE);
}

#define UUID "80fdc30f-8850-ec42-93f3-5f4e3b33cbae"

static int build(char *buf, size_t size, const char *file, const char *extra, const char *console) {
        return selector_cmdline_build(buf, size, file, strlen(file), extra, console, NULL, "B", UUID);
}

TEST(cmdline_contract) {
        char buf[SELECTOR_CMDLINE_MAX];
        int r;

        r = build(buf, sizeof(buf), "ro verity.roothash=abc panic=10\n", "quiet", "ttyS0,115200");
        CHECK_STREQ(buf, "ro verity.roothash=abc panic=10 quiet console=ttyS0,115200 "
                         "initrd=\\pivot\\B\\initrd pivot.slot=B pivot.root=PARTUUID=" UUID);
        CHECK_EQ(r, (int)strlen(buf));

        /* Empty parts leave no double spaces; several consoles each get console=. */
        build(buf, sizeof(buf), "", "", "tty0  ttyS0,115200n8 ");
        CHECK_STREQ(buf, "console=tty0 console=ttyS0,115200n8 initrd=\\pivot\\B\\initrd "
                         "pivot.slot=B pivot.root=PARTUUID=" UUID);
        build(buf, sizeof(buf), "  a\tb  \r\nsecond line ignored\n", NULL, NULL);
        CHECK_STREQ(buf, "a b initrd=\\pivot\\B\\initrd pivot.slot=B pivot.root=PARTUUID=" UUID);
        build(buf, sizeof(buf), "a", " x=\"1 2\" ", "");
        CHECK_STREQ(buf, "a x=\"1 2\" initrd=\\pivot\\B\\initrd pivot.slot=B pivot.root=PARTUUID=" UUID);

        /* The boot disk's PCI path, when it has one, goes before the slot. */
        char pci[16] = "";
        CHECK_EQ(pci_path_add(pci, sizeof(pci), 0x1c, 4), 0);
        CHECK_EQ(pci_path_add(pci, sizeof(pci), 0, 0), 0);
        CHECK_STREQ(pci, "1c.4/00.0");
        selector_cmdline_build(buf, sizeof(buf), "ro", 2, NULL, NULL, pci, "B", UUID);
        CHECK_STREQ(buf, "ro initrd=\\pivot\\B\\initrd pivot.disk=pci:1c.4/00.0 pivot.slot=B pivot.root=PARTUUID=" UUID);
        selector_cmdline_build(buf, sizeof(buf), "ro", 2, NULL, NULL, "", "B", UUID);
        CHECK_STREQ(buf, "ro initrd=\\pivot\\B\\initrd pivot.slot=B pivot.root=PARTUUID=" UUID);
}

TEST(pci_path_bounds) {
        char pci[10] = "";
        CHECK_EQ(pci_path_add(pci, sizeof(pci), 1, 0), 0);
        CHECK_EQ(pci_path_add(pci, sizeof(pci), 2, 7), 0);
        CHECK_STREQ(pci, "01.0/02.7");
        CHECK_EQ(pci_path_add(pci, sizeof(pci), 3, 0), PCI_PATH_E2BIG); /* full: unchanged */
        CHECK_STREQ(pci, "01.0/02.7");
        char one[5] = "";
        CHECK_EQ(pci_path_add(one, sizeof(one), 0x20, 0), PCI_PATH_E2BIG); /* no such device */
        CHECK_EQ(pci_path_add(one, sizeof(one), 1, 8), PCI_PATH_E2BIG);
        CHECK_EQ(pci_path_add(one, sizeof(one), 0x1f, 7), 0);
        CHECK_STREQ(one, "1f.7");
}

/* A SATA disk's port after its controller, numbered from 1 as Linux does. */
TEST(pci_path_ata_port) {
        char path[16] = "";
        CHECK_EQ(pci_path_add(path, sizeof(path), 0x1f, 2), 0);
        CHECK_EQ(pci_path_add_ata(path, sizeof(path), 1), 0);
        CHECK_STREQ(path, "1f.2/ata1");
        CHECK_EQ(pci_path_pci_len(path), 4);
        char two[16] = "1f.2";
        CHECK_EQ(pci_path_add_ata(two, sizeof(two), 32), 0);
        CHECK_STREQ(two, "1f.2/ata32");
        CHECK_EQ(pci_path_add_ata(two, sizeof(two), 0), PCI_PATH_E2BIG); /* ports start at 1 */
        CHECK_EQ(pci_path_add_ata(two, sizeof(two), 33), PCI_PATH_E2BIG);
        char small[10] = "1f.2";
        CHECK_EQ(pci_path_add_ata(small, sizeof(small), 10), PCI_PATH_E2BIG); /* no room */
        CHECK_STREQ(small, "1f.2");
        CHECK_EQ(pci_path_add_ata(small, sizeof(small), 9), 0);
        CHECK_STREQ(small, "1f.2/ata9");
        CHECK_EQ(pci_path_pci_len("1c.4/00.0"), 9);
        CHECK_EQ(pci_path_pci_len(""), 0);
}

/* An NVMe namespace by its ID, from 1; IDs past the limit leave the controller alone. */
TEST(pci_path_nvme_namespace) {
        char path[16] = "04.0";
        CHECK_EQ(pci_path_add_nvme(path, sizeof(path), 2), 0);
        CHECK_STREQ(path, "04.0/nvme2");
        CHECK_EQ(pci_path_pci_len(path), 4);
        char other[16] = "04.0";
        CHECK_EQ(pci_path_add_nvme(other, sizeof(other), 0), PCI_PATH_E2BIG);
        CHECK_EQ(pci_path_add_nvme(other, sizeof(other), 256), PCI_PATH_E2BIG);
        CHECK_EQ(pci_path_add_nvme(other, sizeof(other), 255), 0);
        CHECK_STREQ(other, "04.0/nvme255");
}

/* virtio-scsi's target and LUN; a USB disk's chain of ports, one node per hub. */
TEST(pci_path_scsi_and_usb) {
        char path[24] = "01.0";
        CHECK_EQ(pci_path_add_scsi(path, sizeof(path), 2, 0), 0);
        CHECK_STREQ(path, "01.0/scsi2.0");
        CHECK_EQ(pci_path_pci_len(path), 4);
        char big[24] = "01.0";
        CHECK_EQ(pci_path_add_scsi(big, sizeof(big), 255, 17), 0);
        CHECK_STREQ(big, "01.0/scsi255.17");
        CHECK_EQ(pci_path_add_scsi(big, sizeof(big), 256, 0), PCI_PATH_E2BIG);
        char usb[24] = "14.0";
        CHECK_EQ(pci_path_add_usb_port(usb, sizeof(usb), 4, 0), 0);
        CHECK_STREQ(usb, "14.0/usb4");
        CHECK_EQ(pci_path_add_usb_port(usb, sizeof(usb), 3, 1), 0);
        CHECK_EQ(pci_path_add_usb_port(usb, sizeof(usb), 12, 0), 0);
        CHECK_STREQ(usb, "14.0/usb4.3.12");
        CHECK_EQ(pci_path_add_usb_port(usb, sizeof(usb), 0, 0), PCI_PATH_E2BIG); /* ports from 1 */
        char small[12] = "14.0/usb4.3";
        CHECK_EQ(pci_path_add_usb_port(small, sizeof(small), 1, 0), PCI_PATH_E2BIG);
        CHECK_STREQ(small, "14.0/usb4.3");
        char ss[24] = "01.0";
        CHECK_EQ(pci_path_add_usb_port(ss, sizeof(ss), 2, 1), 0);
        CHECK_EQ(pci_path_add_usb_port(ss, sizeof(ss), 1, 0), 0); /* a hub's port: the kind stays */
        CHECK_STREQ(ss, "01.0/ssusb2.1");
        CHECK(pci_path_has_usb(ss));
        CHECK_EQ(pci_path_pci_len(ss), 4);
        CHECK(!pci_path_has_usb("01.0/scsi0.0"));
        CHECK(!pci_path_has_usb("01.0"));
}

/* xHCI's ports as Linux numbers them: each root hub (USB 2, USB 3) has the ports of its
 * protocol, from 1, in the controller's order. */
TEST(xhci_ports_as_linux_numbers_them) {
        int ss = -1;
        /* USB 2 first (most Intel chipsets): 16 USB 2 ports, then 10 USB 3 ones. */
        const struct pci_path_xhci_ports intel[] = {{2, 1, 16}, {3, 17, 10}};
        CHECK_EQ(pci_path_xhci_port(intel, 2, 3, &ss), 3);
        CHECK_EQ(ss, 0);
        CHECK_EQ(pci_path_xhci_port(intel, 2, 17, &ss), 1);
        CHECK_EQ(ss, 1);
        CHECK_EQ(pci_path_xhci_port(intel, 2, 26, &ss), 10);
        CHECK_EQ(pci_path_xhci_port(intel, 2, 27, &ss), 0); /* no such port */
        CHECK_EQ(pci_path_xhci_port(intel, 2, 0, &ss), 0);
        /* USB 3 first (QEMU's qemu-xhci), and a protocol in two pieces. */
        const struct pci_path_xhci_ports qemu[] = {{3, 1, 4}, {2, 5, 4}};
        CHECK_EQ(pci_path_xhci_port(qemu, 2, 2, &ss), 2);
        CHECK_EQ(ss, 1);
        CHECK_EQ(pci_path_xhci_port(qemu, 2, 6, &ss), 2);
        CHECK_EQ(ss, 0);
        const struct pci_path_xhci_ports split[] = {{2, 1, 2}, {3, 3, 2}, {2, 5, 2}};
        CHECK_EQ(pci_path_xhci_port(split, 3, 5, &ss), 3);
        CHECK_EQ(ss, 0);
        CHECK_EQ(pci_path_xhci_port(split, 3, 4, &ss), 2);
        CHECK_EQ(ss, 1);
        /* USB 1.x ports are on the USB 2 root hub; another major revision is on none. */
        const struct pci_path_xhci_ports odd[] = {{1, 1, 2}, {4, 3, 2}};
        CHECK_EQ(pci_path_xhci_port(odd, 2, 2, &ss), 2);
        CHECK_EQ(ss, 0);
        CHECK_EQ(pci_path_xhci_port(odd, 2, 3, &ss), 0);
}

TEST(cmdline_rejects) {
        char buf[SELECTOR_CMDLINE_MAX], file[SELECTOR_CMDLINE_MAX + 10];

        CHECK_EQ(build(buf, sizeof(buf), "ro \x01 x", "", ""), SELECTOR_EINVAL);
        CHECK_EQ(build(buf, sizeof(buf), "ro caf\xc3\xa9", "", ""), SELECTOR_EINVAL);
        CHECK_EQ(selector_cmdline_build(buf, sizeof(buf), "ro\0x", 4, "", "", NULL, "B", UUID),
                 SELECTOR_EINVAL);

        /* Too long for the kernel: refused rather than cut (the pivot.* arguments are last). */
        memset(file, 'a', sizeof(file) - 1);
        file[sizeof(file) - 1] = '\0';
        CHECK_EQ(build(buf, sizeof(buf), file, "", ""), SELECTOR_E2BIG);
        file[SELECTOR_CMDLINE_MAX - 120] = '\0';
        CHECK(build(buf, sizeof(buf), file, "", "") > 0);
        CHECK_EQ(build(buf, 20, "ro", "", ""), SELECTOR_E2BIG);
        CHECK_EQ(build(buf, 0, "ro", "", ""), SELECTOR_E2BIG);
}
