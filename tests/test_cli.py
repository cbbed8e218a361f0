"""The CLI: one grammar on every verb, help that tells units and true defaults, targets that stick,
outputs that never destroy someone's files, documented exit codes, JSON on stdout."""
import json
import os
import runpy
import subprocess
import sys

import pytest

from hwtune import io
from hwtune.artifact import Artifact
from hwtune.cli import VERBS, build_parser, main
from hwtune.configs import QuantizeConfig, TrainConfig

HWTUNE = [sys.executable, "-m", "hwtune.cli"]


def subparsers():
    return next(a for a in build_parser()._actions if a.dest == "command").choices


@pytest.mark.parametrize("verb", list(VERBS))
def test_help_has_example_and_exit_codes(verb, capsys):
    with pytest.raises(SystemExit) as e:
        main([verb, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "example:\n  hwtune " + verb in out and "130  interrupted" in out


def test_every_flag_has_help_and_settings_show_their_true_default():
    for verb, parser in subparsers().items():
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                assert action.help and len(action.help) > 10, f"{verb} {action.option_strings}: no help"
    def flat(verb):
        return " ".join(subparsers()[verb].format_help().split())
    text = flat("train")
    assert "(default: 0.0005)" in text and "(default: 8)" in text and "(default: the model's)" in text
    assert "--arch {fc,fc-small,vgg,vgg-small,resnet,resnet-small}" in text and "784-340-10" not in text  # no wrong default shape
    quant = flat("quantize")
    assert "[bits] (default: 8)" in quant and "--window-quantile" in quant and "--quantile" not in quant
    noise = flat("noise")
    assert "--jitter X" in noise and "fraction of the window" in noise


def test_readme_command_reference_agrees_with_help():
    """The README's command reference is generated from the parser (scripts/make_cli_reference.py)."""
    make = runpy.run_path("scripts/make_cli_reference.py")
    readme = open("README.md").read()
    assert make["reference"]() in readme, "README command reference is stale: run scripts/make_cli_reference.py"


def test_one_grammar_on_every_verb():
    for verb, parser in subparsers().items():
        positional = [a.dest for a in parser._actions if not a.option_strings]
        flags = {s for a in parser._actions for s in a.option_strings}
        assert "--json" in flags and "--quiet" in flags, verb
        assert "--in" not in flags and "--eval-samples" not in flags, verb
        if verb in ("train", "convert", "quantize", "noise", "latency", "export"):
            assert {"-o", "--out", "--force"} <= flags, verb
        if verb not in ("train", "targets"):
            assert positional, f"{verb}: the input is positional"
        if verb in ("train", "convert", "evaluate", "quantize", "noise", "latency", "emulate", "lava-run"):
            assert "--seed" in flags, verb


def test_version_and_fast_help_without_torch():
    out = subprocess.run(HWTUNE + ["--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("hwtune 0.")
    probe = "import sys; from hwtune.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert res.stdout.strip() == "False" and res.stderr == ""   # --help imports no torch, warns nothing


def test_usage_errors_exit_2_and_name_the_flag(capsys):
    for argv, message in ((["train", "--epochs", "nan"], "--epochs: nan must be a number"),
                          (["train", "--epochs", "-1"], "--epochs: -1.0 must be a number"),
                          (["train", "--batch-size", "0"], "--batch-size: 0 must be an integer in [1"),
                          (["train", "--epochs", "inf"], "--epochs"),
                          (["quantize", "m", "--bits", "4.5"], "--bits: '4.5' is not an integer"),
                          (["noise", "m", "--jitter", "nan"], "--jitter"),
                          (["lava-run", "m", "--samples", "0"], "--samples: 0 must be >= 1"),
                          (["evaluate", "m", "--samples", "-5"], "--samples"),
                          (["train", "--seed", "1.7"], "--seed: '1.7' is not an integer")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2, argv
        assert message in capsys.readouterr().err, argv


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """train -> quantize (loihi2) as the README card types them, outputs at their defaults."""
    root = tmp_path_factory.mktemp("chain")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert main(["train", "--arch", "fc-small", "--epochs", "5", "--batch-size", "16", "--lr", "2e-3",
                     "-o", "runs/fc2", "-q"]) == 0
        assert main(["quantize", "runs/fc2", "--bits", "4", "--steps", "10", "--epochs", "1", "--lr", "1e-3",
                     "-q"]) == 0
    finally:
        os.chdir(cwd)
    return root


def test_card_commands_run_with_only_a_model_path(chain, monkeypatch, capsys):
    monkeypatch.chdir(chain)
    assert (chain / "runs/fc2-w4" / io.CONFIG).exists()            # quantize's default --out
    assert main(["export", "runs/fc2-w4", "--target", "loihi", "-q"]) == 0
    art = Artifact.load(chain / "runs/fc2-w4.loihi2")
    assert art.weight_bits == 4 and art.window_steps == [16, 10]   # input window: the target default
    assert art.meta["target"]["name"] == "loihi2"


def test_target_sticks_through_every_pass(chain, monkeypatch, capsys):
    monkeypatch.chdir(chain)
    assert main(["noise", "runs/fc2-w4", "--jitter", "0.1", "--epochs", "0.2", "-q"]) == 0
    assert main(["latency", "runs/fc2-w4-noise", "--steps", "8", "--epochs", "0", "-q"]) == 0
    for name in ("fc2-w4", "fc2-w4-noise", "fc2-w4-noise-t8"):
        info = json.loads((chain / "runs" / name / io.CONFIG).read_text())
        assert info["target"]["name"] == "loihi2", name
        assert all(h["target"] == "loihi2" for h in info["history"]), name
    capsys.readouterr()
    # another target on a pass that does not re-quantize: refused, naming both and the differences
    assert main(["noise", "runs/fc2-w4", "--jitter", "0.1", "--target", "emulator", "-o", "x"]) == 3
    err = capsys.readouterr().err
    assert "prepared for target 'loihi2', not 'emulator'" in err and "state.membrane_bits: 24 vs 32" in err
    assert "hwtune quantize MODEL --target emulator" in err and not (chain / "x").exists()
    assert main(["export", "runs/fc2-w4", "--target", "emulator"]) == 3
    assert "weights.bias_bits: 13 vs 16" in capsys.readouterr().err
    # changing it is explicit and re-quantizes
    assert main(["quantize", "runs/fc2-w4", "--target", "emulator", "--bits", "8", "--epochs", "0", "-o",
                 "runs/emu", "-q"]) == 0
    assert json.loads((chain / "runs/emu" / io.CONFIG).read_text())["target"]["name"] == "emulator"


def test_look_alike_target_file_is_caught(chain, monkeypatch, capsys, tmp_path):
    import yaml
    from hwtune.target import load_target
    monkeypatch.chdir(chain)
    data = load_target("loihi2").to_dict()
    data["weights"]["exp_range"] = [-4, 4]
    fake = tmp_path / "loihi2.yaml"
    fake.write_text(yaml.safe_dump(data))
    assert main(["export", "runs/fc2-w4", "--target", str(fake), "-o", str(tmp_path / "a")]) == 3
    assert "weights.exp_range: [-8, 7] vs [-4, 4]" in capsys.readouterr().err


def test_json_on_stdout_text_on_stderr(chain, monkeypatch, capsys):
    monkeypatch.chdir(chain)
    assert main(["evaluate", "runs/fc2-w4", "--json", "--samples", "50"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["n"] == 50 and result["latency_steps"] == 16 + 10 + 2 and "accuracy" in err and "%" in err
    assert main(["emulate", "runs/fc2-w4", "--json", "-q"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["torch_emulator_agreement"] == 1.0 and err == ""


def test_outputs_never_replace_inputs_or_someones_files(chain, monkeypatch, capsys):
    monkeypatch.chdir(chain)
    (chain / "mine").mkdir()
    (chain / "mine" / "thesis.tex").write_text("years of work")
    (chain / "afile").write_text("x")
    for argv, message in (
            (["quantize", "runs/fc2", "-o", "runs/fc2"], "is the input"),
            (["quantize", "runs/fc2", "-o", "runs/fc2/inner"], "lies inside the input"),
            (["quantize", "runs/fc2", "-o", "runs", "--force"], "holds the input"),
            (["quantize", "runs/fc2", "-o", "mine"], "holding files that are not an hwtune model"),
            (["quantize", "runs/fc2", "-o", "mine", "--force"], "holding files that are not an hwtune model"),
            (["train", "-o", "mine", "--force"], "holding files that are not an hwtune model"),
            (["train", "-o", "afile"], "exists and is a file"),
            (["train", "-o", "afile/sub"], "is a file, not a directory"),
            (["train", "-o", "."], "working directory"),
            (["quantize", "runs/fc2", "--bits", "4"], "pass --force to replace it"),
            (["export", "runs/fc2-w4", "-o", "mine"], "not an hwtune artifact")):
        assert main(argv + ["-q"]) == 3, argv
        assert message in capsys.readouterr().err, argv
    assert (chain / "mine" / "thesis.tex").read_text() == "years of work"
    assert (chain / "afile").read_text() == "x" and (chain / "runs/fc2" / io.CONFIG).exists()


def test_force_replaces_an_hwtune_output_and_outputs_are_readable(chain, monkeypatch):
    monkeypatch.chdir(chain)
    before = (chain / "runs/fc2-w4" / io.CONFIG).read_text()
    assert main(["quantize", "runs/fc2", "--bits", "4", "--steps", "10", "--epochs", "0", "--force", "-q"]) == 0
    assert (chain / "runs/fc2-w4" / io.CONFIG).read_text() != before
    mask = os.umask(0)
    os.umask(mask)
    assert (chain / "runs/fc2-w4").stat().st_mode & 0o777 == 0o755 & ~mask
    for f in (chain / "runs/fc2-w4").iterdir():
        assert f.stat().st_mode & 0o777 == 0o644 & ~mask, f
    assert not [p for p in (chain / "runs").iterdir() if p.name.startswith(".")]   # no leftovers


def test_symlink_out_is_refused_and_leaves_nothing(chain, monkeypatch, capsys):
    monkeypatch.chdir(chain)
    (chain / "real").mkdir()
    os.symlink(chain / "real", chain / "link")
    assert main(["quantize", "runs/fc2", "-o", "link", "-q"]) == 3
    assert "symbolic link" in capsys.readouterr().err
    assert sorted(p.name for p in chain.iterdir() if p.name.startswith(".")) == []


def test_eval_only_writes_nothing(chain, monkeypatch, capsys):
    monkeypatch.chdir(chain)
    before = sorted(p.name for p in (chain / "runs").iterdir())
    assert main(["noise", "runs/fc2-w4", "--jitter", "0.2", "--eval-only", "--json", "-q"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["out"] is None and record["noisy_accuracy_before"] <= record["accuracy_before"]
    assert sorted(p.name for p in (chain / "runs").iterdir()) == before
    assert main(["noise", "runs/fc2-w4", "--jitter", "0.2", "--eval-only", "-o", "x"]) == 2   # usage
    assert "writes no model" in capsys.readouterr().err


def test_data_that_does_not_fit_the_model_is_named(chain, monkeypatch, capsys):
    monkeypatch.chdir(chain)
    assert main(["evaluate", "runs/fc2", "--dataset", "fashion-mnist"]) == 3
    assert "this model was trained on digits (samples of shape (1, 8, 8))" in capsys.readouterr().err


def test_bad_model_is_one_clear_line(tmp_path, capsys):
    assert main(["quantize", str(tmp_path / "nope"), "-o", str(tmp_path / "o"), "--bits", "4"]) == 3
    err = capsys.readouterr().err
    assert "nope" in err and "not a model directory" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_bugs_keep_their_traceback(monkeypatch):
    import hwtune.cli as cli
    monkeypatch.setitem(cli._COMMANDS, "targets", lambda args: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        main(["targets"])


def test_targets_lists_aliases(capsys):
    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    assert "loihi2" in out and "loihi " in out and "lava" in out


def test_relu_train_then_convert_keeps_every_prediction(tmp_path, capsys):
    relu, ttfs = tmp_path / "relu", tmp_path / "ttfs"
    assert main(["train", "--network", "relu", "--arch", "fc-small", "--epochs", "3", "--batch-size", "16",
                 "--lr", "2e-3", "-o", str(relu), "-q"]) == 0
    assert main(["convert", str(relu), "-o", str(ttfs)]) == 0
    assert "prediction agreement 100.00 %" in capsys.readouterr().out
    assert main(["convert", str(ttfs), "-o", str(tmp_path / "again")]) == 3
    assert "convert expects a ReLU model" in capsys.readouterr().err


def test_convert_a_users_torch_model(tmp_path, monkeypatch, capsys):
    """module:function returning an nn.Sequential (with batch norm) plus a safetensors state dict."""
    import torch
    from safetensors.torch import save_file
    (tmp_path / "usernet.py").write_text(
        "import torch.nn as nn\n"
        "def make():\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, 20), nn.BatchNorm1d(20), nn.ReLU(), nn.Linear(20, 10))\n")
    monkeypatch.chdir(tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        import usernet
        model = usernet.make()
    finally:
        sys.path.pop(0)
    torch.manual_seed(0)
    with torch.no_grad():
        model[2].running_mean.uniform_(-0.2, 0.2)
        model[2].running_var.uniform_(0.5, 2)
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    assert main(["convert", "usernet:make", "--weights", "w.safetensors", "--dataset", "digits"]) == 0
    assert "prediction agreement 100.00 %" in capsys.readouterr().out
    assert (tmp_path / "runs/make-ttfs" / io.CONFIG).exists()
    assert main(["convert", "usernet:make", "--dataset", "digits", "-o", "x"]) == 2     # usage
    assert "needs --weights" in capsys.readouterr().err
    assert main(["convert", "usernet:nothing", "--weights", "w.safetensors", "--dataset", "digits", "-o", "y"]) == 3
    assert "cannot import it" in capsys.readouterr().err


def test_settings_drive_the_cli():
    """Every TrainConfig / QuantizeConfig setting that has a flag is on its verb, with its rule."""
    for verb, cfg in (("train", TrainConfig), ("quantize", QuantizeConfig)):
        dests = {a.dest for a in subparsers()[verb]._actions}
        shown = [n for n in cfg.field_names() if cfg.__dataclass_fields__[n].metadata["rule"].flag != ""]
        assert set(shown) <= dests, verb


def test_piped_output_has_no_progress_frames(tmp_path):
    """Progress bars only on a terminal: a log file gets the result lines and nothing else."""
    res = subprocess.run(HWTUNE + ["train", "--arch", "fc-small", "--epochs", "2", "--batch-size", "16", "-o",
                                   str(tmp_path / "m")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "\r" not in res.stderr and "\x1b[" not in res.stderr and "\r" not in res.stdout
    assert res.stdout.startswith("train (ttfs, fc-small on digits): accuracy ") and " %" in res.stdout


def test_bare_hwtune_lists_the_verbs(capsys):
    from hwtune.cli import VERBS
    assert main([]) == 2
    err = capsys.readouterr().err
    assert all(f"    {verb}" in err for verb in VERBS), err
