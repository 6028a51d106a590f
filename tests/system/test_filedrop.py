"""The filedrop connector through the real daemon: the besucherparkausweis
job of jobs/ (copied with schemas/ into a temp folder) delivers to
filedrop instead of sqlite, and the files in the drop folder are read back
byte for byte: encoding, quoting, header, column order, fixed widths, XML;
that no file is ever visible half-written under its final name; and that
a forced redelivery never makes a second file."""
import csv
import io
import os
import re
import shutil
import sqlite3
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

from conftest import DATA, REKEYCTL, ROOT, Rig

SAMPLE = os.path.join(DATA, "samples", "besucherparkausweis-01-tag.xml")
FILEDROP = os.path.join(ROOT, "connectors", "filedrop", "filedrop.so")
# the <map> of jobs/besucherparkausweis.xml, in order
MAP_FIELDS = ["antragsnummer", "nachname", "vornamen", "strasse", "plz", "ort", "email",
              "kennzeichen", "parkgebiet", "gueltig_ab", "dauer", "betrag", "waehrung",
              "zahlungsstatus", "transaktionsreferenz", "kassenzeichen", "zahlverfahren",
              "bezahlt_am"]
# two fields added to the map by some tests: a value with CR LF inside
# (XPath concat with character references, so nothing trims it) and one
# that maps to nothing (NULL)
EXTRA_FIELDS = ('<field name="bemerkung" from="concat(\'Zeile 1&#13;&#10;Zeile 2 \', '
                'bpa:Antragsteller/bpa:F60000000228)"/>'
                '<field name="leer" from="bpa:GibtEsNicht"/>')


def filedrop_rig(tmp_path, settings, extra_fields=""):
    """A Rig whose besucherparkausweis job delivers to filedrop with these
    settings (values may use ${drop}, the drop folder)."""
    jobs = tmp_path / "jobs"
    shutil.copytree(os.path.join(ROOT, "jobs"), jobs)
    shutil.copytree(os.path.join(ROOT, "schemas"), tmp_path / "schemas")
    f = jobs / "besucherparkausweis.xml"
    sets = "".join(f'<set key="{k}">{escape(v)}</set>' for k, v in settings.items())
    text = f.read_text()
    text, n = re.subn(r'<connector plugin="sqlite">.*?</connector>',
                      f'<connector plugin="filedrop">{sets}</connector>', text, flags=re.S)
    assert n == 1
    text = text.replace("</map>", extra_fields + "</map>")
    f.write_text(text)
    drop = tmp_path / "drop"
    drop.mkdir()
    rig = Rig(tmp_path / "run", jobs=str(jobs), extra=f"drop = {drop}\n")
    return rig, str(drop)


def antrag(nr, nachname="Köhler", vornamen="Sabine", ort="München"):
    """The bytes of a Besucherparkausweis application (sample 01 with other
    values)."""
    with open(SAMPLE, encoding="utf-8") as f:
        text = f.read()
    for old, new in (("BPA-2026-017734", nr), ("Köhler", nachname), ("Sabine", vornamen),
                     ("München", ort)):
        assert old in text
        text = text.replace(f">{old}<", f">{escape(new)}<")
    return text.encode("utf-8")


def published(drop):
    """The files under their final names (hidden ones are ours)."""
    return sorted(n for n in os.listdir(drop) if not n.startswith("."))


def read(drop, name):
    with open(os.path.join(drop, name), "rb") as f:
        return f.read()


def by_ref(rig):
    """source file name → (job id, state, target id)."""
    rows = rig.q("SELECT s.source_ref, j.id, j.state, j.target_id FROM jobs j"
                 " JOIN submissions s ON s.id = j.submission_id")
    return {os.path.basename(r[0]): (r[1], r[2], r[3]) for r in rows}


def refusal(rig, job_id):
    rows = rig.q("SELECT message FROM anomalies WHERE job_id = ? AND code ="
                 " 'ANBINDUNG_ABGELEHNT'", job_id)
    assert len(rows) == 1, rows
    return rows[0][0]


def force_redelivery(rig):
    """What rekeyd finds after a crash between the target's write and its
    own commit: the jobs in 'delivering', their deliveries pending."""
    con = sqlite3.connect(rig.db)
    con.execute("UPDATE jobs SET state = 'delivering' WHERE state = 'delivered'")
    if con.execute("SELECT 1 FROM sqlite_master WHERE name = 'deliveries'").fetchone():
        con.execute("UPDATE deliveries SET state = 'pending' WHERE state = 'delivered'")
    con.commit()
    con.close()


