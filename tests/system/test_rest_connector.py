"""The rest connector driven by the real daemon: the shipped jobs with their
connector switched to rest, delivering to a scripted HTTP(S) target on
127.0.0.1 (tests/system/httptarget.py) that records every request."""
import base64
import json
import os
import re
import shutil
import time
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

import pytest

from conftest import DATA, ROOT, Rig
from httptarget import HttpTarget, make_certs

SAMPLE = "samples/fischereischein-01-erstausstellung.xml"
# retries come quickly in tests: 25-50 ms after the first attempt
FAST_RETRY = "[delivery]\nbackoff_initial_ms = 50\nbackoff_max_ms = 200\n"
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"


def xml_text(v):
    """v escaped for XML text; a CR as &#13;, or the parser would turn it into LF."""
    return escape(v, {"\r": "&#13;"})


def rest_jobs(tmp_path, settings):
    """jobs/ and schemas/ side by side in tmp_path; every job's connector is
    replaced by rest with url ${target_url} and the given settings."""
    jobs = tmp_path / "jobs"
    if not jobs.exists():
        shutil.copytree(os.path.join(ROOT, "schemas"), tmp_path / "schemas")
    shutil.rmtree(jobs, ignore_errors=True)
    shutil.copytree(os.path.join(ROOT, "jobs"), jobs)
    sets = '<set key="url">${target_url}</set>' + "".join(
        f'<set key="{k}">{xml_text(v)}</set>' for k, v in settings.items())
    for f in jobs.glob("*.xml"):
        text, n = re.subn(r'<connector plugin="sqlite">.*?</connector>',
                          f'<connector plugin="rest">{sets}</connector>', f.read_text(),
                          flags=re.S)
        assert n == 1, f
        f.write_text(text)
    return str(jobs)


def make_rig(tmp_path, name, url, settings=None, extra=""):
    base = tmp_path / name
    base.mkdir()
    return Rig(base / "run", jobs=rest_jobs(base, settings or {}),
               extra=f"target_url = {url}\n{extra}")


def only_job(rig):
    rows = rig.q("SELECT j.id, j.state, j.attempts, j.target_id, j.last_error, s.uid, j.job"
                 " FROM jobs j JOIN submissions s ON s.id = j.submission_id")
    assert len(rows) == 1, rows
    k = ("id", "state", "attempts", "target_id", "last_error", "uid", "job")
    return dict(zip(k, rows[0]))


def mapped(rig, job_id):
    """The mapped record as the queue holds it: field name -> value."""
    return {n: v for n, v in rig.q("SELECT name, value FROM fields WHERE job_id = ?"
                                   " ORDER BY ord", job_id)}


def field_order(rig, job_id):
    return [n for (n,) in rig.q("SELECT name FROM fields WHERE job_id = ? ORDER BY ord",
                                job_id)]


def expected_key(rig, job):
    """The idempotency key the engine hands the connector: the deliveries
    table keeps it where there is one, else "<uid>:<job>" (agent/engine.c)."""
    try:
        rows = rig.q("SELECT idempotency_key FROM deliveries WHERE job_id = ?", job["id"])
    except Exception:  # an older queue without the deliveries table
        rows = []
    if rows:
        return rows[0][0]
    return f"{job['uid']}:{job['job']}"


def run_daemon_until(rig, state, timeout=15):
    """Runs rekeyd (not --once: that leaves jobs waiting for a retry alone)
    until the only job reaches state; returns the daemon's stderr."""
    def reached():
        rows = rig.q("SELECT state FROM jobs")
        return len(rows) == 1 and rows[0][0] == state
    d = rig.start()
    try:
        rig.wait_for(reached, timeout=timeout, what=f"the job in state {state}")
    finally:
        d.terminate()
        _, err = d.communicate(timeout=15)
    return err


def trail(rig, job_id):
    """The job's events as (to_state, reason)."""
    return rig.q("SELECT to_state, coalesce(reason, '') FROM events WHERE job_id = ?"
                 " ORDER BY id", job_id)


def everything_logged(rig, *outputs):
    """Every text rekey wrote: the runs' stderr and the whole queue."""
    text = "\n".join(outputs)
    for t in ("events", "jobs", "anomalies"):
        text += "\n" + repr(rig.q(f"SELECT * FROM {t}"))
    return text


