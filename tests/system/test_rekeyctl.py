"""rekeyctl as an operator runs it, against a queue that rekeyd filled."""
import json
import os
import signal
import subprocess

from conftest import DATA, REKEYCTL, ROOT


def filled(rig, expected):
    for rel in expected:
        rig.drop(rel)
    rig.run_once()
    return rig


def test_status_json_counts_every_state(rig, expected):
    filled(rig, expected)
    st = json.loads(rig.ctl("status", "--json").stdout)
    assert set(st["by_state"]) == {"received", "validated", "mapped", "ready", "delivering",
                                   "delivered", "review", "retry_wait", "failed", "rejected"}
    for state in ("delivered", "review", "failed"):
        n = sum(1 for e in expected.values() if e["outcome"] == state)
        assert st["by_state"][state] == n, state
    assert st["by_job"]["fischereischein"]["delivered"] == sum(
        1 for e in expected.values()
        if e["job"] == "fischereischein" and e["outcome"] == "delivered")
    text = rig.ctl("status").stdout
    assert "übertragen" in text and "zur Klärung" in text


def test_list_filters_and_shows_codes(rig, expected):
    filled(rig, expected)
    out = rig.ctl("list", "--state", "review").stdout
    held = [e for e in expected.values() if e["outcome"] == "review"]
    for e in held:
        for c in e["codes"]:
            assert c in out
    rows = json.loads(rig.ctl("list", "--state", "review", "--json").stdout)
    assert len(rows) == len(held)
    assert {r["state"] for r in rows} == {"review"}
    rows = json.loads(rig.ctl("list", "--job", "gewerbeanmeldung", "--json").stdout)
    assert rows and {r["job"] for r in rows} == {"gewerbeanmeldung"}


def test_show_has_provenance_events_and_anomalies(rig):
    rig.drop("samples/fischereischein-10-mindestalter.xml")
    rig.run_once()
    (job_id,) = rig.q("SELECT id FROM jobs")[0]
    o = json.loads(rig.ctl("show", str(job_id), "--json").stdout)
    assert o["state"] == "review"
    assert [a["code"] for a in o["anomalies"]] == ["MINDESTALTER"]
    assert o["anomalies"][0]["field"] == "geburtsdatum"
    f = {x["name"]: x for x in o["fields"]}
    assert f["geburtsdatum"]["xpath"].endswith("F60000000229")
    assert f["geburtsdatum"]["node"].endswith("/F60000000229")
    assert [e["to_state"] for e in o["events"]] == ["received", "validated", "mapped",
                                                     "review"]
    text = rig.ctl("show", str(job_id)).stdout
    for word in ("Wert im Antrag", "übernommener Wert", "MINDESTALTER", "Verlauf",
                 "blockierend"):
        assert word in text, word


def test_show_missing_id_says_what_to_do(rig):
    rig.run_once()
    p = rig.ctl("show", "4242", check=False)
    assert p.returncode == 1
    assert "no job with id 4242" in p.stderr and "rekeyctl list" in p.stderr


def test_missing_database_is_a_clear_error(tmp_path):
    p = subprocess.run([REKEYCTL, "--db", str(tmp_path / "none.db"), "status"],
                       capture_output=True, text=True)
    assert p.returncode != 0
    assert "none.db" in p.stderr


def test_usage_error_exit_2(rig):
    p = rig.ctl("frobnicate", check=False)
    assert p.returncode == 2 and "frobnicate" in p.stderr


def map_run(job, sample, *extra):
    return subprocess.run([REKEYCTL, "map", os.path.join(ROOT, "jobs", job + ".xml"),
                           os.path.join(DATA, sample), "--var", "target_db=/nonexistent",
                           *extra], capture_output=True, text=True)


def test_map_dry_run_exit_codes(tmp_path):
    sample = os.path.join(DATA, "samples/besucherparkausweis-01-tag.xml")
    mode = os.stat(sample).st_mode
    ok = map_run("besucherparkausweis", "samples/besucherparkausweis-01-tag.xml", "--json")
    # a dry run reads the file and changes nothing about it (the inbox
    # makes only the files it claimed 0600)
    assert os.stat(sample).st_mode == mode
    assert ok.returncode == 0, ok.stderr
    o = json.loads(ok.stdout)
    assert o["delivered"] is True and o["anomalies"] == []
    assert {f["name"] for f in o["fields"]} >= {"nachname", "betrag", "kennzeichen"}
    held = map_run("besucherparkausweis", "samples/besucherparkausweis-10-gebuehr-falsch.xml")
    assert held.returncode == 3
    assert "GEBUEHR_FALSCH" in held.stdout
    bad = map_run("besucherparkausweis", "bad/malformed.xml")
    assert bad.returncode == 1
    # nothing was written anywhere
    assert not os.path.exists("/nonexistent")


def test_reads_while_the_daemon_runs(rig):
    p = rig.start()
    try:
        rig.drop("samples/besucherparkausweis-01-tag.xml")
        rig.wait_for(lambda: rig.q("SELECT state FROM jobs") == [("delivered",)],
                     what="delivery")
        st = json.loads(rig.ctl("status", "--json").stdout)
        assert st["by_state"]["delivered"] == 1
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=30)
