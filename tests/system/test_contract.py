"""`rekeyctl connector-test`: every shipped connector passes the contract
tests against a real target (SQLite file, drop folder, JSON-lines file,
PostgreSQL server, HTTP target), the target holds what was delivered, and
broken plugins fail them at the check that matches their fault."""
import json
import os
import re
import sqlite3
import subprocess

import pytest

from conftest import REKEYCTL, ROOT
from pgserver import pg_server  # noqa: F401  (pytest fixture)

PLUGINS = os.path.join(ROOT, "tests", "unit", "plugins")
CONNECTORS = os.path.join(ROOT, "connectors")
# the checks every run that opens reaches, in order
CHECKS = ["load", "abi", "name", "settings table", "given settings", "unknown key", "open",
          "deliver", "same key again", "NULL value", "non-ASCII value", "deliver_batch",
          "close", "leaks",
          "secrets"]
SECRET = "tok-SECRET-4711"

with open(REKEYCTL, "rb") as _f:
    ASAN = b"__asan_init" in _f.read()


def contract(plugin, *sets, env=None, extra=()):
    args = [REKEYCTL, "connector-test", plugin]
    for s in sets:
        args += ["--set", s]
    return subprocess.run(args + list(extra), capture_output=True, text=True, timeout=120,
                          env=env)


def report(p):
    """{check: (ok, detail)} from the lines, and the summary line."""
    checks = {}
    out = p.stdout.splitlines()
    for line in out[:-1]:
        m = re.fullmatch(r"(ok  |FAIL) ([^:]+): (.*)", line)
        assert m, line
        checks[m.group(2)] = (m.group(1) == "ok  ", m.group(3))
    return checks, out[-1] if out else ""


def assert_passes(p, secret=None):
    checks, summary = report(p)
    assert p.returncode == 0, p.stdout + p.stderr
    assert all(ok for ok, _ in checks.values()), p.stdout
    assert [c for c in checks if c in CHECKS] == CHECKS
    assert summary == f"{len(checks)} passed, 0 failed"
    assert re.fullmatch(r"version 1\.[01], descriptor \d+ bytes", checks["abi"][1])
    assert re.match(r"\d+ x open/close: open fds (\d+) -> \1, threads (\d+) -> \2, ",
                    checks["leaks"][1]), checks["leaks"]
    if secret:
        assert secret not in p.stdout + p.stderr
    return checks


# ---- every shipped connector passes ---------------------------------------

def test_sqlite_passes(tmp_path):
    db = str(tmp_path / "target.db")
    checks = assert_passes(contract(f"{CONNECTORS}/sqlite/sqlite.so", f"database={db}",
                                    "table=contract"))
    assert checks["required 'database'"][0] and checks["required 'table'"][0]
    con = sqlite3.connect(db)
    rows = con.execute("SELECT name, ort, hinweis FROM contract ORDER BY rowid").fetchall()
    keys = con.execute("SELECT rk_idempotency_key FROM contract").fetchall()
    con.close()
    # the repeated key left one row; NULL and umlauts arrived as given;
    # the batch (ABI 1.1) wrote two rows, its repeated key updated the first
    assert rows == [("Mustermann", "Berlin", "rekey contract test"),
                    ("Beispiel", None, "a field without value"),
                    ("Müßig-Öztürk", "Köln", "äöü ÄÖÜ ß €"),
                    ("Stapel", "Hamburg", "batch record 1 again"),
                    ("Reihe", "Bremen", "batch record 2")]
    assert checks["deliver_batch"][1].startswith("3 records in one call: OK, OK, OK")
    assert all(re.fullmatch(r"[0-9a-f]{32}:contract", k) for (k,) in keys)


@pytest.mark.parametrize("fmt,sets,ext", [
    ("csv", ["encoding=iso-8859-15"], "csv"),
    ("xml", ["format=xml"], "xml"),
    ("fixed", ["format=fixed", "widths=20,20,30"], "txt"),
])
def test_filedrop_passes(tmp_path, fmt, sets, ext):
    checks = assert_passes(contract(f"{CONNECTORS}/filedrop/filedrop.so",
                                    f"dir={tmp_path}", *sets))
    assert checks["secrets"][1].startswith("no secret settings declared")
    files = sorted(f for f in os.listdir(tmp_path) if not f.startswith("."))
    assert len(files) == 3 and all(re.fullmatch(rf"contract-\d+\.{ext}", f) for f in files)
    target = checks["deliver"][1]
    assert re.search(rf"target id '(contract-\d+\.{ext})'", target).group(1) == files[0]
    data = b"".join(open(os.path.join(tmp_path, f), "rb").read() for f in files)
    if fmt == "csv":
        assert b"M\xfc\xdfig-\xd6zt\xfcrk;K\xf6ln;\xe4\xf6\xfc \xc4\xd6\xdc \xdf \xa4\r\n" in data
    elif fmt == "fixed":
        assert "Beispiel" + " " * 12 + " " * 20 + "a field without value" in data.decode()
    else:
        assert "<name>Müßig-Öztürk</name>" in data.decode()


