/* Unit tests for server/policy.c and, against SQLite in a scratch directory, server/store.c. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "policy.h"
#include "version.h"
#include "store.h"
#include "test/test.h"
#include "util.h"

TEST(bucket_is_stable_and_spread) {
        CHECK_EQ(policy_bucket("0123456789abcdef0123456789abcdef", "1.2.0"),
                 policy_bucket("0123456789abcdef0123456789abcdef", "1.2.0"));
        CHECK(policy_bucket("a", "1.2.0") < POLICY_BUCKETS);
        /* 10,000 machines land roughly evenly: each tenth of the range gets 1000 +- 15%. */
        unsigned tenth[10] = {};
        char id[40];
        for (unsigned i = 0; i < 10000; i++) {
                snprintf(id, sizeof(id), "%032x", i);
                tenth[policy_bucket(id, "1.3.0") / 1000]++;
        }
        for (unsigned i = 0; i < 10; i++)
                CHECK(tenth[i] > 850 && tenth[i] < 1150);
        /* A different release reshuffles: not the same first machines every time. */
        unsigned same = 0;
        for (unsigned i = 0; i < 1000; i++) {
                snprintf(id, sizeof(id), "%032x", i);
                same += (policy_bucket(id, "1.3.0") < 1000) && (policy_bucket(id, "1.4.0") < 1000);
        }
        CHECK(same < 40);
}

TEST(version_compare) {
        CHECK(version_compare("1.2.0", "1.2.0") == 0);
        CHECK(version_compare("1.2", "1.2.0") == 0);
        CHECK(version_compare("1.10.0", "1.9.9") > 0);
        CHECK(version_compare("3510.2.0", "3602.2.0") < 0);
        CHECK(version_compare("1.3.0-rc1", "1.3.0") < 0);
        CHECK(version_compare("1.3.0-rc2", "1.3.0-rc1") > 0);
        CHECK(version_compare("1.3.0+build5", "1.3.0") == 0);
        CHECK(version_compare("2.0", "10.0") < 0);
}

static struct policy_input base(void) {
        return (struct policy_input){
                .machine_id = "0123456789abcdef0123456789abcdef",
                .machine_version = "1.2.0",
                .release_version = "1.3.0",
                .percent = 100,
        };
}

TEST(decide) {
        struct policy_input in = base();
        CHECK_EQ(policy_decide(&in), VERDICT_UPDATE);
        in.release_version = NULL;
        CHECK_EQ(policy_decide(&in), VERDICT_NO_RELEASE);
        in = base();
        in.machine_version = "1.3.0";
        CHECK_EQ(policy_decide(&in), VERDICT_UP_TO_DATE);
        in.machine_version = "1.4.0"; /* never a downgrade */
        CHECK_EQ(policy_decide(&in), VERDICT_UP_TO_DATE);
        in = base();
        in.paused = true;
        CHECK_EQ(policy_decide(&in), VERDICT_PAUSED);
        /* A pause spares machines already in flight for the release. */
        in.machine_state = STATE_DOWNLOADING;
        in.machine_target = "1.3.0";
        CHECK_EQ(policy_decide(&in), VERDICT_UPDATE);
        in = base();
        in.halted = true;
        CHECK_EQ(policy_decide(&in), VERDICT_HALTED);
        in = base();
        in.percent = 0;
        CHECK_EQ(policy_decide(&in), VERDICT_NOT_IN_ROLLOUT);
        /* In flight for this release: keeps its offer even at 0%. */
        in.machine_state = STATE_DOWNLOADING;
        in.machine_target = "1.3.0";
        CHECK_EQ(policy_decide(&in), VERDICT_UPDATE);
        CHECK(!policy_starts_attempt(&in));
        /* Rolled back: never offered the same release again. */
        in = base();
        in.machine_state = STATE_ROLLEDBACK;
        in.machine_target = "1.3.0";
        CHECK_EQ(policy_decide(&in), VERDICT_ROLLED_BACK);
        /* ... but the next one is fine. */
        in.release_version = "1.3.1";
        CHECK_EQ(policy_decide(&in), VERDICT_UPDATE);
        CHECK(policy_starts_attempt(&in));
}

/* The early verdicts are exactly the ones the machine's state cannot change. */
TEST(decide_early_needs_no_state) {
        static const char *releases[] = { NULL, "1.3.0" };
        static const char *versions[] = { NULL, "1.2.0", "1.3.0", "1.4.0" };
        static const char *states[] = { NULL, STATE_IDLE, STATE_GRANTED, STATE_DOWNLOADING, STATE_ROLLEDBACK, STATE_COMPLETE };
        static const char *targets[] = { NULL, "1.3.0", "1.2.9" };
        for (size_t r = 0; r < ELEMENTSOF(releases); r++)
                for (size_t v = 0; v < ELEMENTSOF(versions); v++)
                        for (unsigned flags = 0; flags < 8; flags++) {
                                struct policy_input in = base();
                                in.release_version = releases[r];
                                in.machine_version = versions[v];
                                in.halted = flags & 1;
                                in.paused = flags & 2;
                                in.percent = flags & 4 ? 100 : 0;
                                enum policy_verdict early;
                                bool decided = policy_decide_early(&in, &early);
                                for (size_t st = 0; st < ELEMENTSOF(states); st++)
                                        for (size_t t = 0; t < ELEMENTSOF(targets); t++) {
                                                in.machine_state = states[st];
                                                in.machine_target = targets[t];
                                                enum policy_verdict full = policy_decide(&in);
                                                if (decided)
                                                        CHECK_EQ(full, early);
                                                else
                                                        CHECK(full == VERDICT_UPDATE || full == VERDICT_NOT_IN_ROLLOUT ||
                                                              full == VERDICT_ROLLED_BACK || full == VERDICT_PAUSED);
                                        }
                        }
        struct policy_input in = base();
        enum policy_verdict v;
        CHECK(!policy_decide_early(&in, &v));
        in.machine_version = "1.3.0";
        CHECK(policy_decide_early(&in, &v));
        CHECK_EQ(v, VERDICT_UP_TO_DATE);
}

TEST(percent_selects_about_that_share) {
        unsigned in_rollout = 0;
        char id[40];
        for (unsigned i = 0; i < 20000; i++) {
                snprintf(id, sizeof(id), "%032x", i * 7919);
                struct policy_input in = base();
                in.machine_id = id;
                in.percent = 25;
                in_rollout += policy_decide(&in) == VERDICT_UPDATE;
        }
        CHECK(in_rollout > 4700 && in_rollout < 5300);
}

