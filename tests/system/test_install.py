"""rekey as a Debian service: `make install` (file list and modes), the
installed tree runs, the man pages render and name every option, the
systemd unit passes `systemd-analyze verify` and its hardening scores as
systemd rates it, sd_notify (READY, RELOADING, STOPPING, WATCHDOG) over a
real notify socket, and JSON log lines."""
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time

import pytest

from conftest import DATA, REKEYCTL, REKEYD, ROOT, Rig

GOOD_FS = os.path.join(DATA, "samples", "fischereischein-01-erstausstellung.xml")
GOOD_BPA = os.path.join(DATA, "samples", "besucherparkausweis-01-tag.xml")


def make_install(destdir, prefix, target="install"):
    p = subprocess.run(["make", "--no-print-directory", "-C", ROOT, target,
                        f"DESTDIR={destdir}", f"PREFIX={prefix}"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    return p


def tree(root):
    """{relative path: mode} of every file and symlink under root."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            path = os.path.join(d, f)
            out[os.path.relpath(path, root)] = os.lstat(path).st_mode & 0o7777
    return out


def expected_files(prefix, unitdir):
    """What install must write, derived from the source tree, with modes."""
    p = prefix.lstrip("/")
    exp = {f"{p}/sbin/rekeyd": 0o755, f"{p}/bin/rekeyctl": 0o755,
           f"{p}/include/rekey/rekey_connector.h": 0o644,
           f"{p}/share/man/man8/rekeyd.8": 0o644, f"{p}/share/man/man1/rekeyctl.1": 0o644,
           f"{unitdir.lstrip('/')}/rekeyd.service": 0o644,
           f"{p}/share/doc/rekey/rekeyd.ini.example": 0o644}
    for name in sorted(os.listdir(os.path.join(ROOT, "connectors"))):
        d = os.path.join(ROOT, "connectors", name)
        if name != "template" and os.path.isdir(d) and \
                any(f.endswith(".c") for f in os.listdir(d)):
            exp[f"{p}/lib/rekey/connectors/{name}/{name}.so"] = 0o644
    for d, _, files in os.walk(os.path.join(ROOT, "schemas")):
        for f in files:
            if f.endswith((".xsd", ".gc")):
                rel = os.path.relpath(os.path.join(d, f), ROOT)
                exp[f"{p}/share/rekey/{rel}"] = 0o644
    for f in os.listdir(os.path.join(ROOT, "jobs")):
        if f.endswith(".xml"):
            exp[f"{p}/share/rekey/jobs/{f}"] = 0o644
    return exp


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    dest = str(tmp_path_factory.mktemp("destdir"))
    make_install(dest, "/usr")
    return dest


# ---- make install ---------------------------------------------------------------

def test_install_writes_exactly_the_listed_files_with_their_modes(installed):
    got = tree(installed)
    exp = expected_files("/usr", "/lib/systemd/system")
    # the derivation from the tree found what it must (no empty globs)
    for must in ("usr/lib/rekey/connectors/sqlite/sqlite.so",
                 "usr/lib/rekey/connectors/postgres/postgres.so",
                 "usr/share/rekey/schemas/rekey-job.xsd",
                 "usr/share/rekey/schemas/fischereischein/antrag.xsd",
                 "usr/share/rekey/jobs/fischereischein.xml"):
        assert must in exp
    assert not any("template" in f for f in got)
    assert {f: oct(m) for f, m in got.items()} == {f: oct(m) for f, m in exp.items()}
    # copies, not something else
    with open(os.path.join(installed, "usr/share/rekey/jobs/fischereischein.xml"), "rb") as f, \
            open(os.path.join(ROOT, "jobs/fischereischein.xml"), "rb") as g:
        assert f.read() == g.read()


def test_install_with_another_prefix_rewrites_the_paths_and_uninstall_removes_all(tmp_path):
    dest = str(tmp_path / "d")
    make_install(dest, "/usr/local")
    got = tree(dest)
    exp = expected_files("/usr/local", "/usr/local/lib/systemd/system")
    assert set(got) == set(exp)
    unit = open(os.path.join(dest, "usr/local/lib/systemd/system/rekeyd.service")).read()
    assert "\nExecStart=/usr/local/sbin/rekeyd --config /etc/rekey/rekeyd.ini\n" in unit
    assert "\nEnvironment=REKEY_JOB_SCHEMA=/usr/local/share/rekey/schemas/rekey-job.xsd\n" \
        in unit
    assert "/usr/sbin" not in unit and "/usr/share/rekey" not in unit.replace(
        "/usr/local/share/rekey", "")
    ini = open(os.path.join(dest, "usr/local/share/doc/rekey/rekeyd.ini.example")).read()
    assert "\nplugin_path = /usr/local/lib/rekey/connectors\n" in ini
    assert "\njobs = /usr/local/share/rekey/jobs\n" in ini

    # someone else's file in a shared folder stays, rekey's folders go
    os.makedirs(os.path.join(dest, "usr/local/bin"), exist_ok=True)
    with open(os.path.join(dest, "usr/local/bin/other-tool"), "w") as f:
        f.write("#!/bin/sh\n")
    make_install(dest, "/usr/local", "uninstall")
    assert tree(dest) == {"usr/local/bin/other-tool": tree(dest)["usr/local/bin/other-tool"]}
    for d in ("usr/local/lib/rekey", "usr/local/share/rekey", "usr/local/include/rekey",
              "usr/local/share/doc/rekey"):
        assert not os.path.exists(os.path.join(dest, d)), d


def installed_config(installed, base):
    """The example settings, moved into a temp folder and the DESTDIR."""
    text = open(os.path.join(installed, "usr/share/doc/rekey/rekeyd.ini.example")).read()
    text = text.replace("/usr/lib/rekey/", os.path.join(installed, "usr/lib/rekey/"))
    text = text.replace("/usr/share/rekey/", os.path.join(installed, "usr/share/rekey/"))
    text = text.replace("/var/lib/rekey/", str(base) + "/lib/")
    text = text.replace("/var/spool/rekey/", str(base) + "/spool/")
    text = text.replace("settle_ms = 500", "settle_ms = 0")
    os.makedirs(os.path.join(base, "lib"))
    os.makedirs(os.path.join(base, "spool", "inbox"))
    path = os.path.join(base, "rekeyd.ini")
    with open(path, "w") as f:
        f.write(text)
    return path


def test_the_installed_tree_runs_the_example_jobs(installed, tmp_path):
    rekeyd = os.path.join(installed, "usr/sbin/rekeyd")
    p = subprocess.run([rekeyd, "--help"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and p.stdout.startswith("usage: rekeyd --config FILE"), p.stderr

    # the example settings with the installed jobs, schemas and connectors;
    # the schema of job files where the unit says (REKEY_JOB_SCHEMA)
    cfg = installed_config(installed, tmp_path)
    env = dict(os.environ, REKEY_JOB_SCHEMA=os.path.join(
        installed, "usr/share/rekey/schemas/rekey-job.xsd"))
    p = subprocess.run([rekeyd, "--config", cfg, "--check"], capture_output=True, text=True,
                       env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    assert sorted(line.split()[1] for line in p.stdout.splitlines()) == \
        ["besucherparkausweis", "fischereischein", "gewerbeanmeldung"]
    assert "connector sqlite (sqlite)" in p.stdout

    # the commented [http] block of the example is valid settings as it is
    text = open(cfg).read()
    assert "\n;[http]\n" in text
    http = re.sub(r"\n;(\[http\]|[a-z_]+ = )", r"\n\1", text)
    http = http.replace("/etc/rekey/tokens", str(tmp_path / "tokens"))
    assert "\n[http]\nlisten = 127.0.0.1:8650\n" in http and "\ncookie_secure = true" in http
    cfg_http = str(tmp_path / "rekeyd-http.ini")
    with open(cfg_http, "w") as f:
        f.write(http)
    p = subprocess.run([rekeyd, "--config", cfg_http, "--check"], capture_output=True,
                       text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr

    shutil.copy(GOOD_FS, os.path.join(tmp_path, "spool", "inbox"))
    p = subprocess.run([rekeyd, "--config", cfg, "--once"], capture_output=True, text=True,
                       env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    con = sqlite3.connect(os.path.join(tmp_path, "lib", "fachverfahren.db"))
    try:
        (n,), = con.execute("SELECT count(*) FROM fischereischein").fetchall()
    finally:
        con.close()
    assert n == 1
    rekeyctl = os.path.join(installed, "usr/bin/rekeyctl")
    st = json.loads(subprocess.run([rekeyctl, "--config", cfg, "status", "--json"],
                                   capture_output=True, text=True, timeout=30).stdout)
    assert st["by_state"]["delivered"] == 1 and st["total"] == 1


# ---- man pages ------------------------------------------------------------------

def render_man(path):
    """The page as text, through man -l when there is man, else groff."""
    env = dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="0", LC_ALL="C.UTF-8")
    if shutil.which("man"):
        p = subprocess.run(["man", "-l", path], capture_output=True, text=True, env=env,
                           timeout=60)
    else:
        p = subprocess.run(["groff", "-man", "-Tutf8", "-P-cbou", path], capture_output=True,
                           text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    # no overstrike or escapes left: plain text
    return re.sub(r".\x08", "", p.stdout)


def groff_warnings(path):
    p = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", path], capture_output=True,
                       text=True, timeout=60)
    return p.stderr


def options_of(text):
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", text))


def test_rekeyd_man_page_renders_and_names_every_option_and_exit_code(installed):
    page = os.path.join(installed, "usr/share/man/man8/rekeyd.8")
    assert groff_warnings(page) == ""
    text = render_man(page)
    assert text.startswith("REKEYD(8)")
    for section in ("NAME", "SYNOPSIS", "OPTIONS", "SIGNALS", "EXIT STATUS", "SETTINGS",
                    "SYSTEMD", "ENVIRONMENT", "FILES", "SEE ALSO"):
        assert re.search(rf"^{section}$", text, re.M), section
    usage = subprocess.run([REKEYD, "--help"], capture_output=True, text=True).stdout
    opts = options_of(usage)
    assert {"--config", "--once", "--check", "--allow-root", "--help"} <= opts
    assert opts <= options_of(text), opts - options_of(text)
    exits = text.split("EXIT STATUS", 1)[1].split("SETTINGS", 1)[0]
    assert re.findall(r"^ {7}(\d)\s", exits, re.M) == ["0", "1", "2"]
    # every settings key of the operations guide's table is in the page
    ops = open(os.path.join(ROOT, "docs", "operations.md")).read()
    keys = set(re.findall(r"^\| `(?:rekeyd|inbox|delivery)` \| `([a-z_]+)` \|", ops, re.M))
    assert {"database", "log_level", "max_ratio", "backoff_max_ms", "log_format"} <= keys
    for k in keys:
        assert re.search(rf"^ {{7}}{k}\b", text, re.M), k
    for sig in ("SIGTERM", "SIGINT", "SIGHUP"):
        assert sig in text


def test_rekeyctl_man_page_renders_and_names_every_command_and_option(installed):
    page = os.path.join(installed, "usr/share/man/man1/rekeyctl.1")
    assert groff_warnings(page) == ""
    text = render_man(page)
    assert text.startswith("REKEYCTL(1)")
    usage = subprocess.run([REKEYCTL, "--help"], capture_output=True, text=True).stdout
    commands = re.findall(r"^  ([a-z][a-z-]*(?: (?:list|show|set|approve|reject))?)\b",
                          usage.split("Options")[0], re.M)
    assert {"status", "watch", "review approve", "connector-test", "map"} <= set(commands)
    for c in commands:
        assert re.search(rf"^ {{7}}{c}\b", text, re.M), c
    # every option of every command's usage
    opts = options_of(usage)
    for c in sorted({c.split()[0] for c in commands} - {"help"}):
        p = subprocess.run([REKEYCTL, c, "--help"], capture_output=True, text=True)
        assert p.returncode == 0 and p.stdout.startswith("usage: rekeyctl"), (c, p.stderr)
        opts |= options_of(p.stdout)
    assert {"--interval", "--once", "--older-than", "--new-key", "--cycles"} <= opts
    assert opts <= options_of(text), opts - options_of(text)
    exits = text.split("EXIT STATUS", 1)[1].split("ENVIRONMENT", 1)[0]
    assert re.findall(r"^ {7}(\d)\s", exits, re.M) == ["0", "1", "2", "3"]
    assert "REKEY_DB" in text


# ---- the systemd unit ------------------------------------------------------------

def unit_settings(text):
    """[section] → {key: [values]} of a unit file."""
    out, sec = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            sec = out.setdefault(line.strip("[]"), {})
            continue
        k, _, v = line.partition("=")
        sec.setdefault(k, []).append(v)
    return out


def verify(unit_path, installed):
    env = dict(os.environ, MANPATH=os.path.join(installed, "usr/share/man"))
    p = subprocess.run(["systemd-analyze", "verify", unit_path], capture_output=True,
                       text=True, env=env, timeout=60, cwd=os.path.dirname(unit_path))
    return p.returncode, (p.stdout + p.stderr).strip()


def test_the_unit_says_what_the_service_needs(installed):
    s = unit_settings(open(os.path.join(installed, "lib/systemd/system/rekeyd.service")).read())
    svc = s["Service"]
    one = {k: v[-1] for k, v in svc.items()}
    assert one["Type"] == "notify"
    assert one["ExecStart"] == "/usr/sbin/rekeyd --config /etc/rekey/rekeyd.ini"
    assert one["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert one["User"] == "rekey" and "DynamicUser" not in one
    assert one["StateDirectory"] == "rekey" and one["StateDirectoryMode"] == "0700"
    assert one["UMask"] == "0077"
    assert one["CapabilityBoundingSet"] == ""
    assert one["RestrictAddressFamilies"] == "AF_UNIX AF_INET AF_INET6"
    assert svc["SystemCallFilter"] == ["@system-service"]
    assert one["WatchdogSec"] == "30s" and one["Restart"] == "on-failure"
    assert int(one["TimeoutStopSec"].rstrip("s")) >= 60
    for k in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices"):
        assert one[k] == "yes", k
    assert one["ProtectSystem"] == "strict"
    assert "/var/spool/rekey" in one["ReadWritePaths"]
    assert one["Environment"] == "REKEY_JOB_SCHEMA=/usr/share/rekey/schemas/rekey-job.xsd"
    assert s["Install"]["WantedBy"] == ["multi-user.target"]


def test_systemd_analyze_verify_passes_on_the_installed_unit(installed, tmp_path):
    """verify checks on this host that ExecStart is executable and the man
    pages of Documentation= exist: the unit is checked with its paths
    pointing into DESTDIR (only ExecStart changes) and MANPATH there.  It
    must print nothing at all; that the check can fail is shown with
    broken copies."""
    src = open(os.path.join(installed, "lib/systemd/system/rekeyd.service")).read()
    good = src.replace("\nExecStart=/usr/sbin/rekeyd ",
                       f"\nExecStart={installed}/usr/sbin/rekeyd ")
    assert good != src
    path = tmp_path / "rekeyd.service"
    path.write_text(good)
    assert verify(str(path), installed) == (0, "")

    broken = {
        "Type=notify": ("Tpye=notify", "Unknown key"),
        "WatchdogSec=30s": ("WatchdogSec=thirty", "Failed to parse sec value"),
        "SystemCallFilter=@system-service": ("SystemCallFilter=@no-such-set",
                                             "Unknown system call group"),
        f"ExecStart={installed}/usr/sbin/rekeyd": ("ExecStart=/nonexistent/rekeyd",
                                                   "is not executable"),
    }
    for old, (new, message) in broken.items():
        bad = tmp_path / "bad" / "rekeyd.service"
        bad.parent.mkdir(exist_ok=True)
        assert old in good
        bad.write_text(good.replace(old, new))
        rc, out = verify(str(bad), installed)
        assert message in out, (new, out)


def test_systemd_rates_the_hardening_ok(installed, tmp_path):
    path = tmp_path / "rekeyd.service"
    path.write_text(open(os.path.join(installed, "lib/systemd/system/rekeyd.service")).read())
    p = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager",
                        str(path)], capture_output=True, text=True, timeout=60,
                       cwd=str(tmp_path))
    m = re.search(r"Overall exposure level for rekeyd\.service: (\d+\.\d+) (\w+)", p.stdout)
    assert m, p.stdout[-2000:] + p.stderr
    # systemd's scale: 0 (locked down) .. 10 (unsafe); below 2 it says OK
    assert float(m.group(1)) < 2.0 and m.group(2) == "OK", m.group(0)


# ---- sd_notify -------------------------------------------------------------------

class NotifySocket:
    """A unix datagram socket like systemd's NOTIFY_SOCKET; keeps every
    message with the time it arrived."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="rk-notify-", dir="/tmp")  # short: 108 bytes
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []

    def collect(self, seconds):
        end = time.time() + seconds
        while True:
            left = end - time.time()
            if left <= 0:
                return
            self.sock.settimeout(left)
            try:
                self.messages.append((time.time(), self.sock.recv(4096).decode()))
            except socket.timeout:
                return

    def wait_for(self, pred, timeout=15, what="message"):
        end = time.time() + timeout
        while time.time() < end:
            for i, (_, m) in enumerate(self.messages):
                if pred(m):
                    return i
            self.collect(0.05)
        raise AssertionError(f"no {what}; got {self.messages}")

    def fields(self, i):
        return dict(line.split("=", 1) for line in self.messages[i][1].splitlines())

    def close(self):
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def notify():
    n = NotifySocket()
    yield n
    n.close()


def start(rig, **env):
    return subprocess.Popen([REKEYD, "--config", rig.config], stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, **env))


def test_ready_reloading_stopping_over_the_notify_socket(tmp_path, notify):
    rig = Rig(tmp_path)
    p = start(rig, NOTIFY_SOCKET=notify.path)
    try:
        i = notify.wait_for(lambda m: "READY=1" in m, what="READY=1")
        assert notify.fields(i) == {"READY": "1", "STATUS": "running: taking submissions"}
        assert p.poll() is None
        # ready means taking submissions
        rig.drop(GOOD_FS)
        rig.wait_for(lambda: rig.q("SELECT state FROM jobs") == [("delivered",)],
                     what="delivery after READY")
        p.send_signal(signal.SIGHUP)
        r = notify.wait_for(lambda m: "RELOADING=1" in m, what="RELOADING=1")
        notify.wait_for(lambda m: m.startswith("READY=1\nSTATUS=running; jobs reloaded"),
                        what="READY=1 after the reload")
        assert notify.messages[r + 1][1] == "READY=1\nSTATUS=running; jobs reloaded"
        assert not any("WATCHDOG" in m for _, m in notify.messages)  # none asked for
        p.send_signal(signal.SIGTERM)
        s = notify.wait_for(lambda m: "STOPPING=1" in m, what="STOPPING=1")
        assert notify.fields(s) == {"STOPPING": "1",
                                    "STATUS": "draining: finishing what is in flight"}
        assert p.wait(timeout=30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    err = p.stderr.read()
    assert "open handles" not in err, err
    notify.collect(0.2)
    assert notify.messages[-1][1].startswith("STOPPING=1")  # nothing after it
    assert [m.split("\n")[0] for _, m in notify.messages] == \
        ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"]


def test_watchdog_keepalive_at_half_the_interval(tmp_path, notify):
    rig = Rig(tmp_path)
    p = start(rig, NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="400000")
    try:
        notify.wait_for(lambda m: "READY=1" in m, what="READY=1")
        notify.messages.clear()
        notify.collect(2.0)
        beats = [t for t, m in notify.messages if m == "WATCHDOG=1"]
        # every 200 ms: about 10 in 2 s
        assert 7 <= len(beats) <= 12, beats
        gaps = [b - a for a, b in zip(beats, beats[1:])]
        assert max(gaps) < 0.4, gaps  # never as long as the watchdog interval
        # it goes on while the daemon drains, up to its end
        notify.messages.clear()
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert "open handles" not in p.stderr.read()
    notify.collect(0.3)
    assert [m for _, m in notify.messages if m != "WATCHDOG=1"] == \
        ["STOPPING=1\nSTATUS=draining: finishing what is in flight"]


def test_no_watchdog_for_another_pid_and_no_ready_when_start_fails(tmp_path, notify):
    rig = Rig(tmp_path / "a")
    p = start(rig, NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="200000", WATCHDOG_PID="1")
    try:
        notify.wait_for(lambda m: "READY=1" in m, what="READY=1")
        notify.collect(0.6)
        assert not any("WATCHDOG" in m for _, m in notify.messages)
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    p.stderr.close()
    notify.collect(0.3)
    assert [m.split("\n")[0] for _, m in notify.messages] == ["READY=1", "STOPPING=1"]

    # an inbox that is a file: the engine does not start, so no READY
    notify.messages.clear()
    bad = Rig(tmp_path / "b")
    os.rmdir(bad.inbox)
    open(bad.inbox, "w").close()
    q = subprocess.run([REKEYD, "--config", bad.config], capture_output=True, text=True,
                       env=dict(os.environ, NOTIFY_SOCKET=notify.path), timeout=30)
    assert q.returncode == 1, q.stderr
    notify.collect(0.3)
    assert len(notify.messages) == 1, notify.messages
    msg = notify.messages[0][1]
    assert msg.startswith("STATUS=could not start: ") and "READY" not in msg
    assert "\n" not in msg


# ---- JSON logs -------------------------------------------------------------------

def test_json_log_lines_parse_one_by_one(tmp_path):
    rig = Rig(tmp_path)
    text = open(rig.config).read().replace("log_level = info\n",
                                           "log_level = debug\nlog_format = json\n")
    with open(rig.config, "w") as f:
        f.write(text)
    rig.drop(GOOD_FS, GOOD_BPA, "samples/fischereischein-10-mindestalter.xml")
    rig.drop_bytes("kaputt.xml", b"<Antrag><offen>")
    # a refused file's name, with a quote, a backslash and an umlaut, is logged
    rig.drop_bytes('antrag "\u00fc\\ber".txt', b"x")
    p = rig.run_once()
    lines = p.stderr.splitlines()
    assert len(lines) > 20
    objs = [json.loads(line) for line in lines]  # every line is one JSON object
    ts = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
    for o in objs:
        assert list(o) == ["ts", "level", "component", "msg"], o
        assert ts.match(o["ts"]) and o["level"] in ("error", "warn", "info", "debug")
        assert o["component"] and isinstance(o["msg"], str)
    assert {"debug", "info"} <= {o["level"] for o in objs}
    msgs = [o["msg"] for o in objs]
    assert sum("-> delivered" in m for m in msgs) == 2, msgs
    assert any("MINDESTALTER" in m for m in msgs)
    assert any("XML_MALFORMED" in m for m in msgs)
    refused = [o for o in objs if 'antrag "\u00fc' in o["msg"]]
    assert [(o["level"], o["component"]) for o in refused] == [("warn", "inbox")], msgs
    assert "moved to the error folder" in refused[0]["msg"]

    # the same run in plain lines is what operators already know
    rig2 = Rig(tmp_path / "plain")
    rig2.drop(GOOD_FS)
    plain = rig2.run_once().stderr.splitlines()
    assert all(re.match(r"^\d{4}-\d\d-\d\dT[\d:.]+Z (ERROR|WARN|INFO|DEBUG) [a-z_:]+: ", line)
               for line in plain), plain


def test_log_format_setting_is_checked(tmp_path):
    rig = Rig(tmp_path)
    with open(rig.config, "a") as f:
        f.write("[rekeyd]\nlog_format = xml\n")
    p = subprocess.run([REKEYD, "--config", rig.config, "--check"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 2
    n = len(open(rig.config).read().splitlines())
    assert f"rekeyd.ini:{n}: log_format must be plain or json, not 'xml'" in p.stderr, p.stderr
