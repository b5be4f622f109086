/* /etc/pivot/update.conf: the agent's settings, "key = value" lines, '#' comments.
 * updater/README.md lists every key. Missing keys keep the defaults below; unknown keys are
 * warned about and ignored, so an older agent reads a newer file. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define CONFIG_DEFAULT_PATH "/etc/pivot/update.conf"
#define CONFIG_DEFAULT_APP_ID "{b9606f32-42ac-4029-aef4-20ed435e8c45}"
#define CONFIG_DEFAULT_CHANNEL "stable"
#define CONFIG_DEFAULT_PUBLIC_KEY "/usr/share/pivot/update-signing.pub"
#define CONFIG_DEFAULT_STATE_DIR "/var/lib/pivot"
#define CONFIG_DEFAULT_RUN_DIR "/run/pivot"
#define CONFIG_MAX_HEALTH_CHECKS 8

enum reboot_strategy {
        REBOOT_STRATEGY_REBOOT, /* reboot as soon as an update is installed */
        REBOOT_STRATEGY_OFF,    /* wait for `pivotctl reboot` */
        REBOOT_STRATEGY_WINDOW, /* reboot inside the maintenance window */
};

/* A weekly maintenance window: "Sun 03:00 2h", "Mon,Thu 22:30 90m", "03:00 1h" (every day). */
struct reboot_window {
        uint8_t days;      /* bit 0 = Sunday ... bit 6 = Saturday */
        unsigned start;    /* minutes after midnight, local time */
        unsigned duration; /* minutes, 1 .. 7 days */
};

struct config {
        char *server;  /* Omaha URL, e.g. https://updates.example.com/v1/update/ */
        char *channel;
        char *app_id;
        char *board;
        char *public_key;
        char *ca_file; /* NULL: the system CA store */
        char *state_dir;
        char *run_dir;
        char *reboot_command;
        /* Test hook: stop for good, once, at this point of an install ("boot-files" before
         * the ESP write, "flip" between the ESP write and the GPT flip, "reboot" after the
         * flip), so that a test can cut the power exactly there. NULL: never. */
        char *debug_pause;
        enum reboot_strategy reboot_strategy;
        struct reboot_window window;
        unsigned first_check_delay; /* seconds after start */
        unsigned poll_interval;     /* seconds between checks */
        unsigned poll_jitter;       /* up to this many seconds more or less, at random */
        unsigned retry_interval;    /* first back-off after an error, doubled each time ... */
        unsigned retry_max;         /* ... up to this */
        unsigned stall_timeout;     /* a download with no bytes for this long is dropped */
        unsigned connect_timeout;
        unsigned download_retries;  /* resumed attempts after a dropped download */
        unsigned tries;             /* boot attempts a new slot gets (1..15) */
        bool allow_downgrade;
        char *health_checks[CONFIG_MAX_HEALTH_CHECKS]; /* shell commands; none: built-in checks */
        unsigned n_health_checks;
        unsigned health_timeout;    /* seconds per check command */
};

void config_init(struct config *c); /* the built-in defaults */
void config_done(struct config *c);

/* Reads a file over the current values. A missing file is fine when !must_exist.
 * -EINVAL (logged with file and line) for a malformed value. */
int config_load(struct config *c, const char *path, bool must_exist);

/* One "key = value" assignment, as in the file (also for command-line overrides). */
int config_set(struct config *c, const char *key, const char *value);

/* "45m", "2h", "30s", "1d" or plain seconds. */
int parse_duration(const char *s, unsigned *ret);
int parse_reboot_window(const char *s, struct reboot_window *ret);
const char *reboot_strategy_name(enum reboot_strategy s);

/* Seconds from `now` until the window (given in local time) next opens; 0 when now is inside
 * it. Real seconds, also across a change to or from daylight saving time. */
long reboot_window_wait(const struct reboot_window *w, long now);
