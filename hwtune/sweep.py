"""Robustness sweeps: a grid of (weight bits, steps per window, jitter, weight mismatch, fine-tuning).

A sweep recipe (YAML) names a base model (trained once, or loaded), a dataset, a target and a
grid or a list of points; optional floors guard the results:

    name: robustness-ci
    dataset: digits
    target: loihi2
    model: {train: {arch: fc-small, epochs: 40, lr: 0.002, batch_size: 16}}   # or {load: DIR}
    finetune: {epochs: 3, lr: 0.0005}
    devices: 3                   # held-out device instances per noisy point
    backend_samples: 10          # the target's backend (Lava) vs the emulator, spike for spike, noiseless points
    grid: {bits: [8, 4], steps: [16], jitter: [0, 0.1], weight_mismatch: [0], finetune: [false, true]}
    floors:
      - {point: {bits: 4, steps: 16, jitter: 0, finetune: true}, metric: accuracy_torch,
         min_relative_to_float: -0.02}

Each point: quantize the base model (``bits``, ``steps`` for the input and every hidden window);
with ``finetune`` the quantize pass fine-tunes and, where the point has noise, a noise-aware
fine-tuning at that noise follows (so a noisy fine-tuned point has twice the budget of a clean
one; hwtune.study compares arms at equal budget). Then it is evaluated under its noise (jitter in
units of the window, fixed-pattern weight mismatch, hwtune.device_noise) on ``devices`` held-out device
instances, on the torch model and on the emulator with the same draws (they must agree). Axis
values obey the same rules as the pass settings (hwtune.configs). Finished points are appended to ``points.jsonl`` at once (one
writer per directory: a lock), keyed by a hash of their settings, the seed and everything else
their result depends on (base model, dataset, target, data subsets, fine-tuning settings), so a
rerun resumes and a changed recipe never reuses stale points. Each point also records the sha256
fingerprints of its inputs' content (:func:`input_fingerprints`: the base model's files, the target
spec, the data): a point whose inputs changed since it ran (a ``load:`` model retrained, a target
file edited, the data replaced) runs again, and its new record supersedes the old one. A trained
base model is cached per model settings, dataset and seed (``out/base-<hash>``): another ``--seed``
trains its own.

A sweep directory is one whose manifest (hwtune.atomic.MANIFEST) says ``format: hwtune-sweep``
(:data:`FORMAT`); nothing in it is a link or a FIFO hwtune would follow or block on.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hwtune.settings import Rule, check_value, rule_of
from hwtune.configs import (DeployConfig, ExecutionConfig, FinetuneOptions, NoiseConfig, QuantizeConfig,
                            id_settings)
from hwtune.device_noise import NoiseSpec
from hwtune.numerics import MAX_STEPS
from hwtune.errors import ConfigError, HwtuneError, short
from hwtune.recipes import PipelineHeader, PipelineSpec, RecipeError, parse_pipeline, split_keys
from hwtune.safepaths import open_regular, read_file
from hwtune.target import TargetError

#: Sweep axes and their rules: the pass and noise settings they set (bits: an integer, no 'float' here).
AXES: dict[str, Rule] = {
    "bits": dataclasses.replace(rule_of(QuantizeConfig, "bits"), optional=False),
    "steps": Rule("int", "steps per window (input and hidden)", "steps", lo=1, hi=MAX_STEPS),
    "jitter": rule_of(NoiseSpec, "jitter"),
    "weight_mismatch": rule_of(NoiseSpec, "weight_mismatch"),
    "finetune": Rule("bool", "fine-tune the point"),
}
_DEFAULTS = {"weight_mismatch": 0.0, "finetune": False, "jitter": 0.0}
_OWN_KEYS = {"kind", "finetune", "grid", "points", "floors", "backend_samples", "devices", "execution"}
METRICS = ("accuracy_torch", "accuracy_emulator", "accuracy_float", "spikes_per_hidden_neuron")
POINTS, SUMMARY = "points.jsonl", "sweep.json"
#: The ``format`` of a sweep directory's manifest: what makes a directory a sweep's (never a file name).
FORMAT = "hwtune-sweep"
#: Largest points file hwtune reads (a record is about 1 kB).
MAX_POINTS_BYTES = 2 ** 28


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
    finetune: FinetuneOptions = field(default_factory=FinetuneOptions)
    floors: list[Floor] = field(default_factory=list)
    backend_samples: int = 0
    devices: int = 3
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)


def settings_hash(settings: dict) -> str:
    """A 12-hex-digit id of ``settings`` (points, base models, studies)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


