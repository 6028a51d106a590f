"""Benchmark corpus: N realistic submissions of the three shipped
application types, built from the samples in tests/data/samples.

Each document starts from a sample file and gets its own names, numbers
and dates (drawn from a seeded generator, so the same N and seed give the
same corpus), so the duplicate rule of the Fischereischein job never
fires.  A few per cent are variants that the jobs hold for review:

  fischereischein   MINDESTALTER    applicant younger than 14
  besucherparkausweis GEBUEHR_FALSCH amount paid does not match the fee
  besucherparkausweis ZAHLUNG_OFFEN  payment not confirmed
  gewerbeanmeldung  CODE_UNBEKANNT  unknown Geschlecht code
  gewerbeanmeldung  SCHEMA          an element the XSD does not allow

Everything else is expected to be delivered.  The corpus is written once
into DIR (default build/bench/corpus/) with manifest.json beside it
(name, application type, expected state and code of every file); a second
call with the same N, seed and generator version reuses it.

Usage: python3 tests/bench/corpus.py [--n 20000] [--seed 8] [--flagged 0.03] [--dir DIR]
"""
import argparse
import datetime
import json
import os
import random
import re
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLES = os.path.join(ROOT, "tests", "data", "samples")
GENERATOR_VERSION = 3

# application type -> XSD (relative to the repository root), for the floor
SCHEMAS = {
    "fischereischein": "schemas/fischereischein/antrag.xsd",
    "besucherparkausweis": "schemas/besucherparkausweis/antrag.xsd",
    "gewerbeanmeldung": "schemas/gewerbeanmeldung/gewerbeanzeige.xsd",
}

# the clean templates and their share of the corpus
TEMPLATES = [
    ("fischereischein", "fischereischein-01-erstausstellung.xml", 0.20),
    ("fischereischein", "fischereischein-03-verlaengerung.xml", 0.14),
    ("besucherparkausweis", "besucherparkausweis-01-tag.xml", 0.12),
    ("besucherparkausweis", "besucherparkausweis-02-woche.xml", 0.11),
    ("besucherparkausweis", "besucherparkausweis-03-monat.xml", 0.10),
    ("gewerbeanmeldung", "gewerbeanmeldung-01-einzelunternehmen.xml", 0.13),
    ("gewerbeanmeldung", "gewerbeanmeldung-02-gmbh.xml", 0.11),
    ("gewerbeanmeldung", "gewerbeanmeldung-03-nebenerwerb.xml", 0.09),
]

# the flagged variants: (type, template, code) drawn evenly
FLAGGED = [
    ("fischereischein", "fischereischein-01-erstausstellung.xml", "MINDESTALTER"),
    ("besucherparkausweis", "besucherparkausweis-01-tag.xml", "GEBUEHR_FALSCH"),
    ("besucherparkausweis", "besucherparkausweis-03-monat.xml", "ZAHLUNG_OFFEN"),
    ("gewerbeanmeldung", "gewerbeanmeldung-01-einzelunternehmen.xml", "CODE_UNBEKANNT"),
    ("gewerbeanmeldung", "gewerbeanmeldung-02-gmbh.xml", "SCHEMA"),
]

SURNAMES = """Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann
Schäfer Koch Bauer Richter Klein Wolf Schröder Neumann Schwarz Zimmermann Braun Krüger
Hofmann Hartmann Lange Schmitt Werner Schmitz Krause Meier Lehmann Schmid Schulze Maier
Köhler Herrmann König Walter Mayer Huber Kaiser Fuchs Peters Lang Scholz Möller Weiß Jung
Hahn Schubert Vogel Friedrich Keller Günther Frank Berger Winkler Roth Beck Lorenz Baumann
Franke Albrecht Schuster Simon Ludwig Böhm Winter Kraus Martin Schumacher Krämer Vogt Stein
Jäger Otto Sommer Groß Seidel Heinrich Brandt Haas Schreiber Graf Schulte Dietrich Ziegler
Kuhn Kühn Pohl Engel Horn Busch Bergmann Thomas Voigt Sauer Arnold Wolff Pfeiffer Yılmaz
Nguyen Kovač Nowak Popescu Rossi Lindqvist Öztürk Schwarzmaier Kießling Obermaier""".split()