def test_csv_latin9_quoting_header_column_order(tmp_path):
    rig, drop = filedrop_rig(tmp_path, {
        "dir": "${drop}", "encoding": "iso-8859-15",
        "columns": "nachname, antragsnummer, ort, vornamen, betrag, bemerkung, leer"},
        EXTRA_FIELDS)
    rig.drop_bytes("a.xml", antrag("BPA-1", nachname='Köhler; "Kalle"'))
    rig.drop_bytes("b.xml", antrag("BPA-2", nachname="Weiß", ort="Görlitz"))
    rig.drop_bytes("c.xml", antrag("BPA-3", vornamen="Łukasz"))       # no Ł in Latin-9
    rig.drop_bytes("d.xml", antrag("BPA-4", ort="€-Stadt"))            # € is 0xA4 there
    rig.run_once()
    jobs = by_ref(rig)
    for ref in ("a.xml", "b.xml", "d.xml"):
        job_id, state, target = jobs[ref]
        assert state == "delivered", (ref, state)
        assert target == f"besucherparkausweis-{job_id}.csv"
    header = b"nachname;antragsnummer;ort;vornamen;betrag;bemerkung;leer\r\n"
    a = read(drop, jobs["a.xml"][2])
    assert a == header + (b'"K\xf6hler; ""Kalle""";BPA-1;M\xfcnchen;Sabine;5.00;'
                          b'"Zeile 1\r\nZeile 2 Sabine";\r\n')
    b = read(drop, jobs["b.xml"][2])
    assert b == header + b'Wei\xdf;BPA-2;G\xf6rlitz;Sabine;5.00;"Zeile 1\r\nZeile 2 Sabine";\r\n'
    d = read(drop, jobs["d.xml"][2])
    assert b";\xa4-Stadt;" in d
    # a reader that knows the format gets the values back
    rows = list(csv.reader(io.StringIO(a.decode("iso-8859-15"), newline=""), delimiter=";"))
    assert rows[1][:2] == ['Köhler; "Kalle"', "BPA-1"]
    assert rows[1][5] == "Zeile 1\r\nZeile 2 Sabine"
    # Ł cannot be written: held for review, naming the field, and no file
    job_id, state, _ = jobs["c.xml"]
    assert state == "review"
    msg = refusal(rig, job_id)
    assert "'vornamen'" in msg and "U+0141" in msg and "Łukasz" not in msg
    assert published(drop) == sorted(jobs[r][2] for r in ("a.xml", "b.xml", "d.xml"))
    assert os.stat(os.path.join(drop, jobs["a.xml"][2])).st_mode & 0o777 == 0o640
    # nothing left behind but the markers folder
    assert sorted(n for n in os.listdir(drop) if n.startswith(".")) == [".rekey-keys"]
    assert len(os.listdir(os.path.join(drop, ".rekey-keys"))) == 3


def test_csv_quote_all_tab_no_header_lf(tmp_path):
    rig, drop = filedrop_rig(tmp_path, {
        "dir": "${drop}", "quote": "all", "separator": "tab", "header": "false",
        "line_end": "lf", "columns": "antragsnummer,nachname,leer,ort",
        "name_pattern": "import_{date}_{key}.{ext}"}, EXTRA_FIELDS)
    rig.drop_bytes("a.xml", antrag("BPA-5", nachname='Ö"zdemir'))
    rig.run_once()
    (job_id, state, target), = by_ref(rig).values()
    assert state == "delivered"
    assert re.fullmatch(r"import_\d{8}_[0-9a-f]{32}\.csv", target), target
    assert time.strftime("%Y%m%d") in target or time.strftime("%Y%m%d",
                                                              time.localtime(time.time() - 60)) in target
    # every value quoted, quotes doubled; NULL an empty cell without quotes
    assert read(drop, target) == '"BPA-5"\t"Ö""zdemir"\t\t"München"\n'.encode("utf-8")


