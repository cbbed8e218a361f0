"""Recipes: validated before any training; the quickstart pipeline runs end to end."""
import json

import pytest
import yaml

from hwtune.cli import main
from hwtune.recipes import RecipeError, load_recipe, parse_recipe

GOOD = {"name": "r", "dataset": "digits", "target": "loihi2",
        "model": {"train": {"arch": "fc-small", "epochs": 1}},
        "passes": [{"quantize": {"bits": 4, "steps": 8, "epochs": 0}}]}


def bad(**change):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data.update(change)
    return data


@pytest.mark.parametrize("data,message", [
    (bad(passes=[{"quantise": {}}]), "passes[0]: unknown pass 'quantise'"),
    (bad(passes=[{"quantize": {"bits": 12}}]), "passes[0]: 12-bit weights: target loihi2 holds 2..8"),
    (bad(passes=[{"latency": {"steps": 5000}}]), "passes[0]: layer 0 window of 5000 steps"),
    (bad(passes=[{"noise": {"jitter": 0.1, "colour": 1}}]), "unknown setting(s) ['colour']"),
    (bad(target="tpu"), "target: unknown target 'tpu'"),
    (bad(model={"train": {"arch": "fc", "epochz": 3}}), "model.train: unknown key(s) ['epochz']"),
    (bad(extra=1), "unknown key(s) ['extra']"),
])
def test_malformed_recipe_fails_before_training(data, message):
    with pytest.raises(RecipeError) as e:
        parse_recipe(data, "recipes/x.yaml")
    assert message in str(e.value) and "recipes/x.yaml" in str(e.value)


def test_recipe_file_errors(tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "missing.yaml")
    path = tmp_path / "r.yaml"
    path.write_text("name: [")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(path)


def test_quickstart_end_to_end(tmp_path, capsys):
    """make demo's recipe: torch == emulator on every test image, Lava == emulator spike for spike."""
    assert main(["run", "recipes/quickstart.yaml", "--out", str(tmp_path / "qs"), "--seed", "0"]) == 0
    results = json.loads((tmp_path / "qs" / "results.json").read_text())
    deploy = results["deploy"]
    assert deploy["torch_emulator_agreement"] == 1.0
    assert deploy["emulator"]["accuracy"] == pytest.approx(deploy["torch_accuracy"])
    assert deploy["emulator"]["accuracy"] > 0.9
    assert deploy["lava"]["identical_spike_for_spike"] == deploy["lava"]["samples"] == 20
    assert [s["stage"] for s in results["stages"]] == ["train", "quantize", "noise", "latency"]
    assert (tmp_path / "qs" / "artifact" / "artifact.json").exists()
    assert "Lava fixed_pt == emulator spike for spike on 20/20" in capsys.readouterr().out
