"""Shared fixtures for rekey's system tests: real binaries, real SQLite,
a fresh temp folder per test."""
import json
import os
import sqlite3
import subprocess
import time

import pytest

# the test machines run as root; rekeyd refuses that unless told
os.environ.setdefault("REKEY_ALLOW_ROOT", "1")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REKEYD = os.path.join(ROOT, "agent", "rekeyd")
REKEYCTL = os.path.join(ROOT, "agent", "rekeyctl")
DATA = os.path.join(ROOT, "tests", "data")


class Rig:
    """One rekeyd set-up in a temp folder: config, inbox, queue, target."""

    def __init__(self, base, jobs=None, extra="", inbox=None):
        self.base = str(base)
        os.makedirs(self.base, exist_ok=True)
        self.inbox = inbox or os.path.join(self.base, "inbox")
        os.makedirs(self.inbox, exist_ok=True)
        self.db = os.path.join(self.base, "rekey.db")
        self.target = os.path.join(self.base, "fachverfahren.db")
        self.archive = os.path.join(self.base, "archive")
        self.error = os.path.join(self.base, "error")
        self.jobs = jobs or os.path.join(ROOT, "jobs")
        self.config = os.path.join(self.base, "rekeyd.ini")
        self.write_config(extra)

    def write_config(self, extra=""):
        sections = {
            "rekeyd": {"database": self.db, "jobs": self.jobs,
                       "plugin_path": os.path.join(ROOT, "connectors"),
                       "workers": "2", "log_level": "info"},
            "inbox": {"path": self.inbox, "archive": self.archive, "error": self.error,
                      "settle_ms": "0", "rescan_ms": "100"},
            "vars": {"target_db": self.target},
        }
        text = ""
        for name, kv in sections.items():
            text += f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in kv.items())
        with open(self.config, "w") as f:
            f.write(text + extra)

    def drop(self, *paths):
        """Copies files into the inbox as a writer must when settle_ms = 0
        (the Rig's setting): under a dot name, then renamed in."""
        for p in paths:
            src = p if os.path.isabs(p) else os.path.join(DATA, p)
            with open(src, "rb") as f:
                self.drop_bytes(os.path.basename(src), f.read())

    def drop_bytes(self, name, data):
        tmp = os.path.join(self.inbox, "." + name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, os.path.join(self.inbox, name))

    def run_once(self, timeout=60, check=True):
        p = subprocess.run([REKEYD, "--config", self.config, "--once"],
                           capture_output=True, text=True, timeout=timeout)
        if check:
            assert p.returncode == 0, p.stderr
        # every libuv handle was closed: uv_loop_close returned 0
        assert "open handles" not in p.stderr, p.stderr
        return p

    def start(self):
        return subprocess.Popen([REKEYD, "--config", self.config],
                                stderr=subprocess.PIPE, text=True)

    def q(self, sql, *args):
        con = sqlite3.connect(self.db)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def jobs_by_ref(self):
        rows = self.q("SELECT s.source_ref, j.id, j.job, j.state FROM jobs j"
                      " JOIN submissions s ON s.id = j.submission_id")
        return {r[0]: {"id": r[1], "job": r[2], "state": r[3]} for r in rows}

    def codes(self, job_id):
        return sorted(r[0] for r in self.q("SELECT code FROM anomalies WHERE job_id = ?",
                                           job_id))

    def target_rows(self, table, where="1=1"):
        con = sqlite3.connect(self.target)
        con.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in con.execute(f'SELECT * FROM "{table}" WHERE {where}')]
        finally:
            con.close()

    def ctl(self, *args, check=True):
        p = subprocess.run([REKEYCTL, "--db", self.db, *args], capture_output=True,
                           text=True, timeout=60)
        if check:
            assert p.returncode == 0, p.stderr
        return p

    def archived(self):
        """Paths of the files in the archive by name: ARCHIVE/YYYY-MM-DD/
        FOLDER/NAME, a claim folder moved whole (docs/operations.md)."""
        return archived_files(self.archive)

    def claimed(self):
        """Names of the files still claimed (in .claimed/'s claim folders)."""
        return claimed_files(self.inbox)

    def wait_for(self, pred, timeout=30, what="condition"):
        end = time.time() + timeout
        while time.time() < end:
            try:
                if pred():
                    return
            except sqlite3.OperationalError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")


def archived_files(archive):
    """{name: [paths]} of the files under an archive folder."""
    out = {}
    if not os.path.isdir(archive):
        return out
    for day in sorted(os.listdir(archive)):
        dp = os.path.join(archive, day)
        if not os.path.isdir(dp):
            continue
        for folder in sorted(os.listdir(dp)):
            fp = os.path.join(dp, folder)
            for name in sorted(os.listdir(fp)):
                out.setdefault(name, []).append(os.path.join(fp, name))
    return out


def claimed_files(inbox):
    """Names of the files in INBOX/.claimed/ and its claim folders (dot
    names, the owner files, left out)."""
    claimed = os.path.join(inbox, ".claimed")
    names = []
    if not os.path.isdir(claimed):
        return names
    for e in os.listdir(claimed):
        p = os.path.join(claimed, e)
        if e.startswith("."):
            continue
        if os.path.isdir(p):
            names += [n for n in os.listdir(p) if not n.startswith(".")]
        else:
            names.append(e)
    return names


@pytest.fixture
def rig(tmp_path):
    return Rig(tmp_path)


@pytest.fixture
def expected():
    with open(os.path.join(DATA, "samples", "expected.json")) as f:
        return json.load(f)
