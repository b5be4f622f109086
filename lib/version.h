/* Release versions, as the payload manifest, the Omaha exchange and the rollout policy carry
 * them: dot-separated numbers with an optional "-prerelease" and "+build" (semver precedence;
 * missing release components count as 0, so "1.2" == "1.2.0"). A release component that is
 * not a plain number is ordered as Debian orders versions: by its number first, '~' before
 * the end ("1.2.3~rc1" < "1.2.3" < "1.2.3a" < "1.2.10"); one with no number sorts after the
 * numbers. One comparison for the agent, pivotctl, the payload tools and the server. No
 * dependencies. */
#pragma once

#include <stdbool.h>

#define VERSION_MAX_LEN 64u

/* <0, 0, >0. Any strings compare; versions that are not valid still get a total order. */
int version_compare(const char *a, const char *b);

/* What a payload may carry: starts with a digit, [A-Za-z0-9.+_~-], at most VERSION_MAX_LEN. */
bool version_valid(const char *v);
