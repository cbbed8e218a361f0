"""Training-speed ratio: TTFS epoch time / ReLU epoch time on the same net, measured in one run.

The two are timed interleaved (TTFS, ReLU, TTFS, ReLU, ...) on identical batches so that machine
load affects both alike; the ratio of medians is reported. Output: a table on stdout and
``bench/train-ARCH.json`` (with versions, config and every timing).

    python scripts/bench_train.py --dataset fashion-mnist --samples 12000 --repeats 5          # FC2, batch 8
    python scripts/bench_train.py --arch vgg --batch-size 64 --samples 6400 --repeats 3      # the VGG
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from hwtune import progress
from hwtune.atomic import write_json
from hwtune.configs import TrainConfig
from hwtune.data import load_dataset, subset
from hwtune.provenance import provenance
from hwtune.training import train
from hwtune.ttfs import TTFSNet, preset, to_relu


def time_epoch(model, x, y, cfg: TrainConfig, seed: int) -> float:
    start = time.perf_counter()
    train(model, x, y, cfg, seed)
    return time.perf_counter() - start


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--arch", default="fc", help="architecture preset (default fc = 784-340-10)")
    p.add_argument("--samples", type=int, default=12000, help="training samples per timed epoch")
    p.add_argument("--batch-size", type=int, default=8, help="batch size (reference code: 8)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: the reference's setting)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="result file (default: bench/train-ARCH.json)")
    args = p.parse_args(argv)
    args.out = args.out or f"bench/train-{args.arch}.json"
    torch.set_num_threads(args.threads)
    progress.set_quiet(True)
    data = subset(load_dataset(args.dataset), n_train=args.samples, seed=args.seed)
    shape, classes = tuple(data.meta["shape"]), data.meta["n_classes"]
    torch.manual_seed(args.seed)
    ttfs = TTFSNet(preset(args.arch, shape, classes), shape)
    relu = to_relu(ttfs)
    cfg = TrainConfig(epochs=1, batch_size=args.batch_size)
    times = {"ttfs": [], "relu": []}
    for _ in range(args.repeats):
        for name, model in (("ttfs", ttfs), ("relu", relu)):
            times[name].append(time_epoch(model, data.train_x, data.train_y, cfg, args.seed))
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["ttfs"] / med["relu"]
    print(f"{'net':6s} {'median epoch s':>15s} {'samples/s':>10s}")
    for name in ("ttfs", "relu"):
        print(f"{name:6s} {med[name]:15.3f} {args.samples / med[name]:10.0f}")
    print(f"TTFS / ReLU epoch time: {ratio:.3f}  (goal <= 1.25)")
    result = {"ratio_ttfs_over_relu": ratio, "median_epoch_s": med, "epoch_times_s": times,
              "goal": 1.25, "provenance": provenance(args.seed, vars(args))}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
