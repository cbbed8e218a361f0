"""Regenerate the README's results table from sweep directories, run results and model directories.

    python scripts/make_results_table.py runs/robustness-fmnist runs/fmnist-vgg runs/quickstart/results.json

- a sweep directory (``sweep.json`` + ``points.jsonl``): a float row, then one row per (bits, steps)
  of its fine-tuned points (jitter robustness = accuracy at sigma 0.1 when the sweep has it);
- a ``results.json`` of ``hwtune run``: one row for the final model (emulator, Lava);
- a model directory (``hwtune.json``): one row for the trained float model.

The table replaces what lies between ``<!-- results:start -->`` and ``<!-- results:end -->`` in
README.md (``--readme``); missing values are shown as "–".
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

START, END = "<!-- results:start -->", "<!-- results:end -->"
COLUMNS = ["dataset", "architecture", "ReLU acc", "TTFS acc", "spikes/neuron", "bits", "steps",
           "acc. at jitter 0.1", "torch=emulator / Lava", "command"]


def pct(v) -> str:
    return "–" if v is None else f"{100 * v:.2f} %"


def arch_of(info: dict) -> str:
    return (info.get("training") or {}).get("arch") or (info.get("provenance", {}).get("config", {}) or {}).get("arch", "–")


def sweep_rows(path: Path) -> list[list[str]]:
    summary = json.loads((path / "sweep.json").read_text())
    points = [json.loads(line) for line in (path / "points.jsonl").read_text().splitlines() if line.strip()]
    model_dir = Path(summary["model"]["load"]) if "load" in summary["model"] else path / "base"
    info = json.loads((model_dir / "hwtune.json").read_text())
    dataset, arch = info.get("dataset", {}).get("name", "–"), arch_of(info)
    training = info.get("training", {})
    relu = (training.get("twin") or {}).get("relu_accuracy")
    spikes = (training.get("evaluation") or {}).get("spikes_per_hidden_neuron")
    command = f"`hwtune sweep {summary['sweep']}`"
    rows = [[dataset, arch, pct(relu), pct(summary["float_accuracy"]), "–" if spikes is None else f"{spikes:.3f}",
             "float", "–", "–", "–", command]]
    tuned = [p for p in points if p["finetune"] and p["weight_noise"] == 0]
    for bits, steps in sorted({(p["bits"], p["steps"]) for p in tuned}, key=lambda k: (-k[0], -k[1])):
        clean = next((p for p in tuned if (p["bits"], p["steps"], p["sigma"]) == (bits, steps, 0.0)), None)
        noisy = next((p for p in tuned if (p["bits"], p["steps"], p["sigma"]) == (bits, steps, 0.1)), None)
        if clean is None:
            continue
        agree = "–" if clean.get("torch_emulator_agreement") is None else pct(clean["torch_emulator_agreement"])
        if clean.get("lava_identical") is not None:
            agree += f" / {clean['lava_identical']}/{clean['lava_samples']}"
        rows.append([dataset, arch, "", pct(clean["accuracy_torch"]), f"{clean['spikes_per_hidden_neuron']:.3f}",
                     str(bits), str(steps), pct(noisy["accuracy_torch"]) if noisy else "–", agree, command])
    return rows


def run_rows(path: Path) -> list[list[str]]:
    results = json.loads(path.read_text())
    deploy = results.get("deploy") or {}
    emu = deploy.get("emulator", {})
    final = results["stages"][-1]
    first = results["stages"][0]
    lava = deploy.get("lava")
    agree = pct(deploy.get("torch_emulator_agreement")) + (f" / {lava['identical_spike_for_spike']}/{lava['samples']}"
                                                          if lava else "")
    quant = next((s for s in results["stages"] if s["stage"] == "quantize"), {})
    return [[results.get("dataset", "–"), results.get("arch", "–"), "–", pct(final.get("accuracy_after", first.get("accuracy"))),
             f"{emu['spikes_per_hidden_neuron']:.3f}" if emu else "–", str(quant.get("config", {}).get("bits", "–")),
             "/".join(str(s) for s in emu.get("window_steps", [])) or "–",
             "–", agree, f"`hwtune run {results['recipe']}`"]]


def model_rows(path: Path) -> list[list[str]]:
    info = json.loads((path / "hwtune.json").read_text())
    training = info.get("training", {})
    ev = training.get("evaluation", {})
    relu = (training.get("twin") or {}).get("relu_accuracy")
    return [[info.get("dataset", {}).get("name", "–"), arch_of(info), pct(relu), pct(ev.get("accuracy")),
             f"{ev['spikes_per_hidden_neuron']:.3f}" if "spikes_per_hidden_neuron" in ev else "–", "float", "–", "–",
             "–", f"`{info.get('provenance', {}).get('command', '–')}`"]]


def rows_for(path: Path) -> list[list[str]]:
    if (path / "sweep.json").exists():
        return sweep_rows(path)
    if path.name.endswith(".json"):
        return run_rows(path)
    if (path / "hwtune.json").exists():
        return model_rows(path)
    raise SystemExit(f"{path}: not a sweep directory, results.json or model directory")


def table(paths: list[Path]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for path in paths:
        lines += ["| " + " | ".join(row) + " |" for row in rows_for(path)]
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("inputs", nargs="+", type=Path)
    p.add_argument("--readme", type=Path, default=Path("README.md"))
    p.add_argument("--print", action="store_true", help="print the table instead of editing the README")
    args = p.parse_args(argv)
    text = table(args.inputs)
    if args.print:
        print(text)
        return
    readme = args.readme.read_text()
    if START not in readme or END not in readme:
        raise SystemExit(f"{args.readme}: markers {START} / {END} not found")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    args.readme.write_text(f"{head}{START}\n{text}\n{END}{tail}")
    print(f"updated {args.readme}")


if __name__ == "__main__":
    main()