/* Whole buckets: 0.07% is 7 of 10000, not 8 (0.07 * 100 is 7.000000000000001). */
TEST(percent_in_whole_buckets) {
        CHECK_EQ(policy_buckets_for(0.07), 7);
        CHECK_EQ(policy_buckets_for(0.14), 14);
        CHECK_EQ(policy_buckets_for(0.55), 55);
        CHECK_EQ(policy_buckets_for(12.5), 1250);
        CHECK_EQ(policy_buckets_for(0), 0);
        CHECK_EQ(policy_buckets_for(100), POLICY_BUCKETS);
}

/* In flight for longer than the timeout: no longer counted, so it starts again, and a pause
 * holds it. */
TEST(stale_in_flight_starts_again) {
        struct policy_input in = base();
        in.machine_state = STATE_DOWNLOADING;
        in.machine_target = "1.3.0";
        in.paused = true;
        CHECK_EQ(policy_decide(&in), VERDICT_UPDATE);
        CHECK(!policy_starts_attempt(&in));
        in.machine_state_stale = true;
        CHECK(policy_starts_attempt(&in));
        CHECK_EQ(policy_decide(&in), VERDICT_PAUSED);
}

TEST(safe_mode_threshold) {
        CHECK(!policy_should_halt(4, 4, 5, 0.2));   /* too few failures */
        CHECK(policy_should_halt(5, 25, 5, 0.2));   /* 5 of 25 = 20% */
        CHECK(!policy_should_halt(5, 26, 5, 0.2));  /* 19% */
        CHECK(policy_should_halt(1, 1, 1, 1.0));
        CHECK(!policy_should_halt(0, 0, 5, 0.2));
}

TEST(event_states) {
        CHECK_STREQ(event_state(13, 1, 0), STATE_DOWNLOADING);
        CHECK_STREQ(event_state(14, 1, 0), STATE_DOWNLOADED);
        CHECK_STREQ(event_state(3, 1, 0), STATE_INSTALLED);
        CHECK_STREQ(event_state(3, 2, 0), STATE_COMPLETE);
        CHECK_STREQ(event_state(3, 0, 10), STATE_ERROR);
        CHECK_STREQ(event_state(3, 0, 44), STATE_ROLLEDBACK);
        CHECK(event_state(3, 9, 0) == NULL);
        /* Not a step of an update: nothing, whatever its result. */
        CHECK(event_state(800, 0, 10) == NULL);
        CHECK(event_state(2, 1, 0) == NULL);
}

/* A SQLite store in a new temporary directory, whose name goes to dir; NULL (the test has
 * failed) when it cannot be made. store_close(), then remove_dir(). */
#define STORE_TEST_DIR "/tmp/pivot-store-test-XXXXXX"
static struct store *temp_store(char dir[static sizeof(STORE_TEST_DIR)]) {
        struct store *s = NULL;
        strcpy(dir, STORE_TEST_DIR);
        CHECK(mkdtemp(dir) != NULL);
        CHECK_EQ(store_open(dir, NULL, &s), 0);
        return s;
}

static void remove_dir(const char *dir) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        CHECK_EQ(system(cmd), 0);
}

/* A release of the default app, with made-up hashes. */
static void add_release(struct store *s, const char *version) {
        struct release rel = {
                .app = DEFAULT_APP_ID, .version = (char *)version, .package_name = "update.payload",
                .size = 5,
                .sha1 = "b233d57e86fd769845c554b52a8fa2fe98bacfba",
                .sha256 = "d6386c59a6bcfcb1e4ced6beeb4594757afaa891ac805388076d0c83d2f5260a",
        };
        CHECK_EQ(store_release_add(s, &rel), 0);
}

TEST(store_safe_mode_on_sqlite) {
        char dir[sizeof(STORE_TEST_DIR)];
        struct store *s = temp_store(dir);
        if (!s)
                return;
        struct release rel = {
                .app = DEFAULT_APP_ID, .version = "1.3.0", .package_name = "update.payload", .size = 5,
                .sha1 = "b233d57e86fd769845c554b52a8fa2fe98bacfba",
                .sha256 = "d6386c59a6bcfcb1e4ced6beeb4594757afaa891ac805388076d0c83d2f5260a",
                .base_url = "https://cdn.example.net/1.3.0/",
        };
        CHECK_EQ(store_release_add(s, &rel), 0);
        CHECK_EQ(store_release_add(s, &rel), 0); /* the same again is fine */
        rel.size = 6;
        CHECK_EQ(store_release_add(s, &rel), -EEXIST);
        CHECK_EQ(store_channel_create(s, DEFAULT_APP_ID, "stable"), 0);
        CHECK_EQ(store_channel_create(s, DEFAULT_APP_ID, "stable"), -EEXIST);
        CHECK_EQ(store_channel_create(s, "{nope}", "stable"), -ENOENT);
        CHECK_EQ(store_channel_set_release(s, DEFAULT_APP_ID, "stable", "1.3.0", 50), 0);

        struct channel c = {};
        CHECK_EQ(store_channel_get(s, DEFAULT_APP_ID, "stable", &c), 0);
        CHECK(c.has_release);
        CHECK_STREQ(c.release.base_url, "https://cdn.example.net/1.3.0/");
        CHECK(c.policy.percent == 50);
        CHECK_EQ(c.policy.safe_min_failures, 5);
        channel_done(&c);

        /* 20 machines granted; 5 fail (one by rolling back): 5 of 5 finished -> halt. */
        char id[40];
        for (int i = 0; i < 20; i++) {
                snprintf(id, sizeof(id), "%032x", i);
                struct machine_checkin ci = { .app = DEFAULT_APP_ID, .id = id, .channel = "stable", .version = "1.2.0", .now = 1000 };
                struct machine_state ms = {};
                CHECK_EQ(store_machine_checkin(s, &ci, &ms), 0);
                CHECK_STREQ(ms.state, STATE_IDLE);
                machine_state_done(&ms);
                bool granted = false;
                CHECK_EQ(store_grant_within_limit(s, DEFAULT_APP_ID, "stable", id, "1.3.0", 1000, 0, 0,
                                                  &granted), 0);
                CHECK(granted);
        }
        int64_t n = 0;
        CHECK_EQ(store_count_inflight(s, DEFAULT_APP_ID, "stable", "1.3.0", 0, &n), 0);
        CHECK_EQ(n, 20);
        bool halted = false;
        for (int i = 0; i < 5; i++) {
                snprintf(id, sizeof(id), "%032x", i);
                struct event_record e = { .app = DEFAULT_APP_ID, .channel = "stable", .machine = id, .version = "1.2.0",
                                          .target_version = "1.3.0", .type = 3, .result = 0,
                                          .error_code = i == 0 ? 44 : 10, .now = 1001 };
                CHECK_EQ(store_event(s, &e, &halted), 1);
                CHECK(halted == (i == 4));
        }
        CHECK_EQ(store_channel_get(s, DEFAULT_APP_ID, "stable", &c), 0);
        CHECK(c.policy.halted);
        CHECK(c.halt_reason && strstr(c.halt_reason, "safe mode"));
        channel_done(&c);
        CHECK_EQ(store_count_inflight(s, DEFAULT_APP_ID, "stable", "1.3.0", 0, &n), 0);
        CHECK_EQ(n, 15);
        CHECK_EQ(store_channel_resume(s, DEFAULT_APP_ID, "stable"), 0);
        CHECK_EQ(store_channel_get(s, DEFAULT_APP_ID, "stable", &c), 0);
        CHECK(!c.policy.halted);
        channel_done(&c);
        store_close(s);
        remove_dir(dir);
}

