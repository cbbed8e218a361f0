"""Data-parallel training across processes (torch.distributed, launched by ``torchrun``).

Under ``torchrun --standalone --nproc_per_node N -m hwtune.cli train ...`` every process runs the same command with
RANK / WORLD_SIZE in its environment: :func:`init` joins the process group (gloo on CPU, nccl on
GPUs), hwtune.training wraps the model in DistributedDataParallel and gives each rank an equal
slice of every global batch (so the averaged gradient is the single-process gradient of the whole
batch), and only rank 0 writes outputs and talks (:func:`is_main`). Without torchrun (WORLD_SIZE
unset or 1) nothing changes. torch is imported lazily: the CLI imports this module for --help.

The group is left by :func:`shutdown` on every way out: the CLI calls it when a command ends
(success, error, Ctrl-C, before its ``os._exit``), and :func:`init` registers it to run at the
interpreter's exit (a script calling hwtune.train under torchrun). A group left to die with the
process takes gloo's threads with it, which aborts a successful run ("terminate called without an
active exception", SIGABRT).
"""
from __future__ import annotations

import atexit
import os
import sys


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This process's index on its node (its GPU under --device cuda)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def active() -> bool:
    """True in a torchrun launch of more than one process (the process group is joined lazily)."""
    return world_size() > 1


def init(device) -> None:
    """Join the process group once (gloo for CPU, nccl for CUDA), from torchrun's environment."""
    import torch.distributed as dist

    if active() and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        atexit.register(shutdown)


def shutdown() -> None:
    """Leave the process group if this process joined one (its communication threads end here, not
    at exit); does nothing otherwise, and never imports torch."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard(batch):
    """This rank's contiguous slice of a global batch tensor (equal slices when the batch divides evenly)."""
    if not active():
        return batch
    return batch.tensor_split(world_size())[rank()]


def all_max(value: float, device) -> float:
    """The largest ``value`` over the ranks (the adaptive window rule must agree on every rank)."""
    if not active():
        return value
    import torch
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t)