def base_settings(sweep: Sweep) -> dict:
    """What the base model depends on (a trained one: its training settings, dataset and seed)."""
    if sweep.load is not None:
        return {"load": str(sweep.load)}
    split = {"split_seed": sweep.data.split_seed} if sweep.data.split_seed else {}   # 0: ids of hwtune 0.2 kept
    return {"train": sweep.train.to_dict(), "dataset": sweep.dataset, "data_dir": sweep.data.data_dir,
            "seed": sweep.seed, **split}


def point_id(sweep: Sweep, point: dict) -> str:
    """Stable id of a point: hash of its settings, the seed, the base model, dataset, target,
    data subsets and (for a fine-tuned point) the fine-tuning settings."""
    noisy = point["jitter"] > 0 or point["weight_mismatch"] > 0
    return settings_hash({**{k: point[k] for k in AXES}, "seed": sweep.seed, "base": base_settings(sweep),
                  "dataset": sweep.dataset, "target": sweep.target.name, "train_samples": sweep.data.train_samples,
                  "samples": sweep.data.samples, "devices": sweep.devices if noisy else None,
                  "finetune_settings": id_settings(sweep.finetune) if point["finetune"] else None})


def _point(raw: object, where: str) -> dict:
    if not isinstance(raw, dict):
        raise RecipeError(f"{where}: a point is a mapping of {', '.join(AXES)}, got {short(raw)}")
    unknown = [k for k in raw if k not in AXES]
    if unknown:
        raise RecipeError(f"{where}: unknown axis {short(unknown)}; known: {', '.join(AXES)}")
    point = {**_DEFAULTS, **raw}
    for axis, rule in AXES.items():
        if axis not in point:
            raise RecipeError(f"{where}: missing {axis!r}")
        try:
            point[axis] = check_value(rule, axis, point[axis])
        except ConfigError as e:
            raise RecipeError(f"{where}: {e}") from None
    return point


def _floor(raw: object, where: str, points: list[dict]) -> Floor:
    if not isinstance(raw, dict) or set(raw) - {"point", "metric", "min", "min_relative_to_float"}:
        raise RecipeError(f"{where}: keys are point, metric, min or min_relative_to_float; got {short(raw)}")
    if raw.get("metric") not in METRICS:
        raise RecipeError(f"{where}: metric must be one of {METRICS}, got {short(raw.get('metric'))}")
    if ("min" in raw) == ("min_relative_to_float" in raw):
        raise RecipeError(f"{where}: give exactly one of 'min' or 'min_relative_to_float'")
    key = "min" if "min" in raw else "min_relative_to_float"
    try:
        bound = check_value(Rule("float", "floor"), key, raw[key])
    except ConfigError as e:
        raise RecipeError(f"{where}: {e}") from None
    if not isinstance(raw.get("point"), dict) or set(raw["point"]) - set(AXES):
        raise RecipeError(f"{where}: point must be a mapping of axes {', '.join(AXES)}")
    point = {}
    for k, v in raw["point"].items():
        try:
            point[k] = check_value(AXES[k], k, v)
        except ConfigError as e:
            raise RecipeError(f"{where}: point: {e}") from None
    if not any(all(p[k] == v for k, v in point.items()) for p in points):
        raise RecipeError(f"{where}: point {point} matches no point of the sweep")
    return Floor(point=point, metric=raw["metric"], **{key: bound})


def _grid_points(grid: object, path: str) -> list[dict]:
    if not isinstance(grid, dict) or set(grid) - set(AXES):
        raise RecipeError(f"{path}: grid must map axes {', '.join(AXES)} to lists, got {short(grid)}")
    axes = {k: (v if isinstance(v, list) else [v]) for k, v in grid.items()}
    for axis, values in axes.items():
        if not values:
            raise RecipeError(f"{path}: grid: {axis} is an empty list")
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]


