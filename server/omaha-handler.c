/* POST /v1/update/: the Omaha endpoint pivot-agent and Flatcar's update_engine talk to.
 *
 * Per <app>: record the check-in, store its events (which move the machine's update state and
 * may halt the rollout), then answer the update check from the channel's release and policy.
 * A machine the policy holds back is told "noupdate"; only an unknown application or channel
 * is an error status. */
#include <errno.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "omaha.h"
#include "policy.h"
#include "server.h"
#include "util.h"

static int hex_to_bytes(const char *hex, uint8_t *out, size_t n) {
        if (!hex || strlen(hex) != 2 * n)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                unsigned v;
                if (sscanf(hex + 2 * i, "%2x", &v) != 1)
                        return -EINVAL;
                out[i] = v;
        }
        return 0;
}

static unsigned event_type_index(int type) {
        return type == 3 ? 0 : type == 13 ? 1 : type == 14 ? 2 : 3;
}
static unsigned event_result_index(int result) {
        return result == 0 ? 0 : result == 1 ? 1 : result == 2 ? 2 : result == 9 ? 3 : 4;
}

struct app_answer {
        const struct channel *channel;  /* shared, from store_channel_lookup() */
        struct policy policy;           /* the channel's, as this request sees it */
        char *codebase;
        char *urls[1];
        struct omaha_package package;
};

static void app_answer_done(struct app_answer *a) {
        store_channel_put(a->channel);
        free(a->codebase);
}

static void count_refusal(struct server *srv, enum policy_verdict v) {
        atomic_fetch_add(&srv->metrics.noupdates, 1);
        if ((unsigned)v < ELEMENTSOF(srv->metrics.refusals))
                atomic_fetch_add(&srv->metrics.refusals[v], 1);
}

static struct policy_input policy_input(const struct omaha_app_request *req, const struct app_answer *ans,
                                        const struct machine_state *ms, int64_t now) {
        const struct channel *c = ans->channel;
        return (struct policy_input){
                .machine_id = req->machineid,
                .machine_version = req->version,
                .release_version = c->has_release ? c->release_version : NULL,
                .percent = ans->policy.percent,
                .paused = ans->policy.paused,
                .halted = ans->policy.halted,
                .machine_state = ms ? ms->state : NULL,
                .machine_target = ms ? ms->target_version : NULL,
                .machine_state_stale = ms && ms->state_changed < now - ans->policy.inflight_timeout,
        };
}

