"""Robustness studies: does noise-aware fine-tuning buy robustness, against a same-budget control?

A study recipe (``kind: robustness``, run by ``hwtune sweep``) names a base model, a quantization
(the *plain* arm), a fine-tuning budget, seeds, and one or more noise studies, each with the noise
the *noise-aware* arm trains under and the levels every arm is evaluated at:

    kind: robustness
    name: noise-fc2
    dataset: fashion-mnist
    target: loihi2
    model: {load: runs/fmnist-fc2}
    quantize: {bits: 4, steps: 16, epochs: 1, lr: 0.0001}        # plain: quantized and fine-tuned once
    finetune: {epochs: 3, lr: 0.0005, batch_size: 32}            # the budget of control and noise-aware
    seeds: [0, 1, 2]
    devices: 5                                                    # held-out device instances per level
    studies:
      - {name: jitter, train: {jitter: 0.5}, eval: {jitter: [0, 0.1, 0.3, 0.5, 1.0]}}
      - {name: weight mismatch, train: {weight_mismatch: 0.5}, eval: {weight_mismatch: [0, 0.2, 0.5]}}

Arms, per seed: *plain* (the quantized model), *control* (plain + the budget without noise) and
*noise-aware* (plain + the same budget under the study's training noise, a new device instance
every ``device_every`` batches; with ``window_search: true`` both fine-tuned arms first rescale their
hidden windows, hwtune.passes.noise.search_window_scale: the control by clean accuracy, the
noise-aware arm under its training noise). Every arm is evaluated at every level on ``devices`` held-out
device instances (hwtune.device_noise stream EVAL: never a training device), and at level 0 (clean: the
losses are measured from it, so a study whose levels omit 0 gets it added); the noise-aware model is
also run on the emulator at its training level with the same draws (the accuracies must agree).
One point per seed, appended to ``points.jsonl`` when done (resumable, like grid sweeps).

At each level the report gives, over seeds, mean +- std of each arm, the control's loss (its
clean minus its noisy accuracy), what noise-aware fine-tuning recovers (noise-aware minus
control), their ratio, and whether the difference exceeds 2 standard deviations of the per-seed
differences.
"""
from __future__ import annotations

import copy
import statistics
from dataclasses import dataclass, field

from hwtune.bundled import find_recipe
from hwtune.configs import (SEED_RULE, ExecutionConfig, FinetuneOptions, NoiseConfig, QuantizeConfig,
                            id_settings)
from hwtune.device_noise import NoiseSpec
from hwtune.errors import ConfigError, short
from hwtune.recipes import PipelineSpec, RecipeError, check_pass, parse_pipeline, split_keys
from hwtune.safepaths import check_name
from hwtune.settings import check_value, rule_of
from hwtune.sweep import (POINTS, SUMMARY, base_dir, base_settings, current_records, parse_sweep, run_points, running,
                          settings_hash)
from hwtune.yamlfile import read_yaml

ARMS = ("plain", "control", "noise-aware")
#: Smallest control loss (accuracy, 1 point) whose recovery ratio is reported: below it the ratio
#: divides by noise (e.g. -191.71 at a loss of 0.005 points).
MIN_LOSS_FOR_RATIO = 0.01
_OWN_KEYS = {"kind", "quantize", "finetune", "seeds", "devices", "device_every", "window_search", "studies",
             "execution"}


@dataclass
class NoiseStudy:
    """One noise kind: what the noise-aware arm trains under, and the levels of ``axis`` evaluated."""

    name: str
    train: NoiseSpec
    axis: str
    levels: list[float]

    def at(self, level: float) -> NoiseSpec:
        return NoiseSpec(**{self.axis: level})


@dataclass
class Study(PipelineSpec):
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    finetune: FinetuneOptions = field(default_factory=FinetuneOptions)
    seeds: list[int] = field(default_factory=lambda: [0])
    devices: int = 5
    device_every: int = 1
    window_search: bool = False
    studies: list[NoiseStudy] = field(default_factory=list)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)


