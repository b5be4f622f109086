/* pivotctl: look at and drive updates, on this machine or offline on a disk image file.
 * The same code paths as pivot-agent (updater/update.c). */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "update.h"
#include "util.h"

/* Exit codes. */
#define EXIT_OK 0
#define EXIT_FAILURE_ 1
#define EXIT_USAGE 2
#define EXIT_NO_UPDATE 3 /* check/update: nothing newer on the server */
#define EXIT_DEFERRED 4  /* update: one is offered, but not installed now (the message says why) */

static void usage(FILE *f) {
        fputs("usage: pivotctl [OPTIONS] COMMAND [ARGS]\n"
              "\n"
              "Commands:\n"
              "  status [--json]      slots (versions, GPT attributes), what boots next, the agent\n"
              "  check                ask the update server whether an update is available\n"
              "  update [--force]     check, and install what is offered now, with progress\n"
              "                       (--force: even while a rollback by hand waits for its\n"
              "                       reboot, which it undoes)\n"
              "  install FILE|URL     install a payload (file, or http(s) URL) into the passive slot\n"
              "                       and switch to it\n"
              "                       [--no-flip] [--slot NAME] [--ignore-min-version]\n"
              "  mark-good [--force]  mark the running slot successful (--force: skip health checks)\n"
              "  rollback [--force]   make the previous slot boot next\n"
              "           [--cancel]  before the reboot: the running slot boots next again\n"
              "  reboot               reboot into an installed update (reboot_strategy = off)\n"
              "\n"
              "Options:\n"
              "  --disk FILE          work offline on a disk image file instead of this machine\n"
              "  --booted-slot NAME   offline: the slot to treat as running (default: the one that\n"
              "                       would boot now)\n"
              "  --config FILE        configuration (default /etc/pivot/update.conf)\n"
              "  --server URL         update server (overrides server =)\n"
              "  --channel NAME       channel (overrides channel =)\n"
              "  --key FILE           trusted public key (default public_key =; offline also the\n"
              "                       key inside the disk's running slot)\n"
              "  --state-dir DIR      agent state (default /var/lib/pivot; offline: a temporary one)\n"
              "  --allow-downgrade    accept a version older than the running one\n"
              "  -q, --quiet          no progress output\n"
              "  -v, --verbose        debug messages\n"
              "  -h, --help           this text\n"
              "\n"
              "Exit status: 0 success; 1 failure; 2 usage; 3 check/update found no update;\n"
              "4 update found one but did not install it now (the message says why).\n",
              f);
}

