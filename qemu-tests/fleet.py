"""Fixtures for the update stories: images of several versions built for tests, and a real
pivot-server on the host's loopback that guests reach as 10.0.2.2.

Test images differ from the default build only in the agent's schedule (seconds, not minutes),
the server they poll, a shorter watchdog, and for the broken versions an overlay that breaks
their boot. They are built with `make image` into out/qemu-images/<name>/, sharing the package
cache; a build is skipped when its inputs have not changed since the last one.
"""
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = os.path.join(ROOT, "out", "qemu-images")
PORT = int(os.environ.get("PIVOT_TEST_PORT", "18480"))
GUEST_SERVER = f"http://10.0.2.2:{PORT}/v1/update/"

TEST_SETTINGS = {
    "UPDATE_SERVER": GUEST_SERVER,
    "FIRST_CHECK_DELAY": "2",
    "POLL_INTERVAL": "8",
    "POLL_JITTER": "1",
    "WATCHDOG_SEC": "45",
}


def _tree_digest(path):
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(path)):
        dirnames.sort()
        for name in sorted(filenames):
            p = os.path.join(dirpath, name)
            h.update(os.path.relpath(p, path).encode())
            if os.path.islink(p):
                h.update(os.readlink(p).encode())
            else:
                with open(p, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()


# What an image is made of; commits elsewhere (server/, qemu-tests/) reuse built test images.
IMAGE_SOURCES = ["image", "rootfs-overlay", "lib", "updater", "bootloader-config", "Makefile", "mk"]


def _inputs_digest(settings, overlay):
    trees = subprocess.run(["git", "-C", ROOT, "rev-parse", *[f"HEAD:{p}" for p in IMAGE_SOURCES]],
                           capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "-C", ROOT, "diff", "HEAD", "--", *IMAGE_SOURCES],
                           capture_output=True, text=True).stdout
    return hashlib.sha256(json.dumps([trees, dirty, settings, _tree_digest(overlay)]).encode()).hexdigest()


def broken_overlay(name, init_script):
    """rootfs-overlay with /sbin/init replaced: a version that cannot come up."""
    path = os.path.join(IMAGES, "overlays", name)
    shutil.rmtree(path, ignore_errors=True)
    shutil.copytree(os.path.join(ROOT, "rootfs-overlay"), path, symlinks=True)
    os.makedirs(os.path.join(path, "sbin"), exist_ok=True)
    with open(os.path.join(path, "sbin", "init"), "w") as f:
        f.write("#!/bin/sh\n" + init_script + "\n")
    os.chmod(os.path.join(path, "sbin", "init"), 0o755)
    return path


def agent_conf_overlay(name, lines):
    """rootfs-overlay with extra lines in the agent's configuration (test hooks)."""
    path = os.path.join(IMAGES, "overlays", name)
    shutil.rmtree(path, ignore_errors=True)
    shutil.copytree(os.path.join(ROOT, "rootfs-overlay"), path, symlinks=True)
    with open(os.path.join(path, "etc", "pivot", "update.conf.in"), "a") as f:
        f.write("".join(line + "\n" for line in lines))
    return path


def build_image(name, version, overlay=None, **extra):
    """Builds (or reuses) a test image; returns its directory (disk.img, update.payload)."""
    out = os.path.join(IMAGES, name)
    os.makedirs(IMAGES, exist_ok=True)
    # Parallel test workers may want the same image: one builds, the others wait for it.
    with open(os.path.join(IMAGES, f"{name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_image_locked(name, out, version, overlay, extra)


def _build_image_locked(name, out, version, overlay, extra):
    overlay = overlay or os.path.join(ROOT, "rootfs-overlay")
    settings = dict(TEST_SETTINGS, VERSION=version, **extra)
    digest = _inputs_digest(settings, overlay)
    stamp = os.path.join(out, ".inputs")
    if os.path.exists(stamp) and open(stamp).read() == digest:
        return out
    cmd = ["make", "--no-print-directory", "-C", ROOT, "image", f"OUT={out}",
           f"CACHE={os.path.join(ROOT, 'out', 'cache')}", f"OVERLAY={overlay}"]
    cmd += [f"{k}={v}" for k, v in settings.items()]
    log = os.path.join(IMAGES, f"{name}.log")
    with open(log, "w") as f:
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise RuntimeError(f"building test image {name} failed; see {log}")
    with open(stamp, "w") as f:
        f.write(digest)
    return out


class Server:
    """pivot-server with its embedded SQLite store, on 127.0.0.1:PORT, for one test."""

    def __init__(self, workdir, port=PORT, answer_garbage=False):
        self.data = os.path.join(workdir, "server")
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = os.path.join(workdir, "server.log")
        self.proc = None

    def start(self):
        os.makedirs(self.data, exist_ok=True)
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", self.port)) == 0:
                raise RuntimeError(f"port {self.port} is taken; set PIVOT_TEST_PORT")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [os.path.join(ROOT, "out", "bin", "pivot-server"), "--listen", f"127.0.0.1:{self.port}",
             "--data", self.data], stdout=self._log, stderr=subprocess.STDOUT)
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"pivot-server exited; see {self.log_path}")
            time.sleep(0.1)
        raise RuntimeError("pivot-server did not start listening")

    def admin(self, *args, check=True):
        r = subprocess.run([os.path.join(ROOT, "out", "bin", "pivot-admin"), "--server", self.url,
                            "--token-file", os.path.join(self.data, "admin.token"), *args],
                           capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError(f"pivot-admin {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    def status(self):
        return json.loads(self.admin("status", "--json"))

    def machines(self):
        return json.loads(self.admin("machines", "--json"))

    def events(self):
        return json.loads(self.admin("events", "--json"))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
