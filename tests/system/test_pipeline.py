"""End to end: the bundled samples go through the real rekeyd into the
real SQLite target, and every outcome is checked in the queue, the
target and the inbox folders."""
import gzip
import os
import re
import signal
import time

from conftest import DATA


def drop_all(rig, expected):
    for rel in expected:
        rig.drop(rel)


def test_every_sample_ends_as_expected(rig, expected):
    drop_all(rig, expected)
    rig.run_once()
    jobs = rig.jobs_by_ref()
    delivered = {}
    for rel, exp in expected.items():
        name = os.path.basename(rel)
        if exp["outcome"] == "error":
            assert name not in jobs, f"{name} should not be stored"
            reason = os.path.join(rig.error, name + ".reason")
            assert os.path.exists(os.path.join(rig.error, name)), name
            assert open(reason).read().strip(), f"{name}: empty reason"
            continue
        assert name in jobs, f"{name} was not taken in"
        j = jobs[name]
        assert j["state"] == exp["outcome"], (name, j, rig.codes(j["id"]))
        assert j["job"] == exp["job"], name
        codes = rig.codes(j["id"])
        for c in exp["codes"]:
            assert c in codes, (name, codes)
        if exp["outcome"] == "delivered":
            delivered.setdefault(exp["job"], []).append(j["id"])
    # the target holds exactly the delivered records, one row each
    for job, ids in delivered.items():
        rows = rig.target_rows(job)
        assert sorted(int(r["rk_submission"]) for r in rows) == sorted(ids), job
    # nothing held or failed reached the target
    total = sum(len(v) for v in delivered.values())
    assert total == sum(1 for e in expected.values() if e["outcome"] == "delivered")
    # the inbox is empty; every stored file is archived
    assert [f for f in os.listdir(rig.inbox) if not f.startswith(".")] == []
    assert rig.claimed() == []
    assert [e for e in os.listdir(os.path.join(rig.inbox, ".claimed"))
            if not e.startswith(".")] == []  # the claim folders went too
    stored = [n for n in (os.path.basename(r) for r in expected)
              if expected_outcome(expected, n) != "error"]
    archived = rig.archived()
    assert sorted(archived) == sorted(stored)
    # each stored file is archived once, byte for byte, under the day of
    # its claim folder (ARCHIVE/YYYY-MM-DD/YYYYMMDDTHHMMSSZ-ID-N/NAME)
    for rel in expected:
        name = os.path.basename(rel)
        if name not in archived:
            continue
        (path,) = archived[name]
        day, folder = path.split(os.sep)[-3:-1]
        assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{12}-\d+", folder), folder
        assert day == f"{folder[:4]}-{folder[4:6]}-{folder[6:8]}", (day, folder)
        with open(path, "rb") as a, open(os.path.join(DATA, rel), "rb") as b:
            assert a.read() == b.read(), name


def expected_outcome(expected, name):
    for rel, e in expected.items():
        if os.path.basename(rel) == name:
            return e["outcome"]
    return None


def test_every_transition_is_an_event(rig, expected):
    drop_all(rig, expected)
    rig.run_once()
    for job_id, state in rig.q("SELECT id, state FROM jobs"):
        ev = rig.q("SELECT from_state, to_state FROM events WHERE job_id = ? ORDER BY id",
                   job_id)
        assert ev[0] == (None, "received")
        # the state is derivable from the trail: chained and ending in it
        for (a, b), (c, d) in zip(ev, ev[1:]):
            assert b == c
        assert ev[-1][1] == state
        if state == "delivered":
            assert [e[1] for e in ev] == ["received", "validated", "mapped", "ready",
                                          "delivering", "delivered"]


def test_mapped_fields_keep_provenance(rig):
    rig.drop("samples/fischereischein-01-erstausstellung.xml")
    rig.run_once()
    (job_id,) = rig.q("SELECT id FROM jobs")[0]
    rows = rig.q("SELECT name, value, source, xpath, node FROM fields WHERE job_id = ?",
                 job_id)
    assert len(rows) >= 8
    for name, value, source, xpath, node in rows:
        assert xpath, name
    named = {r[0]: r for r in rows}
    assert any(n for n in named if "nachname" in n or "familienname" in n)
    # the node path names the element the value came from
    assert any(r[4] and "F60000000227" in r[4] for r in rows)
    # payload is stored compressed with its hash
    size, sha, plen = rig.q("SELECT size, sha256, length(payload) FROM submissions")[0]
    assert len(sha) == 64 and plen < size


