"""An operator's day with rekeyctl: retry failed deliveries, replay after a
job change, purge after the retention time, deadlines that pass (a fake
clock: deadline_at moved into the past in the database), the audit trail
as CSV and JSON, and finding submissions in a large queue."""
import json
import os
import signal
import sqlite3
import subprocess
import time

from conftest import REKEYCTL, Rig
from test_review import (GOOD_BPA, GOOD_FS, HELD_AGE, HELD_FEE, HELD_PAY, by_ref, ctl,
                         events_csv, job_copy, n_events, open_codes, state, target_by_job,
                         with_review)

DAY_MS = 86400000


def now_ms():
    return int(time.time() * 1000)


# ---- retry ---------------------------------------------------------------------

def failing_rig(tmp_path):
    """A rig whose target folder does not exist yet: deliveries fail at
    once (one attempt), until the folder is made."""
    rig = Rig(tmp_path / "run", extra="[delivery]\nmax_attempts = 1\n")
    rig.target = str(tmp_path / "later" / "fachverfahren.db")
    rig.write_config("[delivery]\nmax_attempts = 1\n")
    return rig


def test_retry_one_and_all_failed(tmp_path):
    rig = failing_rig(tmp_path)
    rig.drop(GOOD_BPA, "samples/besucherparkausweis-02-woche.xml",
             "samples/besucherparkausweis-03-monat.xml", GOOD_FS)
    rig.run_once()
    ids = {r: v["id"] for r, v in rig.jobs_by_ref().items()}
    assert {state(rig, i) for i in ids.values()} == {"failed"}
    os.makedirs(os.path.dirname(rig.target))

    one = ids[os.path.basename(GOOD_FS)]
    r = ctl(rig, "retry", str(one), "--as", "olaf")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"Antrag {one} wird erneut übertragen.\n"
    assert state(rig, one) == "ready"
    assert rig.q("SELECT attempts FROM jobs WHERE id = ?", one) == [(0,)]
    assert rig.q("SELECT actor, from_state, to_state FROM events WHERE job_id = ?"
                 " ORDER BY id DESC LIMIT 1", one) == [("olaf", "failed", "ready")]

    r = ctl(rig, "retry", "--all-failed")
    assert r.returncode == 2 and "--all-failed needs the job: --job JOB" in r.stderr
    r = ctl(rig, "retry", "--all-failed", "--job", "besucherparkausweis", "--as", "olaf")
    assert r.returncode == 0, r.stderr
    bpa = sorted(v for k, v in ids.items() if k.startswith("besucherparkausweis"))
    assert r.stdout.startswith("3 fehlgeschlagene Anträge der Antragsart besucherparkausweis "
                               "werden erneut versucht (")
    for i in bpa:
        assert str(i) in r.stdout
        assert state(rig, i) == "ready"
    # nothing left to retry: says so, changes nothing
    r = ctl(rig, "retry", "--all-failed", "--job", "besucherparkausweis")
    assert r.returncode == 0
    assert r.stdout == "Keine fehlgeschlagenen Anträge der Antragsart besucherparkausweis.\n"
    r = ctl(rig, "retry", "--all-failed", "--job", "besucherparkausweis", "--json")
    assert json.loads(r.stdout) == {"ok": True, "job": "besucherparkausweis", "retried": [],
                                    "refused": []}

    rig.run_once()
    assert {state(rig, i) for i in ids.values()} == {"delivered"}
    assert len(rig.target_rows("besucherparkausweis")) == 3
    assert len(rig.target_rows("fischereischein")) == 1


def test_retry_against_a_running_daemon(tmp_path):
    rig = failing_rig(tmp_path)
    rig.drop(GOOD_BPA)
    p = rig.start()
    try:
        rig.wait_for(lambda: rig.q("SELECT state FROM jobs") == [("failed",)],
                     what="the delivery failed")
        (job_id,), = rig.q("SELECT id FROM jobs")
        os.makedirs(os.path.dirname(rig.target))
        r = ctl(rig, "retry", str(job_id))
        assert r.returncode == 0, r.stderr
        rig.wait_for(lambda: state(rig, job_id) == "delivered", timeout=10,
                     what="the retried job delivered")
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=30)
    assert len(rig.target_rows("besucherparkausweis")) == 1


# ---- replay --------------------------------------------------------------------

