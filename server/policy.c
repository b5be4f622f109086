#include "policy.h"

#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "version.h"

unsigned policy_bucket(const char *machine_id, const char *version) {
        /* FNV-1a, 64 bits, over "id \0 version", then a final mix so nearby ids spread. */
        uint64_t h = 0xcbf29ce484222325ull;
        for (const char *p = machine_id ? machine_id : ""; *p; p++)
                h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
        h = (h ^ 0) * 0x100000001b3ull;
        for (const char *p = version ? version : ""; *p; p++)
                h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
        h ^= h >> 33;
        h *= 0xff51afd7ed558ccdull;
        h ^= h >> 33;
        return (unsigned)(h % POLICY_BUCKETS);
}

unsigned policy_buckets_for(double percent) {
        if (!(percent > 0))
                return 0;
        if (percent >= 100)
                return POLICY_BUCKETS;
        return (unsigned)(percent * (POLICY_BUCKETS / 100) + 0.5);
}

static bool in_flight(const char *state) {
        return state && (!strcmp(state, STATE_GRANTED) || !strcmp(state, STATE_DOWNLOADING) ||
                         !strcmp(state, STATE_DOWNLOADED) || !strcmp(state, STATE_INSTALLED));
}

bool policy_starts_attempt(const struct policy_input *in) {
        return !(in->machine_target && in->release_version &&
                 strcmp(in->machine_target, in->release_version) == 0 && in_flight(in->machine_state) &&
                 !in->machine_state_stale);
}

bool policy_decide_early(const struct policy_input *in, enum policy_verdict *ret) {
        if (!in->release_version)
                *ret = VERDICT_NO_RELEASE;
        else if (in->machine_version && version_compare(in->machine_version, in->release_version) >= 0)
                *ret = VERDICT_UP_TO_DATE;
        else if (in->halted)
                *ret = VERDICT_HALTED;
        else
                return false; /* a pause needs the machine's state: it spares those in flight */
        return true;
}

enum policy_verdict policy_decide(const struct policy_input *in) {
        enum policy_verdict v;
        if (policy_decide_early(in, &v))
                return v;
        /* A machine already in flight for this release keeps its offer: a resumed download
         * must not be cut off by a lowered percentage. */
        if (!policy_starts_attempt(in))
                return VERDICT_UPDATE;
        if (in->paused)
                return VERDICT_PAUSED;
        if (in->machine_target && strcmp(in->machine_target, in->release_version) == 0 && in->machine_state &&
            strcmp(in->machine_state, STATE_ROLLEDBACK) == 0)
                return VERDICT_ROLLED_BACK;
        /* Whole buckets, rounded: in floating point 0.07 * 100 is 7.000000000000001, which
         * would let bucket 7 in as well. */
        if (policy_bucket(in->machine_id, in->release_version) >= policy_buckets_for(in->percent))
                return VERDICT_NOT_IN_ROLLOUT;
        return VERDICT_UPDATE;
}

const char *policy_verdict_name(enum policy_verdict v) {
        static const char *const names[] = {
                [VERDICT_UPDATE] = "update",
                [VERDICT_NO_RELEASE] = "no_release",
                [VERDICT_UP_TO_DATE] = "up_to_date",
                [VERDICT_PAUSED] = "paused",
                [VERDICT_HALTED] = "halted",
                [VERDICT_NOT_IN_ROLLOUT] = "not_in_rollout",
                [VERDICT_ROLLED_BACK] = "rolled_back",
                [VERDICT_INFLIGHT_LIMIT] = "inflight_limit",
        };
        return (unsigned)v < sizeof(names) / sizeof(names[0]) ? names[v] : "unknown";
}

bool policy_should_halt(int64_t failures, int64_t finished, int64_t min_failures, double ratio) {
        if (failures <= 0 || failures < min_failures)
                return false;
        return (double)failures >= ratio * (double)finished;
}