def test_template_passes(tmp_path):
    out = tmp_path / "records.jsonl"
    checks = assert_passes(contract(f"{CONNECTORS}/template/template.so", f"path={out}",
                                    f"token={SECRET}"), secret=SECRET)
    assert checks["secrets"][1].startswith("'token' never shown")
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    # three records plus the one delivered with the marker token; the
    # repeated key wrote nothing
    assert len(lines) == 4 and len({x["key"] for x in lines}) == 4
    assert lines[1]["fields"] == {"name": "Beispiel", "ort": None,
                                  "hinweis": "a field without value"}
    assert lines[2]["fields"]["name"] == "Müßig-Öztürk"
    assert SECRET not in out.read_text()


def test_template_json_and_verbose(tmp_path):
    out = tmp_path / "records.jsonl"
    p = contract(f"{CONNECTORS}/template/template.so", f"path={out}", f"token={SECRET}",
                 extra=["--json"])
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["name"] == "template" and doc["failed"] == 0
    assert doc["passed"] == len(doc["checks"]) >= len(CHECKS)
    assert [c["check"] for c in doc["checks"] if c["check"] in CHECKS] == CHECKS
    assert all(c["ok"] for c in doc["checks"])
    assert SECRET not in p.stdout
    p = contract(f"{CONNECTORS}/template/template.so", f"path={out}", f"token={SECRET}",
                 extra=["--verbose", "--cycles", "2"])
    assert p.returncode == 0
    assert "     log INFO: job 'contract': appending to" in p.stdout
    assert "2 x open/close" in p.stdout


def test_postgres_passes(pg_server):
    checks = assert_passes(contract(f"{CONNECTORS}/postgres/postgres.so",
                                    f"conninfo={pg_server.conninfo}", "table=contract"),
                           secret=pg_server.conninfo)
    assert checks["secrets"][1].startswith("'conninfo' never shown")
    # three single deliveries and a batch (ABI 1.1) of two new keys and
    # the first one's again
    assert checks["deliver_batch"][1].startswith("3 records in one call: OK, OK, OK")
    assert pg_server.psql("SELECT count(*) FROM contract") == "5"
    assert pg_server.psql("SELECT count(*) FROM contract WHERE ort IS NULL") == "1"
    assert pg_server.psql("SELECT ort FROM contract WHERE name = 'Müßig-Öztürk'") == "Köln"


def test_rest_passes(tmp_path):
    rest = f"{CONNECTORS}/rest/rest.so"
    if not os.path.exists(rest):
        pytest.skip("connectors/rest/rest.so is not built")
    try:
        from httptarget import HttpTarget
    except ImportError:
        pytest.skip("tests/system/httptarget.py is missing")
    with HttpTarget() as target:
        checks = assert_passes(contract(rest, f"url={target.url('/antraege')}",
                                        f"bearer_token={SECRET}"), secret=SECRET)
        reqs = list(target.requests)
    assert "'bearer_token'" in checks["secrets"][1]
    # deliver, the same key again, NULL, non-ASCII (+ the marker-token run)
    assert len(reqs) >= 4
    assert reqs[0].header("Idempotency-Key") == reqs[1].header("Idempotency-Key")
    assert reqs[0].header("Idempotency-Key") != reqs[2].header("Idempotency-Key")
    assert reqs[0].header("Authorization") == f"Bearer {SECRET}"


# ---- broken plugins fail ---------------------------------------------------