static int64_t finished_attempts(struct store *s, const char *version, int64_t *ret_failed) {
        struct db_rows rows = {};
        const struct db_param p[] = { DB_TEXT(DEFAULT_APP_ID), DB_TEXT(version) };
        CHECK_EQ(store_query(s, "SELECT COALESCE(SUM(failed), 0), COALESCE(SUM(CASE WHEN failed > 0 OR"
                             " state = 'complete' THEN 1 ELSE 0 END), 0) FROM attempts WHERE app = $1 AND version = $2",
                             p, 2, &rows), 0);
        *ret_failed = db_cell_int(&rows, 0, 0);
        int64_t n = db_cell_int(&rows, 0, 1);
        db_rows_done(&rows);
        return n;
}

static void checkin(struct store *s, const char *id, const char *channel, const char *version, int64_t now,
                    struct machine_state *ms) {
        struct machine_checkin ci = { .app = DEFAULT_APP_ID, .id = id, .channel = channel, .version = version, .now = now };
        CHECK_EQ(store_machine_checkin(s, &ci, ms), 0);
}

static int event(struct store *s, const char *id, const char *target, int type, int result, int code, bool *halted) {
        struct event_record e = { .app = DEFAULT_APP_ID, .channel = "stable", .machine = id, .version = "1.2.0",
                                  .target_version = target, .type = type, .result = result, .error_code = code,
                                  .now = 2000 };
        return store_event(s, &e, halted);
}

/* A machine on 1.2.0 checks in on channel and is granted version (no in-flight limit). */
static void check_in_and_grant(struct store *s, const char *id, const char *channel, const char *version,
                               int64_t now) {
        struct machine_state ms = {};
        bool granted = false;
        checkin(s, id, channel, "1.2.0", now, &ms);
        machine_state_done(&ms);
        CHECK_EQ(store_grant_within_limit(s, DEFAULT_APP_ID, channel, id, version, now, 0, 0, &granted), 0);
        CHECK(granted);
}

/* A store in dir whose channel "stable" offers release to everyone; NULL if it cannot open. */
static struct store *stable_store(char *dir, const char *release) {
        struct store *s = temp_store(dir);
        if (!s)
                return NULL;
        add_release(s, release);
        CHECK_EQ(store_channel_create(s, DEFAULT_APP_ID, "stable"), 0);
        CHECK_EQ(store_channel_set_release(s, DEFAULT_APP_ID, "stable", release, 100), 0);
        return s;
}

/* Events move only an update in flight: a failure from a machine that finished, or one after a
 * rollback, is logged and changes nothing safe mode or the policy reads. */
TEST(store_events_outside_an_update_on_sqlite) {
        char dir[sizeof(STORE_TEST_DIR)];
        struct store *s = stable_store(dir, "1.3.0");
        if (!s)
                return;
        const struct db_param p[] = { DB_TEXT(DEFAULT_APP_ID) };
        CHECK_EQ(store_query(s, "UPDATE channels SET safe_min_failures = 1 WHERE app = $1", p, 1, NULL), 0);
        bool halted = false;
        struct machine_state ms = {};
        const char *done = "00000000000000000000000000000001", *back = "00000000000000000000000000000002";
        for (int i = 0; i < 2; i++)
                check_in_and_grant(s, i ? back : done, "stable", "1.3.0", 1000);
        CHECK_EQ(event(s, done, "1.3.0", 3, 2, 0, &halted), 1);
        /* Finished: a failure (a garbled answer, a made-up event type) is only logged. */
        CHECK_EQ(event(s, done, "1.3.0", 3, 0, 2503, &halted), 0);
        CHECK_EQ(event(s, done, "1.3.0", 800, 0, 10, &halted), 0);
        CHECK(!halted);
        int64_t failed = -1;
        CHECK_EQ(finished_attempts(s, "1.3.0", &failed), 1);
        CHECK_EQ(failed, 0);
        /* Granted the same release again (reimaged): its success still counts. */
        check_in_and_grant(s, done, "stable", "1.3.0", 1500);
        CHECK_EQ(finished_attempts(s, "1.3.0", &failed), 1);
        /* A rollback stays one: a later failure does not make it an error. */
        CHECK_EQ(event(s, back, "1.3.0", 3, 0, 44, &halted), 1);
        CHECK(halted);
        CHECK_EQ(event(s, back, "1.3.0", 3, 0, 10, &halted), 0);
        checkin(s, back, "stable", "1.2.0", 2001, &ms);
        CHECK_STREQ(ms.state, STATE_ROLLEDBACK);
        machine_state_done(&ms);
        CHECK_EQ(finished_attempts(s, "1.3.0", &failed), 2);
        CHECK_EQ(failed, 1);
        store_close(s);
        remove_dir(dir);
}

/* An event that names an attempt the machine has left behind (granted a newer release
 * meanwhile) ends that attempt if it is still in flight, and leaves the machine's newer one
 * alone; an attempt that finished stays as it was. */
