"""The review dashboard over real HTTP on 127.0.0.1: no page and no data
without a login, the login with the API's tokens and its cookie, CSRF
refusals that change nothing in the store, a correction and an approval
through the web forms that land in the audit trail under the token's name
and are delivered, queue filters and paging, HTML escaping of hostile
values, logout and idle expiry of sessions, and the security headers."""
import html
import os
import re
import sqlite3
import subprocess
import time
import urllib.parse

import pytest

from apihelp import Daemon, add_token, api_rig
from conftest import DATA, REKEYCTL

GOOD_1 = "samples/besucherparkausweis-01-tag.xml"
GOOD_2 = "samples/besucherparkausweis-02-woche.xml"
HELD_AGE = "samples/fischereischein-10-mindestalter.xml"       # MINDESTALTER
HELD_FEE = "samples/besucherparkausweis-10-gebuehr-falsch.xml"  # GEBUEHR_FALSCH
HELD_PAY = "samples/besucherparkausweis-11-zahlung-offen.xml"   # ZAHLUNG_OFFEN
BROKEN = "kaputt.xml"                                           # → failed
HOSTILE = "feindlich.xml"        # MINDESTALTER, with a script as the surname
SCRIPT = "<script>alert(1)</script>"
HOSTILE_FILE = "x<b onmouseover=alert(2)>.xml"

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def hostile_document():
    with open(os.path.join(DATA, HELD_AGE), encoding="utf-8") as f:
        text = f.read()
    assert "Hartmann" in text
    return text.replace("Hartmann", html.escape(SCRIPT, quote=False)).encode()


class Web:
    """A browser's session: the cookie of a login and the CSRF token read
    from the pages."""

    def __init__(self, d, token):
        self.d = d
        status, h, body = d.request("POST", "/anmelden",
                                    raw=urllib.parse.urlencode({"token": token}).encode(),
                                    headers=FORM)
        assert status == 303, (status, body)
        self.set_cookie = h["set-cookie"]
        m = re.fullmatch(r"rekey_sid=([0-9a-f]{64}); (.*)", self.set_cookie)
        assert m, self.set_cookie
        self.sid = m.group(1)
        self.cookie = "rekey_sid=" + self.sid
        status, _, body = self.get("/")
        assert status == 200, (status, body)
        self.csrf = re.search(rb'name="csrf" value="([0-9a-f]{64})"', body).group(1).decode()

    def get(self, path):
        return self.d.request("GET", path, headers={"Cookie": self.cookie})

    def post(self, path, fields, csrf=True, headers=None):
        f = dict(fields)
        if csrf is True:
            f["csrf"] = self.csrf
        elif csrf:
            f["csrf"] = csrf
        h = {"Cookie": self.cookie, **FORM, **(headers or {})}
        return self.d.request("POST", path, raw=urllib.parse.urlencode(f).encode(), headers=h)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    class S:
        pass
    s = S()
    s.rig = api_rig(tmp_path_factory.mktemp("dash") / "run")
    s.clara = add_token(s.rig, "clara")
    s.dirk = add_token(s.rig, "dirk.b")
    s.rig.drop(GOOD_1, GOOD_2, HELD_AGE, HELD_FEE, HELD_PAY)
    s.rig.drop_bytes(BROKEN, b"<Antrag><nicht zu")
    s.rig.drop_bytes(HOSTILE, hostile_document())
    s.rig.drop_bytes(HOSTILE_FILE, hostile_document().replace(b"FS-2026-", b"FS-2027-"))
    s.d = Daemon(s.rig)
    try:
        s.rig.wait_for(lambda: s.rig.q("SELECT count(*) FROM jobs WHERE state IN"
                                       " ('review', 'delivered', 'failed')")[0][0] == 8,
                       what="the batch processed")
    except BaseException:
        s.d.p.kill()
        s.d.p.wait(timeout=30)
        raise
    refs = s.rig.jobs_by_ref()
    s.id = {k: refs[os.path.basename(v)]["id"] for k, v in
            [("good1", GOOD_1), ("good2", GOOD_2), ("age", HELD_AGE), ("fee", HELD_FEE),
             ("pay", HELD_PAY), ("broken", BROKEN), ("hostile", HOSTILE),
             ("hostile_file", HOSTILE_FILE)]}
    yield s
    log = s.d.stop()
    # the log names ids and token names, never values, tokens or session ids
    for secret in ("Hartmann", "2014-09-17", s.clara, s.dirk, "alert(1)"):
        assert secret not in log
    assert not re.search(r"[0-9a-f]{64}", log)
    assert "dash: login: clara" in log