int main(int argc, char **argv) {
        enum { O_DISK = 0x100, O_BOOTED, O_BOOT_ID, O_CONFIG, O_SERVER, O_CHANNEL, O_KEY, O_STATE,
               O_DOWNGRADE };
        static const struct option opts[] = {
                {"disk", required_argument, NULL, O_DISK},
                {"booted-slot", required_argument, NULL, O_BOOTED},
                {"boot-id", required_argument, NULL, O_BOOT_ID},
                {"config", required_argument, NULL, O_CONFIG},
                {"server", required_argument, NULL, O_SERVER},
                {"channel", required_argument, NULL, O_CHANNEL},
                {"key", required_argument, NULL, O_KEY},
                {"state-dir", required_argument, NULL, O_STATE},
                {"allow-downgrade", no_argument, NULL, O_DOWNGRADE},
                {"quiet", no_argument, NULL, 'q'},
                {"verbose", no_argument, NULL, 'v'},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        struct updater_options o = {0};
        int c;

        log_set_program("pivotctl");
        /* Options stop at the command; the command's own options follow it. */
        while ((c = getopt_long(argc, argv, "+qvh", opts, NULL)) >= 0) {
                switch (c) {
                case O_DISK: o.disk = optarg; break;
                case O_BOOTED: o.booted_slot = optarg; break;
                case O_BOOT_ID: o.boot_id = optarg; break;
                case O_CONFIG: o.config_path = optarg; break;
                case O_SERVER: o.server = optarg; break;
                case O_CHANNEL: o.channel = optarg; break;
                case O_KEY: o.key_path = optarg; break;
                case O_STATE: o.state_dir = optarg; break;
                case O_DOWNGRADE: o.allow_downgrade = true; break;
                case 'q': o.quiet = true; break;
                case 'v': log_set_level(LOG_LEVEL_DEBUG); break;
                case 'h': usage(stdout); return EXIT_OK;
                default: usage(stderr); return EXIT_USAGE;
                }
        }
        if (optind >= argc) {
                usage(stderr);
                return EXIT_USAGE;
        }
        const char *cmd = argv[optind];
        int cargc = argc - optind;
        char **cargv = argv + optind;

        static const char *const known[] = {"status", "check", "update", "install", "mark-good",
                                            "rollback", "reboot"};
        bool ok = false;
        for (size_t i = 0; i < ELEMENTSOF(known); i++)
                ok = ok || !strcmp(cmd, known[i]);
        if (!ok) {
                log_error("unknown command \"%s\" (see --help)", cmd);
                return EXIT_USAGE;
        }

        /* Command options. */
        static const struct option copts[] = {
                {"json", no_argument, NULL, 'j'},
                {"force", no_argument, NULL, 'f'},
                {"cancel", no_argument, NULL, 'c'},
                {"no-flip", no_argument, NULL, 'n'},
                {"slot", required_argument, NULL, 's'},
                {"ignore-min-version", no_argument, NULL, 'm'},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        /* Which command takes which option; one given to another command is an error, not
         * ignored (rollback --slot C would roll back to another slot than C). */
        static const struct {
                int opt;
                const char *commands;
        } takes[] = {
                {'j', " status "},
                {'f', " update mark-good rollback reboot "},
                {'c', " rollback "},
                {'n', " install "},
                {'s', " install "},
                {'m', " install "},
        };
        bool json = false, force = false, cancel = false;
        struct install_options io = {0};
        char spaced[32];
        snprintf(spaced, sizeof(spaced), " %s ", cmd);
        /* 0, not 1: getopt starts afresh (the scan above stopped at the command), and options
         * may come after FILE (install FILE --no-flip). */
        optind = 0;
        while ((c = getopt_long(cargc, cargv, "h", copts, NULL)) >= 0) {
                for (size_t i = 0; i < ELEMENTSOF(takes); i++)
                        if (takes[i].opt == c && !strstr(takes[i].commands, spaced)) {
                                const char *name = "?";
                                for (const struct option *co = copts; co->name; co++)
                                        if (co->val == c)
                                                name = co->name;
                                log_error("%s: --%s is not an option of this command (see --help)",
                                          cmd, name);
                                return EXIT_USAGE;
                        }
                switch (c) {
                case 'j': json = true; break;
                case 'f': force = true; break;
                case 'c': cancel = true; break;
                case 'n': io.no_flip = true; break;
                case 's': io.slot = optarg; break;
                case 'm': io.ignore_min_version = true; break;
                case 'h': usage(stdout); return EXIT_OK;
                default: usage(stderr); return EXIT_USAGE;
                }
        }
        const char *arg = optind < cargc ? cargv[optind] : NULL;
        bool wants_arg = !strcmp(cmd, "install");
        if ((wants_arg && (!arg || optind + 1 != cargc)) || (!wants_arg && arg)) {
                log_error("%s: wrong arguments (see --help)", cmd);
                return EXIT_USAGE;
        }

        o.over_rollback = force && !strcmp(cmd, "update");
        _cleanup_(updater_freep) struct updater *u = NULL;
        int r = updater_open(&o, &u);
        if (r < 0)
                return EXIT_FAILURE_;

        if (!strcmp(cmd, "status"))
                r = updater_status(u, json, stdout);
        else if (!strcmp(cmd, "install")) {
                /* What the last boot means first, as check and update do: an update that did
                 * not come up is noted (and reported later) before the install takes its slot
                 * and its record. */
                updater_boot_outcome(u);
                r = updater_install_file(u, arg, &io);
        }
        else if (!strcmp(cmd, "check") || !strcmp(cmd, "update")) {
                struct check_result res;
                bool install = !strcmp(cmd, "update");
                updater_boot_outcome(u);
                r = updater_check(u, install, true, &res);
                if (r == 0 && !install && res.update_available)
                        printf("update available: %s (%llu bytes)\n", res.version,
                               (unsigned long long)res.size);
                else if (r == 0 && res.deferred) {
                        printf("update %s deferred\n", res.version);
                        return EXIT_DEFERRED;
                } else if (r == 0) {
                        if (!install || !res.update_available)
                                printf("no update\n");
                        return EXIT_NO_UPDATE;
                } else if (r == 1) {
                        printf("installed %s; it boots next (pivotctl reboot)\n", res.version);
                        r = 0;
                }
        } else if (!strcmp(cmd, "mark-good"))
                r = updater_mark_good(u, !force);
        else if (!strcmp(cmd, "rollback"))
                r = cancel ? updater_rollback_cancel(u) : updater_rollback(u, force);
        else if (!strcmp(cmd, "reboot")) {
                if (!updater_reboot_pending(u) && !force)
                        log_info("No installed update waits for a reboot; rebooting anyway");
                r = updater_reboot(u, "pivotctl reboot");
        }
        return r < 0 ? EXIT_FAILURE_ : EXIT_OK;
}
