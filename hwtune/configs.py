"""Every user setting of hwtune, defined once (hwtune.settings): the CLI flags, recipe sections,
sweep axes and the library's keyword arguments are all built from these dataclasses.

Torch-free, so that ``hwtune --help`` starts fast.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from hwtune.architectures import PRESET_HELP, PRESETS
from hwtune.settings import Rule, Settings, like, setting
from hwtune.errors import ConfigError
from hwtune.device_noise import NoiseSpec
from hwtune.numerics import MAX_STEPS, WEIGHT_BITS

#: Dataset names and the shape (C, H, W) of one sample.
DATASET_SHAPES = {"digits": (1, 8, 8), "fashion-mnist": (1, 28, 28), "mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
DATASETS = tuple(DATASET_SHAPES)
AUGMENTATIONS = ("none", "shift-flip")
DEVICES = ("cpu", "cuda", "auto")
#: Learning-rate schedules (hwtune.training.make_optimizer).
SCHEDULES = ("decay", "cosine")
#: Most weights, or neurons, one layer of a model or artifact read from a file may have, checked
#: before anything is allocated: 2**26 = 67 M (512 MiB as int64), about 9 x the synapses one Loihi 2
#: chip stores (128 cores x 1 Mbit / 18 bits = 7.5 M).
MAX_LAYER_ENTRIES = 2 ** 26
#: Most neurons and weights of all layers of a model or artifact together (4 full layers): a file of a
#: few kB cannot make hwtune allocate 40 of them.
MAX_MODEL_ENTRIES = 2 ** 28
#: Largest JSON file hwtune reads (a model's hwtune.json, an artifact's artifact.json, a sweep.json).
MAX_JSON_BYTES = 2 ** 26
#: Most values of all arrays of an .npz dataset together (2 GiB as float32 tensors), and its most classes.
MAX_DATASET_ENTRIES = 2 ** 29
MAX_CLASSES = 2 ** 16
#: Largest seed (the CLI's --seed, recipes, studies, the API's seed arguments): torch's 64-bit generator seed.
MAX_SEED = 2 ** 63 - 1
SEED_RULE = Rule("int", "random seed", lo=0, hi=MAX_SEED)
#: convert's window margin: window = margin x the layer's largest activation on the training set.
MARGIN_RULE = Rule("float", "window = margin x the layer's largest activation on the training set", gt=0, hi=1000)
#: Largest seed of the digits train/test split (scikit-learn's random_state is 32-bit).
MAX_SPLIT_SEED = 2 ** 32 - 1
SPLIT_SEED_RULE = Rule("int", "seed of the digits train/test split", lo=0, hi=MAX_SPLIT_SEED)


#: Samples an export reads where its target needs data (hwtune.workflow.export_for_target): the first
#: training samples size Loihi 2's guards, the first test samples count a chip's synaptic events.
EXPORT_SAMPLES = 1000


@dataclass(frozen=True)
class DataConfig(Settings):
    """Which data a command reads, and how much of it."""

    dataset: str | None = setting(None, "str", f"dataset: {', '.join(DATASETS)}, or PATH.npz holding your own "
                                  "x_train, y_train, x_test, y_test", optional=True, default_text="the model's")
    data_dir: str | None = setting(None, "str", "directory of the dataset files", optional=True,
                                   default_text="$HWTUNE_DATA, else the system location")
    split_seed: int | None = setting(None, "int", "seed of the digits train/test split (another split than the "
                                     "model's is refused where a pass fine-tunes)", lo=0, hi=MAX_SPLIT_SEED,
                                     optional=True, default_text="the model's, else 0")
    train_samples: int | None = setting(None, "int", "train or fine-tune on a random subset of this many "
                                        "training samples", "samples", lo=1, optional=True, default_text="all")
    samples: int | None = setting(None, "int", "evaluate on the first N test samples", "samples",
                                  lo=1, optional=True, default_text="all")

    def check(self) -> None:
        check_dataset_name(self.dataset)
        check_data_dir(self.dataset, self.data_dir)


def check_data_dir(dataset: str | None, data_dir: str | None, key: str = "data_dir") -> None:
    """A data directory is a non-empty path, given only for a dataset read from one (not digits or an .npz)."""
    if data_dir is not None and not data_dir.strip():
        raise ConfigError(f"{key} = {data_dir!r} must be a directory path (leave it out for the default)")
    if data_dir is not None and dataset is not None and (dataset == "digits" or dataset.endswith(".npz")):
        raise ConfigError(f"{key} = {data_dir!r}: dataset {dataset} reads no data directory (it applies to "
                          f"{', '.join(d for d in DATASETS if d != 'digits')})")


def check_dataset_name(name: str | None, key: str = "dataset") -> None:
    """A built-in dataset or a path ending in .npz (a user's own data, hwtune.data.load_npz)."""
    if name is not None and name not in DATASETS and not name.endswith(".npz"):
        raise ConfigError(f"{key} = {name!r} must be one of {', '.join(DATASETS)}, or a path to an .npz file")


@dataclass(frozen=True)
class FinetuneOptions(Settings):
    """Fine-tuning shared by every pass (0 epochs = apply the change only)."""

    epochs: float = setting(1.0, "float", "fine-tuning epochs (fractions allowed; 0 = no fine-tuning)", "epochs",
                            lo=0, hi=10_000)
    lr: float = setting(1e-4, "float", "Adam learning rate of the fine-tuning", gt=0, hi=10)
    batch_size: int = setting(32, "int", "fine-tuning mini-batch size", "samples", lo=1, hi=1_000_000)
    device: str = setting("cpu", "str", "torch device of the fine-tuning (auto = cuda when present)",
                          choices=DEVICES)
    schedule: str = setting("decay", "str", "learning-rate schedule: decay = x 0.9 per 5000 steps, cosine = "
                            "from lr to 0 over the fine-tuning", choices=SCHEDULES)
    distill: float = setting(0.0, "float", "weight a of distillation from the net as the pass got it: loss = "
                             "(1 - a) cross-entropy + a KL(its softmax || the changed net's)", lo=0, hi=1)


@dataclass(frozen=True)
class TrainConfig(Settings):
    """Training from scratch (exact spike-time gradient) or of a ReLU net; the reference code's
    recipe by default: Adam (eps 1e-7), lr x lr_decay per decay_steps, batch 8, Glorot init."""

    arch: str = setting("fc", "str", f"architecture preset: {PRESET_HELP}", choices=tuple(PRESETS))
    network: str = setting("ttfs", "str", "train a TTFS net, or a ReLU net to convert later", choices=("ttfs", "relu"))
    dtype: str = setting("float32", "str", "parameter dtype (float64 for exact TTFS == ReLU twin checks)",
                         choices=("float32", "float64"))
    epochs: float = setting(10.0, "float", "training epochs (fractions allowed)", "epochs", gt=0, hi=10_000)
    lr: float = setting(5e-4, "float", "Adam learning rate", gt=0, hi=10)
    batch_size: int = setting(8, "int", "mini-batch size", "samples", lo=1, hi=1_000_000)
    lr_decay: float = setting(0.9, "float", "learning-rate factor per decay_steps optimizer steps (continuous)",
                              gt=0, hi=1)
    decay_steps: int = setting(5000, "int", "optimizer steps per lr_decay factor", "steps", lo=1)
    adam_eps: float = setting(1e-7, "float", "Adam epsilon", gt=0, hi=1, flag="")
    augment: str = setting("none", "str", "training-data augmentation: shift-flip = random shift by up to 2 px "
                           "and horizontal flip", choices=AUGMENTATIONS)
    twin: bool = setting(False, "bool", "also train the ReLU twin on the same batches and report agreement")
    adaptive_windows: bool = setting(True, "bool", "grow-only window rule of the reference code (TTFS from "
                                     "scratch)", flag="")
    device: str = setting("cpu", "str", "torch device (auto = cuda when present)", choices=DEVICES)

    def check(self) -> None:
        if self.twin and self.network != "ttfs":
            raise ConfigError("twin: only a TTFS net has a ReLU twin to train (network = relu)")


@dataclass(frozen=True)
class QuantizeConfig(FinetuneOptions):
    """Integer weights (brevitas QAT, power-of-two scale) and the integer time grid."""

    pass_name: ClassVar[str] = "quantize"
    # measured (docs/design.md "Quantization: less loss"): lr 5e-4 cut the digits' 2-bit loss from 18 to 8 points,
    # and 3 epochs gave the user conv net 3 points more than 1
    epochs: float = like(FinetuneOptions, "epochs", 3.0)
    lr: float = like(FinetuneOptions, "lr", 5e-4)
    bits: int | None = setting(8, "bits", "signed weight mantissa (or 'float': quantize time only)", "bits",
                               lo=WEIGHT_BITS[0], hi=WEIGHT_BITS[1], optional=True)
    steps: int | list | None = setting(None, "steps", "steps per hidden window: one number, or one per hidden "
                                       "layer", "steps", lo=1, hi=MAX_STEPS, optional=True,
                                       default_text="the model's grid, else the target's")
    time_bits: int | None = setting(None, "int", "alternative to steps: 2**time_bits - 1 steps per window",
                                    "bits", lo=1, hi=MAX_STEPS.bit_length() - 1, optional=True,
                                    default_text="use steps")
    input_steps: int | None = setting(None, "int", "steps of the input window", "steps", lo=1, hi=MAX_STEPS,
                                      optional=True, default_text="the model's, else the target's")
    window_quantile: float = setting(0.999, "float", "window length = this quantile of each layer's positive "
                                     "activations (only for a net without a time grid yet)", gt=0, hi=1)
    window_search: bool = setting(False, "bool", "before fine-tuning, scale each hidden window in turn by the "
                                  "best of 2^(1/2), 1, 2^(-1/2), ..., 1/4 (lowest cross-entropy on 2,000 training "
                                  "samples)")
    report_samples: int = setting(1000, "int", "random training samples on which the pass measures what each "
                                  "layer's time grid and weight grid cost alone (0 = no report)", "samples", lo=0,
                                  hi=1_000_000)

    def check(self) -> None:
        if self.steps is not None and self.time_bits is not None:
            raise ConfigError("give steps or time_bits, not both")

    def grid_request(self) -> tuple[int | list | None, int | None]:
        """(hidden steps, input steps) asked for: ``time_bits`` b means T = 2**b - 1 steps in every
        window (input included unless ``input_steps`` is given); None = the model's or target's."""
        if self.time_bits is None:
            return self.steps, self.input_steps
        steps = 2 ** self.time_bits - 1
        return steps, self.input_steps or steps


@dataclass(frozen=True)
class LatencyConfig(FinetuneOptions):
    """Shorter windows (quantile-based lengths) on a step budget."""

    pass_name: ClassVar[str] = "latency"
    steps: int | list | None = setting(None, "steps", "steps per hidden window: one number, or one per hidden "
                                       "layer", "steps", lo=1, hi=MAX_STEPS, optional=True,
                                       default_text="the model's grid, else the target's")
    input_steps: int | None = setting(None, "int", "steps of the input window", "steps", lo=1, hi=MAX_STEPS,
                                      optional=True, default_text="the model's, else the target's")
    window_quantile: float = setting(0.99, "float", "window length = this quantile of each layer's positive "
                                     "activations", gt=0, hi=1)
    report_samples: int = like(QuantizeConfig, "report_samples", 1000)


_TARGETS = "the target's (0 if it has no noise)"


@dataclass(frozen=True)
class NoiseConfig(FinetuneOptions):
    """Evaluate and fine-tune under device noise (hwtune.device_noise): each level defaults to the target's,
    so a model prepared for a noisy target is hardened against that target by default."""

    pass_name: ClassVar[str] = "noise"
    jitter: float | None = like(NoiseSpec, "jitter", optional=True, default_text=_TARGETS)
    threshold_noise: float | None = like(NoiseSpec, "threshold_noise", optional=True, default_text=_TARGETS)
    spike_deletion: float | None = like(NoiseSpec, "spike_deletion", optional=True, default_text=_TARGETS)
    weight_mismatch: float | None = like(NoiseSpec, "weight_mismatch", optional=True, default_text=_TARGETS)
    threshold_mismatch: float | None = like(NoiseSpec, "threshold_mismatch", optional=True, default_text=_TARGETS)
    devices: int = setting(5, "int", "held-out device instances (or trial draws) the noisy accuracy is averaged over",
                           "devices", lo=1, hi=1000)
    device_every: int = setting(1, "int", "fine-tuning draws a new device instance every N batches", "batches",
                                lo=1, hi=1_000_000)
    eval_only: bool = setting(False, "bool", "measure robustness only: no fine-tuning, no model written")
    window_search: bool = setting(False, "bool", "before fine-tuning, scale the hidden windows by the best of "
                                  "1, 2^-1/2, ..., 1/4 under the noise (scored on training data; quantized nets)")

    def spec(self, target: NoiseSpec | None = None) -> NoiseSpec:
        """The levels: this config's where given, else the target's, else 0."""
        base = target or NoiseSpec()
        return NoiseSpec(**{name: getattr(base, name) if getattr(self, name) is None else getattr(self, name)
                            for name in NoiseSpec.field_names()})


@dataclass(frozen=True)
class DeployConfig(Settings):
    """Export for the target, run the emulator on the test set, compare it with torch and the backend."""

    backend_samples: int = setting(0, "int", "test samples also run on the target's backend (Lava for loihi2) "
                                   "and compared with the emulator spike for spike", "samples", lo=0, hi=100_000)
    samples: int | None = setting(None, "int", "emulate the first N test samples", "samples", lo=1,
                                  optional=True, default_text="all")
    mode: str = setting("fast", "str", "emulator mode", choices=("fast", "stepped"))


@dataclass(frozen=True)
class ExecutionConfig(Settings):
    """Where a sweep's points run (hwtune.executors)."""

    executor: str = setting("serial", "str", "run points in this process, or as Ray tasks", choices=("serial", "ray"))
    address: str | None = setting(None, "str", "Ray cluster address (ray start --head prints it)", optional=True,
                                  default_text="a local Ray instance")
    workers: int | None = setting(None, "int", "CPUs of the local Ray instance", "CPUs", lo=1, hi=100_000,
                                  optional=True, default_text="all")
    threads: int = setting(1, "int", "torch threads per point (a point's result does not depend on where it ran)",
                           "threads", lo=1, hi=1024)
    on_error: str = setting("stop", "str", "a failing point stops the sweep, or is reported and skipped",
                            choices=("stop", "continue"))

    def check(self) -> None:
        if self.address is not None:
            parse_address(self.address)
        if self.executor == "serial" and (self.address is not None or self.workers is not None):
            given = " and ".join(k for k in ("address", "workers") if getattr(self, k) is not None)
            raise ConfigError(f"executor = 'serial' runs the points in this process, where {given} (the ray "
                              "executor's) would be ignored: drop it, or choose executor ray")
        if self.address is not None and self.workers is not None:
            raise ConfigError("workers sizes a new local Ray instance; with address the cluster's own CPUs run the "
                              "points: give one of them")


#: A Ray cluster address: ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT`` (HOST a name, an IPv4 address or
#: an [IPv6] address in brackets; PORT 1..65535).
ADDRESS_RULE = "auto, HOST:PORT or ray://HOST:PORT (PORT in 1..65535)"
_ADDRESS = re.compile(r"(?:ray://)?(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]):(?P<port>[0-9]{1,5})")


def parse_address(address: str) -> tuple[str, int] | None:
    """(host, port) of a Ray address (:data:`ADDRESS_RULE`), None for ``auto``; ConfigError otherwise."""
    if address == "auto":
        return None
    match = _ADDRESS.fullmatch(address)
    if match is None or not 1 <= int(match["port"]) <= 65535:
        raise ConfigError(f"address = {address!r} must be {ADDRESS_RULE}")
    return match["host"].strip("[]"), int(match["port"])


PASS_CONFIGS = {c.pass_name: c for c in (QuantizeConfig, NoiseConfig, LatencyConfig)}

#: Settings added after sweep and study point ids were fixed, with their defaults: an id leaves them
#: out while at the default, so the ids (and resuming committed sweeps and studies) stay as they were.
LATER_SETTINGS = {"schedule": "decay", "distill": 0.0, "window_search": False, "report_samples": 1000}


def id_settings(settings: Settings) -> dict:
    """``settings.to_dict()`` for a point id: LATER_SETTINGS left out where they hold their default."""
    return {k: v for k, v in settings.to_dict().items() if k not in LATER_SETTINGS or v != LATER_SETTINGS[k]}
