"""Faults in the machine (issue 7, part 3): a full disk under the store, the
store and the target database locked by another process, and no busy loop
while rekeyd waits (idle, or target down).

Each test drives the real rekeyd, reads its log from a file and checks the
store, the inbox folders and the rows in the target.  Mounts and processes
are cleaned up by fixtures even when a test fails.
"""
import glob
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import threading
import time

import pytest

from conftest import DATA, REKEYD, ROOT, Rig

SAMPLES = [os.path.join(DATA, "samples", f"besucherparkausweis-0{i}-{n}.xml")
           for i, n in ((1, "tag"), (2, "woche"), (3, "monat"))]
HELD_FEE = os.path.join(DATA, "samples", "besucherparkausweis-10-gebuehr-falsch.xml")
CLK = os.sysconf("SC_CLK_TCK")


class Daemon:
    """rekeyd with its log in a file (a pipe nobody reads could fill up and
    block it); stopped with SIGTERM (then SIGKILL) when the test ends."""

    def __init__(self, rig, log_path):
        self.rig = rig
        self.log_path = str(log_path)
        self.log = open(self.log_path, "w")
        self.p = subprocess.Popen([REKEYD, "--config", rig.config], stderr=self.log,
                                  stdout=subprocess.DEVNULL)

    def text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_log(self, words, timeout=20):
        self.rig.wait_for(lambda: words in self.text(), timeout=timeout,
                          what=f"log line with {words!r}")

    def cpu_seconds(self):
        """utime + stime of rekeyd (all its threads) from /proc/PID/stat."""
        with open(f"/proc/{self.p.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # after the ")" field 3 (state) is fields[0]; utime is field 14
        return (int(fields[11]) + int(fields[12])) / CLK

    def cpu_share(self, seconds=5.0):
        """rekeyd's CPU time over a window of wall time, as a share of one core."""
        c0, t0 = self.cpu_seconds(), time.monotonic()
        time.sleep(seconds)
        c1, t1 = self.cpu_seconds(), time.monotonic()
        return (c1 - c0) / (t1 - t0)

    def stop(self, timeout=30):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()
        return self.p.returncode


@pytest.fixture
def daemons():
    started = []

    def start(rig, log_path):
        d = Daemon(rig, log_path)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


