"""Sweep reports: matplotlib PNGs and a Markdown page (``report.md``) of a sweep directory.

Grid sweeps: accuracy vs weight bits, vs steps per window and vs jitter; every point is its own
model, so points are markers (never joined by lines), with the spread over held-out device
instances as error bars on noisy points, integer ticks on bits and steps. Robustness studies
(hwtune.study): per study, each arm's accuracy vs the noise level, mean over seeds with the
standard deviation over seeds as error bars (an arm is one recipe evaluated at every level, so
its points are joined), and the table of losses and recoveries at every level.

:func:`report` writes either into a sweep directory (one whose manifest marks it, hwtune.sweep),
holding its lock; every file it writes is claimed in the manifest first (only the plots it draws)
and replaced by a rename, never through a link.
"""
from __future__ import annotations

import io
import json
import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from hwtune.atomic import atomic_write_bytes, claim, exclusive_lock  # noqa: E402
from hwtune.configs import MAX_JSON_BYTES  # noqa: E402
from hwtune.settings import check_value, rule_of  # noqa: E402
from hwtune.errors import ConfigError, HwtuneError, short  # noqa: E402
from hwtune.device_noise import NoiseSpec  # noqa: E402
from hwtune.safepaths import check_name, inside, read_file  # noqa: E402

#: Number (not bool), for the checks of the files a report reads.
_NUM = (int, float)


class ReportInputError(HwtuneError, ValueError):
    """A sweep directory whose files are not what a sweep writes; the message names file and key."""


def _need(mapping: dict, key: str, types, where: str, optional: bool = False):
    """``mapping[key]`` if it has one of ``types`` (a bool is not a number, a number is finite), else
    ReportInputError."""
    value = mapping.get(key)
    if optional and value is None:
        return None
    types = types if isinstance(types, tuple) else (types,)
    if not (key in mapping and isinstance(value, types) and (bool in types or not isinstance(value, bool))):
        raise ReportInputError(f"{where}: {key!r} missing or not a {_type_name(types)} (got {short(value)})")
    if isinstance(value, float) and not math.isfinite(value):
        raise ReportInputError(f"{where}: {key!r} is {value}, not a finite number")
    return value


def _type_name(types: tuple) -> str:
    names = {int: "number", float: "number", str: "string", dict: "JSON object", list: "list", bool: "true/false"}
    return " or ".join(sorted({names[t] for t in types}))


def check_grid_records(records: list[dict], file) -> None:
    """Every grid point record has the axes (their rules, hwtune.sweep.AXES) and the accuracies a
    report reads; else ReportInputError naming ``file``, the point and the key."""
    from hwtune.sweep import AXES

    for n, r in enumerate(records, start=1):
        where = f"{file}: point {n} ({short(r.get('id'))})"
        for axis, rule in AXES.items():
            try:
                check_value(rule, axis, r.get(axis))
            except ConfigError as e:
                raise ReportInputError(f"{where}: {e}") from None
        for key in ("accuracy_torch", "accuracy_float"):
            _need(r, key, _NUM, where)
        for key in ("accuracy_torch_std", "accuracy_emulator", "torch_emulator_agreement",
                    "spikes_per_hidden_neuron", "synaptic_events_per_sample", "backend_identical"):
            _need(r, key, _NUM, where, optional=True)
        if r.get("backend_identical") is not None:
            _need(r, "backend_samples", int, where)


_ROW_NUMBERS = ("level", "plain", "plain_std", "control", "control_std", "noise-aware", "noise-aware_std",
                "plain_loss", "control_loss", "recovered", "recovered_std")


def _read_summary(out: Path):
    """The parsed ``sweep.json`` of a sweep directory (a regular file, not a link, of at most
    MAX_JSON_BYTES); ReportInputError naming it."""
    file = Path(out) / "sweep.json"
    try:
        return json.loads(read_file(file, ReportInputError, "sweep summary", MAX_JSON_BYTES, follow=False))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ReportInputError(f"{file}: not valid JSON ({str(e)[:200]})") from None