TEST(store_late_event_names_its_attempt_on_sqlite) {
        char dir[sizeof(STORE_TEST_DIR)];
        struct store *s = stable_store(dir, "1.3.0");
        if (!s)
                return;
        add_release(s, "1.4.0");
        bool halted = false;
        struct machine_state ms = {};
        const char *installed = "00000000000000000000000000000004", *done = "00000000000000000000000000000005";
        for (int i = 0; i < 2; i++) {
                const char *id = i ? done : installed;
                check_in_and_grant(s, id, "stable", "1.3.0", 1000);
                CHECK_EQ(event(s, id, "1.3.0", 3, i ? 2 : 1, 0, &halted), 1);
        }
        CHECK_EQ(store_channel_set_release(s, DEFAULT_APP_ID, "stable", "1.4.0", 100), 0);
        for (int i = 0; i < 2; i++)
                check_in_and_grant(s, i ? done : installed, "stable", "1.4.0", 1500);
        /* 1.3.0 did not come up on the first, and the second reports a failure about its
         * finished 1.3.0: neither is the machine's attempt at 1.4.0. */
        CHECK_EQ(event(s, installed, "1.3.0", 3, 0, 44, &halted), 0);
        CHECK_EQ(event(s, done, "1.3.0", 3, 0, 10, &halted), 0);
        int64_t failed = -1;
        CHECK_EQ(finished_attempts(s, "1.3.0", &failed), 2);
        CHECK_EQ(failed, 1);
        CHECK_EQ(finished_attempts(s, "1.4.0", &failed), 0);
        CHECK_EQ(failed, 0);
        CHECK(!halted);
        for (int i = 0; i < 2; i++) {
                checkin(s, i ? done : installed, "stable", "1.2.0", 2001, &ms);
                CHECK_STREQ(ms.state, STATE_GRANTED);
                CHECK_STREQ(ms.target_version, "1.4.0");
                machine_state_done(&ms);
        }
        store_close(s);
        remove_dir(dir);
}

/* A machine that moves channel leaves its update in flight behind (it starts again under the
 * new channel's rollout); a rollback goes with it. */
TEST(store_channel_move_ends_flight_on_sqlite) {
        char dir[sizeof(STORE_TEST_DIR)];
        struct store *s = temp_store(dir);
        if (!s)
                return;
        add_release(s, "1.3.0");
        CHECK_EQ(store_channel_create(s, DEFAULT_APP_ID, "stable"), 0);
        CHECK_EQ(store_channel_create(s, DEFAULT_APP_ID, "beta"), 0);
        bool granted = false, halted = false;
        struct machine_state ms = {};
        const char *id = "00000000000000000000000000000003";
        check_in_and_grant(s, id, "stable", "1.3.0", 1000);
        checkin(s, id, "beta", "1.2.0", 1100, &ms);
        CHECK_STREQ(ms.state, STATE_IDLE);
        CHECK(ms.target_version == NULL);
        CHECK_EQ(ms.state_changed, 1100);
        machine_state_done(&ms);
        int64_t n = -1;
        CHECK_EQ(store_count_inflight(s, DEFAULT_APP_ID, "stable", "1.3.0", 0, &n), 0);
        CHECK_EQ(n, 0);
        /* The deferred check-in (no update check) moves it the same way. */
        CHECK_EQ(store_grant_within_limit(s, DEFAULT_APP_ID, "beta", id, "1.3.0", 1200, 0, 0, &granted), 0);
        struct machine_checkin ci = { .app = DEFAULT_APP_ID, .id = id, .channel = "stable", .version = "1.2.0", .now = 1300 };
        CHECK_EQ(store_machine_checkin_deferred(s, &ci), 0);
        checkin(s, id, "stable", "1.2.0", 1301, &ms);
        CHECK_STREQ(ms.state, STATE_IDLE);
        machine_state_done(&ms);
        /* Rolled back in stable, then moved: still rolled back. */
        CHECK_EQ(store_grant_within_limit(s, DEFAULT_APP_ID, "stable", id, "1.3.0", 1400, 0, 0, &granted), 0);
        struct event_record e = { .app = DEFAULT_APP_ID, .channel = "stable", .machine = id, .version = "1.2.0",
                                  .target_version = "1.3.0", .type = 3, .result = 0, .error_code = 44, .now = 1500 };
        CHECK_EQ(store_event(s, &e, &halted), 1);
        checkin(s, id, "beta", "1.2.0", 1600, &ms);
        CHECK_STREQ(ms.state, STATE_ROLLEDBACK);
        CHECK_STREQ(ms.target_version, "1.3.0");
        machine_state_done(&ms);
        store_close(s);
        remove_dir(dir);
}

/* One machine's row, as the admin listing reads it (a read runs the queued writes first). */
static void machine_row(struct store *s, const char *id, char *channel, char *version, int64_t *last) {
        struct db_rows rows = {};
        const struct db_param p[] = { DB_TEXT(DEFAULT_APP_ID), DB_TEXT(id) };
        CHECK_EQ(store_query(s, "SELECT channel, version, last_checkin FROM machines WHERE app = $1 AND id = $2",
                             p, 2, &rows),
                 0);
        CHECK_EQ(rows.n_rows, 1);
        snprintf(channel, 32, "%s", db_cell(&rows, 0, 0) ? db_cell(&rows, 0, 0) : "");
        snprintf(version, 32, "%s", db_cell(&rows, 0, 1) ? db_cell(&rows, 0, 1) : "");
        *last = db_cell_int(&rows, 0, 2);
        db_rows_done(&rows);
}

/* Check-ins written without waiting: new machines, channel moves, and the order with the
 * writes that do wait. */
/* The in-flight limit: room while under it, a refusal that grants nothing at it, and attempts
 * older than `since` no longer counted. */
