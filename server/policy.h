/* Rollout policy: which machine gets which release. Pure functions, no I/O.
 *
 * A machine's bucket is a hash of its machine id and the release version, in 0..9999: stable
 * for one release (raising the percentage only ever adds machines), different from one
 * release to the next (the same machines are not always first). A machine is in the rollout
 * when bucket < percent * 100. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define POLICY_BUCKETS 10000

unsigned policy_bucket(const char *machine_id, const char *version);

enum policy_verdict {
        VERDICT_UPDATE,          /* offer the release */
        VERDICT_NO_RELEASE,      /* nothing published on the channel */
        VERDICT_UP_TO_DATE,      /* the machine runs the release or a newer version */
        VERDICT_PAUSED,          /* paused by the admin */
        VERDICT_HALTED,          /* halted by safe mode */
        VERDICT_NOT_IN_ROLLOUT,  /* its bucket is above the percentage */
        VERDICT_ROLLED_BACK,     /* this release already failed to boot on it */
        VERDICT_INFLIGHT_LIMIT,  /* too many updates in flight */
};

struct policy_input {
        const char *machine_id;
        const char *machine_version;
        const char *release_version;   /* NULL: none */
        double percent;
        bool paused, halted;
        const char *machine_state;     /* its update state, for release_version */
        const char *machine_target;    /* the version that state is about */
        bool machine_state_stale;      /* unchanged for longer than the in-flight timeout */
};

/* Everything but the in-flight limit, which needs a count from the store: the caller checks
 * it when this says VERDICT_UPDATE and policy_counts_inflight() is true. */
enum policy_verdict policy_decide(const struct policy_input *in);

/* The verdicts policy_decide() reaches before it looks at the machine's update state (no
 * release, up to date, halted, paused): true with *ret set when one applies, false when the
 * decision needs machine_state and machine_target. Lets a caller skip reading them. */
bool policy_decide_early(const struct policy_input *in, enum policy_verdict *ret);

/* Whether granting this machine starts a new in-flight update: false when it is already in
 * flight for that release (offering it again costs nothing), unless that state is older than
 * the in-flight timeout. A machine silent that long is no longer counted in flight, so it
 * starts again under the pause and the limit. */
bool policy_starts_attempt(const struct policy_input *in);

/* How many of the POLICY_BUCKETS buckets a rollout percentage offers (rounded to whole ones). */
unsigned policy_buckets_for(double percent);

const char *policy_verdict_name(enum policy_verdict v);

/* Safe mode: halt when failures >= min_failures and failures >= ratio * finished. */
bool policy_should_halt(int64_t failures, int64_t finished, int64_t min_failures, double ratio);
