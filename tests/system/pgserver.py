"""A throw-away PostgreSQL server for system tests.

    with PgServer() as pg:
        run_something(env={"REKEY_TEST_PG_CONNINFO": pg.conninfo})
        assert pg.psql("SELECT count(*) FROM t") == "1"

or, in pytest, `from pgserver import pg_server` and take `pg_server` as a
fixture argument.

It uses Debian's postgresql package (the binaries in
/usr/lib/postgresql/VERSION/bin, the highest version wins): initdb into a
fresh temporary folder, a server that listens only on a unix socket in
that folder (no TCP port at all, so parallel runs and a system cluster
do not collide), one database, and on exit `pg_ctl stop -m fast` and the
folder removed.  initdb refuses to run as root, so as root every server
command runs as the `postgres` user (created by the package) through
runuser, and the folder is handed to that user.

Standard library only (plus pytest for the fixture); Python 3.11.
"""

import glob
import os
import pwd
import random
import re
import shutil
import subprocess
import tempfile
import time

__all__ = ["PgServer", "PgServerError", "find_bindir", "pg_server"]


class PgServerError(RuntimeError):
    """The server could not be set up; the message carries its log."""


def find_bindir():
    """The bin folder of the highest installed PostgreSQL version."""
    found = []
    for d in glob.glob("/usr/lib/postgresql/*/bin"):
        m = re.fullmatch(r"/usr/lib/postgresql/([0-9]+)(?:\.([0-9]+))?/bin", d)
        if m and os.access(os.path.join(d, "initdb"), os.X_OK):
            found.append(((int(m.group(1)), int(m.group(2) or 0)), d))
    if not found:
        raise PgServerError(
            "no PostgreSQL server found in /usr/lib/postgresql/*/bin "
            "(install the postgresql package: make deps)")
    return max(found)[1]


class PgServer:
    """One PostgreSQL server in a temporary folder.

    Attributes once started: bindir, tmpdir, port, dbname, user,
    conninfo ("host=TMPDIR port=PORT dbname=DBNAME user=postgres").
    """

    def __init__(self, dbname="rekey_test", port=None, bindir=None):
        self.bindir = bindir or find_bindir()
        self.dbname = dbname
        self.port = port or 5439 + random.randrange(0, 1000)
        self.user = "postgres"
        self.tmpdir = None
        self.datadir = None
        self.logfile = None
        self._started = False
        self._as_postgres = os.geteuid() == 0

    # -- running commands ----------------------------------------------

    def _cmd(self, argv):
        """argv to run a server binary, as `postgres` when we are root."""
        argv = [os.path.join(self.bindir, argv[0])] + list(argv[1:])
        if self._as_postgres:
            return ["runuser", "-u", "postgres", "--"] + argv
        return argv

    def _run(self, argv, timeout=60, check=True, input=None):
        env = dict(os.environ, LC_ALL="C", LANG="C")
        for k in ("PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD",
                  "PGSERVICE", "PGOPTIONS"):
            env.pop(k, None)
        p = subprocess.run(self._cmd(argv), capture_output=True, text=True,
                           timeout=timeout, env=env, input=input,
                           cwd=self.tmpdir or "/")
        if check and p.returncode != 0:
            raise PgServerError(
                "%s failed (%d):\n%s%s%s" % (argv[0], p.returncode, p.stdout,
                                             p.stderr, self._log_tail()))
        return p

    def _log_tail(self):
        if self.logfile and os.path.exists(self.logfile):
            with open(self.logfile, errors="replace") as f:
                return "\n--- server log ---\n" + f.read()[-4000:]
        return ""

    # -- life cycle ----------------------------------------------------

    def start(self):
        """initdb, start, wait until ready, create the database."""
        self.tmpdir = tempfile.mkdtemp(prefix="rekey-pg-")
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self):
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(self.tmpdir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.tmpdir, 0o700)
        self.datadir = os.path.join(self.tmpdir, "data")
        self.logfile = os.path.join(self.tmpdir, "server.log")
        self._run(["initdb", "-D", self.datadir, "-U", self.user, "-A", "trust",
                   "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
                  timeout=120)
        opts = ("-c listen_addresses='' -c unix_socket_directories='%s' -p %d "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                % (self.tmpdir, self.port))
        self._run(["pg_ctl", "-D", self.datadir, "-l", self.logfile, "-o", opts,
                   "-w", "-t", "60", "start"], timeout=90)
        self._started = True
        deadline = time.monotonic() + 30
        while True:
            p = self._run(["pg_isready", "-q", "-h", self.tmpdir, "-p",
                           str(self.port), "-d", "postgres"], check=False)
            if p.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise PgServerError("server not ready after 30 s" + self._log_tail())
            time.sleep(0.1)
        self._run(["createdb", "-h", self.tmpdir, "-p", str(self.port),
                   "-U", self.user, self.dbname])

    def stop(self):
        """Stops the server (fast mode) and removes the folder."""
        if self._started:
            self._started = False
            self._run(["pg_ctl", "-D", self.datadir, "-m", "fast", "-w", "-t", "60",
                       "stop"], timeout=90, check=False)
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # -- using it --------------------------------------------------------

    @property
    def conninfo(self):
        return "host=%s port=%d dbname=%s user=%s" % (
            self.tmpdir, self.port, self.dbname, self.user)

    def psql(self, sql, dbname=None):
        """Runs sql with psql and returns its unaligned, tuples-only
        output without the trailing newline (rows by line, columns by
        '|').  Raises PgServerError when psql fails."""
        p = self._run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                       "-h", self.tmpdir, "-p", str(self.port), "-U", self.user,
                       "-d", dbname or self.dbname, "-c", sql])
        return p.stdout.rstrip("\n")


try:
    import pytest
except ImportError:  # the helper also works without pytest
    pytest = None

if pytest is not None:
    @pytest.fixture
    def pg_server():
        """A fresh PostgreSQL server for one test (about 1-2 s)."""
        with PgServer() as pg:
            yield pg