TEST(store_inflight_limit_on_sqlite) {
        char dir[sizeof(STORE_TEST_DIR)];
        struct store *s = stable_store(dir, "1.3.0");
        if (!s)
                return;
        char id[4][40];
        bool granted;
        int64_t n = 0;
        for (int i = 0; i < 4; i++) {
                snprintf(id[i], sizeof(id[i]), "%032x", i);
                struct machine_checkin ci = { .app = DEFAULT_APP_ID, .id = id[i], .channel = "stable",
                                              .version = "1.2.0", .now = 1000 };
                CHECK_EQ(store_machine_checkin(s, &ci, NULL), 0);
        }
        for (int i = 0; i < 3; i++) {
                granted = false;
                CHECK_EQ(store_grant_within_limit(s, DEFAULT_APP_ID, "stable", id[i], "1.3.0", 1000 + i, 2, 0,
                                                  &granted), 0);
                CHECK(granted == (i < 2));
        }
        CHECK_EQ(store_count_inflight(s, DEFAULT_APP_ID, "stable", "1.3.0", 0, &n), 0);
        CHECK_EQ(n, 2);
        /* Counted from 1001 on, the grant at 1000 has timed out: room for one more. */
        CHECK_EQ(store_grant_within_limit(s, DEFAULT_APP_ID, "stable", id[2], "1.3.0", 1005, 2, 1001,
                                          &granted), 0);
        CHECK(granted);
        /* Without a limit, always granted. */
        CHECK_EQ(store_grant_within_limit(s, DEFAULT_APP_ID, "stable", id[3], "1.3.0", 1006, 0, 0, &granted), 0);
        CHECK(granted);
        CHECK_EQ(store_count_inflight(s, DEFAULT_APP_ID, "stable", "1.3.0", 0, &n), 0);
        CHECK_EQ(n, 4);
        store_close(s);
        remove_dir(dir);
}

TEST(store_deferred_checkins_on_sqlite) {
        char dir[sizeof(STORE_TEST_DIR)];
        struct store *s = temp_store(dir);
        if (!s)
                return;
        char channel[32], version[32];
        int64_t last = 0;
        const char *id = "0123456789abcdef0123456789abcdef";
        struct machine_checkin ci = { .app = DEFAULT_APP_ID, .id = id, .channel = "stable", .version = "1.2.0", .now = 1000 };

        CHECK_EQ(store_machine_checkin_deferred(s, &ci), 0);      /* a new machine */
        machine_row(s, id, channel, version, &last);
        CHECK_STREQ(channel, "stable");
        CHECK_EQ(last, 1000);
        ci.now = 1001;
        ci.version = "1.3.0";
        CHECK_EQ(store_machine_checkin_deferred(s, &ci), 0);      /* the same channel */
        ci.now = 1002;
        ci.channel = "beta";
        CHECK_EQ(store_machine_checkin_deferred(s, &ci), 0);      /* moved to another channel */
        machine_row(s, id, channel, version, &last);
        CHECK_STREQ(channel, "beta");
        CHECK_STREQ(version, "1.3.0");
        CHECK_EQ(last, 1002);

        /* Queued, then written at once: the queued one lands first. */
        ci.now = 1003;
        ci.version = "1.3.1";
        CHECK_EQ(store_machine_checkin_deferred(s, &ci), 0);
        ci.now = 1004;
        ci.version = "1.4.0";
        struct machine_state ms = {};
        CHECK_EQ(store_machine_checkin(s, &ci, &ms), 0);
        CHECK_STREQ(ms.state, STATE_IDLE);
        machine_state_done(&ms);
        machine_row(s, id, channel, version, &last);
        CHECK_STREQ(version, "1.4.0");
        CHECK_EQ(last, 1004);

        /* Many at once: past the batch the background thread runs, all recorded. */
        char mid[40];
        ci.channel = "stable";
        for (int i = 0; i < 3000; i++) {
                snprintf(mid, sizeof(mid), "%032x", i);
                ci.id = mid;
                ci.now = 2000 + i;
                CHECK_EQ(store_machine_checkin_deferred(s, &ci), 0);
        }
        struct db_rows rows = {};
        const struct db_param p[] = { DB_TEXT(DEFAULT_APP_ID), DB_TEXT("stable") };
        CHECK_EQ(store_query(s, "SELECT COUNT(*) FROM machines WHERE app = $1 AND channel = $2", p, 2, &rows), 0);
        CHECK_EQ(db_cell_int(&rows, 0, 0), 3000);
        db_rows_done(&rows);

        /* Queued check-ins survive a restart (closing commits them). */
        ci.id = id;
        ci.now = 9999;
        CHECK_EQ(store_machine_checkin_deferred(s, &ci), 0);
        store_close(s);
        CHECK_EQ(store_open(dir, NULL, &s), 0);
        if (!s)
                return;
        machine_row(s, id, channel, version, &last);
        CHECK_EQ(last, 9999);
        CHECK_STREQ(channel, "stable");
        store_close(s);
        remove_dir(dir);
}

/* The Omaha path's channel copies: shared, and dropped by every change made through the store. */
TEST(store_channel_cache_on_sqlite) {
        char dir[sizeof(STORE_TEST_DIR)];
        struct store *s = temp_store(dir);
        if (!s)
                return;
        const struct channel *a = NULL, *b = NULL;
        CHECK_EQ(store_channel_lookup(s, DEFAULT_APP_ID, "stable", &a), -ENOENT);
        CHECK_EQ(store_channel_create(s, DEFAULT_APP_ID, "stable"), 0);
        CHECK_EQ(store_channel_lookup(s, DEFAULT_APP_ID, "stable", &a), 0);
        CHECK_EQ(store_channel_lookup(s, DEFAULT_APP_ID, "stable", &b), 0);
        CHECK(a == b); /* the same copy */
        CHECK(!a->has_release);
        CHECK(!a->policy.paused);
        store_channel_put(b);
        CHECK_EQ(store_channel_set_paused(s, DEFAULT_APP_ID, "stable", true), 0);
        CHECK_EQ(store_channel_lookup(s, DEFAULT_APP_ID, "stable", &b), 0);
        CHECK(b != a);
        CHECK(b->policy.paused);
        CHECK(!a->policy.paused); /* a holder keeps its copy until it gives it back */
        store_channel_put(a);
        store_channel_put(b);
        add_release(s, "1.3.0");
        CHECK_EQ(store_channel_set_release(s, DEFAULT_APP_ID, "stable", "1.3.0", 30), 0);
        CHECK_EQ(store_channel_lookup(s, DEFAULT_APP_ID, "stable", &a), 0);
        CHECK(a->has_release);
        CHECK_STREQ(a->release_version, "1.3.0");
        CHECK(a->policy.percent == 30);
        store_channel_put(a);
        store_close(s);
        remove_dir(dir);
}

/* The batch writer PostgreSQL uses, here on SQLite: new machines, one check-in per machine
 * and batch (the latest), never a last check-in moved backwards, channel moves, chunks. */
