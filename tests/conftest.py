import pytest
import torch

from hwtune.data import load_dataset


@pytest.fixture(scope="session")
def digits():
    """The embedded scikit-learn 8x8 digits (1797 images, 10 classes), u in [0, 1]."""
    return load_dataset("digits")


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield
