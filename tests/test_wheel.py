"""The package ships what it needs: a wheel built from the tree, installed into a fresh venv, lists
its targets and runs the shipped quickstart recipe by name from another directory (targets/ and
recipes/ of the checkout go into the wheel as package data), with its license and version ranges."""
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
    assert {f"hwtune/bundled_recipes/{p.name}" for p in (ROOT / "recipes").glob("*.yaml")} <= set(names)
    dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
    assert any(n.startswith(dist_info) and n.endswith("LICENSE") for n in names)
    metadata = zipfile.ZipFile(wheel).read(f"{dist_info}/METADATA").decode()
    assert "License-Expression: MIT" in metadata
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert requires and not any("==" in line.split(";")[0] for line in requires), requires     # ranges, not pins
    assert any("numpy" in line and "<2" in line for line in requires)            # lava-nc 0.10 needs numpy 1
    venv = tmp_path / "fresh"
    run([sys.executable, "-m", "venv", str(venv)])
    run([str(venv / "bin/python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)])
    # the dependencies (torch, lava, ...) come from this environment's site-packages, hwtune from the wheel
    site = run([str(venv / "bin/python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout
    # (every site-packages of this interpreter: a venv may chain to another through .pth files)
    (Path(site.strip()) / "deps.pth").write_text(
        "\n".join(p for p in dict.fromkeys([sysconfig.get_paths()["purelib"], *sys.path]) if p.endswith("site-packages"))
        + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = run([str(venv / "bin/python"), "-c", "import hwtune; print(hwtune.__file__)"], cwd=work, env=env).stdout
    assert where.startswith(str(venv)), where
    targets = run([str(venv / "bin/hwtune"), "targets"], cwd=work, env=env).stdout
    assert "loihi2" in targets and "emulator" in targets
    run([str(venv / "bin/hwtune"), "run", "quickstart", "-o", "qs", "-q"], cwd=work, env=env)   # shipped, by name
    assert (work / "qs/artifact/artifact.json").exists() and (work / "qs/results.json").exists()
