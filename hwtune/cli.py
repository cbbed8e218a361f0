"""``hwtune`` command line: parse arguments into settings (hwtune.configs), call the library, print.

One grammar on every verb: the input (model, artifact, recipe) is positional; ``-o/--out`` has a
default derived from the input and never replaces the input or someone's files (``--force``
replaces an earlier hwtune output of the same kind); ``--json`` prints the machine-readable
result on stdout while people's text goes to stderr; ``--seed`` wherever randomness exists;
``-q/--quiet`` silences progress bars and log lines. Torch and Lava are imported only by the
verb that needs them, so ``hwtune --help`` is fast.
"""
from __future__ import annotations

import os
import signal
import sys

if __name__ == "__main__" or os.path.basename(sys.argv[0]) == "hwtune":   # the program, not an import
    # a stop signal while the imports below run (seconds, torch's): nothing is written yet, so exit
    # 130 at once; main() installs the handlers that clean up
    for _sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(_sig, lambda signum, frame: os._exit(130))

import argparse  # noqa: E402
import errno  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

from hwtune import __version__, distributed, progress  # noqa: E402
from hwtune.configs import (EXPORT_SAMPLES, MARGIN_RULE, MAX_SEED, DataConfig, DeployConfig, ExecutionConfig,  # noqa: E402
                            LatencyConfig, NoiseConfig, QuantizeConfig, TrainConfig)
from hwtune.errors import HwtuneError, OutputError, UsageError, short  # noqa: E402
from hwtune.interrupts import (ignore_stop_signals, install_stop_handlers, restore_handlers,  # noqa: E402
                               set_final_output, sigint_deferred)

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_CODES = """exit codes:
  0    success
  1    a check or a floor failed (emulator != torch, Lava != emulator, a sweep floor); results were written
  2    usage error: unknown flag or bad flag value
  3    bad input: unreadable, invalid or hostile model, artifact, recipe, target or dataset, your
       module:function failing, a refused output path, or an output that could not be written
  130  interrupted (Ctrl-C or SIGTERM); no half-written output is left"""
#: OSErrors that are the user's environment, not a bug: reported in one line with exit code 3.
_USER_OS_ERRORS = (errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.ENAMETOOLONG,
                   errno.EFBIG, errno.EIO)

VERBS: dict[str, tuple[str, str]] = {
    "train": ("train a TTFS net from scratch (exact spike-time gradient), or a ReLU net to convert",
              "hwtune train --arch fc --dataset fashion-mnist --epochs 10 -o runs/fc2"),
    "convert": ("convert a trained ReLU net (an hwtune model, or a torch module:function returning an "
                "nn.Module, residual and branching nets included, plus --weights) to the exactly equivalent TTFS net",
                "hwtune convert mypackage.models:make_net --weights net.safetensors --dataset fashion-mnist"),
    "evaluate": ("accuracy, spikes per neuron and latency of a model",
                 "hwtune evaluate runs/fc2 --samples 1000 --json"),
    "quantize": ("integer weights (brevitas QAT) and an integer time grid for the target, then fine-tune",
                 "hwtune quantize runs/fc2 --bits 4"),
    "noise": ("evaluate and fine-tune under spike-time jitter, weight noise and threshold noise",
              "hwtune noise runs/fc2-w4 --jitter 0.1"),
    "latency": ("shorter windows (quantile-based) on a step budget, then fine-tune",
                "hwtune latency runs/fc2-w4 --steps 8"),
    "export": ("export a quantized model as an integer artifact (numpy + JSON) for its target",
               "hwtune export runs/fc2-w4 --target loihi"),
    "emulate": ("run the bit-accurate integer emulator on the test set (and compare with the torch model)",
                "hwtune emulate runs/fc2-w4 --json"),
    "lava-run": ("run test samples on Lava's stock Loihi 2 processes (simulator, or --hardware) and compare with "
                 "the emulator spike for spike",
                 "hwtune lava-run runs/fc2-w4 --samples 20"),
    "run": ("run a recipe: train or load, passes, export, emulate (+ Lava)", "hwtune run recipes/quickstart.yaml"),
    "sweep": ("robustness sweep over bits, steps, jitter, weight noise; resumable; checks floors",
              "hwtune sweep recipes/robustness-ci.yaml"),
    "report": ("plots and Markdown report of a sweep directory", "hwtune report runs/robustness-ci"),
    "info": ("what a model or artifact directory holds: its layers, data, target, passes and their records, "
             "accuracy, size", "hwtune info runs/fc2-w4"),
    "targets": ("list the hardware targets and their aliases", "hwtune targets"),
}


