/* Unit tests for server/policy.c and, against SQLite in a scratch directory, server/store.c. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
}

TEST(store_safe_mode_on_sqlite) {
        char dir[] = "/tmp/pivot-store-test-XXXXXX";
        CHECK(mkdtemp(dir) != NULL);
        struct store *s = NULL;
        CHECK_EQ(store_open(dir, NULL, &s), 0);
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
                CHECK_EQ(store_grant(s, DEFAULT_APP_ID, "stable", id, "1.3.0", 1000), 0);
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
                CHECK_EQ(store_event(s, &e, &halted), 0);
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
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        CHECK_EQ(system(cmd), 0);
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
TEST(store_deferred_checkins_on_sqlite) {
        char dir[] = "/tmp/pivot-store-test-XXXXXX";
        CHECK(mkdtemp(dir) != NULL);
        struct store *s = NULL;
        CHECK_EQ(store_open(dir, NULL, &s), 0);
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
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        CHECK_EQ(system(cmd), 0);
}

/* The Omaha path's channel copies: shared, and dropped by every change made through the store. */
TEST(store_channel_cache_on_sqlite) {
        char dir[] = "/tmp/pivot-store-test-XXXXXX";
        CHECK(mkdtemp(dir) != NULL);
        struct store *s = NULL;
        CHECK_EQ(store_open(dir, NULL, &s), 0);
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
        struct release rel = {
                .app = DEFAULT_APP_ID, .version = "1.3.0", .package_name = "update.payload", .size = 5,
                .sha1 = "b233d57e86fd769845c554b52a8fa2fe98bacfba",
                .sha256 = "d6386c59a6bcfcb1e4ced6beeb4594757afaa891ac805388076d0c83d2f5260a",
        };
        CHECK_EQ(store_release_add(s, &rel), 0);
        CHECK_EQ(store_channel_set_release(s, DEFAULT_APP_ID, "stable", "1.3.0", 30), 0);
        CHECK_EQ(store_channel_lookup(s, DEFAULT_APP_ID, "stable", &a), 0);
        CHECK(a->has_release);
        CHECK_STREQ(a->release_version, "1.3.0");
        CHECK(a->policy.percent == 30);
        store_channel_put(a);
        store_close(s);
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        CHECK_EQ(system(cmd), 0);
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
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        CHECK_EQ(system(cmd), 0);
}
