"""The CLI: every verb documents an example, and bad input gives one clear line, not a traceback."""
import json

import numpy as np
import pytest

from hwtune.artifact import Artifact
from hwtune.cli import build_parser, main

VERBS = ["train", "convert", "evaluate", "quantize", "noise", "latency", "export", "emulate", "lava-run", "run", "sweep", "report",
         "targets"]


@pytest.mark.parametrize("verb", VERBS)
def test_help_has_example(verb, capsys):
    with pytest.raises(SystemExit) as e:
        main([verb, "--help"])
    assert e.value.code == 0
    assert "example:\n  hwtune " + verb in capsys.readouterr().out


def test_every_verb_is_listed():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(VERBS) <= set(sub.choices)


def test_bad_input_is_one_clear_line(tmp_path, capsys):
    assert main(["quantize", "--in", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--bits", "4"]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "not a model directory" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_train_quantize_export_emulate_chain(tmp_path, capsys):
    m, q, a = tmp_path / "m", tmp_path / "q", tmp_path / "a"
    assert main(["train", "--arch", "fc-small", "--dataset", "digits", "--epochs", "5", "--batch-size", "16",
                 "--lr", "2e-3", "--out", str(m)]) == 0
    assert main(["quantize", "--in", str(m), "--out", str(q), "--bits", "3", "--steps", "10", "--target", "loihi2",
                 "--epochs", "1", "--lr", "1e-3"]) == 0
    assert main(["quantize", "--in", str(m), "--out", str(tmp_path / "x"), "--bits", "9", "--target", "loihi2"]) == 2
    assert "9-bit weights: target loihi2 holds 2..8" in capsys.readouterr().err
    assert main(["export", str(q), "--target", "loihi", "--out", str(a)]) == 0
    art = Artifact.load(a)
    assert art.weight_bits == 3 and art.window_steps == [16, 10]  # input window: the target default
    assert all(np.abs(layer.weight).max() <= 4 for layer in art.layers)
    capsys.readouterr()
    assert main(["emulate", str(q), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["torch_emulator_agreement"] == 1.0 and result["latency_steps"] == 16 + 10 + 2


def test_relu_train_then_convert_keeps_every_prediction(tmp_path, capsys):
    relu, ttfs = tmp_path / "relu", tmp_path / "ttfs"
    assert main(["train", "--network", "relu", "--arch", "fc-small", "--dataset", "digits", "--epochs", "3",
                 "--batch-size", "16", "--lr", "2e-3", "--out", str(relu)]) == 0
    assert main(["convert", "--in", str(relu), "--out", str(ttfs)]) == 0
    assert "prediction agreement 100.00 %" in capsys.readouterr().out
    assert main(["convert", "--in", str(ttfs), "--out", str(tmp_path / "again")]) == 2
    assert "convert expects a ReLU model" in capsys.readouterr().err
