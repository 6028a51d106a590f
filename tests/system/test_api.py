"""The operator JSON API of rekeyd over real HTTP on 127.0.0.1: every
endpoint, refusal without a valid token (and no data in the refusal),
paging, decisions through the API that land in the audit trail under the
token's name and are then delivered by the running daemon, bounded
bodies, 404/405, and the token tool."""
import hashlib
import http.client
import json
import os
import re
import socket
import subprocess
import time

import pytest

from apihelp import Daemon, add_token, api_rig
from conftest import DATA, REKEYCTL, REKEYD


GOOD_1 = "samples/besucherparkausweis-01-tag.xml"
GOOD_2 = "samples/besucherparkausweis-02-woche.xml"
HELD_AGE = "samples/fischereischein-10-mindestalter.xml"       # MINDESTALTER
HELD_FEE = "samples/besucherparkausweis-10-gebuehr-falsch.xml"  # GEBUEHR_FALSCH
HELD_PAY = "samples/besucherparkausweis-11-zahlung-offen.xml"   # ZAHLUNG_OFFEN
BROKEN = "kaputt.xml"                                           # XML_MALFORMED → failed


class Srv:
    pass


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Srv()
    s.rig = api_rig(tmp_path_factory.mktemp("api") / "run")
    s.anna = add_token(s.rig, "anna")
    s.ben = add_token(s.rig, "ben.meier")
    s.rig.drop(GOOD_1, GOOD_2, HELD_AGE, HELD_FEE, HELD_PAY)
    s.rig.drop_bytes(BROKEN, b"<Antrag><nicht zu")
    s.d = Daemon(s.rig)
    try:
        s.rig.wait_for(lambda: s.rig.q("SELECT count(*) FROM jobs WHERE state IN"
                                       " ('review', 'delivered', 'failed')")[0][0] == 6,
                       what="the batch processed")
    except BaseException:
        s.d.p.kill()
        s.d.p.wait(timeout=30)
        raise
    refs = s.rig.jobs_by_ref()
    s.id = {k: refs[os.path.basename(v)]["id"] for k, v in
            [("good1", GOOD_1), ("good2", GOOD_2), ("age", HELD_AGE), ("fee", HELD_FEE),
             ("pay", HELD_PAY), ("broken", BROKEN)]}
    yield s
    log = s.d.stop()
    # decisions are logged with ids and token names, never personal data
    assert "Hartmann" not in log and "2014-09-17" not in log and s.anna not in log
    assert f"job {s.id['age']}: approved by anna" in log


def state(s, key):
    return s.rig.q("SELECT state FROM jobs WHERE id = ?", s.id[key])[0][0]


# ---- authentication -----------------------------------------------------------

def every_endpoint(s):
    i = s.id["fee"]
    return [("GET", "/api/v1/status", None), ("GET", "/api/v1/jobs", None),
            ("GET", "/api/v1/jobs?state=review", None), ("GET", f"/api/v1/jobs/{i}", None),
            ("GET", f"/api/v1/jobs/{i}/document", None), ("GET", "/api/v1/events", None),
            ("GET", "/metrics", None), ("GET", "/api/v1/nothing-here", None),
            ("POST", f"/api/v1/jobs/{i}/fields/betrag", {"value": "15.00"}),
            ("POST", f"/api/v1/jobs/{i}/approve", None),
            ("POST", f"/api/v1/jobs/{i}/reject", {"reason": "x"}),
            ("POST", f"/api/v1/jobs/{i}/retry", None),
            ("POST", f"/api/v1/jobs/{i}/replay", {"new_key": True})]


def test_no_token_or_a_wrong_one_gets_401_and_no_data(srv):
    s = srv
    before = s.rig.q("SELECT count(*) FROM events")[0][0]
    wrong = "0" * 64
    for method, path, body in every_endpoint(s):
        for headers in ({}, {"Authorization": "Bearer " + wrong},
                        {"Authorization": "Bearer " + s.anna[:-1]},
                        {"Authorization": "Basic " + s.anna}, {"Authorization": "Bearer"}):
            status, h, data = s.d.request(method, path, body=body, headers=headers)
            assert status == 401, (method, path, headers, status, data)
            assert json.loads(data).keys() == {"error"}
            assert h["www-authenticate"] == 'Bearer realm="rekey"'
            for secret in (b"besucherparkausweis", b"review", b"gebuehr", b"betrag",
                           b"rekey_jobs"):
                assert secret not in data, (path, data)
    # nothing was decided or written by the refused requests
    assert s.rig.q("SELECT count(*) FROM events")[0][0] == before
    assert state(s, "fee") == "review"


