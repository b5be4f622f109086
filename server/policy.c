#include "policy.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

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

static size_t span(const char *s, bool digits) {
        size_t n = 0;
        while (s[n] && s[n] != '.' && s[n] != '-' && s[n] != '+' && (!digits || isdigit((unsigned char)s[n])))
                n++;
        return n;
}

static int compare_part(const char *a, size_t na, const char *b, size_t nb) {
        bool da = na && strspn(a, "0123456789") >= na, db = nb && strspn(b, "0123456789") >= nb;
        if (da && db) {
                while (na > 1 && *a == '0')
                        a++, na--;
                while (nb > 1 && *b == '0')
                        b++, nb--;
                if (na != nb)
                        return na < nb ? -1 : 1;
                return memcmp(a, b, na);
        }
        if (da != db)
                return da ? -1 : 1; /* numbers sort before words */
        int c = memcmp(a, b, na < nb ? na : nb);
        return c ? c : (na > nb) - (na < nb);
}

int policy_version_compare(const char *a, const char *b) {
        /* Release part: numeric components, missing ones count as 0. */
        for (;;) {
                size_t na = span(a, false), nb = span(b, false);
                int c = compare_part(na ? a : "0", na ? na : 1, nb ? b : "0", nb ? nb : 1);
                if (c)
                        return c < 0 ? -1 : 1;
                a += na;
                b += nb;
                bool ma = *a == '.', mb = *b == '.';
                if (!ma && !mb)
                        break;
                if (ma)
                        a++;
                if (mb)
                        b++;
        }
        /* Pre-release: a version with one sorts before the same version without. */
        bool pa = *a == '-', pb = *b == '-';
        if (pa != pb)
                return pa ? -1 : 1;
        if (pa) {
                size_t na = strcspn(a, "+"), nb = strcspn(b, "+");
                int c = compare_part(a, na, b, nb);
                return c < 0 ? -1 : c > 0;
        }
        return 0;
}

static bool in_flight(const char *state) {
        return state && (!strcmp(state, STATE_GRANTED) || !strcmp(state, STATE_DOWNLOADING) ||
                         !strcmp(state, STATE_DOWNLOADED) || !strcmp(state, STATE_INSTALLED));
}

bool policy_starts_attempt(const struct policy_input *in) {
        return !(in->machine_target && in->release_version &&
                 strcmp(in->machine_target, in->release_version) == 0 && in_flight(in->machine_state));
}

bool policy_decide_early(const struct policy_input *in, enum policy_verdict *ret) {
        if (!in->release_version)
                *ret = VERDICT_NO_RELEASE;
        else if (in->machine_version && policy_version_compare(in->machine_version, in->release_version) >= 0)
                *ret = VERDICT_UP_TO_DATE;
        else if (in->halted)
                *ret = VERDICT_HALTED;
        else if (in->paused)
                *ret = VERDICT_PAUSED;
        else
                return false;
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
        if (in->machine_target && strcmp(in->machine_target, in->release_version) == 0 && in->machine_state &&
            strcmp(in->machine_state, STATE_ROLLEDBACK) == 0)
                return VERDICT_ROLLED_BACK;
        if (policy_bucket(in->machine_id, in->release_version) >= in->percent * (POLICY_BUCKETS / 100.0))
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
