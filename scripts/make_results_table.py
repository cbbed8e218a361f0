"""Regenerate the README's results table from sweep directories, run results and model directories.

    python scripts/make_results_table.py runs/robustness-fmnist runs/fmnist-vgg runs/quickstart/results.json

- a sweep directory (``sweep.json`` + ``points.jsonl``): a float row, then one row per (bits, steps)
  of its noiseless fine-tuned points (a non-fine-tuned one where no fine-tuned point exists; jitter
  robustness = accuracy at sigma 0.1 of the same bits, steps and fine-tuning);
- a ``results.json`` of ``hwtune run``: one row for the final model (emulator, Lava);
- a model directory (``hwtune.json``): one row for the trained float model;
- a robustness-study directory (``kind: robustness``): a table of its losses and recoveries;
- a ``results.json`` that deployed on a chip, or ran noise passes: its resource map, and the
  noisy accuracies before and after, as tables under the main one.

The table replaces what lies between ``<!-- results:start -->`` and ``<!-- results:end -->`` in
README.md (``--readme``); with ``--bench bench/*.json`` the benchmark table too (``<!-- bench:start -->``). Nothing is left out silently: a value that is not recorded is shown as
"–" and the notes under the table say why. Accuracies in % of the test set (or its recorded subset).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

START, END = "<!-- results:start -->", "<!-- results:end -->"
COLUMNS = ["dataset", "architecture", "ReLU acc", "TTFS acc", "spikes/neuron", "bits", "steps",
           "acc. at jitter 0.1", "torch=emulator / Lava", "command"]


def pct(v) -> str | None:
    return None if v is None else f"{100 * v:.2f} %"


def spikes(v) -> str | None:
    return None if v is None else f"{v:.3f}"


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"{path}: cannot read ({e})") from None


def arch_of(info: dict) -> str | None:
    return (info.get("training") or {}).get("arch") or (info.get("provenance", {}).get("config") or {}).get("arch")


def agreement(torch_emulator: float | None, backend_identical: int | None, backend_samples: int | None) -> str | None:
    if torch_emulator is None:
        return None
    return pct(torch_emulator) + ("" if backend_identical is None else f" / {backend_identical}/{backend_samples}")


def sweep_rows(path: Path) -> tuple[list[dict], list[str]]:
    """Rows (column -> text or None, plus '_why': column -> reason) of a sweep directory, and notes."""
    summary = read_json(path / "sweep.json")
    points = [json.loads(line) for line in (path / "points.jsonl").read_text().splitlines() if line.strip()]
    model_dir = Path(summary.get("base") or (summary["model"].get("load") or path / "base"))
    info = read_json(model_dir / "hwtune.json")
    training = info.get("training") or {}
    common = {"dataset": info.get("dataset", {}).get("name") or summary["dataset"]["name"],
              "architecture": arch_of(info),
              "command": f"`{summary.get('command') or 'hwtune sweep ' + summary['sweep']}`"}
    no_twin = "the base model was trained without the ReLU twin (hwtune train --twin)"
    rows = [{**common, "ReLU acc": pct((training.get("twin") or {}).get("relu_accuracy")),
             "TTFS acc": pct(summary["float_accuracy"]),
             "spikes/neuron": spikes((training.get("evaluation") or {}).get("spikes_per_hidden_neuron")),
             "bits": "float", "_why": {"ReLU acc": no_twin, "spikes/neuron": "not recorded for the base model",
                                       "steps": "float model: continuous time", "acc. at jitter 0.1":
                                       "the sweep measures jitter on quantized models only",
                                       "torch=emulator / Lava": "the float model is not exported"}}]
    notes = [f"{path}: rows are its noiseless (sigma 0, no weight noise) fine-tuned points; all {len(points)} "
             f"points are in {path / 'report.md'}"]
    clean_points = [p for p in points if p["jitter"] == 0 and p["weight_mismatch"] == 0]
    for bits, steps in sorted({(p["bits"], p["steps"]) for p in clean_points}, key=lambda k: (-k[0], -k[1])):
        same = sorted((p for p in clean_points if (p["bits"], p["steps"]) == (bits, steps)),
                      key=lambda p: not p["finetune"])
        clean = same[0]
        if not clean["finetune"]:
            notes.append(f"{path}: {bits} bits, {steps} steps: no fine-tuned point; the row is without fine-tuning")
        noisy = next((p for p in points if (p["bits"], p["steps"], p["finetune"], p["weight_mismatch"], p["jitter"])
                      == (bits, steps, clean["finetune"], 0, 0.1)), None)
        rows.append({**common, "TTFS acc": pct(clean["accuracy_torch"]),
                     "spikes/neuron": spikes(clean["spikes_per_hidden_neuron"]), "bits": str(bits), "steps": str(steps),
                     "acc. at jitter 0.1": pct(noisy and noisy["accuracy_torch"]),
                     "torch=emulator / Lava": agreement(clean.get("torch_emulator_agreement"),
                                                        clean.get("backend_identical"), clean.get("backend_samples")),
                     "_why": {"ReLU acc": "the ReLU twin is a float model (float row)",
                              "acc. at jitter 0.1": "the sweep has no sigma 0.1 point here"}})
    return rows, notes


def run_rows(path: Path) -> tuple[list[dict], list[str]]:
    """The row of a ``hwtune run`` results.json (final model, deployed) and notes."""
    results = read_json(path)
    stages, deploy = results["stages"], results.get("deploy") or {}
    model_file = path.parent / "00-model" / "hwtune.json"
    info = read_json(model_file) if model_file.exists() else {}
    emu, lava = deploy.get("emulator") or {}, deploy.get("backend")
    quant = [s for s in stages if s["stage"] == "quantize"]
    grids = [s["window_steps"] for s in [emu, *reversed(stages)] if "window_steps" in s]
    jitter = [s for s in stages if s["stage"] == "noise" and s.get("config", {}).get("jitter") == 0.1]
    final = stages[-1]
    command = (results.get("provenance") or {}).get("command", "")
    argv0, _, rest = command.partition(" ")
    return [{
        "dataset": results.get("dataset") or info.get("dataset", {}).get("name"),
        "architecture": results.get("arch") or arch_of(info), "ReLU acc": None,
        "TTFS acc": pct(deploy.get("torch_accuracy", final.get("accuracy_after", final.get("accuracy")))),
        "spikes/neuron": spikes(emu.get("spikes_per_hidden_neuron", final.get("spikes_per_hidden_neuron"))),
        "bits": str(quant[-1]["config"]["bits"]) if quant else None,
        "steps": "/".join(str(s) for s in grids[0]) if grids else None,
        "acc. at jitter 0.1": pct(jitter[-1]["noisy_accuracy_after"]) if jitter else None,
        "torch=emulator / Lava": agreement(deploy.get("torch_emulator_agreement"),
                                           lava and lava["identical_spike_for_spike"], lava and lava["samples"]),
        "command": f"`{Path(argv0).name} {rest}`" if argv0.endswith("hwtune") else f"`hwtune run {results['recipe']}`",
        "_why": {"ReLU acc": "a recipe trains no ReLU twin", "bits": "no quantize pass", "steps": "no time grid",
                 "acc. at jitter 0.1": "the recipe has no noise pass at jitter 0.1",
                 "torch=emulator / Lava": "the recipe has no deploy section",
                 "dataset": f"not in {path} nor {model_file}", "architecture": f"not in {path} nor {model_file}"},
    }], subset_note(results)


def subset_note(results: dict) -> list[str]:
    """A note where a run's recipe evaluates on the first ``samples`` test images only."""
    recipe = Path(results["recipe"])
    samples = (yaml.safe_load(recipe.read_text()) or {}).get("samples") if recipe.exists() else None
    return [f"{recipe}: accuracies on the first {samples:,} test images"] if samples else []