def state(s, key):
    return s.rig.q("SELECT state FROM jobs WHERE id = ?", s.id[key])[0][0]


def snapshot(s):
    """Everything a decision could change."""
    return (s.rig.q("SELECT id, state, attempts FROM jobs ORDER BY id"),
            s.rig.q("SELECT count(*) FROM events")[0][0],
            s.rig.q("SELECT job_id, name, value FROM fields ORDER BY job_id, name"),
            s.rig.q("SELECT count(*) FROM corrections")[0][0],
            s.rig.q("SELECT job_id, code, resolved_at FROM anomalies ORDER BY id"))


def pages(s):
    i = s.id["pay"]
    return ["/", "/antraege", "/antraege?status=review", "/protokoll", f"/antraege/{i}",
            f"/antraege/{s.id['hostile']}", "/antraege/999999"]


# ---- no page without a login --------------------------------------------------------

def test_every_page_redirects_to_the_login_without_a_session(srv):
    s = srv
    before = snapshot(s)
    i = s.id["pay"]
    for cookie in (None, "rekey_sid=" + "0" * 64, "rekey_sid=abc", "other=1"):
        for path in pages(s):
            status, h, body = s.d.request("GET", path,
                                          headers={"Cookie": cookie} if cookie else {})
            assert status == 303, (path, cookie, status)
            assert h["location"].startswith("/anmelden"), h
            for data in (b"Hartmann", b"Zahlung", b"review", b"besucherparkausweis", b"alert"):
                assert data not in body, (path, body)
        for path, fields in ((f"/antraege/{i}/freigeben", {"bestaetigt": "ja"}),
                             (f"/antraege/{i}/ablehnen", {"grund": "x", "bestaetigt": "ja"}),
                             (f"/antraege/{i}/korrigieren",
                              {"feld": "betrag", "wert": "1", "bestaetigt": "ja"}),
                             ("/abmelden", {})):
            h = {**FORM, **({"Cookie": cookie} if cookie else {})}
            status, hh, body = s.d.request("POST", path, headers=h,
                                           raw=urllib.parse.urlencode(fields).encode())
            assert status == 303 and hh["location"].startswith("/anmelden"), (path, status)
    # where to come back to after the login
    status, h, _ = s.d.request("GET", f"/antraege/{i}")
    assert h["location"] == f"/anmelden?weiter=%2Fantraege%2F{i}"
    # the login page itself and the assets need no session, and show no data
    status, h, body = s.d.request("GET", "/anmelden")
    assert status == 200 and b'<html lang="de">' in body and b"Zugangsschl" in body
    assert b"Hartmann" not in body and b"Antrag " not in body
    assert snapshot(s) == before


def test_a_wrong_token_is_refused(srv):
    s = srv
    for token in ("0" * 64, s.clara[:-1], s.clara + "0", "", "clara"):
        status, h, body = s.d.request("POST", "/anmelden", headers=FORM,
                                      raw=urllib.parse.urlencode({"token": token}).encode())
        assert status == 403, (token, status)
        assert "set-cookie" not in h
        assert "Der Zugangsschlüssel ist nicht gültig." in body.decode()
    # a form without the field, or no form at all
    for raw, ct in ((b"", FORM), (b'{"token": "x"}', {"Content-Type": "application/json"})):
        status, h, _ = s.d.request("POST", "/anmelden", raw=raw, headers=ct)
        assert status == 403 and "set-cookie" not in h


