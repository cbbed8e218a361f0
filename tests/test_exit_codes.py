"""Exit codes that tell the truth (issue 31): a reader closing the pipe ends the output quietly, a
write error (a full disk, a file-size limit) is exit 3 with nothing half-written, the user's code
failing (SystemExit included) is the user's error, and every input that used to be ignored or to
end in a traceback is refused by name before any work."""
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hwtune
from hwtune import io
from hwtune.cli import main
from hwtune.configs import DataConfig, ExecutionConfig
from hwtune.errors import ConfigError
from hwtune.recipes import RecipeError, load_recipe

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ["train", "--arch", "fc-small", "--epochs", "0.2", "--train-samples", "64", "-q"]


def _hwtune(*argv, limit_bytes=None, **kwargs):
    def limit():
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, resource.RLIM_INFINITY))
    return subprocess.Popen([sys.executable, "-m", "hwtune.cli", *argv], cwd=ROOT, preexec_fn=limit,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, **kwargs)


def test_a_closed_pipe_ends_the_output_quietly():
    proc = _hwtune("targets", "--json", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()                       # `| head -c 0`: the reader is gone before anything is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and err == ""


def test_stdout_failing_after_the_output_was_written_says_so(tmp_path, monkeypatch, capsys):
    class Full:
        def write(self, text):
            raise OSError(28, "No space left on device")

        def flush(self):
            raise OSError(28, "No space left on device")
    out = tmp_path / "m"
    monkeypatch.setattr(sys, "stdout", Full())
    assert main(TRAIN + ["-o", str(out), "--json"]) == 3
    err = capsys.readouterr().err
    assert "cannot write the result to stdout (No space left on device)" in err
    assert f"{out} was written and is complete" in err and io.load(out)


def test_a_file_size_limit_leaves_nothing_half_written(made, tmp_path):
    """``ulimit -f``: a write fails with EFBIG (Python ignores SIGXFSZ): exit 3, one line, no partial file."""
    proc = _hwtune("export", str(made[2]), "-o", str(tmp_path / "a"), "-q", "--samples", "10", limit_bytes=4096,
                   stderr=subprocess.PIPE, text=True)
    err = proc.communicate(timeout=300)[1]
    assert proc.returncode == 3 and "File too large" in err and "Traceback" not in err, err[-2000:]
    assert sorted(os.listdir(tmp_path)) == []
    sweep = tmp_path / "S"
    shutil.copytree("docs/results/robustness-ci", sweep, ignore=shutil.ignore_patterns("models"))
    before = {p.name: p.read_bytes() for p in sweep.iterdir() if p.is_file()}
    (sweep / "report.md").unlink()
    proc = _hwtune("report", str(sweep), "-q", limit_bytes=20_000, stderr=subprocess.PIPE, text=True)
    err = proc.communicate(timeout=300)[1]
    assert proc.returncode == 3 and "File too large" in err and "Traceback" not in err, err[-2000:]
    after = {p.name: p.read_bytes() for p in sweep.iterdir() if p.is_file() and p.name != ".lock"}
    assert all(after[name] == before[name] for name in after if name.endswith(".png"))   # no truncated plot
    assert not [p for p in sweep.iterdir() if ".tmp-" in p.name]


@pytest.mark.parametrize("where", ["call", "import"])
def test_the_users_code_exiting_is_the_users_error(tmp_path, monkeypatch, capsys, where):
    code = "def make():\n    raise SystemExit(7)\n" if where == "call" else "raise SystemExit(7)\n"
    (tmp_path / "exits.py").write_text(code)
    monkeypatch.chdir(tmp_path)
    assert main(["convert", "exits:make", "--weights", "w.safetensors", "--dataset", "digits", "-q"]) == 3
    assert "SystemExit(7)" in capsys.readouterr().err


@pytest.mark.parametrize("spec", [":f", ".mymod:make", "..x:f", "mod:", "a-b:f"])
def test_a_malformed_module_function_is_a_usage_error(spec, capsys):
    assert main(["convert", spec, "--weights", "w.safetensors", "--dataset", "digits", "-q"]) == 2
    assert "expected MODULE:FUNCTION" in capsys.readouterr().err


def test_a_huge_margin_is_refused_before_any_work(made, capsys):
    with pytest.raises(SystemExit) as e:
        main(["convert", str(made[2]), "--margin", "1e39", "-q"])
    assert e.value.code == 2 and "argument --margin: 1e+39 must be a number in (0, 1000]" in capsys.readouterr().err
    relu = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    with pytest.raises(ValueError, match=r"margin = 1e\+39 must be a number in \(0, 1000\]"):
        hwtune.convert(relu, "digits", margin=1e39)


@pytest.mark.parametrize("flags,message", [
    (["--executor", "ray", "--address", "not an address"], "address = 'not an address' must be auto, HOST:PORT"),
    (["--executor", "ray", "--address", ":6379"], "address = ':6379' must be"),
    (["--workers", "2"], "executor = 'serial' runs the points in this process, where workers"),
    (["--address", "127.0.0.1:6379"], "where address (the ray executor's) would be ignored"),
    (["--executor", "ray", "--address", "127.0.0.1:6379", "--workers", "2"], "give one of them"),
])
def test_execution_flags_that_would_be_ignored_or_fail_late_are_usage_errors(tmp_path, capsys, flags, message):
    assert main(["sweep", "recipes/robustness-ci.yaml", "--out", str(tmp_path / "s"), "-q", *flags]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "s").exists()


def test_data_dir_that_would_be_ignored_is_refused(made, capsys):
    assert main(["evaluate", str(made[2]), "--data-dir", "", "-q"]) == 2
    assert "data_dir = '' must be a directory path" in capsys.readouterr().err
    assert main(["evaluate", str(made[2]), "--dataset", "digits", "--data-dir", "/nonexistent", "-q"]) == 2
    assert "dataset digits reads no data directory" in capsys.readouterr().err
    assert main(["evaluate", str(made[2]), "--data-dir", "/nonexistent", "-q"]) == 3    # the model's digits
    assert "digits reads no data directory" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        DataConfig(dataset="x.npz", data_dir="/data")


def test_a_recipes_empty_out_is_refused(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text('name: r\ndataset: digits\nout: ""\nmodel: {train: {arch: fc-small}}\n')
    with pytest.raises(RecipeError, match="out = '' must be a directory path"):
        load_recipe(recipe)


def _sweep_dir(path: Path) -> Path:
    from hwtune.sweep import sweep_directory
    with sweep_directory(path):
        pass
    return path


def test_nan_accuracies_in_a_points_file_are_named(tmp_path, capsys):
    out = _sweep_dir(tmp_path / "s")
    point = {"id": "p", "bits": 4, "steps": 8, "jitter": 0.0, "weight_mismatch": 0.0, "finetune": False,
             "accuracy_torch": float("nan"), "accuracy_float": 0.9}
    (out / "points.jsonl").write_text(json.dumps(point) + "\n")
    assert main(["report", str(out), "-q"]) == 3
    assert "'accuracy_torch' is nan, not a finite number" in capsys.readouterr().err
    assert not (out / "report.md").exists()


@pytest.mark.parametrize("edit", ["no recovery_ratio", "window_scales null"])
def test_a_study_summary_without_optional_values_is_reported(tmp_path, edit):
    row = {"level": 0.0, "seeds": 1, "plain": 0.9, "plain_std": 0.0, "control": 0.9, "control_std": 0.0,
           "noise-aware": 0.9, "noise-aware_std": 0.0, "plain_loss": 0.0, "control_loss": 0.0, "recovered": 0.0,
           "recovered_std": 0.0, "recovery_ratio": None, "beyond_2_std": False}
    if edit == "no recovery_ratio":
        row.pop("recovery_ratio")
    summary = {"kind": "robustness", "name": "s", "sweep": "x.yaml", "base": "b", "dataset": "digits",
               "target": "loihi2", "quantize": {}, "finetune": {"epochs": 1, "lr": 0.001}, "seeds": [0], "devices": 1,
               "studies": [{"name": "j", "train": {"jitter": 0.1}, "axis": "jitter"}],
               "summaries": {"j": [row, {**row, "level": 0.1}]}, "window_scales": None}
    out = _sweep_dir(tmp_path / "s")
    (out / "sweep.json").write_text(json.dumps(summary))
    (out / "points.jsonl").write_text('{"id": "a"}\n')
    assert main(["report", str(out), "-q"]) == 0
    assert "| 0.1 |" in (out / "report.md").read_text()


def test_api_flags_and_tensors_of_the_wrong_kind_are_refused(made, tmp_path):
    net, artifact = made[0], made[1]
    hwtune.save(net, tmp_path / "m")
    with pytest.raises(TypeError, match="force = 'False' \\(str\\): expected True or False"):
        hwtune.save(net, tmp_path / "m", force="False")
    x = torch.rand(3, 1, 8, 8)
    for bad in (x.to_sparse(), torch.empty(3, 1, 8, 8, device="meta")):
        with pytest.raises(TypeError, match="expected a dense tensor"):
            hwtune.emulate(artifact, bad)


def test_torchrun_batches_that_leave_a_process_no_sample_are_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(ValueError, match="batch_size = 1: under torchrun each of the 2 processes needs at least one"):
        hwtune.train("digits", arch="fc-small", epochs=1, batch_size=1)
    with pytest.raises(ValueError, match="the last batch \\(1437 samples in batches of 4 leave 1\\)"):
        hwtune.train("digits", arch="fc-small", epochs=1, batch_size=4)


def test_execution_settings_are_checked_in_recipes_too():
    with pytest.raises(ConfigError, match="where workers"):
        ExecutionConfig.from_mapping({"workers": 2}, "r.yaml: execution")
