"""Helpers for the tests of rekeyd's operator HTTP server (test_api.py,
test_metrics.py): a Rig with an [http] section on 127.0.0.1 and a free
port chosen by the kernel (listen = 127.0.0.1:0; the daemon logs the port),
tokens made with `rekeyctl token add`, and a small HTTP client."""
import http.client
import json
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import REKEYCTL, REKEYD, Rig


def http_section(extra=""):
    return "[http]\nlisten = 127.0.0.1:0\n" + extra


def add_token(rig, name):
    """A new token for NAME, as an operator makes it; returns the token."""
    p = subprocess.run([REKEYCTL, "token", "add", name, "--config", rig.config],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    token = p.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", token), p.stdout
    return token


class Daemon:
    """rekeyd running with its log in a file (a pipe could fill up and
    block it); port is what it listens on."""

    def __init__(self, rig):
        self.rig = rig
        self.log_path = os.path.join(rig.base, "rekeyd.log")
        self.log = open(self.log_path, "w")
        self.p = subprocess.Popen([REKEYD, "--config", rig.config], stderr=self.log)
        self.port = None
        end = time.time() + 15
        while time.time() < end and self.port is None:
            m = re.search(r"http: listening on 127\.0\.0\.1:(\d+)", self.text())
            if m:
                self.port = int(m.group(1))
            elif self.p.poll() is not None:
                break
            else:
                time.sleep(0.05)
        if not self.port:
            # never leave a daemon behind when the test fails here
            if self.p.poll() is None:
                self.p.kill()
                self.p.wait(timeout=30)
            self.log.close()
            raise AssertionError("rekeyd did not start its HTTP server:\n" + self.text())

    def text(self):
        with open(self.log_path) as f:
            return f.read()

    def stop(self):
        """SIGTERM, then the log after a clean drain (asserted)."""
        if self.log.closed:
            return self.text()
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            self.p.wait(timeout=30)
        self.log.close()
        out = self.text()
        assert self.p.returncode == 0, out
        assert "open handles" not in out, out
        return out

    def request(self, method, path, token=None, body=None, headers=None, raw=None):
        """One request on a fresh connection: (status, headers dict with
        lower-case names, body bytes).  body is sent as JSON, raw as is."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = "Bearer " + token
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def json(self, method, path, token=None, body=None, expect=200):
        status, _, data = self.request(method, path, token=token, body=body)
        assert status == expect, (status, data)
        return json.loads(data)


def api_rig(base, extra="", jobs=None, http_extra=""):
    rig = Rig(base, jobs=jobs, extra=extra + http_section(http_extra))
    return rig


def parse_metrics(text):
    """Prometheus text format into {(name, frozenset(labels.items())): value}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)', line)
        assert m, "not a sample line: " + line
        labels = {}
        if m.group(2):
            for lm in re.finditer(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2)):
                labels[lm.group(1)] = lm.group(2).replace('\\"', '"').replace(
                    "\\n", "\n").replace("\\\\", "\\")
        out[(m.group(1), frozenset(labels.items()))] = float(m.group(3))
    return out


def metric(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)
