"""The package ships what it needs: a wheel built from the tree, installed into a fresh venv, lists
its targets and runs the quickstart recipe from another directory (targets are package data)."""
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(cmd, **kw):
    result = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert result.returncode == 0, f"{cmd}: {result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return result


def test_wheel_installs_and_runs(tmp_path):
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"),
         str(ROOT)])
    wheel = next((tmp_path / "dist").glob("hwtune-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "hwtune/targets/loihi2.yaml" in names and "hwtune/targets/emulator.yaml" in names
    venv = tmp_path / "fresh"
    run([sys.executable, "-m", "venv", str(venv)])
    run([str(venv / "bin/python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)])
    # the dependencies (torch, lava, ...) come from this environment's site-packages, hwtune from the wheel
    site = run([str(venv / "bin/python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout
    (Path(site.strip()) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = run([str(venv / "bin/python"), "-c", "import hwtune; print(hwtune.__file__)"], cwd=work, env=env).stdout
    assert where.startswith(str(venv)), where
    targets = run([str(venv / "bin/hwtune"), "targets"], cwd=work, env=env).stdout
    assert "loihi2" in targets and "emulator" in targets
    run([str(venv / "bin/hwtune"), "run", str(ROOT / "recipes/quickstart.yaml"), "-o", "qs", "-q"], cwd=work, env=env)
    assert (work / "qs/artifact/artifact.json").exists() and (work / "qs/results.json").exists()
