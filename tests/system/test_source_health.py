"""rekeyctl status shows each networked source's health: its last poll,
the last error and when it polls next, written by the running daemon."""
import json

from conftest import Rig
from test_http_inbox import samples, start_server


def test_status_shows_a_healthy_and_a_failing_source(tmp_path, expected):
    subs = samples(expected)
    one = {"besucherparkausweis-01-tag": subs["besucherparkausweis-01-tag"][1]}
    srv = start_server(one)
    try:
        good = Rig(tmp_path / "good", extra=srv.config())
        srv.db = good.db
        good.run_once(timeout=30)
        st = json.loads(good.ctl("status", "--json").stdout)
        (h,) = st["sources"]
        assert h["source"] == "http:test"
        assert h["ok"] == 1 and h["fails"] == 0
        assert h["last_poll_at"] and h["last_ok_at"] and h["next_poll_at"]
        text = good.ctl("status").stdout
        assert "Quellen" in text and "http:test" in text and " ok " in text

        bad = Rig(tmp_path / "bad", extra=srv.config(client_secret="wrong-Secret-42"))
        bad.run_once(timeout=30)
        st = json.loads(bad.ctl("status", "--json").stdout)
        (h,) = st["sources"]
        assert h["ok"] == 0 and h["fails"] >= 1 and h["last_ok_at"] is None
        assert "poll failed" in h["last_error"]
        assert "wrong-Secret-42" not in json.dumps(st)
        assert "gestört" in bad.ctl("status").stdout
    finally:
        srv.__exit__()