def test_xml_escaped_and_char_refs_in_latin9(tmp_path):
    rig, drop = filedrop_rig(tmp_path, {"dir": "${drop}", "format": "xml",
                                        "xml_root": "antrag", "encoding": "iso-8859-15",
                                        "line_end": "lf"}, EXTRA_FIELDS)
    rig.drop_bytes("a.xml", antrag("BPA-6", nachname="Köhler & <Söhne>", vornamen="Łukasz"))
    rig.run_once()
    (job_id, state, target), = by_ref(rig).values()
    assert state == "delivered"
    assert target == f"besucherparkausweis-{job_id}.xml"
    raw = read(drop, target)
    assert raw.startswith(b'<?xml version="1.0" encoding="ISO-8859-15"?>\n<antrag>\n')
    assert b"<nachname>K\xf6hler &amp; &lt;S\xf6hne&gt;</nachname>" in raw
    assert b"<vornamen>&#x141;ukasz</vornamen>" in raw      # kept exactly, as a reference
    assert b"<leer/>" in raw
    root = ET.fromstring(raw)
    assert root.tag == "antrag"
    assert [e.tag for e in root] == MAP_FIELDS + ["bemerkung", "leer"]
    values = {e.tag: e.text for e in root}
    assert values["nachname"] == "Köhler & <Söhne>"
    assert values["vornamen"] == "Łukasz"
    assert values["ort"] == "München"
    assert values["bemerkung"] == "Zeile 1\r\nZeile 2 Łukasz"   # CR survives as &#13;
    assert values["leer"] is None


def test_fixed_width_pads_and_refuses_overlong(tmp_path):
    rig, drop = filedrop_rig(tmp_path, {"dir": "${drop}", "format": "fixed",
                                        "encoding": "iso-8859-15", "line_end": "lf",
                                        "columns": "antragsnummer,nachname,plz,betrag",
                                        "widths": "8, 10, 5, 7"})
    rig.drop_bytes("a.xml", antrag("BPA-7", nachname="Müller"))
    rig.drop_bytes("b.xml", antrag("BPA-8", nachname="Müllerhaus"))        # exactly 10
    rig.drop_bytes("c.xml", antrag("BPA-9", nachname="Schmidt-Rottluff"))  # 16 > 10
    rig.run_once()
    jobs = by_ref(rig)
    a = read(drop, jobs["a.xml"][2])
    assert a == b"BPA-7   M\xfcller    803395.00   \n"
    b = read(drop, jobs["b.xml"][2])
    assert b == b"BPA-8   M\xfcllerhaus803395.00   \n"
    assert len(a) == len(b) == 8 + 10 + 5 + 7 + 1
    job_id, state, _ = jobs["c.xml"]
    assert state == "review"
    assert refusal(rig, job_id) == "field 'nachname' has 16 characters, more than its width 10"
    assert len(published(drop)) == 2


def test_no_partial_file_and_redelivery_makes_no_second_file(tmp_path):
    """A watcher polls the folder while the daemon delivers 60 records:
    whatever it sees under a final name is complete (and never changes
    afterwards).  Then redeliveries of every record, also with the
    markers lost and with files taken away by the target, never add a
    file."""
    rig, drop = filedrop_rig(tmp_path, {"dir": "${drop}"})
    n = 60
    for i in range(n):
        rig.drop_bytes(f"a{i:03}.xml", antrag(f"BPA-{1000 + i}", nachname=f"Name{i}"))
    seen = {}
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            for name in published(drop):
                try:
                    data = read(drop, name)
                except FileNotFoundError:
                    continue
                seen.setdefault(name, set()).add(data)

    t = threading.Thread(target=watch)
    t.start()
    try:
        rig.run_once()
    finally:
        stop.set()
        t.join()
    files = published(drop)
    assert len(files) == n
    assert seen, "the watcher saw no file during the run"
    for name, contents in seen.items():
        assert contents == {read(drop, name)}, f"{name} was seen half-written"
    final = {name: read(drop, name) for name in files}
    for name, data in final.items():
        rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline=""), delimiter=";"))
        assert rows[0] == MAP_FIELDS and len(rows) == 2 and len(rows[1]) == len(MAP_FIELDS)
    jobs = by_ref(rig)
    assert {s for (_, s, _) in jobs.values()} == {"delivered"}
    assert {t for (_, _, t) in jobs.values()} == set(files)
    mtimes = {name: os.stat(os.path.join(drop, name)).st_mtime_ns for name in files}

    def redeliver():
        force_redelivery(rig)
        p = rig.run_once()
        assert p.stderr.count("interrupted delivery") >= 1 or \
            len(rig.q("SELECT 1 FROM events WHERE reason LIKE 'interrupted delivery%'")) > 0
        assert {s for (s,) in rig.q("SELECT state FROM jobs")} == {"delivered"}

    # 1. a plain redelivery: the markers answer, nothing is written
    redeliver()
    assert {name: read(drop, name) for name in published(drop)} == final
    assert {name: os.stat(os.path.join(drop, name)).st_mtime_ns
            for name in published(drop)} == mtimes
    if rig.q("SELECT 1 FROM sqlite_master WHERE name = 'deliveries'"):
        assert {a for (a,) in rig.q("SELECT attempts FROM deliveries")} == {2}

    # 2. stopped between publishing and the marker: the file is found by
    #    name with the same bytes, kept, and the marker written again
    keys = os.path.join(drop, ".rekey-keys")
    for m in os.listdir(keys):
        os.unlink(os.path.join(keys, m))
    redeliver()
    assert {name: read(drop, name) for name in published(drop)} == final
    assert len(os.listdir(keys)) == n

    # 3. the target took five files away: the markers keep them from coming back
    for name in files[:5]:
        os.unlink(os.path.join(drop, name))
    redeliver()
    assert published(drop) == files[5:]

    # 4. a name already taken by another record's file: refused, not overwritten
    next_id = max(j for (j, _, _) in jobs.values()) + 1
    taken = os.path.join(drop, f"besucherparkausweis-{next_id}.csv")
    with open(taken, "wb") as f:
        f.write(b"somebody else's file\r\n")
    rig.drop_bytes("late.xml", antrag("BPA-2000"))
    rig.run_once()
    job_id, state, _ = by_ref(rig)["late.xml"]
    assert job_id == next_id and state == "review"
    assert "already taken by a different record" in refusal(rig, job_id)
    assert read(drop, os.path.basename(taken)) == b"somebody else's file\r\n"
    assert not [x for x in os.listdir(drop) if ".tmp-" in x]