FIRSTNAMES = """Anna Maria Sophie Marie Lena Laura Lea Julia Hannah Emma Mia Sarah Johanna Katharina
Elisabeth Sabine Petra Monika Claudia Andrea Ursula Renate Gabriele Birgit Jürgen Thomas
Michael Andreas Stefan Christian Peter Klaus Wolfgang Markus Frank Alexander Martin Lukas
Maximilian Felix Jonas Leon Paul Elias Noah Ben Tobias Florian Sebastian Matthias Johann
Georg Josef Franz Ludwig Korbinian Xaver Thanh\u00a0Tam Marko Ayşe Mehmet Ioana""".split()

PLACES = [  # (PLZ, Ort, streets)
    ("80331", "München", ["Sendlinger Straße", "Tal", "Marienplatz", "Rosental"]),
    ("80339", "München", ["Gollierstraße", "Ligsalzstraße", "Westendstraße", "Kazmairstraße"]),
    ("81539", "München", ["Tegernseer Landstraße", "Martin-Luther-Straße", "Pilgersheimer Straße"]),
    ("83022", "Rosenheim", ["Am Mühlbach", "Münchener Straße", "Kaiserstraße"]),
    ("84028", "Landshut", ["Altstadt", "Neustadt", "Ländgasse", "Dreifaltigkeitsplatz"]),
    ("84034", "Landshut", ["Seligenthaler Straße", "Podewilsstraße"]),
    ("86150", "Augsburg", ["Maximilianstraße", "Philippine-Welser-Straße", "Karolinenstraße"]),
    ("86167", "Augsburg", ["Industriestraße", "Berliner Allee", "Friedberger Straße"]),
    ("93047", "Regensburg", ["Gesandtenstraße", "Ludwigstraße", "Neupfarrplatz"]),
    ("93051", "Regensburg", ["Kumpfmühler Straße", "Augustenstraße"]),
    ("90402", "Nürnberg", ["Königstraße", "Karolinenstraße", "Breite Gasse"]),
    ("97070", "Würzburg", ["Domstraße", "Juliuspromenade", "Eichhornstraße"]),
    ("83278", "Traunstein", ["Maxplatz", "Bahnhofstraße", "Wasserburger Straße"]),
    ("94032", "Passau", ["Ludwigstraße", "Grabengasse", "Innstraße"]),
    ("85049", "Ingolstadt", ["Theresienstraße", "Ludwigstraße", "Harderstraße"]),
]

BIRTHPLACES = """München Rosenheim Landshut Augsburg Regensburg Nürnberg Würzburg Passau
Ingolstadt Traunstein Straubing Kempten Bamberg Bayreuth Hof Kiel Hamburg Berlin Leipzig Köln
Zagreb Wien Salzburg Linz Bozen""".split()

NATIONALITIES = ["000", "000", "000", "000", "000", "000", "121", "129", "130", "137"]

PARKGEBIETE = ["Schwanthalerhöhe (Gebiet 12)", "Obergiesing (Gebiet 17)",
               "Maxvorstadt (Gebiet 3)", "Haidhausen (Gebiet 21)", "Au (Gebiet 19)",
               "Isarvorstadt-Glockenbachviertel (Gebiet 5)", "Sendling (Gebiet 14)",
               "Neuhausen-Nymphenburg (Gebiet 9)"]

KREISE = ["M", "RO", "LA", "A", "R", "N", "WÜ", "TS", "PA", "IN", "FS", "ED", "DAH", "STA"]

FEES = {"tag": "5.00", "woche": "15.00", "monat": "30.00", "jahr": "120.00"}
ZAHLVERFAHREN = ["KREDITKARTE", "PAYPAL", "GIROPAY", "LASTSCHRIFT"]

TAETIGKEITEN = [
    ("Herstellung und Verkauf von Backwaren, Café", "10.71.0"),
    ("Elektroinstallation in Gebäuden", "43.21.0"),
    ("Hausmeisterdienste, Gartenpflege, Winterdienst", "81.10.0"),
    ("Herstellung und Verkauf von Gebrauchskeramik", "23.41.0"),
    ("Einzelhandel mit Fahrrädern, Fahrradteilen und Zubehör", "47.64.1"),
    ("Softwareentwicklung und IT-Beratung für kleine und mittlere Unternehmen", "62.01.9"),
    ("Gastronomie: Speisegaststätte mit Biergarten", "56.10.1"),
    ("Friseursalon und Kosmetikstudio", "96.02.1"),
    ("Malerarbeiten, Lackierarbeiten und Tapezierarbeiten in Gebäuden", "43.34.1"),
    ("Onlinehandel mit Bekleidung und Accessoires", "47.91.1"),
]