def parse_sweep(data: object, path: str) -> Sweep:
    """Validate a sweep recipe before any training; errors name ``path`` and the key."""
    shared, own = split_keys(data, path, _OWN_KEYS)
    if ("grid" in own) == ("points" in own):
        raise RecipeError(f"{path}: give exactly one of 'grid' or 'points'")
    try:
        finetune = FinetuneOptions.from_mapping(own.get("finetune", {}), f"{path}: finetune")
        backend_samples = check_value(rule_of(DeployConfig, "backend_samples"), "backend_samples",
                                      own.get("backend_samples", 0))
        devices = check_value(rule_of(NoiseConfig, "devices"), "devices", own.get("devices", 3))
        execution = ExecutionConfig.from_mapping(own.get("execution", {}), f"{path}: execution")
    except ConfigError as e:
        raise RecipeError(f"{path}: {e}" if not str(e).startswith(path) else str(e)) from None
    sweep = parse_pipeline(shared, path, Sweep, finetune=finetune, backend_samples=backend_samples,
                           devices=devices, execution=execution)
    which = "grid" if "grid" in own else "points"
    raw = _grid_points(own["grid"], path) if which == "grid" else \
        (own["points"] if isinstance(own["points"], list) else [own["points"]])
    sweep.points = [_point(p, f"{path}: {which if which == 'grid' else f'points[{i}]'}") for i, p in enumerate(raw)]
    if not sweep.points:
        raise RecipeError(f"{path}: points: the sweep has no points")
    seen = set()
    for point in sweep.points:
        key = tuple(point[a] for a in AXES)
        if key in seen:
            raise RecipeError(f"{path}: {which}: point {point} appears twice")
        seen.add(key)
        try:
            sweep.target.check_bits(point["bits"], f"{path}: ")
            sweep.target.check_steps([point["steps"]] * (sweep.n_hidden + 1), f"{path}: ")
        except TargetError as e:
            raise RecipeError(str(e)) from None
    floors = own.get("floors") or []
    if not isinstance(floors, list):
        raise RecipeError(f"{path}: floors must be a list, got {short(floors)}")
    sweep.floors = [_floor(f, f"{path}: floors[{i}]", sweep.points) for i, f in enumerate(floors)]
    return sweep


def read_points(out: Path) -> list[dict]:
    """Finished points of a sweep directory (``points.jsonl``), in the order they finished; a later
    record of an id supersedes an earlier one (the point ran again after its inputs changed).

    An unfinished last line (an append cut short: no newline after it) is left out with a warning;
    any other line that is not a JSON object is an error naming the file and line. A points file
    that is a link, a FIFO or larger than :data:`MAX_POINTS_BYTES` is refused."""
    file = Path(out) / POINTS
    if not file.exists() and not file.is_symlink():
        return []
    try:
        text = read_file(file, HwtuneError, "points file", MAX_POINTS_BYTES, follow=False).decode()
    except UnicodeDecodeError as e:
        raise HwtuneError(f"{file}: unreadable ({e})") from None
    lines = text.splitlines()
    records = {}
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as e:
            if n == len(lines) and not text.endswith("\n"):
                print(f"sweep: {file}: line {n} is unfinished (interrupted append); left out", file=sys.stderr)
                break
            raise HwtuneError(f"{file}: line {n} is not a JSON record ({str(e)[:100]})") from None
        if not (isinstance(record, dict) and isinstance(record.get("id"), str)):
            raise HwtuneError(f"{file}: line {n} is not a point record (a JSON object with an 'id')")
        records.pop(record["id"], None)
        records[record["id"]] = record
    return list(records.values())


def _drop_unfinished_line(out: Path) -> None:
    """Cut an unfinished last line off ``points.jsonl`` so that the next append starts a fresh line."""
    from hwtune.atomic import atomic_write_text

    file = out / POINTS
    text = read_file(file, HwtuneError, "points file", MAX_POINTS_BYTES, follow=False).decode(errors="replace") \
        if file.exists() or file.is_symlink() else ""
    if text and not text.endswith("\n"):
        atomic_write_text(file, text[:text.rfind("\n") + 1])


#: Files a sweep rewrites in its directory (points.jsonl is only appended to); hwtune.report adds its plots.
REWRITTEN = ("points.csv", SUMMARY, "report.md")

CSV_COLUMNS = ["id", *AXES, *METRICS, "torch_emulator_agreement", "synaptic_events_per_sample", "latency_steps",
               "backend_identical", "backend_samples"]


