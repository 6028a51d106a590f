"""A clerk's day with rekeyctl review: a batch arrives, some submissions are
held; one is corrected and approved and reaches the target with the
corrected value; one is approved without correction and stays held; one is
rejected and never reaches the target; four-eyes refuses the person who
corrected.  Each against a stopped daemon (rekeyd --once afterwards) and a
running one.  The helpers here are used by test_operations.py too."""
import csv
import io
import os
import shutil
import signal
import sqlite3
import subprocess
import time

from conftest import REKEYCTL, ROOT, Rig

HELD_AGE = "samples/fischereischein-10-mindestalter.xml"       # MINDESTALTER
HELD_FEE = "samples/besucherparkausweis-10-gebuehr-falsch.xml"  # GEBUEHR_FALSCH
HELD_PAY = "samples/besucherparkausweis-11-zahlung-offen.xml"   # ZAHLUNG_OFFEN
GOOD_BPA = "samples/besucherparkausweis-01-tag.xml"
GOOD_FS = "samples/fischereischein-01-erstausstellung.xml"


def ctl(rig, *args, stdin=subprocess.DEVNULL):
    """rekeyctl as an operator runs it next to rekeyd: with the daemon's
    configuration, so it finds the database, the jobs and [vars]."""
    return subprocess.run([REKEYCTL, "--config", rig.config, *args], capture_output=True,
                          text=True, timeout=60, stdin=stdin)


def job_copy(tmp_path, name, edit):
    """A copy of jobs/ and schemas/ (job files point at ../schemas) with
    jobs/NAME.xml passed through edit(text) -> text (None: only copy).
    Returns the jobs dir."""
    jobs = tmp_path / "jobs"
    if not jobs.exists():
        shutil.copytree(os.path.join(ROOT, "jobs"), jobs)
        shutil.copytree(os.path.join(ROOT, "schemas"), tmp_path / "schemas")
    if edit is None:
        return jobs
    path = jobs / (name + ".xml")
    text = path.read_text()
    new = edit(text)
    assert new != text, "the edit changed nothing"
    path.write_text(new)
    return jobs


def with_review(attrs):
    """An edit that puts <review ATTRS/> where the job schema wants it:
    after the rules, before the first connector."""
    def edit(text):
        i = text.index("<connector")
        return text[:i] + f"<review {attrs}/>\n\n  " + text[i:]
    return edit


def by_ref(rig, rel):
    return rig.jobs_by_ref()[os.path.basename(rel)]["id"]


def state(rig, job_id):
    return rig.q("SELECT state FROM jobs WHERE id = ?", job_id)[0][0]


def open_codes(rig, job_id):
    return sorted(r[0] for r in rig.q("SELECT code FROM anomalies WHERE job_id = ?"
                                      " AND resolved_at IS NULL", job_id))


def n_events(rig, job_id=None):
    if job_id is None:
        return rig.q("SELECT count(*) FROM events")[0][0]
    return rig.q("SELECT count(*) FROM events WHERE job_id = ?", job_id)[0][0]


def target_by_job(rig, table, job_id):
    """Rows the target holds for one job (rk_submission is the job id)."""
    if not os.path.exists(rig.target):
        return []
    con = sqlite3.connect(rig.target)
    con.row_factory = sqlite3.Row
    try:
        if not con.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchall():
            return []
        return [dict(r) for r in con.execute(
            f'SELECT * FROM "{table}" WHERE rk_submission = ?', (str(job_id),))]
    finally:
        con.close()


def events_csv(rig, *args):
    p = ctl(rig, "events", "--format", "csv", *args)
    assert p.returncode == 0, p.stderr
    rows = list(csv.reader(io.StringIO(p.stdout)))
    assert rows[0] == ["id", "job_id", "job", "at", "actor", "from_state", "to_state", "reason"]
    return [dict(zip(rows[0], r)) for r in rows[1:]]


def batch(rig):
    for rel in (HELD_AGE, HELD_FEE, HELD_PAY, GOOD_BPA, GOOD_FS):
        rig.drop(rel)


# ---- the day, against a stopped daemon ---------------------------------------

