"""`rekeyctl watch`: the live view of the queue for operators.  One frame
(--once) of a filled queue is compared with the database: counts per
state and per job, the transitions of the last minute, overdue jobs,
paused connectors and the last errors; the live view redraws, follows the
queue, and ends on q, Ctrl-C and SIGTERM with the terminal as it was."""
import os
import pty
import re
import select
import signal
import sqlite3
import subprocess
import termios
import time

import pytest

from conftest import REKEYCTL, Rig

GOOD_FS = "samples/fischereischein-01-erstausstellung.xml"
GOOD_FS2 = "samples/fischereischein-02-erstausstellung.xml"
GOOD_BPA = "samples/besucherparkausweis-01-tag.xml"
HELD_AGE = "samples/fischereischein-10-mindestalter.xml"

STATES_DE = ["eingegangen", "formal geprüft", "übernommen", "bereit zur Übertragung",
             "wird übertragen", "übertragen", "zur Klärung", "wartet auf erneuten Versuch",
             "fehlgeschlagen", "abgelehnt"]
STATES = ["received", "validated", "mapped", "ready", "delivering", "delivered", "review",
          "retry_wait", "failed", "rejected"]


def watch(*args, check=True, **kw):
    p = subprocess.run([REKEYCTL, "watch", *args], capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL, **kw)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def state_table(out):
    """{German state: (count, last minute)} of a frame."""
    rows = {}
    for de in STATES_DE:
        m = re.search(rf"^{re.escape(de)} +(\d+) +(\d+)$", out, re.M)
        assert m, (de, out)
        rows[de] = (int(m.group(1)), int(m.group(2)))
    return rows


@pytest.fixture(scope="module")
def queue(tmp_path_factory):
    """A queue with every kind of line: two deliveries that failed long ago
    (target folder missing, one attempt), two delivered, one held, one
    malformed document (failed at once), an overdue job and a paused
    connector."""
    base = tmp_path_factory.mktemp("watch")
    rig = Rig(base / "run")
    good_target = rig.target
    rig.target = str(base / "missing" / "fachverfahren.db")
    rig.write_config("[delivery]\nmax_attempts = 1\n")
    rig.drop(GOOD_BPA, "samples/besucherparkausweis-02-woche.xml")
    rig.run_once()
    old = [r[0] for r in rig.q("SELECT id FROM jobs ORDER BY id")]
    assert [rig.q("SELECT state FROM jobs WHERE id = ?", i)[0][0] for i in old] == \
        ["failed", "failed"]
    # a fake clock: they happened an hour ago, out of the last minute (the
    # trail is append-only, so its guard triggers step aside for this)
    con = sqlite3.connect(rig.db)
    with con:
        guards = con.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
                             " AND tbl_name = 'events'").fetchall()
        for name, _ in guards:
            con.execute(f'DROP TRIGGER "{name}"')
        con.execute("UPDATE events SET at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 hour')")
        for _, sql in guards:
            con.execute(sql)
    con.close()

    rig.target = good_target
    rig.write_config()
    rig.drop(GOOD_FS, GOOD_FS2, HELD_AGE)
    rig.drop_bytes("kaputt.xml", b"<Antrag><offen>")
    rig.run_once()
    jobs = rig.jobs_by_ref()
    held = jobs[os.path.basename(HELD_AGE)]["id"]
    broken = jobs["kaputt.xml"]["id"]
    con = sqlite3.connect(rig.db)
    with con:
        con.execute("UPDATE jobs SET deadline_at = ? WHERE id = ?",
                    (int(time.time() * 1000) - 86400000, held))
        con.execute("INSERT INTO connector_pauses(job, connector, reason, paused_at)"
                    " VALUES ('besucherparkausweis', 'sqlite', 'no such table: besucher\x1b[2J',"
                    " strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))")
    con.close()
    return {"rig": rig, "old": old, "held": held, "broken": broken}


def test_one_frame_shows_the_counts_and_the_last_minute(queue):
    rig = queue["rig"]
    out = watch("--once", "--db", rig.db).stdout
    assert "\x1b" not in out  # --once: no screen control, and no escape from the data
    lines = out.splitlines()
    assert lines[0].startswith("rekey – Warteschlange")
    assert re.search(r"\d\d\.\d\d\.\d{4} \d\d:\d\d:\d\d$", lines[0])
    assert lines[1] == f"Datenbank: {rig.db}"
    assert not any("Aktualisierung" in line for line in lines)

    rows = state_table(out)
    counts = dict(rig.q("SELECT state, count(*) FROM jobs GROUP BY state"))
    assert {de: rows[de][0] for de in STATES_DE} == \
        {de: counts.get(st, 0) for de, st in zip(STATES_DE, STATES)}
    # transitions into each state in the last minute, from the trail
    recent = dict(rig.q(
        "SELECT to_state, count(*) FROM events WHERE at >= strftime('%Y-%m-%dT%H:%M:%fZ',"
        " 'now', '-60 seconds') AND (from_state IS NULL OR from_state != to_state)"
        " GROUP BY to_state"))
    assert {de: rows[de][1] for de in STATES_DE} == \
        {de: recent.get(st, 0) for de, st in zip(STATES_DE, STATES)}
    # and the numbers themselves: the failures of an hour ago are not in it
    assert rows["übertragen"] == (2, 2)
    assert rows["zur Klärung"] == (1, 1)
    assert rows["fehlgeschlagen"] == (3, 1)
    assert rows["eingegangen"] == (0, 4)
    assert re.search(r"^gesamt +6$", out, re.M)


def test_one_frame_shows_jobs_overdue_paused_and_errors(queue):
    rig = queue["rig"]
    out = watch("--once", "--db", rig.db).stdout
    assert re.search(r"^Verfahren +gesamt  zur Klärung  fehlgeschlagen  übertragen$", out, re.M)
    assert re.search(r"^fischereischein +3 +1 +0 +2$", out, re.M), out
    assert re.search(r"^besucherparkausweis +2 +0 +2 +0$", out, re.M), out
    assert re.search(r"^\(ohne Verfahren\) +1 +0 +1 +0$", out, re.M), out

    assert f"\nFrist überschritten: 1 (Anträge {queue['held']})\n" in out
    # the reason is shown, its escape sequence defused
    assert "\nAngehaltene Anbindungen: 1\n  besucherparkausweis / sqlite: no such table: " \
           "besucher?[2J\n" in out

    errors = out.split("\nLetzte Fehler\n", 1)[1].splitlines()
    assert re.match(r"^ +ID  Antragsart +Status +Zeit / Meldung$", errors[0])
    # one line per job, its message indented on the next
    rows = [re.split(r"\s{2,}", e.strip()) for e in errors[1::2]]
    messages = errors[2::2]
    assert len(rows) == len(messages) == 3
    # newest change first: the malformed document, then the two old failures
    assert [int(r[0]) for r in rows] == [queue["broken"]] + sorted(queue["old"], reverse=True)
    assert rows[0][1:3] == ["-", "fehlgeschlagen"] and messages[0] == " " * 10 + "XML_MALFORMED"
    for r, m in zip(rows[1:], messages[1:]):
        assert r[1:3] == ["besucherparkausweis", "fehlgeschlagen"]
        assert re.match(r"^\d\d\.\d\d\.\d{4} \d\d:\d\d:\d\d$", r[3])
        (last_error,), = rig.q("SELECT last_error FROM jobs WHERE id = ?", int(r[0]))
        # cut to the width (100 columns when not a terminal) with an ellipsis
        assert len(last_error) > 90 and m.startswith(" " * 10)
        assert m[10:] == last_error[:89] + "…"


