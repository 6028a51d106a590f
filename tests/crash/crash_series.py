#!/usr/bin/python3
"""Crash series: runs rekeyd on a load of submissions, kills it with SIGKILL
at random moments (during intake, processing, delivery, commits), restarts
it, and repeats; then lets it finish and checks that nothing was lost or
delivered twice:

- every file dropped is stored exactly once (or, if unreadable, in the
  error folder) and none is left in the inbox;
- every job is finished (delivered, review or failed): none stuck;
- every delivered job is in the target exactly once, and nothing else is;
- PRAGMA integrity_check is ok for the queue and the target.

Usage: crash_series.py [--files N] [--kills K] [--seed S] [--keep DIR]
Prints one summary line; exits 1 on any violation.  `make check-crash`
runs it at full size; tests/system/test_crash.py at a small one.
"""
import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("REKEY_ALLOW_ROOT", "1")  # CI machines run as root

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REKEYD = os.path.join(ROOT, "agent", "rekeyd")
DATA = os.path.join(ROOT, "tests", "data")


def write_config(base, once_settle=0):
    cfg = os.path.join(base, "rekeyd.ini")
    with open(cfg, "w") as f:
        f.write(f"""[rekeyd]
database = {base}/rekey.db
jobs = {ROOT}/jobs
plugin_path = {ROOT}/connectors
workers = 2
log_level = warn
[inbox]
path = {base}/inbox
archive = {base}/archive
error = {base}/error
settle_ms = 0
rescan_ms = 50
[delivery]
backoff_initial_ms = 20
backoff_max_ms = 50
[vars]
target_db = {base}/fachverfahren.db
""")
    return cfg


def samples():
    with open(os.path.join(DATA, "samples", "expected.json")) as f:
        expected = json.load(f)
    out = []
    for rel, e in sorted(expected.items()):
        if e["outcome"] in ("delivered", "review") and e.get("after") is None:
            with open(os.path.join(DATA, rel), "rb") as f:
                out.append((os.path.basename(rel), f.read(), e))
    return out


def drop(inbox, name, data):
    tmp = os.path.join(inbox, "." + name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, os.path.join(inbox, name))