BETRIEBSFORMEN = ["", " GmbH", " UG (haftungsbeschränkt)", " e. K."]


def set_text(doc, local, value, nth=1):
    """Replaces the text of the nth element whose local name is LOCAL
    (any prefix, attributes kept).  Raises when there is no such element,
    so a changed sample is noticed instead of silently left alike."""
    pat = re.compile(r"(<(?:[\w.-]+:)?%s(?:\s[^>]*)?>)([^<]*)(</)" % re.escape(local))
    count = [0]

    def repl(m):
        count[0] += 1
        if count[0] == nth:
            return m.group(1) + xml_escape(value) + m.group(3)
        return m.group(0)

    out = pat.sub(repl, doc)
    if count[0] < nth:
        raise ValueError(f"element {local} #{nth} not found in template")
    return out


def xml_escape(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def ascii_mail(s):
    for a, b in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("ß", "ss"), ("Ä", "Ae"),
                 ("Ö", "Oe"), ("Ü", "Ue"), ("č", "c"), ("ı", "i"), ("ş", "s"),
                 ("\u00a0", "."), (" ", ".")):
        s = s.replace(a, b)
    return re.sub(r"[^A-Za-z0-9.-]", "", s)


class Gen:
    """Draws the varying values of one corpus from a seeded generator."""

    def __init__(self, seed, today):
        self.r = random.Random(seed)
        self.today = today
        self.persons = set()  # (surname, firstnames, birthdate): never twice
        self.serial = 0

    def day(self, lo_days, hi_days):
        """A date between today-hi_days and today-lo_days, ISO."""
        return (self.today - datetime.timedelta(days=self.r.randint(lo_days, hi_days))).isoformat()

    def person(self, min_age=18, max_age=85):
        while True:
            sur = self.r.choice(SURNAMES)
            first = self.r.choice(FIRSTNAMES)
            if self.r.random() < 0.3:
                first += " " + self.r.choice(FIRSTNAMES)
            born = self.day(min_age * 366 + 1, max_age * 365)
            key = (sur, first, born)
            if key not in self.persons:
                self.persons.add(key)
                return sur, first, born

    def address(self):
        plz, ort, streets = self.r.choice(PLACES)
        return self.r.choice(streets), str(self.r.randint(1, 240)) + self.r.choice(
            ["", "", "", "", "a", "b"]), plz, ort

    def phone(self):
        return "0%d %d %02d %02d" % (self.r.randint(800, 999), self.r.randint(10, 999),
                                     self.r.randint(0, 99), self.r.randint(0, 99))

    def hexref(self, n):
        return "".join(self.r.choice("0123456789ABCDEF") for _ in range(n))

    def uuid(self):
        h = "".join(self.r.choice("0123456789abcdef") for _ in range(32))
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def make_fischereischein(g, tpl, code, i):
    sur, first, born = g.person(min_age=16, max_age=80)
    if code == "MINDESTALTER":
        sur, first, born = g.person(min_age=10, max_age=12)
    street, no, plz, ort = g.address()
    d = tpl
    d = set_text(d, "Antragsnummer", "fs-2026-%06d" % (100000 + i))
    d = set_text(d, "Eingangsdatum", g.day(0, 20))
    d = set_text(d, "F60000000227", sur)
    d = set_text(d, "F60000000228", first)
    d = set_text(d, "F60000000229", born)
    d = set_text(d, "F60000000234", g.r.choice(BIRTHPLACES))
    d = set_text(d, "F60000000236", g.r.choice(NATIONALITIES))
    d = set_text(d, "F60000000243", street)
    d = set_text(d, "F60000000244", no)
    d = set_text(d, "F60000000246", plz)
    d = set_text(d, "F60000000247", ort)
    d = set_text(d, "F60000000240", g.phone())
    d = set_text(d, "F60000000242", ascii_mail(first.split()[0] + "." + sur).lower()
                 + "@example.de")
    if "<Pruefung>" in d:
        d = set_text(d, "Pruefungsnummer", "obb-2026-%05d" % g.r.randint(0, 99999))
        d = set_text(d, "Pruefungsdatum", g.day(7, 200))
    if "<BisherigerFischereischein>" in d:
        d = set_text(d, "Nummer", "fs-%d-%d-%05d" % (g.r.randint(100, 199),
                                                     g.r.randint(1990, 2021),
                                                     g.r.randint(0, 99999)))
    d = set_text(d, "Transaktionsreferenz", "EPB-7F3K-%s-%04d" % (
        g.today.strftime("%Y%m%d"), i % 10000))
    return d