def _study(raw: object, where: str) -> NoiseStudy:
    if not (isinstance(raw, dict) and set(raw) == {"name", "train", "eval"}):
        raise RecipeError(f"{where}: a study is {{name, train: {{noise}}, eval: {{one noise axis: [levels]}}}}, "
                          f"got {short(raw)}")
    try:
        check_name(raw["name"], "name")       # it names the study's plot file
    except ConfigError as e:
        raise RecipeError(f"{where}: {e}") from None
    try:
        train = NoiseSpec.from_mapping(raw["train"], f"{where}: train")
    except ConfigError as e:
        raise RecipeError(str(e)) from None
    if not train.any:
        raise RecipeError(f"{where}: train: the noise-aware arm needs some noise to train under")
    ev = raw["eval"]
    if not (isinstance(ev, dict) and len(ev) == 1 and next(iter(ev)) in NoiseSpec.field_names()):
        raise RecipeError(f"{where}: eval maps one noise setting ({', '.join(NoiseSpec.field_names())}) to levels, "
                          f"got {short(ev)}")
    (axis, levels), = ev.items()
    if not (isinstance(levels, list) and levels):
        raise RecipeError(f"{where}: eval: {axis} must be a non-empty list of levels")
    try:
        levels = [check_value(rule_of(NoiseSpec, axis), axis, v) for v in levels]
    except ConfigError as e:
        raise RecipeError(f"{where}: eval: {e}") from None
    if len(set(levels)) != len(levels):
        raise RecipeError(f"{where}: eval: {axis} lists a level twice")
    # the losses are measured from clean accuracy: level 0 is always evaluated, listed or not
    return NoiseStudy(name=raw["name"], train=train, axis=axis, levels=sorted({0.0, *levels}))


def parse_study(data: object, path: str) -> Study:
    """Validate a robustness-study recipe before any training; errors name ``path`` and the key."""
    shared, own = split_keys(data, path, _OWN_KEYS)
    try:
        quantize = QuantizeConfig.from_mapping(own.get("quantize", {}), f"{path}: quantize")
        finetune = FinetuneOptions.from_mapping(own.get("finetune", {}), f"{path}: finetune")
        devices = check_value(rule_of(NoiseConfig, "devices"), "devices", own.get("devices", 5))
        device_every = check_value(rule_of(NoiseConfig, "device_every"), "device_every", own.get("device_every", 1))
        window_search = check_value(rule_of(NoiseConfig, "window_search"), "window_search",
                                    own.get("window_search", False))
        execution = ExecutionConfig.from_mapping(own.get("execution", {}), f"{path}: execution")
        seeds = own.get("seeds", [0])
        if not (isinstance(seeds, list) and seeds):
            raise ConfigError(f"seeds must be a non-empty list of integers, got {short(seeds)}")
        seeds = [check_value(SEED_RULE, "seeds", s) for s in seeds]
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"seeds lists a seed twice: {seeds}")
    except ConfigError as e:
        raise RecipeError(str(e) if str(e).startswith(path) else f"{path}: {e}") from None
    study = parse_pipeline(shared, path, Study, quantize=quantize, finetune=finetune, seeds=seeds, devices=devices,
                           device_every=device_every, window_search=window_search, execution=execution)
    try:
        check_pass("quantize", quantize, study.target, study.n_hidden, f"{path}: quantize: ")
    except Exception as e:  # TargetError / RecipeError, both named
        raise RecipeError(str(e)) from None
    studies = own.get("studies")
    if not (isinstance(studies, list) and studies):
        raise RecipeError(f"{path}: studies must be a non-empty list")
    study.studies = [_study(s, f"{path}: studies[{i}]") for i, s in enumerate(studies)]
    names = [s.name for s in study.studies]
    if len(set(names)) != len(names):
        raise RecipeError(f"{path}: studies: a name appears twice ({names})")
    return study


