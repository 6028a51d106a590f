"""A generic HTTP inbox for the system tests (stdlib only, 127.0.0.1).

Speaks the protocol rekeyd's [http_inbox NAME] source expects with its
default settings:

  POST /token                      OAuth2 client credentials (HTTP Basic);
                                   short-lived tokens so refreshes happen
  GET  /list[?cursor=N]            {"submissions": [{"id": ...}], "next": "N"|null}
  GET  /submissions/<id>           the document (gzip when asked for)
  POST /submissions/<id>/ack       acknowledgement; records whether the
  DELETE /submissions/<id>         submission was already in rekeyd's queue DB

style="link" answers {"data": {"items": ["id", ...]}, "paging": {"next":
"/list?cursor=N"}} instead; style="evil" gives a next link to another host.
static_token="T" accepts "Bearer T" instead of OAuth2 tokens.

Knobs (attributes, change them while it runs under `lock`):
  list_plan     [(status, retry_after_or_None), ...] answered by the next
                (status "garbage": 200 with an HTML body instead of the list)
                list calls before a normal answer
  fetch_fail    {id: n}   the next n fetches of id answer 500
  ack_fail      {id: n}   the next n acks of id answer 503
  fetch_delay   {id: s}   fetches of id answer after s seconds ("*": any id)
  later         {id: data} listed only once every other submission is acked
  dup_ids       ids listed twice (on two pages)
With tls=(cert, key, ca) it serves HTTPS and requires a client certificate
signed by ca (subjects recorded in peer_certs).
  page_size     ids per list page
"""
import base64
import gzip
import json
import sqlite3
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that went away (rekeyd stopped mid-fetch) is expected


