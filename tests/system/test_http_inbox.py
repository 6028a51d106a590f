"""The generic HTTP inbox ([http_inbox NAME]) against a test inbox server on
127.0.0.1 (httpinbox_server.py): the real rekeyd, with --once and while
running.  The Rig's directory inbox stays empty; every submission comes
over HTTP."""
import gzip
import hashlib
import os
import signal
import subprocess
import time

from conftest import DATA, REKEYD, Rig
from httpinbox_server import InboxServer

SECRET = "s3cret-XYZ"


def samples(expected):
    """id -> (relative sample path, document bytes); the .xml.gz sample is
    served decompressed (with Content-Encoding gzip), and one id needs
    escaping in URLs."""
    out = {}
    for rel in expected:
        if not rel.startswith("samples/"):
            continue
        name = os.path.basename(rel)
        with open(os.path.join(DATA, rel), "rb") as f:
            data = f.read()
        if name.endswith(".gz"):
            data = gzip.decompress(data)
        sid = name.split(".")[0]
        if sid.startswith("gewerbeanmeldung-03"):
            sid = "gewerbe 03/neben+erwerb"
        out[sid] = (rel, data)
    return out


def http_rows(rig):
    """source_ref -> number of stored submissions from the HTTP inbox."""
    return dict(rig.q("SELECT source_ref, count(*) FROM submissions WHERE source = 'http:test'"
                      " GROUP BY source_ref"))


def start_server(subs, **kw):
    srv = InboxServer({k: v for k, v in subs.items()}, client_secret=SECRET, **kw)
    return srv.__enter__()


def test_once_stores_each_submission_once_and_acks_after_commit(tmp_path, expected):
    subs = samples(expected)
    later = {sid: d for sid, (rel, d) in subs.items() if expected[rel].get("after")}
    first = {sid: d for sid, (rel, d) in subs.items() if sid not in later}
    gz = {sid for sid, (rel, _) in subs.items() if rel.endswith(".gz")} | {
        "fischereischein-02-erstausstellung", "gewerbe 03/neben+erwerb"}
    dup = {"besucherparkausweis-01-tag", "fischereischein-03-verlaengerung"}
    srv = start_server(first, token_ttl=1, page_size=4, gzip_ids=gz)
    try:
        srv.later = later                    # the duplicate comes after its original
        srv.dup_ids = dup                    # listed twice, on two pages
        srv.fetch_fail = {"gewerbeanmeldung-02-gmbh": 1}
        srv.list_plan = [(503, 1)]           # outlives the 1 s token: a refresh follows
        srv.fetch_delay = {"*": 0.1}         # so that max_inflight = 3 fills up
        rig = Rig(tmp_path, extra=srv.config())
        srv.db = rig.db
        t0 = time.time()
        p = rig.run_once(timeout=60)
        took = time.time() - t0
    finally:
        srv.__exit__()
    assert took < 20, took
    # stored once each, with the bytes the server sent
    assert http_rows(rig) == {sid: 1 for sid in subs}
    for sid, (rel, data) in subs.items():
        (sha,) = rig.q("SELECT sha256 FROM submissions WHERE source_ref = ?", sid)[0]
        assert sha == hashlib.sha256(data).hexdigest(), sid
    assert srv.fetch_gzip == gz
    # outcomes as for the directory inbox
    jobs = rig.jobs_by_ref()
    for sid, (rel, _) in subs.items():
        exp = expected[rel]
        j = jobs[sid]
        assert (j["job"], j["state"]) == (exp["job"], exp["outcome"]), (sid, j)
        for c in exp["codes"]:
            assert c in rig.codes(j["id"]), (sid, c)
    # acknowledged exactly once each, and only once it was in the queue DB
    assert sorted(srv.acks) == sorted(subs)
    assert all(v == [True] for v in srv.acks.values()), srv.acks
    assert srv.subs == {} and srv.later == {}
    # fetched once each; the one that failed once was tried again
    assert srv.fetches == {sid: 1 for sid in subs}
    assert "gewerbeanmeldung-02-gmbh: fetch failed (HTTP 500)" in p.stderr
    assert srv.max_fetching == 3
    # the 503 was answered by a pause of at least its Retry-After
    assert [s for _, s in srv.list_calls[:2]] == [503, 200]
    assert srv.list_calls[1][0] - srv.list_calls[0][0] >= 1.0
    # the 1 s token was renewed before it ran out: never used expired
    assert srv.token_requests >= 2
    assert srv.expired_uses == 0
    # no secret in the log
    assert SECRET not in p.stderr
    for tok in srv.tokens:
        assert tok not in p.stderr
    assert "submission besucherparkausweis-01-tag stored as job" in p.stderr
    # the directory inbox was not used
    assert rig.q("SELECT count(*) FROM submissions WHERE source <> 'http:test'") == [(0,)]


def test_list_429_and_500_are_retried_after_the_delay(tmp_path, expected):
    subs = samples(expected)
    two = {k: subs[k][1] for k in ("besucherparkausweis-01-tag",
                                   "fischereischein-01-erstausstellung")}
    srv = start_server(two)
    try:
        srv.list_plan = [(429, 2), (500, None)]
        srv.page_size = 1                     # cursor appended with & to the query
        rig = Rig(tmp_path, extra=srv.config(list_url=f"{srv.url}/list?apikey=K3y-in-query"))
        srv.db = rig.db
        p = rig.run_once(timeout=60)
    finally:
        srv.__exit__()
    calls = srv.list_calls
    assert [s for _, s in calls[:3]] == [429, 500, 200]
    # Retry-After: 2 beats the 100-200 ms backoff; then plain backoff (200-400 ms)
    assert calls[1][0] - calls[0][0] >= 2.0
    assert 0.19 <= calls[2][0] - calls[1][0] < 1.5
    assert "listing failed (HTTP 429, Retry-After 2 s)" in p.stderr
    assert "listing failed (HTTP 500)" in p.stderr
    assert http_rows(rig) == {k: 1 for k in two}
    assert sorted(srv.acks) == sorted(two)
    assert "K3y-in-query" not in p.stderr     # URLs are logged without their query
    assert f"polling {srv.url}/list every" in p.stderr


def test_wrong_credentials_are_reported_without_crash(tmp_path, expected):
    subs = samples(expected)
    one = {"besucherparkausweis-01-tag": subs["besucherparkausweis-01-tag"][1]}
    srv = start_server(one)
    try:
        rig = Rig(tmp_path, extra=srv.config(client_secret="wrong-Secret-42"))
        srv.db = rig.db
        p = rig.run_once(timeout=30)           # gives up at once: retrying will not help
        assert "token request refused" in p.stderr
        assert "HTTP 401, error invalid_client" in p.stderr
        assert "check client_id and client_secret" in p.stderr
        assert "wrong-Secret-42" not in p.stderr
        assert srv.token_refused == 1
        # running: keeps trying with backoff, stops cleanly
        d = rig.start()
        try:
            end = time.time() + 10
            while srv.token_refused < 3 and time.time() < end:
                time.sleep(0.05)
            assert srv.token_refused >= 3
            d.send_signal(signal.SIGTERM)
            err = d.communicate(timeout=10)[1]
        finally:
            if d.poll() is None:
                d.kill()
        assert d.returncode == 0, err
        assert "open handles" not in err
        assert "wrong-Secret-42" not in err
    finally:
        srv.__exit__()
    assert http_rows(rig) == {}
    assert srv.fetches == {} and srv.acks == {}


