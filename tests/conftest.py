import os

# The CPU's vector instructions change float32 results: oneDNN, MKL and ATen pick AVX-512 or AVX2
# kernels by CPU, whose sums round differently, and a trained net then differs by a test sample or
# two. tests/test_results.py compares a rerun with committed numbers, so the suite runs every x86
# machine on AVX2 kernels (set before torch loads; subprocesses inherit it; provenance records it).
for _var, _value in (("ATEN_CPU_CAPABILITY", "avx2"), ("DNNL_MAX_CPU_ISA", "AVX2"), ("MKL_ENABLE_INSTRUCTIONS", "AVX2")):
    os.environ.setdefault(_var, _value)

import pytest  # noqa: E402
import torch  # noqa: E402

from hwtune.data import load_dataset  # noqa: E402


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