def model_rows(path: Path) -> tuple[list[dict], list[str]]:
    """The row of a trained float model directory and notes."""
    info = read_json(path / "hwtune.json")
    training = info.get("training") or {}
    ev = training.get("evaluation") or {}
    return [{"dataset": info.get("dataset", {}).get("name"), "architecture": arch_of(info),
             "ReLU acc": pct((training.get("twin") or {}).get("relu_accuracy")), "TTFS acc": pct(ev.get("accuracy")),
             "spikes/neuron": spikes(ev.get("spikes_per_hidden_neuron")), "bits": "float",
             "command": f"`{info.get('provenance', {}).get('command')}`",
             "_why": {"ReLU acc": "trained without the ReLU twin (--twin)", "steps": "float model: continuous time",
                      "acc. at jitter 0.1": "not measured on the float model",
                      "torch=emulator / Lava": "the float model is not exported",
                      "TTFS acc": f"{path / 'hwtune.json'} records no training report"}}], []


def energy(uj: float) -> str:
    return f"{uj / 1000:.3g} mJ" if uj >= 1000 else f"{uj:.3g} uJ"


def resource_section(path: Path) -> list[str]:
    """The chip's resource map of a ``hwtune run`` that deployed on a target with a chip section."""
    results = read_json(path)
    res = results.get("resources")
    if not res:
        return []
    t, chip = res["total"], res["chip"]
    lines = [f"Resource map of `{results['recipe']}` ({results.get('arch')} on {results.get('dataset')}, target "
             f"{results['target']}; estimates per inference, sources in the target file):", "",
             "| layer | kind | neurons | cores | synapses | synaptic memory (kbit) | fan-in | inputs/core | stored as |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m in res["layers"]:
        lines.append(f"| {m['name']} | {m['kind']} | {m['neurons']:,} | {m['cores']} | {m['synapses']:,} | "
                     f"{m['memory_bits'] / 1000:,.1f} | {m['fan_in']:,} | {m['axons_per_core']:,} | {m['stored_as']} |")
    lines.append(f"| total | | {t['neurons']:,} | {t['cores']} | {t['synapses']:,} | {t['memory_bits'] / 1000:,.1f} "
                 "| | | |")
    lines += ["", f"- chips: {t['chips']} of at most {chip['max_chips']} ({chip['cores_per_chip']} cores each)",
              f"- latency: {t['latency_steps']} steps = {t['latency_us'] / 1000:.3g} ms at {chip['step_time_us']:g} "
              "us per step"]
    if "energy_uj" in t:
        lines.append(f"- synaptic events: {t['synaptic_events']:,.0f} per inference ({t['events_source']}); "
                     f"neuron updates {t['neuron_updates']:,}")
        lines.append(f"- dynamic energy per inference: {energy(t['dynamic_energy_uj'])} (Loihi 1 per-operation "
                     "figures: estimates)")
        lines.append(f"- static: {energy(t['static_energy_uj'])} per inference from the whole chip's static power over "
                     f"the latency, whatever the net uses of them ({t['cores']} cores of {t['chips'] * chip['cores_per_chip']})")
    return lines + [""]


def study_section(path: Path) -> list[str]:
    """Per study of a robustness-study directory, every noisy level: each arm, the control's loss, its
    recovery by noise-aware fine-tuning at equal budget (mean +- std over seeds) and the 2-sigma test."""
    summary = read_json(path / "sweep.json")
    tested = "" if summary.get("samples") is None else f" on the first {summary['samples']:,} test images"
    trained = "" if summary.get("train_samples") is None else f" over {summary['train_samples']:,} training images"
    searched = " after a window search" if summary.get("window_search") else ""
    trained_at = "; ".join(f"{s['name']}: " + ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in s["train"].items() if v)
                           for s in summary["studies"])
    lines = [f"Robustness study `{summary['command']}` ({summary['dataset']}, target {summary['target']}, "
             f"{len(summary['seeds'])} seeds x {summary['devices']} held-out devices{tested}, mean ± std over seeds; "
             f"equal fine-tuning budget {summary['finetune']['epochs']:g} epoch{'' if summary['finetune']['epochs'] == 1 else 's'}"
             f"{trained}{searched}; the noise-aware arm trained at {trained_at}; full table and "
             f"plot: [{path / 'report.md'}]({path / 'report.md'})):", "",
             "| noise | level | plain | control | noise-aware | control loss | recovered | ratio | > 2 std |",
             "|---|---|---|---|---|---|---|---|---|"]
    for study in summary["studies"]:
        for r in summary["summaries"].get(study["name"], []):
            if not r["level"]:
                continue
            ratio = "–" if r["recovery_ratio"] is None else f"{r['recovery_ratio']:.2f}"
            lines.append(f"| {study['name']} | {r['level']:g} | {pct(r['plain'])} ± {100 * r['plain_std']:.2f} | "
                         f"{pct(r['control'])} ± {100 * r['control_std']:.2f} | {pct(r['noise-aware'])} ± "
                         f"{100 * r['noise-aware_std']:.2f} | {100 * r['control_loss']:.2f} | "
                         f"{100 * r['recovered']:.2f} ± {100 * r['recovered_std']:.2f} | {ratio} | "
                         f"{'yes' if r['beyond_2_std'] else 'no'} |")
    return lines + [""]


