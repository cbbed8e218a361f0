"""Sweep reports: matplotlib PNGs (accuracy vs bits, steps, jitter; spikes and synaptic events
alongside) and a Markdown page that embeds them with a table of every point."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from hwtune.atomic import atomic_write_text  # noqa: E402


def _series(records, x_axis, fixed, group):
    """{group value: sorted [(x, record)]} of the records matching ``fixed``."""
    out: dict = {}
    for r in records:
        if all(r.get(k) == v for k, v in fixed.items()):
            out.setdefault(r[group], []).append((r[x_axis], r))
    return {g: sorted(v, key=lambda p: p[0]) for g, v in sorted(out.items())}


def _figure(records, x_axis, fixed, group, title, xlabel, path: Path, log_x=False) -> Path | str:
    """The PNG ``path``, or why it was not drawn (fewer than two ``x_axis`` values at ``fixed``)."""
    series = _series(records, x_axis, fixed, group)
    if not series or all(len(v) < 2 for v in series.values()):
        where = ", ".join(f"{k}={v}" for k, v in fixed.items())
        return f"{title}: not plotted, the sweep has fewer than two {x_axis} values at {where}"
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.5, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    for g, pts in series.items():
        xs = [x for x, _ in pts]
        top.plot(xs, [100 * r["accuracy_torch"] for _, r in pts], "o-", label=f"{group} {g} (torch)")
        emu = [(x, r["accuracy_emulator"]) for x, r in pts if r.get("accuracy_emulator") is not None]
        if emu:
            top.plot([x for x, _ in emu], [100 * a for _, a in emu], "x:", color=top.lines[-1].get_color(),
                     label=f"{group} {g} (emulator)")
        bottom.plot(xs, [r["spikes_per_hidden_neuron"] for _, r in pts], "o-")
        twin = bottom.twinx() if g == next(iter(series)) else twin
        twin.plot(xs, [r["synaptic_events_per_sample"] for _, r in pts], "s--", alpha=0.5,
                  color=top.lines[-1].get_color())
    top.axhline(100 * records[0]["accuracy_float"], color="k", ls="--", lw=1, label="float TTFS")
    top.set_ylabel("test accuracy (%)")
    top.set_title(f"{title}  ({', '.join(f'{k}={v}' for k, v in fixed.items())})", fontsize=10)
    top.legend(fontsize=7)
    top.grid(alpha=0.3)
    bottom.set_ylabel("spikes / hidden neuron (o)")
    twin.set_ylabel("synaptic events / sample (s)")
    bottom.set_xlabel(xlabel)
    if log_x:
        bottom.set_xscale("log", base=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _most_common(records, axis):
    values = [r[axis] for r in records]
    return max(set(values), key=values.count)


def make_plots(records: list[dict], out: Path) -> tuple[list[Path], list[str]]:
    """PNG plots of a sweep's records into ``out``; returns the files written and, for each plot
    not drawn, why."""
    if not records:
        return [], ["no finished points: nothing plotted"]
    steps, bits = max(r["steps"] for r in records), _most_common(records, "bits")
    clean = {"jitter": 0.0, "weight_mismatch": 0.0}
    made = [
        _figure(records, "bits", {**clean, "steps": steps}, "finetune", "accuracy vs weight bits", "weight bits",
                out / "accuracy_vs_bits.png"),
        _figure(records, "steps", {**clean, "finetune": True, "weight_mismatch": 0.0}, "bits",
                "accuracy vs steps per window (latency)", "steps per window", out / "accuracy_vs_steps.png",
                log_x=True),
        _figure(records, "jitter", {"steps": steps, "bits": bits, "weight_mismatch": 0.0}, "finetune",
                "accuracy vs spike-time jitter", "jitter sigma (fraction of the window)",
                out / "accuracy_vs_jitter.png"),
    ]
    return [p for p in made if isinstance(p, Path)], [p for p in made if isinstance(p, str)]


_PERCENT = {"accuracy_torch", "accuracy_emulator", "torch_emulator_agreement"}


def _cell(record: dict, column: str) -> str:
    v = record.get(column)
    if column == "backend_identical" and v is not None:
        return f"{v}/{record['backend_samples']}"
    if v is None:
        return "–"
    if column in _PERCENT:
        return f"{100 * v:.2f}"
    if column == "spikes_per_hidden_neuron":
        return f"{v:.3f}"
    if column == "synaptic_events_per_sample":
        return f"{v:.0f}"
    return str(v)


def write_report(records: list[dict], out: Path, title: str) -> Path:
    """``report.md`` with the plots and one row per point; returns its path."""
    plots, not_plotted = make_plots(records, out)
    cols = ["bits", "steps", "jitter", "weight_mismatch", "finetune", "accuracy_torch", "accuracy_emulator",
            "torch_emulator_agreement", "spikes_per_hidden_neuron", "synaptic_events_per_sample", "latency_steps",
            "backend_identical"]
    lines = [f"# {title}", ""]
    if records:
        lines += [f"Float TTFS baseline: {100 * records[0]['accuracy_float']:.2f} %. Accuracies in %; "
                  "jitter sigma in units of each window; '–': not measured (emulator: weight noise is torch-only; "
                  "agreement and backend (Lava): noiseless points only).", ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots] + [""]
    lines += [f"- {why}" for why in not_plotted] + ([""] if not_plotted else [])
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in sorted(records, key=lambda r: tuple(r[c] for c in ("bits", "steps", "jitter", "weight_mismatch", "finetune"))):
        lines.append("| " + " | ".join(_cell(r, c) for c in cols) + " |")
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
