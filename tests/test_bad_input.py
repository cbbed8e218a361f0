"""Bad input is refused before any work with an error naming it (issue 21, issue 18's audit):
API arguments, names that become file names, hostile sweep directories, size bombs, usage conflicts."""
import json
import os
import zipfile

import numpy as np
import pytest
import torch

import hwtune
import hwtune.api
from hwtune import io
from hwtune.artifact import ARRAYS_FILE, JSON_FILE, Artifact, ArtifactError
from hwtune.cli import main
from hwtune.data import DatasetError, read_idx
from hwtune.sweep import sweep_directory


X = torch.rand(3, 1, 8, 8)


def _cases():
    cases = [
        ("load(5)", lambda m: hwtune.load(5), TypeError, "path = 5"),
        ("quantize int net", lambda m: hwtune.quantize(5, "digits"), TypeError, "net = 5"),
        ("quantize path", lambda m: hwtune.quantize("runs/does-not-exist-w4", "digits"), ValueError,
         "not a model directory"),
        ("quantize str data", lambda m: hwtune.quantize(m[0], "notdata"), ValueError, "data = 'notdata'"),
        ("quantize data", lambda m: hwtune.quantize(m[0], 5), TypeError, "data = 5"),
        ("train str", lambda m: hwtune.train(7), TypeError, "data = 7"),
        ("export path", lambda m: hwtune.export("runs/does-not-exist-w4"), ValueError, "not a model directory"),
        ("emulate path", lambda m: hwtune.emulate("runs/x.loihi2", X), ValueError, "no such artifact directory"),
        ("run_lava path", lambda m: hwtune.run_lava("runs/x.loihi2", X), ValueError, "no such artifact directory"),
        ("emulate net", lambda m: hwtune.emulate(m[0], X), TypeError, "expected an Artifact"),
        ("save str", lambda m: hwtune.save("notanet", "runs/never"), TypeError, "net = 'notanet'"),
        ("seed abc", lambda m: hwtune.quantize(m[0], "digits", seed="abc"), ValueError, "seed = 'abc'"),
        ("seed -1", lambda m: hwtune.train("digits", seed=-1), ValueError, "seed = -1"),
        ("samples 0", lambda m: hwtune.evaluate(m[0], "digits", samples=0), ValueError, "samples = 0"),
        ("samples -5", lambda m: hwtune.api.noise(m[0], "digits", samples=-5), ValueError, "samples = -5"),
        ("train_samples -1", lambda m: hwtune.train("digits", train_samples=-1), ValueError, "train_samples = -1"),
        ("empty batch", lambda m: hwtune.emulate(m[1], X[:0]), ValueError, "non-empty batch"),
        ("wrong shape", lambda m: hwtune.emulate(m[1], torch.rand(2, 1, 28, 28)), ValueError, "the net takes"),
        ("device cuda", lambda m: hwtune.quantize(m[0], "digits", device="cuda"), ValueError, "device = 'cuda'"),
        ("relu is a ttfs net", lambda m: hwtune.convert(m[0], "digits"), TypeError, "a TTFSNet is converted already"),
        ("load_dataset seed", lambda m: hwtune.load_dataset("digits", seed=2 ** 40), ValueError,
         "seed = 1099511627776 must be an integer in [0, 4294967295]"),
    ]
    for name, value in (("pixel > 1", 1.5), ("negative pixel", -0.1), ("inf pixel", float("inf")),
                        ("nan pixel", float("nan"))):
        cases.append((name, (lambda v: lambda m: hwtune.emulate(m[1], _with(v)))(value), ValueError, "[0, 1]"))
    return cases


def _with(value):
    x = X.clone()
    x[1, 0, 2, 3] = value
    return x


@pytest.mark.parametrize("name,call,error,message", _cases(), ids=[c[0] for c in _cases()])
def test_api_arguments_are_checked_first(made, name, call, error, message):
    if name == "device cuda" and torch.cuda.is_available():
        pytest.skip("GPU-only: CUDA is present")
    with pytest.raises(error) as e:
        call(made)
    assert message in str(e.value)


def test_api_accepts_paths_and_names(made):
    net, artifact, model_dir, artifact_dir = made
    assert hwtune.export(str(model_dir)).window_steps == artifact.window_steps
    a, b = hwtune.emulate(str(artifact_dir), X), hwtune.emulate(artifact, X.numpy())
    assert a.predictions.tolist() == b.predictions.tolist()
    assert hwtune.evaluate(model_dir, "digits", samples=10)["n"] == 10


# ---- names that become file names ---------------------------------------------------------------