def connector_test(*sets):
    args = [REKEYCTL, "connector-test", FILEDROP]
    for s in sets:
        args += ["--set", s]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def test_settings_refused_at_open(tmp_path):
    d = str(tmp_path)
    other = "/dev/shm" if os.path.isdir("/dev/shm") and \
        os.stat("/dev/shm").st_dev != os.stat(d).st_dev else None
    cases = [
        ([f"dir={d}/missing"], f"folder '{d}/missing' cannot be used: No such file or directory"),
        ([f"dir={d}", "name_pattern=../{submission}.csv"], "setting 'name_pattern' starts with '.'"),
        ([f"dir={d}", "name_pattern=x/{submission}.csv"], "setting 'name_pattern' contains '/'"),
        ([f"dir={d}", "name_pattern=a..{key}"], "setting 'name_pattern' contains '..'"),
        ([f"dir={d}", "name_pattern={name}.csv"], "setting 'name_pattern' has an unknown placeholder"),
        ([f"dir={d}", "format=fixed"], "format fixed needs the setting 'widths'"),
        ([f"dir={d}", "format=fixed", "widths=3,0"], "setting 'widths': entry 2 ('0')"),
        ([f"dir={d}", "format=fixed", "widths=3,4", "columns=a"],
         "setting 'widths' has 2 entries but 'columns' names 1"),
        ([f"dir={d}", "format=json"], "setting 'format' must be csv, xml or fixed"),
        ([f"dir={d}", "encoding=cp1252"], "setting 'encoding' must be utf-8 or iso-8859-15"),
        ([f"dir={d}", "separator=ab"], "setting 'separator' must be one ASCII character"),
        ([f"dir={d}", "columns=a,,b"], "setting 'columns' has an empty entry"),
        ([f"dir={d}", "xml_root=1x"], "setting 'xml_root' must be an XML name"),
        ([f"dir={d}", "file_mode=rw"], "setting 'file_mode' must be octal"),
    ]
    if other:
        cases.append(([f"dir={d}", f"tmp_dir={other}"], "is not on the same file system"))
    for sets, want in cases:
        p = connector_test(*sets)
        assert p.returncode == 1, (sets, p.stdout)
        line = [x for x in p.stdout.splitlines() if x.startswith("FAIL open:")]
        assert line and want in line[0], (sets, p.stdout)


def test_unknown_column_is_permanent_naming_it(tmp_path):
    rig, drop = filedrop_rig(tmp_path, {"dir": "${drop}", "columns": "nachname,geburtsort"})
    rig.drop_bytes("a.xml", antrag("BPA-10"))
    rig.run_once()
    (job_id, state, _), = by_ref(rig).values()
    assert state == "review"
    assert refusal(rig, job_id) == \
        "column 'geburtsort' of setting 'columns' is not a field of job 'besucherparkausweis'"
    assert published(drop) == []