TEST(store_batched_checkins) {
        char dir[] = "/tmp/pivot-store-test-XXXXXX";
        CHECK(mkdtemp(dir) != NULL);
        struct store *s = NULL;
        CHECK_EQ(store_open_with(dir, NULL, STORE_BATCHED_CHECKINS, &s), 0);
        if (!s)
                return;
        char channel[32], version[32], mid[40];
        int64_t last = 0;
        const char *id = "0123456789abcdef0123456789abcdef";
        struct machine_checkin ci = { .app = DEFAULT_APP_ID, .id = id, .channel = "stable", .version = "1.2.0",
                                      .bootid = "{b}", .now = 1000 };

        CHECK_EQ(store_machine_checkin_deferred(s, &ci), 0);
        ci.now = 1001;
        ci.version = "1.2.1";
        CHECK_EQ(store_machine_checkin_deferred(s, &ci), 0);      /* the same machine, same batch */
        CHECK_EQ(store_flush(s), 0);
        machine_row(s, id, channel, version, &last);
        CHECK_STREQ(version, "1.2.1");
        CHECK_EQ(last, 1001);

        /* Written at once by someone else meanwhile: an older queued one does not undo it. */
        ci.now = 2000;
        ci.version = "1.3.0";
        struct machine_state ms = {};
        CHECK_EQ(store_machine_checkin(s, &ci, &ms), 0);
        machine_state_done(&ms);
        ci.now = 1500;
        ci.version = "1.2.9";
        CHECK_EQ(store_machine_checkin_deferred(s, &ci), 0);
        CHECK_EQ(store_flush(s), 0);
        machine_row(s, id, channel, version, &last);
        CHECK_STREQ(version, "1.3.0");
        CHECK_EQ(last, 2000);

        /* Moved to another channel. */
        ci.now = 2001;
        ci.channel = "beta";
        CHECK_EQ(store_machine_checkin_deferred(s, &ci), 0);
        CHECK_EQ(store_flush(s), 0);
        machine_row(s, id, channel, version, &last);
        CHECK_STREQ(channel, "beta");
        CHECK_EQ(last, 2001);

        /* Many machines, in every statement size, some twice. */
        ci.channel = "stable";
        for (int i = 0; i < 1700; i++) {
                snprintf(mid, sizeof(mid), "%032x", i % 1500);
                ci.id = mid;
                ci.now = 3000 + i;
                CHECK_EQ(store_machine_checkin_deferred(s, &ci), 0);
        }
        CHECK_EQ(store_flush(s), 0);
        struct db_rows rows = {};
        const struct db_param p[] = { DB_TEXT(DEFAULT_APP_ID), DB_TEXT("stable") };
        CHECK_EQ(store_query(s, "SELECT COUNT(*), SUM(last_checkin) FROM machines WHERE app = $1 AND channel = $2", p, 2,
                             &rows),
                 0);
        CHECK_EQ(db_cell_int(&rows, 0, 0), 1500);
        /* Machines 0..199 came twice: their second time counts (3000 + 1500 + i). */
        int64_t want = 0;
        for (int i = 0; i < 1500; i++)
                want += i < 200 ? 4500 + i : 3000 + i;
        CHECK_EQ(db_cell_int(&rows, 0, 1), want);
        db_rows_done(&rows);

        /* Closing writes what is queued. */
        ci.id = id;
        ci.now = 9999;
        CHECK_EQ(store_machine_checkin_deferred(s, &ci), 0);
        store_close(s);
        CHECK_EQ(store_open(dir, NULL, &s), 0);
        if (!s)
                return;
        machine_row(s, id, channel, version, &last);
        CHECK_EQ(last, 9999);
        store_close(s);
        remove_dir(dir);
}

/* --- event retention --- */

#define DAY 86400

static void event_at(struct store *s, const char *machine, const char *channel, const char *target, int type,
                     int result, int code, int64_t now) {
        struct event_record e = { .app = DEFAULT_APP_ID, .channel = channel, .machine = machine, .version = "1.2.0",
                                  .target_version = target, .type = type, .result = result, .error_code = code,
                                  .now = now };
        bool halted = false;
        CHECK(store_event(s, &e, &halted) >= 0);
}

/* A machine's events (all machines' with ""), and the smallest error code among them. */
static int64_t count_events(struct store *s, const char *machine, int64_t *ret_min_code) {
        struct db_rows rows = {};
        const struct db_param p[] = { DB_TEXT(DEFAULT_APP_ID), DB_TEXT(machine) };
        CHECK_EQ(store_query(s, "SELECT COUNT(*), MIN(error_code) FROM events WHERE app = $1 AND ($2 = '' OR machine = $2)",
                             p, 2, &rows),
                 0);
        int64_t n = db_cell_int(&rows, 0, 0);
        if (ret_min_code)
                *ret_min_code = db_cell_int(&rows, 0, 1);
        db_rows_done(&rows);
        return n;
}