def q(db, sql):
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def run_series(files=200, kills=20, seed=None, keep=None, log=print):
    rnd = random.Random(seed)
    base = keep or tempfile.mkdtemp(prefix="rekey-crash-")
    os.makedirs(os.path.join(base, "inbox"), exist_ok=True)
    cfg = write_config(base)
    pool = samples()
    names = []
    # files arrive while the daemon runs and dies: a third up front, the
    # rest in bursts between kills
    pending = [(f"c{i:05d}-{pool[i % len(pool)][0]}", pool[i % len(pool)][1])
               for i in range(files)]
    rnd.shuffle(pending)
    first = len(pending) // 3
    for name, data in pending[:first]:
        drop(os.path.join(base, "inbox"), name, data)
        names.append(name)
    rest = pending[first:]
    killed = 0
    for k in range(kills):
        p = subprocess.Popen([REKEYD, "--config", cfg], stderr=subprocess.DEVNULL)
        burst = rest[: max(1, len(rest) // max(1, kills - k))]
        rest = rest[len(burst):]
        for name, data in burst:
            drop(os.path.join(base, "inbox"), name, data)
            names.append(name)
        time.sleep(rnd.uniform(0.02, 0.4))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            killed += 1
        p.wait()
    for name, data in rest:
        drop(os.path.join(base, "inbox"), name, data)
        names.append(name)
    # let it finish: --once empties the inbox and the queue
    fin = subprocess.run([REKEYD, "--config", cfg, "--once"], capture_output=True, text=True,
                         timeout=300)
    problems = []
    if fin.returncode != 0:
        problems.append(f"final --once run exited {fin.returncode}: {fin.stderr[-500:]}")
    db = os.path.join(base, "rekey.db")
    target = os.path.join(base, "fachverfahren.db")
    refs = [r for (r,) in q(db, "SELECT source_ref FROM submissions")]
    dupes = len(refs) - len(set(refs))
    errors = [n for n in os.listdir(os.path.join(base, "error"))
              if not n.endswith(".reason")] if os.path.isdir(os.path.join(base, "error")) else []
    lost = sorted(set(names) - set(refs) - set(errors))
    left = [n for n in os.listdir(os.path.join(base, "inbox")) if not n.startswith(".")]
    # claim folders and what is in them (none may be left after the last run)
    cdir = os.path.join(base, "inbox", ".claimed")
    claimed = []
    for n in os.listdir(cdir):
        if n.startswith("."):
            continue
        p = os.path.join(cdir, n)
        if os.path.isdir(p):
            claimed += [f"{n}/{f}" for f in os.listdir(p)] or [n + "/"]
        else:
            claimed.append(n)
    if dupes:
        problems.append(f"{dupes} files stored twice")
    if lost:
        problems.append(f"{len(lost)} files lost, e.g. {lost[:3]}")
    if left or claimed:
        problems.append(f"files left behind: inbox {left[:3]}, claimed {claimed[:3]}")
    states = dict(q(db, "SELECT state, count(*) FROM jobs GROUP BY state"))
    stuck = {s: n for s, n in states.items() if s not in ("delivered", "review", "failed")}
    if stuck:
        problems.append(f"jobs not finished: {stuck}")
    delivered = {str(i) for (i,) in q(db, "SELECT id FROM jobs WHERE state = 'delivered'")}
    in_target = []
    for (table,) in q(target, "SELECT name FROM sqlite_master WHERE type = 'table'"):
        in_target += [r for (r,) in q(target, f'SELECT rk_submission FROM "{table}"')]
    twice = len(in_target) - len(set(in_target))
    if twice:
        problems.append(f"{twice} records delivered twice")
    if set(in_target) != delivered:
        missing = delivered - set(in_target)
        extra = set(in_target) - delivered
        problems.append(f"target and queue disagree: {len(missing)} delivered but absent, "
                        f"{len(extra)} present but not delivered")
    # each delivered job has its delivery row, delivered, with the key the
    # target holds (a first round writes the row only with its outcome)
    no_row = q(db, "SELECT count(*) FROM jobs j WHERE j.state = 'delivered' AND NOT EXISTS"
                   " (SELECT 1 FROM deliveries d WHERE d.job_id = j.id"
                   " AND d.state = 'delivered')")[0][0]
    if no_row:
        problems.append(f"{no_row} delivered jobs without a delivered delivery row")
    keys = {k for (k,) in q(db, "SELECT idempotency_key FROM deliveries WHERE state = 'delivered'")}
    target_keys = []
    for (table,) in q(target, "SELECT name FROM sqlite_master WHERE type = 'table'"):
        target_keys += [k for (k,) in q(target, f'SELECT rk_idempotency_key FROM "{table}"')]
    if set(target_keys) != keys:
        problems.append(f"delivery keys and target keys disagree: {len(keys - set(target_keys))}"
                        f" recorded but absent, {len(set(target_keys) - keys)} present but"
                        " not recorded")
    for path in (db, target):
        ok = q(path, "PRAGMA integrity_check")
        if ok != [("ok",)]:
            problems.append(f"integrity_check of {os.path.basename(path)}: {ok[:3]}")
    summary = (f"crash series: {len(names)} files, {killed} kills survived, "
               f"{len(set(refs))} stored, {len(delivered)} delivered, "
               f"{states.get('review', 0)} in review, {states.get('failed', 0)} failed, "
               f"{len(lost)} lost, {dupes + twice} duplicated")
    log(summary)
    for p_ in problems:
        log("PROBLEM: " + p_)
    if not keep and not problems:
        shutil.rmtree(base)
    elif problems:
        log(f"state kept in {base}")
    return killed, problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--kills", type=int, default=100)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--keep", default=None, help="work in this folder and keep it")
    a = ap.parse_args()
    _, problems = run_series(a.files, a.kills, a.seed, a.keep)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