def test_clerks_day_with_the_daemon_stopped(rig):
    batch(rig)
    rig.run_once()
    age, fee, pay = by_ref(rig, HELD_AGE), by_ref(rig, HELD_FEE), by_ref(rig, HELD_PAY)
    assert {state(rig, i) for i in (age, fee, pay)} == {"review"}

    # the morning list: the three held ones, with their codes, nothing else
    p = ctl(rig, "review", "list")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("Zur Klärung: 3\n")
    lines = {int(l.split()[0]): l for l in p.stdout.splitlines()[3:] if l.strip()[:1].isdigit()}
    assert set(lines) == {age, fee, pay}
    assert "MINDESTALTER" in lines[age] and "fischereischein" in lines[age]
    assert "GEBUEHR_FALSCH" in lines[fee] and "ZAHLUNG_OFFEN" in lines[pay]

    # why is it held: the anomaly, and the field side by side, marked
    p = ctl(rig, "review", "show", str(age))
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert out.startswith(f"Antrag {age} – zur Klärung\n")
    assert "blockierend  MINDESTALTER  geburtsdatum  Antragsteller ist jünger als 14 Jahre" in out
    assert "Wert im Antrag" in out and "übernommener Wert" in out and "XPath" in out
    row = next(l for l in out.splitlines() if " geburtsdatum " in l and "fs:" in l)
    assert row.split() == ["!", "geburtsdatum", "2014-09-17", "2014-09-17",
                           "fs:Antragsteller/fs:F60000000229"]
    nach = next(l for l in out.splitlines() if " nachname " in l)
    assert nach.split()[0] == "nachname"  # not named by a rule: no mark
    assert f"rekeyctl review approve {age}" in out

    # correct the date of birth (a typo in the portal), then approve
    p = ctl(rig, "review", "set", str(age), "geburtsdatum", "2001-09-17", "--as", "anna")
    assert p.returncode == 0, p.stderr
    assert "Feld geburtsdatum korrigiert (alter Wert: 2014-09-17, neuer Wert: 2001-09-17)" \
        in p.stdout
    assert rig.q("SELECT field, old_value, new_value, actor FROM corrections"
                 " WHERE job_id = ?", age) == [("geburtsdatum", "2014-09-17", "2001-09-17",
                                                 "anna")]
    assert rig.q("SELECT value FROM fields WHERE job_id = ? AND name = 'geburtsdatum'",
                 age) == [("2001-09-17",)]
    assert open_codes(rig, age) == []  # re-checked at once
    assert state(rig, age) == "review"  # a correction alone decides nothing
    out = ctl(rig, "review", "show", str(age)).stdout
    assert "geburtsdatum  2014-09-17  2001-09-17  anna" in out  # alter / neuer Wert
    row = next(l for l in out.splitlines() if " geburtsdatum " in l and "fs:" in l)
    assert row.split()[:4] == ["*", "geburtsdatum", "2014-09-17", "2001-09-17"]

    p = ctl(rig, "review", "approve", str(age), "--as", "anna")
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"Antrag {age} freigegeben; er wird an das Fachverfahren übertragen.\n"
    assert state(rig, age) == "ready"

    # approved without a correction: the rule still fails, it stays held
    before = n_events(rig, fee)
    p = ctl(rig, "review", "approve", str(fee), "--as", "anna")
    assert p.returncode == 1
    assert f"Antrag {fee} bleibt zur Klärung: GEBUEHR_FALSCH (betrag)" in p.stderr
    assert "Offene Auffälligkeiten (1)" in p.stderr
    assert state(rig, fee) == "review"
    assert open_codes(rig, fee) == ["GEBUEHR_FALSCH"]
    assert n_events(rig, fee) == before + 1  # the refused approval is on record

    # rejected: the reason is required
    p = ctl(rig, "review", "reject", str(pay), "--as", "bernd")
    assert p.returncode == 2
    assert "needs a reason (Begründung): --reason TEXT" in p.stderr
    assert state(rig, pay) == "review"
    p = ctl(rig, "review", "reject", str(pay), "--reason", "Zahlung nicht eingegangen",
            "--as", "bernd")
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"Antrag {pay} abgelehnt.\n"
    assert state(rig, pay) == "rejected"
    assert rig.q("SELECT message FROM anomalies WHERE job_id = ? AND code = 'ABGELEHNT'",
                 pay) == [("Zahlung nicht eingegangen",)]

    # the daemon starts later and delivers what was approved
    rig.run_once()
    assert state(rig, age) == "delivered"
    rows = target_by_job(rig, "fischereischein", age)
    assert len(rows) == 1 and rows[0]["geburtsdatum"] == "2001-09-17"
    assert rows[0]["nachname"] == "Hartmann"
    assert target_by_job(rig, "besucherparkausweis", pay) == []
    assert target_by_job(rig, "besucherparkausweis", fee) == []
    assert state(rig, fee) == "review" and state(rig, pay) == "rejected"

    # and every decision is in the trail, with who made it
    ev = events_csv(rig)
    mine = [(int(e["job_id"]), e["actor"], e["from_state"], e["to_state"]) for e in ev
            if e["actor"] in ("anna", "bernd")]
    assert (age, "anna", "review", "review") in mine       # the correction
    assert (age, "anna", "review", "ready") in mine        # the approval
    assert (fee, "anna", "review", "review") in mine       # the refused approval
    assert (pay, "bernd", "review", "rejected") in mine    # the rejection
    corr = [e for e in ev if int(e["job_id"]) == age and e["actor"] == "anna"
            and e["to_state"] == "review"]
    assert "geburtsdatum" in corr[0]["reason"]
    assert "2014" not in "".join(e["reason"] for e in ev)  # no personal data in the trail