def test_running_daemon_takes_new_submissions_and_stops_mid_fetch(tmp_path, expected):
    subs = samples(expected)
    srv = start_server({})
    try:
        rig = Rig(tmp_path, extra=srv.config(poll_interval_ms=200, poll_jitter_ms=50))
        srv.db = rig.db
        d = rig.start()
        try:
            rig.wait_for(lambda: len(srv.list_calls) >= 1, 10, "the first poll")
            names = ["besucherparkausweis-02-woche", "fischereischein-02-erstausstellung",
                     "gewerbeanmeldung-01-einzelunternehmen"]
            with srv.lock:
                srv.ack_fail = {names[1]: 1}      # 503 once: the ack alone is repeated
                for n in names:
                    srv.subs[n] = subs[n][1]
            rig.wait_for(lambda: len(srv.acks) == 3, 15, "three acks")
            assert all(v == [True] for v in srv.acks.values())
            assert srv.ack_attempts[names[1]] == 2
            assert srv.fetches == {n: 1 for n in names}
            # the server lists an acknowledged submission again: stored once
            with srv.lock:
                srv.subs[names[0]] = subs[names[0]][1]
            rig.wait_for(lambda: len(srv.acks[names[0]]) == 2, 10, "the second ack")
            assert http_rows(rig) == {n: 1 for n in names}
            assert srv.fetches[names[0]] == 2
            # a fetch in flight when SIGTERM comes is cancelled, not waited for
            slow = "fischereischein-04-verlaengerung"
            with srv.lock:
                srv.fetch_delay = {slow: 30}
                srv.subs[slow] = subs[slow][1]
            rig.wait_for(lambda: slow in srv.fetch_started, 5, "the slow fetch")
            t0 = time.time()
            d.send_signal(signal.SIGTERM)
            err = d.communicate(timeout=40)[1]
            assert time.time() - t0 < 15  # not after the fetch's 30 s
        finally:
            if d.poll() is None:
                d.kill()
        assert d.returncode == 0, err
        assert "open handles" not in err
        assert slow not in http_rows(rig) and slow not in srv.acks
    finally:
        srv.__exit__()
    states = {r: j["state"] for r, j in rig.jobs_by_ref().items()}
    assert states == {n: "delivered" for n in names}


def test_killed_before_ack_is_fetched_again_and_stored_once(tmp_path, expected):
    subs = samples(expected)
    sid = "fischereischein-01-erstausstellung"
    srv = start_server({sid: subs[sid][1]})
    try:
        srv.ack_fail = {sid: 1000}             # the acknowledgement never gets through
        rig = Rig(tmp_path, extra=srv.config(once_retries=1))
        srv.db = rig.db
        p = rig.run_once(timeout=30)
        assert f"submission {sid}: acknowledgement failed (HTTP 503)" in p.stderr
        assert http_rows(rig) == {sid: 1} and srv.acks == {}
        srv.ack_fail = {}
        rig.run_once(timeout=30)               # a new process: fetched again
    finally:
        srv.__exit__()
    assert srv.fetches == {sid: 2}
    assert http_rows(rig) == {sid: 1}
    assert srv.acks == {sid: [True]}
    assert rig.q("SELECT count(*) FROM jobs") == [(1,)]
    (state,) = rig.q("SELECT state FROM jobs")[0]
    assert state == "delivered"
    assert len(rig.target_rows("fischereischein")) == 1


