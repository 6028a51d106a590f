#!/usr/bin/python3
"""Builds the hostile-input set of tests/data/hostile/ into a folder.

    tests/data/hostile/make.py OUTDIR [--port N] [--big]

Copies the committed files of this folder (every *.xml; "@PORT@" becomes
the port of the test's HTTP listener on 127.0.0.1, default 9) and
generates the inputs that are big, binary or twins of a sample: the gzip
bomb, the quadratic blow-up, 10,000-deep nesting, invalid UTF-8, NUL
bytes, the UTF-16 twins and two documents that try to make the parser or
the validator fetch something.  --big adds the 100 MB document (never
committed; the system test writes it into its temp folder).

build() returns {file name: expectation}; README.md explains each file.
An expectation is a dict:

    {"outcome": "failed", "codes": ["XML_DOCTYPE"], "message": "DOCTYPE"}
    {"outcome": "error", "reason": "inbox.max_ratio"}
    {"outcome": "delivered", "twin": "samples/NAME.xml", "job": "JOB"}
    {"outcome": "review", "codes": ["SCHEMA"], "job": "JOB"}

"message" and "reason" are substrings (case-insensitive) of the anomaly
message or of the NAME.reason file; "twin" is the UTF-8 sample whose
mapped record the file must produce.  Standard library only.
"""
import argparse
import os
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLES = os.path.join(os.path.dirname(HERE), "samples")

DECL = b'<?xml version="1.0" encoding="UTF-8"?>'

# the committed files and what must become of them
STATIC = {
    "xxe-file.xml": {"outcome": "failed", "codes": ["XML_DOCTYPE"], "message": "DOCTYPE"},
    "xxe-http.xml": {"outcome": "failed", "codes": ["XML_DOCTYPE"], "message": "DOCTYPE"},
    "xxe-parameter.xml": {"outcome": "failed", "codes": ["XML_DOCTYPE"],
                          "message": "DOCTYPE"},
    "external-dtd-http.xml": {"outcome": "failed", "codes": ["XML_DOCTYPE"],
                              "message": "DOCTYPE"},
    "external-dtd-file.xml": {"outcome": "failed", "codes": ["XML_DOCTYPE"],
                              "message": "DOCTYPE"},
    "billion-laughs.xml": {"outcome": "failed", "codes": ["XML_DOCTYPE"],
                           "message": "DOCTYPE"},
}


def sample(name):
    with open(os.path.join(SAMPLES, name), "rb") as f:
        return f.read()


def utf16(data, encoding, bom, label):
    """The UTF-8 sample data re-encoded; the declaration names label (None:
    no declaration at all)."""
    assert data.startswith(DECL)
    body = data[len(DECL):]
    if label is not None:
        body = f'<?xml version="1.0" encoding="{label}"?>'.encode() + body
    else:
        body = body.lstrip(b"\r\n")
    out = body.decode("utf-8").encode(encoding)
    if bom:
        out = ("\ufeff".encode(encoding)) + out
    return out


def write(out, name, data):
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)


