"""Replays the fuzz corpora (tests/fuzz/corpus/NAME) and every file under
tests/data through the replay builds of the libFuzzer harnesses
(build/fuzz/replay_NAME, built by `make all`).

A harness aborts when its contract breaks (e.g. the parser returns no
document and no error code), and under `make check-asan` the sanitizers
turn memory errors into a non-zero exit, so a clean exit plus the right
"replayed N input(s)" count means every input really went through.
"""
import os
import re
import subprocess

import pytest

from conftest import ROOT

FUZZ = os.path.join(ROOT, "tests", "fuzz")
DATA = os.path.join(ROOT, "tests", "data")
NAMES = ["xmldoc", "gunzip", "job", "map", "httpinbox", "jwe", "fitconnect"]
# seeds in tests/fuzz/corpus/NAME for the harnesses whose count is pinned
SEEDS = {"job": 11, "map": 13}


def replay_bin(name):
    return os.path.join(ROOT, "build", "fuzz", "replay_" + name)


def regular_files(folder):
    """Regular files directly inside folder, as the replay mains count them
    (dot files are skipped)."""
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if not f.startswith(".") and os.path.isfile(os.path.join(folder, f)))


def data_folders():
    """tests/data and every folder below it (the replay mains do not recurse)."""
    return sorted(d for d, _, _ in os.walk(DATA))


def replay(name, *args):
    """Runs build/fuzz/replay_NAME on args; returns (process, count replayed)."""
    exe = replay_bin(name)
    assert os.access(exe, os.X_OK), f"{exe} missing: run `make all`"
    p = subprocess.run([exe, *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    m = re.search(rf"^fuzz_{name}: replayed (\d+) input\(s\)$", p.stdout, re.M)
    assert m, f"no summary line in stdout: {p.stdout!r} stderr: {p.stderr[-2000:]}"
    return p, int(m.group(1))


@pytest.mark.parametrize("name", NAMES)
def test_corpus_replays(name):
    corpus = os.path.join(FUZZ, "corpus", name)
    files = regular_files(corpus)
    assert len(files) >= 5, f"corpus {corpus} has only {len(files)} seed(s)"
    p, n = replay(name, corpus)
    assert p.returncode == 0, p.stderr[-4000:]
    assert n == len(files)
    if name in SEEDS:
        assert n == SEEDS[name]


def test_job_replay_leaves_no_temp_tree():
    """fuzz_job writes each input to a private /tmp/rk-fuzz-job-* tree and
    removes it at exit."""
    import glob
    before = set(glob.glob("/tmp/rk-fuzz-job-*"))
    p, n = replay("job", os.path.join(FUZZ, "corpus", "job"))
    assert p.returncode == 0, p.stderr[-4000:]
    assert n == SEEDS["job"]
    assert set(glob.glob("/tmp/rk-fuzz-job-*")) <= before


@pytest.mark.parametrize("name", NAMES)
def test_data_replays(name):
    folders = data_folders()
    expected = sum(len(regular_files(d)) for d in folders)
    assert expected >= 20  # samples + bad + README: the tree is really there
    p, n = replay(name, *folders)
    assert p.returncode == 0, p.stderr[-4000:]
    assert n == expected


@pytest.mark.parametrize("name", NAMES)
def test_single_files_count(name):
    """Files named one by one count one each, like the folder walk."""
    files = regular_files(os.path.join(DATA, "bad"))
    p, n = replay(name, *files)
    assert p.returncode == 0, p.stderr[-4000:]
    assert n == len(files) == 6


@pytest.mark.parametrize("name", NAMES)
def test_missing_input_fails(name, tmp_path):
    """An argument that does not exist is an error, not a silent zero."""
    missing = str(tmp_path / "does-not-exist.xml")
    p, n = replay(name, missing)
    assert p.returncode == 1
    assert n == 0
    assert "does-not-exist.xml" in p.stderr
