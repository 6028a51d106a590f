"""The benchmark harness (tests/bench/bench.py, `make bench`) at a tiny
size: every step runs against the real binaries and the JSON it writes
holds every metric with sane values.  No timing is asserted: the
benchmark only reports."""
import json
import os
import subprocess
import sys

from conftest import ROOT

BENCH = os.path.join(ROOT, "tests", "bench", "bench.py")
N = 200
RATE = 100      # files per second, for
SECONDS = 2     # a two-second run: N files, so no document is dropped twice
QUEUE = 500
INTAKE = 100


def run_bench(out):
    p = subprocess.run(
        ["/usr/bin/python3", BENCH, "--n", str(N), "--rate", str(RATE),
         "--seconds", str(SECONDS), "--queue", str(QUEUE), "--intake", str(INTAKE),
         "--stall", "30", "--allow-sanitizer", "--out", str(out)],
        capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p


def test_bench_writes_every_metric(tmp_path):
    p = run_bench(tmp_path)
    with open(tmp_path / "latest.json") as f:
        r = json.load(f)
    stamped = [x for x in os.listdir(tmp_path) if x.startswith("bench-") and x.endswith(".json")]
    assert len(stamped) == 1
    with open(tmp_path / stamped[0]) as f:
        assert json.load(f) == r

    # the corpus: N documents, a few per cent flagged, as its manifest says
    with open(tmp_path / "corpus" / "manifest.json") as f:
        manifest = json.load(f)["files"]
    assert len(manifest) == N
    valid = sum(1 for e in manifest if e["expect"] == "delivered")
    flagged = N - valid
    schema_bad = sum(1 for e in manifest if e["code"] == "SCHEMA")
    assert r["corpus"]["documents"] == N
    assert r["corpus"]["flagged"] == flagged == round(N * 0.03)
    assert set(r["corpus"]["by_type"]) == {"fischereischein", "besucherparkausweis",
                                           "gewerbeanmeldung"}
    assert 1000 < r["corpus"]["mean_bytes"] < 3000

    # settings and machine
    s = r["settings"]
    assert (s["n"], s["rate"], s["seconds"], s["queue"], s["intake"]) == \
        (N, RATE, SECONDS, QUEUE, INTAKE)
    assert s["sync"] == "full" and s["settle_ms"] == 0
    # a sanitizer build (make check-asan) is run only when allowed, and said so
    ldd = subprocess.run(["ldd", os.path.join(ROOT, "agent", "rekeyd")], capture_output=True,
                         text=True).stdout
    san = "AddressSanitizer" if "libasan" in ldd else None
    assert s["sanitizer"] == san
    assert ("these figures are not rekey's" in r["table"]) == (san is not None)
    assert r["commit"] and r["commit"] != "unknown"
    assert r["machine"]["nproc"] >= 1 and r["machine"]["mem_total_kb"] > 0
    assert r["machine"]["model"]

    # the floor: xmllint validated every document but the SCHEMA variants
    fl = r["floor"]
    assert fl["validated"] == N - schema_bad
    assert fl["invalid"] == schema_bad
    assert fl["seconds"] > 0 and fl["per_second"] > 0 and fl["cpu_seconds"] > 0
    # three passes; the floor is the best of them
    assert len(fl["passes_per_second"]) == 3
    assert fl["per_second"] == max(fl["passes_per_second"])

    # the backlog: every valid document delivered, the flagged ones held
    bl = r["backlog"]
    assert bl["documents"] == N
    assert bl["delivered"] == bl["expected_delivered"] == valid
    assert bl["review"] == bl["expected_review"] == flagged
    assert bl["states"] == {"delivered": valid, "review": flagged}
    assert bl["target_rows"] == valid
    assert bl["left_in_inbox"] == 0
    assert bl["seconds_db"] > 0 and bl["seconds_wall"] >= bl["seconds_db"] * 0.5
    assert bl["per_second"] > 0 and bl["per_second_wall"] > 0
    # three passes on new queues, measured as the floor: the best is the rate,
    # the highest peak RSS the peak, each pass delivered all it should
    assert len(bl["passes_per_second"]) == 3 == len(bl["passes_cpu_us_per_document"])
    assert bl["per_second"] == max(bl["passes_per_second"])
    assert bl["passes_delivered"] == [valid] * 3
    assert s["backlog_passes"] == 3
    assert bl["ratio_to_floor"] == round(bl["per_second"] / fl["per_second"], 3)
    assert bl["peak_rss_kb"] > 1000
    # the CPU per document and the writer's figures from rekeyd's last line
    assert bl["cpu_us_per_document"] > 0
    wr = bl["writer"]
    assert wr["commits"] >= 1 and wr["items_per_commit"] > 0
    # printed in ms: a small run's COMMITs may round to 0.000 s
    assert wr["busy_s"] > 0
    assert 0 <= wr["writing_s"] <= wr["busy_s"] and 0 <= wr["commit_s"] <= wr["busy_s"]

    # the steady rate: every file delivered, ordered percentiles
    rt = r["rate"]
    assert rt["dropped"] == RATE * SECONDS == N and rt["reused_files"] == 0
    assert rt["delivered"] == rt["expected_delivered"] == valid
    assert rt["states"] == {"delivered": valid, "review": flagged}
    lat = rt["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert rt["achieved_per_second"] > 0
    # its three stages, each ordered and within the whole
    st = rt["stages_ms"]
    assert set(st) == {"arrival_to_received", "received_to_delivering",
                       "delivering_to_delivered"}
    for part in st.values():
        assert 0 <= part["p50"] <= part["p99"] <= lat["max"]
    assert sum(part["p50"] for part in st.values()) <= lat["p99"] * 3

    # memory: idle after 2 s, and peaks at least as high
    mem = r["memory"]
    assert mem["idle_hwm_kb"] > 1000 and mem["idle_rss_kb"] > 1000
    assert mem["rate_peak_kb"] >= mem["idle_hwm_kb"]
    assert mem["backlog_peak_kb"] == bl["peak_rss_kb"]

    # intake: the same files against an empty and a full queue, in three
    # passes of files of their own (N // 3 each at most), medians
    it = r["intake"]
    k = min(INTAKE, N // 3)
    assert it["k"] == k and it["queue"] == QUEUE and it["passes"] == 3
    assert s["intake_passes"] == 3
    assert it["queue_source"] == "built"
    assert it["queue_rows"]["jobs"] == QUEUE and it["queue_rows"]["submissions"] == QUEUE
    assert it["queue_rows"]["events"] == 6 * QUEUE
    assert len(it["by_pass"]) == 3
    for one in it["by_pass"]:
        for side in ("empty", "full"):
            assert sum(one[side]["states"].values()) == k
            assert one[side]["per_second"] > 0 and one[side]["intake_per_second"] > 0
        assert one["full_vs_empty"] == round(one["full"]["per_second"] /
                                             one["empty"]["per_second"], 3)
    for side in ("empty", "full"):
        assert sum(it[side]["states"].values()) == 3 * k
        assert it[side]["per_second"] == round(sorted(
            one[side]["per_second"] for one in it["by_pass"])[1], 1)
    assert it["full_vs_empty"] == sorted(one["full_vs_empty"] for one in it["by_pass"])[1]
    # the duplicate keys rekeyd read at its start: none for an empty
    # queue; the full queue's (its clones' and the seed Fischereischein's)
    # in the first pass, which runs the empty side first
    for one in it["by_pass"]:
        assert one["empty"]["dup_keys"] == 0 and one["empty"]["dup_keys_ms"] >= 0
    assert it["by_pass"][0]["full"]["dup_keys"] == it["queue_rows"]["dupkeys"] + 1
    assert it["by_pass"][0]["full"]["dup_keys_ms"] >= 0
    for side in ("empty", "full"):
        assert it[side]["peak_rss_kb"] == max(one[side]["peak_rss_kb"] for one in it["by_pass"])
        assert it[side]["peak_rss_kb"] > 1000

    # one table on stdout, the same as in the JSON
    assert r["table"] in p.stdout
    for label in ("floor: xmllint", "backlog --once", "CPU per document",
                  "writer thread busy", "latency at 100/s", "RSS idle",
                  "RSS peak, backlog run", "intake, empty queue", "intake, 500 finished",
                  "by pass (3 x 66 files", "duplicate keys read / ms",
                  "RSS peak, intake runs"):
        assert label in r["table"], label


def test_bench_reuses_the_cached_queue(tmp_path):
    """A second run finds the queue it built in cache/ and copies it."""
    args = ["--skip", "floor,backlog,rate"]
    for _ in range(2):
        p = subprocess.run(
            ["/usr/bin/python3", BENCH, "--n", "50", "--queue", "300", "--intake", "20",
             "--allow-sanitizer", "--out", str(tmp_path)] + args, capture_output=True,
            text=True, timeout=300)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    with open(tmp_path / "latest.json") as f:
        r = json.load(f)
    assert r["intake"]["queue_source"] == "cache"
    assert "floor" not in r and "backlog" not in r and "rate" not in r
    assert sum(r["intake"]["full"]["states"].values()) == 3 * 16  # 50 // 3 files a pass
    caches = os.listdir(tmp_path / "cache")
    assert len(caches) == 1 and caches[0].startswith("queue-300-")


def test_bench_refuses_a_sanitizer_build(tmp_path):
    """An ASan build (what `make check-asan` leaves) is refused by name,
    not measured: its times and memory say nothing about rekey."""
    src = tmp_path / "p.c"
    src.write_text("int main(void) { return 0; }\n")
    prog = tmp_path / "rekeyd"
    subprocess.run(["cc", "-fsanitize=address", "-o", str(prog), str(src)], check=True,
                   timeout=120)
    p = subprocess.run([sys.executable, BENCH, "--rekeyd", str(prog), "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert "built with AddressSanitizer" in p.stderr and "make clean all" in p.stderr
    assert not (tmp_path / "latest.json").exists()


def test_bench_refuses_unknown_step(tmp_path):
    p = subprocess.run([sys.executable, BENCH, "--skip", "flor", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert "unknown step(s) flor" in p.stderr