@pytest.fixture
def small_fs(tmp_path):
    """A 8 MB tmpfs; skipped when this test may not mount (needs root with
    CAP_SYS_ADMIN, e.g. not in an unprivileged container)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip("cannot mount a small tmpfs for the disk-full test (needs root with "
                    f"CAP_SYS_ADMIN): {p.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(folder):
    """Writes folder/filler until the file system is full (ENOSPC)."""
    path = os.path.join(folder, "filler")
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError as e:
            assert e.errno == 28, e  # ENOSPC
    return path


def inbox_files(rig):
    """Submission files still in the inbox, claimed or not."""
    return [f for f in os.listdir(rig.inbox) if not f.startswith(".")] + rig.claimed()


def delivered(rig, n):
    return rig.q("SELECT count(*) FROM jobs WHERE state = 'delivered'") == [(n,)]


def hold_lock(db, seconds, ready, release=None):
    """Holds BEGIN EXCLUSIVE on db for a while (or until release is set), as
    another process would."""
    con = sqlite3.connect(db, timeout=30, isolation_level=None)
    try:
        con.execute("BEGIN EXCLUSIVE")
        ready.set()
        if release:
            release.wait(seconds)
        else:
            time.sleep(seconds)
        con.execute("ROLLBACK")
    finally:
        con.close()


def test_disk_full_pauses_intake_and_resumes_without_restart(tmp_path, small_fs, daemons):
    rig = Rig(tmp_path / "run")
    rig.db = str(small_fs / "rekey.db")
    rig.write_config()
    d = daemons(rig, tmp_path / "rekeyd.log")
    d.wait_log("running: inbox")
    filler = fill(small_fs)
    rig.drop(*SAMPLES)
    d.wait_log("intake paused")
    time.sleep(1.5)  # a few retries with backoff
    log = d.text()
    assert "SQLITE_FULL" in log and "disk of the database is full (ENOSPC)" in log
    assert d.p.poll() is None, "rekeyd exited on a full disk"
    # a full disk is transient: nothing refused, nothing half-written
    names = inbox_files(rig)
    assert len(names) == 3 and all(any(n.startswith(os.path.basename(s)) for n in names)
                                   for s in SAMPLES), names
    assert not os.path.isdir(rig.error) or os.listdir(rig.error) == []
    assert rig.q("SELECT count(*) FROM submissions") == [(0,)]
    assert rig.q("SELECT count(*) FROM jobs") == [(0,)]
    # while paused it does not spin
    share = d.cpu_share(3.0)
    print(f"cpu while intake is paused on a full disk: {share:.1%} of a core")
    assert share < 0.10
    # space returns: taken in and delivered without a restart
    os.unlink(filler)
    rig.wait_for(lambda: delivered(rig, 3), timeout=30, what="delivery after space returned")
    assert "intake resumed" in d.text()
    assert inbox_files(rig) == []
    assert sum(len(v) for v in rig.archived().values()) == 3
    rows = rig.target_rows("besucherparkausweis")
    assert len(rows) == 3
    assert len({r["antragsnummer"] for r in rows}) == 3
    assert rig.q("SELECT count(*) FROM submissions") == [(3,)]
    assert rig.q("PRAGMA integrity_check") == [("ok",)]
    assert d.stop() == 0


def test_store_locked_by_another_process_is_retried(tmp_path, daemons):
    rig = Rig(tmp_path / "run", extra="")
    with open(rig.config) as f:
        cfg = f.read().replace("[rekeyd]\n", "[rekeyd]\nbusy_timeout_ms = 300\n", 1)
    with open(rig.config, "w") as f:
        f.write(cfg)
    rig.drop(HELD_FEE)
    d = daemons(rig, tmp_path / "rekeyd.log")
    rig.wait_for(lambda: rig.q("SELECT state FROM jobs") == [("review",)],
                 what="the held job")
    (held,) = rig.q("SELECT id FROM jobs")[0]
    ready = threading.Event()
    locker = threading.Thread(target=hold_lock, args=(rig.db, 4.0, ready))
    locker.start()
    try:
        assert ready.wait(10)
        t0 = time.monotonic()
        rig.drop(*SAMPLES)
        # rekeyctl acts meanwhile: it waits for the lock (its busy timeout)
        p = rig.ctl("review", "reject", str(held), "--reason", "Gebühr falsch")
        waited = time.monotonic() - t0
    finally:
        locker.join()
    assert waited > 2.0, "rekeyctl did not wait for the lock"
    assert d.p.poll() is None, "rekeyd exited while the store was locked"
    rig.wait_for(lambda: delivered(rig, 3), timeout=30, what="delivery after the lock")
    log = d.text()
    assert "SQLITE_BUSY" in log and "intake paused" in log
    assert rig.q("SELECT state FROM jobs WHERE id = ?", held) == [("rejected",)]
    assert p.returncode == 0
    assert len(rig.target_rows("besucherparkausweis")) == 3
    assert rig.q("SELECT count(*) FROM submissions") == [(4,)]
    assert inbox_files(rig) == []
    assert rig.q("PRAGMA integrity_check") == [("ok",)]
    assert d.stop() == 0


def locked_target_rig(tmp_path, extra=""):
    """The jobs with the SQLite connector waiting only 200 ms for a lock."""
    jobs = tmp_path / "jobs"
    shutil.copytree(os.path.join(ROOT, "jobs"), jobs)
    shutil.copytree(os.path.join(ROOT, "schemas"), tmp_path / "schemas")
    for f in jobs.glob("*.xml"):
        text = f.read_text()
        text = text.replace('<set key="database">${target_db}</set>',
                            '<set key="database">${target_db}</set>'
                            '<set key="busy_timeout_ms">200</set>')
        f.write_text(text)
    return Rig(tmp_path / "run", jobs=str(jobs),
               extra="[delivery]\nmax_attempts = 50\nbackoff_initial_ms = 200\n"
                     "backoff_max_ms = 1000\n" + extra)


def test_target_locked_is_retry_and_cpu_stays_low(tmp_path, daemons):
    rig = locked_target_rig(tmp_path)
    # the target exists with its table before the lock
    rig.drop(SAMPLES[0])
    d = daemons(rig, tmp_path / "rekeyd.log")
    rig.wait_for(lambda: delivered(rig, 1), what="the first delivery")
    ready, release = threading.Event(), threading.Event()
    locker = threading.Thread(target=hold_lock, args=(rig.target, 25.0, ready, release))
    locker.start()
    try:
        assert ready.wait(10)
        rig.drop(*SAMPLES[1:])
        rig.wait_for(lambda: rig.q("SELECT count(*) FROM deliveries WHERE attempts >= 1"
                                   " AND state <> 'delivered'")
                     == [(2,)], what="deliveries waiting for the locked target")
        # backing off, not spinning: well below a busy loop
        share = d.cpu_share(4.0)
        attempts_locked = rig.q("SELECT max(attempts) FROM deliveries")[0][0]
        assert rig.q("SELECT count(*) FROM jobs WHERE state = 'delivered'") == [(1,)]
    finally:
        release.set()
        locker.join()
    print(f"cpu while the target was locked: {share:.1%} of a core")
    assert share < 0.10, f"rekeyd used {share:.0%} of a core while the target was locked"
    rig.wait_for(lambda: delivered(rig, 3), timeout=30, what="delivery after the lock")
    assert attempts_locked >= 2  # retried, not given up or parked in review
    assert rig.q("SELECT count(*) FROM jobs WHERE state IN ('failed', 'review')") == [(0,)]
    assert re.search(r"-> retry_wait by rekeyd: sqlite: attempt \d+: .*database is locked",
                     d.text())
    assert len(rig.target_rows("besucherparkausweis")) == 3
    assert d.stop() == 0


def test_idle_cpu_with_an_empty_inbox(tmp_path, daemons):
    rig = Rig(tmp_path / "run")
    d = daemons(rig, tmp_path / "rekeyd.log")
    d.wait_log("running: inbox")
    time.sleep(0.5)
    share = d.cpu_share(5.0)
    print(f"cpu idle: {share:.1%} of a core")
    assert share < 0.05, f"idle rekeyd used {share:.0%} of a core"
    assert d.stop() == 0


def test_sigterm_while_the_target_is_locked_exits_in_bounded_time(tmp_path, daemons):
    """SIGTERM under load with deliveries stuck on a lock: rekeyd exits within
    a bounded time, no job is left delivering, and a restart delivers all."""
    rig = locked_target_rig(tmp_path)
    rig.drop(SAMPLES[0])
    rig.run_once()
    ready, release = threading.Event(), threading.Event()
    locker = threading.Thread(target=hold_lock, args=(rig.target, 25.0, ready, release))
    locker.start()
    try:
        assert ready.wait(10)
        d = daemons(rig, tmp_path / "rekeyd.log")
        data = open(SAMPLES[1], "rb").read()
        for i in range(10):
            rig.drop_bytes(f"load{i:02d}.xml", data)
        rig.wait_for(lambda: rig.q("SELECT count(*) FROM deliveries WHERE attempts >= 1"
                                   " AND state <> 'delivered'")[0][0] >= 3, timeout=20, what="deliveries retrying on the lock")
        t0 = time.monotonic()
        rc = d.stop(timeout=20)
        took = time.monotonic() - t0
    finally:
        release.set()
        locker.join()
    assert rc == 0 and took < 10, (rc, took)
    assert "draining" in d.text()
    assert rig.q("SELECT count(*) FROM jobs WHERE state = 'delivering'") == [(0,)]
    # a restart delivers the rest (retry_wait jobs when they are due)
    d2 = daemons(rig, tmp_path / "rekeyd-2.log")

    def settled():
        states = [s for (s,) in rig.q("SELECT state FROM jobs")]
        return len(states) == 11 and set(states) <= {"delivered", "review"}
    rig.wait_for(settled, what="every job delivered or held after the restart")
    assert d2.stop() == 0
    states = [s for (s,) in rig.q("SELECT state FROM jobs")]
    assert len(rig.target_rows("besucherparkausweis")) == states.count("delivered")


def test_disk_full_once_ends_and_leaves_the_files(tmp_path, small_fs):
    """--once when the disk fills during intake does not wait for space
    (nothing would end the pause): it ends, the files it could not store stay
    in the inbox, and the next run with space takes them in."""
    rig = Rig(tmp_path / "run")
    rig.db = str(small_fs / "rekey.db")
    rig.write_config()
    rig.run_once()  # creates the store
    filler = fill(small_fs)
    # leave room to open the store, not for 300 submissions
    os.truncate(filler, os.path.getsize(filler) - 160 * 1024)
    data = open(SAMPLES[0], "rb").read()
    for i in range(300):
        rig.drop_bytes(f"s{i:03d}.xml", data)
    t0 = time.monotonic()
    p = rig.run_once(timeout=60, check=False)
    assert time.monotonic() - t0 < 45
    assert "SQLITE_FULL" in p.stderr, p.stderr[-3000:]
    stored = rig.q("SELECT count(*) FROM submissions")[0][0]
    assert stored < 300
    assert len(inbox_files(rig)) == 300 - stored
    assert not os.path.isdir(rig.error) or os.listdir(rig.error) == []
    os.unlink(filler)
    rig.run_once()
    assert rig.q("SELECT count(*) FROM submissions") == [(300,)]
    assert inbox_files(rig) == []
    assert rig.q("SELECT count(*) FROM jobs WHERE state NOT IN ('delivered', 'review')") \
        == [(0,)]
    assert rig.q("PRAGMA integrity_check") == [("ok",)]


def test_start_on_a_full_disk_says_why(tmp_path, small_fs):
    """A start with the database's disk already full is refused with the
    cause named; the inbox is left alone."""
    rig = Rig(tmp_path / "run")
    rig.db = str(small_fs / "rekey.db")
    rig.write_config()
    rig.run_once()
    filler = fill(small_fs)
    rig.drop(SAMPLES[0])
    p = rig.run_once(timeout=30, check=False)
    assert p.returncode != 0
    assert "cannot prepare database" in p.stderr and "is the disk full" in p.stderr, p.stderr
    assert len(inbox_files(rig)) == 1
    os.unlink(filler)
    rig.run_once()
    assert delivered(rig, 1)


def test_delivery_not_recorded_is_delivered_again_without_restart(tmp_path, daemons):
    """The target took the record, but the store was locked when rekeyd went
    to record it: the job is not left 'delivering' until the next start; once
    the store can be written it is delivered again with the same idempotency
    key (the target sees the key twice and keeps one)."""
    from test_target_faults import make_rig
    rig, control, calls = make_rig(tmp_path)
    with open(rig.config) as f:
        cfg = f.read().replace("[rekeyd]\n", "[rekeyd]\nbusy_timeout_ms = 300\n", 1)
    with open(rig.config, "w") as f:
        f.write(cfg)
    control.write_text("SLOW\n")  # each delivery takes 2 s
    d = daemons(rig, tmp_path / "rekeyd.log")
    rig.drop(SAMPLES[0])
    rig.wait_for(lambda: rig.q("SELECT state FROM jobs") == [("delivering",)],
                 what="the delivery in flight")
    ready, release = threading.Event(), threading.Event()
    locker = threading.Thread(target=hold_lock, args=(rig.db, 20.0, ready, release))
    locker.start()
    try:
        assert ready.wait(10)
        d.wait_log("results failed: database is locked", timeout=15)
        control.write_text("OK\n")
        time.sleep(1.0)
        assert rig.q("SELECT state FROM jobs") == [("delivering",)]
    finally:
        release.set()
        locker.join()
    rig.wait_for(lambda: delivered(rig, 1), timeout=20,
                 what="delivery recorded without a restart")
    reasons = [r for (r,) in rig.q("SELECT reason FROM events ORDER BY id")]
    assert any("result not recorded; delivering again with the same key" in (r or "")
               for r in reasons), reasons
    keys = [line.split()[0] for line in open(calls).read().splitlines()]
    assert len(keys) == 2 and keys[0] == keys[1]  # the same idempotency key twice
    assert "SQLITE_BUSY" in d.text()
    assert d.stop() == 0


def test_loop_answers_while_a_commit_waits_for_a_lock(tmp_path):
    """Commits run on rekeyd's writer thread: while one waits for a lock
    that another process holds, the event loop goes on and answers HTTP
    (before, the loop itself waited, up to busy_timeout_ms)."""
    import http.client
    from apihelp import Daemon as HttpDaemon, http_section
    rig = Rig(tmp_path / "run", extra=http_section())
    with open(rig.config) as f:
        cfg = f.read().replace("[rekeyd]\n", "[rekeyd]\nbusy_timeout_ms = 60000\n", 1)
    with open(rig.config, "w") as f:
        f.write(cfg)
    d = HttpDaemon(rig)
    ready, release = threading.Event(), threading.Event()
    locker = threading.Thread(target=hold_lock, args=(rig.db, 90.0, ready, release))
    locker.start()
    try:
        assert ready.wait(10)
        rig.drop(SAMPLES[0])
        rig.wait_for(lambda: rig.claimed()
                     and not [f for f in os.listdir(rig.inbox) if not f.startswith(".")],
                     what="the file claimed")
        time.sleep(1.0)  # read, hashed, compressed: its commit waits for the lock
        c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
        c.request("GET", "/healthz")
        r = c.getresponse()
        body = r.read()
        c.close()
        assert r.status == 200, body
        assert locker.is_alive(), "the lock was gone before the answer"
        assert rig.q("SELECT count(*) FROM submissions") == [(0,)]
    finally:
        release.set()
        locker.join()
    rig.wait_for(lambda: delivered(rig, 1), timeout=30, what="delivery after the lock")
    assert len(rig.target_rows("besucherparkausweis")) == 1
    assert inbox_files(rig) == []
    log = d.stop()
    assert "SQLITE_BUSY" not in log  # waited, not failed


def test_one_result_the_store_refuses_leaves_its_file_and_not_the_others(tmp_path, daemons):
    """A group commit in which one document's writes fail (here a trigger
    refuses its fields) is written again item by item: the others are
    stored and delivered, the refused one is not stored, not sent to the
    error folder (the file is fine; the store said no), stays claimed and
    is taken in again once the store takes it."""
    rig = Rig(tmp_path / "run", extra="")
    base = open(SAMPLES[0], "rb").read()
    d = daemons(rig, tmp_path / "rekeyd.log")
    rig.wait_for(lambda: os.path.exists(rig.db) and rig.q(
        "SELECT count(*) FROM sqlite_master WHERE name = 'job_fields'") == [(1,)],
        what="the store")
    con = sqlite3.connect(rig.db, timeout=30, isolation_level=None)
    try:
        con.execute("CREATE TRIGGER refuse BEFORE INSERT ON job_fields WHEN NEW.data LIKE"
                    " '%\"Sonderfall\"%' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")
    finally:
        con.close()
    names = [f"antrag-{i}.xml" for i in range(8)]
    for i, name in enumerate(names):
        data = base.replace("Köhler".encode(), ("Sonderfall" if i == 3 else f"Köhler{i}")
                            .encode())
        rig.drop_bytes(name, data)
    rig.wait_for(lambda: delivered(rig, 7), what="the seven others delivered")
    d.wait_log("refused by the test")
    assert rig.q("SELECT count(*) FROM submissions WHERE source_ref = 'antrag-3.xml'") == [(0,)]
    assert [f for f in inbox_files(rig) if f.startswith("antrag-3.xml")], inbox_files(rig)
    assert not os.path.exists(os.path.join(rig.error, "antrag-3.xml"))
    con = sqlite3.connect(rig.db, timeout=30, isolation_level=None)
    try:
        con.execute("DROP TRIGGER refuse")
    finally:
        con.close()
    rig.wait_for(lambda: delivered(rig, 8), timeout=40, what="the eighth after the store took it")
    # the claim folder leaves for the archive once it takes no new files
    rig.wait_for(lambda: inbox_files(rig) == [], what="the claim folder archived")
    assert os.listdir(rig.error) == []
    assert sorted(rig.archived()) == names
    assert len(rig.target_rows("besucherparkausweis")) == 8
    assert d.stop() == 0