def point_id(study: Study, seed: int) -> str:
    """Stable id of a seed's point: everything its result depends on."""
    return settings_hash({"kind": "robustness", "seed": seed, "base": base_settings(study), "dataset": study.dataset,
                  "target": study.target.name, "samples": study.data.samples, "train_samples": study.data.train_samples,
                  "quantize": id_settings(study.quantize), "finetune": id_settings(study.finetune), "devices": study.devices,
                  "device_every": study.device_every, **({"window_search": True} if study.window_search else {}),
                  "studies": [(s.name, s.train.to_dict(), s.axis, s.levels) for s in study.studies]})


def _seed_point(shared: dict, seed: int) -> dict:
    """One seed's point (a module-level function: Ray ships it to its workers)."""
    return run_seed(shared["study"], shared["base"], seed, shared["data"])


def run_study(study: Study, out=None, execution: ExecutionConfig | None = None) -> dict:
    """Run every unfinished seed; returns {'records', 'summaries', 'failures', 'out'} (the summaries
    also go to ``sweep.json``)."""
    from hwtune.atomic import write_json
    from hwtune.provenance import provenance

    with running(study, out, execution) as (out, execution, data, base, inputs):
        ids = [point_id(study, seed) for seed in study.seeds]
        failures = run_points(out, _seed_point, {"study": study, "base": base, "data": data}, study.seeds, ids,
                              execution, f"study {study.name}", inputs)
        records = current_records(out, ids, inputs)
        summaries = {s.name: summarize(records, s.name) for s in study.studies} if records else {}
        summary = {"sweep": study.path, "kind": "robustness", "name": study.name, "target": study.target.name,
                   "dataset": study.dataset, "command": f"hwtune sweep {study.path} --out {out}",
                   "model": {"load": str(study.load)} if study.load else {"train": study.train.to_dict()},
                   "base": str(base_dir(study)), "quantize": study.quantize.to_dict(),
                   "finetune": study.finetune.to_dict(), "window_search": search_settings() if study.window_search else None,
                   "seeds": study.seeds, "devices": study.devices, "samples": study.data.samples,
                   "train_samples": study.data.train_samples,
                   "studies": [{"name": s.name, "train": s.train.to_dict(), "axis": s.axis, "levels": s.levels}
                               for s in study.studies],
                   "points": len(records), "summaries": summaries, "window_scales": window_scales(records), "failures": failures,
                   "execution": execution.to_dict(), "provenance": provenance(study.seed)}
        write_json(out / SUMMARY, summary)
    return {"records": records, "summaries": summaries, "failures": failures, "out": out, "points_file": out / POINTS}


def run_seed(study: Study, base, seed: int, data) -> dict:
    """Train the three arms of one seed and evaluate each at every level of every study."""
    from hwtune import progress, workflow
    from hwtune.passes import PassContext, run_pass
    from hwtune.passes.noise import evaluate_under_noise, search_window_scale

    ctx = PassContext.for_net(base, data, study.target, seed, study.data.train_samples, study.data.samples)
    x, y = ctx.test_split()
    plain, _ = run_pass(base, study.quantize, ctx)
    control = copy.deepcopy(plain)   # fine-tuned below by ctx.finetune, not a pass
    control_search = search_window_scale(control, NoiseSpec(), *ctx.train_split(), seed) if study.window_search else None
    ctx.finetune(control, study.finetune, "control fine-tune")
    record = {"id": point_id(study, seed), "seed": seed, "studies": {}}
    for s in study.studies:
        aware, aware_record = run_pass(plain, NoiseConfig(**study.finetune.to_dict(), **s.train.to_dict(),
                                                          devices=study.devices, device_every=study.device_every,
                                                          window_search=study.window_search), ctx)
        curves = {}
        for arm, net in (("plain", plain), ("control", control), ("noise-aware", aware)):
            curves[arm] = []
            for level in s.levels:
                result = evaluate_under_noise(net, x, y, s.at(level), study.devices, seed) if level else \
                    {**workflow.evaluate_model(net, data, study.data.samples), "accuracy_std": 0.0}
                curves[arm].append({"level": level, "accuracy": result["accuracy"], "accuracy_std": result["accuracy_std"],
                                    "accuracies": result.get("accuracies", [result["accuracy"]]),
                                    "spikes_per_hidden_neuron": result["spikes_per_hidden_neuron"]})
            progress.log(f"seed {seed}, {s.name}, {arm}: " + ", ".join(
                f"{p['level']:g}: {100 * p['accuracy']:.2f} %" for p in curves[arm]))
        artifact = workflow.export_model(aware, study.target, data=data)
        torch_at = evaluate_under_noise(aware, x, y, s.train, study.devices, seed)["accuracy"]
        emu_at = workflow.emulate_under_noise(artifact, x, y, s.train, study.devices, seed)["accuracy"]
        record["studies"][s.name] = {"axis": s.axis, "train": s.train.to_dict(), "curves": curves,
                                     "check": {"torch": torch_at, "emulator": emu_at}}
        if study.window_search:
            record["studies"][s.name]["window_search"] = {"control": control_search,
                                                          "noise-aware": aware_record["window_search"]}
    return record