def build(out, port=9, big=False):
    """Writes the whole set into out; returns {name: expectation}."""
    os.makedirs(out, exist_ok=True)
    exp = {}
    for name, e in STATIC.items():
        with open(os.path.join(HERE, name), "rb") as f:
            data = f.read().replace(b"@PORT@", str(port).encode())
        write(out, name, data)
        exp[name] = e

    # one entity of 40 kB referenced 20,000 times: 800 MB if expanded
    ent = b"A" * 40000
    write(out, "quadratic-blowup.xml",
          b'<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY a "' + ent + b'">]>\n<r>' +
          b"&a;" * 20000 + b"</r>\n")
    exp["quadratic-blowup.xml"] = {"outcome": "failed", "codes": ["XML_DOCTYPE"],
                                   "message": "DOCTYPE"}

    # 100 MB of blanks inside an element, gzipped to about 100 kB
    write(out, "gzip-bomb.xml.gz", gzip_bomb(100))
    exp["gzip-bomb.xml.gz"] = {"outcome": "error", "reason": "inbox.max_ratio"}

    depth = 10000
    write(out, "deep-nesting.xml",
          b'<?xml version="1.0"?>\n' + b"<a>" * depth + b"x" + b"</a>" * depth + b"\n")
    exp["deep-nesting.xml"] = {"outcome": "failed", "codes": ["XML_MALFORMED"],
                               "message": "verschachtelt"}

    # "Köhler" with the ö as one ISO-8859-1 byte in a document declared UTF-8
    bpa = sample("besucherparkausweis-01-tag.xml")
    assert "Köhler".encode() in bpa
    write(out, "invalid-utf8-latin1.xml", bpa.replace("Köhler".encode(), b"K\xf6hler"))
    exp["invalid-utf8-latin1.xml"] = {"outcome": "failed", "codes": ["XML_MALFORMED"],
                                      "message": "Bytes: 0xF6"}
    # an overlong encoding of "<" (0xC0 0xBC), the classic filter bypass
    write(out, "invalid-utf8-overlong.xml",
          bpa.replace(b"<Kennzeichen>", b"<Kennzeichen>\xc0\xbcscript>"))
    exp["invalid-utf8-overlong.xml"] = {"outcome": "failed", "codes": ["XML_MALFORMED"],
                                        "message": "Bytes: 0xC0 0xBC"}
    write(out, "nul-bytes.xml", bpa.replace(b"Sabine", b"Sab\x00ine"))
    exp["nul-bytes.xml"] = {"outcome": "failed", "codes": ["XML_MALFORMED"],
                            "message": "Zeile 9: Char 0x0"}

    # UTF-16 twins of valid samples: delivered exactly like the UTF-8 file
    twins = [
        ("utf16le-bom.xml", "fischereischein-02-erstausstellung.xml", "fischereischein",
         "utf-16-le", True, "UTF-16"),
        ("utf16be-bom.xml", "besucherparkausweis-02-woche.xml", "besucherparkausweis",
         "utf-16-be", True, "UTF-16"),
        ("utf16le-nobom-decl.xml", "besucherparkausweis-03-monat.xml", "besucherparkausweis",
         "utf-16-le", False, "UTF-16LE"),
        ("utf16be-nobom-decl.xml", "gewerbeanmeldung-03-nebenerwerb.xml", "gewerbeanmeldung",
         "utf-16-be", False, "UTF-16BE"),
    ]
    for name, src, job, enc, bom, label in twins:
        write(out, name, utf16(sample(src), enc, bom, label))
        exp[name] = {"outcome": "delivered", "twin": "samples/" + src, "job": job}
    # no BOM and no declaration: nothing says UTF-16, so it is read as UTF-8
    write(out, "utf16le-nobom-nodecl.xml",
          utf16(sample("gewerbeanmeldung-02-gmbh.xml"), "utf-16-le", False, None))
    exp["utf16le-nobom-nodecl.xml"] = {"outcome": "failed", "codes": ["XML_MALFORMED"],
                                       "message": "offenbar UTF-16"}
    # UTF-16 bytes under a declaration that names another encoding
    write(out, "utf16le-nobom-latin1decl.xml",
          utf16(sample("besucherparkausweis-11-zahlung-offen.xml"), "utf-16-le", False,
                "ISO-8859-1"))
    exp["utf16le-nobom-latin1decl.xml"] = {"outcome": "failed", "codes": ["XML_MALFORMED"],
                                           "message": "offenbar UTF-16"}

    # a valid sample that asks the validator to fetch its schema: the job's
    # XSD is used and nothing is fetched
    gw = sample("gewerbeanmeldung-01-einzelunternehmen.xml")
    hint = (' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation='
            f'"urn:xoev-de:xgewerbeanzeige:rekey-beispiel:1 http://127.0.0.1:{port}/evil.xsd"')
    root = b'<xga:gewerbeanzeige xmlns:xga="urn:xoev-de:xgewerbeanzeige:rekey-beispiel:1"'
    assert root in gw
    write(out, "xsi-schemalocation-http.xml", gw.replace(root, root + hint.encode(), 1))
    exp["xsi-schemalocation-http.xml"] = {
        "outcome": "delivered", "twin": "samples/gewerbeanmeldung-01-einzelunternehmen.xml",
        "job": "gewerbeanmeldung"}
    # XInclude is not processed: the include element is just an element the
    # XSD does not allow
    fs = sample("fischereischein-04-verlaengerung.xml")
    inc = (b'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" parse="text" '
           b'href="file:///etc/passwd"/>')
    assert b"<Antragsteller>" in fs
    write(out, "xinclude.xml", fs.replace(b"<Antragsteller>", b"<Antragsteller>" + inc, 1))
    exp["xinclude.xml"] = {"outcome": "review", "codes": ["SCHEMA"], "job": "fischereischein"}

    if big:
        write_big(os.path.join(out, "big-100mb.xml"))
        exp["big-100mb.xml"] = {"outcome": "error", "reason": "inbox.max_file_size"}
    return exp


def gzip_bomb(mib):
    """A gzip member holding <a>, mib MiB of blanks and </a> (streamed:
    gzip.compress of the whole would take seconds)."""
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    blanks = b" " * (1 << 20)
    parts = [z.compress(b"<a>")]
    parts += [z.compress(blanks) for _ in range(mib)]
    parts += [z.compress(b"</a>"), z.flush()]
    return b"".join(parts)


def write_big(path, size=100 << 20):
    """A well-formed document of size bytes, written in 1 MB pieces."""
    head, tail = b"<a>", b"</a>\n"
    chunk = b"x" * (1 << 20)
    left = size - len(head) - len(tail)
    with open(path, "wb") as f:
        f.write(head)
        while left > 0:
            n = min(left, len(chunk))
            f.write(chunk[:n])
            left -= n
        f.write(tail)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--port", type=int, default=9)
    ap.add_argument("--big", action="store_true", help="also write the 100 MB document")
    a = ap.parse_args()
    for name, e in sorted(build(a.out, a.port, a.big).items()):
        print(f"{name:28} {e['outcome']:9} {', '.join(e.get('codes', []))}")


if __name__ == "__main__":
    main()