def test_redelivery_after_crash_leaves_one_row(rig):
    rig.drop("samples/besucherparkausweis-01-tag.xml")
    rig.run_once()
    (job_id,) = rig.q("SELECT id FROM jobs WHERE state = 'delivered'")[0]
    assert len(rig.target_rows("besucherparkausweis")) == 1
    # simulate a crash after the target committed but before we did
    import sqlite3
    con = sqlite3.connect(rig.db)
    # what a crash after the target's commit leaves: the job delivering,
    # its delivery still pending (both are written in one commit)
    con.execute("UPDATE jobs SET state = 'delivering' WHERE id = ?", (job_id,))
    con.execute("UPDATE deliveries SET state = 'pending' WHERE job_id = ?", (job_id,))
    con.commit()
    con.close()
    rig.run_once()
    assert rig.q("SELECT state FROM jobs WHERE id = ?", job_id) == [("delivered",)]
    assert len(rig.target_rows("besucherparkausweis")) == 1
    reasons = [r[0] for r in rig.q("SELECT reason FROM events WHERE job_id = ?", job_id)]
    assert any("same key" in (r or "") for r in reasons)
    # the connector really ran again: the delivery counts a second attempt
    assert rig.q("SELECT attempts, state FROM deliveries WHERE job_id = ?", job_id) == [
        (2, "delivered")]


def test_duplicate_is_held_with_reference(rig):
    rig.drop("samples/fischereischein-01-erstausstellung.xml")
    rig.run_once()
    rig.drop_bytes("again.xml",
                   open(os.path.join(DATA, "samples/fischereischein-01-erstausstellung.xml"),
                        "rb").read())
    rig.run_once()
    jobs = rig.jobs_by_ref()
    first = jobs["fischereischein-01-erstausstellung.xml"]
    again = jobs["again.xml"]
    assert first["state"] == "delivered"
    assert again["state"] == "review"
    msg = rig.q("SELECT message FROM anomalies WHERE job_id = ? AND code = 'DUPLIKAT'",
                again["id"])
    assert msg and f"Vorgang {first['id']}" in msg[0][0]
    assert len(rig.target_rows("fischereischein")) == 1


def test_bad_files_do_not_disturb_good_ones(rig):
    good = "samples/gewerbeanmeldung-01-einzelunternehmen.xml"
    rig.drop(good)
    rig.drop_bytes("notes.txt", b"hello")
    rig.drop_bytes("bomb.xml.gz", gzip.compress(b"<a>" + b" " * (20 << 20) + b"</a>"))
    rig.drop_bytes("huge.xml", b"<a>" + b"x" * (11 << 20) + b"</a>")
    rig.drop_bytes("cut.xml", b"<?xml version='1.0'?><a><b>")
    rig.run_once()
    jobs = rig.jobs_by_ref()
    assert jobs[os.path.basename(good)]["state"] == "delivered"
    assert jobs["cut.xml"]["state"] == "failed"
    assert rig.codes(jobs["cut.xml"]["id"]) == ["XML_MALFORMED"]
    for name, words in (("notes.txt", "xml"), ("bomb.xml.gz", "decompress"),
                        ("huge.xml", "limit")):
        assert name not in jobs
        reason = open(os.path.join(rig.error, name + ".reason")).read().lower()
        assert words in reason, (name, reason)


def test_sigterm_drains_and_exits_cleanly(rig):
    p = rig.start()
    try:
        for i in range(20):
            data = open(os.path.join(DATA, "samples/besucherparkausweis-01-tag.xml"),
                        "rb").read()
            rig.drop_bytes(f"p{i:02d}.xml", data)
        rig.wait_for(lambda: len(rig.q("SELECT id FROM jobs")) >= 5, what="intake")
    finally:
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert "draining" in err
    # nothing half-done: no job stuck mid-delivery, every stored file left the inbox
    states = [s for (s,) in rig.q("SELECT state FROM jobs")]
    assert "delivering" not in states
    stored = {r for (r,) in rig.q("SELECT source_ref FROM submissions")}
    assert not stored & set(os.listdir(rig.inbox))
    # a second run finishes the rest
    rig.run_once()
    states = [s for (s,) in rig.q("SELECT state FROM jobs")]
    assert len(states) == 20
    assert set(states) <= {"delivered", "review"}