def read_study_summary(out: Path) -> dict:
    """The ``sweep.json`` of a robustness study, checked for every key its report reads (study names
    must be safe file names: they name the plots); ReportInputError naming the file and key."""
    file = Path(out) / "sweep.json"
    summary = _read_summary(out)
    if not isinstance(summary, dict):
        raise ReportInputError(f"{file}: expected a JSON object, got {type(summary).__name__}")
    for key in ("name", "sweep", "base", "dataset", "target"):
        _need(summary, key, str, str(file))
    for key in ("quantize", "finetune", "summaries"):
        _need(summary, key, dict, str(file))
    for key in ("epochs", "lr"):
        _need(summary["finetune"], key, _NUM, f"{file}: finetune")
    _need(summary, "seeds", list, str(file))
    _need(summary, "devices", int, str(file))
    for key in ("samples", "train_samples"):
        _need(summary, key, int, str(file), optional=True)
    search = _need(summary, "window_search", dict, str(file), optional=True)
    if search is not None:
        _need(search, "scales", list, f"{file}: window_search")
        if not all(isinstance(f, _NUM) for f in search["scales"]):
            raise ReportInputError(f"{file}: window_search: 'scales' must list numbers")
        for key in ("samples", "devices"):
            _need(search, key, int, f"{file}: window_search")
    studies = _need(summary, "studies", list, str(file))
    for i, study in enumerate(studies):
        where = f"{file}: studies[{i}]"
        if not isinstance(study, dict):
            raise ReportInputError(f"{where}: expected a JSON object, got {short(study)}")
        check_name(_need(study, "name", str, where), f"{where}: name")
        if _need(study, "axis", str, where) not in NoiseSpec.field_names():
            raise ReportInputError(f"{where}: axis {short(study['axis'])} is not one of {NoiseSpec.field_names()}")
        if not all(isinstance(v, _NUM) for v in _need(study, "train", dict, where).values()):
            raise ReportInputError(f"{where}: 'train' must map noise settings to numbers")
        rows = summary["summaries"].get(study["name"], [])
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ReportInputError(f"{file}: summaries.{study['name']} must be a list of JSON objects")
        for j, row in enumerate(rows):
            for key in _ROW_NUMBERS:
                _need(row, key, _NUM, f"{file}: summaries.{study['name']}[{j}]")
            _need(row, "seeds", int, f"{file}: summaries.{study['name']}[{j}]")
            _need(row, "recovery_ratio", _NUM, f"{file}: summaries.{study['name']}[{j}]", optional=True)
            _need(row, "beyond_2_std", bool, f"{file}: summaries.{study['name']}[{j}]")
    scales = _need(summary, "window_scales", dict, str(file), optional=True) or {}
    for name, chosen in scales.items():
        if not (isinstance(chosen, list) and all(isinstance(c, dict) and all(
                isinstance(c.get(k), _NUM) for k in ("seed", "control", "noise-aware")) for c in chosen)):
            raise ReportInputError(f"{file}: window_scales.{short(name)} must list {{seed, control, noise-aware}}")
    failures = _need(summary, "failures", list, str(file), optional=True) or []
    if not all(isinstance(f, dict) and "id" in f and "error" in f for f in failures):
        raise ReportInputError(f"{file}: failures must list {{id, error}} objects")
    return summary


def sweep_kind(out: Path) -> str:
    """'robustness' or 'grid': the ``kind`` in a sweep directory's ``sweep.json`` (grid without one)."""
    file = Path(out) / "sweep.json"
    if not file.exists() and not file.is_symlink():
        return "grid"
    summary = _read_summary(out)
    if not isinstance(summary, dict) or summary.get("kind", "grid") not in ("grid", "robustness"):
        raise ReportInputError(f"{file}: expected a JSON object whose kind is 'grid' or 'robustness'")
    return summary.get("kind", "grid")


_ARM_LABELS = {"plain": "plain (quantized, no further fine-tuning)",
               "control": "control (same budget, no noise)",
               "noise-aware": "noise-aware (same budget, under the training noise)"}


def _axis_label(axis: str) -> str:
    rule = rule_of(NoiseSpec, axis)
    return f"{axis.replace('_', ' ')} ({rule.unit})"


#: Characters per title line at the title's font size in a 6.4-inch figure: longer lines are wrapped.
_TITLE_WIDTH = 95


def _new_figure():
    """A figure whose layout makes room for everything drawn (constrained layout: no clipped titles)."""
    return plt.subplots(figsize=(6.4, 4.4), layout="constrained")


def _set_title(ax, text: str, fontsize: int) -> None:
    """The title, each line wrapped to fit the figure's width."""
    ax.set_title("\n".join(textwrap.fill(line, _TITLE_WIDTH) for line in text.split("\n")), fontsize=fontsize)


