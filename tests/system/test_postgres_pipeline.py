"""The daemon end to end into a real PostgreSQL Fachverfahren: the same
jobs, the connector switched to postgres through a copy of the job file."""
import os
import re
import shutil
import sqlite3

from conftest import ROOT, Rig
from pgserver import pg_server  # noqa: F401  (pytest fixture)


def postgres_jobs(tmp_path):
    """jobs/ and schemas/ side by side; every job delivers to PostgreSQL."""
    jobs = tmp_path / "jobs"
    shutil.copytree(os.path.join(ROOT, "jobs"), jobs)
    shutil.copytree(os.path.join(ROOT, "schemas"), tmp_path / "schemas")
    for f in jobs.glob("*.xml"):
        text = f.read_text()
        text = re.sub(r'<connector plugin="sqlite">\s*<set key="database">\$\{target_db\}</set>',
                      '<connector plugin="postgres"><set key="conninfo">${pg}</set>', text)
        f.write_text(text)
    return jobs


def test_samples_into_postgres(tmp_path, pg_server, expected):
    rig = Rig(tmp_path / "run", jobs=str(postgres_jobs(tmp_path)),
              extra=f"pg = {pg_server.conninfo}\n")
    for rel, e in expected.items():
        if e["outcome"] in ("delivered", "review"):
            rig.drop(rel)
    rig.run_once()
    want = {}
    for rel, e in expected.items():
        if e["outcome"] == "delivered":
            want[e["job"]] = want.get(e["job"], 0) + 1
    for job, n in want.items():
        assert pg_server.psql(f"SELECT count(*) FROM {job}") == str(n), job
    # one row per delivered job id, keyed by the idempotency key
    ids = {str(i) for (i,) in rig.q("SELECT id FROM jobs WHERE job = 'fischereischein'"
                                    " AND state = 'delivered'")}
    got = set(pg_server.psql("SELECT string_agg(rk_submission, ',') FROM fischereischein")
              .split(","))
    assert got == ids
    # a mapped value arrived as mapped (Fischereischein 01: Brandt)
    assert pg_server.psql("SELECT count(*) FROM fischereischein WHERE nachname = 'Brandt'") \
        == "1"
    # the target id reported by the connector is kept with the job
    assert all(t for (t,) in rig.q("SELECT target_id FROM jobs WHERE state = 'delivered'"))

    # a crash between the target's commit and ours: delivered again, no second row
    con = sqlite3.connect(rig.db)
    con.execute("UPDATE deliveries SET state = 'pending' WHERE job_id IN (SELECT id FROM"
                " jobs WHERE job = 'fischereischein' AND state = 'delivered')")
    con.execute("UPDATE jobs SET state = 'delivering' WHERE job = 'fischereischein'"
                " AND state = 'delivered'")
    con.commit()
    con.close()
    rig.run_once()
    assert pg_server.psql("SELECT count(*) FROM fischereischein") == \
        str(want["fischereischein"])
    assert {s for (s,) in rig.q("SELECT state FROM jobs WHERE job = 'fischereischein'")} \
        <= {"delivered", "review"}
    # every redelivered one went to the server a second time
    assert {a for (a,) in rig.q("SELECT d.attempts FROM deliveries d JOIN jobs j ON"
                                " j.id = d.job_id WHERE j.job = 'fischereischein'"
                                " AND j.state = 'delivered'")} == {2}


def test_postgres_down_means_retry_not_loss(tmp_path, pg_server):
    conninfo = pg_server.conninfo
    pg_server.stop()
    rig = Rig(tmp_path / "run", jobs=str(postgres_jobs(tmp_path)),
              extra=f"pg = {conninfo} connect_timeout=2\n")
    rig.drop("samples/besucherparkausweis-01-tag.xml")
    rig.run_once()
    state, attempts, err = rig.q("SELECT state, attempts, last_error FROM jobs")[0]
    assert state == "retry_wait" and attempts == 1
    assert "password" not in (err or "")
