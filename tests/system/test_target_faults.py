"""Faults in the target, with a test connector whose answers a control file
decides: a FATAL answer pauses that connector (no attempts burnt, nothing
sent to it) until a reload resumes it; RETRY backs off; PERMANENT holds the
job in review."""
import os
import shutil
import signal
import time

from conftest import ROOT, Rig


def flaky_jobs(tmp_path):
    jobs = tmp_path / "jobs"
    shutil.copytree(os.path.join(ROOT, "jobs"), jobs)
    shutil.copytree(os.path.join(ROOT, "schemas"), tmp_path / "schemas")
    for f in jobs.glob("*.xml"):
        text = f.read_text()
        start = text.index("<connector")
        end = text.index("</connector>") + len("</connector>")
        text = text[:start] + (
            '<connector plugin="flaky"><set key="control">${control}</set>'
            '<set key="log">${calls}</set></connector>') + text[end:]
        f.write_text(text)
    return jobs


def make_rig(tmp_path, extra=""):
    control = tmp_path / "mood"
    calls = tmp_path / "calls.log"
    rig = Rig(tmp_path / "run", jobs=str(flaky_jobs(tmp_path)),
              extra=f"control = {control}\ncalls = {calls}\n" + extra)
    # the test plugins live beside the unit tests
    with open(rig.config) as f:
        cfg = f.read().replace(f"plugin_path = {os.path.join(ROOT, 'connectors')}",
                               f"plugin_path = {os.path.join(ROOT, 'tests', 'unit', 'plugins')}")
    with open(rig.config, "w") as f:
        f.write(cfg)
    return rig, control, calls


def n_calls(calls):
    return len(open(calls).read().splitlines()) if os.path.exists(calls) else 0


def test_fatal_pauses_the_connector_until_reload(tmp_path):
    rig, control, calls = make_rig(tmp_path)
    control.write_text("FATAL\n")
    p = rig.start()
    try:
        rig.drop("samples/besucherparkausweis-01-tag.xml")
        rig.wait_for(lambda: rig.q("SELECT state FROM jobs") == [("retry_wait",)],
                     what="the first job to wait")
        st = rig.ctl("status", "--json").stdout
        assert '"connector": "flaky"' in st and "flaky says FATAL" in st
        # more work arrives: nothing is sent to the paused connector
        rig.drop("samples/besucherparkausweis-02-woche.xml",
                 "samples/besucherparkausweis-03-monat.xml")
        rig.wait_for(lambda: len(rig.q("SELECT id FROM jobs WHERE state = 'retry_wait'")) == 3,
                     what="all three waiting")
        time.sleep(0.5)
        assert n_calls(calls) == 1
        # no attempt was burnt on the records
        assert rig.q("SELECT max(attempts) FROM deliveries") == [(0,)]
        control.write_text("OK\n")
        p.send_signal(signal.SIGHUP)
        rig.wait_for(lambda: len(rig.q("SELECT id FROM jobs WHERE state = 'delivered'")) == 3,
                     what="delivery after the resume")
    finally:
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
    assert "answered FATAL and is paused" in err
    assert "resumed 1 paused connectors" in err
    assert n_calls(calls) == 4  # the FATAL one, then each job once
    assert rig.q("SELECT count(*) FROM connector_pauses") == [(0,)]


def test_retry_backs_off_and_permanent_goes_to_review(tmp_path):
    rig, control, calls = make_rig(
        tmp_path, "[delivery]\nmax_attempts = 3\nbackoff_initial_ms = 100\n"
                  "backoff_max_ms = 200\n")
    control.write_text("RETRY\n")
    rig.drop("samples/besucherparkausweis-01-tag.xml")
    p = rig.start()
    try:
        rig.wait_for(lambda: rig.q("SELECT state FROM jobs") == [("failed",)],
                     what="dead letter after three attempts")
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=30)
    assert n_calls(calls) == 3
    assert rig.q("SELECT attempts, state FROM deliveries") == [(3, "failed")]
    control.write_text("PERMANENT\n")
    rig.drop("samples/besucherparkausweis-02-woche.xml")
    rig.run_once()
    (job_id,) = rig.q("SELECT id FROM jobs WHERE state = 'review'")[0]
    assert rig.codes(job_id) == ["ANBINDUNG_ABGELEHNT"]
    assert rig.q("SELECT message FROM anomalies WHERE job_id = ?", job_id) == [
        ("flaky says PERMANENT",)]
