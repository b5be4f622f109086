/* Kernel command line assembly; see selector-cmdline.h. */
#include "selector-cmdline.h"

#include <stdbool.h>

struct out {
        char *buf;
        size_t size, len;
        bool overflow;
};

static void put_char(struct out *o, char c) {
        if (o->len + 1 < o->size)
                o->buf[o->len++] = c;
        else
                o->overflow = true;
}

static void put_str(struct out *o, const char *s) {
        while (*s)
                put_char(o, *s++);
}

/* Starts a new argument group: one space unless at the start. */
static void put_sep(struct out *o) {
        if (o->len > 0)
                put_char(o, ' ');
}

static bool is_blank(char c) {
        return c == ' ' || c == '\t';
}

/* Appends each space-separated word of s with a prefix: "a b" -> "console=a console=b". */
static void put_words(struct out *o, const char *s, const char *prefix) {
        while (*s) {
                while (is_blank(*s))
                        s++;
                if (!*s)
                        break;
                put_sep(o);
                put_str(o, prefix);
                while (*s && !is_blank(*s))
                        put_char(o, *s++);
        }
}

int selector_cmdline_build(char *buf, size_t size, const char *slot_cmdline, size_t len,
                           const char *cmdline_extra, const char *console, const char *disk_pci,
                           const char *slot_name, const char *partuuid) {
        struct out o = {buf, size > SELECTOR_CMDLINE_MAX ? SELECTOR_CMDLINE_MAX : size, 0, false};
        size_t end = 0, s = 0;

        if (size == 0)
                return SELECTOR_E2BIG;

        /* First line only; drop its line ending and surrounding blanks. */
        while (end < len && slot_cmdline[end] != '\n')
                end++;
        if (end > 0 && slot_cmdline[end - 1] == '\r')
                end--;
        while (s < end && is_blank(slot_cmdline[s]))
                s++;
        while (end > s && is_blank(slot_cmdline[end - 1]))
                end--;
        for (size_t i = s; i < end; i++) {
                unsigned char c = (unsigned char)slot_cmdline[i];
                if ((c < 0x20 && c != '\t') || c > 0x7e)
                        return SELECTOR_EINVAL;
                put_char(&o, c == '\t' ? ' ' : (char)c);
        }

        /* Extra arguments verbatim (quotes in them may hold spaces), trimmed. */
        if (cmdline_extra) {
                size_t a = 0, b = 0;
                while (cmdline_extra[b])
                        b++;
                while (a < b && is_blank(cmdline_extra[a]))
                        a++;
                while (b > a && is_blank(cmdline_extra[b - 1]))
                        b--;
                if (a < b) {
                        put_sep(&o);
                        for (size_t i = a; i < b; i++)
                                put_char(&o, cmdline_extra[i] == '\t' ? ' ' : cmdline_extra[i]);
                }
        }
        if (console)
                put_words(&o, console, "console=");

        put_sep(&o);
        put_str(&o, "initrd=\\pivot\\");
        put_str(&o, slot_name);
        put_str(&o, "\\initrd");
        if (disk_pci && *disk_pci) {
                put_str(&o, " pivot.disk=pci:");
                put_str(&o, disk_pci);
        }
        put_str(&o, " pivot.slot=");
        put_str(&o, slot_name);
        put_str(&o, " pivot.root=PARTUUID=");
        put_str(&o, partuuid);

        o.buf[o.len] = '\0';
        if (o.overflow)
                return SELECTOR_E2BIG;
        return (int)o.len;
}