# ---- parser --------------------------------------------------------------------------------------

def _add_common(p: argparse.ArgumentParser, seed: bool = True) -> None:
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout (text goes to stderr)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or log lines")
    if seed:
        p.add_argument("--seed", type=_seed, default=None,
                       help="random seed (batches, noise; not the digits split: that is the model's, --split-seed) "
                            "(default: 0; run/sweep: the recipe's)")


def _add_out(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("-o", "--out", type=_out_dir, help=f"output directory (default: {default}); never the input or "
                                                      "a directory of other files")
    p.add_argument("--force", action="store_true", help="replace an earlier hwtune output at --out")


def _add_target(p: argparse.ArgumentParser, verb: str) -> None:
    what = ("changing it re-quantizes for the new target" if verb == "quantize"
            else "another target is refused: re-quantize for it")
    p.add_argument("--target", help=f"target name, alias or YAML path (default: the model's, else loihi2); {what}")


def _out_dir(text: str) -> str:
    """-o/--out: a non-empty path (an empty one would silently mean the default)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not an output directory (give a path, or leave -o out for "
                                         "the default)")
    return text


def _int_in(lo: int, hi: int | None = None, within: str = ""):
    """An argparse type: an integer in [lo, hi] (``within``: how the error says so)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < lo or (hi is not None and value > hi):
            bounds = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
            raise argparse.ArgumentTypeError(f"{value} must be {within or bounds}")
        return value
    return parse


_seed = _int_in(0, MAX_SEED)
_positive_int = _int_in(1)


def _data_flags(p: argparse.ArgumentParser, train: bool = True, samples: bool = True) -> None:
    exclude = tuple(name for name, keep in (("train_samples", train), ("samples", samples)) if not keep)
    DataConfig.add_arguments(p, exclude=exclude)


def _did_you_mean(word: str, known) -> str:
    """' (did you mean X?)' for the closest of ``known`` to ``word`` (flags compared without their
    dashes, which every flag shares), else ''."""
    import difflib
    names = {k.lstrip("-"): k for k in known}
    close = difflib.get_close_matches(word.lstrip("-"), list(names), n=1, cutoff=0.6)
    return f" (did you mean {names[close[0]]}?)" if close else ""


class _Parser(argparse.ArgumentParser):
    """argparse that answers an unknown verb or flag with the closest known one. Abbreviations are
    off (``--bit`` is never taken for ``--bits``), so a typo is a usage error that says what was meant."""

    verbs: dict = {}      # verb -> its parser (build_parser fills it in)

    def parse_args(self, args=None, namespace=None):
        args, verbs = sys.argv[1:] if args is None else list(args), self.verbs
        if args and not args[0].startswith("-") and args[0] not in verbs:
            self.error(f"unknown verb {args[0]!r}{_did_you_mean(args[0], verbs)}; the verbs: {', '.join(verbs)}")
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            verb = verbs[parsed.command]
            flags = [o for a in verb._actions for o in a.option_strings]
            unknown = [e for e in extras if e.startswith("-")]
            hint = _did_you_mean(unknown[0].split("=", 1)[0], flags) if unknown else ""
            verb.error(f"unrecognized arguments: {' '.join(extras)}{hint}")
        return parsed


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hwtune", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXIT_CODES, allow_abbrev=False,
        description="Make trained time-to-first-spike SNNs deployable: train or convert, run hardware passes "
                    "(quantize, noise, latency), export to Lava (Loihi 2) or the bit-accurate emulator.")
    parser.add_argument("--version", action="version", version=f"hwtune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="VERB")
    parser.verbs = sub.choices

    def add(name):
        text, example = VERBS[name]
        return sub.add_parser(name, help=text, description=text, epilog=f"example:\n  {example}\n\n{EXIT_CODES}",
                              allow_abbrev=False,
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    p = add("train")
    TrainConfig.add_arguments(p)
    _data_flags(p)
    _add_out(p, "runs/ARCH-DATASET")
    _add_common(p)

    p = add("convert")
    p.add_argument("model", help="hwtune ReLU model directory, or module:function returning a torch nn.Module")
    p.add_argument("--weights", help="safetensors state dict of the module:function model")
    p.add_argument("--margin", type=_checked(MARGIN_RULE, "--margin"), default=1.5,
                   help=f"{MARGIN_RULE.help}, {MARGIN_RULE.describe()} (default: 1.5)")
    _data_flags(p, train=False, samples=False)
    _add_out(p, "MODEL-ttfs")
    _add_common(p)

    p = add("evaluate")
    p.add_argument("model", help="model directory")
    NoiseConfig.add_arguments(p, exclude=tuple(n for n in NoiseConfig.field_names() if n != "devices"))
    _data_flags(p, train=False)
    _add_common(p)

    for name, cfg, out in (("quantize", QuantizeConfig, "MODEL-wBITS"), ("noise", NoiseConfig, "MODEL-noise"),
                           ("latency", LatencyConfig, "MODEL-tSTEPS")):
        p = add(name)
        p.add_argument("model", help="model directory")
        cfg.add_arguments(p)
        _add_target(p, name)
        _data_flags(p)
        _add_out(p, out + (" (none with --eval-only)" if name == "noise" else ""))
        _add_common(p)

    p = add("export")
    p.add_argument("model", help="quantized model directory")
    _add_target(p, "export")
    p.add_argument("--samples", type=_positive_int, default=EXPORT_SAMPLES,
                   help="samples the export reads: the first N training samples size Loihi 2's guards, the first N "
                        f"test samples count synaptic events for a chip's energy estimate [samples] (default: "
                        f"{EXPORT_SAMPLES})")
    _data_flags(p, train=False, samples=False)
    _add_out(p, "MODEL.TARGET")
    _add_common(p, seed=False)

    for name in ("emulate", "lava-run"):
        p = add(name)
        p.add_argument("model", help="model directory (exported on the fly for its target) or artifact directory")
        _add_target(p, name)
        if name == "emulate":
            DeployConfig.add_arguments(p, exclude=("backend_samples",))
            NoiseConfig.add_arguments(p, exclude=tuple(n for n in NoiseConfig.field_names() if n != "devices"))
            _data_flags(p, train=False, samples=False)
        else:
            p.add_argument("--samples", type=_positive_int, default=20,
                           help="run the first N test samples [samples] (default: 20)")
            p.add_argument("--hardware", action="store_true",
                           help="run on a Loihi 2 board (Loihi2HwCfg; needs Intel's lava-loihi) instead of Lava's "
                                "bit-accurate simulator")
            _data_flags(p, train=False, samples=False)
        _add_common(p)

    for name in ("run", "sweep"):
        p = add(name)
        p.add_argument("recipe", help="recipe YAML file, or the name of a shipped recipe (e.g. quickstart)")
        p.add_argument("-o", "--out", type=_out_dir, help="output directory (default: the recipe's out)")
        if name == "run":
            p.add_argument("--force", action="store_true", help="replace an earlier run at --out")
        else:
            ExecutionConfig.add_arguments(p, defaults={})
        _add_common(p)

    p = add("report")
    p.add_argument("sweep_dir", help="sweep output directory (holding points.jsonl)")
    _add_common(p, seed=False)

    p = add("info")
    p.add_argument("path", help="model directory or artifact directory")
    _add_common(p, seed=False)

    p = add("targets")
    _add_common(p, seed=False)
    return parser


def _checked(rule, flag: str):
    """An argparse type: a number checked by ``rule`` (hwtune.settings.check_value)."""
    from hwtune.errors import ConfigError
    from hwtune.settings import check_value

    def parse(text: str) -> float:
        try:
            return check_value(rule, flag, float(text))
        except ValueError as e:      # float() or the rule (ConfigError is a ValueError)
            message = str(e) if isinstance(e, ConfigError) else f"{text!r} is not a number"
            raise argparse.ArgumentTypeError(message.replace(f"{flag} = ", "")) from None
    return parse


# ---- output ----------------------------------------------------------------------------------------

def _emit(args, record: dict, lines: list[str]) -> None:
    """``record`` as JSON on stdout with --json (lines to stderr), else ``lines`` on stdout.

    A reader that closed the pipe early (``| head``) ends the printing quietly (the command's exit
    code stands); stdout failing otherwise (a full disk) is an OutputError saying what was written."""
    try:
        if args.json:
            print(json.dumps(record, indent=2, default=str))
            stream = sys.stderr
            if args.quiet:
                sys.stdout.flush()
                return
        else:
            stream = sys.stdout
        for line in lines:
            print(line, file=stream)
        sys.stdout.flush()
    except BrokenPipeError:
        _drop_stdout()
    except OSError as e:
        _drop_stdout()
        written = f"; {record['out']} was written and is complete" if record.get("out") else ""
        raise OutputError(f"cannot write the result to stdout ({e.strerror or e}){written}") from None


def _drop_stdout() -> None:
    """Send what is left of stdout to /dev/null: it is gone, and the interpreter's final flush must
    not fail again (a traceback or 'Exception ignored' at exit)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):    # not a real file (a test's capture)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.2f} %"


def _evaluation_line(r: dict) -> str:
    line = (f"accuracy {_pct(r['accuracy'])} on {r['n']} test samples, {r['spikes_per_hidden_neuron']:.3f} spikes "
            f"per hidden neuron ({r['spikes_per_neuron_incl_input']:.3f} with inputs), latency "
            f"{r['latency_tau']:.3g} tau_c")
    if "latency_steps" in r:
        line += f" = {r['latency_steps']} steps (windows {r['window_steps']} steps)"
    return line + " (tau_c: the input window's length, the model's unit of time)"


# ---- verbs -------------------------------------------------------------------------------------------

def _seed_of(args) -> int:
    return 0 if args.seed is None else args.seed


def _default_out(args, model: str, suffix: str) -> str:
    return args.out or (str(Path(model)).rstrip("/") + suffix)


def _cmd_train(args) -> int:
    from hwtune import io, workflow
    from hwtune.atomic import check_output

    cfg, data_cfg = TrainConfig.from_args(args), DataConfig.from_args(args)
    dataset = data_cfg.dataset or "digits"
    out = args.out or f"runs/{cfg.arch}-{Path(dataset).stem}" + ("-relu" if cfg.network == "relu" else "")
    dest = check_output(out, io.CONFIG, args.force, what="model")
    set_final_output(out)
    data = workflow.load_data(None, data_cfg, default="digits")
    net, report = workflow.train_model(cfg, data, _seed_of(args), data_cfg.train_samples, data_cfg.samples)
    if not distributed.is_main():      # torchrun: rank 0 writes and reports
        return EXIT_OK
    io.save(net, dest)
    lines = [f"train ({cfg.network}, {cfg.arch} on {dataset}): " + (
        _evaluation_line(report["evaluation"]) if cfg.network == "ttfs" else
        f"accuracy {_pct(report['evaluation']['accuracy'])}")]
    if "twin" in report:
        t = report["twin"]
        lines.append(f"  ReLU twin {_pct(t['relu_accuracy'])}, prediction agreement {_pct(t['prediction_agreement'])},"
                     f" largest parameter difference {t['max_param_diff']:.2e}")
    _emit(args, {"out": out, **report}, lines + [f"wrote {out}"])
    return EXIT_OK


def _load_torch_factory(spec: str, weights: str | None):
    """The torch module of 'module:function' (imported from the working directory) with a safetensors file's weights."""
    import importlib

    from safetensors import SafetensorError
    from safetensors.torch import load

    from hwtune.configs import MAX_MODEL_ENTRIES
    from hwtune.safepaths import read_file

    module_name, _, func_name = spec.partition(":")
    if not all(part.isidentifier() for part in [*module_name.split("."), func_name]):
        raise UsageError(f"{spec}: expected MODULE:FUNCTION, a dotted module name and a function name "
                         "(e.g. mypackage.models:make_net)")
    if not weights:
        raise UsageError(f"{spec}: a module:function model needs --weights FILE.safetensors")
    sys.path.insert(0, str(Path.cwd()))
    try:
        factory = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as e:
        raise HwtuneError(f"{spec}: cannot import it ({e})") from None
    except (Exception, SystemExit) as e:       # the user's module failed while it was imported
        raise HwtuneError(f"{spec}: importing {module_name} raised {short(e, 200)}") from None
    finally:
        sys.path.pop(0)
    model = _call_factory(spec, factory)
    data = read_file(weights, HwtuneError, "safetensors file", 8 * MAX_MODEL_ENTRIES)   # never a FIFO: no hang
    try:
        state = load(data)
    except (SafetensorError, OSError) as e:
        raise HwtuneError(f"{weights}: unreadable safetensors file ({e}){_torch_pickle_hint(weights, data[:4])}") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise HwtuneError(f"{weights}: does not fit {spec} ({str(e)[:300]})") from None
    return model


def _torch_pickle_hint(weights: str, head: bytes) -> str:
    """What to do when --weights (whose first bytes are ``head``) is a torch.save file (a zip archive
    or a bare pickle), else ''."""
    if head[:4] != b"PK\x03\x04" and head[:1] != b"\x80":
        return ""
    return ("; it is a torch.save file (.pt), which hwtune does not unpickle: convert your state dict once with "
            "`python -c \"import torch; from safetensors.torch import save_file; "
            f"save_file(torch.load('{weights}'), 'net.safetensors')\"` and pass --weights net.safetensors")


def _call_factory(spec: str, factory):
    """``factory()``, which must return a torch nn.Module (HwtuneError naming ``spec`` otherwise)."""
    import torch

    need = "a function that takes no arguments and returns a torch nn.Module"
    if not callable(factory):
        raise HwtuneError(f"{spec}: is a {type(factory).__name__}, not {need}")
    try:
        model = factory()
    except TypeError as e:
        raise HwtuneError(f"{spec}: calling it with no arguments failed ({e}); give {need}") from None
    except (Exception, SystemExit) as e:       # the user's function failed: the user's error, not hwtune's
        raise HwtuneError(f"{spec}: raised {short(e, 200)}") from None
    if not isinstance(model, torch.nn.Module):
        raise HwtuneError(f"{spec}: returned {type(model).__name__} {short(model, 60)}, not an nn.Module; "
                          f"give {need}")
    return model


def _cmd_convert(args) -> int:
    from hwtune import io, workflow
    from hwtune.atomic import check_output
    from hwtune.passes import record_lines

    data_cfg = DataConfig.from_args(args)
    is_dir = Path(args.model).is_dir()
    if not is_dir and ":" not in args.model:
        raise HwtuneError(f"{args.model}: neither a model directory nor a module:function")
    out = args.out or (str(Path(args.model)).rstrip("/") + "-ttfs" if is_dir
                       else f"runs/{args.model.partition(':')[2]}-ttfs")
    dest = check_output(out, io.CONFIG, args.force, inputs=[args.model] if is_dir else [], what="model")
    set_final_output(out)
    if is_dir:
        source = io.load(args.model)
        relu, info, data = workflow.relu_of(source), source.info, workflow.load_data(source, data_cfg, trains=True)
    else:
        if not data_cfg.dataset:
            raise UsageError("a module:function model records no dataset: pass --dataset")
        relu, info = _load_torch_factory(args.model, args.weights), {"network": "relu"}
        data = workflow.load_data(None, data_cfg)
    ttfs, record = workflow.convert_model(relu, data, args.margin, _seed_of(args), info)
    io.save(ttfs, dest)
    _emit(args, {"out": out, **record}, record_lines(record) + [f"wrote {out}"])
    return EXIT_OK


def _noise_line(noisy: dict) -> str:
    levels = ", ".join(f"{k} {v:g}" for k, v in noisy["noise"].items() if v)
    return (f"under the target's noise ({levels}): accuracy {_pct(noisy['accuracy'])} +- "
            f"{100 * noisy['accuracy_std']:.2f} (mean +- std over {noisy['devices']} held-out device instances)")


def _cmd_evaluate(args) -> int:
    """Accuracy of a model; on a target with noise also under that noise (held-out devices)."""
    from hwtune import io, workflow
    from hwtune.passes.noise import evaluate_under_noise

    net = io.load(args.model)
    data_cfg = DataConfig.from_args(args)
    data = workflow.load_data(net, data_cfg)
    result = workflow.evaluate_model(net, data, data_cfg.samples)
    lines = [_evaluation_line(result)]
    target = workflow.model_target(net)
    if net.quant is not None and target is not None and target.noise is not None and target.noise.any:
        x, y = data.test_x[:data_cfg.samples].to(net.dtype), data.test_y[:data_cfg.samples]
        result["noisy"] = evaluate_under_noise(net, x, y, target.noise, NoiseConfig.from_args(args).devices,
                                               _seed_of(args))
        lines.append(_noise_line(result["noisy"]))
    _emit(args, result, lines)
    return EXIT_OK


_PASS_CONFIGS = {"quantize": QuantizeConfig, "noise": NoiseConfig, "latency": LatencyConfig}


def _pass_out(args, cfg) -> str:
    if args.command == "quantize":
        suffix = "-wfloat" if cfg.bits is None else f"-w{cfg.bits}"
    elif args.command == "latency":
        suffix = f"-t{cfg.steps}" if isinstance(cfg.steps, int) else "-latency"
    else:
        suffix = "-noise"
    return _default_out(args, args.model, suffix)


def _cmd_pass(args) -> int:
    from hwtune import io, workflow
    from hwtune.atomic import check_output
    from hwtune.passes import PassContext, record_lines, run_pass

    cfg = _PASS_CONFIGS[args.command].from_args(args)
    writes = not getattr(cfg, "eval_only", False)
    if not writes and (args.out or args.force):
        raise UsageError("noise --eval-only writes no model: drop -o/--out and --force")
    out = _pass_out(args, cfg) if writes else None
    if writes:
        dest = check_output(out, io.CONFIG, args.force, inputs=[args.model], what="model")
        set_final_output(out)
    net = io.load(args.model)
    target = workflow.resolve_target(net, args.target, args.command, may_change=args.command == "quantize")
    data_cfg = DataConfig.from_args(args)
    ctx = PassContext.for_net(net, workflow.load_data(net, data_cfg, trains=True), target, _seed_of(args),
                              data_cfg.train_samples, data_cfg.samples)
    net, record = run_pass(net, cfg, ctx)
    if not distributed.is_main():      # torchrun: rank 0 writes and reports
        return EXIT_OK
    lines = record_lines(record)
    if writes:
        io.save(net, dest)
        lines.append(f"wrote {out}")
    _emit(args, {"out": out, **record}, lines)
    if record.get("warnings"):
        print("warning: " + "\n".join(record["warnings"]), file=sys.stderr)
    return EXIT_OK


def _cmd_export(args) -> int:
    from hwtune import io, workflow
    from hwtune.artifact import JSON_FILE
    from hwtune.atomic import check_output

    from hwtune import mapper

    net = io.load(args.model)
    spec = workflow.resolve_target(net, args.target, "export")
    out = _default_out(args, args.model, f".{spec.name}")
    dest = check_output(out, JSON_FILE, args.force, inputs=[args.model], what="artifact")
    set_final_output(out)
    artifact = workflow.export_for_target(net, spec, DataConfig.from_args(args), args.samples, source=str(args.model))
    artifact.save(dest)
    record = {"out": out, "target": spec.name, "layers": len(artifact.layers), "weight_bits": artifact.weight_bits,
              "window_steps": artifact.window_steps, "latency_steps": artifact.latency_steps,
              "data": artifact.meta.get("data"), "resources": artifact.meta.get("resources")}
    lines = [f"export for {spec.name}: {len(artifact.layers)} layers, {artifact.weight_bits}-bit weights, "
             f"windows {artifact.window_steps} steps, latency {artifact.latency_steps} steps"]
    if "resources" in artifact.meta:
        lines += mapper.table(artifact.meta["resources"])
    _emit(args, record, lines + [f"wrote {out}"])
    return EXIT_OK


def _deployable(args):
    """(artifact, model or None, dataset) for emulate / lava-run: a model directory is exported on the fly."""
    from hwtune import io, workflow
    from hwtune.artifact import Artifact
    from hwtune.data import DatasetError

    data_cfg = DataConfig.from_args(args)
    if (Path(args.model) / io.CONFIG).exists():
        net = io.load(args.model)
        data = workflow.load_data(net, data_cfg)
        return workflow.export_for_target(net, args.target, data, source=str(args.model)), net, data
    artifact = Artifact.load(args.model)
    if args.target:
        workflow.check_artifact_target(artifact, args.target)
    recorded = artifact.meta.get("dataset", {}) if isinstance(artifact.meta.get("dataset"), dict) else {}
    try:
        data = workflow.load_data(None, data_cfg, recorded=recorded)
    except DatasetError as e:
        raise DatasetError(f"{args.model}: the artifact's recorded dataset: {e}") from None
    workflow.check_artifact_data(artifact, data)
    return artifact, None, data


def _cmd_emulate(args) -> int:
    from hwtune import workflow

    artifact, net, data = _deployable(args)
    cfg = DeployConfig.from_args(args)
    x, y = data.test_x[:cfg.samples], data.test_y[:cfg.samples]
    result, pred = workflow.emulate_artifact(artifact, x, y, cfg.mode)
    lines = [f"emulator ({cfg.mode}): accuracy {_pct(result['accuracy'])} on {result['n']} test samples, "
             f"{result['spikes_per_hidden_neuron']:.3f} spikes per hidden neuron, "
             f"{result['synaptic_events_per_sample']:.0f} synaptic events per sample, latency {result['latency_steps']} steps"]
    code = EXIT_OK
    if net is not None:
        result.update(workflow.compare_with_torch(net, x, y, pred))
        lines.append(f"quantized torch model: accuracy {_pct(result['torch_accuracy'])}, agrees with the emulator on "
                     f"{_pct(result['torch_emulator_agreement'])} of the predictions")
        code = EXIT_OK if result["torch_emulator_agreement"] == 1.0 else EXIT_CHECK_FAILED
    noise = workflow.artifact_target_noise(artifact)
    if noise is not None:
        result["noisy"] = workflow.emulate_under_noise(artifact, x, y, noise, NoiseConfig.from_args(args).devices,
                                                       _seed_of(args))
        lines.append(_noise_line(result["noisy"]))
    _emit(args, result, lines)
    return code


def _cmd_lava_run(args) -> int:
    from hwtune import workflow

    from hwtune.backends import check_backend_can_start

    check_backend_can_start("lava")       # before any work: its workers' sockets, and the board's lava-loihi
    if args.hardware:
        from hwtune.backends.lava.run import require_hardware
        require_hardware()
    artifact, _, data = _deployable(args)
    n = min(args.samples, len(data.test_x))
    result = workflow.compare_backend(artifact, data.test_x[:n], "lava", hardware=args.hardware)
    result["resources"] = artifact.meta.get("resources")        # the export's map: sample interval, chip and model events
    lines = [f"{'sample':>6s} {'label':>5s} {'lava':>5s} {'emulator':>8s} {'spikes':>6s}"]
    for i, (a, b, c) in enumerate(zip(result["backend_predictions"], result["emulator_predictions"],
                                      result["spikes_per_sample"])):
        lines.append(f"{i:6d} {int(data.test_y[i]):5d} {a:5d} {b:8d} {c:6d}")
    lines += [f"spikes: hidden neurons (of {sum(layer.n_out for layer in artifact.hidden)}) that fired inside "
              "their window (on Loihi 2 a silent neuron spikes once after it, which is not counted); lava, "
              "emulator: the predicted class",
              f"ran on {'a Loihi 2 board' if args.hardware else 'Lava simulator'}: "
              + ", ".join(m.rsplit(".", 1)[1] for m in result["process_models"]),
              f"most spikes of one neuron in one sample: {result['max_spikes_per_neuron']}; samples pipelined, a new "
              f"one every {result['sample_interval_steps']} steps",
              f"Lava == emulator spike for spike on {result['identical_spike_for_spike']}/{result['samples']} samples"]
    _emit(args, result, lines)
    return EXIT_OK if result["identical_spike_for_spike"] == result["samples"] else EXIT_CHECK_FAILED


def _cmd_run(args) -> int:
    from hwtune.passes import record_lines
    from hwtune.recipes import load_recipe, run_recipe

    recipe = load_recipe(args.recipe)
    set_final_output(args.out if args.out is not None else recipe.out)
    results = run_recipe(recipe, seed=args.seed, out=args.out, force=args.force)
    lines = [line for s in results["stages"] for line in
             (record_lines(s) if "pass" in s else [f"{s['stage']}: accuracy {_pct(s['accuracy'])}"])]
    lines += results.get("summary", [])
    if "resources" in results:
        from hwtune import mapper

        lines += mapper.table(results["resources"])
    _emit(args, results, lines + [f"wrote {results['out']}"])
    return EXIT_CHECK_FAILED if results.get("failed_checks") else EXIT_OK


def _cmd_sweep(args) -> int:
    """A grid sweep or a robustness study (the recipe's ``kind``), on the executor the flags or the
    recipe name."""
    from hwtune.report import report as write_report
    from hwtune.study import Study, load_sweep, run_study
    from hwtune.sweep import run_sweep

    sweep = load_sweep(args.recipe)
    defaults = sweep.execution.to_dict()
    if args.executor == "serial":       # the recipe's Ray settings do not apply to a serial run asked for here
        defaults.update(address=None, workers=None)
    execution = ExecutionConfig.from_args(args, defaults=defaults)
    if execution.executor == "ray" and execution.address:   # before any work: Ray would retry for minutes
        from hwtune.executors import check_reachable
        check_reachable(execution.address)
    if isinstance(sweep, Study):
        if args.seed is not None:
            raise UsageError("a robustness study lists its seeds in the recipe (seeds: [...]); drop --seed")
        result = run_study(sweep, out=args.out, execution=execution)
        report = write_report(result["out"], result["records"])
        broken = []
    else:
        result = run_sweep(sweep, seed=args.seed, out=args.out, execution=execution)
        report = write_report(result["out"], result["records"], f"Sweep {sweep.name} ({sweep.path})")
        broken = result["broken_floors"]
    for line in broken:
        print(f"BROKEN FLOOR: {line}", file=sys.stderr)
    for failure in result["failures"]:
        print(f"FAILED POINT {failure['id']}: {failure['error']}", file=sys.stderr)
    lines = [f"sweep: {len(result['records'])} points in {result['out'] / 'points.jsonl'}; report {report}"]
    if result.get("floors"):
        lines.append(f"floors: {result['floors_held']} of {result['floors']} held" +
                     ("" if result["floors_held"] == result["floors"] else " (BROKEN FLOOR lines above)"))
    _emit(args, {"out": str(result["out"]), "points": len(result["records"]), "report": str(report),
                 "broken_floors": broken, "floors": result.get("floors", 0), "floors_held": result.get("floors_held", 0),
                 "failures": result["failures"]}, lines)
    return EXIT_CHECK_FAILED if broken or result["failures"] else EXIT_OK


def _cmd_report(args) -> int:
    from hwtune.report import report
    from hwtune.sweep import read_points

    path = report(args.sweep_dir)
    _emit(args, {"report": str(path), "points": len(read_points(Path(args.sweep_dir)))}, [f"wrote {path}"])
    return EXIT_OK


def _cmd_info(args) -> int:
    from hwtune.describe import describe, lines

    record = describe(args.path)
    _emit(args, record, lines(record))
    return EXIT_OK


def _cmd_targets(args) -> int:
    from hwtune.target import list_targets

    targets = list_targets()
    rows = [("name", "aliases", "backend", "noise", "summary")] + \
        [(t.name, ", ".join(t.aliases) or "-", t.backend, "yes" if t.noise and t.noise.any else "-", t.summary)
         for t in targets]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4] for row in rows]
    _emit(args, {"targets": [t.to_dict() for t in targets]}, lines)
    return EXIT_OK