def make_besucherparkausweis(g, tpl, code, i):
    sur, first, _ = g.person()
    street, no, plz, ort = g.address()
    d = tpl
    dauer = re.search(r"<Dauer>(\w+)</Dauer>", d).group(1)
    d = set_text(d, "Antragsnummer", "BPA-2026-%06d" % (100000 + i))
    d = set_text(d, "Eingangsdatum", g.day(0, 10))
    d = set_text(d, "F60000000227", sur)
    d = set_text(d, "F60000000228", first)
    d = set_text(d, "F60000000243", street)
    d = set_text(d, "F60000000244", no)
    d = set_text(d, "F60000000246", plz)
    d = set_text(d, "F60000000247", ort)
    d = set_text(d, "F60000000242", ascii_mail(first.split()[0][0] + "." + sur).lower()
                 + "@example.org")
    if "<F60000000240>" not in d and g.r.random() < 0.7:  # optional phone number
        d = d.replace("<F60000000242>", "<F60000000240>%s</F60000000240>\n    <F60000000242>"
                      % g.phone(), 1)
    kreis = g.r.choice(KREISE)
    letters = "".join(g.r.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(g.r.randint(1, 2)))
    plate = "%s-%s %d" % (kreis, letters, g.r.randint(1, 9999))
    if g.r.random() < 0.2:
        plate = plate.replace("-", " ").lower()  # typed loosely; the map normalises it
    d = set_text(d, "Kennzeichen", plate)
    d = set_text(d, "Parkgebiet", g.r.choice(PARKGEBIETE))
    d = set_text(d, "Beginn", (g.today + datetime.timedelta(days=g.r.randint(1, 40))).isoformat())
    d = set_text(d, "Kassenzeichen", "5.1200.26.%06d" % (100000 + i))
    d = set_text(d, "Transaktionsreferenz", "EPB-PK-" + g.hexref(10))
    d = set_text(d, "Zahlverfahren", g.r.choice(ZAHLVERFAHREN))
    d = set_text(d, "Betrag", FEES[dauer] if code != "GEBUEHR_FALSCH" else "12.50")
    if code == "ZAHLUNG_OFFEN":
        d = set_text(d, "Status", "OFFEN")
    d = set_text(d, "Zeitstempel", "%sT%02d:%02d:%02d+01:00" % (
        g.day(0, 10), g.r.randint(6, 22), g.r.randint(0, 59), g.r.randint(0, 59)))
    return d