def test_json_post_delivered_with_target_id_from_json_pointer(tmp_path):
    reply = {"status": 201, "body": {"data": {"ids": [{"a/b": "FV-2026-0042"}]}}}
    with HttpTarget(default=reply) as srv:
        rig = make_rig(tmp_path, "a", srv.url("/api/antraege?tenant=7"), {
            "bearer_token": "tok-SECRET-4711",
            "id_from": "json:/data/ids/0/a~1b",
            "headers": "X-Tenant: 0815\n  X-Api-Version: 2; charset=x  \n",
        })
        rig.drop(SAMPLE)
        p = rig.run_once()
        job = only_job(rig)
        assert job["state"] == "delivered", job
        assert job["target_id"] == "FV-2026-0042"
        assert len(srv.requests) == 1
        r = srv.requests[0]
        assert r.method == "POST" and r.path == "/api/antraege?tenant=7"
        assert r.header("Content-Type") == "application/json"
        assert r.header("Authorization") == "Bearer tok-SECRET-4711"
        assert r.header("X-Tenant") == "0815"
        assert r.header("X-Api-Version") == "2; charset=x"
        key = r.header("Idempotency-Key")
        assert key == expected_key(rig, job)
        assert re.fullmatch(r"[0-9a-f]{32}:fischereischein(:[a-z0-9_.-]+)?", key), key
        assert key.startswith(job["uid"] + ":fischereischein")
        # the body is exactly the mapped record, nulls included, in map order
        body = r.json()
        assert body == mapped(rig, job["id"])
        assert list(body) == field_order(rig, job["id"])
        assert body["nachname"] == "Brandt"
        assert any(v is None for v in body.values())  # e.g. no previous licence number
        # rekeyctl shows the target's id, in JSON and in text
        shown = json.loads(rig.ctl("show", str(job["id"]), "--json").stdout)
        assert shown["target_id"] == "FV-2026-0042"
        text = rig.ctl("show", str(job["id"])).stdout
        assert re.search(r"Kennung im Fachverfahren\s+FV-2026-0042", text), text
        # the token is in no log line and nowhere in the queue
        assert "tok-SECRET-4711" not in everything_logged(rig, p.stderr)
        assert "0815" not in p.stderr  # header values are secret too


def test_put_with_basic_auth_and_target_id_from_header(tmp_path):
    reply = {"status": 201, "headers": {"Location": "/api/antraege/77"}, "body": ""}
    with HttpTarget(default=reply) as srv:
        rig = make_rig(tmp_path, "a", srv.url("/api/antraege"), {
            "method": "put", "username": "rekey", "password": "pw-SECRET-0815",
            "id_from": "header:Location", "idempotency_header": "X-Request-Key",
        })
        rig.drop(SAMPLE)
        p = rig.run_once()
        job = only_job(rig)
        assert job["state"] == "delivered" and job["target_id"] == "/api/antraege/77"
        r = srv.requests[0]
        assert r.method == "PUT"
        assert r.header("Authorization") == "Basic " + base64.b64encode(
            b"rekey:pw-SECRET-0815").decode()
        assert r.header("X-Request-Key") == expected_key(rig, job)
        assert r.header("Idempotency-Key") is None
        assert r.json()["nachname"] == "Brandt"
        assert "pw-SECRET-0815" not in everything_logged(rig, p.stderr)


def test_500_then_200_retries_with_the_same_key(tmp_path):
    script = [{"status": 500, "body": {"error": "Datenbank\nnicht erreichbar"}},
              {"status": 200, "body": {"id": 99}}]
    with HttpTarget(script=script) as srv:
        rig = make_rig(tmp_path, "a", srv.url("/in"), {"id_from": "json:/id"},
                       extra=FAST_RETRY)
        rig.drop(SAMPLE)
        run_daemon_until(rig, "delivered")
        job = only_job(rig)
        assert job["attempts"] == 2, job
        assert job["target_id"] == "99"  # an integer id, as a string
        states = [t for t, _ in trail(rig, job["id"])]
        assert states.count("retry_wait") == 1 and states[-1] == "delivered", states
        first = [r for t, r in trail(rig, job["id"]) if t == "retry_wait"][0]
        assert "HTTP 500: Datenbank nicht erreichbar" in first, first
        assert len(srv.requests) == 2
        a, b = srv.requests
        assert a.header("Idempotency-Key") == b.header("Idempotency-Key") == \
            expected_key(rig, job)
        assert a.body == b.body


def test_retry_after_in_seconds_and_as_http_date_is_honoured(tmp_path):
    def http_date(t):
        return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(t))

    replies = iter([
        lambda: {"status": 429, "headers": {"Retry-After": "1"}, "body": "slow down"},
        # at least 1 s ahead whatever the rounding of the seconds
        lambda: {"status": 503, "headers": {"Retry-After": http_date(int(time.time()) + 2)}},
        lambda: {"status": 201, "body": {"id": "A-1"}},
    ])
    with HttpTarget(reply_for=lambda req: next(replies)()) as srv:
        rig = make_rig(tmp_path, "a", srv.url("/in"), {"id_from": "json:/id"},
                       extra=FAST_RETRY)
        rig.drop(SAMPLE)
        run_daemon_until(rig, "delivered")
        assert len(srv.requests) == 3
        t = [r.at for r in srv.requests]
        # without Retry-After the host would retry after 25-100 ms
        assert t[1] - t[0] >= 0.99, t
        assert t[2] - t[1] >= 0.99, t
        assert len({r.header("Idempotency-Key") for r in srv.requests}) == 1
        events = " | ".join(r for (r,) in rig.q("SELECT reason FROM events WHERE reason"
                                               " IS NOT NULL"))
        assert "HTTP 429: slow down" in events and "HTTP 503: no message" in events


