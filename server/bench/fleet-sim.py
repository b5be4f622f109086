#!/usr/bin/env python3
"""Fleet simulation against a running pivot-server (loopback only).

Thousands of simulated machines check in and report events the way pivot-agent and Flatcar's
update_engine do, through two staged rollouts on a channel of their own:

  1. a good release, rolled out 1% -> 5% -> 25% -> 50% -> 100%: the share of machines that
     update follows the percentage, and every machine ends on the new version;
  2. a bad release that fails to boot (error 44, rolled back) on a share of machines: safe mode
     halts the rollout by itself, and raising the percentage afterwards grants nothing.

Every request loop is bounded (rounds per stage, a deadline for the whole run).
Exit status: 0 when the expectations held, 1 when one did not, 2 on a usage error.
"""
import argparse
import http.client
import json
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

APP = "{b9606f32-42ac-4029-aef4-20ed435e8c45}"
CHANNEL = "fleet"


def omaha_xml(mid, version, check, events):
    ev = "".join(
        '<event eventtype="%d" eventresult="%d"%s previousversion=""></event>'
        % (t, r, ' errorcode="%d"' % c if c else "")
        for (t, r, c) in events
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<request protocol="3.0" version="pivot-0.1" updaterversion="pivot-0.1" installsource="scheduler" ismachine="1">'
        '<os version="%s" platform="Pivot" sp="%s_x86_64"></os>'
        '<app appid="%s" version="%s" track="%s" bootid="{00000000-0000-4000-8000-000000000001}" machineid="%s" '
        'oem="" alephversion="1.0.0" lang="en-US" board="amd64-usr" delta_okay="false">'
        '<ping active="1"></ping>%s%s</app></request>'
        % (version, version, APP, version, CHANNEL, mid, "<updatecheck></updatecheck>" if check else "", ev)
    ).encode()


class Client:
    """One keep-alive connection per worker thread."""

    local = threading.local()

    def __init__(self, url, token):
        u = urllib.parse.urlparse(url)
        self.host, self.port, self.token = u.hostname, u.port, token
        self.requests = 0
        self.lock = threading.Lock()

    def conn(self):
        c = getattr(self.local, "c", None)
        if c is None:
            c = self.local.c = http.client.HTTPConnection(self.host, self.port, timeout=30)
        return c

    def request(self, method, path, body=None, headers=None):
        for attempt in range(3):
            try:
                c = self.conn()
                c.request(method, path, body=body, headers=headers or {})
                r = c.getresponse()
                data = r.read()
                with self.lock:
                    self.requests += 1
                return r.status, data
            except (http.client.HTTPException, OSError):
                self.local.c = None
                if attempt == 2:
                    raise

    def omaha(self, mid, version, check=True, events=()):
        status, data = self.request("POST", "/v1/update/", omaha_xml(mid, version, check, events),
                                    {"Content-Type": "text/xml"})
        if status != 200:
            raise RuntimeError("HTTP %d from the Omaha endpoint" % status)
        text = data.decode()
        if not check:
            return None
        i = text.find('<updatecheck status="')
        return text[i + 21:text.index('"', i + 21)] if i >= 0 else None

    def admin(self, method, path, body=None):
        status, data = self.request(method, path, json.dumps(body).encode() if body is not None else None,
                                    {"Authorization": "Bearer " + self.token, "Content-Type": "application/json"})
        if status >= 300:
            raise RuntimeError("%s %s: HTTP %d %s" % (method, path, status, data[:200]))
        return json.loads(data)


class Machine:
    def __init__(self, i, version):
        self.id = "%032x" % (0x5EED0000 + i)
        self.version = version
        self.pending = None      # version granted, to install
        self.rolled_back = set()


def run_round(client, machines, fail_for, pool):
    """One round: every machine checks in once; a granted machine downloads, installs, reboots
    and reports its first boot (or its rollback) in the same round. Returns grants."""
    grants = []
    lock = threading.Lock()

    def one(m):
        st = client.omaha(m.id, m.version)
        if st != "ok":
            return
        with lock:
            grants.append(m)
        target = client.current_release
        client.omaha(m.id, m.version, check=False, events=[(13, 1, 0), (14, 1, 0), (3, 1, 0)])
        if fail_for(m, target):
            # The new version did not come up: the boot selector fell back, and the agent on
            # the old version reports error 44.
            client.omaha(m.id, m.version, check=False, events=[(3, 0, 44)])
            m.rolled_back.add(target)
        else:
            m.version = target
            client.omaha(m.id, m.version, check=True, events=[(3, 2, 0)])

    list(pool.map(one, machines))
    return grants


def channel_status(client):
    st = client.admin("GET", "/api/v1/status")
    for c in st["channels"]:
        if c["name"] == CHANNEL:
            return c
    raise RuntimeError("channel %s missing" % CHANNEL)