def make_gewerbeanmeldung(g, tpl, code, i):
    sur, first, born = g.person(min_age=19, max_age=75)
    street, no, plz, ort = g.address()
    taet, wz = g.r.choice(TAETIGKEITEN)
    d = tpl
    d = set_text(d, "nachrichtenUUID", g.uuid())
    d = set_text(d, "erstellungszeitpunkt", "%sT%02d:%02d:%02d+01:00" % (
        g.day(0, 10), g.r.randint(6, 22), g.r.randint(0, 59), g.r.randint(0, 59)))
    d = set_text(d, "leser", "Stadt %s, Gewerbeamt" % ort)
    d = set_text(d, "name", sur + " " + taet.split(",")[0].split(" ")[0]
                 + g.r.choice(BETRIEBSFORMEN))
    d = set_text(d, "strasse", street)
    d = set_text(d, "hausnummer", no)
    d = set_text(d, "postleitzahl", plz)
    d = set_text(d, "ort", ort)
    # the owner's own address: often the same as the business
    if g.r.random() < 0.5:
        street, no, plz, ort = g.address()
    d = set_text(d, "strasse", street, nth=2)
    d = set_text(d, "hausnummer", no, nth=2)
    d = set_text(d, "postleitzahl", plz, nth=2)
    d = set_text(d, "ort", ort, nth=2)
    if "<xga:telefon>" in d:
        d = set_text(d, "telefon", g.phone())
    if "<xga:email>" in d:
        d = set_text(d, "email", ascii_mail(sur).lower() + "@" + ascii_mail(
            sur + "-" + taet.split(" ")[0]).lower() + ".example")
    d = set_text(d, "familienname", sur)
    d = set_text(d, "vornamen", first)
    d = set_text(d, "geburtsdatum", born)
    d = set_text(d, "geburtsort", g.r.choice(BIRTHPLACES))
    d = set_text(d, "code", g.r.choice(["m", "w", "w", "m", "d"]), nth=2)  # geschlecht
    if code == "CODE_UNBEKANNT":
        d = set_text(d, "code", "f", nth=2)
    d = set_text(d, "beschreibung", taet)
    d = set_text(d, "wirtschaftszweig", wz)
    d = set_text(d, "beginn", (g.today + datetime.timedelta(days=g.r.randint(-20, 60))).isoformat())
    if code == "SCHEMA":
        # an element the XSD does not know (as in gewerbeanmeldung-11-schema.xml)
        d = d.replace("</xga:kommunikation>", "  <xga:telefax>%s</xga:telefax>\n"
                      "    </xga:kommunikation>" % g.phone(), 1)
    return d


MAKERS = {
    "fischereischein": make_fischereischein,
    "besucherparkausweis": make_besucherparkausweis,
    "gewerbeanmeldung": make_gewerbeanmeldung,
}


def generate(n, out_dir, seed=8, flagged=0.03, log=print):
    """Writes N documents and manifest.json into OUT_DIR (reused when the
    manifest says the same N, seed, share and generator version).
    Returns the manifest: {"settings": ..., "files": [{name, type,
    expect, code, size}, ...]}."""
    today = datetime.date.today()
    settings = {"n": n, "seed": seed, "flagged": flagged, "version": GENERATOR_VERSION,
                "today": today.isoformat()}
    mpath = os.path.join(out_dir, "manifest.json")
    if os.path.exists(mpath):
        try:
            with open(mpath) as f:
                m = json.load(f)
            if m.get("settings") == settings and all(
                    os.path.exists(os.path.join(out_dir, e["name"])) for e in m["files"]):
                log(f"corpus: reusing {n} documents in {out_dir}")
                return m
        except (OSError, ValueError, KeyError):
            pass
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    templates = {}
    for _, name, _ in TEMPLATES:
        with open(os.path.join(SAMPLES, name), encoding="utf-8") as f:
            templates[name] = f.read()
    g = Gen(seed, today)
    weights = [w for _, _, w in TEMPLATES]
    files = []
    n_flagged = int(round(n * flagged))
    flagged_at = set(g.r.sample(range(n), n_flagged)) if n_flagged else set()
    for i in range(n):
        if i in flagged_at:
            typ, tname, code = FLAGGED[g.r.randrange(len(FLAGGED))]
            expect = "review"
        else:
            typ, tname, _ = g.r.choices(TEMPLATES, weights)[0]
            code, expect = None, "delivered"
        doc = MAKERS[typ](g, templates[tname], code, i)
        name = "%06d-%s.xml" % (i, typ)
        data = doc.encode("utf-8")
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(data)
        files.append({"name": name, "type": typ, "expect": expect, "code": code,
                      "size": len(data)})
        if (i + 1) % 5000 == 0:
            log(f"corpus: {i + 1}/{n} documents written")
    m = {"settings": settings, "files": files}
    with open(mpath + ".tmp", "w") as f:
        json.dump(m, f)
    os.rename(mpath + ".tmp", mpath)
    return m


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--flagged", type=float, default=0.03)
    ap.add_argument("--dir", default=os.path.join(ROOT, "build", "bench", "corpus"))
    a = ap.parse_args(argv)
    m = generate(a.n, a.dir, a.seed, a.flagged)
    sizes = [e["size"] for e in m["files"]]
    print(f"corpus: {len(sizes)} documents, mean {sum(sizes) / len(sizes):.0f} bytes, "
          f"{sum(1 for e in m['files'] if e['expect'] != 'delivered')} flagged, in {a.dir}")


if __name__ == "__main__":
    sys.exit(main())
