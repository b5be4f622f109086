/* THE answer to "which root slot boots next". The UEFI boot selector, pivot-agent and pivotctl
 * all call slot_policy_choose(), so they cannot disagree. No libc.
 *
 * The rule (docs/design.md, "GPT slot attributes"):
 *   - a slot qualifies when it is bootable, its priority is above 0, and it has tries left or is
 *     marked successful;
 *   - the qualifying slot with the highest priority wins, ties going to the lower partition
 *     number; if it is not successful, the caller spends one try (decrements tries and writes
 *     the GPT back) before starting anything;
 *   - when no slot qualifies the machine must still boot: the highest-priority bootable slot
 *     with priority above 0, or if every bootable slot has priority 0, the one with the lowest
 *     partition number. That is a fallback the caller reports loudly, and it spends no try;
 *   - only when no slot is bootable at all is there no answer.
 *
 * "Bootable" is the caller's knowledge: the selector clears it for a slot whose kernel it could
 * not load, and runs the policy again. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gpt.h"

#define SLOT_ENOENT (-2)
#define SLOT_E2BIG (-7)
#define SLOT_EINVAL (-22)

/* Slot names are what follows "ROOT-" in the partition name: "A", "B". */
#define SLOT_NAME_MAX 16
#define SLOT_PARTITION_PREFIX "ROOT-"
#define SLOT_MAX 16

struct slot {
        uint32_t partno; /* GPT partition number, 1-based (entry index + 1) */
        char name[SLOT_NAME_MAX];
        uint8_t priority; /* 0-15, 0 = never boot normally */
        uint8_t tries;    /* 0-15 */
        bool successful;
        bool bootable; /* false when the caller knows this slot's kernel cannot be started */
};

enum slot_reason {
        SLOT_REASON_SUCCESSFUL,        /* "highest priority, successful" */
        SLOT_REASON_TRYING,            /* "highest priority, trying" */
        SLOT_REASON_FALLBACK_PRIORITY, /* "fallback: no slot qualifies, highest priority" */
        SLOT_REASON_FALLBACK_LOWEST,   /* "fallback: no slot qualifies or has priority, ..." */
};

struct slot_choice {
        size_t index; /* into the caller's array */
        enum slot_reason reason;
        bool spend_try; /* the winner is not successful: decrement its tries before booting */
        bool fallback;  /* no slot qualified: warn loudly */
};

/* Whether the selector would start s by itself: a priority, and a try left or successful. */
bool slot_qualifies(const struct slot *s);

/* Whether a is tried before b: higher priority, or the same priority and a lower partition
 * number. */
bool slot_ranks_above(const struct slot *a, const struct slot *b);

/* 0 and *ret filled, or SLOT_ENOENT when no slot is bootable (or n is 0). */
int slot_policy_choose(const struct slot *slots, size_t n, struct slot_choice *ret);

const char *slot_reason_string(enum slot_reason reason);

/* Attribute updates the callers make, in one place. Other attribute bits are kept. */
uint64_t slot_attrs_spend_try(uint64_t attrs); /* tries - 1, never below 0 */
uint64_t slot_attrs_mark_bad(uint64_t attrs);  /* tries 0, successful 0; priority kept */

/* Whether GPT entry `index` is a root slot: root x86-64 type and named "ROOT-<name>", name 1-15
 * characters from [A-Za-z0-9_-] (it becomes part of ESP paths). Fills *ret (bootable = true). */
bool slot_from_gpt_entry(const struct gpt *gpt, uint32_t index, struct slot *ret);

/* Collects every root slot of a table, in partition order. Returns how many, or SLOT_E2BIG
 * when there are more than `max`. */
int slot_policy_from_gpt(const struct gpt *gpt, struct slot *slots, size_t max);

/* One line (no newline), as the boot selector prints it:
 *   A(prio=2 tries=0 ok=1) B(prio=1 tries=0 ok=1) -> A: highest priority, successful
 *   A(prio=1 tries=0 ok=1) B(prio=2 tries=2 ok=0) -> B: highest priority, trying (tries 2->1)
 * Slots show their state before the try is spent; an unbootable one carries " unbootable".
 * choice may be NULL (no slot bootable): the line then ends "-> none: no bootable slot".
 * Truncates to fit; returns the length written. */
size_t slot_policy_summary(const struct slot *slots, size_t n, const struct slot_choice *choice,
                           char *buf, size_t size);
