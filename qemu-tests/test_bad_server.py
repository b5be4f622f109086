"""A bad server cannot hurt a machine: when the server answers garbage, or serves a tampered
payload, the machine stays on its version, reports the error, and keeps polling."""
import glob
import http.server
import os
import re
import threading
import time

from fleet import PORT, Server, build_image
from pivotvm import BANNER, PivotVM

BOOT_TIMEOUT = 180


class GarbageServer(http.server.ThreadingHTTPServer):
    """Answers every Omaha request with bytes that are not XML, and keeps what it was sent."""

    def __init__(self):
        self.requests = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.requests.append(body.decode("utf-8", "replace"))
                reply = b"\x00\xffthis is not <xml at all & <<<"
                self.send_response(200)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", PORT), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def test_garbage_answers(ctx):
    v1 = build_image("v1", "1")
    srv = GarbageServer()
    try:
        with PivotVM(os.path.join(v1, "disk.img"), ctx.workdir) as vm:
            vm.start()
            m = vm.expect(BANNER.pattern, BOOT_TIMEOUT)
            assert (m.group(1), m.group(2)) == ("A", "1"), m.group(0)
            # It keeps polling through the errors: a second check comes after its back-off
            # (about a minute at first, doubling).
            deadline = time.monotonic() + 200
            while sum("<updatecheck" in r for r in srv.requests) < 2:
                assert time.monotonic() < deadline, f"only {len(srv.requests)} requests reached the server"
                time.sleep(1)
            reports = [r for r in srv.requests
                       if re.search(r'<event[^>]*eventtype="3"', r) and re.search(r'errorcode="\d+"', r)]
            assert reports, f"the machine never reported the invalid answers: {srv.requests}"
            vm.power_off()
            slots = vm.gpt()
            assert slots["ROOT-A"] == (2, 0, 1), slots
            assert slots["ROOT-B"][0] <= 1 and slots["ROOT-B"][2] == 1, f"slot B was touched: {slots}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_tampered_payload(ctx):
    v1 = build_image("v1", "1")
    v2 = build_image("v2", "2")
    with Server(ctx.workdir) as server, PivotVM(os.path.join(v1, "disk.img"), ctx.workdir) as vm:
        server.admin("publish", os.path.join(v2, "update.payload"), "--channel", "stable")
        # Change one byte in the middle of the stored payload, as a compromised mirror would.
        stored = [p for p in glob.glob(os.path.join(server.data, "payloads", "**", "*"), recursive=True)
                  if os.path.isfile(p)]
        assert len(stored) == 1, stored
        with open(stored[0], "r+b") as f:
            f.seek(os.path.getsize(stored[0]) // 2)
            b = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([b[0] ^ 0xFF]))
        vm.start()
        m = vm.expect(BANNER.pattern, BOOT_TIMEOUT)
        assert (m.group(1), m.group(2)) == ("A", "1"), m.group(0)
        vm.expect(r"pivot-agent: error: .*does not match its SHA-256", 300)
        # It keeps polling (the next attempt comes after its back-off) and stays on 1.
        mark = len(vm.lines)
        vm.expect(r"pivot-agent: Update available: 2", 200)
        vm.expect(r"pivot-agent: error: .*does not match its SHA-256", 300)
        later = "\n".join(vm.lines[mark:])
        assert "pivot-selector" not in later and "Rebooting" not in later, later
        deadline = time.monotonic() + 60
        while True:
            events = server.events()
            rows = events if isinstance(events, list) else events.get("events", [])
            if any(int(e.get("error_code") or 0) in (10, 18, 20) for e in rows):
                break
            assert time.monotonic() < deadline, f"no hash/signature error event on the server: {rows}"
            time.sleep(2)
        vm.power_off()
        slots = vm.gpt()
        assert slots["ROOT-A"] == (2, 0, 1), slots
        assert slots["ROOT-B"][0] == 0 and slots["ROOT-B"][2] == 0, f"slot B may boot: {slots}"
