"""A scripted HTTP/HTTPS target for the rest connector's system tests.

HttpTarget listens on 127.0.0.1 (a free port), records every request it
gets (arrival time, method, path, headers, body, the client certificate's
subject) and answers per a script: a list of replies used one per request
in order, then `default` for every further request; or a callable
reply_for(request) that decides from the request itself.  A reply is a
dict with any of:

    status   int, default 200
    headers  dict of extra response headers (e.g. {"Retry-After": "1"})
    body     bytes, str, or a dict/list sent as JSON (default: empty)
    delay    seconds to wait before answering (default 0)

TLS: make_certs(folder) runs the `openssl` command line to create a
self-signed server certificate for 127.0.0.1 and a test CA with one client
certificate signed by it.  HttpTarget(tls=certs) serves HTTPS with the server
certificate; HttpTarget(tls=certs, client_ca=True) also demands a client
certificate signed by the test CA.

Only the standard library; the server threads are daemon threads.
"""
import json
import os
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Request:
    """One request as the target saw it."""

    def __init__(self, at, method, path, headers, body, peer_cn):
        self.at = at              # time.time() when the request had fully arrived
        self.method = method
        self.path = path
        self.headers = headers    # email.message.Message: .get() ignores case
        self.body = body          # bytes
        self.peer_cn = peer_cn    # the client certificate's CN, or None

    def header(self, name):
        return self.headers.get(name)

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return f"<Request {self.method} {self.path} at {self.at:.3f}>"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the connector expects

    def _any(self):
        target = self.server.target
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        cn = None
        if isinstance(self.connection, ssl.SSLSocket):
            cert = self.connection.getpeercert()
            if cert:
                for rdn in cert.get("subject", ()):
                    for k, v in rdn:
                        if k == "commonName":
                            cn = v
        req = Request(time.time(), self.command, self.path, self.headers, body, cn)
        reply = target._record(req)
        if reply.get("delay"):
            time.sleep(reply["delay"])
        data = reply.get("body", b"")
        headers = dict(reply.get("headers") or {})
        if isinstance(data, (dict, list)):
            data = json.dumps(data).encode("utf-8")
            headers.setdefault("Content-Type", "application/json")
        elif isinstance(data, str):
            data = data.encode("utf-8")
        try:
            self.send_response(reply.get("status", 200))
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            self.close_connection = True  # the client gave up (a timeout test)

    do_POST = do_PUT = do_PATCH = do_GET = do_DELETE = _any

    def log_message(self, fmt, *args):  # quiet
        pass


class HttpTarget:
    """The scripted target.  Use as a context manager or call close()."""

    def __init__(self, script=None, default=None, reply_for=None, tls=None,
                 client_ca=False):
        self.script = list(script or [])
        self.default = default if default is not None else {"status": 200}
        self.reply_for = reply_for
        self.requests = []
        self._lock = threading.Lock()
        self._srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._srv.daemon_threads = True
        self._srv.target = self
        self.scheme = "http"
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls["server_cert"], tls["server_key"])
            if client_ca:
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.load_verify_locations(tls["ca_cert"])
            self._srv.socket = ctx.wrap_socket(self._srv.socket, server_side=True)
            self.scheme = "https"
        self.port = self._srv.server_address[1]
        self._thread = threading.Thread(target=self._srv.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path="/"):
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def _record(self, req):
        with self._lock:
            self.requests.append(req)
            if self.reply_for:
                return self.reply_for(req) or self.default
            return self.script.pop(0) if self.script else self.default

    def close(self):
        self._srv.shutdown()
        self._srv.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certs(folder):
    """Creates, in folder, a self-signed server certificate for 127.0.0.1
    (and localhost) and a test CA with a client certificate (CN
    rekey-client) signed by it.  Returns a dict of the file paths."""
    folder = str(folder)
    os.makedirs(folder, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "server.key", "-out", "server.crt",
             "-days", "2", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", cwd=folder)
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=rekey test CA", cwd=folder)
    _openssl("req", *ec, "-keyout", "client.key", "-out", "client.csr",
             "-subj", "/CN=rekey-client", cwd=folder)
    _openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-set_serial", "2", "-days", "2", "-out", "client.crt", cwd=folder)
    names = {"server_cert": "server.crt", "server_key": "server.key", "ca_cert": "ca.crt",
             "client_cert": "client.crt", "client_key": "client.key"}
    return {k: os.path.join(folder, v) for k, v in names.items()}
