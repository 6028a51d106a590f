"""The connector author's path, as connectors/template/README.md tells it:
copy the template, rename folder, file and descriptor name, build with the
project's Makefile rule, and pass rekeyctl connector-test.  Runs in a
scratch copy of the build files so the tree stays untouched."""
import os
import shutil
import subprocess

from conftest import REKEYCTL, ROOT


def test_copied_and_renamed_template_builds_and_passes(tmp_path):
    work = tmp_path / "tree"
    (work / "connectors").mkdir(parents=True)
    # what `make` needs to build connectors: the Makefile, the ABI header,
    # the scripts it includes; the agent is not rebuilt (no sources copied)
    shutil.copy(os.path.join(ROOT, "Makefile"), work / "Makefile")
    shutil.copy(os.path.join(ROOT, "connectors", "rekey_connector.h"),
                work / "connectors" / "rekey_connector.h")
    shutil.copytree(os.path.join(ROOT, "connectors", "template"),
                    work / "connectors" / "template")
    # the README's steps, word for word
    steps = [
        "cp -r connectors/template connectors/meldewesen",
        "mv connectors/meldewesen/template.c connectors/meldewesen/meldewesen.c",
        "rm connectors/meldewesen/README.md",
        "sed -i 's/\"template\"/\"meldewesen\"/' connectors/meldewesen/meldewesen.c",
    ]
    for step in steps:
        subprocess.run(step, shell=True, cwd=work, check=True)
    readme = open(os.path.join(ROOT, "connectors", "template", "README.md")).read()
    for step in steps[:2] + steps[3:]:
        assert step.split(" ", 1)[1].split("   #")[0].strip() in readme.replace("\\\"", "\""), step
    build = subprocess.run(["make", "WERROR=1", "connectors/meldewesen/meldewesen.so"],
                           cwd=work, capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stdout + build.stderr
    assert "warning" not in build.stderr
    so = work / "connectors" / "meldewesen" / "meldewesen.so"
    exported = subprocess.run(["nm", "-D", "--defined-only", str(so)], capture_output=True,
                              text=True, check=True).stdout
    assert [l.split()[-1] for l in exported.splitlines() if " T " in l] == ["rk_connector_entry"]
    out = tmp_path / "records.jsonl"
    test = subprocess.run([REKEYCTL, "connector-test", str(so), "--set", f"path={out}",
                           "--set", "token=test-token-123"],
                          capture_output=True, text=True, timeout=120)
    assert test.returncode == 0, test.stdout + test.stderr
    assert "FAIL" not in test.stdout
    assert "meldewesen" in test.stdout
    assert "test-token-123" not in test.stdout + test.stderr