def upper_surname(text):
    text = text.replace('version="1"', 'version="2"', 1)
    return text.replace('from="fs:Antragsteller/fs:F60000000227"><trim/></field>',
                        'from="fs:Antragsteller/fs:F60000000227"><trim/><upper/></field>')


def test_replay_after_a_job_change_updates_the_target_row(tmp_path):
    jobs = job_copy(tmp_path, "fischereischein", None)  # as shipped, for now
    rig = Rig(tmp_path / "run", jobs=str(jobs))
    rig.drop(GOOD_FS)
    rig.run_once()
    orig = by_ref(rig, GOOD_FS)
    assert state(rig, orig) == "delivered"
    rows = rig.target_rows("fischereischein")
    assert len(rows) == 1 and rows[0]["nachname"] == "Brandt"

    # the job changes: surnames in capitals from now on (version 2)
    job_copy(tmp_path, "fischereischein", upper_surname)
    r = ctl(rig, "replay", str(orig), "--as", "olaf")
    assert r.returncode == 0, r.stderr
    (new,), = rig.q("SELECT id FROM jobs WHERE replay_of = ?", orig)
    assert r.stdout == f"Antrag {orig} wird als Antrag {new} erneut verarbeitet.\n"
    assert state(rig, new) == "received"
    rig.run_once()
    assert state(rig, new) == "delivered" and state(rig, orig) == "delivered"
    assert rig.q("SELECT job_version FROM jobs WHERE id = ?", new) == [(2,)]
    rows = rig.target_rows("fischereischein")
    assert len(rows) == 1, rows  # updated, not duplicated
    assert rows[0]["nachname"] == "BRANDT"
    # both jobs delivered with the same key
    keys = rig.q("SELECT job_id, idempotency_key FROM deliveries ORDER BY job_id")
    assert len(keys) == 2 and keys[0][1] == keys[1][1]
    ev = [(int(e["job_id"]), e["actor"], e["reason"]) for e in events_csv(rig)
          if e["actor"] == "olaf"]
    assert (new, "olaf", f"replay of job {orig}") in ev
    assert (orig, "olaf", f"replayed as job {new}") in ev
    out = ctl(rig, "show", str(new)).stdout
    assert f"Wiederholung von         Antrag {orig}" in out or \
        f"Antrag {orig}" in next(l for l in out.splitlines() if "Wiederholung von" in l)


def test_replay_with_a_new_key_must_be_confirmed(rig):
    rig.drop(GOOD_BPA)
    rig.run_once()
    orig = by_ref(rig, GOOD_BPA)
    jobs_before = rig.q("SELECT count(*) FROM jobs")[0][0]
    # no terminal to ask on: refused, with the way out
    r = ctl(rig, "replay", str(orig), "--new-key")
    assert r.returncode == 1
    assert "confirm it with --yes" in r.stderr
    assert rig.q("SELECT count(*) FROM jobs")[0][0] == jobs_before
    r = ctl(rig, "replay", str(orig), "--yes")
    assert r.returncode == 2 and "--yes confirms --new-key" in r.stderr
    r = ctl(rig, "replay", str(orig), "--new-key", "--yes", "--json")
    assert r.returncode == 0, r.stderr
    o = json.loads(r.stdout)
    assert o["ok"] is True and "zweiten Datensatz" in o["message"]
    new = o["new_id"]
    rig.run_once()
    assert state(rig, new) == "delivered"
    assert len(rig.target_rows("besucherparkausweis")) == 2  # what --new-key is for