@pytest.mark.parametrize("plugin,want", [
    ("abi2", "was built for ABI 2.0, this rekey speaks ABI 1.1"),
    ("noentry", "does not export rk_connector_entry()"),
    ("nulldesc", "rk_connector_entry() returned no descriptor"),
    ("smallstruct", "has a descriptor of"),
    ("nodeliver", "has no deliver in its descriptor"),
])
def test_abi_breakers_fail_at_load(plugin, want):
    p = contract(f"{PLUGINS}/{plugin}.so")
    checks, summary = report(p)
    assert p.returncode == 1
    assert list(checks) == ["load"] and not checks["load"][0]
    assert want in checks["load"][1]
    assert summary == "0 passed, 1 failed"


SINS = [
    ("none", None, None),
    ("dup_setting", "settings table", "setting 'note' is declared twice"),
    ("no_help", "settings table", "setting 'note' has no help text"),
    ("bad_default", "settings table", "the default of setting 'note' is not a valid integer"),
    ("wrong_name", "name", "the descriptor says 'contract_bad' but the file is 'contractbad.so'"),
    ("refuse_open", "open", "refused: refusing on purpose"),
    ("log_secret", "secrets", "appeared in what the connector logged or answered"),
    ("msg_secret", "secrets", "appeared in what the connector logged or answered"),
    ("fd_leak", "leaks", "open fds"),
    ("mem_leak", "leaks", "(more than 64 KiB)"),
    ("bad_status", "deliver", "answered a status outside the enum (status 7)"),
    ("no_nul", "deliver", "left the message without a NUL"),
    ("overflow", "deliver", "wrote past message_size"),
    ("second_fatal", "same key again", "answered FATAL: 'duplicate'"),
    ("new_tid", "same key again", "differs from the first delivery's"),
    ("null_retry", "NULL value", "answered RETRY: 'cannot store NULL'"),
    ("ascii_only", "non-ASCII value", "answered PERMANENT without a message"),
]


def sin_env(tmp_path, sin):
    env = dict(os.environ, RK_CONTRACT_SIN=sin)
    # Under make check-asan, what these plugins do on purpose (lose memory,
    # crash) must not count as a sanitizer report of rekey's own code.
    env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + \
        f":detect_leaks=0:log_path={tmp_path}/asan"
    env["UBSAN_OPTIONS"] = env.get("UBSAN_OPTIONS", "") + f":log_path={tmp_path}/ubsan"
    return env


@pytest.mark.parametrize("sin,check,want", SINS, ids=[s[0] for s in SINS])
def test_contractbad_fails_at_its_sin(tmp_path, sin, check, want):
    p = contract(f"{PLUGINS}/contractbad.so", f"token={SECRET}", env=sin_env(tmp_path, sin))
    checks, summary = report(p)
    assert SECRET not in p.stdout + p.stderr          # also when the plugin leaks it
    if sin == "none":
        assert_passes(p)
        return
    if sin == "mem_leak" and ASAN:
        assert "heap not measured under AddressSanitizer" in checks["leaks"][1]
        return
    assert p.returncode == 1, p.stdout
    ok, detail = checks[check]
    assert not ok and want in detail, p.stdout
    if sin in ("log_secret", "msg_secret") and "--verbose" not in p.args:
        v = contract(f"{PLUGINS}/contractbad.so", f"token={SECRET}",
                     env=sin_env(tmp_path, sin), extra=["--verbose"])
        assert SECRET not in v.stdout and "***" in v.stdout
    assert summary == f"{sum(o for o, _ in checks.values())} passed, " \
                      f"{sum(not o for o, _ in checks.values())} failed"


def test_crash_names_the_check(tmp_path):
    p = contract(f"{PLUGINS}/contractbad.so", f"token={SECRET}",
                 env=sin_env(tmp_path, "null_crash"))
    assert p.returncode != 0
    assert "ok   deliver: OK" in p.stdout                 # lines before the crash are kept
    assert "passed," not in p.stdout
    if not ASAN:
        assert "the connector crashed during check 'NULL value'" in p.stderr


def test_usage():
    p = subprocess.run([REKEYCTL, "connector-test"], capture_output=True, text=True)
    assert p.returncode == 2 and "needs the path of a connector" in p.stderr
    p = subprocess.run([REKEYCTL, "connector-test", "x.so", "--set", "novalue"],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "--set needs KEY=VALUE, got 'novalue'" in p.stderr
    p = subprocess.run([REKEYCTL, "connector-test", "--help"], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.startswith("usage: rekeyctl connector-test PLUGIN.so")
    p = subprocess.run([REKEYCTL, "--help"], capture_output=True, text=True)
    assert "connector-test SO" in p.stdout
