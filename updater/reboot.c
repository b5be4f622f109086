/* Reboot strategies and the (for now trivial) reboot lock. */
#include "reboot.h"

#include <errno.h>

static long delay_now(const struct config *c, time_t now) {
        return 0;
}

static long delay_never(const struct config *c, time_t now) {
        return -1;
}

static long delay_window(const struct config *c, time_t now) {
        return reboot_window_wait(&c->window, (long)now);
}

static const struct reboot_strategy_ops strategies[] = {
        [REBOOT_STRATEGY_REBOOT] = {"reboot", delay_now},
        [REBOOT_STRATEGY_OFF] = {"off", delay_never},
        [REBOOT_STRATEGY_WINDOW] = {"window", delay_window},
};

const struct reboot_strategy_ops *reboot_strategy_get(enum reboot_strategy s) {
        return (unsigned)s < sizeof(strategies) / sizeof(strategies[0]) ? &strategies[s]
                                                                       : &strategies[0];
}

long reboot_wait(const struct reboot_strategy_ops *s, const struct config *c, time_t now,
                 long retry_in) {
        long wait = s->delay(c, now);
        if (wait >= 0 && retry_in > wait)
                wait = retry_in;
        return wait;
}

static int lock_none(const struct config *c) {
        return 0;
}

static const struct reboot_lock_ops lock_local = {"none", lock_none, lock_none};

const struct reboot_lock_ops *reboot_lock_get(const struct config *c) {
        return &lock_local;
}
