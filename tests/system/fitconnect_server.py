"""A fake FIT-Connect delivery service for the system tests (stdlib HTTP on
127.0.0.1, jwcrypto for the cryptography: independent of rekey's C code).

It speaks the subset the receiving side uses:

  POST /token                                  OAuth2 client credentials
                                               (client_id and client_secret in
                                               the form body); short-lived tokens
  GET  /v1/submissions?destinationId=&offset=&limit=
                                               {"count", "offset", "totalCount",
                                                "submissions": [{"submissionId",
                                                "caseId", "destinationId"}]}
  GET  /v1/submissions/{id}                    encryptedMetadata, encryptedData,
                                               attachments (ids), caseId
  GET  /v1/submissions/{id}/attachments/{aid}  compact JWE (application/jose)
  POST /v1/cases/{caseId}/events               a Security Event Token; its PS512
                                               signature is verified with the
                                               destination's public signature key
                                               and it is recorded with its payload;
                                               the submission is then no longer
                                               listed (accepted or rejected)

Every part is encrypted with jwcrypto (RSA-OAEP-256, A256GCM) to the
destination's public encryption key; the metadata declares the SHA-512 of
the data and of each attachment.  add() takes a fault to inject:

  hash-data, hash-attachment       the metadata declares a wrong hash
  break-data, break-metadata,      one character of the JWE's ciphertext
  break-attachment                 is changed (the GCM tag no longer fits)
  truncate-data                    the data JWE loses its last part
  wrong-key                        every part is encrypted for another key

and a media type (serve JSON data instead of XML with "application/json").

Knobs (change under `lock`): events_fail = n answers the next n events with
503; dup_ids = ids listed twice (on two pages); db = rekeyd's database, to
record the job's state when an event arrives.
"""
import hashlib
import json
import sqlite3
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from jwcrypto import jwe, jwk, jws

PROBLEM = "https://schema.fitko.de/fit-connect/events/problems/"
ACCEPT = "https://schema.fitko.de/fit-connect/events/accept-submission"
REJECT = "https://schema.fitko.de/fit-connect/events/reject-submission"


def make_keys(bits=2048):
    """The destination's key pairs: (encryption key, signature key), each
    a private jwcrypto JWK with kid and alg."""
    enc = jwk.JWK.generate(kty="RSA", size=bits, kid="rk-fc-enc", alg="RSA-OAEP-256",
                           use="enc")
    sig = jwk.JWK.generate(kty="RSA", size=bits, kid="rk-fc-sig", alg="PS512", use="sig")
    return enc, sig


def encrypt(key, plaintext, cty):
    """Compact JWE of plaintext for key (its public half)."""
    prot = {"alg": "RSA-OAEP-256", "enc": "A256GCM", "cty": cty}
    if key.get("kid"):
        prot["kid"] = key.get("kid")
    t = jwe.JWE(plaintext, protected=json.dumps(prot))
    t.add_recipient(key)
    return t.serialize(compact=True)


def tag_of(compact):
    return compact.split(".")[4]


def broken(compact):
    """The JWE with one ciphertext character changed (still base64url)."""
    p = compact.split(".")
    ct = p[3]
    i = len(ct) // 2
    p[3] = ct[:i] + ("B" if ct[i] != "B" else "C") + ct[i + 1:]
    return ".".join(p)


