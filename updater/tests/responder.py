#!/usr/bin/env python3
"""A small Nebraska-shaped Omaha server and payload host for the updater tests.

    responder.py --port-file FILE --config FILE --log FILE [--cert PEM --certkey PEM]

Listens on 127.0.0.1 (a free port, written to --port-file). Every request re-reads the JSON
--config, so a test switches behaviour by rewriting it:

    {"omaha": "update" | "noupdate" | "malformed" | "xxe" | "entities" | "huge" | "500" |
              "stall" | "raw",
     "raw": "...",                     # the body for "raw"
     "version": "1.1.0", "payload": "/path/u.payload", "name": "u.payload",
     "hash_sha256": "hex" (default: the real one), "size": N (default: the real one),
     "payload_mode": "ok" | "500" | "403" | "overlong" | "stall" | "drop" | "drop-once" | "slow" | "norange"
                     | "range-widened" | "range-late" | "range-bare" | "range-416",  (206 from a
                       block boundary before the offset; from 4 KiB after it; without
                       Content-Range; 416 for any range but from the start)
     "drop_after": BYTES, "rate": BYTES_PER_SECOND,
     "omaha_delay": SECONDS}           # every Omaha answer that much late (logged at once)

Requests are appended to --log as JSON lines: method, path, range, and for Omaha POSTs the
events and whether an updatecheck was asked. A request for /secret (the target of the test's
external entity) is logged too: the agent must never make one.
"""
import argparse
import hashlib
import json
import os
import re
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

args = None
lock = threading.Lock()
state = {"dropped": False}


def config():
    with open(args.config) as f:
        text = f.read()
    with lock:
        if text != state.get("config"):
            # A new test: per-test state starts again.
            state["config"] = text
            state["dropped"] = False
    return json.loads(text)