def _study_dir(path, name):
    row = {"level": 0.0, "seeds": 1, "plain": 0.9, "plain_std": 0.0, "control": 0.9, "control_std": 0.0,
           "noise-aware": 0.9, "noise-aware_std": 0.0, "plain_loss": 0.0, "control_loss": 0.0, "recovered": 0.0,
           "recovered_std": 0.0, "recovery_ratio": None, "beyond_2_std": False}
    summary = {"kind": "robustness", "name": "s", "sweep": "x.yaml", "base": "b", "dataset": "digits",
               "target": "loihi2", "quantize": {}, "finetune": {"epochs": 1, "lr": 0.001}, "seeds": [0],
               "devices": 1, "studies": [{"name": name, "train": {"jitter": 0.1}, "axis": "jitter"}],
               "summaries": {name: [row, {**row, "level": 0.1}]}}
    with sweep_directory(path):         # a sweep directory as hwtune makes one (manifest, lock)
        pass
    (path / "sweep.json").write_text(json.dumps(summary))
    (path / "points.jsonl").write_text('{"id": "a"}\n')
    return summary


def test_a_sane_study_report_is_written(tmp_path):
    _study_dir(tmp_path / "s", "jitter run")
    assert main(["report", str(tmp_path / "s")]) == 0
    assert (tmp_path / "s" / "robustness_jitter_run.png").is_file()


@pytest.mark.parametrize("name", ["/../../../../../../tmp/x/escaped", "a/b", "jit/ter", "../..", "a\x00b", ".hidden"])
def test_hostile_study_names_write_nothing(tmp_path, name, capsys):
    out = tmp_path / "deep" / "s"
    _study_dir(out, name)
    before = {p for p in tmp_path.rglob("*")}
    assert main(["report", str(out)]) == 3
    assert {p for p in tmp_path.rglob("*")} == before          # nothing written, inside or outside
    assert not os.path.exists("/tmp/x/escaped.png")
    assert "studies[0]: name" in capsys.readouterr().err


@pytest.mark.parametrize("edit,message", [
    (lambda s: s.pop("name"), "'name' missing"),
    (lambda s: s["summaries"]["j"][0].pop("plain"), "'plain' missing"),
    (lambda s: s.update(studies=[["j"]]), "expected a JSON object"),
    (lambda s: s.update(studies={"name": "j"}), "'studies' missing or not a list"),
])
def test_malformed_study_summary_is_named(tmp_path, edit, message, capsys):
    summary = _study_dir(tmp_path / "s", "j")
    edit(summary)
    (tmp_path / "s" / "sweep.json").write_text(json.dumps(summary))
    assert main(["report", str(tmp_path / "s")]) == 3
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
def test_unreadable_sweep_json_is_named(tmp_path, text, capsys):
    _study_dir(tmp_path / "s", "j")
    (tmp_path / "s" / "sweep.json").write_text(text)
    assert main(["report", str(tmp_path / "s")]) == 3
    assert "sweep.json" in capsys.readouterr().err


def test_grid_point_missing_a_key_is_named(tmp_path, capsys):
    with sweep_directory(tmp_path):
        pass
    (tmp_path / "points.jsonl").write_text(json.dumps({"id": "p", "bits": 4, "jitter": 0.0}) + "\n")
    assert main(["report", str(tmp_path)]) == 3
    assert "point 1 ('p'): steps" in capsys.readouterr().err and not (tmp_path / "report.md").exists()


def test_unsafe_recipe_target_and_layer_names_are_refused(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: ../../escape\ndataset: digits\nmodel: {train: {arch: fc-small}}\n")
    assert main(["run", str(recipe)]) == 3
    assert "name = '../../escape'" in capsys.readouterr().err
    recipe.write_text("name: ok\nname: again\ndataset: digits\nmodel: {train: {arch: fc-small}}\n")
    assert main(["run", str(recipe)]) == 3
    assert "found the key 'name' twice" in capsys.readouterr().err


# ---- files that block, lie about their size or ask too much -------------------------------------

def test_fifo_model_file_is_refused(tmp_path, capsys):
    (tmp_path / "m").mkdir()
    os.mkfifo(tmp_path / "m" / "hwtune.json")
    assert main(["evaluate", str(tmp_path / "m")]) == 3
    assert "not a regular file" in capsys.readouterr().err


def _rewrite(model_dir, tmp_path, edit):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    config = json.loads((copy / io.CONFIG).read_text())
    edit(config)
    (copy / io.CONFIG).write_text(json.dumps(config))
    return copy


def test_model_with_absurd_steps_or_sizes_is_refused(made, tmp_path):
    copy = _rewrite(made[2], tmp_path, lambda c: c["quant"].update(steps=[10 ** 12] * len(c["quant"]["steps"])))
    with pytest.raises(io.ModelFileError, match="quant.steps"):
        io.load(copy)
    def huge(c):      # a 40,000 x 25,000 layer: 10^9 weights, 8 GB as float64, refused before allocation
        c.update(input_shape=[1, 200, 200])
        c["arch"][1].update({"in": 40000, "out": 25000})
        c["arch"][2].update({"in": 25000})
    big = _rewrite(made[2], tmp_path / "b", huge)
    with pytest.raises(io.ModelFileError, match="more than hwtune's limit"):
        io.load(big)


def test_npy_header_bomb_is_refused_before_allocation(made, tmp_path):
    import shutil
    copy = tmp_path / "a"
    shutil.copytree(made[3], copy)
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1, dtype=np.int64))
    header["shape"] = (10 ** 12,)
    with zipfile.ZipFile(copy / ARRAYS_FILE) as z:
        members = {n: z.read(n) for n in z.namelist()}
    import io as _io
    buffer = _io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    members["layer0.weight.npy"] = buffer.getvalue() + b"\0" * 64
    with zipfile.ZipFile(copy / ARRAYS_FILE, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    with pytest.raises(ArtifactError, match="more than hwtune's limit"):
        Artifact.load(copy)


def test_artifact_with_absurd_steps_is_refused(made, tmp_path):
    import shutil
    copy = tmp_path / "a"
    shutil.copytree(made[3], copy)
    doc = json.loads((copy / JSON_FILE).read_text())
    doc["layers"][0]["window_steps"] = 10 ** 12
    (copy / JSON_FILE).write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match=r"window_steps must be an integer in \[1, 65536\]"):
        Artifact.load(copy)


