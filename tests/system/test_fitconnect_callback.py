"""The FIT-Connect callback endpoint of the operator HTTP server,
POST /callbacks/fitconnect/{name}, against the real rekeyd and the fake
delivery service of fitconnect_server.py: no bearer token (the
HMAC-SHA512 over timestamp "." body, keyed with the section's
callback_secret, is the authentication); a valid callback makes the source
poll at once, long before its poll interval; a wrong MAC or a stale
timestamp is a 401 that says nothing more and starts no poll; an unknown
source is a 404."""
import hashlib
import hmac
import json
import os
import time

import pytest

from apihelp import Daemon, http_section
from conftest import DATA, Rig
from fitconnect_server import FitConnectServer, make_keys

CB_SECRET = "cb-s3cret-XYZ"
SAMPLE = "samples/besucherparkausweis-01-tag.xml"


@pytest.fixture(scope="module")
def keys():
    return make_keys(2048)


def write_keys(base, keys):
    paths = []
    for name, k in (("enc.jwk.json", keys[0]), ("sig.jwk.json", keys[1])):
        p = os.path.join(str(base), name)
        with open(p, "w") as f:
            f.write(k.export_private())
        os.chmod(p, 0o600)
        paths.append(p)
    return paths


def signed(body, ts=None, secret=CB_SECRET):
    ts = str(int(time.time()) if ts is None else ts)
    mac = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha512).hexdigest()
    return {"callback-timestamp": ts, "callback-authentication": mac,
            "Content-Type": "application/json"}


def settle(srv, quiet=0.6, timeout=10):
    """Waits until no list request came for `quiet` seconds; the count."""
    end = time.time() + timeout
    n, since = srv.list_calls, time.time()
    while time.time() < end:
        time.sleep(0.05)
        if srv.list_calls != n:
            n, since = srv.list_calls, time.time()
        elif time.time() - since >= quiet:
            return n
    raise AssertionError("the source kept polling")


def test_callback_polls_at_once_and_refuses_bad_ones(tmp_path, keys):
    srv = FitConnectServer(*keys).__enter__()
    enc, sig = write_keys(tmp_path, keys)
    # a poll interval of 10 minutes: any poll after the first is the callback's
    fc = srv.config(enc, sig, poll_interval_ms="600000", callback_secret=CB_SECRET)
    rig = Rig(tmp_path, extra=fc + http_section())
    srv.db = rig.db
    d = None
    try:
        d = Daemon(rig)
        rig.wait_for(lambda: srv.list_calls >= 1, 10, "the first poll")
        n0 = settle(srv)
        with open(os.path.join(DATA, SAMPLE), "rb") as f:
            sid = srv.add(f.read())
        body = json.dumps({"type": "https://schema.fitko.de/fit-connect/callbacks/"
                           "new-submissions", "submissionIds": [sid]}).encode()

        # a wrong MAC (signed with another secret): 401, no detail, no poll
        status, _, data = d.request("POST", "/callbacks/fitconnect/test", raw=body,
                                    headers=signed(body, secret="not-the-secret"))
        assert (status, json.loads(data)) == (401, {"error": "invalid callback"})
        # a correct MAC over a timestamp six minutes old: 401
        status, _, data = d.request("POST", "/callbacks/fitconnect/test", raw=body,
                                    headers=signed(body, ts=int(time.time()) - 360))
        assert (status, json.loads(data)) == (401, {"error": "invalid callback"})
        # headers missing: 401
        status, _, _ = d.request("POST", "/callbacks/fitconnect/test", raw=body)
        assert status == 401
        # no such FIT-Connect source: 404
        status, _, data = d.request("POST", "/callbacks/fitconnect/nope", raw=body,
                                    headers=signed(body))
        assert status == 404 and "error" in json.loads(data)
        time.sleep(0.5)
        assert srv.list_calls == n0, "a refused callback started a poll"
        assert srv.job_state(sid) is None

        # a valid callback, without any bearer token: 200 and a poll at once
        t0 = time.time()
        status, _, data = d.request("POST", "/callbacks/fitconnect/test", raw=body,
                                    headers=signed(body))
        assert (status, json.loads(data)) == (200, {"ok": True})
        rig.wait_for(lambda: srv.list_calls > n0, 10, "a poll right after the callback")
        assert time.time() - t0 < 10  # not after the 10 minutes of the interval
        rig.wait_for(lambda: srv.job_state(sid) is not None, 10, "the submission stored")
        rig.wait_for(lambda: srv.done.get(sid) == "accept", 10, "the accept event")
    finally:
        out = d.stop() if d else ""
        srv.__exit__()
    assert rig.q("SELECT count(*) FROM submissions WHERE source = 'fitconnect:test'"
                 " AND source_ref = ?", sid) == [(1,)]
    assert "callback ignored" in out and "polling now" in out
    assert CB_SECRET not in out
