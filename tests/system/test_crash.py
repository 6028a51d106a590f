"""A small crash series in every make check (make check-crash runs the full
one): rekeyd killed with SIGKILL at random moments loses nothing and
delivers nothing twice."""
import os
import sys

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "tests", "crash"))
import crash_series  # noqa: E402


def test_sigkill_series_loses_nothing_and_duplicates_nothing(tmp_path):
    lines = []
    killed, problems = crash_series.run_series(files=120, kills=12, seed=42,
                                               keep=str(tmp_path / "series"), log=lines.append)
    assert problems == [], "\n".join(lines)
    assert killed >= 6, lines  # most runs were cut short, not finished
    assert "0 lost, 0 duplicated" in lines[0]