def test_health_needs_no_token(srv):
    status, h, data = srv.d.request("GET", "/healthz")
    assert (status, data) == (200, b"ok\n") and h["content-type"].startswith("text/plain")
    status, _, data = srv.d.request("GET", "/readyz")
    assert (status, data) == (200, b"ready\n")


# ---- reading ------------------------------------------------------------------

def test_status(srv):
    st = srv.d.json("GET", "/api/v1/status", srv.anna)
    db = dict(srv.rig.q("SELECT state, count(*) FROM jobs GROUP BY state"))
    assert {k: v for k, v in st["by_state"].items() if v} == db
    assert st["total"] == sum(db.values())
    assert st["by_job"]["besucherparkausweis"]["review"] >= 1
    assert st["paused"] == [] and st["overdue"] == [] and st["source_problems"] == []


def test_list_filters_and_paging(srv):
    s = srv
    all_ids = [r[0] for r in s.rig.q("SELECT id FROM jobs ORDER BY id DESC")]
    seen, path, pages = [], "/api/v1/jobs?limit=2", 0
    while path:
        page = s.d.json("GET", path, s.anna)
        assert len(page["jobs"]) <= 2
        seen += [j["id"] for j in page["jobs"]]
        path = page["next"]
        pages += 1
        if path:
            assert path.startswith("/api/v1/jobs?limit=2&before=")
    assert seen == all_ids and pages == 3
    page = s.d.json("GET", "/api/v1/jobs?state=review&job=besucherparkausweis&limit=1", s.anna)
    assert len(page["jobs"]) == 1 and page["jobs"][0]["state"] == "review"
    assert "state=review" in page["next"] and "job=besucherparkausweis" in page["next"]
    rest = s.d.json("GET", page["next"], s.anna)
    held = {page["jobs"][0]["id"]} | {j["id"] for j in rest["jobs"]}
    assert {s.id["fee"], s.id["pay"]} <= held and s.id["age"] not in held
    one = s.d.json("GET", "/api/v1/jobs?code=GEBUEHR_FALSCH", s.anna)["jobs"]
    assert [j["id"] for j in one] == [s.id["fee"]] and one[0]["codes"] == "GEBUEHR_FALSCH"
    ref = s.d.json("GET", "/api/v1/jobs?source_ref=" + os.path.basename(GOOD_2), s.anna)
    assert [j["id"] for j in ref["jobs"]] == [s.id["good2"]]
    assert s.d.json("GET", "/api/v1/jobs?since=1d&overdue=false", s.anna)["jobs"]
    assert s.d.json("GET", "/api/v1/jobs?until=2000-01-01", s.anna)["jobs"] == []
    for bad, why in [("state=zur%20Kl%C3%A4rung", "unknown state"), ("limit=0", "limit"),
                     ("limit=501", "limit"), ("before=x", "before"), ("since=gestern", "since"),
                     ("stat=review", "unknown parameter 'stat'"), ("overdue=vielleicht",
                                                                   "overdue")]:
        err = s.d.json("GET", "/api/v1/jobs?" + bad, s.anna, expect=400)
        assert why in err["error"], (bad, err)


def test_one_job_with_its_history_and_provenance(srv):
    s = srv
    o = s.d.json("GET", f"/api/v1/jobs/{s.id['good1']}", s.anna)
    assert o["id"] == s.id["good1"] and o["state"] == "delivered"
    assert o["job"] == "besucherparkausweis" and o["source_ref"] == os.path.basename(GOOD_1)
    assert [e["to_state"] for e in o["events"]][:3] == ["received", "validated", "mapped"]
    assert o["events"][-1]["to_state"] == "delivered"
    assert o["deliveries"][0]["state"] == "delivered" and o["deliveries"][0]["attempts"] == 1
    assert all(f["xpath"] for f in o["fields"])  # provenance of each mapped value
    held = s.d.json("GET", f"/api/v1/jobs/{s.id['fee']}", s.anna)
    assert [a["code"] for a in held["anomalies"]] == ["GEBUEHR_FALSCH"]
    assert held["corrections"] == []
    for bad in ("999999", "abc", "0", "-1"):
        err = s.d.json("GET", f"/api/v1/jobs/{bad}", s.anna, expect=404)
        assert err["error"]


def test_the_document_itself(srv):
    status, h, data = srv.d.request("GET", f"/api/v1/jobs/{srv.id['age']}/document",
                                    token=srv.anna)
    assert status == 200 and h["content-type"] == "application/xml"
    with open(os.path.join(DATA, HELD_AGE), "rb") as f:
        assert data == f.read()


