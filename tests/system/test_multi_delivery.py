"""A job with two connectors: each delivery has its own state, attempts and
idempotency key, and the job is delivered only when both are."""
import os
import shutil
import signal

from conftest import ROOT, Rig


def two_target_jobs(tmp_path, second_db):
    jobs = tmp_path / "jobs"
    shutil.copytree(os.path.join(ROOT, "jobs"), jobs)
    shutil.copytree(os.path.join(ROOT, "schemas"), tmp_path / "schemas")
    job = jobs / "besucherparkausweis.xml"
    text = job.read_text()
    extra = ('  <connector plugin="sqlite" name="archiv">\n'
             f'    <set key="database">{second_db}</set>\n'
             '    <set key="table">archiv</set>\n'
             '  </connector>\n</job>')
    job.write_text(text.replace("</job>", extra))
    return jobs


def sqlite_rows(path, table):
    import sqlite3
    con = sqlite3.connect(path)
    try:
        return con.execute(f"SELECT rk_submission, rk_idempotency_key FROM {table}").fetchall()
    finally:
        con.close()


def test_both_targets_get_the_record_with_their_own_keys(tmp_path):
    archive_db = tmp_path / "archiv.db"
    rig = Rig(tmp_path / "run", jobs=str(two_target_jobs(tmp_path, archive_db)))
    rig.drop("samples/besucherparkausweis-01-tag.xml")
    rig.run_once()
    (job_id, state), = rig.q("SELECT id, state FROM jobs")
    assert state == "delivered"
    a = sqlite_rows(rig.target, "besucherparkausweis")
    b = sqlite_rows(str(archive_db), "archiv")
    assert len(a) == 1 and len(b) == 1
    assert a[0][0] == b[0][0] == str(job_id)
    assert a[0][1] != b[0][1]
    assert a[0][1].endswith(":besucherparkausweis:sqlite")
    assert b[0][1].endswith(":besucherparkausweis:archiv")
    dl = rig.q("SELECT name, state, attempts FROM deliveries ORDER BY id")
    assert dl == [("sqlite", "delivered", 1), ("archiv", "delivered", 1)]


def test_one_target_down_retries_only_that_one(tmp_path):
    missing = tmp_path / "not-yet" / "archiv.db"
    rig = Rig(tmp_path / "run", jobs=str(two_target_jobs(tmp_path, missing)),
              extra="[delivery]\nbackoff_initial_ms = 50\nbackoff_max_ms = 100\n")
    rig.drop("samples/besucherparkausweis-01-tag.xml")
    rig.run_once()
    assert rig.q("SELECT state FROM jobs") == [("retry_wait",)]
    assert rig.q("SELECT name, state, attempts FROM deliveries ORDER BY id") == [
        ("sqlite", "delivered", 1), ("archiv", "pending", 1)]
    # the archive comes back: only the archive gets the record now
    os.makedirs(missing.parent)
    p = rig.start()
    try:
        rig.wait_for(lambda: rig.q("SELECT state FROM jobs") == [("delivered",)],
                     what="delivery after the archive came back")
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=30)
    assert len(sqlite_rows(rig.target, "besucherparkausweis")) == 1
    assert len(sqlite_rows(str(missing), "archiv")) == 1
    assert rig.q("SELECT name, state, attempts FROM deliveries ORDER BY id") == [
        ("sqlite", "delivered", 1), ("archiv", "delivered", 2)]


def test_second_connector_needs_its_own_name(tmp_path):
    import subprocess
    from conftest import REKEYD
    jobs = two_target_jobs(tmp_path, tmp_path / "x.db")
    job = jobs / "besucherparkausweis.xml"
    job.write_text(job.read_text().replace(' name="archiv"', ""))
    rig = Rig(tmp_path / "run", jobs=str(jobs))
    p = subprocess.run([REKEYD, "--config", rig.config, "--check"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 1
    assert "a second connector named 'sqlite'" in p.stderr
