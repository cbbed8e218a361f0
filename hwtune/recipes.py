"""Recipes: a YAML pipeline (train or load -> passes -> export -> emulate, Lava) run end to end.

Everything in a recipe is validated before any training, with the same settings dataclasses as
the CLI (hwtune.configs): types, finite numbers and ranges of every value, unknown keys and passes,
bits and steps the target cannot hold, a steps list that does not match the net's hidden layers,
a model to load that cannot be read, and the output directory (never someone's files).

    name: quickstart
    seed: 0
    dataset: digits                # or {name: fashion-mnist, data_dir: ...}, {name: mine.npz}, {name: digits, split_seed: 1}
    target: loihi2
    out: runs/quickstart
    model: {train: {arch: fc-small, epochs: 30, lr: 0.002, batch_size: 16}}   # or {load: DIR}
    passes:
      - quantize: {bits: 4, steps: 16, epochs: 5}
      - noise: {jitter: 0.05, epochs: 1}
    deploy: {backend_samples: 20}  # export for the target, run the emulator (+ Lava) and compare
    train_samples: 500             # optional: fine-tune on a random subset
    samples: 100                   # optional: evaluate on the first N test samples

A run writes its whole output directory atomically: ``00-model``, one model per pass, ``artifact``
and ``results.json``, or nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hwtune.architectures import n_hidden as hidden_layers
from hwtune.architectures import preset
from hwtune.bundled import find_recipe
from hwtune.settings import Settings, check_value, setting
from hwtune.configs import (DATASET_SHAPES, DATASETS, MAX_SEED, MAX_SPLIT_SEED, PASS_CONFIGS, DataConfig, DeployConfig,
                            TrainConfig, check_data_dir, check_dataset_name)
from hwtune.errors import ConfigError, HwtuneError, short
from hwtune.safepaths import check_name
from hwtune.target import TargetError, TargetSpec, load_target, model_differences, target_from_record
from hwtune.yamlfile import read_yaml

RESULTS = "results.json"


class RecipeError(HwtuneError, ValueError):
    """A malformed recipe; the message names the file and the key."""


@dataclass(frozen=True)
class DatasetSection(Settings):
    name: str = setting("digits", "str", f"dataset: {', '.join(DATASETS)}, or PATH.npz")
    data_dir: str | None = setting(None, "str", "directory of the dataset files", optional=True)
    split_seed: int = setting(0, "int", "seed of the digits train/test split", lo=0, hi=MAX_SPLIT_SEED)

    def check(self) -> None:
        check_dataset_name(self.name, "name")
        check_data_dir(self.name, self.data_dir)

    def sample_shape(self) -> tuple[int, ...]:
        """(C, H, W) of one sample (an .npz file is read for it)."""
        if self.name in DATASET_SHAPES:
            return DATASET_SHAPES[self.name]
        from hwtune.data import load_npz
        return tuple(load_npz(self.name).meta["shape"])


@dataclass(frozen=True)
class PipelineHeader(Settings):
    """The scalar keys recipes and sweeps share."""

    name: str = setting("", "str", "recipe name")
    description: str = setting("", "str", "what the recipe is for")
    seed: int = setting(0, "int", "random seed (batches, noise; the digits split: dataset.split_seed)", lo=0,
                        hi=MAX_SEED)
    target: str = setting("loihi2", "str", "target name, alias or YAML path")
    out: str | None = setting(None, "str", "output directory", optional=True, default_text="runs/NAME")
    train_samples: int | None = setting(None, "int", "fine-tune on a random subset of this many training samples",
                                        "samples", lo=1, optional=True)
    samples: int | None = setting(None, "int", "evaluate on the first N test samples", "samples", lo=1,
                                  optional=True)

    def check(self) -> None:
        check_name(self.name, "name")        # the default output directory is runs/NAME
        if self.out is not None and not self.out.strip():
            raise ConfigError(f"out = {self.out!r} must be a directory path (leave it out for runs/{self.name})")


@dataclass
class PipelineSpec:
    """What recipes and sweeps share, validated: where they come from, data, target, output, base model.

    ``train``: the TrainConfig of a model trained from scratch, or None; ``load``: a model directory.
    """

    path: str
    name: str
    seed: int
    data: DataConfig
    target: TargetSpec
    out: Path
    train: TrainConfig | None = None
    load: Path | None = None
    n_hidden: int = 0
    loaded_target: dict | str | None = None   # the target the loaded model records (hwtune.json), if any

    @property
    def dataset(self) -> str:
        return self.data.dataset


@dataclass
class Recipe(PipelineSpec):
    passes: list = field(default_factory=list)   # (name, config) pairs
    deploy: DeployConfig | None = None


def split_keys(data: object, path: str, own: set[str]) -> tuple[dict, dict]:
    """(header keys, the file's own keys) of a recipe or sweep mapping; unknown keys are refused."""
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping, got {type(data).__name__}")
    shared = set(PipelineHeader.field_names()) | {"dataset", "model"}
    unknown = [k for k in data if k not in shared | own]
    if unknown:
        raise RecipeError(f"{path}: unknown key(s) {', '.join(map(str, unknown))}; known: "
                          f"{', '.join(sorted(shared | own))}")
    for key in ("name", "dataset", "model"):
        if key not in data:
            raise RecipeError(f"{path}: missing key {key!r}")
    return {k: v for k, v in data.items() if k in shared}, {k: v for k, v in data.items() if k in own}


def parse_pipeline(data: dict, path: str, cls=PipelineSpec, **extra) -> PipelineSpec:
    """Validate what recipes and sweeps share (header, dataset, target, model) into ``cls``."""
    try:
        header = PipelineHeader.from_mapping({k: v for k, v in data.items() if k not in ("dataset", "model")}, path)
        raw = data["dataset"] if isinstance(data["dataset"], dict) else {"name": data["dataset"]}
        dataset = DatasetSection.from_mapping(raw, f"{path}: dataset")
    except ConfigError as e:
        raise RecipeError(str(e)) from None
    try:
        target = load_target(header.target)
    except TargetError as e:
        raise RecipeError(f"{path}: target: {e}") from None
    model = data["model"]
    if not (isinstance(model, dict) and len(model) == 1 and set(model) <= {"train", "load"}):
        raise RecipeError(f"{path}: model must be {{train: {{settings}}}} or {{load: DIR}}, got {short(model)}")
    train = load = loaded_target = None
    if "train" in model:
        try:
            train = TrainConfig.from_mapping(model["train"], f"{path}: model.train")
        except ConfigError as e:
            raise RecipeError(str(e)) from None
        try:
            arch = preset(train.arch, dataset.sample_shape(), 10)
        except HwtuneError as e:   # an unreadable .npz
            raise RecipeError(f"{path}: dataset: {e}") from None
    else:
        if not isinstance(model["load"], str):
            raise RecipeError(f"{path}: model.load must be a model directory, got {short(model['load'])}")
        load = Path(model["load"])
        config = _model_config(load, path)
        arch, loaded_target = config["arch"], config.get("target")
    n_hidden = hidden_layers(arch)
    data_cfg = DataConfig(dataset=dataset.name, data_dir=dataset.data_dir, split_seed=dataset.split_seed,
                          train_samples=header.train_samples, samples=header.samples)
    return cls(path=path, name=header.name, seed=header.seed, data=data_cfg, target=target,
               out=Path(header.out or f"runs/{header.name}"), train=train, load=load, n_hidden=n_hidden,
               loaded_target=loaded_target, **extra)


def _model_config(directory: Path, path: str) -> dict:
    from hwtune import io  # reads hwtune.json only: no torch work

    try:
        return io._read_config(directory)
    except io.ModelFileError as e:
        raise RecipeError(f"{path}: model.load: {e}") from None


def check_loaded_target(spec: PipelineSpec, first_pass: str | None) -> None:
    """The rule of the CLI (hwtune.workflow.resolve_target) before any work: a loaded model prepared
    for another target than the recipe's is refused unless the recipe's first pass re-quantizes it."""
    if spec.loaded_target is None or first_pass == "quantize":
        return
    recorded = target_from_record(spec.loaded_target, f"{spec.path}: model.load {spec.load}")
    diff = model_differences(recorded, spec.target)
    if diff:
        raise RecipeError(f"{spec.path}: model.load {spec.load} is prepared for target {recorded.name!r}, not the "
                          f"recipe's {spec.target.name!r} ({'; '.join(diff)}); start the passes with a quantize "
                          f"pass to re-quantize it for {spec.target.name}")


def check_pass(name: str, config, target: TargetSpec, n_hidden: int, where: str) -> None:
    """Bits and steps of a pass config against the target and the net's hidden layers."""
    bits = getattr(config, "bits", None)
    steps, input_steps = config.grid_request() if hasattr(config, "grid_request") else \
        (getattr(config, "steps", None), getattr(config, "input_steps", None))
    if bits is not None:
        target.check_bits(bits, where)
    if isinstance(steps, list) and len(steps) != n_hidden:
        raise RecipeError(f"{where}{name}: steps lists {len(steps)} windows but the net has {n_hidden} hidden "
                          "layer(s)")
    if steps is not None:
        grid = [input_steps or target.time.input_steps,
                *(steps if isinstance(steps, list) else [steps] * n_hidden)]
        target.check_steps(grid, where)


def parse_passes(items, path: str, target: TargetSpec, n_hidden: int) -> list:
    if items is None:
        return []
    if not isinstance(items, list):
        raise RecipeError(f"{path}: passes must be a list of {{name: settings}}, got {short(items)}")
    passes = []
    for i, item in enumerate(items):
        where = f"{path}: passes[{i}]: "
        if not isinstance(item, dict) or len(item) != 1:
            raise RecipeError(f"{where}each pass is a mapping {{name: settings}}, got {short(item)}")
        (name, settings), = item.items()
        if name not in PASS_CONFIGS:
            raise RecipeError(f"{where}unknown pass {short(name)}; known: {', '.join(PASS_CONFIGS)}")
        try:
            config = PASS_CONFIGS[name].from_mapping(settings, f"{path}: passes[{i}].{name}")
            check_pass(name, config, target, n_hidden, where)
        except (ConfigError, TargetError) as e:
            raise RecipeError(str(e) if str(e).startswith(path) else f"{where}{e}") from None
        passes.append((name, config))
    return passes


def parse_recipe(data: object, path: str) -> Recipe:
    """Validate a recipe mapping; every error names ``path`` and the offending key."""
    shared, own = split_keys(data, path, {"passes", "deploy"})
    recipe = parse_pipeline(shared, path, Recipe)
    recipe.passes = parse_passes(own.get("passes"), path, recipe.target, recipe.n_hidden)
    try:
        check_loaded_target(recipe, recipe.passes[0][0] if recipe.passes else None)
    except TargetError as e:
        raise RecipeError(f"{path}: model.load: {e}") from None
    if own.get("deploy") is not None:
        try:
            recipe.deploy = DeployConfig.from_mapping(own["deploy"], f"{path}: deploy")
        except ConfigError as e:
            raise RecipeError(str(e)) from None
    return recipe


def load_recipe(path: str | Path) -> Recipe:
    """A recipe file, or a shipped recipe by name (``quickstart``: hwtune.bundled.find_recipe)."""
    path = find_recipe(path)
    return parse_recipe(read_yaml(path, RecipeError, "recipe"), str(path))


def base_model(spec: PipelineSpec, data):
    """(net, train report or None): trained from the recipe's settings, or loaded."""
    from hwtune import io, workflow

    if spec.train is not None:
        return workflow.train_model(spec.train, data, spec.seed)
    net = io.load(spec.load)
    workflow.check_data(net, data)
    workflow.check_split(net, data)
    return net, None


def run_recipe(recipe: Recipe, seed: int | None = None, out: str | Path | None = None, force: bool = False) -> dict:
    """Run the pipeline into ``out`` (checked first: never someone's files), atomically; returns
    the results (also written to ``out/results.json``)."""
    from hwtune import io, progress, workflow
    from hwtune.atomic import atomic_directory, check_output, write_json
    from hwtune.backends import check_backend_can_start
    from hwtune.data import load_dataset
    from hwtune.passes import PassContext, record_lines, run_pass
    from hwtune.provenance import provenance

    if seed is not None:
        recipe.seed = check_value(PipelineHeader.__dataclass_fields__["seed"].metadata["rule"], "seed", seed)
    out = Path(out) if out is not None else recipe.out
    dest = check_output(out, RESULTS, force, inputs=[recipe.load] if recipe.load else [], what="recipe run")
    if recipe.deploy is not None and recipe.deploy.backend_samples:
        check_backend_can_start(recipe.target.backend)
    data = load_dataset(recipe.dataset, data_dir=recipe.data.data_dir, split_seed=recipe.data.split_seed)
    with atomic_directory(dest) as tmp:
        net, report = base_model(recipe, data)
        stages = [{"stage": "train" if report else "load", **workflow.evaluate_model(net, data, recipe.data.samples)}]
        io.save(net, tmp / "00-model")
        ctx = PassContext.for_net(net, data, recipe.target, recipe.seed, recipe.data.train_samples,
                                  recipe.data.samples)
        for i, (name, config) in enumerate(recipe.passes, start=1):
            net, record = run_pass(net, config, ctx)
            progress.log(record_lines(record)[0])
            io.save(net, tmp / f"{i:02d}-{name}")
            stages.append({"stage": name, **{k: v for k, v in record.items() if k not in ("finetune", "provenance")}})
        results = {"recipe": recipe.path, "name": recipe.name, "out": str(out), "target": recipe.target.name,
                   "dataset": recipe.dataset, "arch": net.info.get("training", {}).get("arch"), "stages": stages,
                   "provenance": provenance(recipe.seed)}
        if recipe.deploy is not None:
            artifact = workflow.export_model(net, recipe.target, source=str(out), data=ctx.data)
            artifact.save(tmp / "artifact")
            results["deploy"] = workflow.deploy(net, artifact, ctx.data, recipe.deploy)
            if "resources" in artifact.meta:
                results["resources"] = artifact.meta["resources"]
            results["summary"] = deploy_summary(results["deploy"])
            results["failed_checks"] = workflow.deploy_failures(results["deploy"])
        write_json(tmp / RESULTS, results)
    return results


def deploy_summary(report: dict) -> list[str]:
    """Human-readable lines of a deploy report."""
    emu = report["emulator"]
    lines = [f"emulator: accuracy {100 * emu['accuracy']:.2f} % on {emu['n']} test samples, "
             f"{emu['spikes_per_hidden_neuron']:.3f} spikes/hidden neuron, {emu['latency_steps']} steps, "
             f"{emu['synaptic_events_per_sample']:.0f} synaptic events/sample",
             f"torch quantized model: accuracy {100 * report['torch_accuracy']:.2f} %, "
             f"agrees with the emulator on {100 * report['torch_emulator_agreement']:.2f} % of predictions"]
    if "backend" in report:
        hw = report["backend"]
        lines.append(f"{hw['backend']} backend == emulator spike for spike on {hw['identical_spike_for_spike']}/"
                     f"{hw['samples']} samples")
    return lines
