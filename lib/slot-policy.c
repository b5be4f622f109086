/* The slot policy; see slot-policy.h. No libc: compiled into the UEFI boot selector. */
#include "slot-policy.h"

bool slot_qualifies(const struct slot *s) {
        return s->bootable && s->priority > 0 && (s->tries > 0 || s->successful);
}

bool slot_ranks_above(const struct slot *a, const struct slot *b) {
        if (a->priority != b->priority)
                return a->priority > b->priority;
        return a->partno < b->partno;
}

int slot_policy_choose(const struct slot *slots, size_t n, struct slot_choice *ret) {
        size_t best = n, first = n;

        for (size_t i = 0; i < n; i++)
                if (slot_qualifies(&slots[i]) && (best == n || slot_ranks_above(&slots[i], &slots[best])))
                        best = i;
        if (best < n) {
                ret->index = best;
                ret->fallback = false;
                ret->spend_try = !slots[best].successful;
                ret->reason = slots[best].successful ? SLOT_REASON_SUCCESSFUL : SLOT_REASON_TRYING;
                return 0;
        }

        /* Nothing qualifies. Booting something beats a machine that never comes up: prefer the
         * slot an operator or the agent ranked highest, and spend no try (there are none). */
        for (size_t i = 0; i < n; i++) {
                if (!slots[i].bootable)
                        continue;
                if (slots[i].priority > 0 && (best == n || slot_ranks_above(&slots[i], &slots[best])))
                        best = i;
                if (first == n || slots[i].partno < slots[first].partno)
                        first = i;
        }
        if (first == n)
                return SLOT_ENOENT;
        ret->fallback = true;
        ret->spend_try = false;
        if (best < n) {
                ret->index = best;
                ret->reason = SLOT_REASON_FALLBACK_PRIORITY;
        } else {
                ret->index = first;
                ret->reason = SLOT_REASON_FALLBACK_LOWEST;
        }
        return 0;
}

const char *slot_reason_string(enum slot_reason reason) {
        switch (reason) {
        case SLOT_REASON_SUCCESSFUL:
                return "highest priority, successful";
        case SLOT_REASON_TRYING:
                return "highest priority, trying";
        case SLOT_REASON_FALLBACK_PRIORITY:
                return "fallback: no slot qualifies, highest priority";
        case SLOT_REASON_FALLBACK_LOWEST:
                return "fallback: no slot qualifies or has priority, lowest partition number";
        }
        return "unknown";
}

uint64_t slot_attrs_spend_try(uint64_t attrs) {
        unsigned tries = gpt_attr_tries(attrs);
        return gpt_attr_set_slot(attrs, gpt_attr_priority(attrs), tries ? tries - 1 : 0,
                                 gpt_attr_successful(attrs));
}

uint64_t slot_attrs_mark_bad(uint64_t attrs) {
        return gpt_attr_set_slot(attrs, gpt_attr_priority(attrs), 0, false);
}

static bool slot_name_char(char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-';
}

bool slot_from_gpt_entry(const struct gpt *gpt, uint32_t index, struct slot *ret) {
        static const char prefix[] = SLOT_PARTITION_PREFIX;
        const size_t plen = sizeof(prefix) - 1;
        struct gpt_guid type;
        char name[GPT_NAME_CHARS + 1];
        size_t len, i;
        uint64_t attrs;

        if (!gpt_entry_used(gpt, index))
                return false;
        gpt_entry_type(gpt, index, &type);
        if (!gpt_guid_equal(&type, &GPT_TYPE_ROOT_X86_64))
                return false;
        len = gpt_entry_name(gpt, index, name, sizeof(name));
        if (len <= plen || len - plen >= SLOT_NAME_MAX)
                return false;
        for (i = 0; i < plen; i++)
                if (name[i] != prefix[i])
                        return false;
        for (i = plen; i < len; i++)
                if (!slot_name_char(name[i]))
                        return false;

        for (i = plen; i <= len; i++)
                ret->name[i - plen] = name[i];
        attrs = gpt_entry_attrs(gpt, index);
        ret->partno = index + 1;
        ret->priority = (uint8_t)gpt_attr_priority(attrs);
        ret->tries = (uint8_t)gpt_attr_tries(attrs);
        ret->successful = gpt_attr_successful(attrs);
        ret->bootable = true;
        return true;
}

int slot_policy_from_gpt(const struct gpt *gpt, struct slot *slots, size_t max) {
        size_t n = 0;

        for (uint32_t i = 0; i < gpt_n_entries(gpt); i++) {
                struct slot s;
                if (!slot_from_gpt_entry(gpt, i, &s))
                        continue;
                if (n == max)
                        return SLOT_E2BIG;
                slots[n++] = s;
        }
        return (int)n;
}

/* A bounded string builder: appends what fits and always leaves the buffer terminated. */
struct sbuf {
        char *buf;
        size_t size, len;
};

static void sb_str(struct sbuf *sb, const char *s) {
        while (*s && sb->len + 1 < sb->size)
                sb->buf[sb->len++] = *s++;
        if (sb->size)
                sb->buf[sb->len] = '\0';
}

static void sb_uint(struct sbuf *sb, unsigned v) {
        char tmp[12];
        size_t i = sizeof(tmp) - 1;

        tmp[i] = '\0';
        do
                tmp[--i] = (char)('0' + v % 10);
        while ((v /= 10) && i > 0);
        sb_str(sb, tmp + i);
}

size_t slot_policy_summary(const struct slot *slots, size_t n, const struct slot_choice *choice,
                           char *buf, size_t size) {
        struct sbuf sb = {buf, size, 0};
        const struct slot *w;

        sb_str(&sb, "");
        for (size_t i = 0; i < n; i++) {
                if (i)
                        sb_str(&sb, " ");
                sb_str(&sb, slots[i].name);
                sb_str(&sb, "(prio=");
                sb_uint(&sb, slots[i].priority);
                sb_str(&sb, " tries=");
                sb_uint(&sb, slots[i].tries);
                sb_str(&sb, slots[i].successful ? " ok=1" : " ok=0");
                if (!slots[i].bootable)
                        sb_str(&sb, " unbootable");
                sb_str(&sb, ")");
        }
        if (!choice || choice->index >= n) {
                sb_str(&sb, " -> none: no bootable slot");
                return sb.len;
        }
        w = &slots[choice->index];
        sb_str(&sb, " -> ");
        sb_str(&sb, w->name);
        sb_str(&sb, ": ");
        sb_str(&sb, slot_reason_string(choice->reason));
        if (choice->spend_try) {
                sb_str(&sb, " (tries ");
                sb_uint(&sb, w->tries);
                sb_str(&sb, "->");
                sb_uint(&sb, w->tries ? w->tries - 1u : 0u);
                sb_str(&sb, ")");
        }
        return sb.len;
}