def test_events_paged(srv):
    s = srv
    total = s.rig.q("SELECT count(*) FROM events")[0][0]
    ids, path = [], "/api/v1/events?limit=4"
    while path:
        page = s.d.json("GET", path, s.anna)
        ids += [e["id"] for e in page["events"]]
        path = page["next"]
    assert len(ids) >= total and ids == sorted(ids) and len(set(ids)) == len(ids)
    ev = s.d.json("GET", "/api/v1/events?job=fischereischein&since=1h", s.anna)["events"]
    assert ev and {e["job"] for e in ev} == {"fischereischein"}
    assert {"id", "job_id", "at", "actor", "from_state", "to_state", "reason"} <= ev[0].keys()


# ---- deciding -------------------------------------------------------------------

def test_a_review_decision_is_audited_and_delivered(srv):
    s = srv
    age = s.id["age"]
    r = s.d.json("POST", f"/api/v1/jobs/{age}/fields/geburtsdatum", s.anna,
                 body={"value": "2001-09-17"})
    assert r["ok"] is True and r["state"] == "review" and r["anomalies"] == []
    assert "Feld geburtsdatum korrigiert" in r["message"]
    r = s.d.json("POST", f"/api/v1/jobs/{age}/approve", s.anna)
    assert r == {"ok": True, "id": age, "state": "ready", "anomalies": [],
                 "message": f"Antrag {age} freigegeben; er wird an das Fachverfahren "
                            "übertragen."}
    # the running daemon picks the decision up by itself and delivers it
    s.rig.wait_for(lambda: state(s, "age") == "delivered", timeout=10,
                   what="the approved job delivered")
    rows = s.rig.target_rows("fischereischein", f"rk_submission = '{age}'")
    assert len(rows) == 1 and rows[0]["geburtsdatum"] == "2001-09-17"
    # the audit trail names the token, in the store and through the API
    assert s.rig.q("SELECT field, old_value, new_value, actor FROM corrections"
                   " WHERE job_id = ?", age) == [("geburtsdatum", "2014-09-17", "2001-09-17",
                                                   "anna")]
    trail = [(e["actor"], e["from_state"], e["to_state"]) for e in
             s.d.json("GET", f"/api/v1/jobs/{age}", s.anna)["events"]]
    assert ("anna", "review", "review") in trail and ("anna", "review", "ready") in trail
    assert trail[-1] == ("rekeyd", "delivering", "delivered")
    ev = s.d.json("GET", "/api/v1/events?job=fischereischein&limit=1000", s.anna)["events"]
    assert ("anna", "ready") in {(e["actor"], e["to_state"]) for e in ev if e["job_id"] == age}


def test_refused_decisions_say_why_and_change_nothing(srv):
    s = srv
    fee = s.id["fee"]
    r = s.d.json("POST", f"/api/v1/jobs/{fee}/approve", s.ben, expect=409)
    assert r["ok"] is False and r["state"] == "review"
    assert r["error"].startswith(f"Antrag {fee} bleibt zur Klärung: GEBUEHR_FALSCH")
    assert [a["code"] for a in r["anomalies"]] == ["GEBUEHR_FALSCH"]
    r = s.d.json("POST", f"/api/v1/jobs/{fee}/fields/gibtsnicht", s.ben,
                 body={"value": "1"}, expect=404)
    assert "Das Feld gibtsnicht gibt es in der Antragsart besucherparkausweis nicht" \
        in r["error"]
    r = s.d.json("POST", f"/api/v1/jobs/{s.id['good1']}/approve", s.ben, expect=409)
    assert "ist nicht zur Klärung (Status: übertragen)" in r["error"]
    assert s.d.json("POST", "/api/v1/jobs/999999/approve", s.ben, expect=404)["error"] == \
        "Einen Antrag mit der Nummer 999999 gibt es nicht."
    r = s.d.json("POST", f"/api/v1/jobs/{s.id['good1']}/retry", s.ben, expect=409)
    assert "fehlgeschlagen" in r["error"]
    for path, body, why in [
            (f"/api/v1/jobs/{fee}/reject", {}, "reason"),
            (f"/api/v1/jobs/{fee}/reject", {"reason": ""}, "reason"),
            (f"/api/v1/jobs/{fee}/fields/betrag", {}, "value"),
            (f"/api/v1/jobs/{fee}/fields/betrag", {"value": 15}, "value"),
            (f"/api/v1/jobs/{fee}/fields/betrag", {"value": "1", "x": 1}, "unknown member 'x'"),
            (f"/api/v1/jobs/{fee}/replay", {"new_key": "ja"}, "new_key"),
            (f"/api/v1/jobs/{fee}/approve?force=1", None, "unknown parameter")]:
        r = s.d.json("POST", path, s.ben, body=body, expect=400)
        assert why in r["error"], (path, r)
    status, _, data = s.d.request("POST", f"/api/v1/jobs/{fee}/reject", token=s.ben,
                                  raw=b'{"reason": ', headers={"Content-Type":
                                                               "application/json"})
    assert status == 400 and "not JSON" in json.loads(data)["error"]
    assert state(s, "fee") == "review"
    assert s.rig.q("SELECT count(*) FROM corrections WHERE job_id = ?", fee) == [(0,)]


