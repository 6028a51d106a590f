"""Faults of networked inboxes while other sources keep working: a fetch
that runs past timeout_ms is retried; a list answer that is not the
expected JSON is logged, the source backs off and recovers; a second inbox
in the same daemon is not held up by either."""
import signal

from conftest import Rig
from test_http_inbox import samples, start_server


def test_timeouts_and_garbage_back_off_while_the_other_inbox_works(tmp_path, expected):
    subs = samples(expected)
    slow_id = "besucherparkausweis-01-tag"
    a = start_server({slow_id: subs[slow_id][1]})
    b = start_server({"besucherparkausweis-02-woche": subs["besucherparkausweis-02-woche"][1],
                      "gewerbeanmeldung-01-einzelunternehmen":
                          subs["gewerbeanmeldung-01-einzelunternehmen"][1]})
    try:
        a.fetch_delay = {slow_id: 3}          # past timeout_ms below
        b.list_plan = [("garbage", None), ("garbage", None)]
        rig = Rig(tmp_path, extra=a.config("slow", timeout_ms=1000, connect_timeout_ms=500)
                  + b.config("odd"))
        a.db = b.db = rig.db
        d = rig.start()
        try:
            # the odd inbox recovers after its two bad lists and delivers
            rig.wait_for(lambda: len(rig.q("SELECT j.id FROM jobs j JOIN submissions s ON"
                                           " s.id = j.submission_id WHERE s.source ="
                                           " 'http:odd' AND j.state = 'delivered'")) == 2,
                         20, "the odd inbox to deliver")
            # the slow fetch timed out at least once and nothing was stored for it
            rig.wait_for(lambda: len(a.fetch_started) >= 2, 20, "a retried slow fetch")
            assert rig.q("SELECT count(*) FROM submissions WHERE source = 'http:slow'") == [(0,)]
            a.fetch_delay = {}                # the server recovers
            rig.wait_for(lambda: rig.q("SELECT count(*) FROM submissions WHERE"
                                       " source = 'http:slow'") == [(1,)], 20,
                         "the slow submission after recovery")
        finally:
            d.send_signal(signal.SIGTERM)
            err = d.communicate(timeout=30)[1]
    finally:
        a.__exit__()
        b.__exit__()
    assert d.returncode == 0, err
    # the garbage was logged, and the poll backed off instead of spinning
    assert "http:odd" in err and "poll failed" in err
    assert [s for _, s in b.list_calls[:2]] == ["garbage", "garbage"]
    assert b.list_calls[2][0] - b.list_calls[1][0] >= 0.05
    # the timed-out fetch was logged with the submission id
    assert slow_id in err
    assert a.fetches.get(slow_id) == 1 and a.acks.get(slow_id)