_COMMANDS = {"train": _cmd_train, "convert": _cmd_convert, "evaluate": _cmd_evaluate, "quantize": _cmd_pass,
             "noise": _cmd_pass, "latency": _cmd_pass, "export": _cmd_export, "emulate": _cmd_emulate,
             "lava-run": _cmd_lava_run, "run": _cmd_run, "sweep": _cmd_sweep, "report": _cmd_report,
             "info": _cmd_info, "targets": _cmd_targets}


def main(argv: list[str] | None = None) -> int:
    program = argv is None     # the hwtune command itself (not a caller in Python)
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if not argv:   # no verb: list the verbs (a usage error all the same)
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    args = parser.parse_args(argv)
    was_quiet = progress.quiet()
    progress.set_quiet(args.quiet)
    # SIGTERM stops like Ctrl-C; a second signal does not cut the clean-up short. Once the outcome is
    # decided, the process (argv None: the hwtune command) ignores both till it exits, so a late signal
    # neither kills it by the signal nor prints a traceback; a caller in Python gets its handlers back.
    previous = install_stop_handlers()
    try:
        code = _run(args)
    finally:
        set_final_output(None)
        if program:
            ignore_stop_signals()
        else:
            restore_handlers(previous)
        distributed.shutdown()     # torchrun: leave the process group on every way out (its threads abort at exit)
        progress.set_quiet(was_quiet)      # -q is this command's: a caller in Python keeps its own setting
    if program and code == EXIT_INTERRUPTED:
        _exit_interrupted()
    return code


