"""Model directories: round trip, atomic writes, clear errors on bad files."""
import json

import pytest
import torch

from hwtune import io
from hwtune.numerics import WeightFormat
from hwtune.ttfs import QuantSpec, TTFSNet, vgg


def make_net():
    net = TTFSNet(vgg((1, 8, 8), [4, "P", 6], [10], 3), (1, 8, 8), windows=[2.0, 3.0, 4.0])
    net.saturate = True
    net.info = {"dataset": {"name": "digits"}, "history": [{"pass": "quantize"}]}
    return net


def test_round_trip_float_and_quantized(tmp_path):
    net = make_net()
    x = torch.rand(5, 1, 8, 8)
    io.save(net, tmp_path / "f")
    loaded = io.load(tmp_path / "f")
    assert torch.equal(loaded(x), net(x)) and loaded.saturate and loaded.info == net.info
    net.set_quant(QuantSpec([8, 8, 8, 8], WeightFormat(bits=4, scale="per-channel")))
    io.save(net, tmp_path / "q")
    loaded = io.load(tmp_path / "q")
    assert loaded.quant == net.quant
    assert torch.equal(loaded(x), net(x))


def test_overwrite_is_atomic_and_failed_save_leaves_old(tmp_path, monkeypatch):
    net = make_net()
    io.save(net, tmp_path / "m")
    before = (tmp_path / "m" / "hwtune.json").read_text()

    def boom(*a, **k):
        raise RuntimeError("disk full")
    monkeypatch.setattr(io, "save_file", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        io.save(net, tmp_path / "m")
    assert (tmp_path / "m" / "hwtune.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary leftovers


def test_errors_name_file_and_problem(tmp_path):
    net = make_net()
    io.save(net, tmp_path / "m")
    cfg = tmp_path / "m" / "hwtune.json"
    data = json.loads(cfg.read_text())
    data["arch"][0]["out"] = 5  # conv0 now has 5 channels: the stored weight no longer fits
    data["arch"][2]["in"] = 5
    cfg.write_text(json.dumps(data))
    with pytest.raises(io.ModelFileError, match=r"model.safetensors: tensor 'synapses.0.weight' has shape"):
        io.load(tmp_path / "m")
    cfg.write_text("{not json")
    with pytest.raises(io.ModelFileError, match="hwtune.json: not valid JSON"):
        io.load(tmp_path / "m")
    with pytest.raises(io.ModelFileError, match="not a model directory"):
        io.load(tmp_path / "nowhere")
    io.save(net, tmp_path / "t")
    (tmp_path / "t" / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(io.ModelFileError, match="model.safetensors: unreadable"):
        io.load(tmp_path / "t")


@pytest.mark.parametrize("edit, message", [
    (lambda t: t["int.0.weight"].view(-1).__setitem__(1, t["int.0.weight"].view(-1)[1] + 1),
     r"layer 0 \(conv2d\): stored integer weight \[0, 0, 0, 1\] is -?\d+ but brevitas [\d.]+ quantizes the stored "
     r"float weight to -?\d+ \(1 of 36 differ\)"),
    (lambda t: t["int.1.weight"].view(-1).__setitem__(0, 9),
     r"tensor 'int.1.weight' \(layer 1, conv2d\): weight \[0, 0, 0, 0\] is 9, outside the 4-bit range \[-8, 7\]"),
    (lambda t: t.__setitem__("int.2.weight", t["int.2.weight"].float()),
     r"tensor 'int.2.weight' \(layer 2, dense\) has dtype torch.float32, expected integers"),
    (lambda t: t.pop("int.2.weight"), r"missing tensor 'int.2.weight' \(layer 2, dense\)"),
    (lambda t: t.__setitem__("int.1.weight", (t["int.1.weight"].to(torch.int64) % 256).to(torch.uint8)),
     r"tensor 'int.1.weight' \(layer 1, conv2d\): weight \[\d+, \d+, \d+, \d+\] is (1\d\d|2\d\d), outside the 4-bit "
     r"range \[-8, 7\] \(\d+ of 216 are\)"),
])
def test_stored_integers_are_read_and_checked_against_brevitas(tmp_path, edit, message):
    """Loading reads the stored mantissas first (dtype, range), then requires brevitas to make the
    same integers of the float weights, naming layer, weight and both values."""
    from safetensors.torch import load_file, save_file
    net = make_net()
    net.set_quant(QuantSpec([8, 8, 8, 8], WeightFormat(bits=4)))
    io.save(net, tmp_path / "q")
    path = tmp_path / "q" / "model.safetensors"
    tensors = {k: v.clone() for k, v in load_file(str(path)).items()}
    edit(tensors)
    save_file(tensors, str(path))
    with pytest.raises(io.ModelFileError, match=message):
        io.load(tmp_path / "q")


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(arch="dense"), "invalid architecture: an architecture is a list of layers"),
    (lambda d: d.update(dataset="digits"), "'dataset' must be a JSON object"),
    (lambda d: d.update(history="none"), "'history' must be a JSON"),
    (lambda d: d.update(history=[1, 2]), "'history' must be a list of JSON objects"),
    (lambda d: d.update(windows=[-4.0, 2.0, 2.0]), "windows must list 3 positive finite lengths"),
    (lambda d: d.update(windows=[float("nan"), 2.0, 2.0]), "windows must list 3 positive finite lengths"),
    (lambda d: d.update(quant={"steps": [0, 0, 0, 0]}), "quant.steps must list 4 window lengths in 1..65536"),
    (lambda d: d.update(quant={"steps": [8, 8, 8, 8], "delay": 1000000}), "quant.delay must be an integer in 1..62"),
    (lambda d: d["arch"][0].update(kernel=-1), "layer 0 (conv2d): kernel = -1 must be an integer >= 1"),
    (lambda d: d["arch"][2].update(**{"in": 5}), "layer 2 (conv2d): takes 5 channels, gets 4"),
])
def test_hostile_model_json_is_named(tmp_path, edit, message):
    net = make_net()
    io.save(net, tmp_path / "m")
    cfg = tmp_path / "m" / "hwtune.json"
    data = json.loads(cfg.read_text())
    edit(data)
    cfg.write_text(json.dumps(data))
    with pytest.raises(io.ModelFileError) as e:
        io.load(tmp_path / "m")
    assert message in str(e.value) and "hwtune.json" in str(e.value)
    cfg.write_text("[1, 2]")
    with pytest.raises(io.ModelFileError, match="expected a JSON object, got list"):
        io.load(tmp_path / "m")


def test_non_finite_weights_are_refused_on_load_and_save(tmp_path):
    from safetensors.torch import load_file, save_file
    net = make_net()
    io.save(net, tmp_path / "m")
    path = tmp_path / "m" / "model.safetensors"
    tensors = load_file(str(path))
    tensors["synapses.1.weight"][0, 0, 0, 0] = float("nan")
    save_file(tensors, str(path))
    with pytest.raises(io.ModelFileError, match=r"tensor 'synapses.1.weight' \(layer 1\) holds NaN"):
        io.load(tmp_path / "m")
    with torch.no_grad():
        net.synapses[0].bias[0] = float("inf")
    with pytest.raises(io.ModelFileError, match="refusing to save a model whose 'synapses.0.bias' holds NaN or inf"):
        io.save(net, tmp_path / "n")
    assert not (tmp_path / "n").exists()