def test_an_empty_queue_and_the_database_from_the_config(tmp_path):
    rig = Rig(tmp_path)
    rig.run_once()  # creates the database, nothing in it
    out = watch("--once", "--config", rig.config).stdout
    assert f"Datenbank: {rig.db}\n" in out
    assert set(state_table(out).values()) == {(0, 0)}
    assert "Frist überschritten: keine\nAngehaltene Anbindungen: keine\n\n" \
           "Letzte Fehler: keine\n" in out
    assert "Verfahren " not in out
    # REKEY_DB when neither option names one
    out2 = watch("--once", env=dict(os.environ, REKEY_DB=rig.db)).stdout
    assert f"Datenbank: {rig.db}\n" in out2
    # the global options may also stand before the word watch
    for pre in (["--db", rig.db], [f"--db={rig.db}"], ["--config", rig.config]):
        p = subprocess.run([REKEYCTL, *pre, "watch", "--once"], capture_output=True,
                           text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        assert f"Datenbank: {rig.db}\n" in p.stdout


def test_usage_errors_and_a_missing_database(tmp_path):
    for args, msg in ((["--interval", "0"], "--interval needs whole seconds from 1 to 3600"),
                      (["--interval", "2s"], "--interval needs whole seconds"),
                      (["--interval"], "option --interval needs a value"),
                      (["--state", "review"], "unknown option '--state' for watch"),
                      (["42"], "watch takes no arguments, got '42'")):
        p = watch(*args, check=False)
        assert p.returncode == 2, args
        assert p.stderr.startswith(f"rekeyctl: {msg}"), (args, p.stderr)
        assert p.stdout == ""
    p = watch("--once", "--db", str(tmp_path / "nowhere.db"), check=False)
    assert p.returncode == 1 and p.stdout == ""
    assert "nowhere.db" in p.stderr
    assert not os.path.exists(tmp_path / "nowhere.db")  # read-only: nothing created
    h = watch("--help")
    assert h.stdout.startswith("usage: rekeyctl watch [--db PATH | --config FILE] "
                               "[--interval SECONDS] [--once]\n")
    assert "watch" in subprocess.run([REKEYCTL, "--help"], capture_output=True,
                                     text=True).stdout


# ---- the live view in a terminal ------------------------------------------------------

class Term:
    """rekeyctl watch on a pseudo-terminal of its own (its controlling
    terminal, so Ctrl-C raises SIGINT as at a real one)."""

    def __init__(self, *args):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child
            os.execv(REKEYCTL, [REKEYCTL, "watch", *args])
        self.before = termios.tcgetattr(self.fd)
        self.out = b""

    def read(self, seconds):
        end = time.time() + seconds
        while time.time() < end:
            r, _, _ = select.select([self.fd], [], [], 0.05)
            if r:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:
                    return
                if not data:
                    return
                self.out += data

    def frames(self):
        return self.out.decode("utf-8", "replace").split("\x1b[H\x1b[2J")[1:]

    def wait_frames(self, n, timeout=10):
        end = time.time() + timeout
        while len(self.frames()) < n and time.time() < end:
            self.read(0.1)
        assert len(self.frames()) >= n, self.out[-2000:]

    def wait_exit(self, timeout=15):
        end = time.time() + timeout
        while time.time() < end:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            self.read(0.05)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        raise AssertionError("watch did not end")

    def lflags(self):
        return termios.tcgetattr(self.fd)[3]


def test_live_view_redraws_follows_the_queue_and_ends_on_q(queue, tmp_path):
    rig = Rig(tmp_path)
    rig.drop(GOOD_FS)
    rig.run_once()
    t = Term("--db", rig.db, "--interval", "1")
    try:
        t.wait_frames(1)
        # keys one at a time, without echo, while it runs
        assert not t.lflags() & (termios.ICANON | termios.ECHO)
        first = t.frames()[0]
        assert "Aktualisierung alle 1 s; beenden mit q oder Strg-C" in first
        assert re.search(r"^übertragen +1 +1\r?$", first, re.M), first
        # the queue changes: a later frame shows it (frames drawn while
        # run_once was still at work may show the old count, so wait for
        # the new one instead of taking the last frame)
        rig.drop(GOOD_FS2)
        rig.run_once()
        end = time.time() + 15
        while not re.search(r"^übertragen +2 +2\r?$", t.frames()[-1], re.M) and \
                time.time() < end:
            t.wait_frames(len(t.frames()) + 1)
        assert re.search(r"^übertragen +2 +2\r?$", t.frames()[-1], re.M), t.frames()[-1]
        os.write(t.fd, b"q")
        assert t.wait_exit() == 0
    finally:
        if t.pid:
            try:
                os.kill(t.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert t.out.decode().endswith("\x1b[?25h\r\n")  # the cursor is back
    # the terminal mode is as it was
    assert t.lflags() & (termios.ICANON | termios.ECHO) == \
        t.before[3] & (termios.ICANON | termios.ECHO)
    os.close(t.fd)


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_live_view_ends_on_ctrl_c_and_sigterm(queue, how):
    t = Term("--db", queue["rig"].db, "--interval", "60")
    try:
        t.wait_frames(1)
        start = time.time()
        if how == "ctrl-c":
            os.write(t.fd, b"\x03")  # the terminal makes it SIGINT
        else:
            os.kill(t.pid, signal.SIGTERM)
        assert t.wait_exit() == 0
        assert time.time() - start < 20  # at once, not after the 60 s interval
    finally:
        try:
            os.kill(t.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert len(t.frames()) == 1
    assert t.lflags() & (termios.ICANON | termios.ECHO) == \
        t.before[3] & (termios.ICANON | termios.ECHO)
    os.close(t.fd)


def test_live_view_reads_q_from_a_pipe_too(queue):
    p = subprocess.Popen([REKEYCTL, "watch", "--db", queue["rig"].db, "--interval", "30"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.3)
    out, err = p.communicate(b"q\n", timeout=10)
    assert p.returncode == 0, err
    assert out.count(b"\x1b[H\x1b[2J") == 1 and b"Letzte Fehler" in out
