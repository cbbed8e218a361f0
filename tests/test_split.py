"""The digits train/test split belongs to the model: verbs given a model use the split it was
trained on; --seed (batches, noise) never moves it; another split only by --split-seed, and never
for fine-tuning (that would train on the model's test images)."""
import json

import pytest

from hwtune import io
from hwtune.cli import main


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("split") / "fc"
    assert main(["train", "--arch", "fc-small", "--epochs", "3", "--batch-size", "32", "--lr", "3e-3", "--seed", "5",
                 "-o", str(path), "-q"]) == 0
    return path


def evaluate(capsys, *args) -> dict:
    assert main(["evaluate", *map(str, args), "--json", "-q"]) == 0
    return json.loads(capsys.readouterr().out)


def test_seed_never_moves_the_split(model, capsys):
    assert io.load(model).info["dataset"]["split_seed"] == 0          # --seed 5 trained on split 0
    plain = evaluate(capsys, model)
    assert evaluate(capsys, model, "--seed", "1") == plain
    assert evaluate(capsys, model, "--seed", "3") == plain


def test_another_split_only_by_flag_and_never_to_fine_tune(model, tmp_path, capsys):
    other = evaluate(capsys, model, "--split-seed", "1")
    assert other["n"] == 360 and other != evaluate(capsys, model)       # the flag does move it
    assert main(["quantize", str(model), "--split-seed", "1", "--epochs", "1", "-o", str(tmp_path / "q"), "-q"]) == 3
    assert "would train on its test images" in capsys.readouterr().err and not (tmp_path / "q").exists()
    assert main(["quantize", str(model), "--seed", "3", "--epochs", "0", "-o", str(tmp_path / "q"), "-q"]) == 0


def test_a_split_seed_scikit_learn_cannot_take_is_refused_before_any_work(model, capsys):
    """The digits split is drawn by scikit-learn, whose seeds are 32-bit: 2**32 is refused by the flag."""
    with pytest.raises(SystemExit) as e:
        main(["evaluate", str(model), "--split-seed", str(2 ** 32), "-q"])
    assert e.value.code == 2 and "4294967296 must be an integer in [0, 4294967295]" in capsys.readouterr().err
    assert evaluate(capsys, model, "--split-seed", str(2 ** 32 - 1))["n"] == 360


def test_a_model_from_before_the_recorded_split_keeps_its_training_seed(model, tmp_path, capsys):
    """hwtune <= 0.2 drew the split with the training seed and did not record it."""
    import shutil
    old = tmp_path / "old"
    shutil.copytree(model, old)
    config = json.loads((old / io.CONFIG).read_text())
    del config["dataset"]["split_seed"]
    config["provenance"]["seed"] = 1
    (old / io.CONFIG).write_text(json.dumps(config))
    assert evaluate(capsys, old) == evaluate(capsys, model, "--split-seed", "1")
