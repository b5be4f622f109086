/* Version comparison: see version.h. */
#include "version.h"

#include <ctype.h>
#include <stddef.h>
#include <string.h>

bool version_valid(const char *v) {
        size_t n = v ? strlen(v) : 0;
        if (n == 0 || n > VERSION_MAX_LEN || !isdigit((unsigned char)v[0]))
                return false;
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)v[i];
                if (!isalnum(c) && c != '.' && c != '-' && c != '+' && c != '_' && c != '~')
                        return false;
        }
        return true;
}

static int compare_numbers(const char *a, size_t na, const char *b, size_t nb) {
        while (na > 0 && *a == '0')
                a++, na--;
        while (nb > 0 && *b == '0')
                b++, nb--;
        if (na != nb)
                return na < nb ? -1 : 1;
        int r = memcmp(a, b, na);
        return r < 0 ? -1 : r > 0;
}

/* Compares two identifiers made of [^.]: numbers numerically, otherwise bytewise; a number
 * sorts before a non-number (semver pre-release rule). */
static int compare_identifier(const char *a, size_t na, const char *b, size_t nb) {
        bool da = na > 0, db = nb > 0;
        for (size_t i = 0; i < na; i++)
                da = da && isdigit((unsigned char)a[i]);
        for (size_t i = 0; i < nb; i++)
                db = db && isdigit((unsigned char)b[i]);
        if (da && db)
                return compare_numbers(a, na, b, nb);
        if (da != db)
                return da ? -1 : 1;
        int r = memcmp(a, b, na < nb ? na : nb);
        if (r)
                return r < 0 ? -1 : 1;
        return na == nb ? 0 : na < nb ? -1 : 1;
}

/* The weight of a character in the text runs of a release component: '~' below the end of
 * the run (so "3~rc1" comes before "3"), then letters, then everything else. */
static int text_weight(const char *s, size_t i, size_t n) {
        if (i >= n || isdigit((unsigned char)s[i]))
                return 0;
        unsigned char c = (unsigned char)s[i];
        if (c == '~')
                return -1;
        return isalpha(c) ? c : c + 256;
}

/* One component of the release part ("10", "3~rc1", "x"): text and digit runs in turn, the
 * text compared by text_weight(), the digits as numbers. So a component that starts with a
 * number is ordered by it ("3~rc1" < "3" < "3a" < "10"), and one that does not sorts after
 * every number. */
static int compare_release_component(const char *a, size_t na, const char *b, size_t nb) {
        size_t i = 0, j = 0;
        while (i < na || j < nb) {
                while ((i < na && !isdigit((unsigned char)a[i])) ||
                       (j < nb && !isdigit((unsigned char)b[j]))) {
                        int wa = text_weight(a, i, na), wb = text_weight(b, j, nb);
                        if (wa != wb)
                                return wa < wb ? -1 : 1;
                        i++, j++;
                }
                size_t si = i, sj = j;
                while (i < na && isdigit((unsigned char)a[i]))
                        i++;
                while (j < nb && isdigit((unsigned char)b[j]))
                        j++;
                int r = compare_numbers(a + si, i - si, b + sj, j - sj);
                if (r)
                        return r;
        }
        return 0;
}

/* Compares dot-separated lists: with pad_zero, the release part (a missing component counts
 * as "0"), otherwise a pre-release part (semver identifiers). */
static int compare_list(const char *a, size_t na, const char *b, size_t nb, bool pad_zero) {
        size_t i = 0, j = 0;
        while (i < na || j < nb) {
                if (!pad_zero && (i >= na || j >= nb))
                        return i >= na ? -1 : 1; /* the shorter pre-release list is lower */
                size_t ei = i, ej = j;
                while (ei < na && a[ei] != '.')
                        ei++;
                while (ej < nb && b[ej] != '.')
                        ej++;
                const char *pa = i < na ? a + i : "0", *pb = j < nb ? b + j : "0";
                size_t la = i < na ? ei - i : 1, lb = j < nb ? ej - j : 1;
                int r = pad_zero ? compare_release_component(pa, la, pb, lb)
                                 : compare_identifier(pa, la, pb, lb);
                if (r)
                        return r;
                i = ei < na ? ei + 1 : na;
                j = ej < nb ? ej + 1 : nb;
        }
        return 0;
}

int version_compare(const char *a, const char *b) {
        size_t la = strcspn(a, "+"), lb = strcspn(b, "+"); /* build metadata does not count */
        size_t ma = strcspn(a, "-+"), mb = strcspn(b, "-+");
        int r = compare_list(a, ma, b, mb, true);
        if (r)
                return r;
        bool pa = ma < la, pb = mb < lb; /* has a pre-release part */
        if (!pa || !pb)
                return pa == pb ? 0 : pa ? -1 : 1;
        return compare_list(a + ma + 1, la - ma - 1, b + mb + 1, lb - mb - 1, false);
}
