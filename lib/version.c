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

/* Compares two identifiers made of [^.]: numbers numerically, otherwise bytewise; a number
 * sorts before a non-number (semver pre-release rule). */
static int compare_identifier(const char *a, size_t na, const char *b, size_t nb) {
        bool da = na > 0, db = nb > 0;
        for (size_t i = 0; i < na; i++)
                da = da && isdigit((unsigned char)a[i]);
        for (size_t i = 0; i < nb; i++)
                db = db && isdigit((unsigned char)b[i]);
        if (da && db) {
                while (na > 1 && *a == '0')
                        a++, na--;
                while (nb > 1 && *b == '0')
                        b++, nb--;
                if (na != nb)
                        return na < nb ? -1 : 1;
                int r = memcmp(a, b, na);
                return r < 0 ? -1 : r > 0;
        }
        if (da != db)
                return da ? -1 : 1;
        int r = memcmp(a, b, na < nb ? na : nb);
        if (r)
                return r < 0 ? -1 : 1;
        return na == nb ? 0 : na < nb ? -1 : 1;
}

/* Compares dot-separated lists; with pad_zero, a missing component counts as "0". */
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
                int r = compare_identifier(pa, la, pb, lb);
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
