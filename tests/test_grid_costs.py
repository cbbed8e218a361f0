"""Where quantization loses accuracy: the per-layer report of quantize and latency (hwtune.passes.grid_costs)."""
import json

import pytest
import torch

import hwtune
from hwtune import io
from hwtune.graph import layer_names
from hwtune.api import QuantizationWarning
from hwtune.cli import main
from hwtune.configs import QuantizeConfig
from hwtune.passes.grid_costs import FINE_STEPS, advice, float_self, weight_grid_only
from hwtune.ttfs import QuantSpec


@pytest.fixture(scope="module")
def net(digits_net):
    return digits_net


def _rows(record, grid):
    return {r["layer"]: r for r in record["grid_costs"]["rows"] if r["grid"] == grid}


def test_the_fine_grid_is_float_time(net, digits):
    """The report's premise: FINE_STEPS in every window (float weights) gives the float net's logits."""
    q, _ = hwtune.quantize(net, digits, bits=None, steps=16, epochs=0, report_samples=0)
    ref = float_self(q)
    fine = float_self(q)
    fine.set_quant(QuantSpec([FINE_STEPS] * 3, None, delay=1))
    with torch.no_grad():
        a, b = ref(digits.test_x), fine(digits.test_x)
    assert float((a - b).norm() / a.norm()) < 2e-4
    assert bool((a.argmax(1) == b.argmax(1)).float().mean() > 0.995)


def test_report_points_at_the_coarse_time_grid_and_warns(net, digits):
    """Two steps in dense0's window, 8 bits and 64 steps elsewhere: dense0's time grid is the loss."""
    with pytest.warns(QuantizationWarning, match=r"layer 'dense0': its time grid \(2 steps\).*--steps 4,64"):
        _, record = hwtune.quantize(net, digits, bits=8, steps=[2, 64], input_steps=64, epochs=0)
    costs = record["grid_costs"]
    assert costs["data"] == "training" and costs["samples"] == 1000
    time, weights = _rows(record, "time"), _rows(record, "weights")
    assert set(time) == {"input", "dense0", "dense1"} and set(weights) == {"dense0", "dense1", "dense2"}
    assert time["dense0"]["loss_points"] > 5
    assert max(r["loss_points"] for r in record["grid_costs"]["rows"] if r is not time["dense0"]) < 1
    assert time["dense0"]["logit_error"] > 5 * max(time["dense1"]["logit_error"], weights["dense0"]["logit_error"])
    assert len(record["warnings"]) == 2 and "dense1" not in record["warnings"][1]
    assert "; fine-tuning (--epochs) may recover it" in record["warnings"][0]      # it had none


@pytest.mark.parametrize("schedule, names_cosine", [("decay", True), ("cosine", False)])
def test_the_warning_names_the_annealed_rate_after_a_step_decay(net, digits, schedule, names_cosine):
    """After a fine-tuning whose rate decayed in steps, the warning names --schedule cosine (about a
    point on the FC2: docs/design.md); after a cosine one, more epochs only."""
    q, record = hwtune.quantize(net, digits, bits=8, steps=[2, 64], input_steps=64, epochs=0, report_samples=300)
    head = advice(record["grid_costs"], q, 5.0, "quantize", QuantizeConfig(epochs=1, schedule=schedule))[0]
    assert head.startswith("quantize: accuracy fell 5.00 points; more fine-tuning (--epochs)")
    assert ("--schedule cosine" in head) == names_cosine


def test_report_points_at_the_coarse_weights(net, digits):
    """2-bit weights on a fine time grid: the weight rows carry the loss, the time rows do not."""
    with pytest.warns(QuantizationWarning, match=r"weight grid \(2 bits\).*--bits 4"):
        _, record = hwtune.quantize(net, digits, bits=2, steps=256, input_steps=256, epochs=0)
    time, weights = _rows(record, "time"), _rows(record, "weights")
    assert max(r["loss_points"] for r in weights.values()) > 5
    assert max(abs(r["loss_points"]) for r in time.values()) < 1


def test_no_warning_when_the_pass_keeps_accuracy(net, digits, recwarn):
    _, record = hwtune.quantize(net, digits, bits=8, steps=64, input_steps=64, epochs=0)
    assert record["accuracy_before"] - record["accuracy_after"] < 0.01
    assert record["warnings"] == [] and not [w for w in recwarn if w.category is QuantizationWarning]


def test_the_report_changes_nothing_it_measures(net, digits):
    """Same net out with and without the report (it works on copies and draws from its own generator)."""
    a, ra = hwtune.quantize(net, digits, bits=4, steps=16, epochs=0.2, report_samples=300)
    b, rb = hwtune.quantize(net, digits, bits=4, steps=16, epochs=0.2, report_samples=0)
    assert rb["grid_costs"] is None and ra["grid_costs"]["samples"] == 300
    assert ra["accuracy_after"] == rb["accuracy_after"]
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)


