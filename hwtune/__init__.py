"""hwtune: make trained time-to-first-spike (TTFS) SNNs deployable on neuromorphic chips.

The Python API (hwtune.api) is importable from here: ``hwtune.train``, ``quantize``, ``noise``,
``latency``, ``export``, ``emulate``, ``run_lava``, ``load``, ``save``, ``load_dataset``,
``load_target``, ``evaluate``, ``convert``, ``info``. They are loaded on first use, so ``import hwtune`` (and
``hwtune --help``) stays fast. No submodule of the package bears an API function's name (importing
it would replace the function here: tests/test_api.py checks), hence e.g. hwtune.device_noise.
"""
__version__ = "0.3.0"

API = ("convert", "emulate", "evaluate", "export", "info", "latency", "load", "load_dataset", "load_target",
       "noise", "quantize", "run_lava", "save", "train")
__all__ = ["__version__", *API]


def __getattr__(name: str):
    if name in API:
        from hwtune import api
        return getattr(api, name)
    raise AttributeError(f"module 'hwtune' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(API))
