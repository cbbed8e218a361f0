"""Lava (lava-nc 0.10.0) backend: a custom TTFS neuron process and its fixed_pt model.

process.py: TTFSNeuron and SpikeRecorder (interfaces); models.py: their fixed_pt models;
build.py: artifact -> processes; run.py: run_lava (all samples in one long run).
Importing this package imports lava.
"""
import multiprocessing

# Lava calls multiprocessing.set_start_method("fork") when imported, which raises once anything
# (a tqdm progress bar, for one) has fixed the start method. Lava needs "fork" (the Linux
# default), so an already fixed "fork" is unset and Lava sets it again.
if multiprocessing.get_start_method(allow_none=True) == "fork":
    multiprocessing.set_start_method(None, force=True)

from hwtune.backends.lava.run import LavaResult, LavaRunError, run_lava  # noqa: E402

__all__ = ["LavaResult", "LavaRunError", "run_lava"]
