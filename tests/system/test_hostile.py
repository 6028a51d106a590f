"""Hostile input and the daemon's own security (issue 7, parts 4 and 7).

The corpus of tests/data/hostile/ (built by its make.py, with the 100 MB
document written into the test's temp folder) is dropped together with
valid samples, odd file names, a symbolic link pointing out of the inbox,
a FIFO and a file that is still being written.  One `rekeyd --once` run
must refuse every hostile input with a clear reason, deliver every valid
one, lose nothing and exit 0.  Further tests: a file replaced while it is
read, the modes of what rekeyd creates, the refusal to run as root, and
secrets that must appear nowhere.
"""
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import zlib

import pytest

from conftest import DATA, REKEYCTL, REKEYD, ROOT, Rig
from httptarget import HttpTarget
from pgserver import pg_server  # noqa: F401  (pytest fixture)

sys.path.insert(0, os.path.join(DATA, "hostile"))
import make  # noqa: E402  (tests/data/hostile/make.py)

VALID_UTF8 = {  # dropped under their own names
    "besucherparkausweis-01-tag.xml": "besucherparkausweis",
    "gewerbeanmeldung-02-gmbh.xml": "gewerbeanmeldung",
}
GROWING = "fischereischein-01-erstausstellung.xml"  # written slowly while rekeyd runs
DOTS = "a..b.xml"  # a valid sample under a name with ".."
DOTS_SAMPLE = "fischereischein-03-verlaengerung.xml"
# names that are refused, each holding a valid sample: the name alone decides
BAD_NAMES = {
    b"a\nb.xml": "control characters",
    b"esc\x1b[31mrot.xml": "control characters",
    b"tab\tname.xml": "control characters",
    b"lat\xe4in1.xml": "not valid UTF-8",
    b"L" * 230 + b".xml": "longer than 200 bytes",
}
HIDDEN = "..versteckt.xml"  # starts with a dot: a writer's temp file, left alone
SETTLE_MS = 800


def sample(name):
    with open(os.path.join(DATA, "samples", name), "rb") as f:
        return f.read()


def rewrite_config(rig, **kv):
    """Changes keys the Rig wrote (settle_ms, log_level, ...) in place."""
    with open(rig.config) as f:
        text = f.read()
    for k, v in kv.items():
        text, n = re.subn(rf"^{k} = .*$", f"{k} = {v}", text, flags=re.M)
        assert n == 1, k
    with open(rig.config, "w") as f:
        f.write(text)


def run_once_bytes(rig, *extra, env=None, timeout=90):
    p = subprocess.run([REKEYD, "--config", rig.config, "--once", *extra],
                       capture_output=True, timeout=timeout, env=env)
    return p.returncode, p.stderr


def assert_safe_log(err):
    """Every log line is valid UTF-8 without control characters: a file
    name can neither forge a line nor drive the operator's terminal."""
    text = err.decode("utf-8")  # strict: raises on invalid UTF-8
    for line in text.split("\n"):
        bad = [c for c in line if ord(c) < 0x20 or ord(c) == 0x7F]
        assert not bad, repr(line)
    return text


