#!/usr/bin/python3
"""Runs every test of rekey and ends with one line: `N passed, N failed`.

Unit tests are the cmocka binaries tests/unit/test_* (run from the
repository root); system tests are pytest under tests/system.  Extra
arguments are passed to pytest (e.g. -k NAME); `--unit-only` runs only the
unit tests, and REKEY_UNIT_WRAPPER (e.g. "valgrind -q --error-exitcode=1")
is put in front of each unit test binary (`make check-valgrind`).
"""
import os
import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET

# the test machines run as root; rekeyd refuses that unless told
os.environ.setdefault("REKEY_ALLOW_ROOT", "1")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_unit():
    passed = failed = 0
    unit = os.path.join(ROOT, "tests", "unit")
    bins = sorted(f for f in os.listdir(unit)
                  if f.startswith("test_") and not f.endswith(".c")
                  and os.access(os.path.join(unit, f), os.X_OK))
    wrapper = shlex.split(os.environ.get("REKEY_UNIT_WRAPPER", ""))
    timeout = 1200 if wrapper else 300
    for b in bins:
        path = os.path.join(unit, b)
        try:
            p = subprocess.run(wrapper + [path], cwd=ROOT, capture_output=True, text=True,
                               timeout=timeout)
            out = p.stdout + p.stderr
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b"").decode(errors="replace") + "\nTIMEOUT"
            p = None
        ok = re.search(r"\[  PASSED  \] (\d+) test", out)
        bad = re.search(r"\[  FAILED  \] (\d+) test", out)
        np = int(ok.group(1)) if ok else 0
        nf = int(bad.group(1)) if bad else 0
        if p is None or (p.returncode != 0 and nf == 0):
            nf += 1  # crashed, timed out or exited non-zero without a summary
        passed += np
        failed += nf
        status = "ok" if nf == 0 else "FAILED"
        print(f"unit {b}: {np} passed, {nf} failed [{status}]")
        if nf:
            print(out[-4000:])
    return passed, failed


def run_system(extra):
    sysdir = os.path.join(ROOT, "tests", "system")
    if not any(f.startswith("test_") for f in os.listdir(sysdir)):
        return 0, 0
    os.makedirs(os.path.join(ROOT, "build"), exist_ok=True)
    junit = os.path.join(ROOT, "build", "pytest.xml")
    if os.path.exists(junit):
        os.unlink(junit)
    cmd = ["/usr/bin/python3", "-m", "pytest", "-q", "-p", "no:cacheprovider",
           "--junitxml", junit, sysdir] + extra
    p = subprocess.run(cmd, cwd=ROOT)
    if not os.path.exists(junit):
        print("system tests: pytest wrote no report")
        return 0, 1
    root = ET.parse(junit).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    total = sum(int(s.get("tests", 0)) for s in suites)
    fails = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    passed = total - fails - skipped
    if p.returncode not in (0, 1) and fails == 0:
        fails = 1  # pytest itself broke (usage error, internal error, no tests)
    return passed, fails


def main():
    args = sys.argv[1:]
    unit_only = "--unit-only" in args
    args = [a for a in args if a != "--unit-only"]
    up, uf = run_unit()
    sp, sf = (0, 0) if unit_only else run_system(args)
    passed, failed = up + sp, uf + sf
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