def log(entry):
    with lock, open(args.log, "a") as f:
        f.write(json.dumps(entry) + "\n")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def base_url(self):
        scheme = "https" if args.cert else "http"
        return "%s://127.0.0.1:%d" % (scheme, self.server.server_address[1])

    def local_path(self):
        # Requests through a proxy carry the absolute URL.
        p = self.path
        if p.startswith("http://") or p.startswith("https://"):
            p = "/" + p.split("/", 3)[3] if p.count("/") >= 3 else "/"
        return p

    def send(self, code, body, ctype="text/xml"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode("utf-8", "replace")
        if self.local_path().startswith("/moved/"):
            # A server that moved: the request must come again, as a POST, to the new place.
            self.send_response(301)
            self.send_header("Location", "/v1/update/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        events = [dict(re.findall(r'(\w+)="([^"]*)"', e)) for e in re.findall(r"<event\b[^>]*>", body)]
        app = re.search(r"<app\b[^>]*>", body)
        req = re.search(r"<request\b[^>]*>", body)
        log({"method": "POST", "path": self.local_path(), "proxied": self.path.startswith("http"),
             "events": events, "updatecheck": "<updatecheck" in body,
             "app": dict(re.findall(r'(\w+)="([^"]*)"', app.group(0))) if app else {},
             "request": dict(re.findall(r'(\w+)="([^"]*)"', req.group(0))) if req else {}})
        c = config()
        mode = c.get("omaha", "noupdate")
        appid = "{b9606f32-42ac-4029-aef4-20ed435e8c45}"
        m = re.search(r'appid="([^"]*)"', body)
        if m:
            appid = m.group(1)
        time.sleep(c.get("omaha_delay", 0))
        if mode == "500":
            return self.send(500, b"internal error\n", "text/plain")
        if mode == "stall":
            time.sleep(c.get("stall_seconds", 30))
            return self.send(500, b"late\n", "text/plain")
        if mode == "raw":
            return self.send(200, c["raw"].encode())
        if mode == "malformed":
            return self.send(200, b'<response protocol="3.0"><app appid="x" status="ok"><updatecheck status="ok"')
        if mode == "xxe":
            doc = ('<?xml version="1.0"?><!DOCTYPE response [<!ENTITY x SYSTEM "%s/secret">]>'
                   '<response protocol="3.0"><app appid="%s" status="ok"><updatecheck status="&x;"/>'
                   '</app></response>' % (self.base_url(), appid))
            return self.send(200, doc.encode())
        if mode == "entities":
            doc = ('<?xml version="1.0"?><!DOCTYPE response [<!ENTITY a "aaaaaaaaaa">'
                   '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
                   '<response protocol="3.0"><app appid="%s" status="&c;"/></response>' % appid)
            return self.send(200, doc.encode())
        if mode == "huge":
            pad = "<!--" + "x" * (1 << 20) + "-->"
            doc = '<response protocol="3.0">%s<app appid="%s" status="ok"><updatecheck status="noupdate"/></app></response>' % (pad, appid)
            return self.send(200, doc.encode())
        events_ok = "".join('<event status="ok"></event>' for _ in events)
        if mode == "noupdate" or "<updatecheck" not in body:
            doc = ('<response protocol="3.0" server="nebraska"><daystart elapsed_seconds="0"></daystart>'
                   '<app appid="%s" status="ok">%s<ping status="ok"></ping>%s</app></response>'
                   % (appid, events_ok, '<updatecheck status="noupdate"></updatecheck>' if "<updatecheck" in body else ""))
            return self.send(200, doc.encode())
        payload = c["payload"]
        name = c.get("name", os.path.basename(payload))
        digest = c.get("hash_sha256") or sha256_file(payload)
        size = c.get("size") or os.path.getsize(payload)
        doc = ('<response protocol="3.0" server="nebraska"><daystart elapsed_seconds="0"></daystart>'
               '<app appid="%s" status="ok">%s<ping status="ok"></ping><updatecheck status="ok">'
               '<urls>%s<url codebase="%s/payloads/"></url></urls><manifest version="%s"><packages>'
               '<package name="%s" hash="AAAAAAAAAAAAAAAAAAAAAAAAAAA=" hash_sha256="%s" size="%d" required="true"></package>'
               '</packages><actions><action event="postinstall" sha256="" DisablePayloadBackoff="true"></action>'
               '</actions></manifest></updatecheck></app></response>'
               % (appid, events_ok, "".join('<url codebase="%s"></url>' % u for u in c.get("dead_urls", [])),
                  c.get("base_url", self.base_url()), c["version"], name, digest, size))
        return self.send(200, doc.encode())

    def do_GET(self):
        path = self.local_path()
        rng = self.headers.get("Range")
        log({"method": "GET", "path": path, "range": rng, "proxied": self.path.startswith("http")})
        if path == "/secret":
            return self.send(200, b"secret", "text/plain")
        c = config()
        if not path.startswith("/payloads/"):
            return self.send(404, b"not found\n", "text/plain")
        mode = c.get("payload_mode", "ok")
        if mode == "500":
            return self.send(503, b"unavailable\n", "text/plain")
        if mode == "403":
            return self.send(403, b"forbidden (an expired URL)\n", "text/plain")
        with open(c["payload"], "rb") as f:
            data = f.read()
        start, end = 0, len(data)
        code = 200
        if rng and mode != "norange":
            m = re.match(r"bytes=(\d+)-(\d*)", rng)
            start = int(m.group(1))
            end = int(m.group(2)) + 1 if m.group(2) else len(data)
            if start >= len(data) or (mode == "range-416" and start > 0):
                return self.send(416, b"", "text/plain")
            end = min(end, len(data))
            code = 206
            if mode == "range-widened":
                start = start // 65536 * 65536  # a cache that serves whole blocks
            elif mode == "range-late" and start > 0:
                start = min(start + 4096, end - 1)  # says so, but is not what was asked
        self.send_response(code)
        self.send_header("Content-Type", "application/octet-stream")
        # "overlong": claims 100 bytes more than it sends, so the transfer ends in an error
        # after the last byte (a lost end of stream).
        self.send_header("Content-Length", str(end - start + (100 if mode == "overlong" else 0)))
        if code == 206 and mode != "range-bare":
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end - 1, len(data)))
        self.end_headers()
        if mode == "stall":
            self.wfile.write(data[start:start + 1000])
            self.wfile.flush()
            time.sleep(c.get("stall_seconds", 30))
            return
        limit = end
        if mode == "drop" or (mode == "drop-once" and not state["dropped"]):
            limit = min(end, start + c.get("drop_after", 1 << 20))
            state["dropped"] = True
        rate = c.get("rate", 0)
        pos = start
        try:
            while pos < limit:
                n = min(65536, limit - pos)
                self.wfile.write(data[pos:pos + n])
                pos += n
                if rate:
                    time.sleep(n / rate)
        except (BrokenPipeError, ConnectionResetError):
            return
        if limit < end or mode == "overlong":
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)


def main():
    global args
    p = argparse.ArgumentParser()
    p.add_argument("--port-file", required=True)
    p.add_argument("--config", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--cert")
    p.add_argument("--certkey")
    args = p.parse_args()
    class Server(ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            pass  # clients that hang up early are part of the tests

    srv = Server(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.certkey)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(args.port_file + ".tmp", args.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
