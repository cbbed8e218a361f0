"""Data-parallel training (torchrun, gloo on CPU) gives the weights of one process on the same
global batches; every rank agrees; the process group is left on every way out of a command; and
the GPU path runs where a GPU is present."""
import errno
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from hwtune import distributed

HERE = Path(__file__).resolve().parent


def torchrun(*args: str, timeout: float = 1200) -> tuple[int, str]:
    """(exit code, stderr) of ``torchrun --standalone --nproc_per_node 2 ARGS``. Past ``timeout`` it is
    stopped with SIGTERM, which torchrun passes on to its workers: SIGKILL (subprocess.run's timeout)
    left them running, each in its own session, waiting for ever for a peer or a store that was gone."""
    proc = subprocess.Popen([str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(HERE.parent)})
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        _, err = proc.communicate(timeout=120)
        pytest.fail(f"torchrun ran past {timeout} s; stopped with its workers: {err[-2000:]}")
    return proc.returncode, err


@pytest.mark.parametrize("arch", ["fc-small", "vgg-small"])
def test_ddp_equals_one_process(tmp_path, arch):
    code, err = torchrun(str(HERE / "ddp_worker.py"), str(tmp_path), arch)
    assert code == 0, err[-3000:]
    assert "terminate called" not in err, err[-3000:]
    sys.path.insert(0, str(HERE))
    try:
        from ddp_worker import make
    finally:
        sys.path.pop(0)
    from hwtune.configs import TrainConfig
    from hwtune.training import train
    net, data = make(arch)
    train(net, data.train_x.double(), data.train_y,
          TrainConfig(epochs=2, lr=2e-3, batch_size=16, dtype="float64", augment="shift-flip"), seed=0)
    single = net.state_dict()
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    moved = max(float((single[k] - make(arch)[0].state_dict()[k]).abs().max()) for k in single if "synapses" in k)
    assert moved > 1e-2                                           # training did something
    for k in single:
        assert torch.equal(ranks[0][k], ranks[1][k]), k            # every rank holds the same weights
        assert float((ranks[0][k] - single[k]).abs().max()) < 1e-9, k


@pytest.fixture
def one_rank_group(monkeypatch):
    """hwtune joins a real gloo process group (of one rank, on a free loopback port) the way it does
    under torchrun."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(distributed, "active", lambda: True)
    yield
    if dist.is_initialized():        # a failed test must not leave the group to the next one
        dist.destroy_process_group()


def _stop_at_the_first_step():
    raise KeyboardInterrupt           # what raise_if_stopped does after a Ctrl-C


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("way_out, code", [("success", 0), ("error", 3), ("ctrl-c", 130)])
def test_a_command_leaves_the_process_group_on_every_way_out(tmp_path, one_rank_group, monkeypatch, way_out, code):
    from hwtune import io, training
    from hwtune.cli import main
    joined, real_init = [], distributed.init

    def init(device):
        real_init(device)
        joined.append(dist.is_initialized())
    monkeypatch.setattr(distributed, "init", init)
    if way_out == "error":
        monkeypatch.setattr(io, "save", _disk_full)
    elif way_out == "ctrl-c":
        monkeypatch.setattr(training, "raise_if_stopped", _stop_at_the_first_step)
    assert main(["train", "--arch", "fc-small", "--epochs", "0.2", "-o", str(tmp_path / "m"), "-q"]) == code
    assert joined == [True]                       # the command did run in the group
    assert not dist.is_initialized()              # and left it (gloo's threads end with it, not at exit)
    assert (tmp_path / "m").exists() == (way_out == "success")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine: the --device cuda "
                                                           "path runs only where torch sees a GPU")
def test_device_cuda_trains_and_quantizes(tmp_path):
    from hwtune.cli import main
    assert main(["train", "--arch", "fc-small", "--epochs", "2", "--batch-size", "16", "--device", "cuda",
                 "--dtype", "float64", "-o", str(tmp_path / "m"), "-q"]) == 0
    assert main(["quantize", str(tmp_path / "m"), "--bits", "4", "--epochs", "1", "--device", "cuda",
                 "-o", str(tmp_path / "q"), "-q"]) == 0
    assert main(["emulate", str(tmp_path / "q"), "-q"]) == 0       # the emulator agrees with the GPU-tuned model


def test_device_cuda_without_a_gpu_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    from hwtune.cli import main
    assert main(["train", "--arch", "fc-small", "--epochs", "1", "--device", "cuda", "-o", str(tmp_path / "m")]) == 3
    assert "torch sees no CUDA device" in capsys.readouterr().err and not (tmp_path / "m").exists()