/* Fills out->updatecheck and the manifest for one app. */
static void answer_updatecheck(struct server *srv, const struct omaha_app_request *req, const char *channel,
                               const struct machine_state *ms, int64_t now, const char *host,
                               struct app_answer *ans, struct omaha_app_response *out) {
        const struct channel *c = ans->channel;

        struct policy_input in = policy_input(req, ans, ms, now);
        enum policy_verdict v = req->machineid && *req->machineid ? policy_decide(&in) : VERDICT_NOT_IN_ROLLOUT;
        /* The in-flight limit counts only against a machine that starts an attempt. One that
         * goes on with its own is offered the release again, and nothing is written: a grant
         * would restart its in-flight time at each check, and one that never starts would
         * then hold its place under the limit for ever. */
        int granted = 0;
        if (v == VERDICT_UPDATE && policy_starts_attempt(&in)) {
                int64_t limit = ans->policy.max_inflight;
                bool ok = false;
                granted = store_grant_within_limit(srv->store, req->appid, channel, req->machineid,
                                                   c->release_version, now, limit,
                                                   now - ans->policy.inflight_timeout, &ok);
                if (granted >= 0 && !ok)
                        v = VERDICT_INFLIGHT_LIMIT;
        }
        if (v != VERDICT_UPDATE) {
                count_refusal(srv, v);
                out->updatecheck = "noupdate";
                return;
        }
        if (granted < 0) {
                out->updatecheck = "error-internal";
                return;
        }
        atomic_fetch_add(&srv->metrics.updates_granted, 1);

        const struct release *r = &c->release;
        if (r->base_url) {
                size_t l = strlen(r->base_url);
                if (asprintf(&ans->codebase, "%s%s", r->base_url, l && r->base_url[l - 1] == '/' ? "" : "/") < 0)
                        ans->codebase = NULL;
        } else {
                char app[128];
                app_url_name(req->appid, app, sizeof(app));
                if (srv->public_url) {
                        size_t l = strlen(srv->public_url);
                        if (asprintf(&ans->codebase, "%s%sv1/payloads/%s/%s/", srv->public_url,
                                     l && srv->public_url[l - 1] == '/' ? "" : "/", app, r->version) < 0)
                                ans->codebase = NULL;
                } else if (asprintf(&ans->codebase, "http://%s/v1/payloads/%s/%s/", host ? host : "localhost", app,
                                    r->version) < 0)
                        ans->codebase = NULL;
        }
        if (!ans->codebase) {
                out->updatecheck = "error-internal";
                return;
        }
        ans->urls[0] = ans->codebase;
        ans->package = (struct omaha_package){ .name = r->package_name, .size = r->size, .required = true };
        ans->package.has_sha1 = hex_to_bytes(r->sha1, ans->package.sha1, 20) >= 0;
        ans->package.has_sha256 = hex_to_bytes(r->sha256, ans->package.sha256, 32) >= 0;

        out->updatecheck = "ok";
        out->urls = ans->urls;
        out->n_urls = 1;
        out->manifest_version = r->version;
        out->packages = &ans->package;
        out->n_packages = 1;
        out->postinstall = true;
        out->has_postinstall_sha256 = ans->package.has_sha256;
        memcpy(out->postinstall_sha256, ans->package.sha256, 32);
        out->disable_payload_backoff = true;
}

static void handle_app(struct server *srv, const struct omaha_app_request *req, int64_t now, const char *host,
                       struct app_answer *ans, struct omaha_app_response *out) {
        const char *channel = req->track && *req->track ? req->track : DEFAULT_CHANNEL;
        int r;

        out->appid = req->appid;
        r = store_channel_lookup(srv->store, req->appid, channel, &ans->channel);
        if (r == -ENOENT) {
                if (store_app_exists(srv->store, req->appid) == -ENOENT) {
                        atomic_fetch_add(&srv->metrics.unknown_app, 1);
                        out->status = "error-unknownApplication";
                } else {
                        /* Nebraska's status for a track it does not know. */
                        atomic_fetch_add(&srv->metrics.unknown_channel, 1);
                        out->status = "error-unknownApplicationOrGroup";
                        if (req->updatecheck)
                                out->updatecheck = "error-internal";
                }
                return;
        }
        if (r < 0) {
                out->status = "error-internal";
                return;
        }
        ans->policy = ans->channel->policy;
        atomic_fetch_add(&srv->metrics.checkins, 1);
        out->ping = req->ping;
        if (req->updatecheck)
                atomic_fetch_add(&srv->metrics.updatechecks, 1);

        struct machine_checkin ci = {
                .app = req->appid, .id = req->machineid, .channel = channel, .version = req->version,
                .aleph = req->alephversion, .oem = req->oem, .bootid = req->bootid, .now = now,
        };
        bool has_id = req->machineid && *req->machineid;

        /* Most check-ins are from machines the policy answers without their update state (up
         * to date, nothing published, halted; a pause needs the state: it spares machines in
         * flight) and carry no event: the check-in is
         * then written without waiting for it, and the request never waits for the database. */
        if (req->n_events == 0) {
                struct policy_input in = policy_input(req, ans, NULL, now);
                enum policy_verdict v = VERDICT_NOT_IN_ROLLOUT;
                if (!req->updatecheck || !has_id || policy_decide_early(&in, &v)) {
                        if (has_id)
                                (void)store_machine_checkin_deferred(srv->store, &ci);
                        if (req->updatecheck) {
                                count_refusal(srv, v);
                                out->updatecheck = "noupdate";
                        }
                        return;
                }
        }

        _cleanup_(machine_state_done) struct machine_state ms = {};
        bool registered = false;
        if (has_id)
                registered = store_machine_checkin(srv->store, &ci, &ms) >= 0;

        for (size_t i = 0; i < req->n_events; i++) {
                const struct omaha_event *e = &req->events[i];
                bool halted = false;
                atomic_fetch_add(&srv->metrics.events[event_type_index(e->type)][event_result_index(e->result)], 1);
                out->n_events++;
                if (!registered)
                        continue;
                /* The attempt the event names (nextversion), if it names one: a rollback
                 * reported at the next boot may be about a release the machine had installed
                 * before it was granted the one it is in flight for now. */
                struct event_record rec = {
                        .app = req->appid, .channel = channel, .machine = req->machineid, .version = req->version,
                        .target_version = e->next_version ?: ms.target_version, .type = e->type, .result = e->result,
                        .error_code = e->error_code, .previous_version = e->previous_version, .now = now,
                };
                int moved = store_event(srv->store, &rec, &halted);
                if (moved >= 0 && halted) {
                        atomic_fetch_add(&srv->metrics.safe_mode_halts, 1);
                        /* The answer below must already see the halt. */
                        ans->policy.halted = true;
                }
                /* The machine's state moved: keep the local copy in step for the decision. */
                if (moved > 0) {
                        free(ms.state);
                        ms.state = strdup(event_state(e->type, e->result, e->error_code));
                        ms.state_changed = now;
                }
        }
        if (req->updatecheck)
                answer_updatecheck(srv, req, channel, &ms, now, host, ans, out);
}