/* The age limit and the per-machine limit, pass by pass. */
TEST(store_event_retention_on_sqlite) {
        char dir[sizeof(STORE_TEST_DIR)];
        struct store *s = temp_store(dir);
        if (!s)
                return;
        const int64_t now = 1700000000;
        const struct event_retention r = { .max_age = 90 * DAY, .per_machine = 100 };
        struct event_prune_stats st;
        int64_t min_code = 0;

        for (int i = 0; i < 5; i++) {
                event_at(s, "old", NULL, NULL, 3, 9, i, now - 100 * DAY + i);
                event_at(s, "recent", NULL, NULL, 3, 9, i, now - DAY + i);
        }
        event_at(s, "edge", NULL, NULL, 3, 9, 0, now - 90 * DAY - 1); /* just too old */
        event_at(s, "edge", NULL, NULL, 3, 9, 1, now - 90 * DAY);     /* just young enough */
        /* Past the limit, in several batches, many within one second: the newest 100 stay. */
        for (int i = 0; i < 2500; i++)
                event_at(s, "noisy", NULL, NULL, 3, 9, i, now - 2 * DAY + i / 10);

        CHECK_EQ(store_events_prune(s, &r, now, false, &st), 0); /* the first pass ever */
        CHECK(!st.skipped);
        CHECK_EQ(st.expired, 6);
        CHECK_EQ(st.capped, 2400);
        CHECK_EQ(count_events(s, "old", NULL), 0);
        CHECK_EQ(count_events(s, "recent", NULL), 5);
        CHECK_EQ(count_events(s, "edge", &min_code), 1);
        CHECK_EQ(min_code, 1);
        CHECK_EQ(count_events(s, "noisy", &min_code), 100);
        CHECK_EQ(min_code, 2400);

        /* Within the interval a pass is skipped, unless forced; after it, one runs. */
        CHECK_EQ(store_events_prune(s, &r, now + 10, false, &st), 0);
        CHECK(st.skipped);
        CHECK_EQ(store_events_prune(s, &r, now + 20, true, &st), 0);
        CHECK(!st.skipped);
        CHECK_EQ(st.expired, 1); /* "edge" is too old now */
        CHECK_EQ(st.capped, 0);
        CHECK_EQ(store_events_prune(s, &r, now + 20 + EVENT_PRUNE_INTERVAL_MS / 1000, false, &st), 0);
        CHECK(!st.skipped);

        /* A machine at its limit that goes on: the limit holds, its newest stay. */
        for (int i = 0; i < 50; i++)
                event_at(s, "noisy", NULL, NULL, 3, 9, 2500 + i, now + 100);
        CHECK_EQ(store_events_prune(s, &r, now + 200, false, &st), 0);
        CHECK_EQ(st.capped, 50);
        CHECK_EQ(count_events(s, "noisy", &min_code), 100);
        CHECK_EQ(min_code, 2450);

        /* Time passes: "recent" ages out as well. Without limits nothing goes. */
        const struct event_retention none = {};
        CHECK_EQ(store_events_prune(s, &none, now + 100 * DAY, false, &st), 0);
        CHECK_EQ(st.expired + st.capped, 0);
        CHECK_EQ(count_events(s, "", NULL), 105);
        CHECK_EQ(store_events_prune(s, &r, now + 100 * DAY, true, &st), 0);
        CHECK_EQ(st.expired, 105);
        CHECK_EQ(count_events(s, "", NULL), 0);
        store_close(s);
        remove_dir(dir);
}

/* A pass that stops half-way (here a database error; a signal or a crash alike) leaves the
 * machines it did not get to for the next pass, however much later that is. */
TEST(store_event_retention_after_interrupted_pass_on_sqlite) {
        char dir[sizeof(STORE_TEST_DIR)];
        struct store *s = temp_store(dir);
        if (!s)
                return;
        const int64_t now = 1700000000;
        const struct event_retention r = { .per_machine = 10 };
        struct event_prune_stats st;

        CHECK_EQ(store_events_prune(s, &r, now, false, &st), 0);
        for (int i = 0; i < 20; i++) {
                event_at(s, "a", NULL, NULL, 3, 9, i, now + 100);
                event_at(s, "b", NULL, NULL, 3, 9, i, now + 100);
        }
        CHECK_EQ(store_query(s,
                             "CREATE TEMP TRIGGER interrupt BEFORE DELETE ON events WHEN old.machine = 'b'"
                             " BEGIN SELECT RAISE(ABORT, 'interrupted'); END",
                             NULL, 0, NULL),
                 0);
        CHECK(store_events_prune(s, &r, now + 1000, false, &st) < 0);
        CHECK_EQ(count_events(s, "b", NULL), 20);
        CHECK_EQ(store_query(s, "DROP TRIGGER interrupt", NULL, 0, NULL), 0);

        /* Long after the interrupted pass began, its machines' events are still looked at. */
        int64_t min_code = 0;
        CHECK_EQ(store_events_prune(s, &r, now + 2000, false, &st), 0);
        CHECK(!st.skipped);
        CHECK_EQ(count_events(s, "a", &min_code), 10);
        CHECK_EQ(min_code, 10);
        CHECK_EQ(count_events(s, "b", &min_code), 10);
        CHECK_EQ(min_code, 10);
        /* A complete pass moves the mark on: the next one looks at the machines of before no
         * more (an event timed that early is not seen). */
        event_at(s, "a", NULL, NULL, 3, 9, 99, now + 100);
        CHECK_EQ(store_events_prune(s, &r, now + 3000, false, &st), 0);
        CHECK_EQ(st.capped, 0);
        store_close(s);
        remove_dir(dir);
}

/* Safe mode counts failures whose events retention deleted, by age or by a machine's limit:
 * it reads the attempts, which retention leaves alone. */
TEST(store_retention_keeps_safe_mode_on_sqlite) {
        char dir[sizeof(STORE_TEST_DIR)];
        struct store *s = stable_store(dir, "1.3.0");
        if (!s)
                return;
        const int64_t now = 1700000000, then = now - 100 * DAY;
        char id[10][40];
        for (int i = 0; i < 10; i++) {
                snprintf(id[i], sizeof(id[i]), "%032x", i);
                struct machine_checkin ci = { .app = DEFAULT_APP_ID, .id = id[i], .channel = "stable",
                                              .version = "1.2.0", .now = then };
                CHECK_EQ(store_machine_checkin(s, &ci, NULL), 0);
                bool granted = false;
                CHECK_EQ(store_grant_within_limit(s, DEFAULT_APP_ID, "stable", id[i], "1.3.0", then, 0, 0,
                                                  &granted), 0);
        }
        /* Three failures 100 days ago, one yesterday followed by a flood from that machine. */
        for (int i = 0; i < 3; i++)
                event_at(s, id[i], "stable", "1.3.0", 3, 0, 10, then);
        event_at(s, id[3], "stable", "1.3.0", 3, 0, 44, now - DAY);
        for (int i = 0; i < 30; i++)
                event_at(s, id[3], "stable", "1.3.0", 3, 9, 0, now - DAY + 1);
        const struct event_retention r = { .max_age = 90 * DAY, .per_machine = 20 };
        struct event_prune_stats st;
        CHECK_EQ(store_events_prune(s, &r, now, false, &st), 0);
        CHECK_EQ(st.expired, 3);
        CHECK_EQ(st.capped, 11);
        int64_t min_code = -1;
        CHECK_EQ(count_events(s, id[3], &min_code), 20);
        CHECK_EQ(min_code, 0); /* its failure (44) is gone from the log */
        CHECK_EQ(count_events(s, "", NULL), 20);

        /* The fifth failure: 5 of 5 finished attempts, the rollout halts. */
        struct channel c = {};
        CHECK_EQ(store_channel_get(s, DEFAULT_APP_ID, "stable", &c), 0);
        CHECK(!c.policy.halted);
        channel_done(&c);
        struct event_record e = { .app = DEFAULT_APP_ID, .channel = "stable", .machine = id[4], .version = "1.2.0",
                                  .target_version = "1.3.0", .type = 3, .result = 0, .error_code = 10, .now = now };
        bool halted = false;
        CHECK_EQ(store_event(s, &e, &halted), 1);
        CHECK(halted);
        CHECK_EQ(store_channel_get(s, DEFAULT_APP_ID, "stable", &c), 0);
        CHECK(c.policy.halted);
        CHECK(c.halt_reason && strstr(c.halt_reason, "5 of 5 finished"));
        channel_done(&c);
        store_close(s);
        remove_dir(dir);
}

