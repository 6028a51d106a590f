"""The FIT-Connect receiving side ([fitconnect NAME]) against a fake delivery
service on 127.0.0.1 (fitconnect_server.py, jwcrypto): the real rekeyd
lists, fetches, decrypts and checks each submission, stores it, and posts
a PS512-signed accept-submission event only once the job is delivered, or
a reject-submission for a failed check or a reviewer's rejection.

Keys are made at test start (2048 bits, for speed): the private halves go
to rekeyd, the public ones to the fake server."""
import gzip
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import DATA, REKEYD, Rig
from fitconnect_server import ACCEPT, PROBLEM, REJECT, FitConnectServer, make_keys

SECRET = "fc-s3cret-ABC"


@pytest.fixture(scope="module")
def keys():
    return make_keys(2048)


def write_keys(base, keys):
    enc, sig = keys
    paths = []
    for name, k in (("enc.jwk.json", enc), ("sig.jwk.json", sig)):
        p = os.path.join(str(base), name)
        with open(p, "w") as f:
            f.write(k.export_private())
        os.chmod(p, 0o600)
        paths.append(p)
    return paths


def samples(expected):
    """relative sample path -> document bytes (.gz served decompressed)."""
    out = {}
    for rel in expected:
        if not rel.startswith("samples/"):
            continue
        with open(os.path.join(DATA, rel), "rb") as f:
            data = f.read()
        out[rel] = gzip.decompress(data) if rel.endswith(".gz") else data
    return out


def fc_rows(rig):
    return dict(rig.q("SELECT source_ref, count(*) FROM submissions WHERE source = 'fitconnect:test'"
                      " GROUP BY source_ref"))


def start_rig(tmp_path, keys, **cfg):
    srv = FitConnectServer(*keys, client_secret=SECRET).__enter__()
    enc, sig = write_keys(tmp_path, keys)
    rig = Rig(tmp_path, extra=srv.config(enc, sig, **cfg))
    srv.db = rig.db
    return srv, rig


def check_set(srv, ev, sid):
    """The event is a valid PS512 SET from our destination about sid."""
    assert ev["valid"], ev["error"]
    assert ev["content_type"] == "application/jose"
    h, p = ev["header"], ev["payload"]
    assert h["typ"] == "secevent+jwt" and h["alg"] == "PS512" and h["kid"] == "rk-fc-sig"
    s = srv.subs[sid]
    assert p["iss"] == srv.destination_id
    assert p["sub"] == f"submission:{sid}"
    assert p["txn"] == f"case:{s.case_id}"
    assert ev["case"] == s.case_id
    assert abs(p["iat"] - time.time()) < 120
    assert len(p["jti"]) == 36
    return p


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "open handles" not in err, err
    return err