def test_the_login_sets_a_strict_http_only_session_cookie(srv):
    s = srv
    w = Web(s.d, s.clara)
    attrs = [a.strip() for a in w.set_cookie.split(";")[1:]]
    assert "HttpOnly" in attrs and "SameSite=Strict" in attrs and "Path=/" in attrs
    assert "Secure" not in attrs  # cookie_secure defaults to false (TLS is the proxy's)
    # each login is a new random session with its own CSRF token
    w2 = Web(s.d, s.clara)
    assert w2.sid != w.sid and w2.csrf != w.csrf and w.csrf != w.sid
    status, _, body = w.get("/")
    assert status == 200 and "Angemeldet als clara" in body.decode()
    # back to where the login was asked for, but never to another site
    for weiter, want in ((f"/antraege/{s.id['pay']}", f"/antraege/{s.id['pay']}"),
                         ("//evil.example/", "/"), ("https://evil.example/", "/"),
                         ("/\\evil.example", "/"), ("/api/v1/status", "/")):
        status, h, _ = s.d.request("POST", "/anmelden", headers=FORM, raw=urllib.parse.urlencode(
            {"token": s.clara, "weiter": weiter}).encode())
        assert status == 303 and h["location"] == want, (weiter, h)
    # the session opens the pages only: the API still wants its bearer token
    for path in ("/api/v1/status", "/api/v1/jobs", "/metrics"):
        status, _, _ = w.get(path)
        assert status == 401, path