# ---- the same day, with the daemon running -------------------------------------

def test_clerks_day_with_the_daemon_running(rig):
    batch(rig)
    p = rig.start()
    try:
        rig.wait_for(lambda: rig.q("SELECT count(*) FROM jobs WHERE state IN"
                                   " ('review', 'delivered')")[0][0] == 5,
                     what="the batch processed")
        age, fee, pay = by_ref(rig, HELD_AGE), by_ref(rig, HELD_FEE), by_ref(rig, HELD_PAY)
        assert {state(rig, i) for i in (age, fee, pay)} == {"review"}

        r = ctl(rig, "review", "set", str(age), "geburtsdatum", "2001-09-17", "--as", "anna")
        assert r.returncode == 0, r.stderr
        r = ctl(rig, "review", "approve", str(age), "--as", "anna")
        assert r.returncode == 0, r.stderr
        t0 = time.time()
        rig.wait_for(lambda: state(rig, age) == "delivered", timeout=10,
                     what="the approved job delivered by the running daemon")
        assert time.time() - t0 < 10
        rows = target_by_job(rig, "fischereischein", age)
        assert len(rows) == 1 and rows[0]["geburtsdatum"] == "2001-09-17"

        r = ctl(rig, "review", "approve", str(fee), "--as", "anna")
        assert r.returncode == 1 and "bleibt zur Klärung" in r.stderr
        r = ctl(rig, "review", "reject", str(pay), "--reason", "Zahlung nicht eingegangen",
                "--as", "bernd")
        assert r.returncode == 0, r.stderr
        time.sleep(1.5)  # the daemon had time to act on anything it wrongly picked up
        assert state(rig, fee) == "review" and open_codes(rig, fee) == ["GEBUEHR_FALSCH"]
        assert state(rig, pay) == "rejected"
        assert target_by_job(rig, "besucherparkausweis", pay) == []
        assert target_by_job(rig, "besucherparkausweis", fee) == []
    finally:
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert "2001-09-17" not in err and "Hartmann" not in err  # the log has no personal data
    actors = {(int(e["job_id"]), e["actor"], e["to_state"]) for e in events_csv(rig)}
    assert (age, "anna", "ready") in actors and (pay, "bernd", "rejected") in actors


# ---- four-eyes ---------------------------------------------------------------

def test_four_eyes_refuses_who_corrected(tmp_path):
    jobs = job_copy(tmp_path, "fischereischein", with_review('four-eyes="true"'))
    rig = Rig(tmp_path / "run", jobs=str(jobs))
    rig.drop(HELD_AGE)
    rig.run_once()
    age = by_ref(rig, HELD_AGE)
    r = ctl(rig, "review", "set", str(age), "geburtsdatum", "2001-09-17", "--as", "anna")
    assert r.returncode == 0, r.stderr
    before = n_events(rig, age)
    r = ctl(rig, "review", "approve", str(age), "--as", "anna")
    assert r.returncode == 1
    assert "Vier-Augen-Prinzip: anna hat diesen Antrag korrigiert" in r.stderr
    assert state(rig, age) == "review"
    assert n_events(rig, age) == before
    # another person approves
    r = ctl(rig, "review", "approve", str(age), "--as", "bernd")
    assert r.returncode == 0, r.stderr
    assert state(rig, age) == "ready"
    rig.run_once()
    assert state(rig, age) == "delivered"
    assert target_by_job(rig, "fischereischein", age)[0]["geburtsdatum"] == "2001-09-17"
    ev = [(e["actor"], e["to_state"]) for e in events_csv(rig, "--job", "fischereischein")
          if int(e["job_id"]) == age]
    assert ("anna", "review") in ev and ("bernd", "ready") in ev
    assert ("anna", "ready") not in ev


def test_without_four_eyes_the_corrector_may_approve(rig):
    rig.drop(HELD_AGE)
    rig.run_once()
    age = by_ref(rig, HELD_AGE)
    assert ctl(rig, "review", "set", str(age), "geburtsdatum", "2001-09-17",
               "--as", "anna").returncode == 0
    assert ctl(rig, "review", "approve", str(age), "--as", "anna").returncode == 0
    assert state(rig, age) == "ready"


def test_the_os_user_acts_by_default(rig):
    import pwd
    rig.drop(HELD_PAY)
    rig.run_once()
    pay = by_ref(rig, HELD_PAY)
    r = ctl(rig, "review", "reject", str(pay), "--reason", "doppelt eingereicht")
    assert r.returncode == 0, r.stderr
    me = pwd.getpwuid(os.geteuid()).pw_name
    assert rig.q("SELECT actor FROM events WHERE job_id = ? AND to_state = 'rejected'",
                 pay) == [(me,)]


