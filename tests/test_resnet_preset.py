"""The resnet-small preset (a stem, a block with an identity skip, one with a stride-2 1x1 projection,
global average pooling, a dense read-out) through every verb on digits, with tiny epochs: train,
quantize, noise, latency, export (emulator and loihi2: the resource map names each layer's inputs),
emulate, lava-run, a one-point sweep and its report. One model is trained and quantized per module."""
import json
import os

import pytest
import yaml

from hwtune import io
from hwtune.artifact import Artifact
from hwtune.cli import main

#: resnet-small's joins and what each reads (hwtune.architectures.resnet): the artifact's edges.
JOINS = {"stage1.block1": ["stage1.block1.conv1", "stem"],
         "stage2.block1": ["stage2.block1.conv1", "stage1.block1"]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A directory holding runs/r (resnet-small trained two epochs on 1000 digits) and runs/r4 (quantized
    for loihi2 at 4 bits); tests chdir into it."""
    root = tmp_path_factory.mktemp("resnet")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert main(["train", "--arch", "resnet-small", "--epochs", "2", "--train-samples", "1000", "--batch-size",
                     "16", "--lr", "1e-2", "-o", "runs/r", "-q"]) == 0
        assert main(["quantize", "runs/r", "--bits", "4", "--steps", "8", "--epochs", "0.2", "--train-samples", "600",
                     "-o", "runs/r4", "-q"]) == 0
    finally:
        os.chdir(cwd)
    return root


def run_json(capsys, argv: list) -> dict:
    """The JSON a verb prints on stdout (exit code 0 asserted)."""
    capsys.readouterr()
    assert main(argv + ["--json", "-q"]) == 0, argv
    return json.loads(capsys.readouterr().out)


def test_train_and_quantize_keep_the_graph(runs):
    trained, quantized = io.load(runs / "runs/r"), io.load(runs / "runs/r4")
    assert trained.arch == quantized.arch
    adds = {d["name"]: d["inputs"] for d in quantized.arch if d["kind"] == "add"}
    assert adds == {"stage1.block1": ["stage1.block1.conv2", "stem"],
                    "stage2.block1": ["stage2.block1.conv2", "stage2.block1.proj"]}
    assert [d["kind"] for d in quantized.arch[-3:]] == ["globalpool", "flatten", "dense"]
    assert quantized.info["target"]["name"] == "loihi2" and quantized.info["history"][-1]["pass"] == "quantize"
    assert quantized.info["history"][-1]["accuracy_after"] > 0.3                 # it learned (10 classes)


def test_noise_and_latency_passes(runs, monkeypatch, capsys):
    monkeypatch.chdir(runs)
    noisy = run_json(capsys, ["noise", "runs/r4", "--jitter", "0.1", "--epochs", "0.1", "--train-samples", "300",
                              "-o", "runs/rn"])
    assert noisy["pass"] == "noise" and noisy["out"] == "runs/rn"
    short = run_json(capsys, ["latency", "runs/rn", "--steps", "6", "--epochs", "0", "-o", "runs/rl"])
    assert short["pass"] == "latency"
    after = io.load(runs / "runs/rl")
    assert [h["pass"] for h in after.info["history"]][-3:] == ["quantize", "noise", "latency"]
    assert after.arch == io.load(runs / "runs/r4").arch


def test_export_for_loihi2_maps_the_graph(runs, monkeypatch, capsys):
    monkeypatch.chdir(runs)
    record = run_json(capsys, ["export", "runs/r4", "--samples", "50", "-o", "runs/r4.loihi2"])
    rows = {m["name"]: m["inputs"] for m in record["resources"]["layers"]}
    for join, inputs in JOINS.items():
        assert rows[join] == inputs
    assert rows["stem"] == ["input"] and rows["fc"] == ["stage2.block1"]
    assert rows["stage2.block1.conv1"] == ["stage1.block1"]
    assert Artifact.load(runs / "runs/r4.loihi2").edges() == [tuple(rows[n]) for n in rows]
    assert main(["export", "runs/r4", "--samples", "50", "-o", "runs/again", "-q"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert any(line.startswith("stage2.block1 ") and line.endswith("  stage2.block1.conv1, stage1.block1")
               for line in table), table


def test_export_for_the_emulator_keeps_the_edges(runs, monkeypatch, capsys):
    monkeypatch.chdir(runs)
    assert main(["quantize", "runs/r", "--target", "emulator", "--bits", "4", "--steps", "8", "--epochs", "0",
                 "-o", "runs/re", "-q"]) == 0
    record = run_json(capsys, ["export", "runs/re", "--target", "emulator", "-o", "runs/re.emu"])
    assert record["target"] == "emulator"
    edges = dict(zip((layer.name for layer in Artifact.load(runs / "runs/re.emu").layers),
                     Artifact.load(runs / "runs/re.emu").edges()))
    assert {join: list(edges[join]) for join in JOINS} == JOINS


def test_emulate_agrees_with_torch_everywhere(runs, monkeypatch, capsys):
    monkeypatch.chdir(runs)
    result = run_json(capsys, ["emulate", "runs/r4"])
    assert result["torch_emulator_agreement"] == 1.0 and result["n"] == 360
    assert result["torch_accuracy"] == result["accuracy"]


def test_lava_runs_the_resnet_spike_for_spike(runs, monkeypatch, capsys):
    pytest.importorskip("lava")
    monkeypatch.chdir(runs)
    result = run_json(capsys, ["lava-run", "runs/r4", "--samples", "2"])
    assert result["identical_spike_for_spike"] == result["samples"] == 2


def test_a_one_point_sweep_and_its_report(runs, monkeypatch, capsys):
    monkeypatch.chdir(runs)
    recipe = {"name": "resnet-one", "seed": 0, "dataset": "digits", "target": "loihi2", "out": "runs/sweep",
              "model": {"load": "runs/r"}, "grid": {"bits": [4], "steps": [8], "jitter": [0.0], "finetune": [False]}}
    (runs / "one.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["sweep", "one.yaml", "-q"]) == 0
    points = [json.loads(line) for line in (runs / "runs/sweep/points.jsonl").read_text().splitlines()]
    assert len(points) == 1 and points[0]["torch_emulator_agreement"] == 1.0
    assert points[0]["accuracy_emulator"] == points[0]["accuracy_torch"]
    assert main(["report", "runs/sweep", "-q"]) == 0
    rows = [line for line in (runs / "runs/sweep/report.md").read_text().splitlines() if line.startswith("| 4 | 8 |")]
    assert len(rows) == 1, rows
