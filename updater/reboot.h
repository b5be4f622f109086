/* When an installed update may reboot the machine: the reboot strategy decides when, and a
 * reboot lock (none yet; a FleetLock-style coordinated lock plugs in here later) decides
 * whether this machine may go now rather than at the same time as the rest of its fleet. */
#pragma once

#include <time.h>

#include "config.h"

struct reboot_strategy_ops {
        const char *name;
        /* Seconds from now until a reboot is allowed: 0 now, < 0 never by itself (wait for
         * `pivotctl reboot`). */
        long (*delay)(const struct config *c, time_t now);
};

struct reboot_lock_ops {
        const char *name;
        /* 0 when this machine may reboot now, -EAGAIN to try again later, or an error. */
        int (*acquire)(const struct config *c);
        /* After the reboot, once healthy. */
        int (*release)(const struct config *c);
};

const struct reboot_strategy_ops *reboot_strategy_get(enum reboot_strategy s);

/* Seconds from `now` until an installed update may reboot the machine: 0 now, < 0 not by
 * itself. The daemon asks again each time it wakes, and never keeps a time worked out before:
 * a clock step since then must not put the reboot outside the window. A retry (a busy lock, a
 * failed reboot command) waits `retry_in` seconds more (<= 0: none); the caller counts that on
 * the monotonic clock, so that a step of the wall clock neither stretches nor skips it. */
long reboot_wait(const struct reboot_strategy_ops *s, const struct config *c, time_t now,
                 long retry_in);
const struct reboot_lock_ops *reboot_lock_get(const struct config *c);
