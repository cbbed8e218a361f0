import pytest
import torch

from hwtune.data import load_dataset


@pytest.fixture(scope="session")
def digits():
    """The embedded scikit-learn 8x8 digits (1797 images, 10 classes), u in [0, 1]."""
    return load_dataset("digits")


@pytest.fixture(scope="session")
def ci_sweep(tmp_path_factory):
    """(exit code, directory) of the CI sweep (recipes/robustness-ci.yaml) run serially, once per
    session: tests/test_sweep.py checks it, tests/test_executors.py compares other executors with it."""
    from hwtune.cli import main

    out = tmp_path_factory.mktemp("sweep") / "ci"
    code = main(["sweep", "recipes/robustness-ci.yaml", "--out", str(out)])
    return code, out


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield
