"""The CI map of weight bits x steps per window (recipes/tradeoff-ci.yaml): its floors hold, 2 bits cost, and more
than 2 bits keep the float accuracy on every grid of 8 steps or more; the committed FC2 Fashion-MNIST map
(recipes/tradeoff-fc2.yaml) is its recipe's."""
import json
from pathlib import Path

from hwtune.cli import main
from hwtune.study import load_sweep
from hwtune.sweep import broken_floors, point_id, read_points

RECIPE = "recipes/tradeoff-ci.yaml"
FC2_RECIPE = "recipes/tradeoff-fc2.yaml"
FC2_MAP = Path(__file__).resolve().parent.parent / "docs/results/tradeoff-fc2"


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


def test_committed_fc2_map_is_its_recipes_grid_with_torch_equal_to_the_emulator(tmp_path, monkeypatch):
    """docs/results/tradeoff-fc2 (`hwtune sweep recipes/tradeoff-fc2.yaml`) holds every point of the recipe's
    grid, made from the recipe as it is now (the ids hash its settings): evaluated on the whole test set with
    the quantized torch model and the emulator agreeing on every prediction, or refused by the export for
    Loihi 2's 16-bit input-current register (recorded as the sweep's failures); its report shows the plot.
    The recipe loads runs/fmnist-fc2, which a clean clone lacks: a briefly trained FC2 stands in (a point's id
    hashes the model's path, not its weights)."""
    recipe = Path(__file__).resolve().parent.parent / FC2_RECIPE
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--arch", "fc", "--dataset", "fashion-mnist", "--epochs", "0.01", "--train-samples", "640",
                 "--samples", "100", "-o", "runs/fmnist-fc2", "-q"]) == 0
    sweep = load_sweep(recipe)
    records = read_points(FC2_MAP)
    refused = json.loads((FC2_MAP / "sweep.json").read_text())["failures"]
    assert sweep.data.samples is None                                   # all 10,000 test images
    assert sorted([r["id"] for r in records] + [f["id"] for f in refused]) == \
        sorted(point_id(sweep, p) for p in sweep.points)
    assert all("register violation" in f["error"] and "a_in" in f["error"] for f in refused)
    assert len(records) >= 10
    assert all(r["torch_emulator_agreement"] == 1.0 and r["accuracy_emulator"] == r["accuracy_torch"] for r in records)
    assert (FC2_MAP / "accuracy_vs_bits.png").stat().st_size > 10_000
    assert "accuracy_vs_bits.png" in (FC2_MAP / "report.md").read_text()