def _append_point(out: Path, record: dict) -> None:
    from hwtune.atomic import atomic_write_text

    fd = open_regular(out / POINTS, HwtuneError, "points file", follow=False,
                      flags=os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    with os.fdopen(fd, "a") as f:
        f.write(json.dumps(record, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())
    rows = read_points(out)
    lines = [",".join(CSV_COLUMNS)]
    for row in rows:
        lines.append(",".join("" if row.get(c) is None else str(row.get(c)) for c in CSV_COLUMNS))
    atomic_write_text(out / "points.csv", "\n".join(lines) + "\n")


def _breaks(floor: Floor, records: list[dict]) -> list[str]:
    """How the finished points break ``floor``, as 'point: metric value < floor' lines (empty when it
    holds); a floor that matches no finished point is broken."""
    matches = [r for r in records if all(r.get(k) == v for k, v in floor.point.items())]
    if not matches:
        return [f"floor {floor.point} {floor.metric}: no finished point matches"]
    return [f"point {floor.point} ({r['id']}): {floor.metric} = {r.get(floor.metric)} < floor {floor.threshold(r):.4f}"
            for r in matches if r.get(floor.metric) is None or r[floor.metric] < floor.threshold(r)]


def broken_floors(sweep: Sweep, records: list[dict]) -> list[str]:
    """Every floor a finished point breaks (:func:`_breaks`; empty when all hold)."""
    return [line for floor in sweep.floors for line in _breaks(floor, records)]


def floors_held(sweep: Sweep, records: list[dict]) -> int:
    """How many of the sweep's floors every finished point holds."""
    return sum(not _breaks(floor, records) for floor in sweep.floors)


def base_dir(sweep: Sweep) -> Path:
    """Directory of the base model: the loaded one, or ``out/base-<hash of model settings, dataset, seed>``."""
    if sweep.load is not None:
        return sweep.load
    return sweep.out / f"base-{settings_hash(base_settings(sweep))}"


def base_model(sweep: Sweep, data):
    """The float TTFS base model: loaded, or trained once and cached in :func:`base_dir`."""
    from hwtune import io, workflow

    path = base_dir(sweep)
    if sweep.train is not None and not (path / io.CONFIG).exists():
        net, _ = workflow.train_model(sweep.train, data, sweep.seed)
        io.save(net, path)
        return net
    net = io.load(path)
    try:
        workflow.check_data(net, data)
    except HwtuneError as e:
        raise HwtuneError(f"{path}: {e}" + (" (the sweep's cached base model: remove it, or sweep into a new --out, "
                                            "to train it again)" if sweep.train is not None else "")) from None
    workflow.check_split(net, data)
    if net.info.get("network", "ttfs") != "ttfs" or net.quant is not None:
        raise HwtuneError(f"{path}: a sweep starts from a float TTFS model; this one is "
                          f"{'quantized' if net.quant is not None else 'a ReLU net (hwtune convert it first)'}")
    return net


def point_model(sweep: Sweep, base, point: dict, ctx):
    """The quantized (and fine-tuned) copy of the base model that ``point`` evaluates."""
    from hwtune.passes import run_pass

    ft = sweep.finetune.replace(epochs=sweep.finetune.epochs if point["finetune"] else 0).to_dict()
    net, _ = run_pass(base, QuantizeConfig(bits=point["bits"], steps=point["steps"], input_steps=point["steps"], **ft), ctx)
    spec = NoiseSpec(jitter=point["jitter"], weight_mismatch=point["weight_mismatch"])
    if spec.any and point["finetune"]:
        net, _ = run_pass(net, NoiseConfig(jitter=spec.jitter, weight_mismatch=spec.weight_mismatch,
                                           devices=sweep.devices, **ft), ctx)
    return net


def run_point(sweep: Sweep, base, point: dict, ctx, float_accuracy: float) -> dict:
    """Quantize (and fine-tune) a copy of the base model for ``point``; evaluate it under its noise
    on the torch model and the emulator (the same held-out devices and trial draws)."""
    from hwtune import workflow
    from hwtune.passes.noise import evaluate_under_noise

    net = point_model(sweep, base, point, ctx)
    spec = NoiseSpec(jitter=point["jitter"], weight_mismatch=point["weight_mismatch"])
    artifact = workflow.export_model(net, sweep.target, data=ctx.data)
    x, y = ctx.test_split()
    record = {"id": point_id(sweep, point), **point, "seed": sweep.seed, "accuracy_float": float_accuracy,
              "torch_emulator_agreement": None, "backend_identical": None, "backend_samples": None}
    if spec.any:
        torch_eval = evaluate_under_noise(net, x, y, spec, sweep.devices, sweep.seed)
        emu = workflow.emulate_under_noise(artifact, x, y, spec, sweep.devices, sweep.seed)
        record.update(accuracy_torch=torch_eval["accuracy"], accuracy_torch_std=torch_eval["accuracy_std"],
                      accuracy_emulator=emu["accuracy"], devices=sweep.devices)
    clean, clean_pred = workflow.emulate_artifact(artifact, x, y)
    record.update(spikes_per_hidden_neuron=clean["spikes_per_hidden_neuron"],
                  synaptic_events_per_sample=clean["synaptic_events_per_sample"], latency_steps=clean["latency_steps"])
    if not spec.any:
        agreement = workflow.compare_with_torch(net, x, y, clean_pred)
        record.update(accuracy_torch=agreement["torch_accuracy"], accuracy_emulator=clean["accuracy"],
                      torch_emulator_agreement=agreement["torch_emulator_agreement"])
        if sweep.backend_samples:
            hw = workflow.compare_backend(artifact, x[:sweep.backend_samples])
            record["backend_identical"], record["backend_samples"] = hw["identical_spike_for_spike"], hw["samples"]
    return record


#: Files only a sweep writes: a manifest of an hwtune before sweeps recorded their format that lists
#: one of them marks a sweep directory (hwtune.atomic.marks).
LEGACY_MARKS = (SUMMARY, "points.csv")


def is_sweep_dir(path: Path) -> bool:
    """Whether ``path`` is a directory a sweep wrote: its manifest marks it (:data:`FORMAT`)."""
    from hwtune.atomic import marks, read_manifest

    return path.is_dir() and not path.is_symlink() and marks(read_manifest(path), FORMAT, LEGACY_MARKS)


@contextlib.contextmanager
def sweep_directory(out: Path, what: str = "sweep"):
    """Hold the sweep directory ``out`` for the block (hwtune.atomic.shared_directory): new, empty,
    or one a sweep wrote (resumed), never someone's files, one writer at a time. When the block
    fails (a full disk, Ctrl-C) before any point finished, what this run created is taken away."""
    from hwtune.atomic import claim, shared_directory

    with shared_directory(out, FORMAT, what, LEGACY_MARKS, keep=lambda: (out / POINTS).exists()):
        claim(out, REWRITTEN)
        yield out


def input_fingerprints(spec, data) -> dict:
    """sha256 of the content of everything a sweep's points read besides their settings: the base
    model's files (hwtune.io.fingerprint), the target spec (a target file edited under the same
    name changes it) and the data (hwtune.data.fingerprint)."""
    from hwtune import io
    from hwtune.data import fingerprint

    target = hashlib.sha256(json.dumps(spec.target.to_dict(), sort_keys=True, default=str).encode()).hexdigest()
    return {"base_model": io.fingerprint(base_dir(spec)), "target": target, "data": fingerprint(data)}


def changed_inputs(record: dict, inputs: dict) -> list[str]:
    """The inputs whose fingerprint differs between a finished point and now (all of them for a
    record without fingerprints, made by an hwtune before 0.4)."""
    recorded = record.get("inputs")
    if not isinstance(recorded, dict):
        return list(inputs)
    return [name for name, value in inputs.items() if recorded.get(name) != value]


def current_records(out: Path, ids: list[str], inputs: dict) -> list[dict]:
    """The finished points of ``ids`` in ``out`` made from the current ``inputs``."""
    wanted = set(ids)
    return [r for r in read_points(out) if r["id"] in wanted and not changed_inputs(r, inputs)]


def run_points(out: Path, fn, shared: dict, items: list, ids: list[str], execution: ExecutionConfig,
               desc: str, inputs: dict | None = None) -> list[dict]:
    """Run the items that have no record in ``out`` made from ``inputs`` (:func:`input_fingerprints`)
    yet, through ``execution``'s executor, and append each record, with ``inputs``, as it arrives;
    returns the failures (id, item, error) of ``on_error: continue``."""
    from hwtune import executors, progress

    inputs = inputs or {}
    _drop_unfinished_line(out)
    done = {r["id"]: r for r in read_points(out)}
    todo = []
    for item, i in zip(items, ids):
        changed = changed_inputs(done[i], inputs) if i in done else None
        if changed:
            progress.log(f"sweep: point {i} {item} ran on other inputs ({', '.join(changed).replace('_', ' ')} "
                         "changed since): running it again")
        if changed is None or changed:
            todo.append((item, i))
    if len(todo) < len(items):
        progress.log(f"sweep: skipped {len(items) - len(todo)} finished point(s) found in {out / POINTS}")
    id_of = {repr(item): i for item, i in todo}
    failures = []
    results = executors.run(execution.executor, fn, shared, [item for item, _ in todo], execution.threads,
                            execution.on_error, execution.address, execution.workers)
    for item, record in progress.bar(results, total=len(todo), desc=desc, unit="point"):
        if isinstance(record, executors.PointFailed):
            progress.log(f"sweep: point {id_of[repr(item)]} {item} failed: {record.error}")
            failures.append({"id": id_of[repr(item)], "item": item, "error": record.error})
        else:
            _append_point(out, {**record, "inputs": inputs})
    return failures


@contextlib.contextmanager
def running(spec, out, execution: ExecutionConfig | None):
    """(out, execution, data, base model, input fingerprints) of a sweep's or study's run, yielded
    inside its locked output directory (:func:`sweep_directory`) with ``execution.threads`` torch
    threads (the driver's work too: results depend on it); ``out`` and ``execution`` default to the spec's."""
    from hwtune.backends import check_backend_can_start
    from hwtune.data import load_dataset
    from hwtune.executors import torch_threads

    if out is not None:
        spec.out = Path(out)
    out, execution = spec.out, execution or spec.execution
    if getattr(spec, "backend_samples", 0):
        check_backend_can_start(spec.target.backend)
    with sweep_directory(out), torch_threads(execution.threads):
        data = load_dataset(spec.dataset, data_dir=spec.data.data_dir, split_seed=spec.data.split_seed)
        base = base_model(spec, data)
        yield out, execution, data, base, input_fingerprints(spec, data)


def _grid_point(shared: dict, point: dict) -> dict:
    """One grid point (a module-level function: Ray ships it to its workers)."""
    return run_point(shared["sweep"], shared["base"], point, shared["ctx"], shared["float_accuracy"])


def run_sweep(sweep: Sweep, seed: int | None = None, out: str | Path | None = None,
              execution: ExecutionConfig | None = None) -> dict:
    """Run every unfinished point; returns {'records', 'broken_floors', 'failures', 'out'}.

    ``out`` must be new, empty, or a sweep directory (resumed); one sweep writes there at a time.
    """
    from hwtune.atomic import write_json
    from hwtune.passes import PassContext
    from hwtune.provenance import provenance

    if seed is not None:
        sweep.seed = check_value(rule_of(PipelineHeader, "seed"), "seed", seed)
    with running(sweep, out, execution) as (out, execution, data, base, inputs):
        ctx = PassContext.for_net(base, data, sweep.target, sweep.seed, sweep.data.train_samples, sweep.data.samples)
        float_accuracy = ctx.evaluate(base)["accuracy"]
        shared = {"sweep": sweep, "base": base, "ctx": ctx, "float_accuracy": float_accuracy}
        ids = [point_id(sweep, p) for p in sweep.points]
        failures = run_points(out, _grid_point, shared, sweep.points, ids, execution, f"sweep {sweep.name}", inputs)
        records = current_records(out, ids, inputs)
        summary = {"sweep": sweep.path, "kind": "grid", "name": sweep.name, "target": sweep.target.name,
                   "dataset": sweep.dataset, "command": f"hwtune sweep {sweep.path} --seed {sweep.seed} --out {out}",
                   "model": {"load": str(sweep.load)} if sweep.load else {"train": sweep.train.to_dict()},
                   "base": str(base_dir(sweep)), "float_accuracy": float_accuracy, "points": len(records),
                   "broken_floors": broken_floors(sweep, records), "failures": failures,
                   "floors": len(sweep.floors), "floors_held": floors_held(sweep, records),
                   "execution": execution.to_dict(), "provenance": provenance(sweep.seed)}
        write_json(out / SUMMARY, summary)
    return {"records": records, "broken_floors": summary["broken_floors"], "failures": failures, "out": out,
            "floors": summary["floors"], "floors_held": summary["floors_held"]}