def test_422_goes_to_review_with_the_targets_message(tmp_path):
    bodies = {
        # a JSON message: control characters in it are cleaned away
        "fischereischein": {"status": 422, "body": {
            "detail": "ignored", "message": "Feld \u201egeburtsort\u201c\tist\u0007 zu lang\r\n"}},
        # a plain body: its first 300 bytes
        "besucherparkausweis": {"status": 400, "body": "Fehler: " + "x" * 400},
    }
    with HttpTarget(reply_for=lambda r: bodies[r.header("Idempotency-Key")
                                              .split(":")[1]]) as srv:
        rig = make_rig(tmp_path, "a", srv.url("/in"))
        rig.drop(SAMPLE, "samples/besucherparkausweis-01-tag.xml")
        rig.run_once()
        jobs = {j["job"]: j for j in rig.jobs_by_ref().values()}
        assert {j["state"] for j in jobs.values()} == {"review"}, jobs
        assert len(srv.requests) == 2  # PERMANENT: no retry
        msgs = {}
        for name, j in jobs.items():
            rows = rig.q("SELECT code, severity, message FROM anomalies WHERE job_id = ?",
                         j["id"])
            assert [(c, s) for c, s, _ in rows] == [("ANBINDUNG_ABGELEHNT", "block")]
            msgs[name] = rows[0][2]
        m = msgs["fischereischein"]
        assert m.endswith("HTTP 422: Feld \u201egeburtsort\u201c ist zu lang"), m
        assert f"POST http://127.0.0.1:{srv.port}/in" in m
        m = msgs["besucherparkausweis"]
        assert m.endswith("HTTP 400: Fehler: " + "x" * 292 + "..."), m
        for m in msgs.values():
            assert not re.search(r"[\x00-\x1f\x7f]", m)


def test_slow_target_beyond_timeout_is_retried(tmp_path):
    script = [{"status": 201, "delay": 2}, {"status": 201}]
    with HttpTarget(script=script) as srv:
        rig = make_rig(tmp_path, "a", srv.url("/in"), {"timeout_ms": "300"},
                       extra=FAST_RETRY)
        rig.drop(SAMPLE)
        run_daemon_until(rig, "delivered")
        job = only_job(rig)
        assert job["attempts"] == 2
        reasons = [r for t, r in trail(rig, job["id"]) if t == "retry_wait"]
        assert len(reasons) == 1 and "timed out" in reasons[0], reasons
        assert len(srv.requests) == 2
        a, b = srv.requests
        assert a.header("Idempotency-Key") == b.header("Idempotency-Key")
        # the second attempt came after the 300 ms limit and the backoff,
        # not after the slow answer (2 s)
        assert 0.3 <= b.at - a.at < 1.5, b.at - a.at


def test_401_and_redirect_are_fatal_and_an_oversized_ok_still_counts(tmp_path):
    replies = {
        # wrong credentials: every record would fail alike -> FATAL (waits, retried)
        "fischereischein": {"status": 401, "body": {"error": {"message": "token expired"}}},
        # a redirect is not followed by default -> FATAL, naming the new address
        "besucherparkausweis": {"status": 308, "headers": {"Location": "https://neu.example/in"}},
        # 2xx with a body over 1 MiB: the record is in; the id cannot be read
        "gewerbeanmeldung": {"status": 201, "body": "x" * (1024 * 1024 + 1)},
    }
    with HttpTarget(reply_for=lambda r: replies[r.header("Idempotency-Key")
                                               .split(":")[1]]) as srv:
        rig = make_rig(tmp_path, "a", srv.url("/in?apikey=QUERY-SECRET"),
                       {"id_from": "json:/id"})
        rig.drop(SAMPLE, "samples/besucherparkausweis-01-tag.xml",
                 "samples/gewerbeanmeldung-01-einzelunternehmen.xml")
        p = rig.run_once()
        jobs = {j: (st, err, tid) for j, st, err, tid in
                rig.q("SELECT job, state, last_error, target_id FROM jobs")}
        where = f"POST http://127.0.0.1:{srv.port}/in"
        assert jobs["fischereischein"] == ("retry_wait", f"{where}: HTTP 401: token expired",
                                           None)
        st, err, _ = jobs["besucherparkausweis"]
        assert st == "retry_wait" and "HTTP 308 redirect to https://neu.example/in" in err
        assert jobs["gewerbeanmeldung"][0] == "delivered"
        assert jobs["gewerbeanmeldung"][2] in (None, "")
        assert "no target id at /id" in p.stderr
        assert len(srv.requests) == 3
        # the query string (it may carry a key) is in no message
        assert "QUERY-SECRET" not in everything_logged(rig, p.stderr)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


