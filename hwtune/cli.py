"""``hwtune`` command line: parse arguments, build a config, call the library. No logic here."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hwtune import io, workflow
from hwtune.data import subset
from hwtune.passes import LatencyConfig, NoiseConfig, QuantizeConfig
from hwtune.recipes import load_recipe, run_recipe
from hwtune.report import write_report
from hwtune.sweep import load_sweep, read_points, run_sweep
from hwtune.target import list_targets
from hwtune.train import TrainConfig, predict


def _common(p: argparse.ArgumentParser, data: bool = True) -> None:
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    if data:
        p.add_argument("--dataset", help="digits | fashion-mnist | mnist | cifar10 (default: the model's)")
        p.add_argument("--data-dir", help="dataset directory (default: $HWTUNE_DATA or the system location)")


def _finetune(p: argparse.ArgumentParser, epochs: float = 1.0, lr: float = 1e-4) -> None:
    p.add_argument("--in", dest="model_in", required=True, help="input model directory")
    p.add_argument("--out", required=True, help="output model directory (written atomically)")
    p.add_argument("--target", default="emulator", help="target name or YAML path (default emulator)")
    p.add_argument("--epochs", type=float, default=epochs, help=f"fine-tuning epochs (default {epochs}; 0 = none)")
    p.add_argument("--lr", type=float, default=lr, help=f"fine-tuning learning rate (default {lr})")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--train-samples", type=int, help="fine-tune on this many training samples")
    p.add_argument("--eval-samples", type=int, help="evaluate on this many test samples")
    _common(p)


def _deployable(p: argparse.ArgumentParser) -> None:
    """The model (or artifact) argument of emulate / lava-run, with the target to export it for."""
    p.add_argument("model", help="model directory (exported on the fly) or artifact directory")
    p.add_argument("--target", help="target for a model directory (default: the model's)")


def _recipe_args(p: argparse.ArgumentParser) -> None:
    """run / sweep: the recipe, and where and with which seed to run it (defaults: the recipe's)."""
    p.add_argument("recipe")
    p.add_argument("--out", help="output directory (default: the recipe's)")
    p.add_argument("--seed", type=int, help="random seed (default: the recipe's)")


def _steps(text: str):
    """'16' -> 16, '16,8' -> [16, 8] (one per hidden layer)."""
    parts = [int(s) for s in text.split(",")]
    return parts[0] if len(parts) == 1 else parts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hwtune", description="Make trained time-to-first-spike SNNs deployable: train or convert, run "
        "hardware passes (quantize, noise, latency), export to Lava (Loihi 2) or the bit-accurate emulator.")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, help_text, example):
        return sub.add_parser(name, help=help_text, description=help_text, epilog=f"example:\n  {example}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    p = add("train", "train a TTFS net from scratch (exact gradient) or a ReLU net",
            "hwtune train --arch fc --dataset fashion-mnist --epochs 10 --out runs/fc2")
    p.add_argument("--arch", default="fc", help="fc | fc-small | vgg | vgg-small (default fc = 784-340-10)")
    p.add_argument("--network", choices=["ttfs", "relu"], default="ttfs")
    p.add_argument("--epochs", type=float, default=10)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--twin", action="store_true", help="also train the ReLU twin and report agreement")
    p.add_argument("--out", required=True)
    p.add_argument("--json", help="write the training report here")
    _common(p)

    p = add("convert", "convert a trained ReLU model to an exactly equivalent TTFS net",
            "hwtune convert --in runs/relu --out runs/ttfs --margin 1.5")
    p.add_argument("--in", dest="model_in", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--margin", type=float, default=1.5, help="window = margin x layer maximum (default 1.5)")
    _common(p)

    p = add("evaluate", "accuracy, spikes per neuron and latency of a model",
            "hwtune evaluate runs/fc2 --dataset fashion-mnist --json")
    p.add_argument("model")
    p.add_argument("--samples", type=int, help="evaluate on this many test samples")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    _common(p)

    p = add("quantize", "integer weights (brevitas QAT) and integer time grid, then fine-tune",
            "hwtune quantize --bits 4 --steps 16 --target loihi2 --in runs/fc2 --out runs/fc2-w4")
    p.add_argument("--bits", type=int, default=8, help="weight mantissa bits (2..8 on loihi2)")
    p.add_argument("--float-weights", action="store_true", help="quantize time only, keep float weights")
    p.add_argument("--steps", type=_steps, help="steps per hidden window: N or N1,N2,...")
    p.add_argument("--time-bits", type=int, help="alternative to --steps: 2**b - 1 steps per window")
    p.add_argument("--input-steps", type=int)
    p.add_argument("--window-quantile", type=float, default=0.999)
    _finetune(p)

    p = add("noise", "evaluate and fine-tune under spike-time jitter, weight and threshold noise",
            "hwtune noise --jitter 0.1 --in runs/fc2-w4 --out runs/fc2-w4-n")
    p.add_argument("--jitter", type=float, default=0.0)
    p.add_argument("--weight-mult", type=float, default=0.0)
    p.add_argument("--weight-add", type=float, default=0.0)
    p.add_argument("--threshold", type=float, default=0.0)
    p.add_argument("--units", choices=["window", "steps"], default="window")
    p.add_argument("--eval-only", action="store_true", help="measure robustness, no fine-tuning")
    _finetune(p)

    p = add("latency", "shorter windows (quantile-based) on a step budget, then fine-tune",
            "hwtune latency --steps 8 --quantile 0.99 --in runs/fc2-w4 --out runs/fc2-w4-t8")
    p.add_argument("--steps", type=_steps, help="steps per hidden window: N or N1,N2,...")
    p.add_argument("--input-steps", type=int)
    p.add_argument("--quantile", type=float, default=0.99)
    _finetune(p)

    p = add("export", "export a quantized model as an integer artifact for a target (numpy + JSON)",
            "hwtune export runs/fc2-w4 --target loihi --out runs/fc2-w4.loihi")
    p.add_argument("model")
    p.add_argument("--target", help="target name or YAML path (default: the model's)")
    p.add_argument("--out", required=True, help="artifact directory (written atomically)")
    _common(p, data=False)

    p = add("emulate", "run the bit-accurate integer emulator on a dataset",
            "hwtune emulate runs/fc2-w4 --dataset fashion-mnist --json")
    _deployable(p)
    p.add_argument("--mode", choices=["fast", "stepped"], default="fast")
    p.add_argument("--samples", type=int, help="run this many test samples")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    _common(p)

    p = add("lava-run", "run samples on Lava's fixed_pt simulator and compare with the emulator",
            "hwtune lava-run runs/fc2-w4 --samples 20")
    _deployable(p)
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--json", action="store_true")
    _common(p)

    p = add("run", "run a recipe: train or load, passes, export, evaluate",
            "hwtune run recipes/quickstart.yaml --seed 0")
    _recipe_args(p)

    p = add("sweep", "robustness sweep over bits, steps, jitter, weight noise; resumable; checks floors",
            "hwtune sweep recipes/robustness-ci.yaml")
    _recipe_args(p)

    p = add("report", "plots and Markdown report of a sweep directory", "hwtune report runs/robustness-ci")
    p.add_argument("sweep_dir")

    add("targets", "list the hardware targets", "hwtune targets")
    return parser


def _print(record: dict, as_json: bool) -> None:
    print(json.dumps(record, indent=2, default=str) if as_json else "\n".join(f"{k}: {v}" for k, v in record.items()))


def _run_pass(args, config) -> None:
    net = io.load(args.model_in)
    ctx = workflow.pass_context(net, args.target, args.dataset, args.data_dir, args.seed, args.train_samples,
                                args.eval_samples)
    record = workflow.apply_pass(net, config, ctx)
    io.save(net, args.out)
    print(workflow.summary_line(record))
    print(f"wrote {args.out}")


def _artifact_and_data(args):
    """(artifact, model or None, dataset) for emulate / lava-run: a model is exported on the fly."""
    artifact, net = workflow.load_artifact_or_model(args.model, args.target)
    name = args.dataset or artifact.meta.get("dataset", {}).get("name")
    return artifact, net, workflow.dataset_for(net, name, args.data_dir, args.seed)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except (ValueError, FileNotFoundError, KeyError) as e:  # library errors carry the file/layer/limit
        print(f"hwtune {args.command}: error: {e}", file=sys.stderr)
        return 2


def _dispatch(args) -> int:
    cmd = args.command
    if cmd == "targets":
        for t in list_targets():
            print(f"{t.name:10s} {t.summary}")
        return 0
    if cmd == "train":
        cfg = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed)
        data = workflow.dataset_for(None, args.dataset or "digits", args.data_dir, args.seed)
        net, report = workflow.train_model(args.arch, data, cfg, args.network, args.dtype, args.twin)
        io.save(net, args.out)
        _print({"out": args.out, **report["evaluation"], **report.get("twin", {})}, False)
        if args.json:
            workflow.write_json(args.json, report)
        return 0
    if cmd == "convert":
        net = io.load(args.model_in)
        ttfs, record = workflow.convert_model(net, workflow.dataset_for(net, args.dataset, args.data_dir, args.seed),
                                              args.margin, args.seed)
        io.save(ttfs, args.out)
        print(f"convert: ReLU {100 * record['relu_accuracy']:.2f} % -> TTFS {100 * record['accuracy_after']:.2f} %, "
              f"prediction agreement {100 * record['prediction_agreement']:.2f} %; wrote {args.out}")
        return 0
    if cmd == "evaluate":
        net = io.load(args.model)
        result = workflow.evaluate_model(net, workflow.dataset_for(net, args.dataset, args.data_dir, args.seed),
                                         args.samples, args.seed)
        _print(result, args.json)
        return 0
    if cmd == "quantize":
        _run_pass(args, QuantizeConfig(bits=None if args.float_weights else args.bits, steps=args.steps,
                                       time_bits=args.time_bits, input_steps=args.input_steps,
                                       window_quantile=args.window_quantile, epochs=args.epochs, lr=args.lr,
                                       batch_size=args.batch_size))
        return 0
    if cmd == "noise":
        _run_pass(args, NoiseConfig(jitter=args.jitter, weight_mult=args.weight_mult, weight_add=args.weight_add,
                                    threshold=args.threshold, units=args.units, eval_only=args.eval_only,
                                    epochs=args.epochs, lr=args.lr, batch_size=args.batch_size))
        return 0
    if cmd == "latency":
        _run_pass(args, LatencyConfig(steps=args.steps, input_steps=args.input_steps, quantile=args.quantile,
                                      epochs=args.epochs, lr=args.lr, batch_size=args.batch_size))
        return 0
    if cmd == "export":
        artifact, _ = workflow.load_artifact_or_model(args.model, args.target)
        artifact.save(args.out)
        print(f"export: {len(artifact.layers)} layers, {artifact.weight_bits}-bit weights, windows "
              f"{artifact.window_steps} steps, latency {artifact.latency_steps} steps; wrote {args.out}")
        return 0
    if cmd == "emulate":
        artifact, net, data = _artifact_and_data(args)
        if args.samples:
            data = subset(data, n_test=args.samples, seed=args.seed)
        result, pred = workflow.emulate_artifact(artifact, data.test_x, data.test_y, args.mode)
        if net is not None:  # a model directory: compare with the quantized torch model too
            torch_pred = predict(net, data.test_x.to(net.dtype)).numpy()
            result["torch_accuracy"] = float((torch_pred == data.test_y.numpy()).mean())
            result["torch_emulator_agreement"] = float((torch_pred == pred).mean())
        _print(result, args.json)
        return 0
    if cmd == "lava-run":
        artifact, _, data = _artifact_and_data(args)
        result = workflow.compare_lava(artifact, data.test_x[:args.samples])
        if args.json:
            _print(result, True)
        else:
            print(f"{'sample':>6s} {'label':>5s} {'lava':>5s} {'emulator':>8s} {'spikes':>6s}")
            for i, (a, b, c) in enumerate(zip(result["lava_predictions"], result["emulator_predictions"],
                                              result["lava_spikes_per_sample"])):
                print(f"{i:6d} {int(data.test_y[i]):5d} {a:5d} {b:8d} {c:6d}")
            print(f"Lava == emulator spike for spike on {result['identical_spike_for_spike']}/{result['samples']} "
                  "samples")
        return 0 if result["identical_spike_for_spike"] == result["samples"] else 1
    if cmd == "run":
        recipe = load_recipe(args.recipe)
        results = run_recipe(recipe, seed=args.seed, out=args.out)
        for line in workflow.deploy_summary(results.get("deploy")):
            print(line)
        print(f"wrote {args.out or recipe.out}/results.json")
        return 0
    if cmd == "sweep":
        sweep = load_sweep(args.recipe)
        result = run_sweep(sweep, seed=args.seed, out=args.out)
        report = write_report(result["records"], sweep.out, f"Sweep {sweep.name} ({sweep.path})")
        print(f"sweep: {len(result['records'])} points in {sweep.out / 'points.jsonl'}; report {report}")
        for line in result["broken_floors"]:
            print(f"BROKEN FLOOR: {line}", file=sys.stderr)
        return 1 if result["broken_floors"] else 0
    if cmd == "report":
        out = Path(args.sweep_dir)
        records = read_points(out)
        if not records:
            raise ValueError(f"{out / 'points.jsonl'}: no finished points")
        print(f"wrote {write_report(records, out, f'Sweep {out.name}')}")
        return 0
    raise AssertionError(f"unhandled command {cmd}")


if __name__ == "__main__":
    sys.exit(main())
