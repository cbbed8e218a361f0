"""The CI map of weight bits x steps per window (recipes/tradeoff-ci.yaml): its floors hold, 2 bits cost, and more
than 2 bits keep the float accuracy on every grid of 8 steps or more."""
from hwtune.cli import main
from hwtune.study import load_sweep
from hwtune.sweep import broken_floors, read_points

RECIPE = "recipes/tradeoff-ci.yaml"


def test_tradeoff_map_holds_its_floors(tmp_path):
    out = tmp_path / "tradeoff"
    assert main(["sweep", RECIPE, "--out", str(out), "-q"]) == 0
    records = read_points(out)
    assert sorted((r["bits"], r["steps"]) for r in records) == [(b, s) for b in (2, 3, 4, 6, 8) for s in (8, 16, 32)]
    assert broken_floors(load_sweep(RECIPE), records) == []
    acc = {(r["bits"], r["steps"]): r["accuracy_torch"] for r in records}
    assert all(r["accuracy_emulator"] == r["accuracy_torch"] for r in records)
    float_accuracy = records[0]["accuracy_float"]
    assert all(acc[(2, s)] < min(acc[(b, s)] for b in (3, 4, 6, 8)) - 0.03 for s in (8, 16, 32))   # 2 bits cost
    assert all(acc[(b, s)] >= float_accuracy - 0.015 for b in (3, 4, 6, 8) for s in (8, 16, 32))
    assert (out / "accuracy_vs_bits.png").stat().st_size > 10_000
    assert "accuracy_vs_bits.png" in (out / "report.md").read_text()
