"""Robustness sweeps: a grid of (weight bits, steps per window, jitter, weight noise, fine-tuning).

A sweep recipe (YAML) names a base model (trained once, or loaded), a dataset, a target and a
grid or a list of points; optional floors guard the results:

    name: robustness-ci
    dataset: digits
    target: loihi2
    model: {train: {arch: fc-small, epochs: 40, lr: 0.002, batch_size: 16}}   # or {load: DIR}
    finetune: {epochs: 3, lr: 0.0005}
    lava_samples: 10             # Lava vs emulator spike for spike on noiseless points
    grid: {bits: [8, 4], steps: [16], sigma: [0, 0.1], weight_noise: [0], finetune: [false, true]}
    floors:
      - {point: {bits: 4, steps: 16, sigma: 0, finetune: true}, metric: accuracy_torch,
         min_relative_to_float: -0.02}

Each point: quantize the base model (``bits``, ``steps`` for the input and every hidden window);
with ``finetune`` the quantize pass fine-tunes and, where the point has noise, a noise-aware
fine-tuning at that noise follows. Then it is evaluated under its noise (jitter ``sigma`` in units
of the window, multiplicative ``weight_noise``) on the torch model and, for jitter, on the emulator
(same noise model, its own draws; weight noise is torch-only). Finished points are appended to
``points.jsonl`` at once, keyed by a hash of their settings, the seed and everything else their
result depends on (base model, dataset, target, data subsets, fine-tuning settings), so a rerun
resumes and a changed recipe never reuses stale points. A trained base model is cached per model
settings, dataset and seed (``out/base-<hash>``): another ``--seed`` (another digits split) trains
its own.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from hwtune import io, workflow
from hwtune.atomic import atomic_write_text
from hwtune.data import DATASETS, load_dataset
from hwtune.export import to_artifact
from hwtune.passes import NoiseConfig, QuantizeConfig
from hwtune.provenance import provenance
from hwtune.recipes import PipelineSpec, RecipeError, parse_model_section, train_from_section
from hwtune.target import TargetError, load_target
from hwtune.train import predict
from hwtune.yamlfile import read_yaml

AXES = {"bits": int, "steps": int, "sigma": float, "weight_noise": float, "finetune": bool}
_DEFAULTS = {"weight_noise": 0.0, "finetune": False, "sigma": 0.0}
_TOP_KEYS = {"name", "description", "seed", "dataset", "target", "out", "model", "finetune", "grid", "points",
             "floors", "lava_samples", "train_samples", "eval_samples"}
METRICS = ("accuracy_torch", "accuracy_emulator", "accuracy_float", "spikes_per_hidden_neuron")
_ALLOWED = {int: "an integer >= 1", float: "a finite number >= 0", bool: "true or false"}
#: fine-tuning setting -> (allowed values, check of a finite number)
_FINETUNE = {"epochs": ("a number >= 0", lambda v: v >= 0), "lr": ("a number > 0", lambda v: v > 0),
             "batch_size": ("an integer >= 1", lambda v: v == int(v) and v >= 1)}


@dataclass
class Floor:
    point: dict
    metric: str
    min: float | None = None
    min_relative_to_float: float | None = None

    def threshold(self, record: dict) -> float:
        return self.min if self.min is not None else record["accuracy_float"] + self.min_relative_to_float


@dataclass
class Sweep(PipelineSpec):
    points: list[dict] = field(default_factory=list)
    finetune: dict = field(default_factory=lambda: {"epochs": 1.0, "lr": 1e-4})
    floors: list[Floor] = field(default_factory=list)
    lava_samples: int = 0
    train_samples: int | None = None
    eval_samples: int | None = None


def _hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _base_settings(sweep: Sweep, seed: int) -> dict:
    """What the base model depends on (a trained one: its training settings, dataset and seed)."""
    if "load" in sweep.model:
        return {"load": sweep.model["load"]}
    return {"train": sweep.model["train"], "dataset": sweep.dataset, "seed": seed}


def point_id(sweep: Sweep, point: dict, seed: int) -> str:
    """Stable id of a point: hash of its settings, the seed, the base model, dataset, target,
    data subsets and (for a fine-tuned point) the fine-tuning settings."""
    return _hash({**{k: point[k] for k in AXES}, "seed": seed, "base": _base_settings(sweep, seed),
                  "dataset": sweep.dataset, "target": sweep.target.name, "train_samples": sweep.train_samples,
                  "eval_samples": sweep.eval_samples,
                  "finetune_settings": sweep.finetune if point["finetune"] else None})


def _axis_value(axis: str, value, where: str):
    """``value`` of ``axis`` checked: bits and steps integers >= 1, sigma and weight_noise numbers >= 0,
    finetune true/false."""
    typ = AXES[axis]
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if typ is bool:
        ok = isinstance(value, bool)
    elif typ is int:
        ok = number and math.isfinite(value) and value == int(value) and value >= 1
    else:
        ok = number and math.isfinite(value) and value >= 0
    if not ok:
        raise RecipeError(f"{where}: {axis} = {value!r} must be {_ALLOWED[typ]}")
    return typ(value)


def _point(raw: object, where: str) -> dict:
    if not isinstance(raw, dict):
        raise RecipeError(f"{where}: a point is a mapping of {sorted(AXES)}, got {raw!r}")
    unknown = set(raw) - set(AXES)
    if unknown:
        raise RecipeError(f"{where}: unknown axis {sorted(unknown)}; known: {sorted(AXES)}")
    point = {**_DEFAULTS, **raw}
    for axis in AXES:
        if axis not in point:
            raise RecipeError(f"{where}: missing {axis!r}")
        point[axis] = _axis_value(axis, point[axis], where)
    return point


def _integer(data: dict, key: str, path: str, minimum: int, default):
    """``data[key]``: an integer >= ``minimum`` (or ``default`` when absent; null allowed when the default is)."""
    value = data.get(key, default)
    if value is None and default is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise RecipeError(f"{path}: {key} = {value!r} must be an integer >= {minimum}")
    return value


def _finetune(raw: object, path: str) -> dict:
    """Fine-tuning settings: epochs >= 0, lr > 0, batch_size an integer >= 1."""
    if not isinstance(raw, dict) or set(raw) - set(_FINETUNE):
        raise RecipeError(f"{path}: finetune takes {sorted(_FINETUNE)}; got {raw!r}")
    for key, value in raw.items():
        allowed, check = _FINETUNE[key]
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not (number and check(value)):
            raise RecipeError(f"{path}: finetune.{key} = {value!r} must be {allowed}")
    return raw


def _floor(raw: object, where: str, points: list[dict]) -> Floor:
    if not isinstance(raw, dict) or set(raw) - {"point", "metric", "min", "min_relative_to_float"}:
        raise RecipeError(f"{where}: keys are point, metric, min or min_relative_to_float; got {raw!r}")
    if raw.get("metric") not in METRICS:
        raise RecipeError(f"{where}: metric must be one of {METRICS}, got {raw.get('metric')!r}")
    if ("min" in raw) == ("min_relative_to_float" in raw):
        raise RecipeError(f"{where}: give exactly one of 'min' or 'min_relative_to_float'")
    bound = raw.get("min", raw.get("min_relative_to_float"))
    if not isinstance(bound, (int, float)) or isinstance(bound, bool) or not math.isfinite(bound):
        raise RecipeError(f"{where}: the floor value {bound!r} must be a number")
    if not isinstance(raw.get("point"), dict) or set(raw["point"]) - set(AXES):
        raise RecipeError(f"{where}: point must be a mapping of axes {sorted(AXES)}")
    point = {k: _axis_value(k, v, f"{where}: point") for k, v in raw["point"].items()}
    if not any(all(p[k] == v for k, v in point.items()) for p in points):
        raise RecipeError(f"{where}: point {point} matches no point of the sweep")
    return Floor(**{**raw, "point": point})


def parse_sweep(data: object, path: str) -> Sweep:
    """Validate a sweep recipe before any training; errors name ``path`` and the key."""
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a sweep recipe must be a mapping")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise RecipeError(f"{path}: unknown key(s) {sorted(unknown)}; known: {sorted(_TOP_KEYS)}")
    for key in ("name", "dataset", "target", "model"):
        if key not in data:
            raise RecipeError(f"{path}: missing key {key!r}")
    if ("grid" in data) == ("points" in data):
        raise RecipeError(f"{path}: give exactly one of 'grid' or 'points'")
    try:
        target = load_target(str(data["target"]))
    except TargetError as e:
        raise RecipeError(f"{path}: target: {e}") from None
    if "grid" in data:
        grid = data["grid"]
        if not isinstance(grid, dict) or set(grid) - set(AXES):
            raise RecipeError(f"{path}: grid must map axes {sorted(AXES)} to lists, got {grid!r}")
        axes = {k: (v if isinstance(v, list) else [v]) for k, v in grid.items()}
        for axis, values in axes.items():
            if not values:
                raise RecipeError(f"{path}: grid: {axis} is an empty list")
        raw_points = [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]
    else:
        raw_points = data["points"] if isinstance(data["points"], list) else [data["points"]]
    points = [_point(p, f"{path}: {'grid' if 'grid' in data else f'points[{i}]'}") for i, p in enumerate(raw_points)]
    if not points:
        raise RecipeError(f"{path}: points: the sweep has no points")
    seen = set()
    for point in points:
        key = tuple(point[a] for a in AXES)
        if key in seen:
            raise RecipeError(f"{path}: {'grid' if 'grid' in data else 'points'}: point {point} appears twice")
        seen.add(key)
        try:
            target.check_bits(point["bits"], f"{path}: ")
            target.check_steps([point["steps"]] * 2, f"{path}: ")
        except TargetError as e:
            raise RecipeError(str(e)) from None
    floors = [_floor(raw, f"{path}: floors[{i}]", points) for i, raw in enumerate(data.get("floors") or [])]
    dataset = data["dataset"] if isinstance(data["dataset"], dict) else {"name": data["dataset"]}
    if set(dataset) - {"name", "data_dir"} or dataset.get("name") not in DATASETS:
        raise RecipeError(f"{path}: dataset must be one of {', '.join(DATASETS)} or {{name, data_dir}}; "
                          f"got {data['dataset']!r}")
    return Sweep(path=path, name=str(data["name"]), seed=_integer(data, "seed", path, 0, 0), dataset=dataset,
                 target=target, out=Path(data.get("out", f"runs/{data['name']}")),
                 model=parse_model_section(data["model"], path), points=points,
                 finetune=_finetune(data.get("finetune", {"epochs": 1.0, "lr": 1e-4}), path), floors=floors,
                 lava_samples=_integer(data, "lava_samples", path, 0, 0),
                 train_samples=_integer(data, "train_samples", path, 1, None),
                 eval_samples=_integer(data, "eval_samples", path, 1, None))


def load_sweep(path: str | Path) -> Sweep:
    return parse_sweep(read_yaml(path, RecipeError, "sweep recipe"), str(path))


def read_points(out: Path) -> list[dict]:
    """Finished points of a sweep directory (``points.jsonl``), in the order they finished.

    An unfinished last line (an append cut short: no newline after it) is left out with a warning;
    any other line that is not JSON is an error naming the file and line."""
    file = out / "points.jsonl"
    if not file.exists():
        return []
    text = file.read_text()
    lines = text.splitlines()
    records = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if n == len(lines) and not text.endswith("\n"):
                print(f"sweep: {file}: line {n} is unfinished (interrupted append); left out", file=sys.stderr)
                break
            raise ValueError(f"{file}: line {n} is not a JSON record ({e})") from None
    return records


def _drop_unfinished_line(out: Path) -> None:
    """Cut an unfinished last line off ``points.jsonl`` so that the next append starts a fresh line."""
    file = out / "points.jsonl"
    text = file.read_text() if file.exists() else ""
    if text and not text.endswith("\n"):
        atomic_write_text(file, text[:text.rfind("\n") + 1])


def _append_point(out: Path, record: dict) -> None:
    with open(out / "points.jsonl", "a") as f:
        f.write(json.dumps(record, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())
    rows = read_points(out)
    columns = ["id", *AXES, *METRICS, "torch_emulator_agreement", "synaptic_events_per_sample", "latency_steps",
               "lava_identical", "lava_samples"]
    lines = [",".join(columns)]
    for row in rows:
        lines.append(",".join("" if row.get(c) is None else str(row.get(c)) for c in columns))
    atomic_write_text(out / "points.csv", "\n".join(lines) + "\n")


def broken_floors(sweep: Sweep, records: list[dict]) -> list[str]:
    """Every floor a finished point breaks, as 'point: metric value < floor' lines (empty when all hold);
    a floor that matches no finished point counts as broken."""
    broken = []
    for floor in sweep.floors:
        matches = [r for r in records if all(r.get(k) == v for k, v in floor.point.items())]
        if not matches:
            broken.append(f"floor {floor.point} {floor.metric}: no finished point matches")
        for r in matches:
            value, limit = r.get(floor.metric), floor.threshold(r)
            if value is None or value < limit:
                broken.append(f"point {floor.point} ({r['id']}): {floor.metric} = {value} < floor {limit:.4f}")
    return broken


def base_dir(sweep: Sweep, seed: int) -> Path:
    """Directory of the base model: the loaded one, or ``out/base-<hash of model settings, dataset, seed>``."""
    if "load" in sweep.model:
        return Path(sweep.model["load"])
    return sweep.out / f"base-{_hash(_base_settings(sweep, seed))}"


def _base_model(sweep: Sweep, data, seed: int):
    """The float TTFS base model: loaded, or trained once and cached in :func:`base_dir`."""
    path = base_dir(sweep, seed)
    if "train" in sweep.model and not (path / io.CONFIG).exists():
        net, _ = train_from_section(sweep.model["train"], data, seed)
        io.save(net, path)
        return net
    net = io.load(path)
    trained_on = net.info.get("dataset", {}).get("name")
    if net.info.get("network", "ttfs") != "ttfs" or net.quant is not None:
        raise ValueError(f"{path}: a sweep starts from a float TTFS model; this one is "
                         f"{'quantized' if net.quant is not None else 'a ReLU net (hwtune convert it first)'}")
    if trained_on not in (None, sweep.dataset["name"]):
        raise ValueError(f"{path}: trained on {trained_on}, but the sweep {sweep.path} evaluates on "
                         f"{sweep.dataset['name']}")
    return net


def run_point(sweep: Sweep, base_path: Path, point: dict, ctx, float_accuracy: float, seed: int) -> dict:
    """Quantize (and fine-tune) a copy of the base model for ``point``, evaluate it under its noise."""
    net = io.load(base_path)
    epochs = sweep.finetune.get("epochs", 1.0) if point["finetune"] else 0
    options = {k: v for k, v in sweep.finetune.items() if k != "epochs"}
    workflow.apply_pass(net, QuantizeConfig(bits=point["bits"], steps=point["steps"], input_steps=point["steps"],
                                            epochs=epochs, **options), ctx)
    noise = NoiseConfig(jitter=point["sigma"], weight_mult=point["weight_noise"], epochs=epochs, **options)
    noisy = point["sigma"] > 0 or point["weight_noise"] > 0
    if noisy and point["finetune"]:
        workflow.apply_pass(net, noise, ctx)
    net.noise = noise.noise_model(seed + 1) if noisy else None
    torch_eval = ctx.evaluate(net)
    net.noise = None
    artifact = to_artifact(net, sweep.target)
    x, y = ctx.test_split()
    emu, emu_pred = workflow.emulate_artifact(artifact, x, y, jitter_sigma=point["sigma"], jitter_seed=seed + 1,
                                              progress=False)
    record = {"id": point_id(sweep, point, seed), **point, "seed": seed, "accuracy_float": float_accuracy,
              "accuracy_torch": torch_eval["accuracy"],
              "accuracy_emulator": emu["accuracy"] if point["weight_noise"] == 0 else None,
              "spikes_per_hidden_neuron": emu["spikes_per_hidden_neuron"],
              "synaptic_events_per_sample": emu["synaptic_events_per_sample"], "latency_steps": emu["latency_steps"],
              "torch_emulator_agreement": None, "lava_identical": None, "lava_samples": None}
    if not noisy:
        torch_pred = predict(net, x.to(net.dtype)).numpy()
        record["torch_emulator_agreement"] = float((torch_pred == emu_pred).mean())
        if sweep.lava_samples:
            lava = workflow.compare_lava(artifact, x[:sweep.lava_samples])
            record["lava_identical"], record["lava_samples"] = lava["identical_spike_for_spike"], lava["samples"]
    return record


def run_sweep(sweep: Sweep, seed: int | None = None, out: str | Path | None = None, progress: bool = True) -> dict:
    """Run every unfinished point; returns {'records', 'broken_floors', 'skipped'}."""
    seed = sweep.seed if seed is None else seed
    if out is not None:
        sweep.out = Path(out)
    sweep.out.mkdir(parents=True, exist_ok=True)
    data = load_dataset(sweep.dataset["name"], data_dir=sweep.dataset.get("data_dir"), split_seed=seed)
    base = _base_model(sweep, data, seed)
    ctx = workflow.pass_context(base, sweep.target, sweep.dataset["name"], sweep.dataset.get("data_dir"), seed,
                                sweep.train_samples, sweep.eval_samples, progress=False)
    float_accuracy = ctx.evaluate(base)["accuracy"]
    _drop_unfinished_line(sweep.out)
    done = {r["id"] for r in read_points(sweep.out)}
    todo = [p for p in sweep.points if point_id(sweep, p, seed) not in done]
    skipped = len(sweep.points) - len(todo)
    if skipped:
        print(f"sweep: skipped {skipped} finished point(s) found in {sweep.out / 'points.jsonl'}")
    for point in tqdm(todo, desc=f"sweep {sweep.name}", disable=not progress):
        torch.manual_seed(seed)
        _append_point(sweep.out, run_point(sweep, base_dir(sweep, seed), point, ctx, float_accuracy, seed))
    wanted = {point_id(sweep, p, seed) for p in sweep.points}
    records = [r for r in read_points(sweep.out) if r["id"] in wanted]
    summary = {"sweep": sweep.path, "name": sweep.name, "target": sweep.target.name, "dataset": sweep.dataset,
               "command": f"hwtune sweep {sweep.path} --seed {seed} --out {sweep.out}",
               "model": sweep.model, "base": str(base_dir(sweep, seed)), "float_accuracy": float_accuracy,
               "points": len(records), "broken_floors": broken_floors(sweep, records), "provenance": provenance(seed)}
    workflow.write_json(sweep.out / "sweep.json", summary)
    return {"records": records, "broken_floors": summary["broken_floors"], "skipped": skipped}