def test_bad_settings_name_the_line(tmp_path):
    rig = Rig(tmp_path, extra="\n[http_inbox test]\nlist_url = http://127.0.0.1:1/l\n"
                              "fetch_url = http://127.0.0.1:1/s/{id}\nack_methd = POST\n")
    p = subprocess.run([REKEYD, "--config", rig.config, "--once"],
                       capture_output=True, text=True, timeout=30)
    lines = open(rig.config).read().splitlines()
    line = lines.index("ack_methd = POST") + 1
    assert p.returncode == 2
    assert f"rekeyd.ini:{line}: unknown setting 'ack_methd' in section [http_inbox test]" \
        in p.stderr
    for extra, msg in [
        ("list_url = http://h/l\n", "[http_inbox x] fetch_url (the URL of one submission, "
                                    "with {id}) is required"),
        ("list_url = http://h/l\nfetch_url = http://h/s\n", "fetch_url must contain {id}"),
        ("list_url = ftp://h/l\n", "list_url must be an http:// or https:// URL"),
        ("list_url = http://h/l\nfetch_url = http://h/{id}\nauth = oauth2\n",
         "[http_inbox x] token_url (auth = oauth2) is required"),
        ("list_url = http://h/l\nfetch_url = http://h/{id}\nauth = bearer\n",
         "bearer_token or bearer_token_file (auth = bearer) is required"),
        ("list_url = http://h/l\nfetch_url = http://h/{id}\nack_method = GET\n",
         "ack_method must be POST, PUT or DELETE, not 'GET'"),
        ("max_inflight = 0\n", "max_inflight must be a whole number from 1 to 64, not '0'"),
        ("bearer_token_file = nope.txt\n", "bearer_token_file: cannot read"),
    ]:
        rig.write_config("\n[http_inbox x]\n" + extra)
        p = subprocess.run([REKEYD, "--config", rig.config, "--once"],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 2, extra
        assert msg in p.stderr, (extra, p.stderr)
    rig.write_config("\n[http_inbox]\nlist_url = http://h/l\n")
    p = subprocess.run([REKEYD, "--config", rig.config, "--once"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "needs a name" in p.stderr


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d):
    """A CA, a server certificate for 127.0.0.1 and a client certificate."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.pem", "-days", "2", "-subj", "/CN=rekey test CA", cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1"), ("client", None)):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                f"{name}.csr", "-subj", f"/CN=rekey-{name}", cwd=d)
        cmd = ["x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
               "-CAcreateserial", "-out", f"{name}.pem", "-days", "2"]
        if ext:
            with open(os.path.join(d, "ext.cnf"), "w") as f:
                f.write(ext + "\n")
            cmd += ["-extfile", "ext.cnf"]
        openssl(*cmd, cwd=d)


def test_client_certificate_over_https(tmp_path, expected):
    pki = tmp_path / "pki"
    pki.mkdir()
    make_pki(str(pki))
    subs = samples(expected)
    sid = "gewerbeanmeldung-01-einzelunternehmen"
    srv = start_server({sid: subs[sid][1]}, require_token=False,
                       tls=(str(pki / "server.pem"), str(pki / "server.key"),
                            str(pki / "ca.pem")))
    try:
        # without the client certificate the handshake fails: an error, no crash
        rig = Rig(tmp_path / "a", extra=srv.config(auth="none", once_retries=0,
                                                   ca_file=pki / "ca.pem"))
        srv.db = rig.db
        p = rig.run_once(timeout=30)
        assert "listing failed (" in p.stderr
        assert http_rows(rig) == {}
        rig = Rig(tmp_path / "b", extra=srv.config(
            auth="none", ca_file=pki / "ca.pem", client_cert=pki / "client.pem",
            client_key=pki / "client.key"))
        srv.db = rig.db
        rig.run_once(timeout=30)
    finally:
        srv.__exit__()
    assert http_rows(rig) == {sid: 1}
    assert srv.acks == {sid: [True]}
    assert set(srv.peer_certs) == {"rekey-client"}


def test_link_paging_custom_paths_bearer_file_and_delete(tmp_path, expected):
    subs = samples(expected)
    five = dict(list({k: v[1] for k, v in subs.items()}.items())[:5])
    srv = start_server(five, style="link", page_size=2, static_token="static-Tok-9")
    try:
        rig = Rig(tmp_path, extra="")
        tok = tmp_path / "token.txt"
        tok.write_text("static-Tok-9\n")
        rig.write_config(srv.config(
            auth="bearer", bearer_token_file="token.txt", list_items="data.items",
            list_next="paging.next", ack_method="DELETE",
            ack_url=f"{srv.url}/submissions/{{id}}"))
        srv.db = rig.db
        p = rig.run_once(timeout=30)
    finally:
        srv.__exit__()
    assert http_rows(rig) == {k: 1 for k in five}
    assert sorted(srv.acks) == sorted(five)
    assert all(v == [True] for v in srv.acks.values())
    assert "static-Tok-9" not in p.stderr
    # three pages, then a poll that finds nothing: --once ends
    assert [s for _, s in srv.list_calls].count(200) >= 4


def test_next_link_to_another_server_is_refused(tmp_path, expected):
    subs = samples(expected)
    three = dict(list({k: v[1] for k, v in subs.items()}.items())[:3])
    srv = start_server(three, style="evil", page_size=2, require_token=False)
    try:
        rig = Rig(tmp_path, extra=srv.config(auth="none", list_items="data.items",
                                             list_next="paging.next"))
        srv.db = rig.db
        p = rig.run_once(timeout=30)
    finally:
        srv.__exit__()
    assert "paging stops: the next link points to another server than list_url" in p.stderr
    assert len(srv.list_calls) == 1
    assert srv.fetch_started == [] and http_rows(rig) == {}
