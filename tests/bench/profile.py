#!/usr/bin/python3
"""Profiles rekeyd on the benchmark's backlog: `rekeyd --once` over N
corpus files, under perf (when `perf record` works here) or callgrind.

  python3 tests/bench/profile.py [--n 20000] [--tool perf|callgrind|strace]
                                 [--sync full|normal] [--workers W]
                                 [--rekeyd PATH] [--out build/bench/profile]

perf: `perf record -e cpu-clock --call-graph dwarf` (software clock: works
in VMs without hardware counters); prints the hottest functions by self
time and by inclusive time.  callgrind: instructions per function (use a
smaller N, it runs ~50x slower).  strace: counts the system calls
(fsync/fdatasync per commit, renames, stats of the inbox scan).

--rekeyd lets a modified copy (e.g. /tmp/bench-copy/agent/rekeyd) be
profiled against the same corpus; its connectors are taken from
../connectors beside it.
"""
import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402
import corpus  # noqa: E402


def perf_works():
    try:
        p = subprocess.run(["perf", "record", "-e", "cpu-clock", "-o", "/dev/null", "--",
                            "true"], capture_output=True, timeout=30)
        return p.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def main(argv=None):
    ap = argparse.ArgumentParser(description="profile rekeyd on the benchmark backlog")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--tool", choices=["perf", "callgrind", "strace"], default=None)
    ap.add_argument("--sync", choices=["full", "normal"], default="full")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--rekeyd", default=bench.REKEYD)
    ap.add_argument("--out", default=os.path.join(bench.ROOT, "build", "bench", "profile"))
    ap.add_argument("--top", type=int, default=40)
    a = ap.parse_args(argv)
    tool = a.tool or ("perf" if perf_works() else "callgrind")
    os.environ.setdefault("REKEY_ALLOW_ROOT", "1")
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    # the benchmark's corpus when the size matches, else one of its own
    cdir = os.path.join(bench.ROOT, "build", "bench", "corpus")
    if a.n != 20000:
        cdir = os.path.join(out, f"corpus-{a.n}")
    m = corpus.generate(a.n, cdir, log=bench.log)
    rekeyd = os.path.abspath(a.rekeyd)
    rargs = argparse.Namespace(log_level="info", sync=a.sync, workers=a.workers,
                               rescan_ms=100, rekeyd=rekeyd)
    rig = bench.Rig(os.path.join(out, "rig"), rargs)
    for e in m["files"]:
        bench.place(os.path.join(cdir, e["name"]), os.path.join(rig.inbox, e["name"]))
    cmd = [rekeyd, "--config", rig.config, "--once"]
    data = os.path.join(out, f"{tool}.data")
    if tool == "perf":
        pre = ["perf", "record", "-e", "cpu-clock", "-F", os.environ.get("PROFILE_HZ", "499"), "--call-graph",
               "dwarf,8192", "-o", data, "--"]
    elif tool == "callgrind":
        pre = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={data}"]
    else:
        pre = ["strace", "-f", "-c", "-o", data]
    bench.log(f"profile: {tool} on rekeyd --once over {a.n:,} files")
    t0 = time.monotonic()
    with open(rig.log, "ab") as logf:
        p = subprocess.run(pre + cmd, stdout=subprocess.DEVNULL, stderr=logf)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        raise bench.BenchError(f"profile: exited {p.returncode}:\n{rig.log_tail()}")
    states = bench.outcome(rig)
    first, _, last, _ = bench.span(rig)
    bench.log(f"profile: {sum(states.values()):,} jobs {states} in {wall:.1f} s wall, "
              f"{(last - first) / 1000:.1f} s by the queue")
    if tool == "perf":
        for title, extra in (("self time", ["--no-children"]), ("inclusive", ["--children"])):
            r = subprocess.run(["perf", "report", "-i", data, "--stdio", "-g", "none",
                                "--percent-limit", "0.5", "--sort", "symbol"] + extra,
                               capture_output=True, text=True)
            lines = [ln for ln in r.stdout.splitlines() if ln and not ln.startswith("#")]
            print(f"== perf, {title}")
            print("\n".join(lines[:a.top]))
        r = subprocess.run(["perf", "report", "-i", data, "--stdio", "-g", "none",
                            "--sort", "comm", "--no-children"], capture_output=True, text=True)
        print("== perf, by thread")
        print("\n".join(ln for ln in r.stdout.splitlines() if ln and not ln.startswith("#")))
    elif tool == "callgrind":
        r = subprocess.run(["callgrind_annotate", "--inclusive=no", data],
                           capture_output=True, text=True)
        print("\n".join(r.stdout.splitlines()[:a.top + 20]))
    else:
        with open(data) as f:
            print(f.read())
    bench.log(f"profile: data in {data}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except bench.BenchError as e:
        print(f"profile: {e}", file=sys.stderr)
        sys.exit(1)