def _points(records, x_axis, fixed, group: tuple):
    """{values of the ``group`` keys: sorted [(x, record)]} of the records matching ``fixed``."""
    out: dict = {}
    for r in records:
        if all(r.get(k) == v for k, v in fixed.items()):
            out.setdefault(tuple(r[k] for k in group), []).append((r[x_axis], r))
    return {g: sorted(v, key=lambda p: p[0]) for g, v in sorted(out.items())}


def _label(group: tuple, values: tuple) -> str:
    """A series' legend, e.g. '4-bit weights, fine-tuned'."""
    def one(key, value):
        if key == "finetune":
            return "fine-tuned" if value else "not fine-tuned"
        return f"{value}-bit weights" if key == "bits" else f"{key} {value}"
    return ", ".join(one(k, v) for k, v in zip(group, values))


def _png(fig) -> bytes:
    """The figure as PNG bytes (written by the caller with a rename: never half a file, never
    through a link)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def _figure(records, x_axis, fixed, group: tuple, title, xlabel, integer_x=False, log_x=False) -> bytes | str:
    """The PNG: one series per value of the ``group`` keys, or why it was not drawn (fewer than two
    ``x_axis`` values at ``fixed``)."""
    series = _points(records, x_axis, fixed, group)
    xs_all = sorted({x for pts in series.values() for x, _ in pts})
    where = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in fixed.items())
    if len(xs_all) < 2:
        return f"{title}: not plotted, the sweep has fewer than two {x_axis} values at {where}"
    fig, ax = _new_figure()
    offset = (max(xs_all) - min(xs_all)) * 0.01 if not log_x else 0
    for i, (g, pts) in enumerate(series.items()):
        color = f"C{i}"
        xs = [x + (i - (len(series) - 1) / 2) * offset for x, _ in pts]
        ys = [100 * r["accuracy_torch"] for _, r in pts]
        err = [100 * r.get("accuracy_torch_std", 0.0) for _, r in pts]
        ax.errorbar(xs, ys, yerr=err, fmt="o", color=color, capsize=3, label=f"{_label(group, g)} (torch)")
        emu = [(x, 100 * r["accuracy_emulator"]) for x, (_, r) in zip(xs, pts) if r.get("accuracy_emulator") is not None]
        if emu:
            ax.plot([x for x, _ in emu], [y for _, y in emu], "x", color=color, markersize=9,
                    label=f"{_label(group, g)} (emulator)")
    ax.axhline(100 * records[0]["accuracy_float"], color="k", ls="--", lw=1, label="float TTFS")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    _set_title(ax, f"{title}\n({where}; markers: one model each)", 9)
    if log_x:
        ax.set_xscale("log", base=2)
    if integer_x:
        ax.set_xticks(xs_all)
        ax.set_xticklabels([str(int(x)) for x in xs_all])
        ax.minorticks_off()
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


#: The plots of a grid sweep's report.
PLOTS = ("accuracy_vs_bits.png", "accuracy_vs_steps.png", "accuracy_vs_jitter.png")


def _study_plot(name: str) -> str:
    """File name of a robustness study's plot."""
    return f"robustness_{name.replace(' ', '_')}.png"


def make_plots(records: list[dict]) -> tuple[dict[str, bytes], list[str]]:
    """PNG plots of a grid sweep's records: {file name: PNG} of those drawn and, for each plot not
    drawn, why."""
    if not records:
        return {}, ["no finished points: nothing plotted"]
    steps = max(r["steps"] for r in records)
    clean = {"jitter": 0.0, "weight_mismatch": 0.0}
    made = dict(zip(PLOTS, [
        _figure(records, "bits", {**clean, "steps": steps}, ("finetune",), "accuracy vs weight bits", "weight bits",
                integer_x=True),
        _figure(records, "steps", {**clean, "finetune": True}, ("bits",), "accuracy vs steps per window (latency)",
                "steps per window", integer_x=True, log_x=True),
        _figure(records, "jitter", {"steps": steps, "weight_mismatch": 0.0}, ("bits", "finetune"),
                "accuracy vs spike-time jitter", _axis_label("jitter")),
    ]))
    return {n: p for n, p in made.items() if isinstance(p, bytes)}, [p for p in made.values() if isinstance(p, str)]