def test_weight_rows_together_are_the_integer_net_at_float_time(net, digits):
    """Every layer's weight-grid change at once (bias and slope rounding included) is the integer net
    on a fine grid; the rounded weights W_q alone are not (4 bits: bias and slope rounding matter)."""
    q, _ = hwtune.quantize(net, digits, bits=4, steps=1024, input_steps=1024, epochs=0, report_samples=0)
    fine = float_self(q)
    fine.set_quant(QuantSpec([FINE_STEPS] * 3, None, delay=1))
    q.set_quant(QuantSpec([FINE_STEPS] * 3, q.quant.weights, delay=1))
    composed = float_self(q)
    for n in range(3):
        composed = weight_grid_only(q, composed, n)
    rounded_only = float_self(q)
    with torch.no_grad():
        for s, syn in enumerate(q.synapses):
            rounded_only.synapses[s].weight.copy_(syn.quant_weight().value)
        x = digits.test_x
        target = q(x).double()
        assert float((composed(x).double() - target).norm() / target.norm()) < 2e-3
        assert float((rounded_only(x).double() - target).norm() / target.norm()) > 1e-2


def test_cli_prints_the_report_and_warns_and_records_it(net, tmp_path, capsys):
    io.save(net, tmp_path / "m")
    assert main(["quantize", str(tmp_path / "m"), "--bits", "8", "--steps", "2,64", "--input-steps", "64",
                 "--epochs", "0", "--report-samples", "500", "-o", str(tmp_path / "q"), "--json"]) == 0
    out, err = capsys.readouterr()
    record = json.loads(out)
    assert record["grid_costs"]["samples"] == 500
    assert "warning: quantize: accuracy fell" in err and "layer 'dense0': its time grid (2 steps)" in err
    assert "what each grid costs alone (500 training samples" in err
    saved = json.loads((tmp_path / "q" / io.CONFIG).read_text())["history"][-1]
    assert saved["grid_costs"] == record["grid_costs"] and saved["warnings"] == record["warnings"]


def test_latency_reports_too(net, digits):
    q, _ = hwtune.quantize(net, digits, bits=8, steps=64, input_steps=64, epochs=0, report_samples=0)
    with pytest.warns(QuantizationWarning, match="latency: accuracy fell"):
        _, record = hwtune.latency(q, digits, steps=[64, 1], epochs=0, window_quantile=0.5)
    time = _rows(record, "time")
    assert max(time, key=lambda n: time[n]["loss_points"]) in {"dense0", "dense1"}
    assert time["dense1"]["setting"] == "1 steps"


def test_report_samples_is_checked(net, digits):
    with pytest.raises(ValueError, match="report_samples"):
        hwtune.quantize(net, digits, report_samples=-1)


@pytest.mark.parametrize("projection", [False, True])
def test_weight_rows_hold_on_a_residual_join(projection):
    """A join's layer (identity or projection skip, branches shifted to one unit): every layer's weight row
    at once is still the integer net at float time, and the report has a row per grid of every layer."""
    from graph_cases import pixels, relu_net
    from test_add import residual_arch
    from hwtune.numerics import WeightFormat
    from hwtune.passes.grid_costs import grid_costs
    from hwtune.ttfs.convert import from_relu

    x = pixels((1, 8, 8), 64, seed=3)
    net = from_relu(relu_net(residual_arch(projection, 1, 4), (1, 8, 8), seed=4), x)
    net.set_quant(QuantSpec([FINE_STEPS] * (net.n_hidden + 1), WeightFormat(bits=4), delay=1))
    composed = float_self(net)
    for n in range(len(net.layers)):
        composed = weight_grid_only(net, composed, n)
    with torch.no_grad():
        target = net(x).double()
        assert float((composed(x).double() - target).norm() / target.norm()) < 2e-3
    costs = grid_costs(net, x, target.argmax(1))
    names = layer_names(net.layers)           # the artifact's and the resource map's names
    assert [r["layer"] for r in costs["rows"] if r["grid"] == "time"] == ["input"] + names[:-1]
    assert [r["layer"] for r in costs["rows"] if r["grid"] == "weights"] == names


@pytest.mark.parametrize("costs", [None, {}, {"rows": "x"}, {"rows": [{"layer": 1}], "samples": 5, "float_accuracy": 1,
                                                               "quantized_accuracy": 1}, ["rows"]])
def test_a_malformed_report_from_a_file_prints_nothing(costs):
    from hwtune.passes.grid_costs import cost_lines
    assert cost_lines(costs) == []
