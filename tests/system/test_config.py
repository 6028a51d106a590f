"""Bad settings and bad job files: clear errors naming file and line, and
a broken job never takes the others down."""
import os
import re
import shutil
import subprocess
import time

from conftest import REKEYD, ROOT, Rig


def test_unknown_setting_names_line(rig):
    rig.write_config("[inbox]\nsettle_msec = 5\n")
    p = subprocess.run([REKEYD, "--config", rig.config, "--once"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 2
    lines = open(rig.config).read().splitlines()
    line = lines.index("settle_msec = 5") + 1
    assert f"rekeyd.ini:{line}: unknown setting 'settle_msec' in section [inbox]" in p.stderr


def test_bad_number_is_refused(rig):
    rig.write_config("[delivery]\nmax_attempts = lots\n")
    p = subprocess.run([REKEYD, "--config", rig.config, "--once"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 2
    assert "max_attempts must be a whole number" in p.stderr


def test_missing_config_file(tmp_path):
    p = subprocess.run([REKEYD, "--config", str(tmp_path / "nope.ini")],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2
    assert "nope.ini" in p.stderr and "No such file" in p.stderr


def copy_jobs(tmp_path):
    """jobs/ and schemas/ side by side, as job files refer to ../schemas."""
    jobs = tmp_path / "jobs"
    shutil.copytree(os.path.join(ROOT, "jobs"), jobs)
    shutil.copytree(os.path.join(ROOT, "schemas"), tmp_path / "schemas")
    return jobs


def test_broken_job_file_is_reported_and_others_run(tmp_path):
    jobs = copy_jobs(tmp_path)
    broken = jobs / "zz-broken.xml"
    broken.write_text('<job xmlns="urn:rekey:job:1" name="kaputt" version="1">\n'
                      '  <match root="x"/>\n'
                      '  <schemaa href="nope.xsd"/>\n'
                      '</job>\n')
    rig = Rig(tmp_path / "run", jobs=str(jobs))
    rig.drop("samples/besucherparkausweis-01-tag.xml")
    p = rig.run_once()
    assert "zz-broken.xml:3:" in p.stderr
    assert rig.q("SELECT job, state FROM jobs") == [("besucherparkausweis", "delivered")]


def test_undefined_var_in_job_names_it(tmp_path):
    rig = Rig(tmp_path)
    with open(rig.config) as f:
        cfg = f.read().replace("target_db = ", "other = ")
    with open(rig.config, "w") as f:
        f.write(cfg)
    p = subprocess.run([REKEYD, "--config", rig.config, "--check"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 1
    assert "${target_db} is not defined" in p.stderr


def test_bad_xpath_in_job_names_line(tmp_path):
    jobs = copy_jobs(tmp_path)
    src = (jobs / "besucherparkausweis.xml").read_text()
    lines = src.splitlines()
    i = next(k for k, l in enumerate(lines) if "<field " in l)
    lines[i] = lines[i].replace('from="', 'from="nope:x/')
    (jobs / "besucherparkausweis.xml").write_text("\n".join(lines) + "\n")
    rig = Rig(tmp_path / "run", jobs=str(jobs))
    p = subprocess.run([REKEYD, "--config", rig.config, "--check"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 1
    assert f"besucherparkausweis.xml:{i + 1}:" in p.stderr
    assert "namespace prefix" in p.stderr


def test_check_lists_jobs(rig):
    p = subprocess.run([REKEYD, "--config", rig.config, "--check"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    for job in ("fischereischein", "besucherparkausweis", "gewerbeanmeldung"):
        assert f"job {job}" in p.stdout


def test_sighup_reload_keeps_working_job_and_takes_new_version(tmp_path):
    import signal
    jobs = copy_jobs(tmp_path)
    rig = Rig(tmp_path / "run", jobs=str(jobs))
    p = rig.start()
    try:
        rig.drop("samples/besucherparkausweis-01-tag.xml")
        rig.wait_for(lambda: rig.q("SELECT state FROM jobs") == [("delivered",)],
                     what="first delivery")
        job = jobs / "besucherparkausweis.xml"
        good = job.read_text()
        # a broken edit: the running version must stay
        job.write_text(good.replace("<map>", "<mapp>", 1))
        p.send_signal(signal.SIGHUP)
        rig.drop_bytes("second.xml",
                       open(os.path.join(ROOT, "tests/data/samples/"
                                         "besucherparkausweis-02-woche.xml"), "rb").read())
        rig.wait_for(lambda: len(rig.q("SELECT id FROM jobs WHERE state = 'delivered'")) == 2,
                     what="delivery with the old version after a broken reload")
        # a good edit with a new version number is taken
        job.write_text(good.replace('version="1"', 'version="2"', 1))
        p.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        rig.drop_bytes("third.xml",
                       open(os.path.join(ROOT, "tests/data/samples/"
                                         "besucherparkausweis-03-monat.xml"), "rb").read())
        rig.wait_for(lambda: len(rig.q("SELECT id FROM jobs WHERE state = 'delivered'")) == 3,
                     what="delivery after a good reload")
    finally:
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
    assert "besucherparkausweis.xml" in err and "keeping the running version 1" in err
    versions = [v for (v,) in rig.q("SELECT job_version FROM jobs ORDER BY id")]
    assert versions == [1, 1, 2]


def test_archive_empty_deletes_taken_files(tmp_path):
    rig = Rig(tmp_path)
    with open(rig.config) as f:
        cfg = f.read().replace(f"archive = {rig.archive}", "archive =")
    with open(rig.config, "w") as f:
        f.write(cfg)
    rig.drop("samples/besucherparkausweis-01-tag.xml")
    rig.run_once()
    assert rig.q("SELECT state FROM jobs") == [("delivered",)]
    assert not os.path.exists(rig.archive) or os.listdir(rig.archive) == []
    # the file and its claim folder are gone
    assert [e for e in os.listdir(os.path.join(rig.inbox, ".claimed"))
            if not e.startswith(".")] == []
    assert [f for f in os.listdir(rig.inbox) if not f.startswith(".")] == []


def test_unknown_connector_setting_is_a_load_error(tmp_path):
    jobs = copy_jobs(tmp_path)
    job = jobs / "gewerbeanmeldung.xml"
    lines = job.read_text()
    job.write_text(lines.replace('<set key="table">', '<set key="tabel">x</set><set key="table">',
                                 1))
    rig = Rig(tmp_path / "run", jobs=str(jobs))
    p = subprocess.run([REKEYD, "--config", rig.config, "--check"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 1
    assert re.search(r"gewerbeanmeldung.xml:\d+: connector sqlite: unknown setting 'tabel'",
                     p.stderr), p.stderr
    assert "job fischereischein" in p.stdout and "job gewerbeanmeldung" not in p.stdout
    # the daemon runs the other jobs; the broken one takes nothing
    rig.drop("samples/besucherparkausweis-01-tag.xml",
             "samples/gewerbeanmeldung-01-einzelunternehmen.xml")
    rig.run_once()
    assert sorted(rig.q("SELECT COALESCE(job, '-'), state FROM jobs")) == [
        ("-", "failed"), ("besucherparkausweis", "delivered")]