def test_pages_send_the_security_headers_and_no_inline_script(srv):
    s = srv
    w = Web(s.d, s.clara)
    for path in pages(s)[:-1] + ["/anmelden"]:
        status, h, body = w.get(path)
        assert status == 200, path
        assert h["content-type"] == "text/html; charset=utf-8"
        csp = h["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert h["x-content-type-options"] == "nosniff" and h["x-frame-options"] == "DENY"
        assert h["cache-control"] == "no-store"
        text = body.decode()
        assert text.startswith("<!DOCTYPE html>") and '<html lang="de">' in text
        # script only from the file, no inline handlers or styles
        assert re.findall(r"<script[^>]*>", text) == \
            ['<script src="/static/dash.js" defer>']
        for tag in re.findall(r"<[^>]*>", text):  # escaped text has no '<'
            assert not re.search(r"\son[a-z]+=|\sstyle=|javascript:", tag), (path, tag)
    for path, ctype, needle in (("/static/dash.css", "text/css", b"focus-visible"),
                                ("/static/dash.js", "text/javascript", b"addEventListener")):
        status, h, body = s.d.request("GET", path)
        assert status == 200 and h["content-type"].startswith(ctype) and needle in body


# ---- CSRF ----------------------------------------------------------------------------

def test_posts_without_the_right_csrf_token_are_403_and_change_nothing(srv):
    s = srv
    w = Web(s.d, s.clara)
    other = Web(s.d, s.dirk)
    i = s.id["pay"]
    before = snapshot(s)
    actions = [(f"/antraege/{i}/freigeben", {"bestaetigt": "ja"}),
               (f"/antraege/{i}/ablehnen", {"grund": "Zahlung fehlt", "bestaetigt": "ja"}),
               (f"/antraege/{i}/korrigieren",
                {"feld": "zahlungsstatus", "wert": "BEZAHLT", "bestaetigt": "ja"}),
               (f"/antraege/{i}/neu-verarbeiten", {"bestaetigt": "ja"}),
               (f"/antraege/{s.id['broken']}/wiederholen", {"bestaetigt": "ja"}),
               ("/abmelden", {})]
    for path, fields in actions:
        for csrf in (None, "", "0" * 64, w.csrf[:-1], w.csrf + "0", other.csrf, w.sid):
            status, _, body = w.post(path, fields, csrf=csrf if csrf is not None else False)
            assert status == 403, (path, csrf, status)
            text = body.decode()
            assert "Die Anfrage wurde abgelehnt" in text and '<html lang="de">' in text
        # the right token from a foreign page (Origin, or Referer without Origin)
        for hdr in ({"Origin": "http://evil.example"}, {"Origin": "null"},
                    {"Referer": "http://evil.example/antraege"},
                    {"Origin": f"http://127.0.0.1:{s.d.port}.evil.example"}):
            status, _, _ = w.post(path, fields, headers=hdr)
            assert status == 403, (path, hdr, status)
    assert snapshot(s) == before
    assert state(s, "pay") == "review"
    # the session survived all of it (logout was refused too)
    assert w.get("/")[0] == 200
    # with our own Origin the same request goes through
    status, h, _ = w.post(f"/antraege/{i}/korrigieren",
                          {"feld": "zahlungsstatus", "wert": "OFFEN"},
                          headers={"Origin": f"http://127.0.0.1:{s.d.port}"})
    assert status == 200  # the confirmation page: still nothing changed
    assert snapshot(s) == before


# ---- decisions ------------------------------------------------------------------------

def test_a_correction_and_approval_through_the_web_are_audited_and_delivered(srv):
    s = srv
    w = Web(s.d, s.clara)
    age = s.id["age"]
    status, _, body = w.get(f"/antraege/{age}")
    text = body.decode()
    assert status == 200
    # source value beside the mapped value with its XPath, the rule's field marked
    row = re.search(r'<tr class="marked"><th scope="row">geburtsdatum</th>(.*?)</tr>', text)
    assert row, text
    assert "2014-09-17" in row.group(1) and "fs:F60000000229" in row.group(1)
    assert "MINDESTALTER" in row.group(1)
    assert re.search(r'<tr class="open"><th scope="row"><code>MINDESTALTER</code></th>'
                     r'<td>geburtsdatum</td><td class="sev-block">blockierend</td>', text)
    # first the confirmation, which changes nothing
    before = snapshot(s)
    status, _, body = w.post(f"/antraege/{age}/korrigieren",
                             {"feld": "geburtsdatum", "wert": "2001-09-17"})
    text = body.decode()
    assert status == 200 and "Ja, korrigieren" in text
    assert "alter Wert</dt><dd>2014-09-17" in text and "neuer Wert</dt><dd>2001-09-17" in text
    assert 'name="bestaetigt" value="ja"' in text
    assert snapshot(s) == before
    # then the decision
    status, h, _ = w.post(f"/antraege/{age}/korrigieren",
                          {"feld": "geburtsdatum", "wert": "2001-09-17", "bestaetigt": "ja"})
    assert status == 303 and h["location"] == f"/antraege/{age}"
    status, _, body = w.get(f"/antraege/{age}")
    text = body.decode()
    assert "Feld geburtsdatum korrigiert (alter Wert: 2014-09-17, neuer Wert: 2001-09-17)" \
        in text
    assert "erledigt von clara" in text or "offen" not in text.split("<h2>Felder")[0]
    # the message is shown once
    assert "korrigiert (alter Wert" not in w.get(f"/antraege/{age}")[2].decode()
    status, h, _ = w.post(f"/antraege/{age}/freigeben", {"bestaetigt": "ja"})
    assert status == 303
    s.rig.wait_for(lambda: state(s, "age") == "delivered", timeout=15,
                   what="the approved job delivered")
    rows = s.rig.target_rows("fischereischein", f"rk_submission = '{age}'")
    assert len(rows) == 1 and rows[0]["geburtsdatum"] == "2001-09-17"
    assert s.rig.q("SELECT field, old_value, new_value, actor FROM corrections"
                   " WHERE job_id = ?", age) == [("geburtsdatum", "2014-09-17", "2001-09-17",
                                                   "clara")]
    trail = s.rig.q("SELECT actor, from_state, to_state FROM events WHERE job_id = ?"
                    " ORDER BY id", age)
    assert ("clara", "review", "review") in trail and ("clara", "review", "ready") in trail
    assert trail[-1] == ("rekeyd", "delivering", "delivered")
    p = s.rig.ctl("events", "--job", "fischereischein")
    assert re.search(rf"\b{age}\b.*clara", p.stdout), p.stdout
    # the page's Verlauf shows it too, with the German states
    text = w.get(f"/antraege/{age}")[2].decode()
    verlauf = text.split('<table id="verlauf">')[1].split("</table>")[0]
    assert "<td>clara</td><td>zur Klärung</td><td>bereit zur Übertragung</td>" in verlauf
    assert '<dd id="status">übertragen</dd>' in text
    # and the Protokoll of all jobs, filtered to the Antragsart
    text = w.get("/protokoll?verfahren=fischereischein&seit=1h")[2].decode()
    assert re.search(rf'<a href="/antraege/{age}">Antrag {age}</a></td><td>fischereischein'
                     r'</td><td>clara</td><td>zur Klärung</td><td>bereit zur Übertragung</td>',
                     text), text
    assert "besucherparkausweis</td>" not in text
    assert 'id="btn-freigeben"' not in text and 'id="btn-korrigieren"' not in text


def test_reject_needs_a_reason_and_records_who(srv):
    s = srv
    w = Web(s.d, s.dirk)
    fee = s.id["fee"]
    before = snapshot(s)
    status, h, _ = w.post(f"/antraege/{fee}/ablehnen", {"grund": "  ", "bestaetigt": "ja"})
    assert status == 303
    assert "Eine Ablehnung braucht eine Begründung." in w.get(f"/antraege/{fee}")[2].decode()
    assert snapshot(s) == before
    status, _, body = w.post(f"/antraege/{fee}/ablehnen", {"grund": "Gebühr <falsch>"})
    assert status == 200 and "Gebühr &lt;falsch&gt;" in body.decode()
    assert snapshot(s) == before
    status, _, _ = w.post(f"/antraege/{fee}/ablehnen",
                          {"grund": "Gebühr <falsch>", "bestaetigt": "ja"})
    assert status == 303 and state(s, "fee") == "rejected"
    assert s.rig.q("SELECT actor FROM events WHERE job_id = ? AND to_state = 'rejected'",
                   fee) == [("dirk.b",)]
    text = w.get(f"/antraege/{fee}")[2].decode()
    assert f"Antrag {fee} abgelehnt." in text and "Gebühr &lt;falsch&gt;" in text
    # a decision the review module refuses says why, in German, and changes nothing
    before = snapshot(s)
    status, _, _ = w.post(f"/antraege/{fee}/freigeben", {"bestaetigt": "ja"})
    assert status == 303
    text = w.get(f"/antraege/{fee}")[2].decode()
    assert f"Antrag {fee} ist nicht zur Klärung (Status: abgelehnt)." in text
    assert 'class="msg error"' in text
    assert snapshot(s) == before


def test_retry_of_a_failed_job_through_the_web(srv):
    s = srv
    w = Web(s.d, s.clara)
    broken = s.id["broken"]
    text = w.get(f"/antraege/{broken}")[2].decode()
    assert "Erneut versuchen" in text and "Freigeben</button>" not in text
    status, _, body = w.post(f"/antraege/{broken}/wiederholen", {})
    assert status == 200 and "Ja, erneut versuchen" in body.decode()
    status, _, _ = w.post(f"/antraege/{broken}/wiederholen", {"bestaetigt": "ja"})
    assert status == 303
    assert s.rig.q("SELECT actor, from_state FROM events WHERE job_id = ? AND actor = 'clara'",
                   broken) == [("clara", "failed")]


# ---- the queue --------------------------------------------------------------------------

def ids_on(body):
    return [int(x) for x in re.findall(rb'<th scope="row"><a href="/antraege/(\d+)">', body)]


def test_queue_paging_and_filters(srv):
    s = srv
    w = Web(s.d, s.clara)
    every = [r[0] for r in s.rig.q("SELECT id FROM jobs ORDER BY id DESC")]
    got, path, pages_seen = [], "/antraege?anzahl=3", 0
    while path:
        status, _, body = w.get(path)
        assert status == 200
        ids = ids_on(body)
        assert 1 <= len(ids) <= 3
        got += ids
        pages_seen += 1
        m = re.search(rb'<a href="([^"]+)" rel="next">', body)
        path = html.unescape(m.group(1).decode()) if m else None
        assert pages_seen < 20
    assert got == every and pages_seen == (len(every) + 2) // 3
    # filters: state, job, source, text, and combined with paging
    review = [r[0] for r in s.rig.q("SELECT id FROM jobs WHERE state = 'review'"
                                    " ORDER BY id DESC")]
    assert ids_on(w.get("/antraege?status=review")[2]) == review
    bpa = [r[0] for r in s.rig.q("SELECT id FROM jobs WHERE job = 'besucherparkausweis'"
                                 " ORDER BY id DESC")]
    assert ids_on(w.get("/antraege?verfahren=besucherparkausweis")[2]) == bpa
    source = s.rig.q("SELECT source FROM submissions LIMIT 1")[0][0]
    assert ids_on(w.get("/antraege?quelle=" + urllib.parse.quote(source))[2]) == every
    assert ids_on(w.get("/antraege?quelle=http%3Anirgends")[2]) == []
    assert ids_on(w.get("/antraege?suche=GEBUEHR-FALSCH")[2]) == [s.id["fee"]]
    assert ids_on(w.get("/antraege?suche=" + str(s.id["pay"]))[2]) == [s.id["pay"]]
    assert ids_on(w.get("/antraege?suche=%25")[2]) == []  # '%' means itself
    page = w.get("/antraege?verfahren=besucherparkausweis&anzahl=1")[2]
    assert ids_on(page) == bpa[:1]
    nxt = html.unescape(re.search(rb'<a href="([^"]+)" rel="next">', page).group(1).decode())
    assert "verfahren=besucherparkausweis" in nxt
    assert ids_on(w.get(nxt)[2]) == bpa[1:2]
    # the chosen filters stay selected
    text = w.get("/antraege?status=review")[2].decode()
    assert '<option value="review" selected>zur Klärung</option>' in text
    for bad in ("status=nix", "vor=abc", "anzahl=0", "anzahl=1000", "vor=-1"):
        assert w.get("/antraege?" + bad)[0] == 400, bad


def test_overview_counts_overdue_first_and_failures(srv):
    s = srv
    w = Web(s.d, s.clara)
    text = w.get("/")[2].decode()
    assert "<h1>Übersicht</h1>" in text
    n_review = s.rig.q("SELECT count(*) FROM jobs WHERE state = 'review'")[0][0]
    assert re.search(r'<a href="/antraege\?status=review">zur Klärung</a></th>'
                     rf'<td class="num">{n_review}</td>', text)
    assert '<a href="/antraege?verfahren=fischereischein">fischereischein</a>' in text
    # the overdue list comes before the counts
    assert text.index("Frist überschritten") < text.index("Anträge nach Status")
    assert "Letzte Fehlschläge" in text and "Eingangsquellen" in text
    assert "Keine Bearbeitungsfrist ist überschritten." in text
    failed = [r[0] for r in s.rig.q("SELECT id FROM jobs WHERE state = 'failed'")]
    for i in failed:
        assert f'<a href="/antraege/{i}">Antrag {i}</a>' in text.split("Letzte Fehlschl")[1]
    # a held job past its deadline (set in the store as a long wait would) is listed first
    pay = s.id["pay"]
    con = sqlite3.connect(s.rig.db, timeout=30)
    with con:
        con.execute("UPDATE jobs SET deadline_at = 864000000 WHERE id = ?", (pay,))  # 11.01.1970
    con.close()
    text = w.get("/")[2].decode()
    late = text.split('<h2 id="frist">')[1].split("<h2>")[0]
    assert f'<a href="/antraege/{pay}">Antrag {pay}</a>' in late
    assert ".01.1970 " in late and '<span class="overdue">Frist überschritten</span>' in late
    assert ids_on(w.get("/antraege?frist=1")[2]) == [pay]
    assert "Frist überschritten" in w.get(f"/antraege/{pay}")[2].decode()


def test_protokoll_pages_and_filters(srv):
    s = srv
    w = Web(s.d, s.clara)
    total = s.rig.q("SELECT count(*) FROM events")[0][0]
    got, path, n = [], "/protokoll?seit=7d&anzahl=7", 0
    while path:
        status, _, body = w.get(path)
        assert status == 200
        got += re.findall(rb'<tr><th scope="row">[^<]*</th><td><a href="/antraege/(\d+)">',
                          body)
        m = re.search(rb'<a href="([^"]+)" rel="next">', body)
        path = html.unescape(m.group(1).decode()) if m else None
        n += 1
        assert n < 50
    # every event once, 7 a page (the daemon may add some meanwhile)
    assert total <= len(got) <= s.rig.q("SELECT count(*) FROM events")[0][0]
    assert total > 14 and n == (len(got) + 6) // 7
    ids = [int(x) for x in got]
    assert sorted(set(ids)) == sorted(r[0] for r in s.rig.q("SELECT id FROM jobs"))
    assert "Keine Einträge" in w.get("/protokoll?seit=01.01.2001&verfahren=nix")[2].decode()
    for bad in ("seit=gestern", "nach=x", "nach=-1", "anzahl=0", "anzahl=5000"):
        assert w.get("/protokoll?" + bad)[0] == 400, bad


def test_the_verlauf_shows_the_reasons_in_german(srv):
    s = srv
    w = Web(s.d, s.clara)
    pay = s.id["pay"]
    # the store keeps the English text the engine wrote
    stored = [r[0] for r in s.rig.q("SELECT reason FROM events WHERE job_id = ? ORDER BY id",
                                    pay)]
    assert "held: ZAHLUNG_OFFEN" in stored and "valid against the job's XSD" in stored
    status, _, body = w.get(f"/antraege/{pay}")
    assert status == 200
    verlauf = body.decode().split('<table id="verlauf">')[1].split("</table>")[0]
    assert "<td>zur Klärung angehalten: ZAHLUNG_OFFEN</td></tr>" in verlauf, verlauf
    assert "<td>gültig nach dem XSD der Antragsart</td>" in verlauf
    assert re.search(r"<td>\d+ Felder übernommen \(Antragsart besucherparkausweis, "
                     r"Version \d+\)</td>", verlauf), verlauf
    taken = [r for r in stored if r.startswith("taken from ")]
    assert len(taken) == 1 and taken[0].startswith("taken from dir:"), stored
    assert f"<td>eingegangen aus {html.escape(taken[0][len('taken from '):])}</td>" in verlauf
    for english in ("held:", "valid against", "fields mapped", "taken from"):
        assert english not in verlauf
    # a delivered one: the connector's part of the reason, its name and target id kept
    good = s.id["good1"]
    last = s.rig.q("SELECT reason FROM events WHERE job_id = ? ORDER BY id DESC LIMIT 1",
                   good)[0][0]
    m = re.fullmatch(r"([^:; ]+): delivered(?:, target id (.+))?", last)
    assert m, last
    want = f"übertragen an {m.group(1)}" + \
        (f" (Kennung im Fachverfahren: {html.escape(m.group(2))})" if m.group(2) else "")
    assert f"<td>{want}</td>" in w.get(f"/antraege/{good}")[2].decode()
    # the Protokoll of all jobs, too
    text = w.get("/protokoll?verfahren=besucherparkausweis&seit=7d&anzahl=1000")[2].decode()
    assert "<td>zur Klärung angehalten: ZAHLUNG_OFFEN</td>" in text
    assert "held: ZAHLUNG_OFFEN" not in text and "taken from" not in text
    # rekeyctl events and the API keep the stored text
    p = s.rig.ctl("events", "--job", "besucherparkausweis")
    assert "held: ZAHLUNG_OFFEN" in p.stdout and "zur Klärung angehalten" not in p.stdout
    reasons = [e["reason"] for e in s.d.json("GET", f"/api/v1/jobs/{pay}",
                                             token=s.clara)["events"]]
    assert reasons == stored


# ---- hostile values --------------------------------------------------------------------

def test_hostile_values_are_escaped(srv):
    s = srv
    w = Web(s.d, s.clara)
    for key in ("hostile", "hostile_file"):
        status, _, body = w.get(f"/antraege/{s.id[key]}")
        text = body.decode()
        assert status == 200
        assert SCRIPT not in text and "<b onmouseover" not in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
        # in the fields table, the correction select and the pretty-printed document
        assert text.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 3
        assert "&lt;F60000000227&gt;&amp;lt;script&amp;gt;alert(1)" in text
    text = w.get("/antraege")[2].decode()
    assert "x&lt;b onmouseover=alert(2)&gt;.xml" in text and "<b onmouseover" not in text
    # what a clerk types is escaped when it comes back, too
    evil = '"><script>alert(3)</script>'
    text = w.get("/antraege?suche=" + urllib.parse.quote(evil))[2].decode()
    assert "<script>alert(3)" not in text and "&quot;&gt;&lt;script&gt;alert(3)" in text
    i = s.id["hostile"]
    status, _, body = w.post(f"/antraege/{i}/korrigieren", {"feld": "nachname", "wert": evil})
    text = body.decode()
    assert status == 200 and "<script>alert(3)" not in text
    assert 'value="&quot;&gt;&lt;script&gt;alert(3)&lt;/script&gt;"' in text


# ---- the end of a session ---------------------------------------------------------------

def test_logout_ends_the_session(srv):
    s = srv
    w = Web(s.d, s.clara)
    keep = Web(s.d, s.clara)
    status, h, _ = w.post("/abmelden", {})
    assert status == 303 and h["location"] == "/anmelden?abgemeldet=1"
    assert "Max-Age=0" in h["set-cookie"] and h["set-cookie"].startswith("rekey_sid=;")
    for path in pages(s):
        status, h, _ = w.get(path)
        assert status == 303 and h["location"].startswith("/anmelden"), path
    status, _, _ = w.post(f"/antraege/{s.id['pay']}/freigeben", {"bestaetigt": "ja"})
    assert status == 303 and state(s, "pay") == "review"
    # the other session of the same person goes on
    assert keep.get("/")[0] == 200
    # ... until the token leaves the token file: its sessions end at once
    gone = add_token(s.rig, "weg")
    w3 = Web(s.d, gone)
    assert w3.get("/")[0] == 200
    p = subprocess.run([REKEYCTL, "token", "remove", "weg", "--config", s.rig.config],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    status, h, _ = w3.get("/")
    assert status == 303 and h["location"].startswith("/anmelden")
    assert keep.get("/")[0] == 200
    assert "Sie sind abgemeldet." in s.d.request("GET", "/anmelden?abgemeldet=1")[2].decode()


def test_idle_sessions_expire_and_cookie_secure(tmp_path):
    rig = api_rig(tmp_path / "run", http_extra="session_idle = 2s\ncookie_secure = true\n")
    tok = add_token(rig, "eva")
    d = Daemon(rig)
    try:
        w = Web(d, tok)
        assert "Secure" in [a.strip() for a in w.set_cookie.split(";")]
        time.sleep(1.0)
        assert w.get("/")[0] == 200      # in use: the idle time starts again
        time.sleep(1.2)
        assert w.get("/antraege")[0] == 200
        time.sleep(2.5)
        status, h, _ = w.get("/")
        assert status == 303 and h["location"].startswith("/anmelden")
    finally:
        d.stop()


def test_dashboard_can_be_switched_off_and_settings_are_checked(tmp_path):
    rig = api_rig(tmp_path / "run", http_extra="dashboard = false\n")
    tok = add_token(rig, "eva")
    d = Daemon(rig)
    try:
        status, _, _ = d.request("GET", "/anmelden")
        assert status == 401  # no such page: like any unknown path without a token
        status, _, _ = d.request("GET", "/", token=tok)
        assert status == 404
    finally:
        log = d.stop()
    assert "dashboard /" not in log
    for bad, msg in (("session_idle = 0s", "session_idle must be a duration"),
                     ("session_idle = 30", "session_idle must be a duration"),
                     ("cookie_secure = vielleicht", "cookie_secure must be true or false"),
                     ("dashboard = 2", "dashboard must be true or false")):
        rig.write_config("[http]\nlisten = 127.0.0.1:0\n" + bad + "\n")
        p = subprocess.run([os.path.join(os.path.dirname(REKEYCTL), "rekeyd"), "--config",
                            rig.config, "--check"], capture_output=True, text=True, timeout=30)
        assert p.returncode != 0 and msg in p.stderr, (bad, p.stderr)
