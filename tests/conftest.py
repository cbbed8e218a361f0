# No pinning of the CPU's vector kernels: tests/test_results.py checks float-trained numbers within the
# spread measured across kernels and threads (docs/results/robustness-ci/spread.json) and the integer
# ground truth bit for bit, so the suite holds on any x86 CPU as it finds it (AVX2, AVX-512, AMX).
import pytest
import torch

from hwtune.data import load_dataset


@pytest.fixture(scope="session")
def digits():
    """The embedded scikit-learn 8x8 digits (1797 images, 10 classes), u in [0, 1]."""
    return load_dataset("digits")


@pytest.fixture(scope="session")
def made(tmp_path_factory):
    """(net, artifact, model dir, artifact dir) of a tiny 4-bit fc-small on digits, made once per session."""
    import hwtune

    root = tmp_path_factory.mktemp("made")
    data = hwtune.load_dataset("digits")
    net = hwtune.train(data, arch="fc-small", epochs=0.1, batch_size=64)
    net, _ = hwtune.quantize(net, data, bits=4, steps=8, epochs=0)
    hwtune.save(net, root / "m")
    artifact = hwtune.export(net)
    artifact.save(root / "a")
    return net, artifact, root / "m", root / "a"


@pytest.fixture(scope="session")
def ci_sweep(tmp_path_factory):
    """(exit code, directory) of the CI sweep (recipes/robustness-ci.yaml) run serially, once per
    test run: tests/test_sweep.py checks it, tests/test_executors.py compares other executors with it.
    Under pytest-xdist the first worker that needs it runs it in the run's shared temp dir while the
    others wait on a file lock, then all read that directory (its tests copy it before changing it)."""
    import fcntl
    import os

    from hwtune.cli import main

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent                       # basetemp/popen-gwN -> basetemp: shared by the workers
    out, code_file = root / "ci-sweep" / "ci", root / "ci-sweep.code"
    with open(root / "ci-sweep.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not code_file.exists():
            code_file.write_text(str(main(["sweep", "recipes/robustness-ci.yaml", "--out", str(out)])))
    return int(code_file.read_text()), out


@pytest.fixture(scope="session")
def digits_net(digits):
    """A 64-32-16-10 TTFS net trained on the digits for 8 epochs (float32), once per session; tests
    pass it to passes (which change copies) and never change it themselves."""
    from hwtune.training import TrainConfig, train
    from hwtune.ttfs import TTFSNet, fc

    torch.manual_seed(0)
    net = TTFSNet(fc((1, 8, 8), [32, 16], 10), (1, 8, 8))
    train(net, digits.train_x, digits.train_y, TrainConfig(epochs=8, lr=3e-3, batch_size=32))
    net.info = {"dataset": digits.meta}
    return net


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


#: The test files that take longest (minutes: Ray sweeps, Lava runs, the README's blocks), run first so that
#: under pytest-xdist's --dist loadfile no worker is left with one of them while the other idles at the end.
LONGEST_FIRST = ("test_executors.py", "test_lava.py", "test_readme.py", "test_signals.py", "test_progress.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))     # stable: the rest keep their order