def test_https_self_signed_needs_ca_file(tmp_path, certs):
    with HttpTarget(default={"status": 201}, tls=certs) as srv:
        # tls_verify is on by default: the self-signed certificate is refused
        rig = make_rig(tmp_path, "a", srv.url("/in"))
        rig.drop(SAMPLE)
        rig.run_once()
        job = only_job(rig)
        assert job["state"] == "retry_wait", job  # FATAL: waits like a retry
        assert "TLS certificate verification failed" in job["last_error"]
        assert "ca_file" in job["last_error"]
        assert srv.requests == []
        # with the certificate as ca_file it goes through
        rig = make_rig(tmp_path, "b", srv.url("/in"), {"ca_file": certs["server_cert"]})
        rig.drop(SAMPLE)
        rig.run_once()
        assert only_job(rig)["state"] == "delivered"
        assert len(srv.requests) == 1 and srv.requests[0].json()["nachname"] == "Brandt"


def test_client_certificate(tmp_path, certs):
    with HttpTarget(default={"status": 201}, tls=certs, client_ca=True) as srv:
        common = {"ca_file": certs["server_cert"]}
        # without a client certificate the handshake fails: transient
        rig = make_rig(tmp_path, "a", srv.url("/in"), common)
        rig.drop(SAMPLE)
        rig.run_once()
        job = only_job(rig)
        assert job["state"] == "retry_wait" and srv.requests == [], job
        assert f"POST https://127.0.0.1:{srv.port}/in failed" in job["last_error"]
        rig = make_rig(tmp_path, "b", srv.url("/in"), dict(
            common, client_cert=certs["client_cert"], client_key=certs["client_key"]))
        rig.drop(SAMPLE)
        rig.run_once()
        assert only_job(rig)["state"] == "delivered"
        assert [r.peer_cn for r in srv.requests] == ["rekey-client"]


def test_xml_body(tmp_path):
    # a name with characters XML must escape
    src = open(os.path.join(DATA, SAMPLE), encoding="utf-8").read()
    src, n = re.subn(r"(<[^>]*F60000000227>)\s*Brandt\s*(<)", r"\1Brandt &amp; &lt;Co&gt;\2",
                     src)
    assert n == 1
    with HttpTarget(default={"status": 201}) as srv:
        rig = make_rig(tmp_path, "a", srv.url("/xml"), {"format": "xml",
                                                         "xml_root": "antrag"})
        rig.drop_bytes("escaped.xml", src.encode("utf-8"))
        rig.run_once()
        job = only_job(rig)
        assert job["state"] == "delivered", job
        r = srv.requests[0]
        assert r.header("Content-Type").startswith("application/xml")
        assert r.body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
        root = ET.fromstring(r.body)
        assert root.tag == "antrag"
        want = mapped(rig, job["id"])
        assert [c.tag for c in root] == field_order(rig, job["id"])
        for c in root:
            if want[c.tag] is None:
                assert c.get(XSI_NIL) == "true" and c.text is None, c.tag
            else:
                assert (c.text or "") == want[c.tag], c.tag
        assert root.find("nachname").text == "Brandt & <Co>"
        assert b"Brandt &amp; &lt;Co&gt;" in r.body


def test_settings_refused_at_open_without_leaking_secrets(tmp_path):
    with HttpTarget() as srv:
        # a password in the URL
        url = srv.url("/in").replace("http://", "http://rekey:pw-IN-URL@")
        rig = make_rig(tmp_path, "a", url)
        rig.drop(SAMPLE)
        p = rig.run_once()
        job = only_job(rig)
        assert job["state"] == "retry_wait"
        assert "carries a user name or password" in job["last_error"]
        # a CR smuggled into a header value
        rig2 = make_rig(tmp_path, "b", srv.url("/in"),
                        {"headers": "X-A: 1\rX-Evil: pw-IN-HEADER"})
        rig2.drop(SAMPLE)
        p2 = rig2.run_once()
        job2 = only_job(rig2)
        assert job2["state"] == "retry_wait"
        assert "setting 'headers', line 1: holds a control character" in job2["last_error"]
        assert srv.requests == []
        assert "pw-IN-URL" not in everything_logged(rig, p.stderr)
        assert "pw-IN-HEADER" not in everything_logged(rig2, p2.stderr)