class Sub:
    def __init__(self, sid, case_id, data, mime, attachments):
        self.sid = sid
        self.case_id = case_id
        self.data = data
        self.mime = mime
        self.attachments = attachments        # [(aid, filename, mime, bytes)]
        self.meta_jwe = self.data_jwe = None
        self.att_jwe = {}
        self.metadata = None

    def tags(self):
        """The authentication tags an accept must carry."""
        return {"metadata": tag_of(self.meta_jwe),
                "data": tag_of(self.data_jwe) if self.data_jwe else None,
                "attachments": {aid: tag_of(j) for aid, j in self.att_jwe.items()}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that went away (rekeyd stopped mid-request) is expected


class FitConnectServer:
    def __init__(self, enc_key, sig_key, destination_id=None, client_id="rekey-fc",
                 client_secret="fc-s3cret-ABC", token_ttl=60, db=None):
        self.enc_pub = jwk.JWK(**json.loads(enc_key.export_public()))
        self.sig_pub = jwk.JWK(**json.loads(sig_key.export_public()))
        self.other_key = jwk.JWK.generate(kty="RSA", size=2048, kid="someone-else",
                                          alg="RSA-OAEP-256")
        self.destination_id = destination_id or str(uuid.uuid4())
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl = token_ttl
        self.db = db
        self.lock = threading.Lock()
        self.subs = {}                 # sid -> Sub, in order of arrival
        self.done = {}                 # sid -> "accept" | "reject"
        self.dup_ids = set()
        self.events_fail = 0
        # records
        self.tokens = {}               # token -> expiry (monotonic)
        self.token_requests = 0
        self.expired_uses = 0
        self.list_calls = 0
        self.fetches = {}              # sid -> count
        self.att_fetches = {}          # (sid, aid) -> count
        self.events = []               # dicts, see _event

    # -- building submissions ---------------------------------------------

    def add(self, data, mime="application/xml", attachments=(), fault=None):
        """Queues one submission; returns its id.  attachments are
        (filename, media type, bytes)."""
        sid, case_id = str(uuid.uuid4()), str(uuid.uuid4())
        atts = [(str(uuid.uuid4()), fn, mt, b) for fn, mt, b in attachments]
        s = Sub(sid, case_id, data, mime, atts)
        key = self.other_key if fault == "wrong-key" else self.enc_pub
        data_hash = hashlib.sha512(data).hexdigest()
        if fault == "hash-data":
            data_hash = hashlib.sha512(data + b" ").hexdigest()
        meta_atts = []
        for i, (aid, fn, mt, b) in enumerate(atts):
            h = hashlib.sha512(b).hexdigest()
            if fault == "hash-attachment" and i == 0:
                h = hashlib.sha512(b"other").hexdigest()
            meta_atts.append({"hash": {"type": "sha512", "content": h}, "purpose": "attachment",
                              "filename": fn, "mimeType": mt, "attachmentId": aid})
        s.metadata = {
            "$schema": "https://schema.fitko.de/fit-connect/metadata/1.0.0/metadata.schema.json",
            "contentStructure": {
                "data": {"hash": {"type": "sha512", "content": data_hash},
                         "submissionSchema": {"schemaUri": "urn:example:antrag:1",
                                              "mimeType": mime}},
                "attachments": meta_atts,
            },
        }
        s.meta_jwe = encrypt(key, json.dumps(s.metadata).encode(), "application/json")
        s.data_jwe = encrypt(key, data, mime)
        for aid, fn, mt, b in atts:
            s.att_jwe[aid] = encrypt(key, b, mt)
        if fault == "break-data":
            s.data_jwe = broken(s.data_jwe)
        elif fault == "truncate-data":
            s.data_jwe = s.data_jwe.rsplit(".", 1)[0]
        elif fault == "break-metadata":
            s.meta_jwe = broken(s.meta_jwe)
        elif fault == "break-attachment":
            aid = atts[0][0]
            s.att_jwe[aid] = broken(s.att_jwe[aid])
        with self.lock:
            self.subs[sid] = s
        return sid

    # -- lifecycle ---------------------------------------------------------

    def __enter__(self):
        self.httpd = _Server(("127.0.0.1", 0), self._handler())
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def config(self, enc_path, sig_path, name="test", **over):
        kv = {"api_url": self.url, "token_url": f"{self.url}/token",
              "client_id": self.client_id, "client_secret": self.client_secret,
              "destination_id": self.destination_id, "decryption_key": enc_path,
              "signing_key": sig_path, "poll_interval_ms": "300", "poll_jitter_ms": "0",
              "page_size": "4", "backoff_initial_ms": "100", "backoff_max_ms": "1000",
              "once_retries": "2"}
        kv.update({k: str(v) for k, v in over.items()})
        return f"[fitconnect {name}]\n" + "".join(f"{k} = {v}\n" for k, v in kv.items())

    def events_for(self, sid):
        return [e for e in self.events if e["sid"] == sid]

    def job_state(self, sid):
        if not self.db:
            return None
        con = sqlite3.connect(self.db, timeout=10)
        try:
            row = con.execute("SELECT j.state FROM jobs j JOIN submissions s ON"
                              " s.id = j.submission_id WHERE s.source_ref = ?",
                              (sid,)).fetchone()
            return row[0] if row else None
        finally:
            con.close()

    # -- HTTP ----------------------------------------------------------------

    def _handler(outer):
        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def send(self, status, body=b"", ctype="application/json"):
                if isinstance(body, (dict, list)):
                    body = json.dumps(body).encode()
                elif isinstance(body, str):
                    body = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def body(self):
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n)

            def authorized(self):
                auth = self.headers.get("Authorization", "")
                if not auth.startswith("Bearer "):
                    self.send(401, {"error": "no token"})
                    return False
                with outer.lock:
                    exp = outer.tokens.get(auth[7:])
                    if exp is None or exp < time.monotonic():
                        if exp is not None:
                            outer.expired_uses += 1
                        self.send(401, {"error": "invalid_token"})
                        return False
                return True

            def do_POST(self):
                path = urllib.parse.urlsplit(self.path).path
                if path == "/token":
                    return self.token(self.body())
                parts = path.strip("/").split("/")
                if len(parts) == 4 and parts[:2] == ["v1", "cases"] and parts[3] == "events":
                    body = self.body()
                    if not self.authorized():
                        return
                    return self.event(parts[2], body)
                self.send(404, {"error": "no such endpoint"})

            def token(self, body):
                form = urllib.parse.parse_qs(body.decode())
                with outer.lock:
                    outer.token_requests += 1
                    if (form.get("grant_type") != ["client_credentials"]
                            or form.get("client_id") != [outer.client_id]
                            or form.get("client_secret") != [outer.client_secret]):
                        return self.send(401, {"error": "invalid_client"})
                    tok = uuid.uuid4().hex
                    outer.tokens[tok] = time.monotonic() + outer.token_ttl
                self.send(200, {"access_token": tok, "token_type": "Bearer",
                                "expires_in": outer.token_ttl, "scope": ""})

            def do_GET(self):
                u = urllib.parse.urlsplit(self.path)
                parts = u.path.strip("/").split("/")
                if not self.authorized():
                    return
                if parts == ["v1", "submissions"]:
                    return self.list(urllib.parse.parse_qs(u.query))
                if len(parts) == 3 and parts[:2] == ["v1", "submissions"]:
                    return self.fetch(parts[2])
                if len(parts) == 5 and parts[:2] == ["v1", "submissions"] and \
                        parts[3] == "attachments":
                    return self.attachment(parts[2], parts[4])
                self.send(404, {"error": "no such endpoint"})

            def list(self, q):
                with outer.lock:
                    outer.list_calls += 1
                    if q.get("destinationId") != [outer.destination_id]:
                        return self.send(403, {"error": "not your destination"})
                    ids = [sid for sid in outer.subs if sid not in outer.done]
                    ids += [sid for sid in ids if sid in outer.dup_ids]
                    off = int(q.get("offset", ["0"])[0])
                    lim = int(q.get("limit", ["100"])[0])
                    page = ids[off:off + lim]
                    items = [{"destinationId": outer.destination_id, "submissionId": sid,
                              "caseId": outer.subs[sid].case_id} for sid in page]
                self.send(200, {"count": len(items), "offset": off, "totalCount": len(ids),
                                "submissions": items})

            def fetch(self, sid):
                with outer.lock:
                    s = outer.subs.get(sid)
                    if not s or sid in outer.done:
                        return self.send(404, {"error": "no such submission"})
                    outer.fetches[sid] = outer.fetches.get(sid, 0) + 1
                    ans = {"destinationId": outer.destination_id, "submissionId": sid,
                           "caseId": s.case_id, "serviceType": {"name": "Test"},
                           "attachments": list(s.att_jwe), "encryptedMetadata": s.meta_jwe}
                    if s.data_jwe:
                        ans["encryptedData"] = s.data_jwe
                self.send(200, ans)

            def attachment(self, sid, aid):
                with outer.lock:
                    s = outer.subs.get(sid)
                    if not s or sid in outer.done or aid not in s.att_jwe:
                        return self.send(404, {"error": "no such attachment"})
                    outer.att_fetches[(sid, aid)] = outer.att_fetches.get((sid, aid), 0) + 1
                    body = s.att_jwe[aid]
                self.send(200, body, ctype="application/jose")

            def event(self, case_id, body):
                rec = {"case": case_id, "valid": False, "error": None, "header": None,
                       "payload": None, "sid": None, "kind": None, "state": None,
                       "content_type": self.headers.get("Content-Type")}
                try:
                    t = jws.JWS()
                    t.deserialize(body.decode())
                    t.verify(outer.sig_pub, alg="PS512")
                    rec["header"] = t.jose_header
                    rec["payload"] = json.loads(t.payload)
                    rec["valid"] = True
                except Exception as ex:  # recorded, answered 400
                    rec["error"] = repr(ex)
                p = rec["payload"] or {}
                sub = p.get("sub", "")
                rec["sid"] = sub[len("submission:"):] if sub.startswith("submission:") else None
                ev = p.get("events") or {}
                rec["kind"] = "accept" if ACCEPT in ev else "reject" if REJECT in ev else None
                with outer.lock:
                    fail = outer.events_fail > 0
                    if fail:
                        outer.events_fail -= 1
                    s = outer.subs.get(rec["sid"]) if rec["sid"] else None
                    known = s is not None and s.case_id == case_id and \
                        rec["sid"] not in outer.done
                rec["state"] = outer.job_state(rec["sid"]) if rec["sid"] else None
                rec["answer"] = 503 if fail else 400 if not rec["valid"] else \
                    404 if not known else 202
                with outer.lock:
                    outer.events.append(rec)
                    if rec["answer"] == 202:
                        outer.done[rec["sid"]] = rec["kind"]
                self.send(rec["answer"], {} if rec["answer"] == 202 else {"error": "refused"})

        return H