def noise_run_section(path: Path) -> list[str]:
    """Before/after of the noise passes of a ``hwtune run`` (held-out device instances)."""
    results = read_json(path)
    rows = [s for s in results["stages"] if s["stage"] == "noise"]
    if not rows:
        return []
    lines = [f"Noise-aware fine-tuning in `hwtune run {results['recipe']}` ({results.get('arch')} on "
             f"{results.get('dataset')}, target {results['target']}; noisy = mean ± std over {rows[0]['devices']} "
             f"held-out device instances; {results['stages'][0]['n']:,} test images):", "",
             "| noise (trained and evaluated at) | clean before | noisy before | noisy after | clean after |",
             "|---|---|---|---|---|"]
    for s in rows:
        noise = ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in s["noise"].items() if v)
        lines.append(f"| {noise} | {pct(s['accuracy_before'])} | {pct(s['noisy_accuracy_before'])} ± "
                     f"{100 * s['noisy_std_before']:.2f} | {pct(s['noisy_accuracy_after'])} ± "
                     f"{100 * s['noisy_std_after']:.2f} | {pct(s['accuracy_after'])} |")
    return lines + [""]


def sections_for(path: Path) -> list[str]:
    """What an input adds below the table: resource maps, robustness studies, analog before/after."""
    if (path / "sweep.json").exists():
        return study_section(path) if read_json(path / "sweep.json").get("kind") == "robustness" else []
    if path.name.endswith(".json"):
        return resource_section(path) + noise_run_section(path)
    return []


