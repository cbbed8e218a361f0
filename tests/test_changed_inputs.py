"""Resume only what is still true (issue 31): each sweep point records the sha256 of its inputs (the
base model, the target spec, the data); a point whose inputs changed runs again, and data that
changed under a model that records its sha256 is refused by every verb that reads the model."""
import json
from pathlib import Path

import numpy as np
import pytest

from hwtune import io
from hwtune.cli import main
from hwtune.data import load_dataset
from hwtune.sweep import POINTS, read_points


@pytest.fixture
def inputs(tmp_path):
    """(dataset .npz, base model trained on it, target file, sweep recipe loading both) in tmp_path."""
    digits = load_dataset("digits")
    data = tmp_path / "D.npz"
    np.savez(data, x_train=digits.train_x[:, 0].numpy(), y_train=digits.train_y.numpy(),
             x_test=digits.test_x[:, 0].numpy(), y_test=digits.test_y.numpy())
    model = tmp_path / "M"
    assert main(["train", "--arch", "fc-small", "--dataset", str(data), "--epochs", "0.5", "-o", str(model), "-q"]) == 0
    target = tmp_path / "T.yaml"
    target.write_text(Path("targets/loihi2.yaml").read_text().replace("name: loihi2", "name: mychip")
                      .replace("aliases: [loihi]", "aliases: []"))
    recipe = tmp_path / "sweep.yaml"
    recipe.write_text(f"name: changes\ndataset: {data}\ntarget: {target}\nmodel: {{load: {model}}}\nsamples: 60\n"
                      "grid: {bits: [4], steps: [8]}\n")
    return data, model, target, recipe


def _sweep(recipe, out, capsys) -> tuple[int, str]:
    code = main(["sweep", str(recipe), "--out", str(out)])
    return code, capsys.readouterr().err


def test_a_point_whose_inputs_changed_runs_again(inputs, tmp_path, capsys):
    data, model, target, recipe = inputs
    out = tmp_path / "S"
    assert _sweep(recipe, out, capsys)[0] == 0
    first, = read_points(out)
    assert set(first["inputs"]) == {"base_model", "target", "data"}
    code, err = _sweep(recipe, out, capsys)
    assert code == 0 and "skipped 1 finished point(s)" in err              # nothing changed: resumed

    target.write_text(target.read_text().replace("synaptic_delay: 1 ", "synaptic_delay: 3 "))
    code, err = _sweep(recipe, out, capsys)
    assert code == 0 and "ran on other inputs (target changed since): running it again" in err, err
    edited, = read_points(out)
    assert edited["latency_steps"] > first["latency_steps"] and edited["id"] == first["id"]
    assert len((out / POINTS).read_text().splitlines()) == 2              # the old record stays, superseded

    assert main(["train", "--arch", "fc-small", "--dataset", str(data), "--epochs", "1", "--seed", "5", "-o",
                 str(model), "--force", "-q"]) == 0
    code, err = _sweep(recipe, out, capsys)
    assert code == 0 and "(base model changed since)" in err
    retrained, = read_points(out)
    summary = json.loads((out / "sweep.json").read_text())
    assert retrained["accuracy_float"] == summary["float_accuracy"]        # the point is the new model's
    assert retrained["inputs"]["base_model"] == io.fingerprint(model) != first["inputs"]["base_model"]


def test_data_changed_under_a_model_is_refused(inputs, tmp_path, capsys):
    data, model, _, recipe = inputs
    with np.load(data) as npz:
        arrays = dict(npz)
    arrays["y_train"] = np.roll(arrays["y_train"], 1)
    np.savez(data, **arrays)
    assert main(["evaluate", str(model), "-q"]) == 3
    err = capsys.readouterr().err
    assert "the data changed since the model was trained on it: D.npz has sha256" in err
    assert main(["sweep", str(recipe), "--out", str(tmp_path / "S"), "-q"]) == 3
    assert "the data changed since the model was trained on it" in capsys.readouterr().err
    assert not (tmp_path / "S").exists()                                  # nothing was left behind
