"""The postgres connector against a real, throw-away PostgreSQL server.

Runs tests/unit/pgtest_connector (cmocka: the connector through the
connector host, without the daemon) with REKEY_TEST_PG_CONNINFO pointing
at a PgServer, then looks at the tables it left with psql, so the rows
are checked by a second client and not only by the C test itself.
Needs `make all` first (the binary and connectors/postgres/postgres.so).
"""

import os
import subprocess

import pytest

from pgserver import pg_server  # noqa: F401  (pytest fixture)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, "tests", "unit", "pgtest_connector")
PLUGIN = os.path.join(ROOT, "connectors", "postgres", "postgres.so")


def run_pgtest(conninfo=None):
    env = dict(os.environ)
    env.pop("REKEY_TEST_PG_CONNINFO", None)
    if conninfo is not None:
        env["REKEY_TEST_PG_CONNINFO"] = conninfo
    return subprocess.run([BIN], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(autouse=True)
def built():
    for path in (BIN, PLUGIN):
        if not os.access(path, os.X_OK if path == BIN else os.R_OK):
            pytest.fail("%s is missing: run `make all` first" % path)


def test_pgtest_fails_without_server():
    p = run_pgtest(None)
    assert p.returncode != 0
    assert "REKEY_TEST_PG_CONNINFO is not set" in p.stdout + p.stderr
    assert "[  PASSED  ] 0 test(s)." in p.stdout + p.stderr


def test_postgres_connector(pg_server):
    p = run_pgtest(pg_server.conninfo)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert "[  PASSED  ] 9 test(s)." in out, out
    assert "FAILED" not in out, out
    # The conninfo is secret: nothing prints it.
    assert pg_server.conninfo not in out

    psql = pg_server.psql
    # Delivered twice (and once more from a new instance): one row.
    assert psql("SELECT count(*) FROM antrag WHERE rk_idempotency_key = 'key-1'") == "1"
    # A second record with a new field added the column; the first row has
    # no value there.  The injection attempt left no row and no column.
    assert psql("SELECT rk_idempotency_key, nachname, coalesce(telefon, '-'), "
                "rk_submission FROM antrag ORDER BY rk_id") == (
        "key-1|Muster|-|sub-0001\n"
        "key-2|Beispiel|0301234|sub-0001")
    assert psql("SELECT string_agg(column_name || ':' || data_type, ',' ORDER BY "
                "ordinal_position) FROM information_schema.columns WHERE "
                "table_schema = 'public' AND table_name = 'antrag'") == (
        "rk_id:bigint,nachname:text,vorname:text,rk_idempotency_key:text,"
        "rk_submission:text,rk_delivered_at:timestamp with time zone,"
        "telefon:text")
    # rk_idempotency_key carries the unique index ON CONFLICT relies on.
    assert psql("SELECT count(*) FROM pg_indexes WHERE schemaname = 'public' AND "
                "tablename = 'antrag' "
                "AND indexdef LIKE '%UNIQUE%(rk_idempotency_key)%'") == "1"
    # schema.table, the reconnect and the lock-timeout tables.
    assert psql("SELECT nachname FROM rk_s.antrag") == "Schema"
    assert psql("SELECT string_agg(rk_idempotency_key, ',' ORDER BY rk_id) "
                "FROM wieder") == "key-r1,key-r2,key-r3"
    assert psql("SELECT count(*) FROM gesperrt") == "2"
    # Refused records left nothing behind.
    assert psql("SELECT count(*) FROM streng") == "0"
    assert psql("SELECT alter_jahre FROM typed") == "42"
    assert psql("SELECT to_regclass('fehlt') IS NULL") == "t"
