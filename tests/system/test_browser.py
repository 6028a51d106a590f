"""The dashboard in headless Chromium: starts rekeyd with one submission
held for review and runs tests/browser/review.spec.mjs (playwright-core and
axe-core from tests/browser/node_modules, which `make check` installs with
`npm ci`).  The script logs in, finds the Antrag in the queue, corrects a
field, approves it and waits for the delivery, runs axe-core on every page
and checks keyboard focus; here the result is checked, the row in the
SQLite target, and the screenshots in build/test-output/."""
import json
import os
import shutil
import struct
import subprocess

import pytest

from apihelp import Daemon, add_token, api_rig
from conftest import ROOT

BROWSER_DIR = os.path.join(ROOT, "tests", "browser")
OUT = os.path.join(ROOT, "build", "test-output")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
HELD_AGE = "samples/fischereischein-10-mindestalter.xml"  # MINDESTALTER


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


def test_review_in_a_real_browser(tmp_path):
    node = shutil.which("node")
    assert node, "node is needed for the browser tests (scripts/install-deps.sh)"
    assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing (scripts/install-deps.sh)"
    assert os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")), \
        "tests/browser/node_modules is missing: make check runs npm ci --prefix tests/browser"
    rig = api_rig(tmp_path / "run")
    token = add_token(rig, "clara")
    rig.drop(HELD_AGE)
    d = Daemon(rig)
    try:
        rig.wait_for(lambda: rig.q("SELECT count(*) FROM jobs WHERE state = 'review'")[0][0]
                     == 1, what="the Antrag held")
        job = rig.q("SELECT id FROM jobs")[0][0]
        for f in ("dashboard-overview.png", "dashboard-antrag.png"):
            if os.path.exists(os.path.join(OUT, f)):
                os.unlink(os.path.join(OUT, f))
        env = dict(os.environ, REKEY_URL=f"http://127.0.0.1:{d.port}", REKEY_TOKEN=token,
                   REKEY_JOB=str(job), REKEY_OUT=OUT, CHROMIUM=CHROMIUM)
        p = subprocess.run([node, os.path.join(BROWSER_DIR, "review.spec.mjs")], env=env,
                           capture_output=True, text=True, timeout=240, cwd=BROWSER_DIR)
    finally:
        log = d.stop()
    lines = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
    assert lines, p.stdout + p.stderr
    result = json.loads(lines[-1][len("RESULT "):])
    # axe's findings (all impacts) are in the output for whoever reads it
    print(p.stderr)
    print(lines[-1])
    assert result["failures"] == [], "\n".join(result["failures"]) + "\n" + p.stderr
    assert p.returncode == 0 and result["ok"] is True
    assert set(result["axe"]) == {"login", "overview", "queue", "submission", "confirmation",
                                "protokoll"}
    for page, r in result["axe"].items():
        assert r["serious_or_critical"] == 0, (page, r)
    assert set(result["focus"]) == {"btn-korrigieren", "btn-freigeben", "btn-ablehnen"}
    # the approved record is in the target with the corrected value
    assert rig.q("SELECT state FROM jobs WHERE id = ?", job) == [("delivered",)]
    rows = rig.target_rows("fischereischein", f"rk_submission = '{job}'")
    assert len(rows) == 1 and rows[0]["geburtsdatum"] == "2001-09-17"
    assert rig.q("SELECT actor FROM events WHERE job_id = ? AND to_state = 'ready'", job) == \
        [("clara",)]
    # screenshots of the overview and the review page
    for f in ("dashboard-overview.png", "dashboard-antrag.png"):
        path = os.path.join(OUT, f)
        assert os.path.getsize(path) > 10000, path
        w, h = png_size(path)
        assert w >= 1000 and h >= 600, (path, w, h)
    assert token not in log and "dash: login: clara" in log