def _exit_interrupted() -> None:
    """End the interrupted hwtune program with exit status 130, its clean-up done.

    Not through the interpreter's normal exit: CPython (Py_RunMain) kills itself with SIGINT at exit
    when a KeyboardInterrupt was ever unhandled inside a C-level PyRun_* call, even one Python code
    caught afterwards (measured: a Ctrl-C 0.9 s into ``hwtune train``, while its imports run, ended
    as killed by SIGINT in 1 of 40 runs), and a caller must see 130 every time."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(EXIT_INTERRUPTED)


#: The verbs that run without torch (every other one imports it, and under :func:`_import_torch`).
_VERBS_WITHOUT_TORCH = ("report", "targets")


def _import_torch() -> None:
    """Import torch with stop signals held back till it is in (then delivered): a KeyboardInterrupt
    inside torch's C++ start-up is lost there (measured: 5 of 200 signals sent into ``import
    torch``) or ends the process with SIGABRT (pybind11's error_already_set reaching
    std::terminate; seen in CI as exit -6)."""
    with sigint_deferred():
        import torch  # noqa: F401


def _run(args) -> int:
    try:
        if args.command not in _VERBS_WITHOUT_TORCH:
            _import_torch()
        return _COMMANDS[args.command](args)
    except HwtuneError as e:   # expected: the message names the file, key, layer or limit
        print(f"hwtune {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:      # stdout's reader went away before the command printed anything
        _drop_stdout()
        return EXIT_OK
    except OSError as e:
        if e.errno not in _USER_OS_ERRORS:
            raise
        print(f"hwtune {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"hwtune {args.command}: interrupted; no half-written output is left", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