class InboxServer:
    def __init__(self, submissions, client_id="rekey", client_secret="s3cret-XYZ",
                 token_ttl=2, db=None, source="http:test", page_size=4,
                 gzip_ids=(), require_token=True, tls=None, style="cursor",
                 static_token=None):
        self.subs = dict(submissions)          # id -> bytes (pending)
        self.later = {}
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl = token_ttl
        self.db = db
        self.source = source
        self.page_size = page_size
        self.gzip_ids = set(gzip_ids)
        self.require_token = require_token
        self.style = style
        self.static_token = static_token
        self.lock = threading.Lock()
        self.list_plan = []
        self.fetch_fail = {}
        self.ack_fail = {}
        self.fetch_delay = {}
        self.dup_ids = set()
        # records
        self.tokens = {}                       # token -> expiry (monotonic)
        self.token_requests = 0
        self.token_refused = 0
        self.expired_uses = 0
        self.list_calls = []                   # (time, status)
        self.fetch_started = []                # ids, as fetches arrive
        self.fetching = 0                      # fetches being answered now
        self.max_fetching = 0
        self.fetches = {}                      # id -> count of 200 answers
        self.peer_certs = []                   # client certificate subjects (TLS)
        self.fetch_gzip = set()                # ids sent gzip-encoded
        self.acks = {}                         # id -> [in_db at ack time, ...]
        self.ack_attempts = {}
        self.server = _Server(("127.0.0.1", 0), self._handler())
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        if tls:
            # tls = (server cert, server key, CA of client certificates)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls[0], tls[1])
            ctx.load_verify_locations(tls[2])
            ctx.verify_mode = ssl.CERT_REQUIRED
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            self.url = f"https://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def config(self, name="test", **over):
        """An [http_inbox NAME] section for this server."""
        kv = {
            "list_url": f"{self.url}/list",
            "fetch_url": f"{self.url}/submissions/{{id}}",
            "ack_url": f"{self.url}/submissions/{{id}}/ack",
            "ack_method": "POST",
            "auth": "oauth2",
            "token_url": f"{self.url}/token",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "poll_interval_ms": "300",
            "poll_jitter_ms": "100",
            "backoff_initial_ms": "200",
            "backoff_max_ms": "2000",
            "max_inflight": "3",
            "timeout_ms": "5000",
        }
        kv.update({k: None if v is None else str(v) for k, v in over.items()})
        if kv["auth"] != "oauth2":
            kv.update(token_url=None, client_id=None, client_secret=None)
        return f"\n[http_inbox {name}]\n" + "".join(f"{k} = {v}\n" for k, v in kv.items()
                                                   if v is not None)

    def in_db(self, sid):
        if not self.db:
            return None
        con = sqlite3.connect(self.db, timeout=5)
        try:
            return con.execute("SELECT count(*) FROM submissions WHERE source = ? AND"
                               " source_ref = ?", (self.source, sid)).fetchone()[0] > 0
        except sqlite3.OperationalError:
            return False
        finally:
            con.close()

    def _handler(outer):
        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def send(self, status, body=b"", ctype="application/json", headers=()):
                if isinstance(body, (dict, list)):
                    body = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def authorized(self):
                cert = getattr(self.connection, "getpeercert", lambda: None)()
                if cert:
                    subject = dict(x[0] for x in cert["subject"])
                    with outer.lock:
                        outer.peer_certs.append(subject.get("commonName"))
                if not outer.require_token:
                    return True
                auth = self.headers.get("Authorization", "")
                if not auth.startswith("Bearer "):
                    return False
                if outer.static_token is not None:
                    return auth[7:] == outer.static_token
                with outer.lock:
                    exp = outer.tokens.get(auth[7:])
                    if exp is None:
                        return False
                    if time.monotonic() > exp:
                        outer.expired_uses += 1
                        return False
                return True

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n).decode()
                path = urllib.parse.urlsplit(self.path).path
                if path == "/token":
                    return self.token(body)
                if path.startswith("/submissions/") and path.endswith("/ack"):
                    return self.ack(urllib.parse.unquote(path[len("/submissions/"):-4]))
                self.send(404, {"error": "not_found"})

            def token(self, body):
                form = urllib.parse.parse_qs(body)
                auth = self.headers.get("Authorization", "")
                ok = False
                if auth.startswith("Basic "):
                    cid, _, sec = base64.b64decode(auth[6:]).decode().partition(":")
                    ok = (cid, sec) == (outer.client_id, outer.client_secret)
                ok = ok and form.get("grant_type") == ["client_credentials"]
                with outer.lock:
                    outer.token_requests += 1
                    if not ok:
                        outer.token_refused += 1
                        return self.send(401, {"error": "invalid_client",
                                               "error_description": "bad credentials"})
                    tok = base64.urlsafe_b64encode(
                        outer.token_requests.to_bytes(4, "big") + b"tok").decode()
                    outer.tokens[tok] = time.monotonic() + outer.token_ttl
                self.send(200, {"access_token": tok, "token_type": "Bearer",
                                "expires_in": outer.token_ttl})

            def do_GET(self):
                u = urllib.parse.urlsplit(self.path)
                if u.path == "/list":
                    return self.list(urllib.parse.parse_qs(u.query))
                if u.path.startswith("/submissions/"):
                    return self.fetch(urllib.parse.unquote(u.path[len("/submissions/"):]))
                self.send(404, {"error": "not_found"})

            def list(self, q):
                with outer.lock:
                    if outer.list_plan:
                        status, ra = outer.list_plan.pop(0)
                        outer.list_calls.append((time.monotonic(), status))
                        if status == "garbage":  # 200 with a body that is no JSON list
                            return self.send(200, b"<html>maintenance</html>",
                                             ctype="text/html")
                        hdr = [("Retry-After", str(ra))] if ra is not None else []
                        return self.send(status, {"error": "busy"}, headers=hdr)
                if not self.authorized():
                    with outer.lock:
                        outer.list_calls.append((time.monotonic(), 401))
                    return self.send(401, {"error": "invalid_token"})
                with outer.lock:
                    outer.list_calls.append((time.monotonic(), 200))
                    if not outer.subs and outer.later:
                        outer.subs.update(outer.later)
                        outer.later.clear()
                    ids = sorted(outer.subs)
                    for d in sorted(outer.dup_ids):
                        if d in outer.subs:
                            ids.append(d)       # a second time, on a later page
                    start = int(q.get("cursor", ["0"])[0])
                    page = ids[start:start + outer.page_size]
                    nxt = start + outer.page_size
                    more = nxt < len(ids)
                    if outer.style == "cursor":
                        return self.send(200, {"submissions": [{"id": i} for i in page],
                                               "next": str(nxt) if more else None})
                    # "link": plain ids under data.items, a relative link under
                    # paging.next; "evil": the link leads to another server
                    link = f"/list?cursor={nxt}"
                    if outer.style == "evil":
                        link = f"http://127.0.0.2:{outer.port}/list?cursor={nxt}"
                    self.send(200, {"data": {"items": page},
                                    "paging": {"next": link if more else ""}})

            def fetch(self, sid):
                if not self.authorized():
                    return self.send(401, {"error": "invalid_token"})
                with outer.lock:
                    outer.fetch_started.append(sid)
                    delay = outer.fetch_delay.get(sid, outer.fetch_delay.get("*", 0))
                    outer.fetching += 1
                    outer.max_fetching = max(outer.max_fetching, outer.fetching)
                if delay:
                    time.sleep(delay)
                with outer.lock:
                    outer.fetching -= 1         # before answering: the client may go on
                self.fetch_answer(sid)

            def fetch_answer(self, sid):
                with outer.lock:
                    data = outer.subs.get(sid)
                    if data is None:
                        return self.send(404, {"error": "not_found"})
                    if outer.fetch_fail.get(sid, 0) > 0:
                        outer.fetch_fail[sid] -= 1
                        return self.send(500, {"error": "oops"})
                    outer.fetches[sid] = outer.fetches.get(sid, 0) + 1
                    gz = sid in outer.gzip_ids and "gzip" in self.headers.get(
                        "Accept-Encoding", "")
                    if gz:
                        outer.fetch_gzip.add(sid)
                if gz:
                    return self.send(200, gzip.compress(data), "application/xml",
                                     [("Content-Encoding", "gzip")])
                self.send(200, data, "application/xml")

            def do_DELETE(self):
                path = urllib.parse.urlsplit(self.path).path
                if path.startswith("/submissions/"):
                    return self.ack(urllib.parse.unquote(path[len("/submissions/"):]))
                self.send(404, {"error": "not_found"})

            def ack(self, sid):
                if not self.authorized():
                    return self.send(401, {"error": "invalid_token"})
                present = outer.in_db(sid)
                with outer.lock:
                    outer.ack_attempts[sid] = outer.ack_attempts.get(sid, 0) + 1
                    if sid not in outer.subs:
                        return self.send(404, {"error": "not_found"})
                    if outer.ack_fail.get(sid, 0) > 0:
                        outer.ack_fail[sid] -= 1
                        return self.send(503, {"error": "later"})
                    outer.acks.setdefault(sid, []).append(present)
                    del outer.subs[sid]
                self.send(204)
        return H