def test_reject_retry_and_replay(srv):
    s = srv
    pay = s.id["pay"]
    r = s.d.json("POST", f"/api/v1/jobs/{pay}/reject", s.ben,
                 body={"reason": "Zahlung nicht eingegangen"})
    assert r["ok"] and r["state"] == "rejected" and r["message"] == f"Antrag {pay} abgelehnt."
    assert s.rig.q("SELECT actor, from_state FROM events WHERE job_id = ? AND to_state ="
                   " 'rejected'", pay) == [("ben.meier", "review")]
    # a job that failed in processing is processed again, and fails again
    broken = s.id["broken"]
    r = s.d.json("POST", f"/api/v1/jobs/{broken}/retry", s.ben)
    assert r["ok"] and r["message"] == f"Antrag {broken} wird erneut verarbeitet."
    s.rig.wait_for(lambda: s.rig.q("SELECT count(*) FROM events WHERE job_id = ? AND"
                                   " to_state = 'failed'", broken)[0][0] == 2,
                   timeout=10, what="the retried job processed again")
    assert ("ben.meier", "failed", "received") in s.rig.q(
        "SELECT actor, from_state, to_state FROM events WHERE job_id = ?", broken)
    # a replay makes a new job; the same key: still one row in the target
    good = s.id["good2"]
    status, h, data = s.d.request("POST", f"/api/v1/jobs/{good}/replay", token=s.ben)
    assert status == 201, data
    r = json.loads(data)
    new = r["new_id"]
    assert h["location"] == f"/api/v1/jobs/{new}" and r["ok"] and new > good
    s.rig.wait_for(lambda: s.rig.q("SELECT state FROM jobs WHERE id = ?", new) ==
                   [("delivered",)], timeout=10, what="the replay delivered")
    assert len(s.rig.target_rows("besucherparkausweis",
                                 f"rk_submission IN ('{good}', '{new}')")) == 1
    assert s.d.json("GET", f"/api/v1/jobs/{new}", s.ben)["replay_of"] == good


# ---- the server's own answers ---------------------------------------------------

def test_unknown_routes_wrong_methods_and_big_bodies(srv):
    s = srv
    fee = s.id["fee"]
    status, _, data = s.d.request("GET", "/api/v1/nothing-here", token=s.anna)
    assert status == 404 and "no such resource" in json.loads(data)["error"]
    status, _, _ = s.d.request("GET", "/nichts/hier", token=s.anna)
    assert status == 404
    status, h, data = s.d.request("GET", f"/api/v1/jobs/{fee}/approve", token=s.anna)
    assert status == 405 and h["allow"] == "POST"
    status, h, _ = s.d.request("DELETE", f"/api/v1/jobs/{fee}", token=s.anna)
    assert status == 405 and h["allow"] == "GET"
    status, h, _ = s.d.request("POST", "/healthz")
    assert status == 405 and h["allow"] == "GET"
    # max_body (64 KiB by default): announced too big, refused before reading
    big = json.dumps({"reason": "x" * 70000}).encode()
    status, _, data = s.d.request("POST", f"/api/v1/jobs/{fee}/reject", token=s.anna,
                                  raw=big, headers={"Content-Type": "application/json"})
    assert status == 413 and "65536" in json.loads(data)["error"]
    # just below the limit is read (and refused for what it says)
    ok = json.dumps({"reason": "x" * 60000, "y": 1}).encode()
    status, _, data = s.d.request("POST", f"/api/v1/jobs/{fee}/reject", token=s.anna, raw=ok)
    assert status == 400 and "unknown member 'y'" in json.loads(data)["error"]
    assert state(s, "fee") == "review"


def test_chunked_body_over_the_limit_is_413(srv):
    c = http.client.HTTPConnection("127.0.0.1", srv.d.port, timeout=20)
    try:
        c.putrequest("POST", f"/api/v1/jobs/{srv.id['fee']}/reject")
        c.putheader("Authorization", "Bearer " + srv.anna)
        c.putheader("Transfer-Encoding", "chunked")
        c.endheaders()
        chunk = b"x" * 16384
        for _ in range(5):
            c.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        c.send(b"0\r\n\r\n")
        r = c.getresponse()
        assert r.status == 413
    finally:
        c.close()
    assert state(srv, "fee") == "review"


# ---- tokens -------------------------------------------------------------------------

def test_tokens_are_stored_hashed_and_take_effect_at_once(srv):
    s = srv
    path = os.path.join(s.rig.base, "tokens")
    lines = open(path).read().splitlines()
    assert lines[:2] == ["anna:" + hashlib.sha256(s.anna.encode()).hexdigest(),
                         "ben.meier:" + hashlib.sha256(s.ben.encode()).hexdigest()]
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    tool = [REKEYCTL, "token"]
    p = subprocess.run(tool + ["add", "anna", "--config", s.rig.config], capture_output=True,
                       text=True)
    assert p.returncode == 1 and "has a token named anna already" in p.stderr
    assert p.stdout == ""
    p = subprocess.run(tool + ["add", "bad name", "--file", path], capture_output=True,
                       text=True)
    assert p.returncode == 2
    tmp = add_token(s.rig, "temp")
    assert s.d.json("GET", "/api/v1/status", tmp)["total"] >= 6  # no restart needed
    p = subprocess.run(tool + ["list", "--file", path], capture_output=True, text=True)
    assert p.stdout.split() == ["anna", "ben.meier", "temp"]
    p = subprocess.run(tool + ["remove", "temp", "--config", s.rig.config],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    time.sleep(0.02)
    assert s.d.request("GET", "/api/v1/status", token=tmp)[0] == 401
    assert s.d.request("GET", "/api/v1/status", token=s.anna)[0] == 200


# ---- settings ------------------------------------------------------------------------

def test_listen_settings_and_a_port_in_use(tmp_path):
    for listen, why in [("localhost:8650", "numeric address"), ("127.0.0.1", "ADDRESS:PORT"),
                        ("127.0.0.1:70000", "ADDRESS:PORT"), ("::1:8650", "ADDRESS:PORT")]:
        rig = api_rig(tmp_path / ("bad" + str(abs(hash(listen)))),
                      http_extra=f"listen = {listen}\n")
        p = subprocess.run([REKEYD, "--config", rig.config, "--once"], capture_output=True,
                           text=True, timeout=30)
        assert p.returncode != 0 and why in p.stderr, (listen, p.stderr)
        assert "rekeyd.ini:" in p.stderr and "listen must be ADDRESS:PORT" in p.stderr
    rig = api_rig(tmp_path / "unknown", http_extra="max_bdy = 10\n")
    p = subprocess.run([REKEYD, "--config", rig.config, "--once"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode != 0 and "unknown setting 'max_bdy' in section [http]" in p.stderr
    # a port someone else holds: rekeyd says so and does not start
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    try:
        port = holder.getsockname()[1]
        rig = api_rig(tmp_path / "busy", http_extra=f"listen = 127.0.0.1:{port}\n")
        p = subprocess.run([REKEYD, "--config", rig.config], capture_output=True, text=True,
                           timeout=30)
        assert p.returncode != 0
        assert f"cannot listen on 127.0.0.1:{port}" in p.stderr, p.stderr
        assert "open handles" not in p.stderr
    finally:
        holder.close()


def test_ipv6_loopback(tmp_path):
    try:
        s6 = socket.socket(socket.AF_INET6)
        s6.bind(("::1", 0))
        s6.close()
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    rig = api_rig(tmp_path / "v6")
    rig.write_config("[http]\nlisten = [::1]:0\n")
    token = add_token(rig, "anna")
    log = open(os.path.join(rig.base, "rekeyd.log"), "w")
    p = subprocess.Popen([REKEYD, "--config", rig.config], stderr=log)
    try:
        port = None
        end = time.time() + 10
        while port is None and time.time() < end:
            m = re.search(r"listening on \[::1\]:(\d+)", open(log.name).read())
            port = int(m.group(1)) if m else time.sleep(0.05)
        assert port, open(log.name).read()
        c = http.client.HTTPConnection("::1", port, timeout=10)
        c.request("GET", "/api/v1/status", headers={"Authorization": "Bearer " + token})
        r = c.getresponse()
        assert r.status == 200 and json.loads(r.read())["total"] == 0
        c.close()
    finally:
        p.terminate()
        p.wait(timeout=30)
        log.close()