def _write_files(out: Path, files: dict[str, bytes]) -> None:
    """Claim every file in the directory's manifest (refusing someone's file or a link there), then
    write each by a rename."""
    claim(out, list(files))
    for name, data in files.items():
        atomic_write_bytes(inside(out, name), data)


_PERCENT = {"accuracy_torch", "accuracy_emulator", "torch_emulator_agreement"}


def _cell(record: dict, column: str) -> str:
    v = record.get(column)
    if column == "backend_identical" and v is not None:
        return f"{v}/{record['backend_samples']}"
    if v is None:
        return "–"
    if column == "accuracy_torch" and record.get("accuracy_torch_std") is not None:
        return f"{100 * v:.2f} ± {100 * record['accuracy_torch_std']:.2f}"
    if column in _PERCENT:
        return f"{100 * v:.2f}"
    if column == "spikes_per_hidden_neuron":
        return f"{v:.3f}"
    if column == "synaptic_events_per_sample":
        return f"{v:.0f}"
    return str(v)


def write_report(records: list[dict], out: Path, title: str) -> Path:
    """``report.md`` of a grid sweep with the plots and one row per point; returns its path."""
    check_grid_records(records, Path(out) / "points.jsonl")
    plots, not_plotted = make_plots(records)
    cols = ["bits", "steps", "jitter", "weight_mismatch", "finetune", "accuracy_torch", "accuracy_emulator",
            "torch_emulator_agreement", "spikes_per_hidden_neuron", "synaptic_events_per_sample", "latency_steps",
            "backend_identical"]
    lines = [f"# {title}", ""]
    if records:
        lines += [f"Float TTFS baseline: {100 * records[0]['accuracy_float']:.2f} %. Accuracies in %; jitter in "
                  "units of each window, weight mismatch as a fraction of each weight; a noisy point is the mean "
                  "± std over held-out device instances, torch and emulator with the same draws. A fine-tuned "
                  "noisy point was fine-tuned under its own noise level (its row's jitter and weight mismatch) "
                  "after the quantize fine-tuning. '–': not measured (agreement and backend: noiseless points only).",
                  ""]
    lines += [f"![{Path(name).stem}]({name})" for name in plots] + [""]
    lines += [f"- {why}" for why in not_plotted] + ([""] if not_plotted else [])
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in sorted(records, key=lambda r: tuple(r[c] for c in ("bits", "steps", "jitter", "weight_mismatch",
                                                                "finetune"))):
        lines.append("| " + " | ".join(_cell(r, c) for c in cols) + " |")
    _write_files(out, {"report.md": ("\n".join(lines) + "\n").encode(), **plots})
    return out / "report.md"


# ---- robustness studies ---------------------------------------------------------------------------

def _trained_at(study: dict) -> str:
    """The noise the noise-aware arm of ``study`` was fine-tuned under, e.g. 'jitter 0.5'."""
    return ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in study["train"].items() if v)


