"""What a model or artifact directory holds, for people (``hwtune info``, ``hwtune.info``).

:func:`describe` reads the directory with the loaders' full checks (hwtune.io.load,
Artifact.load) and returns a JSON-able record: what it is, its layers, data, target, the passes
it went through with their records, its accuracy and its size; :func:`lines` puts it in words.
"""
from __future__ import annotations

from pathlib import Path

from hwtune.errors import HwtuneError


def _disk_bytes(path: Path) -> int:
    """Bytes of the regular files directly in ``path`` (a model or artifact directory is flat)."""
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file() and not f.is_symlink())


def _dataset(meta: dict) -> dict:
    return {k: meta[k] for k in ("name", "source", "shape", "n_classes", "split_seed") if k in meta}


def _model(path: Path) -> dict:
    from hwtune import io
    from hwtune.architectures import output_shapes

    net = io.load(path)
    training = net.info.get("training", {})
    history = [{k: v for k, v in record.items() if k not in ("finetune", "provenance")}
               for record in net.info.get("history", [])]
    accuracy = history[-1]["accuracy_after"] if history else training.get("evaluation", {}).get("accuracy")
    target = net.info.get("target")
    weights = sum(syn.weight.numel() for syn in net.synapses)
    record = {"kind": "model", "path": str(path), "network": net.info.get("network", "ttfs"),
              "arch": training.get("arch"), "input_shape": list(net.input_shape),
              "layer_shapes": [list(s) for s in output_shapes(net.arch, net.input_shape)],
              "dataset": _dataset(net.info.get("dataset", {})),
              "target": target.get("name") if isinstance(target, dict) else target,
              "quantized": net.quant is not None, "accuracy": accuracy, "passes": history,
              "size": {"weights": weights, "parameters": sum(p.numel() for p in net.parameters()),
                       "disk_bytes": _disk_bytes(path)},
              "created": net.info.get("provenance", {}).get("created")}
    if net.quant is not None:
        bits = net.quant.weights.bits if net.quant.weights is not None else None
        record.update(weight_bits=bits, window_steps=list(net.quant.steps), latency_steps=net.latency_steps())
        if bits is not None:
            record["size"]["weight_bits_total"] = weights * bits
    return record


def _artifact(path: Path) -> dict:
    from hwtune.artifact import Artifact

    artifact = Artifact.load(path)
    meta = artifact.meta
    synapses = sum(int((layer.weight != 0).sum()) for layer in artifact.layers)
    record = {"kind": "artifact", "path": str(path), "source": meta.get("source") or None,
              "input_shape": list(artifact.input_shape),
              "layers": [{"name": layer.name, "kind": layer.synapse.kind, "neurons": layer.n_out,
                          "out_shape": list(layer.out_shape)} for layer in artifact.layers],
              "dataset": _dataset(meta.get("dataset", {})) if isinstance(meta.get("dataset"), dict) else {},
              "target": meta.get("target", {}).get("name") if isinstance(meta.get("target"), dict) else None,
              "weight_bits": artifact.weight_bits, "window_steps": artifact.window_steps,
              "latency_steps": artifact.latency_steps, "data": meta.get("data"),
              "size": {"synapses": synapses, "weight_bits_total": synapses * artifact.weight_bits,
                       "disk_bytes": _disk_bytes(path)},
              "created": meta.get("provenance", {}).get("created") if isinstance(meta.get("provenance"), dict) else None}
    resources = meta.get("resources")
    if isinstance(resources, dict) and isinstance(resources.get("total"), dict):
        total = resources["total"]
        record["resources"] = {k: total[k] for k in ("cores", "chips", "neurons", "synapses", "latency_us",
                                                       "energy_uj") if k in total}
    return record


def describe(path: str | Path) -> dict:
    """The record of a model directory (hwtune.json inside) or an artifact directory (artifact.json)."""
    from hwtune import io
    from hwtune.artifact import JSON_FILE

    path = Path(path)
    if (path / io.CONFIG).is_file():
        return _model(path)
    if (path / JSON_FILE).is_file():
        return _artifact(path)
    raise HwtuneError(f"{path}: neither a model directory ({io.CONFIG} inside) nor an artifact directory "
                      f"({JSON_FILE} inside)")


def _pct(x) -> str:
    return "not recorded" if x is None else f"{100 * x:.2f} %"


def _size(n_bytes: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.3g} {unit}"
    return f"{n_bytes} B"


def lines(record: dict) -> list[str]:
    """A :func:`describe` record in words, one fact a line."""
    from hwtune.passes import record_lines

    data = record["dataset"]
    where = data.get("source", "npz") if data.get("name") == "npz" else data.get("name", "unknown data")
    size = record["size"]
    if record["kind"] == "model":
        out = [f"{record['path']}: hwtune model, {'quantized ' if record['quantized'] else 'float '}"
               f"{record['network'].upper() if record['network'] == 'relu' else 'TTFS'} net"
               + (f" ({record['arch']})" if record["arch"] else ""),
               f"  layers: input {tuple(record['input_shape'])} -> "
               + " -> ".join(str(tuple(s)) for s in record["layer_shapes"]),
               f"  trained on: {where}, {data.get('n_classes', '?')} classes",
               f"  target: {record['target'] or 'none yet (hwtune quantize prepares it for one)'}"]
        if record["quantized"]:
            out.append(f"  grid: {record.get('weight_bits') or 'float'}-bit weights, windows {record['window_steps']} "
                       f"steps, latency {record['latency_steps']} steps")
        out.append(f"  accuracy: {_pct(record['accuracy'])} (test set, after the last pass below)")
        out.append(f"  passes: {len(record['passes'])}" + ("" if record["passes"] else " (as trained)"))
        for p in record["passes"]:
            config = p.get("config") if isinstance(p.get("config"), dict) else {}
            settings = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in config.items() if v is not None and v is not False)
            out += ["    " + line for line in record_lines(p)] + ([f"      settings: {settings}"] if settings else [])
        out.append(f"  size: {size['weights']:,} weights ({size['parameters']:,} parameters)"
                   + (f", {size['weight_bits_total'] / 8e3:.3g} kB as {record['weight_bits']}-bit integers"
                      if "weight_bits_total" in size else "") + f"; {_size(size['disk_bytes'])} on disk")
    else:
        out = [f"{record['path']}: hwtune artifact (integer layers + JSON) for target {record['target'] or 'unknown'}"
               + (f", exported from {record['source']}" if record["source"] else ""),
               "  layers: " + ", ".join(f"{layer['name']} ({layer['kind']}, {layer['neurons']:,} neurons)"
                                        for layer in record["layers"]),
               f"  data: {where}" + ("; export used " + "; ".join(record["data"]["uses"])
                                     if isinstance(record.get("data"), dict) else ""),
               f"  grid: {record['weight_bits']}-bit weights, windows {record['window_steps']} steps, latency "
               f"{record['latency_steps']} steps",
               "  accuracy: not stored in an artifact (`hwtune emulate ARTIFACT` measures it)"]
        if "resources" in record:
            r = record["resources"]
            out.append(f"  on the chip: {r.get('cores')} cores on {r.get('chips')} chip(s)"
                       + (f", {r['energy_uj'] / 1e3:.3g} mJ per inference (estimate, static power included)"
                      if "energy_uj" in r else ""))
        out.append(f"  size: {size['synapses']:,} nonzero synapses ({size['weight_bits_total'] / 8e3:.3g} kB as "
                   f"{record['weight_bits']}-bit integers); {_size(size['disk_bytes'])} on disk")
    if record["created"]:
        out.append(f"  created: {record['created']}")
    return out

