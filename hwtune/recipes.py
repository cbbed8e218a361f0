"""Recipes: a YAML pipeline (train or load -> passes -> export -> evaluate) run end to end.

Everything in a recipe is validated before any training: unknown keys, unknown passes, bits or
steps the target cannot hold all fail with the recipe's path in the message.

    name: quickstart
    seed: 0
    dataset: digits                # or {name: fashion-mnist, data_dir: ...}
    target: loihi2
    out: runs/quickstart
    model: {train: {arch: fc-small, epochs: 30, lr: 0.002, batch_size: 16}}   # or {load: DIR}
    passes:
      - quantize: {bits: 4, steps: 16, epochs: 5}
      - noise: {jitter: 0.05, epochs: 1}
    deploy: {lava_samples: 20}     # export for the target, run emulator (+ Lava) and compare
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from hwtune import io, workflow
from hwtune.data import load_dataset
from hwtune.passes import PassError, parse_pass
from hwtune.provenance import provenance
from hwtune.target import TargetError, TargetSpec, load_target
from hwtune.train import TrainConfig
from hwtune.yamlfile import read_yaml


class RecipeError(ValueError):
    """A malformed recipe; the message names the file and the key."""


_TOP_KEYS = {"name", "seed", "dataset", "target", "out", "model", "passes", "deploy", "train_samples",
             "eval_samples", "description"}
_TRAIN_KEYS = {"arch", "epochs", "lr", "batch_size", "dtype", "network"}
_DEPLOY_KEYS = {"lava_samples", "emulator_samples", "mode"}


@dataclass
class PipelineSpec:
    """What recipes and sweeps share: where they come from, data, target, output, base model."""

    path: str
    name: str
    seed: int
    dataset: dict
    target: TargetSpec
    out: Path
    model: dict


@dataclass
class Recipe(PipelineSpec):
    passes: list = field(default_factory=list)   # (name, config) pairs
    deploy: dict | None = None
    train_samples: int | None = None
    eval_samples: int | None = None


def _mapping(value, where: str, allowed: set[str]) -> dict:
    if not isinstance(value, dict):
        raise RecipeError(f"{where} must be a mapping, got {value!r}")
    unknown = set(value) - allowed
    if unknown:
        raise RecipeError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(allowed)}")
    return value


def parse_model_section(model: object, path: str) -> dict:
    """The ``model`` section of a recipe or sweep: {train: {arch, epochs, ...}} or {load: DIR}."""
    model = _mapping(model, f"{path}: model", {"train", "load"})
    if len(model) != 1:
        raise RecipeError(f"{path}: model needs exactly one of 'train' or 'load'")
    if "train" in model:
        _mapping(model["train"], f"{path}: model.train", _TRAIN_KEYS)
    return model


def train_from_section(settings: dict, data, seed: int):
    """(net, report) of ``workflow.train_model`` for a recipe's ``model.train`` settings."""
    settings = dict(settings)
    arch, dtype = settings.pop("arch", "fc"), settings.pop("dtype", "float32")
    network = settings.pop("network", "ttfs")
    return workflow.train_model(arch, data, TrainConfig(seed=seed, **settings), network, dtype)


def parse_recipe(data: object, path: str) -> Recipe:
    """Validate a recipe mapping; every error names ``path`` and the offending key."""
    top = _mapping(data, f"{path}", _TOP_KEYS)
    for key in ("name", "dataset", "target", "model"):
        if key not in top:
            raise RecipeError(f"{path}: missing key {key!r}")
    dataset = top["dataset"] if isinstance(top["dataset"], dict) else {"name": top["dataset"]}
    _mapping(dataset, f"{path}: dataset", {"name", "data_dir"})
    try:
        target = load_target(str(top["target"]))
    except TargetError as e:
        raise RecipeError(f"{path}: target: {e}") from None
    model = parse_model_section(top["model"], path)
    passes = []
    for i, item in enumerate(top.get("passes") or []):
        where = f"{path}: passes[{i}]: "
        if not isinstance(item, dict) or len(item) != 1:
            raise RecipeError(f"{where}each pass is a mapping {{name: settings}}, got {item!r}")
        (name, settings), = item.items()
        try:
            config = parse_pass(name, settings, where)
            if getattr(config, "bits", None) is not None:
                target.check_bits(config.bits, where)
            steps = getattr(config, "steps", None)
            if steps is not None:
                target.check_steps([steps] if isinstance(steps, int) else list(steps), where)
        except (PassError, TargetError, TypeError) as e:
            raise RecipeError(str(e) if str(e).startswith(path) else f"{where}{e}") from None
        passes.append((name, config))
    deploy = top.get("deploy")
    if deploy is not None:
        _mapping(deploy, f"{path}: deploy", _DEPLOY_KEYS)
    return Recipe(path=path, name=str(top["name"]), seed=int(top.get("seed", 0)), dataset=dataset, target=target,
                  out=Path(top.get("out", f"runs/{top['name']}")), model=model, passes=passes, deploy=deploy,
                  train_samples=top.get("train_samples"), eval_samples=top.get("eval_samples"))


def load_recipe(path: str | Path) -> Recipe:
    return parse_recipe(read_yaml(path, RecipeError, "recipe"), str(path))


def run_recipe(recipe: Recipe, seed: int | None = None, out: str | Path | None = None) -> dict:
    """Run the pipeline; writes each stage's model under ``out`` and ``results.json``."""
    seed = recipe.seed if seed is None else seed
    out = Path(out) if out is not None else recipe.out
    data = load_dataset(recipe.dataset["name"], data_dir=recipe.dataset.get("data_dir"), split_seed=seed)
    stages = []
    if "train" in recipe.model:
        net, report = train_from_section(recipe.model["train"], data, seed)
        stages.append({"stage": "train", **report["evaluation"]})
    else:
        net = io.load(recipe.model["load"])
    io.save(net, out / "00-model")
    ctx = workflow.pass_context(net, recipe.target, recipe.dataset["name"], recipe.dataset.get("data_dir"), seed,
                                recipe.train_samples, recipe.eval_samples)
    for i, (name, config) in enumerate(tqdm(recipe.passes, desc="passes", leave=False), start=1):
        record = workflow.apply_pass(net, config, ctx)
        print(workflow.summary_line(record))
        io.save(net, out / f"{i:02d}-{name}")
        stages.append({"stage": name, **{k: v for k, v in record.items() if k not in ("finetune", "provenance")}})
    results = {"recipe": recipe.path, "name": recipe.name, "target": recipe.target.name,
               "dataset": recipe.dataset["name"], "arch": net.info.get("training", {}).get("arch"), "stages": stages,
               "provenance": provenance(seed)}
    if recipe.deploy is not None:
        results["deploy"] = workflow.deploy(net, recipe.target, ctx.data, out / "artifact", seed=seed,
                                            **recipe.deploy)
    workflow.write_json(out / "results.json", results)
    return results