def rows_for(path: Path) -> tuple[list[dict], list[str]]:
    if (path / "sweep.json").exists():
        if read_json(path / "sweep.json").get("kind") == "robustness":
            return [], []
        return sweep_rows(path)
    if path.name.endswith(".json"):
        return run_rows(path)
    if (path / "hwtune.json").exists():
        return model_rows(path)
    raise SystemExit(f"{path}: not a sweep directory, results.json or model directory")


def table(paths: list[Path]) -> str:
    """Markdown table of every input, then the notes: why each '–' is there, grouped by reason."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    notes, why_rows = [], {}
    for path in paths:
        rows, path_notes = rows_for(path)
        notes += path_notes
        for row in rows:
            n = len(lines) - 1
            for col in COLUMNS:
                if row.get(col) is None:
                    why_rows.setdefault(f"{col}: {row['_why'].get(col, 'not recorded')}", []).append(n)
            lines.append("| " + " | ".join(row.get(col) or "–" for col in COLUMNS) + " |")
    notes += [f"row{'s' * (len(rows) > 1)} {', '.join(map(str, rows))}: – {why}" for why, rows in why_rows.items()]
    sections = [line for path in paths for line in sections_for(path)]
    return "\n".join(lines + ([""] + [f"- {note}" for note in notes] if notes else []) + ([""] + sections[:-1]
                                                                                          if sections else []))


BENCH_START, BENCH_END = "<!-- bench:start -->", "<!-- bench:end -->"


def bench_rows(path: Path) -> list[tuple[str, str, str, str]]:
    """(what, measured, goal, command) of a bench/*.json file, by the ratios it records."""
    b = read_json(path)
    command = f"`python scripts/{(b.get('provenance') or {}).get('command', '?').split('scripts/')[-1]}`"
    if "ratio_ttfs_over_relu" in b:
        return [(f"TTFS / ReLU epoch time, {path.stem.split('-', 1)[-1]}", f"{b['ratio_ttfs_over_relu']:.2f}",
                 f"<= {b['goal']}", command)]
    if "ratios" in b:
        net = "-".join(str(n) for n in b["net"]["sizes"]) if isinstance(b.get("net"), dict) else "?"
        command = f"`{emulator_environment(b)}{command.strip('`')}`"
        ratios = b["ratios"]
        cpu = f" (CPU time {ratios['emulator_over_torch_cpu_time']:.2f})" \
            if "emulator_over_torch_cpu_time" in ratios else ""
        rows = [(f"emulator / torch float32 time, {net}{emulator_kernels(b)}",
                 f"{ratios['emulator_over_torch_time']:.2f}{cpu}", f"<= {b['goals']['emulator_over_torch_time']}",
                 command)]
        for engine, ratio in list((ratios.get("engines_over_torch_time") or {}).items())[1:]:
            rows.append((f"emulator on the {engine} engine{' (an install without torch)' * (engine == 'numpy')} / "
                         f"torch float32 time, {net}", f"{ratio:.2f}", "none (the same integers)", command))
        if "emulator_over_lava_speed" in b["ratios"]:
            rows.append((f"emulator / Lava speed, {net} ({b['lava']['samples']} Lava samples in one run)",
                         f"{b['ratios']['emulator_over_lava_speed']:.0f}", f">= {b['goals']['emulator_over_lava_speed']}",
                         command))
        return rows
    if "largest_peak_rss_mb" in b:
        worst = max(b["verbs"], key=lambda v: b["verbs"][v]["peak_rss_mb"])
        return [(f"largest peak RSS of {', '.join(b['verbs'])} ({worst})", f"{b['largest_peak_rss_mb']:.0f} MB",
                 f"<= {b['goal_mb']} MB", command)]
    if "ratio_serial_to_ray" in b:
        lava = "no Lava check" if b.get("backend_samples") == 0 else "Lava checks on the noiseless points"
        return [(f"sweep wall time, serial / Ray with {b['workers']} workers ({b['points']} points, {lava}, "
                 f"{b['cores']} cores)",
                 f"{b['ratio_serial_to_ray']:.2f}", f">= {b['goal']}", command)]
    if "median_s" in b and "hwtune --help" in b["median_s"]:
        return [("`hwtune --help` start-up (x bare `python -c pass`)", f"{b['median_s']['hwtune --help']:.3f} s "
                 f"({b['ratio_to_bare_python']['hwtune --help']:.1f}x)", f"< {b['goal_s']} s", command)]
    return []


def emulator_kernels(b: dict) -> str:
    """What an emulator ratio was measured with (bench_emulator.py's ``kernels``): the CPU, the
    fast mode's engine, numpy's BLAS and the CPU it took this one for, the threads; "" for older files."""
    k = b.get("kernels")
    if not isinstance(k, dict):
        return ""
    blas = (k.get("numpy_blas") or [{}])[0]
    return (f" ({k['cpu'].get('model_name')} family {k['cpu'].get('family')} model {k['cpu'].get('model')}; "
            f"fast mode on {k['emulator_engine']}, torch {k['torch']['blas']} + oneDNN {k['torch']['cpu_capability']}; "
            f"numpy {blas.get('internal_api')} {blas.get('version')} for {blas.get('architecture')}; "
            f"{k['torch']['threads']} thread(s) each)")


def emulator_environment(b: dict) -> str:
    """The kernel-choosing environment variables an emulator benchmark ran with, as a command prefix."""
    env = (b.get("kernels") or {}).get("environment") or {}
    return "".join(f"{name}={value} " for name, value in env.items() if not name.endswith("_THREADS"))


def bench_table(paths: list[Path]) -> str:
    lines = ["| benchmark | measured | goal | command |", "|---|---|---|---|"]
    lines += [f"| {what} | {value} | {goal} | {cmd} |" for path in paths for what, value, goal, cmd in bench_rows(path)]
    return "\n".join(lines)


def replace_between(text: str, start: str, end: str, body: str, where: Path) -> str:
    if start not in text or end not in text:
        raise SystemExit(f"{where}: markers {start} / {end} not found")
    head, rest = text.split(start, 1)
    return f"{head}{start}\n{body}\n{end}{rest.split(end, 1)[1]}"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("inputs", nargs="*", type=Path,
                   help="sweep directories, results.json files, model directories (none: only --bench's table)")
    p.add_argument("--readme", type=Path, default=Path("README.md"))
    p.add_argument("--bench", nargs="*", type=Path, default=[], help="bench/*.json files: the benchmark table")
    p.add_argument("--print", action="store_true", help="print the table instead of editing the README")
    args = p.parse_args(argv)
    if not args.inputs and not args.bench:
        p.error("give the results' inputs, --bench files, or both")
    text = table(args.inputs) if args.inputs else bench_table(args.bench)
    if args.print:
        print(text)
        return
    readme = args.readme.read_text()
    if args.inputs:
        readme = replace_between(readme, START, END, text, args.readme)
    if args.bench:
        readme = replace_between(readme, BENCH_START, BENCH_END, bench_table(args.bench), args.readme)
    args.readme.write_text(readme)
    print(f"updated {args.readme}")


if __name__ == "__main__":
    main()
