"""Run by tests/test_distributed.py under torchrun: train a small float64 TTFS net on the digits
with a global batch of 16 split over the ranks, and save this rank's final parameters."""
import sys

import torch

from hwtune.configs import TrainConfig
from hwtune.data import load_dataset, subset
from hwtune.distributed import rank
from hwtune.training import train
from hwtune.ttfs import TTFSNet, preset


def make(arch: str, seed: int = 0):
    torch.manual_seed(seed)
    data = subset(load_dataset("digits"), n_train=320, seed=0)
    net = TTFSNet(preset(arch, (1, 8, 8), 10), (1, 8, 8),
                  dtype=torch.float64)
    return net, data


if __name__ == "__main__":
    net, data = make(sys.argv[2])
    cfg = TrainConfig(epochs=2, lr=2e-3, batch_size=16, dtype="float64", augment="shift-flip")
    train(net, data.train_x.double(), data.train_y, cfg, seed=0)
    torch.save({k: v.detach().clone() for k, v in net.state_dict().items()}, f"{sys.argv[1]}/rank{rank()}.pt")