# ---- refusals change nothing ---------------------------------------------------

def test_refusals_change_nothing(rig):
    rig.drop(GOOD_BPA, HELD_FEE)
    rig.run_once()
    good, fee = by_ref(rig, GOOD_BPA), by_ref(rig, HELD_FEE)
    assert state(rig, good) == "delivered"
    snapshot = (n_events(rig), rig.q("SELECT * FROM corrections"),
                rig.q("SELECT id, state, attempts FROM jobs ORDER BY id"),
                rig.q("SELECT * FROM fields ORDER BY job_id, ord"))

    r = ctl(rig, "review", "approve", str(good))
    assert r.returncode == 1
    assert r.stderr == (f"rekeyctl: Antrag {good} ist nicht zur Klärung "
                        "(Status: übertragen).\n")
    r = ctl(rig, "retry", str(good))
    assert r.returncode == 1
    assert r.stderr == f"rekeyctl: Antrag {good} ist nicht fehlgeschlagen (Status: übertragen).\n"
    r = ctl(rig, "review", "set", str(fee), "gebuehr", "15.00")
    assert r.returncode == 1
    assert "Das Feld gebuehr gibt es in der Antragsart besucherparkausweis nicht" in r.stderr
    assert "betrag" in r.stderr  # the fields it does have are named
    r = ctl(rig, "review", "set", str(good), "betrag", "15.00")
    assert r.returncode == 1 and "nicht zur Klärung" in r.stderr
    r = ctl(rig, "review", "reject", str(good), "--reason", "zu spät")
    assert r.returncode == 1 and "nicht zur Klärung oder fehlgeschlagen" in r.stderr
    r = ctl(rig, "review", "approve", "999")
    assert r.returncode == 1 and "Einen Antrag mit der Nummer 999 gibt es nicht." in r.stderr
    r = ctl(rig, "replay", "999")
    assert r.returncode == 1

    assert snapshot == (n_events(rig), rig.q("SELECT * FROM corrections"),
                        rig.q("SELECT id, state, attempts FROM jobs ORDER BY id"),
                        rig.q("SELECT * FROM fields ORDER BY job_id, ord"))


def test_deciding_needs_the_job_definitions(rig):
    rig.drop(HELD_AGE)
    rig.run_once()
    age = by_ref(rig, HELD_AGE)
    # --db alone: approving runs the rules, which need the job files
    r = subprocess.run([REKEYCTL, "--db", rig.db, "review", "approve", str(age)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "needs the job definitions: give --config FILE" in r.stderr
    # --jobs without the variable the connector needs: that job does not load
    r = subprocess.run([REKEYCTL, "--db", rig.db, "--jobs", rig.jobs, "review", "approve",
                        str(age)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "${target_db} is not defined" in r.stderr
    assert "ist nicht geladen" in r.stderr
    assert state(rig, age) == "review"
    # --jobs with --var works like --config
    r = subprocess.run([REKEYCTL, "--db", rig.db, "--jobs", rig.jobs, "--var",
                        f"target_db={rig.target}", "review", "set", str(age), "geburtsdatum",
                        "2001-09-17", "--as", "anna"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "korrigiert" in r.stdout
    # a --db that does not exist is not created by a command that writes
    missing = os.path.join(rig.base, "nope.db")
    r = subprocess.run([REKEYCTL, "--config", rig.config, "--db", missing, "retry", "1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "no rekey database at" in r.stderr
    assert not os.path.exists(missing)


def test_review_json_for_scripts(rig):
    import json
    rig.drop(HELD_FEE)
    rig.run_once()
    fee = by_ref(rig, HELD_FEE)
    r = ctl(rig, "review", "approve", str(fee), "--as", "anna", "--json")
    assert r.returncode == 1
    o = json.loads(r.stdout)
    assert o["ok"] is False and o["id"] == fee and o["state"] == "review"
    assert [a["code"] for a in o["anomalies"]] == ["GEBUEHR_FALSCH"]
    assert o["message"].startswith(f"Antrag {fee} bleibt zur Klärung")
    # the fee for a day is 5.00 (the sample paid 5.00 for a week): correct the duration
    r = ctl(rig, "review", "set", str(fee), "dauer", "tag", "--as", "anna", "--json")
    assert r.returncode == 0, r.stderr
    o = json.loads(r.stdout)
    assert o["ok"] is True and o["anomalies"] == []
    rows = json.loads(ctl(rig, "review", "list", "--json").stdout)
    assert [x["id"] for x in rows] == [fee]