def _study_figure(summary: dict, study: dict, rows: list[dict]) -> bytes:
    fig, ax = _new_figure()
    xs = [r["level"] for r in rows]
    for i, arm in enumerate(("plain", "control", "noise-aware")):
        ax.errorbar(xs, [100 * r[arm] for r in rows], yerr=[100 * r[f"{arm}_std"] for r in rows], fmt="o-",
                    color=f"C{i}", capsize=3, label=_ARM_LABELS[arm])
    train = _trained_at(study)
    ft = summary["finetune"]
    ax.set_xlabel(_axis_label(study["axis"]))
    ax.set_ylabel("test accuracy (%)")
    searched = "window search, then " if summary.get("window_search") else ""
    _set_title(ax, f"{summary['name']}: {study['name']} (noise-aware trained at {train}; budget {searched}"
               f"{ft['epochs']:g} epochs, lr {ft['lr']:g})\nmean ± std over {rows[0]['seeds']} seeds, each the mean "
               f"of {summary['devices']} held-out devices", 8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def _images(n: int | None, some: str, every: str) -> str:
    return every if n is None else some.format(n)


def write_study_report(out: Path) -> Path:
    """``report.md`` of a robustness study directory (its ``sweep.json``): per study a plot and the
    table of every level; returns its path."""
    summary = read_study_summary(out)
    plots = {}
    lines = [f"# Robustness study {summary['name']} ({summary['sweep']})", "",
             f"Base model {summary['base']} on {summary['dataset']}, target {summary['target']}; plain = quantize "
             f"{json.dumps(summary['quantize'])}; control and noise-aware add the same fine-tuning budget "
             f"{json.dumps(summary['finetune'])}, the noise-aware arm under its study's training noise ("
             + "; ".join(f"{s['name']}: {_trained_at(s)}" for s in summary["studies"]) + f"). Seeds {summary['seeds']}; "
             f"every accuracy is the mean over {summary['devices']} held-out device instances (hwtune.device_noise "
             "stream EVAL) on "
             f"{_images(summary.get('samples'), 'the first {:,} test images', 'every test image')}, then mean ± std "
             f"over seeds; fine-tuning on {_images(summary.get('train_samples'), 'a random {:,}-image subset of', 'all of')} "
             "the training set. "
             "Loss = the control's clean accuracy minus its noisy accuracy; recovered = noise-aware minus control "
             "(mean ± std of the per-seed differences); ratio = recovered / loss (– where the loss is under 1 point); "
             "'> 2 std': recovered exceeds "
             "twice the std of the per-seed differences. Accuracies and points in %.", ""]
    search = summary.get("window_search")
    if search:
        lines += [f"Window search: before fine-tuning, both fine-tuned arms scale every hidden window by the best of "
                  f"{', '.join(f'{f:.2g}' for f in search['scales'])} on up to {search['samples']:,} training samples, the "
                  f"control by clean accuracy, the noise-aware arm under its training noise ({search['devices']} "
                  "training devices); jitter is a fraction of each window's steps, so a shorter window makes it a "
                  "smaller error (hwtune.passes.noise.search_window_scale).", ""]
    for study in summary["studies"]:
        rows = summary["summaries"].get(study["name"], [])
        if not rows:
            continue
        plot = Path(_study_plot(study["name"]))
        plots[plot.name] = _study_figure(summary, study, rows)
        scales = (summary.get("window_scales") or {}).get(study["name"])
        chosen = (["Window scales chosen (seed: control, noise-aware): " + "; ".join(
            f"{c['seed']}: {c['control']:.2g}, {c['noise-aware']:.2g}" for c in scales) + ".", ""] if scales else [])
        lines += [f"## {study['name']} (noise-aware arm trained at {_trained_at(study)})", "", *chosen,
                  f"![{plot.stem}]({plot.name})", "",
                  f"| {study['axis'].replace('_', ' ')} | plain | control | noise-aware | plain loss | control loss | "
                  "recovered | ratio | > 2 std |", "|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            ratio = "–" if r.get("recovery_ratio") is None else f"{r['recovery_ratio']:.2f}"
            lines.append(f"| {r['level']:g} | {_pct(r['plain'])} ± {_pct(r['plain_std'])} | {_pct(r['control'])} ± "
                         f"{_pct(r['control_std'])} | {_pct(r['noise-aware'])} ± {_pct(r['noise-aware_std'])} | "
                         f"{_pct(r['plain_loss'])} | {_pct(r['control_loss'])} | {_pct(r['recovered'])} ± "
                         f"{_pct(r['recovered_std'])} | {ratio} | {'yes' if r['beyond_2_std'] else 'no'} |")
        lines.append("")
    if summary.get("failures"):
        lines += ["Failed points: " + "; ".join(f"{f['id']} ({f['error']})" for f in summary["failures"]), ""]
    _write_files(out, {"report.md": ("\n".join(lines) + "\n").encode(), **plots})
    return out / "report.md"


def report(out: str | Path, records: list[dict] | None = None, title: str | None = None) -> Path:
    """Write the report of the sweep directory ``out`` (a grid sweep's or a robustness study's, by its
    ``sweep.json``), holding the directory's lock; ``records``: the points the sweep just finished
    (the grid points shown; default: every finished point, and at least one). Refused: a directory
    no sweep wrote (hwtune.sweep.is_sweep_dir), one a sweep is writing."""
    from hwtune.sweep import POINTS, is_sweep_dir, read_points

    out = Path(out)
    if not is_sweep_dir(out):
        raise ReportInputError(f"{out}: not a sweep directory (no hwtune manifest marks it); hwtune reports only "
                               "directories `hwtune sweep` wrote")
    with exclusive_lock(out, "sweep or report"):
        if records is None:
            records = read_points(out)
            if not records:
                raise ReportInputError(f"{out / POINTS}: no finished points")
        if sweep_kind(out) == "robustness":
            return write_study_report(out)
        return write_report(records, out, title or f"Sweep {out.name}")
