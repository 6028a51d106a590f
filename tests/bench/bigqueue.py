"""Fills a rekey queue database with many finished (delivered) jobs, fast,
for the benchmark's "intake against a full queue" step.

The rows are clones of real ones: rekeyd first processes one sample
document of each application type into the database (so the schema is
whatever the current rekeyd migrates to, and every column holds what the
daemon really writes), then each table that belongs to a job is copied Q
times with a recursive CTE, with fresh ids, uids, source names, hashes,
idempotency keys, duplicate keys and timestamps spread over the last 30
days.  The indexes are the daemon's own and are filled in id order, as
they would be after months of operation.

A column this module does not know is copied from the template row as
it is; a table that gains a UNIQUE column it does not know makes the
INSERT fail with a message naming this file.
"""
import hashlib
import sqlite3
import time

# tables whose rows belong to a job (by their job_id column), copied per
# job after submissions and jobs, in this order
JOB_TABLES = ["events", "job_fields", "anomalies", "deliveries", "dupkeys", "corrections"]

SPAN_S = 30 * 86400  # the finished jobs are spread over this many seconds


def _columns(con, table):
    return [(r[1], r[2].upper(), r[5]) for r in con.execute(f'PRAGMA table_info("{table}")')]


def _is_iso(v):
    return isinstance(v, str) and len(v) == 24 and v[10] == "T" and v.endswith("Z")


def build(db, q, log=print, batch=200000):
    """Adds Q delivered jobs to the queue database DB, cloned from the
    jobs already in it (at least one, all delivered).  Returns the number
    of rows written per table."""
    con = sqlite3.connect(db, isolation_level=None)
    try:
        return _build(con, q, log, batch)
    finally:
        con.close()


def _build(con, q, log, batch):
    tpl = con.execute("SELECT id, submission_id FROM jobs WHERE state = 'delivered'"
                      " ORDER BY id").fetchall()
    if not tpl:
        raise RuntimeError("bigqueue: no delivered template job in the database")
    if con.execute("SELECT count(*) FROM jobs WHERE state <> 'delivered'").fetchone()[0]:
        raise RuntimeError("bigqueue: the template database holds unfinished jobs")
    job0 = con.execute("SELECT max(id) FROM jobs").fetchone()[0]
    sub0 = con.execute("SELECT max(id) FROM submissions").fetchone()[0]
    ntpl = len(tpl)
    # fast bulk load: no journal, no fsync; WAL again afterwards
    con.execute("PRAGMA journal_mode=DELETE")
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("PRAGMA cache_size=-1000000")
    con.create_function("rk_bench_key", 1,
                        lambda i: hashlib.sha256(b"bench-dupkey-%d" % i).hexdigest(),
                        deterministic=True)
    con.execute("PRAGMA temp_store=MEMORY")
    con.execute("CREATE TEMP TABLE tpl(k INTEGER PRIMARY KEY, job_id INTEGER, sub_id INTEGER,"
                " uid TEXT)")
    for k, (jid, sid) in enumerate(tpl):
        uid = con.execute("SELECT uid FROM submissions WHERE id = ?", (sid,)).fetchone()[0]
        con.execute("INSERT INTO tpl VALUES (?,?,?,?)", (k, jid, sid, uid))
    now = time.time()
    base = now - SPAN_S - 3600
    step = SPAN_S / max(q, 1)

    # the clone expression of each column: s.i is the clone number (1..q),
    # t the template row, tp its tpl row; TS is the clone's timestamp
    ts = f"strftime('%Y-%m-%dT%H:%M:%fZ', {base} + s.i * {step}, 'unixepoch')"
    new_job = f"({job0} + s.i)"
    new_sub = f"({sub0} + s.i)"
    # as rekeyd makes them (rk_uid_new): 12 hex digits of the receipt time
    # in ms, then 20 more (here the clone number, unique), so the clones'
    # uids sort by time like real ones and new ones go to the index's end
    new_uid = f"printf('%012x%020d', CAST(({base} + s.i * {step}) * 1000 AS INTEGER), s.i)"

    def select_list(table, cols, overrides, sample):
        out = []
        for name, typ, pk in cols:
            if name in overrides:
                out.append(overrides[name])
            elif pk == 1 and typ == "INTEGER" and sum(1 for c in cols if c[2]) == 1:
                out.append("NULL")  # rowid alias: numbered by SQLite
            elif sample is not None and _is_iso(sample.get(name)):
                out.append(ts)
            else:
                out.append(f't."{name}"')
        return ", ".join(out)

    def sample_row(table, where, arg):
        cur = con.execute(f'SELECT * FROM "{table}" WHERE {where} LIMIT 1', (arg,))
        row = cur.fetchone()
        if row is None:
            return None
        return {d[0]: v for d, v in zip(cur.description, row)}

    plans = []
    cols = _columns(con, "submissions")
    plans.append(("submissions", cols, select_list("submissions", cols, {
        "id": new_sub, "uid": new_uid,
        "source_ref": "printf('%07d-', s.i) || t.source_ref",
        "sha256": "printf('%064x', s.i)",
    }, sample_row("submissions", "id = ?", tpl[0][1])),
        "JOIN submissions t ON t.id = tp.sub_id"))
    cols = _columns(con, "jobs")
    plans.append(("jobs", cols, select_list("jobs", cols, {
        "id": new_job, "submission_id": new_sub,
    }, sample_row("jobs", "id = ?", tpl[0][0])), "JOIN jobs t ON t.id = tp.job_id"))
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    for table in JOB_TABLES:
        if table not in tables:
            continue
        cols = _columns(con, table)
        if "job_id" not in [c[0] for c in cols]:
            continue
        over = {"job_id": new_job}
        if table == "deliveries":
            over["idempotency_key"] = f"replace(t.idempotency_key, tp.uid, {new_uid})"
        if table == "dupkeys":
            # spread over the key space as real ones (SHA-256 hex): keys
            # counting up from 0000… sat in one corner of the index, so
            # new keys never met the clones' pages
            over["key"] = f"rk_bench_key({new_job})"
            over["at_ms"] = f"CAST(({base} + s.i * {step}) * 1000 AS INTEGER)"
        plans.append((table, cols, select_list(table, cols, over,
                                               sample_row(table, "job_id = ?", tpl[0][0])),
                      f'JOIN "{table}" t ON t.job_id = tp.job_id', "t.rowid"))

    counts = {p[0]: 0 for p in plans}
    t0 = time.monotonic()
    for lo in range(1, q + 1, batch):
        hi = min(q, lo + batch - 1)
        con.execute("BEGIN")
        try:
            for plan in plans:
                table, cols, sel, join = plan[:4]
                order = plan[4] if len(plan) > 4 else "s.i"
                names = ", ".join(f'"{c[0]}"' for c in cols)
                sql = (f'INSERT INTO "{table}"({names}) '
                       f"WITH RECURSIVE s(i) AS (SELECT {lo} UNION ALL SELECT i + 1 FROM s"
                       f" WHERE i < {hi}) "
                       f"SELECT {sel} FROM s JOIN tpl tp ON tp.k = s.i % {ntpl} {join}"
                       f" ORDER BY s.i, {order}")
                try:
                    cur = con.execute(sql)
                except sqlite3.DatabaseError as e:
                    raise RuntimeError(f"bigqueue: cloning {table} failed ({e}); the queue"
                                       " schema changed: update tests/bench/bigqueue.py") from e
                counts[table] += cur.rowcount
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        el = time.monotonic() - t0
        log(f"queue: {hi:,}/{q:,} finished jobs written ({el:.0f} s)")
    con.execute("PRAGMA journal_mode=WAL")
    return counts
