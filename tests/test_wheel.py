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


def test_another_python_is_told_that_hwtune_needs_python_3_10(tmp_path):
    """A build on Python 3.11 stops with "hwtune needs Python 3.10" (setup.py, before pip reaches
    lava-nc), and make says the same when it finds no Python 3.10."""
    import runpy
    check = runpy.run_path(str(ROOT / "setup.py"), run_name="setup")["python_problem"]
    assert check((3, 10, 13, "final", 0)) == ""
    said = check((3, 11, 7, "final", 0))
    assert said.startswith("hwtune needs Python 3.10 (lava-nc 0.10.0") and "this is Python 3.11.7" in said
    res = subprocess.run(["make", "-C", str(ROOT), "env", "PYTHON310=", f"VENV={tmp_path / 'venv'}"],
                         capture_output=True, text=True)
    assert res.returncode != 0 and "error: hwtune needs Python 3.10" in res.stderr and not (tmp_path / "venv").exists()