def publish(client, version, percent):
    body = {
        "app": APP, "version": version, "package_name": "update.payload", "size": 1 << 30,
        "sha1": "%040x" % abs(hash(version)), "sha256": "%064x" % abs(hash(version + "x")),
        "base_url": "https://cdn.example.net/pivot/%s/" % version, "channel": CHANNEL, "rollout": percent,
        "manifest": {"version": version, "simulated": True},
    }
    client.admin("POST", "/api/v1/releases", body)
    client.current_release = version


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", required=True, help="pivot-server base URL (loopback)")
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--machines", type=int, default=5000)
    ap.add_argument("--bad-share", type=float, default=0.4, help="share of machines the bad release fails on")
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--deadline", type=float, default=600, help="seconds the whole run may take")
    args = ap.parse_args()
    host = urllib.parse.urlparse(args.server).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        print("fleet-sim: only loopback servers", file=sys.stderr)
        return 2
    token = open(args.token_file).read().strip()
    client = Client(args.server, token)
    start = time.time()
    ok = True

    def expect(cond, what):
        nonlocal ok
        if not cond:
            ok = False
            print("  EXPECTATION FAILED: " + what)

    fleet = [Machine(i, "1.9.0") for i in range(args.machines)]
    print("fleet simulation: %d machines on channel %s, %s" % (args.machines, CHANNEL, args.server))
    with ThreadPoolExecutor(args.workers) as pool:
        # Everyone registers on the old version (no release yet on the channel).
        client.admin("POST", "/api/v1/channels", {"app": APP, "name": CHANNEL})
        client.current_release = None
        run_round(client, fleet, lambda m, t: False, pool)

        print("\n1. good release 2.0.0, staged")
        print("   %8s %10s %10s %12s %8s" % ("rollout", "granted", "share", "on 2.0.0", "failed"))
        publish(client, "2.0.0", 0)
        total_granted = 0
        for pct in (1, 5, 25, 50, 100):
            client.admin("POST", "/api/v1/channels/%s/rollout" % CHANNEL, {"app": APP, "percent": pct})
            for _ in range(2):
                total_granted += len(run_round(client, fleet, lambda m, t: False, pool))
            c = channel_status(client)
            on = c["machines"]["by_version"].get("2.0.0", 0)
            share = 100.0 * on / args.machines
            print("   %7g%% %10d %9.1f%% %12d %8d" % (pct, c["attempts"].get("granted", 0), share, on,
                                                    c["attempts"].get("failed", 0)))
            expect(abs(share - pct) <= max(2.0, pct * 0.15), "share %.1f%% near %g%%" % (share, pct))
            expect(time.time() - start < args.deadline, "deadline")
        expect(channel_status(client)["machines"]["by_version"].get("2.0.0", 0) == args.machines,
               "every machine on 2.0.0")

        print("\n2. bad release 2.1.0: fails to boot on %.0f%% of machines (error 44)" % (100 * args.bad_share))
        cut = int(args.bad_share * 10000)
        bad = lambda m, t: t == "2.1.0" and (int(m.id, 16) * 2654435761 % 10000) < cut
        publish(client, "2.1.0", 10)
        halted_at = None
        print("   %8s %10s %10s %10s %8s" % ("rollout", "granted", "complete", "failed", "halted"))
        for pct in (10, 25, 50, 100):
            client.admin("POST", "/api/v1/channels/%s/rollout" % CHANNEL, {"app": APP, "percent": pct})
            for _ in range(2):
                run_round(client, fleet, bad, pool)
            c = channel_status(client)
            a = c["attempts"]
            print("   %7g%% %10d %10d %10d %8s" % (pct, a["granted"], a["complete"], a["failed"],
                                                  "yes" if c["rollout"]["halted"] else "no"))
            if c["rollout"]["halted"] and halted_at is None:
                halted_at = (pct, a["granted"], a["failed"], a["finished"], c["rollout"]["halt_reason"])
        c = channel_status(client)
        expect(c["rollout"]["halted"], "safe mode halted the bad rollout")
        if halted_at:
            print("   halted during the %g%% stage: %s" % (halted_at[0], halted_at[4]))
        exposed = c["attempts"]["granted"]
        print("   machines that ever got 2.1.0: %d of %d (%.1f%%); without safe mode: all %d, about %d failing"
              % (exposed, args.machines, 100.0 * exposed / args.machines, args.machines,
                 int(args.bad_share * args.machines)))
        expect(exposed < 0.1 * args.machines, "the halt kept exposure under 10%% of the fleet")
        before = exposed
        client.admin("POST", "/api/v1/channels/%s/rollout" % CHANNEL, {"app": APP, "percent": 100})
        run_round(client, fleet, bad, pool)
        after = channel_status(client)["attempts"]["granted"]
        print("   rollout raised to 100%% while halted: %d new grants" % (after - before))
        expect(after == before, "no grants while halted")

    took = time.time() - start
    print("\n%d requests in %.1f s (%.0f/s from %d client threads)"
          % (client.requests, took, client.requests / took, args.workers))
    print("fleet simulation: %s" % ("all expectations held" if ok else "SOME EXPECTATIONS FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