#define MACHINE_ID_MAX 128

void omaha_handle(struct server *srv, const char *body, size_t len, const char *host, struct reply *out) {
        _cleanup_(omaha_request_done) struct omaha_request req = {};
        int r = omaha_request_parse(body, len, &req);
        if (r < 0) {
                atomic_fetch_add(&srv->metrics.bad_requests, 1);
                reply_static(out, r == -EMSGSIZE ? 413 : 400, "text/plain",
                             r == -EPROTO ? "unsupported Omaha protocol version\n" : "malformed Omaha request\n");
                return;
        }

        /* A machine id is 32 hex digits (update_engine sends /etc/machine-id); one far longer
         * is no id at all: such a machine is answered like one without an id and not stored
         * (it would not fit PostgreSQL's index, and would cost the batch it is written in). */
        for (size_t i = 0; i < req.n_apps; i++)
                if (req.apps[i].machineid && strlen(req.apps[i].machineid) > MACHINE_ID_MAX) {
                        atomic_fetch_add(&srv->metrics.bad_requests, 1);
                        free(req.apps[i].machineid);
                        req.apps[i].machineid = NULL;
                }

        int64_t now = time(NULL);
        struct app_answer answers[OMAHA_MAX_APPS] = {};
        struct omaha_app_response apps[OMAHA_MAX_APPS] = {};
        for (size_t i = 0; i < req.n_apps; i++)
                handle_app(srv, &req.apps[i], now, host, &answers[i], &apps[i]);

        struct omaha_response resp = {
                .server = "pivot-server",
                .daystart_elapsed_seconds = now % 86400,
                .apps = apps,
                .n_apps = req.n_apps,
        };
        char *xml = NULL;
        size_t xml_len = 0;
        r = omaha_response_build(&resp, &xml, &xml_len);
        for (size_t i = 0; i < req.n_apps; i++)
                app_answer_done(&answers[i]);
        if (r < 0) {
                reply_static(out, 500, "text/plain", "out of memory\n");
                return;
        }
        reply_set(out, 200, "text/xml; charset=utf-8", xml, xml_len);
}
