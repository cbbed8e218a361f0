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