def search_settings() -> dict:
    """What the window search tries and scores on (hwtune.passes.noise), for the report."""
    from hwtune.passes.noise import SEARCH_DEVICES, SEARCH_SAMPLES, WINDOW_SCALES
    return {"scales": list(WINDOW_SCALES), "samples": SEARCH_SAMPLES, "devices": SEARCH_DEVICES}


def window_scales(records: list[dict]) -> dict:
    """Per study: the window scale each seed's fine-tuned arms chose (empty without window_search)."""
    scales: dict = {}
    for r in records:
        for name, study in r["studies"].items():
            if "window_search" in study:
                scales.setdefault(name, []).append(
                    {"seed": r["seed"], **{arm: found["window_scale"] for arm, found in study["window_search"].items()}})
    return scales


def summarize(study_records: list[dict], name: str) -> list[dict]:
    """Per level of study ``name``: each arm's mean and std over seeds, the control's loss, the
    recovery by noise-aware fine-tuning, their ratio and the 2-sigma test on per-seed differences."""
    rows = []
    curves = [r["studies"][name]["curves"] for r in study_records]
    clean_control = [c["control"][0]["accuracy"] for c in curves]        # levels are sorted, 0 always first
    for i, point in enumerate(curves[0]["control"]):
        row = {"level": point["level"], "seeds": len(curves)}
        for arm in ARMS:
            values = [c[arm][i]["accuracy"] for c in curves]
            row[arm] = statistics.fmean(values)
            row[f"{arm}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        diffs = [c["noise-aware"][i]["accuracy"] - c["control"][i]["accuracy"] for c in curves]
        losses = [clean - c["control"][i]["accuracy"] for clean, c in zip(clean_control, curves)]
        row["plain_loss"] = statistics.fmean(c["plain"][0]["accuracy"] - c["plain"][i]["accuracy"] for c in curves)
        row["control_loss"] = statistics.fmean(losses)
        row["recovered"] = statistics.fmean(diffs)
        row["recovered_std"] = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
        row["recovery_ratio"] = (row["recovered"] / row["control_loss"] if row["control_loss"] >= MIN_LOSS_FOR_RATIO
                                 else None)
        row["beyond_2_std"] = len(diffs) > 1 and row["recovered"] > 2 * row["recovered_std"]
        rows.append(row)
    return rows


def load_sweep(path):
    """A grid sweep (hwtune.sweep) or a robustness study (``kind: robustness``); a file, or a shipped
    recipe by name (hwtune.bundled.find_recipe). Here, not in hwtune.sweep: a study builds on the
    sweep's machinery, so only this module knows both kinds (no import circle)."""
    path = find_recipe(path)
    data = read_yaml(path, RecipeError, "sweep recipe")
    kind = data.get("kind", "grid") if isinstance(data, dict) else "grid"
    if kind == "robustness":
        return parse_study(data, str(path))
    if kind != "grid":
        raise RecipeError(f"{path}: kind = {short(kind)} must be 'grid' or 'robustness'")
    return parse_sweep(data, str(path))