/* The thread: a pass at start, then one every interval. */
TEST(store_event_pruner_thread_on_sqlite) {
        char dir[sizeof(STORE_TEST_DIR)];
        struct store *s = temp_store(dir);
        if (!s)
                return;
        int64_t now = time(NULL);
        event_at(s, "a", NULL, NULL, 3, 9, 0, now - 31 * DAY);
        event_at(s, "a", NULL, NULL, 3, 9, 1, now);
        const struct event_retention r = { .max_age = 30 * DAY, .per_machine = 5, .interval_ms = 20 };
        CHECK_EQ(store_events_prune_start(s, &r), 0);
        CHECK_EQ(store_events_prune_start(s, &r), -EBUSY);
        for (int i = 0; i < 500 && count_events(s, "a", NULL) != 1; i++)
                usleep(10000);
        CHECK_EQ(count_events(s, "a", NULL), 1);
        /* Later events, older ones and too many: the next passes take them. */
        event_at(s, "a", NULL, NULL, 3, 9, 2, now - 40 * DAY);
        for (int i = 0; i < 10; i++)
                event_at(s, "b", NULL, NULL, 3, 9, i, now);
        int64_t min_code = 0;
        for (int i = 0; i < 500 && (count_events(s, "a", NULL) != 1 || count_events(s, "b", NULL) != 5); i++)
                usleep(10000);
        CHECK_EQ(count_events(s, "a", &min_code), 1);
        CHECK_EQ(min_code, 1);
        CHECK_EQ(count_events(s, "b", &min_code), 5);
        CHECK_EQ(min_code, 5);
        store_close(s); /* stops the thread */
        remove_dir(dir);
}

/* A database of schema version 1 (events without an id) is brought up to date at start, its
 * events kept in their order; one newer than this server is refused. */
TEST(store_schema_migration_on_sqlite) {
        char dir[] = "/tmp/pivot-store-test-XXXXXX", path[64];
        CHECK(mkdtemp(dir) != NULL);
        snprintf(path, sizeof(path), "%s/pivot.sqlite", dir);
        sqlite3 *db = NULL;
        CHECK_EQ(sqlite3_open(path, &db), SQLITE_OK);
        CHECK_EQ(sqlite3_exec(db,
                              "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);\n"
                              "INSERT INTO meta VALUES ('schema', '1');\n"
                              "CREATE TABLE events (\n"
                              "  app TEXT NOT NULL, channel TEXT, machine TEXT NOT NULL, version TEXT, target_version TEXT,\n"
                              "  type INTEGER NOT NULL, result INTEGER NOT NULL, error_code INTEGER NOT NULL,\n"
                              "  previous_version TEXT, time BIGINT NOT NULL);\n"
                              "CREATE INDEX events_time ON events (time);\n"
                              "CREATE INDEX events_machine ON events (app, machine, time);\n"
                              "INSERT INTO events VALUES ('" DEFAULT_APP_ID "', 'stable', 'm', '1.2.0', NULL, 3, 9, 2, '', 2000),\n"
                              "  ('" DEFAULT_APP_ID "', 'stable', 'm', '1.2.0', NULL, 3, 9, 1, '', 1000),\n"
                              "  ('" DEFAULT_APP_ID "', 'stable', 'm', '1.2.0', NULL, 3, 9, 3, '', 3000);\n",
                              NULL, NULL, NULL),
                 SQLITE_OK);
        sqlite3_close(db);

        struct store *s = NULL;
        CHECK_EQ(store_open(dir, NULL, &s), 0);
        if (!s)
                return;
        struct db_rows rows = {};
        CHECK_EQ(store_query(s, "SELECT id, error_code FROM events ORDER BY id", NULL, 0, &rows), 0);
        CHECK_EQ(rows.n_rows, 3);
        for (size_t i = 0; i < rows.n_rows; i++) /* ids in the order of the times */
                CHECK_EQ(db_cell_int(&rows, i, 1), (int64_t)i + 1);
        db_rows_done(&rows);
        CHECK_EQ(store_query(s, "SELECT value FROM meta WHERE key = 'schema'", NULL, 0, &rows), 0);
        CHECK_STREQ(db_cell(&rows, 0, 0), "2");
        db_rows_done(&rows);
        CHECK_EQ(store_query(s, "SELECT sql FROM sqlite_master WHERE name = 'events_machine'", NULL, 0, &rows), 0);
        CHECK(db_cell(&rows, 0, 0) && strstr(db_cell(&rows, 0, 0), "(app, machine, id)"));
        db_rows_done(&rows);
        /* New events get the next ids, and the limits work on the migrated table. */
        event_at(s, "m", NULL, NULL, 3, 9, 4, 4000);
        const struct event_retention r = { .per_machine = 2 };
        struct event_prune_stats st;
        CHECK_EQ(store_events_prune(s, &r, 5000, false, &st), 0);
        CHECK_EQ(st.capped, 2);
        int64_t min_code = 0;
        CHECK_EQ(count_events(s, "m", &min_code), 2);
        CHECK_EQ(min_code, 3);
        store_close(s);

        /* Opening it again changes nothing; a newer version is refused. */
        CHECK_EQ(store_open(dir, NULL, &s), 0);
        if (!s)
                return;
        CHECK_EQ(count_events(s, "m", NULL), 2);
        CHECK_EQ(store_query(s, "UPDATE meta SET value = '3' WHERE key = 'schema'", NULL, 0, NULL), 0);
        store_close(s);
        s = NULL;
        CHECK_EQ(store_open(dir, NULL, &s), -EPROTONOSUPPORT);
        CHECK(s == NULL);
        remove_dir(dir);
}
