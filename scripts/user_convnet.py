"""The issue-30 "user net": a small ReLU conv net of a user's own, converted and quantized with the CLI.

conv8-pool-conv16-pool-fc on Fashion-MNIST downsampled to 14 x 14 (2 x 2 means), 6,000 training
images (the first 6,000 of the training set), all 10,000 test images, written as an .npz as a user
would. The net is trained as a plain ReLU torch module (Adam, lr 1e-3, batch 64, 3 epochs, seed 0),
saved as safetensors and converted with ``hwtune convert scripts.user_convnet:user_convnet``; then
``quantize`` runs at 4 bits / 16 steps with 3 fine-tuning epochs at lr 1e-4 (the issue's run), and the time grid alone
(``--bits float --epochs 0``), as in the issue. Every hwtune step goes through the CLI; its --json
records go to OUT/results.json.

    python scripts/user_convnet.py --out /work/runs/user-convnet
    python scripts/user_convnet.py --out /work/runs/user-convnet --tag=-lr5e-4 "--quantize-args=--lr 5e-4"

(the second is the 4-bit run at quantize's new default lr: 72.09 %, key ``w4_t16-lr5e-4``).
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

TRAIN_IMAGES = 6000


def user_convnet() -> nn.Module:
    """conv8 (3x3, pad 1) - ReLU - avgpool 2 - conv16 (3x3, pad 1) - ReLU - avgpool 2 - fc 10, on 1 x 14 x 14."""
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                         nn.Flatten(), nn.Linear(16 * 3 * 3, 10))


def write_npz(path: Path) -> None:
    """Fashion-MNIST at 14 x 14 (mean of each 2 x 2 block), uint8; 6,000 training and 10,000 test images."""
    from hwtune.data import load_dataset

    data = load_dataset("fashion-mnist")

    def small(x: torch.Tensor) -> np.ndarray:
        return np.round(F.avg_pool2d(x.float(), 2)[:, 0].numpy() * 255).astype(np.uint8)

    np.savez(path, x_train=small(data.train_x[:TRAIN_IMAGES]), y_train=data.train_y[:TRAIN_IMAGES].numpy(),
             x_test=small(data.test_x), y_test=data.test_y.numpy())


def train_relu(npz: Path, weights: Path, epochs: int = 3, seed: int = 0) -> float:
    """Train user_convnet() as a ReLU net (cross-entropy, Adam lr 1e-3, batch 64); test accuracy."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    with np.load(npz) as f:
        x = torch.from_numpy(f["x_train"][:, None].astype(np.float32) / 255)
        y = torch.from_numpy(f["y_train"].astype(np.int64))
        xt = torch.from_numpy(f["x_test"][:, None].astype(np.float32) / 255)
        yt = torch.from_numpy(f["y_test"].astype(np.int64))
    model = user_convnet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(64):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        accuracy = float((model(xt).argmax(1) == yt).float().mean())
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    return accuracy


def hwtune(*argv: str) -> dict:
    """Run ``hwtune ARGV --json`` and return its JSON record (stderr passes through)."""
    out = subprocess.run([sys.executable, "-m", "hwtune.cli", *argv, "--json"], check=True,
                         stdout=subprocess.PIPE, text=True)
    return json.loads(out.stdout)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="directory for the .npz, weights, models and results.json")
    p.add_argument("--quantize-args", default="", help="extra flags of the 4-bit quantize run")
    p.add_argument("--tag", default="", help="suffix of the 4-bit model directory and its results key")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    npz, weights, ttfs = out / "fmnist14.npz", out / "relu.safetensors", out / "ttfs"
    results_file = out / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    if not npz.exists():
        write_npz(npz)
    if not weights.exists():
        results["relu_accuracy"] = train_relu(npz, weights)
    if not (ttfs / "hwtune.json").exists():
        results["convert"] = hwtune("convert", "scripts.user_convnet:user_convnet", "--weights", str(weights),
                                    "--dataset", str(npz), "-o", str(ttfs))
    if "time_grid_only" not in results:
        results["time_grid_only"] = hwtune("quantize", str(ttfs), "--bits", "float", "--steps", "16", "--epochs",
                                           "0", "-o", str(out / "ttfs-tfloat"), "--force")
    key = "w4_t16" + a.tag
    results[key] = hwtune("quantize", str(ttfs), "--bits", "4", "--steps", "16", "--epochs", "3", "--lr", "1e-4",
                          *shlex.split(a.quantize_args), "-o", str(out / f"ttfs-w4{a.tag}"), "--force")
    results_file.write_text(json.dumps(results, indent=2))
    print(f"ReLU {results.get('relu_accuracy')}, TTFS {results['convert']['accuracy_after']}, time grid only "
          f"{results['time_grid_only']['accuracy_after']}, 4 bits / 16 steps {results[key]['accuracy_after']}")


if __name__ == "__main__":
    main()
