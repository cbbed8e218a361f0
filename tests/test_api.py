"""The package namespace: ``hwtune.X`` is the documented API function, also after every API
function has run once (a submodule named like a function would replace it on first import)."""
import pkgutil
import subprocess
import sys
import textwrap

import hwtune

# Every API function called twice in one fresh interpreter; the second round fails if a first call
# imported a submodule that took the function's name (hwtune.noise was hwtune/noise.py).
_TWICE = textwrap.dedent("""
    import sys
    import torch
    import hwtune
    data = hwtune.load_dataset("digits")
    for round in (1, 2):
        target = hwtune.load_target("loihi2")
        net = hwtune.train(data, arch="fc-small", epochs=1, train_samples=64)
        hwtune.evaluate(net, data, samples=32)
        net, _ = hwtune.quantize(net, data, bits=4, steps=8, epochs=0, samples=32)
        net, _ = hwtune.noise(net, data, jitter=0.1, epochs=0, devices=1, samples=32)
        net, _ = hwtune.latency(net, data, steps=4, epochs=0, samples=32)
        hwtune.save(net, sys.argv[1], force=round == 2)
        net = hwtune.load(sys.argv[1])
        artifact = hwtune.export(net, target)
        hwtune.emulate(artifact, data.test_x[:4])
        hwtune.run_lava(artifact, data.test_x[:2])
        relu = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))
        hwtune.convert(relu, data)
        print("round", round, "ok")
""")


def test_no_submodule_bears_an_api_function_name():
    modules = {m.name for m in pkgutil.iter_modules(hwtune.__path__)}
    assert not modules & set(hwtune.API), f"submodules shadowing API functions: {modules & set(hwtune.API)}"


def test_dir_lists_the_api_functions():
    assert set(hwtune.API) <= set(dir(hwtune))


def test_every_api_function_works_twice_in_one_process(tmp_path):
    proc = subprocess.run([sys.executable, "-c", _TWICE, str(tmp_path / "m")], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "round 2 ok" in proc.stdout


def _stripped(doc: dict, *keys: str) -> dict:
    """An artifact.json without the keys of its meta that say when and from where it was made."""
    return {**doc, "meta": {k: v for k, v in doc["meta"].items() if k not in keys}}


def test_the_api_exports_for_loihi2_as_the_cli_does(tmp_path, monkeypatch, capsys):
    """A conv net whose worst-case guards overflow Loihi 2's 16-bit a_in (vgg-small on the digits
    blown up to 16 x 16: a 1024-input dense layer; 6-bit weights, 12 steps): hwtune.export sizes the
    guards on the model's own training data, says so, and gives the artifact ``hwtune export`` gives."""
    import json

    import numpy as np
    import pytest
    import torch

    from hwtune import workflow
    from hwtune.artifact import ArtifactError
    from hwtune.cli import main

    monkeypatch.chdir(tmp_path)
    digits = hwtune.load_dataset("digits")
    big = {f"{k}_{split}": (torch.kron(getattr(digits, f"{split}_x"), torch.ones(2, 2)).numpy() if k == "x" else
                            getattr(digits, f"{split}_y").numpy()) for k in ("x", "y") for split in ("train", "test")}
    np.savez("d16.npz", **big)
    data = hwtune.load_dataset("d16.npz")
    net = hwtune.train(data, arch="vgg-small", epochs=1, lr=2e-3, batch_size=16)
    net, _ = hwtune.quantize(net, data, bits=6, steps=12, epochs=0)
    hwtune.save(net, "m")
    with pytest.raises(ArtifactError, match=r"a_in on step \d+ reaches \d+ > 32767"):
        workflow.export_model(net)          # every guard sized for the worst case: what the API did before
    assert main(["targets", "-q"]) == 0        # -q is that command's: the API below still says what it did
    capsys.readouterr()
    from_path, from_net = hwtune.export("m", "loihi2"), hwtune.export(hwtune.load("m"))
    said = capsys.readouterr().err
    assert said.count(f"guards sized for the potentials of {tmp_path / 'd16.npz'} train[:1000]") == 2, said
    from_path.save(tmp_path / "api")
    from_net.save(tmp_path / "api-net")
    assert main(["export", "m", "-o", "cli", "-q"]) == 0
    cli, api, api_net = (json.loads((tmp_path / d / "artifact.json").read_text()) for d in ("cli", "api", "api-net"))
    assert api["meta"]["lava_guard"]["samples"] == 1000 and api["meta"]["data"]["dataset"] == str(tmp_path / "d16.npz")
    assert _stripped(api, "provenance") == _stripped(cli, "provenance")
    assert _stripped(api_net, "provenance", "source") == _stripped(cli, "provenance", "source")
    for other in ("api", "api-net"):
        with np.load(tmp_path / "cli/arrays.npz") as a, np.load(tmp_path / other / "arrays.npz") as b:
            assert sorted(a.files) == sorted(b.files) and all(np.array_equal(a[k], b[k]) for k in a.files)