def test_two_daemons_on_one_inbox_never_take_the_same_file(tmp_path):
    from conftest import Rig
    shared = str(tmp_path / "inbox")
    a = Rig(tmp_path / "a", inbox=shared)
    b = Rig(tmp_path / "b", inbox=shared)
    pa, pb = a.start(), b.start()
    try:
        data = open(os.path.join(DATA, "samples/besucherparkausweis-02-woche.xml"),
                    "rb").read()
        for i in range(60):
            a.drop_bytes(f"s{i:03d}.xml", data)
        def taken():
            return len(a.q("SELECT id FROM submissions")) + \
                len(b.q("SELECT id FROM submissions")) >= 60
        a.wait_for(taken, what="both daemons to take all files")
        time.sleep(0.5)
    finally:
        for p in (pa, pb):
            p.send_signal(signal.SIGTERM)
            p.communicate(timeout=30)
    refs_a = {r for (r,) in a.q("SELECT source_ref FROM submissions")}
    refs_b = {r for (r,) in b.q("SELECT source_ref FROM submissions")}
    assert len(refs_a) + len(refs_b) == 60
    assert not refs_a & refs_b


def test_two_daemons_on_one_queue_see_each_others_duplicate_keys(tmp_path):
    """Each rekeyd holds the duplicate keys in memory, read when it starts:
    a key the other daemon commits later is still found (read on from the
    table when SQLite's data_version moves)."""
    from conftest import Rig
    a = Rig(tmp_path / "a")
    b = Rig(tmp_path / "b")
    b.db, b.target = a.db, a.target
    b.write_config()
    pa = a.start()
    a.wait_for(lambda: a.q("PRAGMA user_version")[0][0] > 0, what="the queue")
    pb = b.start()
    sample = os.path.join(DATA, "samples/fischereischein-01-erstausstellung.xml")

    def watching(rig):  # the inbox is started after the keys were read
        claimed = os.path.join(rig.inbox, ".claimed")
        return os.path.isdir(claimed) and any(
            f.startswith(".owner.") for f in os.listdir(claimed))
    try:
        a.wait_for(lambda: watching(a) and watching(b), what="both daemons watching")
        a.drop(sample)
        a.wait_for(lambda: a.q("SELECT state FROM jobs") == [("delivered",)],
                   what="the first application delivered by daemon a")
        b.drop_bytes("again.xml", open(sample, "rb").read())
        a.wait_for(lambda: ("review",) in a.q("SELECT state FROM jobs"),
                   what="the second one held by daemon b")
    finally:
        for p in (pa, pb):
            p.send_signal(signal.SIGTERM)
            p.communicate(timeout=30)
    jobs = a.jobs_by_ref()
    first, again = jobs["fischereischein-01-erstausstellung.xml"], jobs["again.xml"]
    assert (first["state"], again["state"]) == ("delivered", "review")
    assert a.q("SELECT source FROM submissions s JOIN jobs j ON j.submission_id = s.id"
               " WHERE j.id = ?", again["id"])[0][0] == f"dir:{b.inbox}"
    msg = a.q("SELECT message FROM anomalies WHERE job_id = ? AND code = 'DUPLIKAT'",
              again["id"])
    assert msg and f"Vorgang {first['id']}" in msg[0][0]
    assert len(a.target_rows("fischereischein")) == 1


def test_delivery_retries_then_dead_letter(rig):
    rig.write_config("[delivery]\nmax_attempts = 2\nbackoff_initial_ms = 10\n"
                     "backoff_max_ms = 20\n")
    # the target lives in a folder that does not exist: the connector cannot open
    with open(rig.config) as f:
        cfg = f.read().replace(rig.target, os.path.join(rig.base, "missing", "t.db"))
    with open(rig.config, "w") as f:
        f.write(cfg)
    rig.drop("samples/besucherparkausweis-01-tag.xml")
    p = rig.start()
    try:
        rig.wait_for(lambda: rig.q("SELECT state FROM jobs") == [("failed",)],
                     what="dead letter")
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=30)
    attempts, err = rig.q("SELECT attempts, last_error FROM jobs")[0]
    assert attempts == 2
    assert err and "connector" in err
    trail = [r[0] for r in rig.q("SELECT to_state FROM events ORDER BY id")]
    assert trail.count("retry_wait") == 1 and trail[-1] == "failed"
