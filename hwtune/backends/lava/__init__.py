"""Lava (lava-nc 0.10.0) backend: the artifact built from Lava's stock Loihi 2 processes.

build.py: artifact -> LIFReset, Dense/Sparse and io processes, and the register checks (imports
lava only to build); run.py: run_lava (all samples in one long run, in Lava's bit-accurate
simulator or, with lava-loihi, on a Loihi 2 board). Importing this package imports lava.
"""
import multiprocessing

# Lava calls multiprocessing.set_start_method("fork") when imported, which raises once anything
# (a tqdm progress bar, for one) has fixed the start method. Lava needs "fork" (the Linux
# default), so an already fixed "fork" is unset and Lava sets it again.
if multiprocessing.get_start_method(allow_none=True) == "fork":
    multiprocessing.set_start_method(None, force=True)

from hwtune.backends.lava.run import LavaResult, LavaRunError, run_lava  # noqa: E402

__all__ = ["LavaResult", "LavaRunError", "run_lava"]