def test_samples_accepted_once_after_delivery_and_review_rejects(tmp_path, keys, expected):
    """Every sample goes its way (delivered or review as expected.json
    says); each delivered one is accepted exactly once, after delivery,
    with the tags of the JWEs the server sent; a reviewer's rejection is
    sent as reject-submission without the Begruendung; the token is
    renewed before it runs out; a submission listed twice is stored once."""
    srv, rig = start_rig(tmp_path, keys)
    srv.token_ttl = 2
    docs = samples(expected)
    later = {rel for rel in docs if expected[rel].get("after")}
    sids = {}
    for rel in docs:
        if rel not in later:
            atts = ()
            if rel.endswith("fischereischein-01-erstausstellung.xml"):
                atts = [("foto.jpg", "image/jpeg", os.urandom(3000)),
                        ("vollmacht.pdf", "application/pdf", b"%PDF-1.4 test\n")]
            sids[rel] = srv.add(docs[rel], attachments=atts)
    dup = sids["samples/besucherparkausweis-02-woche.xml"]
    srv.dup_ids = {dup}
    proc = rig.start()
    try:
        first = [sids[r] for r in sids]
        rig.wait_for(lambda: all(srv.job_state(s) is not None for s in first), 30,
                     "first submissions stored")
        for rel in later:                       # the duplicate comes after its original
            sids[rel] = srv.add(docs[rel])
        delivered = [sids[r] for r in docs if expected[r]["outcome"] == "delivered"]
        review = [sids[r] for r in docs if expected[r]["outcome"] == "review"]
        rig.wait_for(lambda: all(srv.done.get(s) == "accept" for s in delivered), 30,
                     "accept events")
        rig.wait_for(lambda: all(srv.job_state(s) == "review" for s in review), 30,
                     "review")
        # a clerk rejects one held submission
        held = sids["samples/fischereischein-10-mindestalter.xml"]
        (jid,) = rig.q("SELECT j.id FROM jobs j JOIN submissions s ON s.id = j.submission_id"
                       " WHERE s.source_ref = ?", held)[0]
        rig.ctl("review", "reject", str(jid), "--reason", "Antragsteller Max Muster ist 13")
        rig.wait_for(lambda: srv.done.get(held) == "reject", 20, "reject event")
        # tokens of 2 s were renewed while running: never used expired
        rig.wait_for(lambda: srv.token_requests >= 3, 10, "token renewals")
        time.sleep(0.5)                         # anything sent twice would show now
    finally:
        err = stop(proc)
        srv.__exit__()
    # stored once each, as the engine parsed them
    assert fc_rows(rig) == {s: 1 for s in sids.values()}
    jobs = rig.jobs_by_ref()
    for rel, sid in sids.items():
        exp = expected[rel]
        j = jobs[sid]
        state = "rejected" if sid == held else exp["outcome"]
        assert (j["job"], j["state"]) == (exp["job"], state), (rel, j)
        for c in exp["codes"]:
            assert c in rig.codes(j["id"]), (rel, c)
    # fetched once each, though one was listed twice
    assert srv.fetches == {s: 1 for s in sids.values()}
    # each delivered submission: exactly one accept, sent after delivery,
    # with the authentication tags of what the server sent
    for sid in delivered:
        evs = srv.events_for(sid)
        assert len(evs) == 1, (sid, evs)
        ev = evs[0]
        assert ev["kind"] == "accept" and ev["answer"] == 202
        assert ev["state"] == "delivered", ev
        p = check_set(srv, ev, sid)
        tags = p["events"][ACCEPT]["authenticationTags"]
        want = srv.subs[sid].tags()
        assert tags == want, (sid, tags, want)
    # the one with attachments: both checked, tagged, and stored with it
    att_sid = sids["samples/fischereischein-01-erstausstellung.xml"]
    assert len(srv.events_for(att_sid)[0]["payload"]["events"][ACCEPT]
               ["authenticationTags"]["attachments"]) == 2
    rows = rig.q("SELECT a.name, a.media_type, a.size FROM attachments a JOIN submissions s"
                 " ON s.id = a.submission_id WHERE s.source_ref = ? ORDER BY a.name", att_sid)
    assert rows == [("foto.jpg", "image/jpeg", 3000), ("vollmacht.pdf", "application/pdf", 14)]
    # held ones: no event; the rejected one: one reject, without the Begruendung
    for sid in review:
        if sid != held:
            assert srv.events_for(sid) == []
    (ev,) = srv.events_for(held)
    p = check_set(srv, ev, held)
    probs = p["events"][REJECT]["problems"]
    assert [(x["type"], x["instance"]) for x in probs] == [
        ("urn:rekey:problem:abgelehnt", "submission")]
    assert "Muster" not in json.dumps(p)
    assert ev["state"] == "rejected"
    assert srv.expired_uses == 0
    # no secret, token or plaintext in the log
    assert SECRET not in err
    for tok in srv.tokens:
        assert tok not in err
    assert "Muster" not in err
    assert "accept-submission sent" in err


def test_failed_checks_are_rejected_and_not_stored(tmp_path, keys, expected):
    """A hash mismatch or an undecryptable part: a reject with the right
    FIT-Connect problem, nothing stored.  A JWE for another key id is not
    the sender's proven fault: nothing sent, nothing stored, an error
    names both key ids.  JSON data is stored and held for review."""
    srv, rig = start_rig(tmp_path, keys)
    xml = samples(expected)["samples/besucherparkausweis-01-tag.xml"]
    pdf = [("anlage.pdf", "application/pdf", b"%PDF-1.4 x\n")]
    cases = {
        "hash-data": (srv.add(xml, fault="hash-data"), "hash-mismatch", "data"),
        "hash-attachment": (srv.add(xml, attachments=pdf, fault="hash-attachment"),
                            "hash-mismatch", "attachment:"),
        "break-data": (srv.add(xml, fault="break-data"), "encryption-issue", "data"),
        "truncate-data": (srv.add(xml, fault="truncate-data"), "encryption-issue", "data"),
        "break-metadata": (srv.add(xml, fault="break-metadata"), "encryption-issue",
                           "metadata"),
        "break-attachment": (srv.add(xml, attachments=pdf, fault="break-attachment"),
                             "encryption-issue", "attachment:"),
    }
    wrong = srv.add(xml, fault="wrong-key")
    jdoc = json.dumps({"antrag": {"art": "Besucherparkausweis"}}).encode()
    js = srv.add(jdoc, mime="application/json")
    good = srv.add(xml, attachments=pdf)
    try:
        p = rig.run_once(timeout=60)
    finally:
        srv.__exit__()
    for name, (sid, ptype, inst) in cases.items():
        evs = srv.events_for(sid)
        assert len(evs) == 1, (name, evs)
        pl = check_set(srv, evs[0], sid)
        probs = pl["events"][REJECT]["problems"]
        assert len(probs) == 1, (name, probs)
        assert probs[0]["type"] == PROBLEM + ptype, (name, probs)
        want_inst = inst + srv.subs[sid].attachments[0][0] if inst.endswith(":") else inst
        assert probs[0]["instance"] == want_inst, (name, probs)
        assert probs[0]["title"] and probs[0]["detail"]
        assert evs[0]["state"] is None          # not stored
        assert f"submission {sid}" in p.stderr and "it is rejected" in p.stderr
    # another key id: left alone, with both ids named
    assert srv.events_for(wrong) == []
    assert "'someone-else'" in p.stderr and "'rk-fc-enc'" in p.stderr
    # JSON data: stored as it came, held with DATEN_KEIN_XML, no event
    jobs = rig.jobs_by_ref()
    assert set(jobs) == {js, good}
    assert jobs[js]["state"] == "review" and rig.codes(jobs[js]["id"]) == ["DATEN_KEIN_XML"]
    assert rig.q("SELECT media_type, size FROM submissions WHERE source_ref = ?", js) == [
        ("application/json", len(jdoc))]
    assert srv.events_for(js) == []
    # the good one went through and was accepted
    assert jobs[good]["state"] == "delivered"
    (ev,) = srv.events_for(good)
    assert ev["kind"] == "accept" and ev["state"] == "delivered"
    assert check_set(srv, ev, good)["events"][ACCEPT]["authenticationTags"] == \
        srv.subs[good].tags()


def test_accept_lost_to_a_stop_is_sent_after_restart(tmp_path, keys, expected):
    """The delivery service refuses events for a while; rekeyd is stopped
    after the delivery but before the accept went through.  After the
    restart the submission is fetched again, stored once (not delivered
    again) and accepted exactly once."""
    srv, rig = start_rig(tmp_path, keys)
    xml = samples(expected)["samples/fischereischein-02-erstausstellung.xml"]
    sid = srv.add(xml)
    srv.events_fail = 1000
    try:
        proc = rig.start()
        try:
            rig.wait_for(lambda: srv.job_state(sid) == "delivered", 20, "delivery")
            rig.wait_for(lambda: len(srv.events) >= 2, 10, "refused events")
        finally:
            err1 = stop(proc)
        assert sid not in srv.done
        (attempts, last_error, sent) = rig.q(
            "SELECT attempts, last_error, sent_at FROM notices")[0]
        assert attempts >= 1 and "503" in last_error and sent is None
        with srv.lock:
            srv.events_fail = 0
        p = rig.run_once(timeout=60)
    finally:
        srv.__exit__()
    assert "accept-submission failed (HTTP 503)" in err1
    assert srv.done == {sid: "accept"}
    ok = [e for e in srv.events if e["answer"] == 202]
    assert len(ok) == 1 and ok[0]["state"] == "delivered"
    assert check_set(srv, ok[0], sid)["events"][ACCEPT]["authenticationTags"] == \
        srv.subs[sid].tags()
    assert srv.fetches[sid] == 2                # once per run
    assert fc_rows(rig) == {sid: 1}
    assert len(rig.target_rows("fischereischein")) == 1
    assert rig.q("SELECT count(*) FROM notices WHERE sent_at IS NULL") == [(0,)]
    assert "accept-submission sent" in p.stderr


def test_bad_settings_stop_the_start(tmp_path, keys):
    """A missing setting, a key file that cannot be read and two key files
    mixed up are refused at start, naming the setting."""
    srv = FitConnectServer(*keys)
    enc, sig = write_keys(tmp_path, keys)
    srv.url = "http://127.0.0.1:9"
    cfg = srv.config(enc, sig)
    rig = Rig(tmp_path, extra=cfg.replace(f"destination_id = {srv.destination_id}\n", ""))
    p = subprocess.run([REKEYD, "--config", rig.config, "--once"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode != 0
    assert "[fitconnect test] destination_id (the UUID of the destination) is required" \
        in p.stderr
    rig.write_config(cfg.replace(enc, sig + ".missing"))
    p = subprocess.run([REKEYD, "--config", rig.config, "--once"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode != 0
    assert "[fitconnect test]: decryption_key" in p.stderr, p.stderr
    # the encryption key cannot sign: its JWK alg says RSA-OAEP-256
    rig.write_config(cfg.replace(f"signing_key = {sig}", f"signing_key = {enc}"))
    p = subprocess.run([REKEYD, "--config", rig.config, "--once"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode != 0
    assert f"signing_key {enc} is a key for alg RSA-OAEP-256" in p.stderr, p.stderr