def db_dump(path):
    """All text of an SQLite database, as `sqlite3 DB .dump` prints it."""
    p = subprocess.run(["sqlite3", path, ".dump"], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout.decode("utf-8", "replace")


def payload(rig, job_id):
    (z,) = rig.q("SELECT s.payload FROM jobs j JOIN submissions s ON s.id = j.submission_id"
                 " WHERE j.id = ?", job_id)[0]
    return zlib.decompress(z)


def mapped_by_rekeyctl(job, sample_rel, target_db):
    """The record `rekeyctl map` makes of a UTF-8 sample: name -> value."""
    p = subprocess.run([REKEYCTL, "map", os.path.join(ROOT, "jobs", job + ".xml"),
                        os.path.join(DATA, sample_rel), "--json", "--var",
                        f"target_db={target_db}"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return {f["name"]: f["value"] for f in json.loads(p.stdout)["fields"]}


def atime_is_tracked(folder):
    """True when reading a file with an old atime updates it here (relatime
    or strictatime); on noatime mounts the atime check says nothing."""
    probe = os.path.join(folder, "atime-probe")
    with open(probe, "w") as f:
        f.write("x")
    old = time.time() - 3 * 86400
    os.utime(probe, (old, old - 86400))
    with open(probe) as f:
        f.read()
    return os.stat(probe).st_atime > old + 1


def grow(path, data, pieces=12, pause=0.1):
    """Writes data into path in pieces, pause seconds apart (a slow writer
    working in place, not writing a temp file and renaming)."""
    step = -(-len(data) // pieces)
    with open(path, "wb") as f:
        for i in range(0, len(data), step):
            f.write(data[i:i + step])
            f.flush()
            time.sleep(pause)


def test_hostile_corpus_refused_and_valid_samples_delivered(tmp_path):
    with HttpTarget(default={"status": 200, "body": "<!ENTITY x 'gotcha'>"}) as srv:
        rig = Rig(tmp_path / "run")
        rewrite_config(rig, settle_ms=str(SETTLE_MS))
        gen = str(tmp_path / "gen")
        exp = make.build(gen, port=srv.port, big=True)
        for name in exp:
            os.rename(os.path.join(gen, name), os.path.join(rig.inbox, name))
        for name in VALID_UTF8:
            rig.drop("samples/" + name)
        rig.drop_bytes(DOTS, sample(DOTS_SAMPLE))
        rig.drop_bytes(HIDDEN, sample("besucherparkausweis-03-monat.xml"))
        inbox_b = os.fsencode(rig.inbox)
        for name in BAD_NAMES:
            with open(os.path.join(inbox_b, name), "wb") as f:
                f.write(sample("gewerbeanmeldung-01-einzelunternehmen.xml"))
        # a symbolic link to a file outside the inbox, and a FIFO: neither
        # may ever be opened
        outside = tmp_path / "outside"
        outside.mkdir()
        secret = outside / "geheim.xml"
        marker = "AUSSERHALB-DES-POSTEINGANGS-7731"
        secret.write_text(f"<geheim>{marker}</geheim>\n")
        old = time.time() - 3 * 86400
        os.utime(secret, (old, old - 86400))
        tracked = atime_is_tracked(str(outside))
        secret_stat = os.stat(secret)
        os.symlink(secret, os.path.join(rig.inbox, "link.xml"))
        os.symlink("/etc/passwd", os.path.join(rig.inbox, "passwd.xml"))
        os.mkfifo(os.path.join(rig.inbox, "fifo.xml"))
        # the slow writer starts before rekeyd and ends about 1.2 s later
        growing = sample(GROWING)
        gpath = os.path.join(rig.inbox, GROWING)
        with open(gpath, "wb") as f:
            f.write(growing[:40])
        writer = threading.Thread(target=grow, args=(gpath, growing))
        writer.start()
        t0 = time.monotonic()
        try:
            rc, err = run_once_bytes(rig)
        finally:
            writer.join()
        took = time.monotonic() - t0
        text = assert_safe_log(err)
        assert rc == 0, text[-3000:]
        assert "open handles" not in text

        # nothing was fetched: no entity, no DTD, no schema from the network
        assert srv.requests == [], srv.requests

    jobs = rig.jobs_by_ref()
    errors = set(os.listdir(os.fsencode(rig.error)))

    def reason(name):
        with open(os.path.join(os.fsencode(rig.error), os.fsencode(name) + b".reason"),
                  "rb") as f:
            return f.read().decode("utf-8").strip()

    delivered = {}
    for name, e in exp.items():
        if e["outcome"] == "error":
            assert name not in jobs, name
            assert os.fsencode(name) in errors, name
            assert e["reason"].lower() in reason(name).lower(), (name, reason(name))
            continue
        assert name in jobs, f"{name} was not taken in"
        j = jobs[name]
        assert j["state"] == e["outcome"], (name, j, rig.codes(j["id"]))
        if e["outcome"] == "failed":
            assert rig.codes(j["id"]) == e["codes"], name
            (msg,) = rig.q("SELECT message FROM anomalies WHERE job_id = ?", j["id"])[0]
            assert e["message"].lower() in msg.lower(), (name, msg)
            assert "\n" not in msg, msg
        elif e["outcome"] == "review":
            assert j["job"] == e["job"] and set(e["codes"]) <= set(rig.codes(j["id"])), name
        else:
            assert j["job"] == e["job"], name
            delivered.setdefault(j["job"], []).append(j["id"])
            # the UTF-16 twin gives exactly the record of its UTF-8 sample
            want = mapped_by_rekeyctl(e["job"], e["twin"], rig.target)
            (row,) = rig.target_rows(e["job"], f"rk_submission = '{j['id']}'")
            got = {k: v for k, v in row.items() if not k.startswith("rk_")}
            assert got == want, name
    # the deep document names libxml2's fixed limit
    (msg,) = rig.q("SELECT message FROM anomalies WHERE job_id = ?",
                   jobs["deep-nesting.xml"]["id"])[0]
    assert "256 Ebenen" in msg, msg
    # the 100 MB document was refused by its size alone
    assert "104857600 bytes, limit is 10485760 (inbox.max_file_size)" in reason("big-100mb.xml")

    # valid UTF-8 samples, the one under a name with "..", and the slowly
    # written one are delivered
    for name, job in list(VALID_UTF8.items()) + [(DOTS, "fischereischein"),
                                                 (GROWING, "fischereischein")]:
        assert jobs[name]["state"] == "delivered", (name, rig.codes(jobs[name]["id"]))
        delivered.setdefault(job, []).append(jobs[name]["id"])
    assert DOTS in rig.archived()
    # the growing file was taken only when complete, and stored whole
    gid = jobs[GROWING]["id"]
    assert payload(rig, gid) == growing
    (sha,) = rig.q("SELECT s.sha256 FROM jobs j JOIN submissions s ON s.id = j.submission_id"
                   " WHERE j.id = ?", gid)[0]
    assert sha == hashlib.sha256(growing).hexdigest()
    assert took >= 1.2 + SETTLE_MS / 1000 - 0.2, took
    # the target holds exactly the delivered records
    for job, ids in delivered.items():
        assert sorted(int(r["rk_submission"]) for r in rig.target_rows(job)) == sorted(ids)

    # refused names: error folder with a reason, never in the store, and
    # escaped in the log
    for name, words in BAD_NAMES.items():
        stored = name[:200] + b"~" if len(name) > 200 else name
        assert stored in errors and stored + b".reason" in errors, name
        with open(os.path.join(os.fsencode(rig.error), stored + b".reason"), "rb") as f:
            assert words in f.read().decode("utf-8"), name
    refs = {r for (r,) in rig.q("SELECT CAST(source_ref AS BLOB) FROM submissions")}
    assert not {n for n in BAD_NAMES} & refs
    assert "a\\x0Ab.xml moved to the error folder" in text
    assert "esc\\x1B[31mrot.xml moved to the error folder" in text
    assert "lat\\xE4in1.xml moved to the error folder" in text

    # the links and the FIFO were moved as they are, never followed
    for name in ("link.xml", "passwd.xml", "fifo.xml"):
        assert name not in jobs, name
        assert os.fsencode(name) in errors, name
    assert os.path.islink(os.path.join(rig.error, "link.xml"))
    assert os.readlink(os.path.join(rig.error, "link.xml")) == str(secret)
    assert "symbolic link: not followed" in reason("link.xml")
    assert "FIFO" in reason("fifo.xml")
    st = os.stat(secret)
    assert (st.st_ino, st.st_mode, st.st_size, st.st_mtime) == \
        (secret_stat.st_ino, secret_stat.st_mode, secret_stat.st_size, secret_stat.st_mtime)
    if tracked:
        assert st.st_atime == secret_stat.st_atime, "the file outside the inbox was read"
    assert secret.read_text() == f"<geheim>{marker}</geheim>\n"
    with open("/etc/passwd") as f:
        passwd_line = f.readline().strip()
    everything = db_dump(rig.db) + db_dump(rig.target) + text
    for paths in rig.archived().values():
        for path in paths:
            with open(path, "rb") as fh:
                everything += fh.read().decode("utf-8", "replace")
    assert marker not in everything
    assert passwd_line not in everything
    assert "gotcha" not in everything

    # nothing lost: the inbox holds only the hidden file, nothing is left
    # claimed, and every file dropped is in the archive or the error folder
    assert sorted(os.listdir(rig.inbox)) == sorted([".claimed", HIDDEN])
    assert os.listdir(os.path.join(rig.inbox, ".claimed")) == []
    dropped = len(exp) + len(VALID_UTF8) + 1 + len(BAD_NAMES) + 3 + 1
    archived = sum(len(v) for v in rig.archived().values())
    refused = len([e for e in errors if not e.endswith(b".reason")])
    assert archived == len(jobs) and archived + refused == dropped, (archived, refused)


def padded(name, n_bytes):
    """A valid sample grown to about n_bytes by a comment, so that reading
    it takes a while."""
    data = sample(name)
    return data.replace(b"<Antrag", b"<!-- " + b"x" * n_bytes + b" -->\n<Antrag", 1)


def test_file_replaced_while_being_read_is_stored_whole(tmp_path):
    rig = Rig(tmp_path / "run")
    a = padded("besucherparkausweis-01-tag.xml", 4 << 20)
    b = padded("besucherparkausweis-02-woche.xml", 3 << 20)
    want = {hashlib.sha256(a).hexdigest(): a, hashlib.sha256(b).hexdigest(): b}
    claimed = os.path.join(rig.inbox, ".claimed")
    stop = time.monotonic() + 1.5
    renames = [0]

    def replace(path, data, k):
        tmp = os.path.join(rig.inbox, f".r{k}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        old = time.time() - 60  # old: taken at once, as a finished file
        os.utime(tmp, (old, old))
        os.rename(tmp, path)
        renames[0] += 1

    def replacer():
        k = 0
        while time.monotonic() < stop:
            k += 1
            replace(os.path.join(rig.inbox, "r.xml"), a if k % 2 else b, k)
            # and over the file rekeyd has just claimed and may be reading
            for folder in os.listdir(claimed):
                if not os.path.exists(os.path.join(claimed, folder, "r.xml")):
                    continue
                k += 1
                try:
                    replace(os.path.join(claimed, folder, "r.xml"), b if k % 2 else a, k)
                except (FileNotFoundError, NotADirectoryError):
                    pass
            time.sleep(0.01)

    def drained():
        busy = rig.q("SELECT count(*) FROM jobs WHERE state IN ('received', 'validated',"
                     " 'mapped', 'ready', 'delivering')")
        return busy == [(0,)] and not os.path.exists(os.path.join(rig.inbox, "r.xml"))

    d = rig.start()
    try:
        rig.wait_for(lambda: os.path.isdir(claimed), what="the inbox")
        t = threading.Thread(target=replacer)
        t.start()
        t.join()
        rig.wait_for(drained, what="the last version to be taken and the queue to drain")
        time.sleep(0.3)
        rig.wait_for(drained, what="the queue to drain")
    finally:
        d.send_signal(signal.SIGTERM)
        _, err = d.communicate(timeout=30)
    assert d.returncode == 0, err[-3000:]
    # versions renamed over claimed files after rekeyd had stored them
    # leave with their claim folder, or, when rekeyd stopped first, stay
    # in it; the next start takes them as leftovers
    orphans = rig.claimed()
    rc, err = run_once_bytes(rig)
    assert rc == 0, err[-3000:]
    assert [c for c in os.listdir(claimed) if not c.startswith(".")] == []
    if orphans:
        assert b"left by an earlier run" in err
    rows = rig.q("SELECT j.id, s.sha256, s.size, j.state FROM jobs j"
                 " JOIN submissions s ON s.id = j.submission_id")
    assert len(rows) >= 2 and renames[0] >= 10, (len(rows), renames)
    for job_id, sha, size, state in rows:
        assert sha in want, f"job {job_id}: a mix of two versions was stored"
        data = payload(rig, job_id)
        assert data == want[sha] and size == len(data)
        assert state in ("delivered", "review"), (job_id, state)
    # a version that changed under the reader would have been refused, with a reason
    for f in os.listdir(rig.error):
        if f.endswith(".reason"):
            with open(os.path.join(rig.error, f)) as fh:
                assert "changed while it was read" in fh.read()


def mode(path):
    return os.stat(path).st_mode & 0o7777


def test_files_rekeyd_creates_are_private(tmp_path):
    rig = Rig(tmp_path / "run")
    # folders rekeyd must create itself, under a permissive umask
    rig.archive = str(tmp_path / "run" / "spool" / "archive")
    rig.error = str(tmp_path / "run" / "spool" / "error")
    rig.write_config()
    shutil.rmtree(rig.inbox)
    rig.inbox = str(tmp_path / "run" / "spool" / "inbox")
    with open(rig.config) as f:
        cfg = f.read().replace(str(tmp_path / "run" / "inbox"), rig.inbox)
    with open(rig.config, "w") as f:
        f.write(cfg)
    d = subprocess.Popen([REKEYD, "--config", rig.config], stderr=subprocess.PIPE,
                         preexec_fn=lambda: os.umask(0))
    try:
        rig.wait_for(lambda: os.path.isdir(os.path.join(rig.inbox, ".claimed")),
                     what="the inbox")
        # written under dot names and renamed in, as settle_ms = 0 requires
        good = os.path.join(rig.inbox, ".gut.xml.tmp")
        with open(good, "wb") as f:
            f.write(sample("besucherparkausweis-01-tag.xml"))
        os.chmod(good, 0o644)
        os.rename(good, os.path.join(rig.inbox, "gut.xml"))
        bad = os.path.join(rig.inbox, ".notiz.txt.tmp")
        with open(bad, "w") as f:
            f.write("kein XML")
        os.chmod(bad, 0o666)
        os.rename(bad, os.path.join(rig.inbox, "notiz.txt"))
        rig.wait_for(lambda: rig.q("SELECT state FROM jobs") == [("delivered",)],
                     what="delivery")
        rig.wait_for(lambda: os.path.exists(os.path.join(rig.error, "notiz.txt.reason")),
                     what="the refusal")
        # while rekeyd runs, the queue is in WAL mode with its -wal and -shm
        for suffix in ("", "-wal", "-shm"):
            assert os.path.exists(rig.db + suffix), suffix
            assert mode(rig.db + suffix) == 0o600, (suffix, oct(mode(rig.db + suffix)))
        for folder in (os.path.dirname(rig.inbox), rig.inbox,
                       os.path.join(rig.inbox, ".claimed"), rig.archive, rig.error):
            assert mode(folder) == 0o700, (folder, oct(mode(folder)))
        rig.wait_for(lambda: "gut.xml" in rig.archived(), what="the archive")
        (gut,) = rig.archived()["gut.xml"]
        for folder in (os.path.dirname(gut), os.path.dirname(os.path.dirname(gut))):
            assert mode(folder) == 0o700, (folder, oct(mode(folder)))
        for f in (gut, os.path.join(rig.error, "notiz.txt"),
                  os.path.join(rig.error, "notiz.txt.reason"), rig.target):
            assert mode(f) == 0o600, (f, oct(mode(f)))
        # the threads carry names for top -H and perf (docs/operations.md)
        names = set()
        for tid in os.listdir(f"/proc/{d.pid}/task"):
            with open(f"/proc/{d.pid}/task/{tid}/comm") as fh:
                names.add(fh.read().strip())
        assert {"rekeyd", "rk-writer", "rk-worker", "rk-checkpoint"} <= names, names
    finally:
        d.send_signal(signal.SIGTERM)
        _, err = d.communicate(timeout=30)
    assert d.returncode == 0, err


def test_refuses_to_run_as_root_unless_told(tmp_path):
    rig = Rig(tmp_path / "run")
    rig.drop("samples/besucherparkausweis-01-tag.xml")
    env = {k: v for k, v in os.environ.items() if k != "REKEY_ALLOW_ROOT"}
    if os.geteuid() != 0:
        rc, err = run_once_bytes(rig, env=env)
        assert rc == 0, err
        pytest.skip("not root: only checked that a service user needs no flag")
    for value in (None, "", "0"):
        e = dict(env)
        if value is not None:
            e["REKEY_ALLOW_ROOT"] = value
        for args in ((), ("--check",)):
            p = subprocess.run([REKEYD, "--config", rig.config, "--once", *args],
                               capture_output=True, text=True, env=e, timeout=30)
            assert p.returncode == 1, (value, args, p.stderr)
            assert p.stderr == ("rekeyd: refusing to run as root: start it as the service "
                                "user (see docs/security.md), or pass --allow-root\n")
    # refused before it touched anything
    assert not os.path.exists(rig.db)
    assert os.listdir(rig.inbox) == ["besucherparkausweis-01-tag.xml"]
    rc, err = run_once_bytes(rig, "--allow-root", env=env)
    assert rc == 0, err
    assert rig.q("SELECT state FROM jobs") == [("delivered",)]
    rig.drop("samples/besucherparkausweis-02-woche.xml")
    rc, err = run_once_bytes(rig, env=dict(env, REKEY_ALLOW_ROOT="1"))
    assert rc == 0, err
    assert rig.q("SELECT state FROM jobs") == [("delivered",), ("delivered",)]


PG_SECRET = "pw-GEHEIM-PG-8472"
TOKEN = "tok-GEHEIM-REST-5531"
DOWN_SECRET = "pw-GEHEIM-DOWN-2290"


def connector_jobs(tmp_path, conns):
    """jobs/ and schemas/ side by side in tmp_path, each job's sqlite
    connector replaced by conns[job] (XML of one or more <connector>)."""
    jobs = tmp_path / "jobs"
    shutil.copytree(os.path.join(ROOT, "jobs"), jobs)
    shutil.copytree(os.path.join(ROOT, "schemas"), tmp_path / "schemas")
    for job, conn in conns.items():
        f = jobs / f"{job}.xml"
        text, n = re.subn(r'<connector plugin="sqlite">.*?</connector>', conn, f.read_text(),
                          flags=re.S)
        assert n == 1, f
        f.write_text(text)
    return str(jobs)


def rest(url, name=None):
    return (f'<connector{f" name={chr(34)}{name}{chr(34)}" if name else ""} plugin="rest">'
            f'<set key="url">{url}</set><set key="bearer_token">{TOKEN}</set></connector>')


def postgres(conninfo, table, name=None):
    return (f'<connector{f" name={chr(34)}{name}{chr(34)}" if name else ""} plugin="postgres">'
            f'<set key="conninfo">{conninfo}</set><set key="table">{table}</set></connector>')


def everything_shown(rig, *texts):
    """What an operator or a log reader can see: the given outputs, rekeyctl
    list and show (text and JSON) of every job, and the whole queue."""
    shown = list(texts) + [rig.ctl("list").stdout, rig.ctl("list", "--json").stdout]
    for (job_id,) in rig.q("SELECT id FROM jobs"):
        shown.append(rig.ctl("show", str(job_id)).stdout)
        shown.append(rig.ctl("show", str(job_id), "--json").stdout)
    return "\n".join(shown + [db_dump(rig.db)])


def test_secrets_appear_nowhere(tmp_path, pg_server):
    """A password in a PostgreSQL conninfo and a REST bearer token, used by
    deliveries that succeed and by deliveries that fail (server not there,
    connection refused), are in no log line, no `rekeyctl list/show`
    output, no error message and nowhere in the queue database."""
    down = f"host={tmp_path}/nowhere port=1 dbname=x password={DOWN_SECRET} connect_timeout=2"
    with HttpTarget(default={"status": 201, "body": {"id": 7}}) as ok:
        rig = Rig(tmp_path / "run", jobs=connector_jobs(tmp_path, {
            "fischereischein": postgres(f"{pg_server.conninfo} password={PG_SECRET}",
                                        "fischereischein"),
            "besucherparkausweis": rest(ok.url("/in")),
            "gewerbeanmeldung": postgres(down, "gewerbe", "pg") +
                                rest("http://127.0.0.1:1/in", "web"),
        }))
        for s in ("fischereischein-02-erstausstellung.xml", "besucherparkausweis-01-tag.xml",
                  "gewerbeanmeldung-01-einzelunternehmen.xml"):
            rig.drop("samples/" + s)
        check = subprocess.run([REKEYD, "--config", rig.config, "--check"],
                               capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
        rc, err = run_once_bytes(rig)
        text = err.decode("utf-8", "replace")
        assert rc == 0, text
        assert ok.requests[0].header("Authorization") == f"Bearer {TOKEN}"
    states = {r["job"]: r["state"] for r in rig.jobs_by_ref().values()}
    assert states == {"fischereischein": "delivered", "besucherparkausweis": "delivered",
                      "gewerbeanmeldung": "retry_wait"}, states
    assert pg_server.psql("SELECT count(*) FROM fischereischein") == "1"
    (last_error,) = rig.q("SELECT last_error FROM jobs WHERE job = 'gewerbeanmeldung'")[0]
    assert "Couldn't connect" in last_error, last_error
    (why,) = rig.q("SELECT e.reason FROM events e JOIN jobs j ON j.id = e.job_id"
                   " WHERE j.job = 'gewerbeanmeldung' AND e.to_state = 'retry_wait'")[0]
    assert "pg: attempt 1" in why and "web: attempt 1" in why, why
    everything = everything_shown(rig, text, check.stdout, check.stderr)
    for secret in (PG_SECRET, TOKEN, DOWN_SECRET):
        assert secret not in everything, secret


def test_secret_echoed_by_a_compromised_target_is_redacted(tmp_path):
    """A target that sends the caller's credentials back in its error text
    must not get them into the log, the job's last error or the trail."""
    def echo(req):
        return {"status": 500, "body": {"error": f"denied: {req.header('Authorization')}"}}

    with HttpTarget(reply_for=echo) as evil:
        rig = Rig(tmp_path / "run", jobs=connector_jobs(tmp_path, {
            "besucherparkausweis": rest(evil.url("/in"))}))
        rig.drop("samples/besucherparkausweis-01-tag.xml")
        rc, err = run_once_bytes(rig)
        assert rc == 0, err
        assert evil.requests[0].header("Authorization") == f"Bearer {TOKEN}"
    assert rig.q("SELECT state FROM jobs") == [("retry_wait",)]
    assert TOKEN not in everything_shown(rig, err.decode("utf-8", "replace"))


def test_connector_messages_keep_log_lines_whole(tmp_path):
    down = f"host={tmp_path}/nowhere port=1 dbname=x connect_timeout=2"
    rig = Rig(tmp_path / "run", jobs=connector_jobs(tmp_path, {
        "besucherparkausweis": postgres(down, "bpa")}))
    rig.drop("samples/besucherparkausweis-01-tag.xml")
    rc, err = run_once_bytes(rig)
    assert rc == 0, err
    assert rig.q("SELECT state FROM jobs") == [("retry_wait",)]
    assert_safe_log(err)