def test_replay_asks_on_a_terminal(rig):
    import pty
    rig.drop(GOOD_FS)
    rig.run_once()
    orig = by_ref(rig, GOOD_FS)

    def on_tty(answer):
        master, slave = pty.openpty()
        p = subprocess.Popen([REKEYCTL, "--config", rig.config, "replay", str(orig),
                              "--new-key"], stdin=slave, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        os.close(slave)
        os.write(master, answer.encode() + b"\n")
        out, err = p.communicate(timeout=30)
        os.close(master)
        return p.returncode, out, err

    rc, out, err = on_tty("n")
    assert rc == 1
    assert f"Antrag {orig} mit neuem Schlüssel wiederholen?" in err and "[j/N]" in err
    assert "Abgebrochen" in err
    assert rig.q("SELECT count(*) FROM jobs WHERE replay_of = ?", orig) == [(0,)]
    rc, out, err = on_tty("j")
    assert rc == 0, err
    assert rig.q("SELECT count(*) FROM jobs WHERE replay_of = ?", orig) == [(1,)]


def test_replay_refuses_a_job_in_progress(rig):
    rig.drop(GOOD_FS)
    rig.run_once()
    orig = by_ref(rig, GOOD_FS)
    ctl(rig, "replay", str(orig))
    (new,), = rig.q("SELECT id FROM jobs WHERE replay_of = ?", orig)
    r = ctl(rig, "replay", str(new))  # still received: not yet processed
    assert r.returncode == 1 and "noch in Bearbeitung" in r.stderr


# ---- purge ---------------------------------------------------------------------

def test_purge_removes_personal_data_and_keeps_the_trail(rig):
    rig.drop(GOOD_BPA, GOOD_FS, HELD_AGE, HELD_PAY, HELD_FEE)
    rig.run_once()
    good, fs, age, pay, fee = (by_ref(rig, x) for x in (GOOD_BPA, GOOD_FS, HELD_AGE, HELD_PAY,
                                                         HELD_FEE))
    assert ctl(rig, "review", "set", str(age), "geburtsdatum", "2001-09-17",
               "--as", "anna").returncode == 0
    assert ctl(rig, "review", "approve", str(age), "--as", "anna").returncode == 0
    assert ctl(rig, "review", "reject", str(pay), "--reason", "Zahlung fehlt, Frau Muster",
               "--as", "anna").returncode == 0
    rig.run_once()
    assert state(rig, age) == "delivered"
    # four months pass for three of them (good, age, pay); fs is recent; fee is still open
    old = "2026-01-05T10:00:00.000Z"
    con = sqlite3.connect(rig.db)
    con.execute("UPDATE jobs SET updated_at = ? WHERE id IN (?, ?, ?)", (old, good, age, pay))
    con.execute("UPDATE jobs SET updated_at = ? WHERE id = ?", (old, fee))  # open: kept
    con.commit()
    con.close()
    events_before = n_events(rig)
    fields_old = rig.q("SELECT count(*) FROM fields WHERE job_id IN (?, ?, ?)", good, age, pay)[0][0]
    assert fields_old > 0

    r = ctl(rig, "purge", "--older-than", "90d", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    dry = json.loads(r.stdout)
    assert dry["dry_run"] is True and dry["jobs"] == 3 and dry["payloads"] == 3
    assert dry["fields"] == fields_old and dry["corrections"] == 1
    assert rig.q("SELECT count(*) FROM submissions WHERE payload IS NULL") == [(0,)]
    assert n_events(rig) == events_before
    r = ctl(rig, "purge", "--older-than", "90d", "--dry-run")
    assert r.stdout.startswith("Löschung nach Aufbewahrungsfrist – Probelauf: nichts wurde "
                               "gelöscht.\n")
    assert "Würde löschen:\n" in r.stdout

    r = ctl(rig, "purge", "--older-than", "90d", "--as", "olaf")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("Löschung nach Aufbewahrungsfrist")
    table = {l.rsplit(None, 1)[0].strip(): int(l.rsplit(None, 1)[1]) for l in lines
             if l.startswith("  ") and l.strip()[-1:].isdigit()}
    assert table == {"Anträge": 3, "Dokumente": 3, "übernommene Werte": fields_old,
                     "Korrekturen": 1, "Meldungen": dry["anomalies"]}
    assert "Der Verlauf (Protokoll) bleibt erhalten." in r.stdout

    # read the database directly: the personal data of the old jobs is gone
    for j in (good, age, pay):
        assert rig.q("SELECT s.payload IS NULL FROM jobs j JOIN submissions s"
                     " ON s.id = j.submission_id WHERE j.id = ?", j) == [(1,)]
        assert rig.q("SELECT count(*) FROM fields WHERE job_id = ?", j) == [(0,)]
        assert rig.q("SELECT count(*) FROM corrections WHERE job_id = ?", j) == [(0,)]
        assert rig.q("SELECT count(*) FROM anomalies WHERE job_id = ? AND message <> ''",
                     j) == [(0,)]
    assert rig.q("SELECT code FROM anomalies WHERE job_id = ?", pay) == [("ZAHLUNG_OFFEN",),
                                                                       ("ABGELEHNT",)]
    # the recent and the open ones are untouched
    for j in (fs, fee):
        assert rig.q("SELECT s.payload IS NOT NULL FROM jobs j JOIN submissions s"
                     " ON s.id = j.submission_id WHERE j.id = ?", j) == [(1,)]
        assert rig.q("SELECT count(*) FROM fields WHERE job_id = ?", j)[0][0] > 0
    assert open_codes(rig, fee) == ["GEBUEHR_FALSCH"]
    # the trail stays, plus one event per purged job
    assert n_events(rig) == events_before + 3
    ev = events_csv(rig)
    assert {int(e["job_id"]) for e in ev if e["reason"] == "purged after the retention time"} \
        == {good, age, pay}
    assert any(int(e["job_id"]) == age and e["actor"] == "anna" and e["to_state"] == "ready"
               for e in ev)
    assert "Muster" not in "".join(e["reason"] for e in ev)
    out = ctl(rig, "show", str(good)).stdout
    assert "(nach Aufbewahrungsfrist gelöscht)" in out
    # a second purge finds nothing more
    again = json.loads(ctl(rig, "purge", "--older-than", "90d", "--json").stdout)
    assert again["jobs"] == 0


def test_purge_needs_an_age(rig):
    rig.run_once()
    r = ctl(rig, "purge")
    assert r.returncode == 2 and "--older-than AGE" in r.stderr
    r = ctl(rig, "purge", "--older-than", "neunzig Tage")
    assert r.returncode == 2 and "like 90d" in r.stderr


# ---- deadlines -------------------------------------------------------------------

def test_deadlines_turn_overdue(tmp_path):
    jobs = job_copy(tmp_path, "fischereischein",
                    with_review('deadline="3d" reference="antragsnummer"'))
    rig = Rig(tmp_path / "run", jobs=str(jobs))
    rig.drop(HELD_AGE, GOOD_FS, HELD_FEE)
    rig.run_once()
    age, fee = by_ref(rig, HELD_AGE), by_ref(rig, HELD_FEE)
    (deadline,), = rig.q("SELECT deadline_at FROM jobs WHERE id = ?", age)
    assert abs(deadline - (now_ms() + 3 * DAY_MS)) < 60000
    assert rig.q("SELECT deadline_at FROM jobs WHERE id = ?", fee) == [(None,)]  # no deadline

    # not yet overdue
    st = ctl(rig, "status")
    assert not st.stdout.startswith("Frist überschritten")
    assert json.loads(ctl(rig, "status", "--json").stdout)["overdue"] == []
    assert ctl(rig, "review", "list", "--overdue").stdout == \
        "Keine Anträge mit überschrittener Frist.\n"

    # the fake clock: three days and a minute later
    con = sqlite3.connect(rig.db)
    con.execute("UPDATE jobs SET deadline_at = ? WHERE id = ?", (now_ms() - 60000, age))
    con.commit()
    con.close()

    st = ctl(rig, "status").stdout.splitlines()
    assert st[0] == "Frist überschritten: 1"
    assert st[1].startswith(f"  Anträge {age} ")
    assert json.loads(ctl(rig, "status", "--json").stdout)["overdue"] == [age]
    out = ctl(rig, "review", "list").stdout
    rows = [l for l in out.splitlines() if l.strip()[:1].isdigit()]
    assert rows[0].split()[0] == str(age)  # overdue first
    assert "Frist überschritten" in rows[0] and "FS-2026-004220" in rows[0]
    assert "Frist überschritten" not in rows[1]
    assert out.startswith("Zur Klärung: 2, davon Frist überschritten: 1\n")
    out = ctl(rig, "review", "list", "--overdue").stdout
    assert out.startswith("Frist überschritten: 1\n")
    listed = json.loads(ctl(rig, "list", "--overdue", "--json").stdout)
    assert [x["id"] for x in listed] == [age] and listed[0]["overdue"] is True
    show = ctl(rig, "review", "show", str(age)).stdout
    assert "– Frist überschritten" in show and "FS-2026-004220" in show

    # the daemon warns once, with the id and no personal data
    p = rig.start()
    try:
        rig.wait_for(lambda: rig.q("SELECT overdue_warned_at IS NOT NULL FROM jobs"
                                   " WHERE id = ?", age) == [(1,)], timeout=15,
                     what="the overdue warning")
    finally:
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
    warn = [l for l in err.splitlines() if "Bearbeitungsfrist" in l]
    assert len(warn) == 1 and f"job {age}" in warn[0]
    assert "Hartmann" not in err

    # decided: no longer overdue
    assert ctl(rig, "review", "reject", str(age), "--reason", "zu jung").returncode == 0
    assert not ctl(rig, "status").stdout.startswith("Frist überschritten")


# ---- the audit trail ---------------------------------------------------------------

def test_events_csv_and_json(rig):
    rig.drop(GOOD_BPA, HELD_PAY)
    rig.run_once()
    good, pay = by_ref(rig, GOOD_BPA), by_ref(rig, HELD_PAY)
    assert ctl(rig, "review", "reject", str(pay), "--reason", "x",
               "--as", "Müller, Anna").returncode == 0
    ev = events_csv(rig)
    assert len(ev) == n_events(rig)
    assert [int(e["id"]) for e in ev] == sorted(int(e["id"]) for e in ev)
    rej = [e for e in ev if e["to_state"] == "rejected"]
    assert len(rej) == 1 and rej[0]["actor"] == "Müller, Anna"  # quoted, RFC 4180
    assert int(rej[0]["job_id"]) == pay and rej[0]["job"] == "besucherparkausweis"
    delivered = [e for e in ev if e["to_state"] == "delivered"]
    assert delivered[0]["reason"] == "sqlite: delivered, target id 1"
    assert delivered[0]["from_state"] == "delivering"
    raw = ctl(rig, "events").stdout  # csv is the default
    assert raw.startswith("id,job_id,job,at,actor,from_state,to_state,reason\n")
    assert '"Müller, Anna"' in raw

    js = json.loads(ctl(rig, "events", "--format", "json").stdout)
    assert [e["id"] for e in js] == [int(e["id"]) for e in ev]
    assert js[-1]["actor"] == "Müller, Anna" and js[-1]["to_state"] == "rejected"
    assert json.loads(ctl(rig, "events", "--json", "--job", "fischereischein").stdout) == []
    assert events_csv(rig, "--since", "2999-01-01") == []
    assert len(events_csv(rig, "--since", "1d")) == len(ev)
    assert {e["job_id"] for e in events_csv(rig, "--job", "besucherparkausweis")} == \
        {str(good), str(pay)}
    r = ctl(rig, "events", "--format", "xml")
    assert r.returncode == 2 and "--format is csv or json" in r.stderr


def test_a_long_trail_streams_in_pages(rig):
    rig.drop(GOOD_BPA)
    rig.run_once()
    (job_id,), = rig.q("SELECT id FROM jobs")
    con = sqlite3.connect(rig.db)
    con.executemany("INSERT INTO events(job_id, at, actor, from_state, to_state, reason)"
                    " VALUES (?, ?, 'test', 'delivered', 'delivered', ?)",
                    [(job_id, "2026-11-26T00:00:00.000Z", f"note {i}, page test")
                     for i in range(2600)])
    con.commit()
    con.close()
    total = n_events(rig)
    ev = events_csv(rig)
    assert len(ev) == total
    assert len({e["id"] for e in ev}) == total  # no event twice across pages
    assert sum(1 for e in ev if e["reason"].endswith(", page test")) == 2600
    js = json.loads(ctl(rig, "events", "--format", "json").stdout)
    assert len(js) == total


# ---- finding things ----------------------------------------------------------------

def test_list_filters_and_pages(tmp_path):
    jobs = job_copy(tmp_path, "fischereischein", with_review('reference="antragsnummer"'))
    rig = Rig(tmp_path / "run", jobs=str(jobs))
    samples = [GOOD_BPA, "samples/besucherparkausweis-02-woche.xml",
               "samples/besucherparkausweis-03-monat.xml", GOOD_FS,
               "samples/fischereischein-02-erstausstellung.xml", HELD_AGE, HELD_FEE, HELD_PAY]
    rig.drop(*samples)
    rig.run_once()
    ids = {k: v["id"] for k, v in rig.jobs_by_ref().items()}

    def lj(*args):
        r = ctl(rig, "list", "--json", *args)
        assert r.returncode == 0, r.stderr
        return [x["id"] for x in json.loads(r.stdout)]

    assert lj("--code", "MINDESTALTER") == [ids[os.path.basename(HELD_AGE)]]
    assert lj("--source-ref", os.path.basename(HELD_PAY)) == [ids[os.path.basename(HELD_PAY)]]
    assert lj("--ref", "FS-2026-004220") == [ids[os.path.basename(HELD_AGE)]]
    assert lj("--ref", "NICHT-DA") == []
    assert sorted(lj("--source", "dir:" + rig.inbox)) == sorted(ids.values())
    assert lj("--source", "http:portal") == []
    assert sorted(lj("--state", "review", "--job", "besucherparkausweis")) == sorted(
        [ids[os.path.basename(HELD_FEE)], ids[os.path.basename(HELD_PAY)]])
    assert sorted(lj("--since", "1h")) == sorted(ids.values())
    assert lj("--until", "1h") == []
    assert lj("--since", "2999-01-01") == []
    assert sorted(lj("--since", "01.01.2020", "--until", "2999-01-01T00:00Z")) == \
        sorted(ids.values())
    out = ctl(rig, "list", "--code", "NIX").stdout
    assert out == "Keine Anträge, auf die die Filter passen.\n"
    rows = json.loads(ctl(rig, "list", "--json", "--ref", "FS-2026-004220").stdout)
    assert rows[0]["reference"] == "FS-2026-004220"
    assert rows[0]["source_ref"] == os.path.basename(HELD_AGE)
    r = ctl(rig, "list", "--since", "gestern")
    assert r.returncode == 2 and "--since needs a time" in r.stderr

    # paging: three at a time, following the hint, every job once
    seen, before, pages = [], None, 0
    while True:
        args = ["list", "--limit", "3"] + (["--before", str(before)] if before else [])
        out = ctl(rig, *args).stdout
        page = [int(l.split()[0]) for l in out.splitlines()
                if l.strip()[:1].isdigit() and "gezeigt" not in l]
        seen += page
        pages += 1
        hint = [l for l in out.splitlines() if "--before" in l]
        if not hint:
            break
        before = int(hint[0].split("--before ")[1].split()[0])
        assert before == page[-1]
    assert seen == sorted(ids.values(), reverse=True)
    assert pages == 3
    assert lj("--limit", "3", "--before", str(seen[2])) == seen[3:6]


# ---- paused connectors ---------------------------------------------------------------

def test_a_paused_connector_is_resumed(tmp_path):
    import re
    jobs = job_copy(tmp_path, "besucherparkausweis", lambda t: t.replace(
        '<set key="table">besucherparkausweis</set>',
        '<set key="table">besucherparkausweis</set>\n    <set key="create_table">false</set>'))
    fields = re.findall(r'<field name="([a-z_0-9]+)"',
                        (jobs / "besucherparkausweis.xml").read_text())
    rig = Rig(tmp_path / "run", jobs=str(jobs))
    rig.drop(GOOD_BPA)
    p = rig.start()
    try:
        rig.wait_for(lambda: rig.q("SELECT count(*) FROM connector_pauses")[0][0] == 1,
                     what="the connector paused")
        (job_id,), = rig.q("SELECT id FROM jobs")
        assert state(rig, job_id) == "retry_wait"
        out = ctl(rig, "status").stdout
        assert out.startswith("Angehaltene Anbindungen: 1\n  besucherparkausweis / sqlite: "
                              "table 'besucherparkausweis' does not exist and create_table is "
                              "off (rekeyctl resume besucherparkausweis sqlite)\n")
        assert json.loads(ctl(rig, "status", "--json").stdout)["paused"][0]["connector"] == \
            "sqlite"
        # the cause is fixed: the table exists now
        con = sqlite3.connect(rig.target)
        cols = ", ".join(f'"{f}" TEXT' for f in fields)
        con.execute(f"CREATE TABLE besucherparkausweis ({cols}, rk_idempotency_key TEXT UNIQUE,"
                    " rk_submission TEXT, rk_delivered_at TEXT)")
        con.commit()
        con.close()
        r = ctl(rig, "resume", "besucherparkausweis", "archiv")
        assert r.returncode == 1 and "nicht angehalten" in r.stderr
        r = ctl(rig, "resume", "besucherparkausweis", "sqlite")
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("1 Anbindung der Antragsart besucherparkausweis wieder "
                                   "aufgenommen")
        rig.wait_for(lambda: state(rig, job_id) == "delivered", timeout=10,
                     what="delivery after the resume")
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=30)
    assert len(rig.target_rows("besucherparkausweis")) == 1
    assert not ctl(rig, "status").stdout.startswith("Angehaltene")
