"""Which fine-tuning of the quantize pass loses least: the measurement behind docs/design.md
"Quantization: less loss".

Each method (a set of quantize settings) runs at each (bits, steps) on a model directory, for
``--seeds`` pass seeds; the table gives the mean test accuracy (and its spread over seeds) and the
loss in points against the float model. Without ``--model``, the digits net of the tests
(64-32-16-10, 8 epochs) is trained first.

    python scripts/quant_methods.py --grid 2x8 3x8 4x16 --seeds 0 1 2 -o docs/results/quant-methods-digits.json
    python scripts/quant_methods.py --model /work/runs/user-convnet/ttfs --grid 4x16 --seeds 0 --epochs 3 ...
"""
from __future__ import annotations

import argparse
import json
import statistics
import warnings

import torch

import hwtune
from hwtune.api import QuantizationWarning

#: The methods compared: name -> quantize settings (on top of bits, steps, epochs).
METHODS = {
    "plain": {},
    "window search": {"window_search": True},
    "cosine lr": {"schedule": "cosine"},
    "distill 0.5": {"distill": 0.5},
    "search + cosine + distill": {"window_search": True, "schedule": "cosine", "distill": 0.5},
}


def digits_net():
    from hwtune.training import TrainConfig, train
    from hwtune.ttfs import TTFSNet, fc

    data = hwtune.load_dataset("digits")
    torch.manual_seed(0)
    net = TTFSNet(fc((1, 8, 8), [32, 16], 10), (1, 8, 8))
    train(net, data.train_x, data.train_y, TrainConfig(epochs=8, lr=3e-3, batch_size=32))
    net.info = {"dataset": data.meta}
    return net, data


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="model directory (default: the digits test net, trained here)")
    p.add_argument("--grid", nargs="+", default=["4x16"], help="BITSxSTEPS points")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--target", help="target name or YAML (default: the model's, else loihi2)")
    p.add_argument("-o", "--out", help="JSON file of the results")
    a = p.parse_args()
    if a.model:
        net = hwtune.load(a.model)
        data = hwtune.load_dataset(net.info["dataset"].get("source") or net.info["dataset"]["name"])
    else:
        net, data = digits_net()
    float_accuracy = hwtune.evaluate(net, data)["accuracy"]
    rows = []
    for point in a.grid:
        bits, steps = (int(v) for v in point.split("x"))
        for method in a.methods:
            accuracies = []
            for seed in a.seeds:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", QuantizationWarning)
                    _, record = hwtune.quantize(net, data, a.target, bits=bits, steps=steps, epochs=a.epochs, lr=a.lr,
                                                seed=seed, report_samples=0, **METHODS[method])
                accuracies.append(record["accuracy_after"])
            mean = statistics.fmean(accuracies)
            rows.append({"bits": bits, "steps": steps, "method": method, "accuracy": mean,
                         "std": statistics.pstdev(accuracies), "accuracies": accuracies,
                         "loss_points": 100 * (float_accuracy - mean)})
            print(f"{bits} bits / {steps} steps  {method:<26} {100 * mean:6.2f} % +- {100 * rows[-1]['std']:.2f}  "
                  f"loss {rows[-1]['loss_points']:+.2f} points", flush=True)
    result = {"model": a.model or "digits 64-32-16-10", "target": a.target, "float_accuracy": float_accuracy, "epochs": a.epochs,
              "lr": a.lr, "seeds": a.seeds, "rows": rows}
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
