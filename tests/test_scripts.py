"""scripts/: the emulator benchmark's documented command runs and records its kernels; no script uses test code."""
import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_scripts_use_no_test_code():
    """No script puts tests/ on sys.path or imports a module that lives there (tests/random_artifacts.py
    was imported by the emulator benchmark; it is hwtune.random_artifacts now)."""
    test_modules = {p.stem for p in (ROOT / "tests").glob("*.py")}
    for script in sorted((ROOT / "scripts").glob("*.py")):
        tree = ast.parse(script.read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.module and not node.level}
        assert not imported & test_modules, f"{script.name} imports test code: {sorted(imported & test_modules)}"
        assert "sys.path" not in script.read_text(), f"{script.name} edits sys.path"


def test_emulator_benchmark_default_net_runs_through_lava(tmp_path):
    """The documented `python scripts/bench_emulator.py --seed 0 --samples 10000`, smaller: its random
    784-340-10 is accepted by the stock Loihi 2 build (8-bit weights were not: vth, u, v, a_in out of
    range), every check holds, and the JSON names the CPU and both sides' kernels and threads."""
    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, "scripts/bench_emulator.py", "--seed", "0", "--samples", "200", "--batch", "100",
                          "--repeats", "1", "--stepped-samples", "20", "--lava-samples", "2", "--out", str(out)],
                         cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["checks"] == {"stepped_equals_fast": True, "torch_engine_equals_fast": True,
                                "numpy_engine_equals_fast": True, "lava_equals_fast": True}
    assert result["net"]["sizes"] == [784, 340, 10] and result["net"]["weight_bits"] == 4
    kernels = result["kernels"]
    assert kernels["emulator_engine"] == "torch-int8"
    assert list(result["ratios"]["engines_over_torch_time"]) == ["torch-int8", "torch", "numpy"]
    assert kernels["numpy_blas"] and all(blas["architecture"] and blas["num_threads"] == 1
                                         for blas in kernels["numpy_blas"])
    assert kernels["torch"]["threads"] == 1 and kernels["torch"]["cpu_capability"] and kernels["torch"]["blas"]
    assert kernels["cpu"]["model_name"]
    assert set(result["ratios"]) >= {"emulator_over_torch_time", "emulator_over_torch_cpu_time",
                                     "emulator_over_lava_speed"}


def test_emulator_benchmark_refuses_a_net_lava_cannot_hold_before_timing(tmp_path):
    run = subprocess.run([sys.executable, "scripts/bench_emulator.py", "--bits", "8", "--samples", "100",
                          "--out", str(tmp_path / "bench.json")], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 3
    assert "stock Loihi 2 build refuses this net" in run.stderr and "vth" in run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "bench.json").exists()
