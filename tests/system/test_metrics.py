"""/metrics, /healthz and /readyz of rekeyd: counters that move as jobs
flow (read back from the Prometheus text), gauges read from the store,
readiness that turns 503 while a connector is paused after a FATAL answer
or a source is stopped by refused credentials, and back to 200."""
import re
import subprocess

from apihelp import (Daemon, add_token, api_rig, http_section, metric, parse_metrics)
from conftest import REKEYCTL
from httpinbox_server import InboxServer
from test_target_faults import make_rig


GOOD_1 = "samples/besucherparkausweis-01-tag.xml"
GOOD_2 = "samples/besucherparkausweis-02-woche.xml"
HELD_AGE = "samples/fischereischein-10-mindestalter.xml"


def scrape(d, token=None):
    status, h, data = d.request("GET", "/metrics", token=token)
    assert status == 200, data
    assert h["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = data.decode()
    # every sample belongs to a family announced with HELP and TYPE
    typed = set(re.findall(r"^# TYPE (\S+) (?:counter|gauge|histogram)$", text, re.M))
    assert {l for l in re.findall(r"^# HELP (\S+) ", text, re.M)} == typed
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = re.match(r"[a-z_]+", line).group(0)
            assert name in typed or re.sub(r"_(bucket|sum|count)$", "", name) in typed, line
    return parse_metrics(text)


def test_counters_move_as_jobs_flow(tmp_path):
    rig = api_rig(tmp_path / "run", http_extra="metrics_auth = false\n")
    anna = add_token(rig, "anna")
    d = Daemon(rig)
    try:
        m0 = scrape(d)  # no token needed with metrics_auth = false
        assert metric(m0, "rekey_jobs", state="delivered") == 0
        assert metric(m0, "rekey_processing_seconds_count") == 0
        # the API itself still needs one
        assert d.request("GET", "/api/v1/status")[0] == 401

        rig.drop(GOOD_1, GOOD_2, HELD_AGE)
        rig.wait_for(lambda: rig.q("SELECT count(*) FROM jobs WHERE state IN"
                                   " ('delivered', 'review')")[0][0] == 3, what="three done")
        m1 = scrape(d)
        src = "dir:" + rig.inbox
        assert metric(m1, "rekey_submissions_received_total", source=src) == 3
        bpa, fs = "besucherparkausweis", "fischereischein"
        for to, n in [("validated", 2), ("mapped", 2), ("ready", 2), ("delivering", 2),
                      ("delivered", 2)]:
            assert metric(m1, "rekey_transitions_total", job=bpa, to=to) == n, to
        assert metric(m1, "rekey_transitions_total", job=fs, to="review") == 1
        conn = rig.q("SELECT DISTINCT name FROM deliveries")[0][0]
        assert metric(m1, "rekey_delivery_attempts_total", job=bpa, connector=conn,
                      result="ok") == 2
        assert metric(m1, "rekey_processing_seconds_count") == 3
        assert metric(m1, 'rekey_processing_seconds_bucket', le="+Inf") == 3
        buckets = sorted((float(dict(k[1])["le"]), v) for k, v in m1.items()
                         if k[0] == "rekey_processing_seconds_bucket" and
                         dict(k[1])["le"] != "+Inf")
        assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
        assert 0 < metric(m1, "rekey_processing_seconds_sum") < 30
        assert metric(m1, "rekey_jobs", state="delivered") == 2
        assert metric(m1, "rekey_jobs", state="review") == 1
        assert metric(m1, "rekey_jobs", state="failed") == 0
        assert metric(m1, "rekey_overdue_jobs") == 0
        assert metric(m1, "rekey_oldest_ready_age_seconds") == 0
        assert metric(m1, "rekey_http_requests_total", code="401") == 1
        assert metric(m1, "rekey_http_requests_total", code="200") == 1  # the first scrape

        # a decision through the API counts as well, and so does its delivery
        held = rig.q("SELECT id FROM jobs WHERE state = 'review'")[0][0]
        assert d.json("POST", f"/api/v1/jobs/{held}/fields/geburtsdatum", anna,
                      body={"value": "2001-09-17"})["ok"]
        assert d.json("POST", f"/api/v1/jobs/{held}/approve", anna)["state"] == "ready"
        rig.wait_for(lambda: rig.q("SELECT state FROM jobs WHERE id = ?", held) ==
                     [("delivered",)], timeout=10, what="the approved job delivered")
        m2 = scrape(d)
        assert metric(m2, "rekey_transitions_total", job=fs, to="ready") == 1
        assert metric(m2, "rekey_transitions_total", job=fs, to="delivered") == 1
        assert metric(m2, "rekey_jobs", state="delivered") == 3
        assert metric(m2, "rekey_jobs", state="review") == 0
        assert metric(m2, "rekey_submissions_received_total", source=src) == 3
    finally:
        d.stop()


def test_readyz_turns_503_while_a_connector_is_paused(tmp_path):
    rig, control, calls = make_rig(tmp_path, http_section())
    token = add_token(rig, "betrieb")
    control.write_text("FATAL\n")
    d = Daemon(rig)
    try:
        status, _, data = d.request("GET", "/readyz")
        assert (status, data) == (200, b"ready\n")
        rig.drop(GOOD_1)
        rig.wait_for(lambda: rig.q("SELECT count(*) FROM connector_pauses")[0][0] == 1,
                     what="the connector paused")
        status, h, data = d.request("GET", "/readyz")
        assert status == 503 and h["content-type"].startswith("text/plain")
        assert data.decode() == ("not ready\nconnector flaky of job besucherparkausweis is "
                                 "paused: flaky says FATAL\n")
        m = scrape(d, token)
        assert metric(m, "rekey_connector_paused", job="besucherparkausweis",
                      connector="flaky") == 1
        assert metric(m, "rekey_delivery_attempts_total", job="besucherparkausweis",
                      connector="flaky", result="fatal") == 1
        assert metric(m, "rekey_jobs", state="retry_wait") == 1
        assert d.request("GET", "/healthz")[0] == 200  # alive all the same
        # /metrics needs the token by default
        assert d.request("GET", "/metrics")[0] == 401

        control.write_text("OK\n")
        p = subprocess.run([REKEYCTL, "--db", rig.db, "resume", "besucherparkausweis"],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        rig.wait_for(lambda: rig.q("SELECT state FROM jobs") == [("delivered",)],
                     timeout=10, what="delivery after the resume")
        status, _, data = d.request("GET", "/readyz")
        assert (status, data) == (200, b"ready\n")
        m = scrape(d, token)
        assert not [k for k in m if k[0] == "rekey_connector_paused"]
        assert metric(m, "rekey_delivery_attempts_total", job="besucherparkausweis",
                      connector="flaky", result="ok") == 1
    finally:
        d.stop()


def test_a_source_with_refused_credentials_is_not_ready(tmp_path):
    srv = InboxServer({}, client_secret="the-right-one").__enter__()
    try:
        rig = api_rig(tmp_path / "run", http_extra="metrics_auth = false\n",
                      extra=srv.config(name="portal", client_secret="a-wrong-one",
                                       poll_interval_ms=100, backoff_initial_ms=100,
                                       backoff_max_ms=200) + "\n")
        d = Daemon(rig)
        try:
            rig.wait_for(lambda: metric(scrape(d), "rekey_source_errors_total",
                                        source="http:portal") >= 2, timeout=10,
                         what="failed polls counted")
            m = scrape(d)
            assert metric(m, "rekey_source_up", source="http:portal") == 0
            assert metric(m, "rekey_source_polls_total", source="http:portal") >= 2
            status, _, data = d.request("GET", "/readyz")
            assert status == 503
            assert "source http:portal does not work: polls fail with an error retrying " \
                   "will not cure" in data.decode()
            # the operator fixes the credentials on the portal's side
            with srv.lock:
                srv.client_secret = "a-wrong-one"
            rig.wait_for(lambda: d.request("GET", "/readyz")[0] == 200, timeout=10,
                         what="ready again")
            m = scrape(d)
            assert metric(m, "rekey_source_up", source="http:portal") == 1
            assert metric(m, "rekey_source_polls_total", source="http:portal") > \
                metric(m, "rekey_source_errors_total", source="http:portal")
        finally:
            log = d.stop()
        assert "a-wrong-one" not in log and "the-right-one" not in log
    finally:
        srv.__exit__()
