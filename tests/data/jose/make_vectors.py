#!/usr/bin/python3
"""Makes the fixed JOSE test vectors in this folder with jwcrypto, an
implementation independent of rekey's C code (Debian: python3-jwcrypto).

Run once from the repository root:  /usr/bin/python3 tests/data/jose/make_vectors.py
It overwrites every vector (new keys, new ciphertexts), so the unit test
tests/unit/test_jose.c must still pass afterwards: it reads the files, it
does not hard-code their content.  Only test keys live here: they protect
nothing.
"""
import base64
import hashlib
import hmac
import json
import os

from cryptography.hazmat.primitives import serialization
from jwcrypto import jwe, jwk, jws
from jwcrypto.common import json_encode

HERE = os.path.dirname(os.path.abspath(__file__))


def write(name, data):
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(os.path.join(HERE, name), mode) as f:
        f.write(data)


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def make_key(size, kid, alg, use):
    key = jwk.JWK.generate(kty="RSA", size=size, kid=kid, alg=alg, use=use)
    return key


def encrypt(key, plaintext, enc="A256GCM", alg="RSA-OAEP-256", extra=None, kid=True):
    hdr = {"alg": alg, "enc": enc}
    if kid:
        hdr["kid"] = key["kid"]
    if extra:
        hdr.update(extra)
    tok = jwe.JWE(plaintext, json_encode(hdr))
    tok.add_recipient(key)
    return tok.serialize(compact=True)


def main():
    enc = make_key(4096, "rk-test-enc", "RSA-OAEP-256", "enc")
    other = make_key(2048, "rk-test-other", "RSA-OAEP-256", "enc")
    sig = make_key(4096, "rk-test-sig", "PS512", "sig")
    small = make_key(1024, "rk-test-small", "RSA-OAEP-256", "enc")

    write("key-enc.jwk.json", enc.export_private() + "\n")
    write("key-enc.pub.jwk.json", enc.export_public() + "\n")
    write("key-other.jwk.json", other.export_private() + "\n")
    write("key-sig.jwk.json", sig.export_private() + "\n")
    write("key-sig.pub.jwk.json", sig.export_public() + "\n")
    write("key-small.jwk.json", small.export_private() + "\n")
    write("key-enc.pem", enc.export_to_pem(private_key=True, password=None))
    write("key-enc.pub.pem", enc.export_to_pem())
    pk = serialization.load_pem_private_key(enc.export_to_pem(private_key=True, password=None),
                                            password=None)
    write("key-enc-pkcs1.pem", pk.private_bytes(serialization.Encoding.PEM,
                                                serialization.PrivateFormat.TraditionalOpenSSL,
                                                serialization.NoEncryption()))
    write("key-enc-encrypted.pem", pk.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"not-a-real-secret")))
    # a private JWK whose q belongs to another key: must fail the pairwise check
    bad = json.loads(enc.export_private())
    bad["q"] = json.loads(make_key(4096, "x", "RSA-OAEP-256", "enc").export_private())["q"]
    write("key-bad-crt.jwk.json", json.dumps(bad) + "\n")

    # plaintexts: JSON metadata, XML with non-ASCII text, binary, empty
    meta = json.dumps({"$schema": "https://schema.fitko.de/fit-connect/metadata/1.0.0/metadata.schema.json",
                       "contentStructure": {"data": {"submissionSchema": {
                           "schemaUri": "urn:example:antrag:1", "mimeType": "application/xml"},
                           "hash": {"type": "sha512", "content": ""}}, "attachments": []}},
                      separators=(",", ":")).encode()
    xml = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<a:Antrag xmlns:a=\"urn:example:antrag:1\">"
           "<a:Ort>Übersee-Größenwahn</a:Ort></a:Antrag>\n").encode()
    binary = bytes((i * 131 + 7) % 256 for i in range(4099)) + os.urandom(61)
    write("plain-json.bin", meta)
    write("plain-xml.bin", xml)
    write("plain-binary.bin", binary)

    write("jwe-json.txt", encrypt(enc, meta, extra={"cty": "application/json"}) + "\n")
    write("jwe-xml.txt", encrypt(enc, xml, extra={"cty": "application/xml"}) + "\n")
    write("jwe-binary.txt", encrypt(enc, binary) + "\n")
    write("jwe-empty.txt", encrypt(enc, b"") + "\n")
    write("jwe-nokid.txt", encrypt(enc, xml, kid=False) + "\n")
    write("jwe-a128cbc.txt", encrypt(enc, xml, enc="A128CBC-HS256") + "\n")
    write("jwe-rsa-oaep.txt", encrypt(enc, xml, alg="RSA-OAEP") + "\n")
    write("jwe-zip.txt", encrypt(enc, xml, extra={"zip": "DEF"}) + "\n")

    # PS512 JWS over a SET-shaped payload, and an RS512 one that must be refused
    payload = {"$schema": "https://schema.fitko.de/fit-connect/set-payload/1.0.0/set-payload.schema.json",
               "jti": "0b9ce0f3-93a4-4d6b-9cf4-4b5c8f1c2d11",
               "iss": "879ee109-a690-4db8-ab32-424284184d7d",
               "iat": 1767225600,
               "sub": "submission:f39ab143-d91a-474a-b69f-b00f1a1873c2",
               "txn": "case:9eec7d3e-dc66-4f82-9f52-1520bf96a32e",
               "events": {"https://schema.fitko.de/fit-connect/events/accept-submission": {
                   "authenticationTags": {"metadata": "XFBoMYUZodetZdvTiFvSkQ",
                                          "data": "UCGiqJxhBI3IFVdPalHHvA",
                                          "attachments": {}}}}}
    pl = json.dumps(payload, separators=(",", ":"))
    write("jws-payload.json", pl + "\n")
    for alg, name in (("PS512", "jws-ps512.txt"), ("RS512", "jws-rs512.txt")):
        s = jws.JWS(pl.encode())
        s.add_signature(sig, None, json_encode({"alg": alg, "typ": "secevent+jwt",
                                                "kid": sig["kid"]}))
        write(name, s.serialize(compact=True) + "\n")

    # FIT-Connect callback: hex HMAC-SHA512 over timestamp "." body
    secret = "rk-test-callback-secret-0123456789"
    ts = "1767225600"
    body = ('{"type":"https://schema.fitko.de/fit-connect/submission-api/callbacks/new-submissions",'
            '"submissionIds":["f39ab143-d91a-474a-b69f-b00f1a1873c2"]}')
    mac = hmac.new(secret.encode(), (ts + "." + body).encode(), hashlib.sha512).hexdigest()
    write("callback.json", json.dumps({"secret": secret, "timestamp": ts, "body": body,
                                       "mac": mac}, indent=1) + "\n")
    write("sha512.json", json.dumps({"plain-xml.bin": hashlib.sha512(xml).hexdigest(),
                                     "plain-binary.bin": hashlib.sha512(binary).hexdigest()},
                                    indent=1) + "\n")


if __name__ == "__main__":
    main()