def test_idx_header_claiming_huge_images(tmp_path):
    header = (0x803).to_bytes(4, "big") + b"".join((4194304).to_bytes(4, "big") for _ in range(3))
    (tmp_path / "x.idx").write_bytes(header)
    with pytest.raises(DatasetError, match="the header claims dims"):
        read_idx(tmp_path / "x.idx")


@pytest.mark.parametrize("seed", ["abc", -1, 2 ** 70])
def test_artifact_split_seed_is_checked(made, tmp_path, seed, capsys):
    import shutil
    copy = tmp_path / "a"
    shutil.copytree(made[3], copy)
    doc = json.loads((copy / JSON_FILE).read_text())
    doc["meta"]["dataset"]["split_seed"] = seed
    (copy / JSON_FILE).write_text(json.dumps(doc))
    assert main(["emulate", str(copy)]) == 3
    assert "split seed" in capsys.readouterr().err


def test_artifact_for_another_input_size(made, capsys):
    assert main(["lava-run", str(made[3]), "--dataset", "fashion-mnist", "--samples", "1"]) == 3
    assert "takes inputs of shape (1, 8, 8)" in capsys.readouterr().err


# ---- the CLI: usage conflicts, empty -o, ReLU models, convert ------------------------------------

@pytest.mark.parametrize("argv", [
    ["train", "--twin", "--network", "relu"],
    ["quantize", "MODEL", "--steps", "8", "--time-bits", "3"],
    ["noise", "MODEL", "--eval-only", "-o", "elsewhere"],
])
def test_usage_conflicts_exit_2(made, argv):
    assert main([str(made[2]) if a == "MODEL" else a for a in argv]) == 2


def test_empty_out_is_a_usage_error(made):
    with pytest.raises(SystemExit) as e:
        main(["quantize", str(made[2]), "-o", ""])
    assert e.value.code == 2


def test_passes_refuse_a_relu_model(made):
    net = hwtune.load(made[2])
    net.info["network"] = "relu"
    with pytest.raises(ValueError, match="ReLU net"):
        hwtune.latency(net, "digits", steps=4, epochs=0)


@pytest.mark.parametrize("spec", ["os:getcwd", "json:loads", "os:sep"])
def test_convert_factory_must_return_a_module(tmp_path, spec, capsys):
    assert main(["convert", spec, "--weights", str(tmp_path / "w.safetensors"), "--dataset", "digits",
                 "-o", str(tmp_path / "o")]) == 3
    assert "nn.Module" in capsys.readouterr().err


@pytest.mark.parametrize("module,message", [
    (torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                         torch.nn.Linear(36, 10)), "traced op '_2' (MaxPool2d, module '2'): max pooling"),
    (torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding="same"), torch.nn.ReLU(), torch.nn.Flatten(),
                         torch.nn.Linear(256, 10)), "padding='same' is not supported"),
    (torch.nn.Module(), "torch.fx cannot trace the Module"),
    (torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2)),
     "traced op '_1' (Tanh, module '1'): a Tanh module cannot be converted to TTFS"),
])
def test_convert_refusals_say_what_is_accepted(module, message):
    from hwtune.architectures import ArchError
    from hwtune.ttfs.convert import parse_module
    with pytest.raises(ArchError) as e:
        parse_module(module)
    assert message in str(e.value)
    assert "padding" in message or "a torch module that torch.fx traces" in str(e.value)   # what is accepted


def test_lookalike_target_file_is_refused(tmp_path):
    from hwtune.target import TARGETS_DIR, TargetError, load_target
    text = (TARGETS_DIR / "loihi2.yaml").read_text().replace("membrane_bits: 24", "membrane_bits: 8")
    (tmp_path / "loihi2.yaml").write_text(text)
    with pytest.raises(TargetError, match="state.membrane_bits: 24 vs 8"):
        load_target(str(tmp_path / "loihi2.yaml"))
    (tmp_path / "mine.yaml").write_text(text.replace("name: loihi2", "name: my-chip").replace("aliases: [loihi]",
                                                                                               "aliases: []"))
    assert load_target(str(tmp_path / "mine.yaml")).membrane_bits == 8
