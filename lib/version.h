/* Release versions, as the payload manifest, the Omaha exchange and the rollout policy carry
 * them: dot-separated numbers with an optional "-prerelease" and "+build" (semver precedence;
 * missing numeric components count as 0, so "1.2" == "1.2.0"; a non-numeric component compares
 * bytewise and sorts after a numeric one). One comparison for the agent, pivotctl, the payload
 * tools and the server. No dependencies. */
#pragma once

#include <stdbool.h>

#define VERSION_MAX_LEN 64u

/* <0, 0, >0. Any strings compare; versions that are not valid still get a total order. */
int version_compare(const char *a, const char *b);

/* What a payload may carry: starts with a digit, [A-Za-z0-9.+_~-], at most VERSION_MAX_LEN. */
bool version_valid(const char *v);
