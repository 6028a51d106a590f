"""agent/jose.c against an independent JOSE implementation (jwcrypto),
with keys and messages made fresh at test time: the C side decrypts what
jwcrypto encrypts, jwcrypto verifies the SETs the C side signs, and the C
side verifies what jwcrypto signs.  The C side is driven through
tests/unit/jose_tool (built by `make all`).

jwcrypto comes from Debian's python3-jwcrypto.  When /usr/bin/python3
cannot import it these tests FAIL (not skip): a silent skip would leave
the interop untested in CI.
"""
import base64
import json
import os
import subprocess

import pytest

from conftest import ROOT

try:
    from jwcrypto import jwe, jwk, jws
    from jwcrypto.common import json_encode
    HAVE_JWCRYPTO = True
except ImportError:  # pragma: no cover - depends on the machine
    HAVE_JWCRYPTO = False

TOOL = os.path.join(ROOT, "tests", "unit", "jose_tool")
ACCEPT = "https://schema.fitko.de/fit-connect/events/accept-submission"
REJECT = "https://schema.fitko.de/fit-connect/events/reject-submission"
SCHEMA = "https://schema.fitko.de/fit-connect/set-payload/1.0.0/set-payload.schema.json"
DEST = "879ee109-a690-4db8-ab32-424284184d7d"
SUB = "f39ab143-d91a-474a-b69f-b00f1a1873c2"
CASE = "9eec7d3e-dc66-4f82-9f52-1520bf96a32e"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Fresh 4096-bit keys as FIT-Connect uses them: one to encrypt to the
    destination, one for its signatures; written as JWK and PEM."""
    if not HAVE_JWCRYPTO:
        pytest.fail("python3-jwcrypto is not installed for /usr/bin/python3: "
                    "add python3-jwcrypto to scripts/install-deps.sh "
                    "(the JOSE interop tests need it)")
    assert os.access(TOOL, os.X_OK), f"{TOOL} missing: run `make all`"
    d = tmp_path_factory.mktemp("jose")
    enc = jwk.JWK.generate(kty="RSA", size=4096, kid="dest-enc-1", alg="RSA-OAEP-256",
                           use="enc")
    sig = jwk.JWK.generate(kty="RSA", size=4096, kid="dest-sig-1", alg="PS512", use="sig")
    paths = {}
    for name, key in (("enc", enc), ("sig", sig)):
        paths[name] = d / f"{name}.jwk.json"
        paths[name].write_text(key.export_private())
        paths[name + "-pub"] = d / f"{name}.pub.jwk.json"
        paths[name + "-pub"].write_text(key.export_public())
        paths[name + "-pem"] = d / f"{name}.pem"
        paths[name + "-pem"].write_bytes(key.export_to_pem(private_key=True, password=None))
    return {"enc": enc, "sig": sig, "paths": paths, "dir": d}


def tool(*args):
    p = subprocess.run([TOOL, *map(str, args)], capture_output=True, text=True, timeout=60)
    return p


def encrypt(key, data, cty=None):
    hdr = {"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": key["kid"]}
    if cty:
        hdr["cty"] = cty
    tok = jwe.JWE(data, json_encode(hdr))
    tok.add_recipient(key)
    return tok.serialize(compact=True)


def c_decrypt(keyfile, compact, d, name):
    src = d / f"{name}.jwe"
    out = d / f"{name}.out"
    src.write_text(compact)
    p = tool("decrypt", keyfile, src, out)
    return p, (out.read_bytes() if p.returncode == 0 else None)


def fields(stdout):
    return dict(line.split("=", 1) for line in stdout.splitlines())


def jwcrypto_verify(pubkey, compact):
    tok = jws.JWS()
    tok.deserialize(compact)
    tok.verify(pubkey, alg="PS512")
    return tok.jose_header, json.loads(tok.payload)


def test_c_decrypts_fresh_jwcrypto_jwe(keys):
    d, paths = keys["dir"], keys["paths"]
    cases = {
        "xml": ("<?xml version=\"1.0\"?><a:Antrag xmlns:a=\"urn:x\">Größe</a:Antrag>".encode(),
                "application/xml"),
        "binary": (bytes(range(256)) * 16 + os.urandom(1000), None),
        "large": (os.urandom(3 * 1024 * 1024 + 5), None),
        "empty": (b"", None),
    }
    for name, (data, cty) in cases.items():
        compact = encrypt(keys["enc"], data, cty)
        for keyfile in (paths["enc"], paths["enc-pem"]):
            p, out = c_decrypt(keyfile, compact, d, name)
            assert p.returncode == 0, f"{name}: {p.stderr}"
            assert out == data, name
            f = fields(p.stdout)
            assert f["kid"] == "dest-enc-1"
            assert f["cty"] == (cty or "")
            assert f["tag"] == compact.split(".")[4]
            assert int(f["len"]) == len(data)


def test_c_refuses_tampered_and_foreign_jwe(keys):
    d, paths = keys["dir"], keys["paths"]
    compact = encrypt(keys["enc"], b"<Antrag/>")
    h, ek, iv, ct, tag = compact.split(".")
    raw = bytearray(base64.urlsafe_b64decode(tag + "=="))
    raw[0] ^= 0x80
    bad_tag = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    p, out = c_decrypt(paths["enc"], ".".join([h, ek, iv, ct, bad_tag]), d, "tampered")
    assert p.returncode == 1 and out is None
    assert "wrong key, or the message was altered" in p.stderr
    # encrypted for another key
    other = jwk.JWK.generate(kty="RSA", size=2048, kid="other")
    p, out = c_decrypt(paths["enc"], encrypt(other, b"<Antrag/>"), d, "foreign")
    assert p.returncode == 1 and "wrong key, or the message was altered" in p.stderr
    # an algorithm FIT-Connect does not use is refused by name
    tok = jwe.JWE(b"x", json_encode({"alg": "RSA-OAEP", "enc": "A128GCM"}))
    tok.add_recipient(keys["enc"])
    p, out = c_decrypt(paths["enc"], tok.serialize(compact=True), d, "oaep1")
    assert p.returncode == 1
    assert 'alg "RSA-OAEP" is not supported (only RSA-OAEP-256)' in p.stderr


def test_jwcrypto_verifies_c_signed_accept_set(keys):
    """The FIT-Connect flow: decrypt metadata, data and attachments with C,
    put their tags into an accept SET signed by C; jwcrypto verifies it
    and finds every tag of the compact serialisations."""
    d, paths = keys["dir"], keys["paths"]
    parts = {"metadata": encrypt(keys["enc"], b'{"contentStructure":{}}', "application/json"),
             "data": encrypt(keys["enc"], b"<Antrag/>", "application/xml")}
    atts = {"0b799252-deb9-42b0-98d3-c50d24bbafe0": encrypt(keys["enc"], os.urandom(5000)),
            "25abf553-0e53-43b9-a14a-1581b32a9ee5": encrypt(keys["enc"], b"%PDF-1.7")}
    tags = {}
    for name, compact in list(parts.items()) + list(atts.items()):
        p, _ = c_decrypt(paths["enc"], compact, d, name)
        assert p.returncode == 0, p.stderr
        tags[name] = fields(p.stdout)["tag"]
        assert tags[name] == compact.split(".")[4]
    p = tool("sign-accept", paths["sig"], DEST, SUB, CASE, 1767225600, tags["metadata"],
             tags["data"], *(f"{a}={tags[a]}" for a in atts))
    assert p.returncode == 0, p.stderr
    header, claims = jwcrypto_verify(keys["sig"], p.stdout.strip())
    assert header == {"typ": "secevent+jwt", "alg": "PS512", "kid": "dest-sig-1"}
    assert set(claims) == {"$schema", "jti", "iss", "iat", "sub", "txn", "events"}
    assert claims["$schema"] == SCHEMA
    assert claims["iss"] == DEST
    assert claims["iat"] == 1767225600
    assert claims["sub"] == "submission:" + SUB
    assert claims["txn"] == "case:" + CASE
    assert len(claims["jti"]) == 36 and claims["jti"][14] == "4"
    assert claims["events"] == {ACCEPT: {"authenticationTags": {
        "metadata": parts["metadata"].split(".")[4],
        "data": parts["data"].split(".")[4],
        "attachments": {a: c.split(".")[4] for a, c in atts.items()}}}}


def test_jwcrypto_verifies_c_signed_reject_set(keys):
    d, paths = keys["dir"], keys["paths"]
    problems = [{"type": "https://schema.fitko.de/fit-connect/events/problems/an-example",
                 "title": "Prüfsumme falsch", "detail": "SHA-512 der Anlage weicht ab",
                 "instance": "attachment:25abf553-0e53-43b9-a14a-1581b32a9ee5"}]
    pf = d / "problems.json"
    pf.write_text(json.dumps(problems, ensure_ascii=False), encoding="utf-8")
    p = tool("sign-reject", paths["sig"], DEST, SUB, CASE, 1767225600, pf)
    assert p.returncode == 0, p.stderr
    header, claims = jwcrypto_verify(keys["sig"], p.stdout.strip())
    assert header["typ"] == "secevent+jwt" and header["kid"] == "dest-sig-1"
    assert claims["events"] == {REJECT: {"problems": problems}}
    assert claims["sub"] == "submission:" + SUB
    # a signature by another key does not verify under jwcrypto either
    other = jwk.JWK.generate(kty="RSA", size=2048)
    with pytest.raises(Exception):
        jwcrypto_verify(other, p.stdout.strip())


def test_c_verifies_jwcrypto_ps512(keys):
    d, paths = keys["dir"], keys["paths"]
    payload = {"iss": DEST, "sub": "submission:" + SUB, "iat": 1767225600,
               "events": {ACCEPT: {}}}
    tok = jws.JWS(json.dumps(payload).encode())
    tok.add_signature(keys["sig"], None,
                      json_encode({"alg": "PS512", "typ": "secevent+jwt", "kid": "dest-sig-1"}))
    f = d / "peer.jws"
    f.write_text(tok.serialize(compact=True))
    for keyfile in (paths["sig-pub"], paths["sig"], paths["sig-pem"]):
        p = tool("verify", keyfile, f)
        assert p.returncode == 0, p.stderr
        hdr, got = (json.loads(line) for line in p.stdout.splitlines())
        assert got == payload
        assert hdr["kid"] == "dest-sig-1"
    # the same payload signed by another key of the same size: refused
    stranger = jwk.JWK.generate(kty="RSA", size=4096)
    other = jws.JWS(json.dumps(payload).encode())
    other.add_signature(stranger, None, json_encode({"alg": "PS512"}))
    f.write_text(other.serialize(compact=True))
    p = tool("verify", paths["sig-pub"], f)
    assert p.returncode == 1 and "JWS signature does not verify" in p.stderr
    # RS512 by the right key: refused by name
    rs = jws.JWS(json.dumps(payload).encode())
    rs.add_signature(keys["sig"], None, json_encode({"alg": "RS512"}))
    f.write_text(rs.serialize(compact=True))
    p = tool("verify", paths["sig-pub"], f)
    assert p.returncode == 1 and 'alg "RS512" is not supported' in p.stderr


def test_public_jwk_matches_jwcrypto(keys):
    paths = keys["paths"]
    p = tool("pubjwk", paths["enc"])
    assert p.returncode == 0, p.stderr
    mine = json.loads(p.stdout)
    theirs = json.loads(keys["enc"].export_public())
    assert mine["n"] == theirs["n"] and mine["e"] == theirs["e"]
    assert mine["kid"] == "dest-enc-1" and mine["kty"] == "RSA"
    assert "d" not in mine
    # and jwcrypto can encrypt to the JWK we export
    pub = jwk.JWK(**mine)
    p2, out = c_decrypt(paths["enc"], encrypt(pub, b"round trip"), keys["dir"], "pubjwk")
    assert p2.returncode == 0 and out == b"round trip"
