"""The B1 TTFS net equals its ReLU twin: forward, gradients, training trajectory, conversion."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from hwtune.ttfs import TTFSNet, fc, from_relu, preset, relu_twin, to_relu, vgg
from hwtune.architectures import ArchError

ARCHS = {
    "fc1": fc((1, 6, 6), [20], 5),
    "fc3": fc((1, 6, 6), [24, 16, 12], 5),
    "conv-avg": vgg((2, 8, 8), [4, "P", 6], [10], 4),
    "conv-max": [{"kind": "conv", "in": 1, "out": 3, "kernel": 3, "padding": 1, "stride": 1},
                 {"kind": "maxpool", "kernel": 2},
                 {"kind": "conv", "in": 3, "out": 5, "kernel": 3, "padding": 0, "stride": 1},
                 {"kind": "flatten"}, {"kind": "dense", "in": 20, "out": 3}],
}
SHAPES = {"fc1": (1, 6, 6), "fc3": (1, 6, 6), "conv-avg": (2, 8, 8), "conv-max": (1, 8, 8)}


def random_pair(name, seed):
    """A float64 TTFS net with random weights/biases and its ReLU twin (same parameters)."""
    torch.manual_seed(seed)
    net = TTFSNet(ARCHS[name], SHAPES[name], dtype=torch.float64)
    with torch.no_grad():
        for syn in net.synapses:
            syn.bias.normal_(0, 0.2)
    return net, to_relu(net)


def inputs(name, n=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, *SHAPES[name]), generator=g, dtype=torch.float64)
    return x * (torch.rand(x.shape, generator=g, dtype=torch.float64) > 0.3)  # some silent inputs


@pytest.mark.parametrize("name", ARCHS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_forward_equals_relu(name, seed):
    net, relu = random_pair(name, seed)
    x = inputs(name, seed=seed)
    diff = (net(x) - relu(x)).abs().max()
    assert diff < 1e-9


@pytest.mark.parametrize("name", ARCHS)
def test_gradients_equal_relu(name):
    net, relu = random_pair(name, 3)
    x, y = inputs(name), torch.randint(0, net.synapses[-1].weight.shape[0], (32,))
    nn.functional.cross_entropy(net(x), y).backward()
    nn.functional.cross_entropy(relu(x), y).backward()
    relu_syn = list(relu.synapses)
    grad_norm = 0.0
    for a, b in zip(net.synapses, relu_syn):
        for pa, pb in ((a.weight, b.weight), (a.bias, b.bias)):
            assert (pa.grad - pb.grad).abs().max() < 1e-9
            grad_norm += float(pb.grad.abs().sum())
    assert grad_norm > 1e-3  # the comparison is not between two zero gradients


@pytest.mark.parametrize("name", ["fc3", "conv-avg"])
def test_sgd_trajectory_identical(name):
    net, relu = random_pair(name, 4)
    opt_a = torch.optim.SGD(net.parameters(), lr=0.05)
    opt_b = torch.optim.SGD(relu.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(5)
    start = [p.detach().clone() for p in relu.parameters()]
    for step in range(30):
        x = inputs(name, n=16, seed=100 + step)
        y = torch.randint(0, net.synapses[-1].weight.shape[0], (16,), generator=g)
        for model, opt in ((net, opt_a), (relu, opt_b)):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    moved = max(float((p - s).abs().max()) for p, s in zip(relu.parameters(), start))
    assert moved > 1e-2
    for a, b in zip(net.parameters(), relu.parameters()):
        assert (a - b).abs().max() < 1e-9


def simulate_layer(w, b, t_in, t_min, t_max, dt=1e-4):
    """Brute-force time-grid simulation of the switched B1 neuron (design note 1.2, variant S).

    Integration phase [t_min_prev, t_min): dV/dt = alpha + sum_j W_ij H(t - t_j), alpha = b / T_prev;
    firing phase: dV/dt = 1 until V = theta = t_max - t_min. Returns the first crossing time or inf.
    """
    t_min_prev = 0.0
    alpha = b / (t_min - t_min_prev)
    grid = np.arange(t_min_prev, t_min, dt)
    current = alpha[:, None] + (w[:, :, None] * (grid[None, None, :] >= t_in[None, :, None])).sum(1)
    v0 = current.sum(1) * dt
    theta = t_max - t_min
    fire = t_min + (theta - v0)  # slope 1 in the firing phase: exact crossing of a straight line
    return np.where((fire < t_max) & (fire >= t_min), fire, np.inf)


def test_closed_form_matches_simulated_dynamics():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.5, (7, 5))
    b = rng.normal(0, 0.2, 7)
    u = rng.uniform(0, 1, 5)
    net = TTFSNet(fc((5,), [7], 2), (5,), windows=[3.0], dtype=torch.float64)
    with torch.no_grad():
        net.synapses[0].weight.copy_(torch.tensor(w))
        net.synapses[0].bias.copy_(torch.tensor(b))
    closed = net.spike_times(torch.tensor(u)[None])[1][0].numpy()
    simulated = simulate_layer(w, b, 1.0 - u, 1.0, 4.0)
    assert np.isfinite(closed).sum() >= 2  # some neurons fire, some may be silent
    assert np.array_equal(np.isfinite(closed), np.isfinite(simulated))
    fin = np.isfinite(closed)
    assert np.abs(closed[fin] - simulated[fin]).max() < 1e-3


def test_silent_neurons_are_inf_and_count_as_zero():
    net, relu = random_pair("fc1", 0)
    x = inputs("fc1")
    times = net.spike_times(x)
    hidden_relu = torch.relu(relu.synapses[0](x.flatten(1)))  # flatten, linear, relu
    assert torch.equal(torch.isinf(times[1]), hidden_relu == 0)
    assert torch.equal(torch.isinf(times[0]), x.flatten(1) == 0) or torch.equal(torch.isinf(times[0]), x == 0)
    t_min, t_max = net.window_bounds()[0]
    finite = times[1][torch.isfinite(times[1])]
    assert (finite >= t_min).all() and (finite < t_max).all()


def test_window_rule_grows_only():
    net = TTFSNet(fc((4,), [3], 2), (4,), windows=[0.5], dtype=torch.float64)
    with torch.no_grad():
        net.synapses[0].weight.fill_(1.0)
        net.synapses[0].bias.zero_()
    with net.conditions(track_windows=True):
        net(torch.ones(2, 4))  # activation 4 per neuron
        net.grow_windows()
        assert float(net.windows[0]) == pytest.approx(40.0)
        net(torch.full((2, 4), 0.1))
        net.grow_windows()
        assert float(net.windows[0]) == pytest.approx(40.0)
    assert net.track_windows is False


def test_training_records_activations_only_while_it_grows_windows():
    """train() sets track_windows for its own block only (net.conditions), also when it fails."""
    from hwtune.training import TrainConfig, train
    net = TTFSNet(fc((4,), [3], 2), (4,), windows=[0.5], dtype=torch.float64)
    x, y = torch.rand(16, 4, dtype=torch.float64), torch.randint(0, 2, (16,))
    train(net, x, y, TrainConfig(epochs=1, batch_size=8, adaptive_windows=True))
    assert net.track_windows is False and float(net.windows[0]) > 0.5
    with pytest.raises(IndexError):
        train(net, x, torch.full((16,), 7), TrainConfig(epochs=1, batch_size=8))   # label 7 of 2 classes
    assert net.track_windows is False


def test_conversion_with_batchnorm_keeps_predictions(digits):
    torch.manual_seed(0)
    relu = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.1),
                         nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10)).double()
    opt = torch.optim.Adam(relu.parameters(), lr=3e-3)
    x, y = digits.train_x.double(), digits.train_y
    for epoch in range(15):
        for i in range(0, len(x), 64):
            opt.zero_grad()
            nn.functional.cross_entropy(relu(x[i:i + 64]), y[i:i + 64]).backward()
            opt.step()
    relu.eval()
    net = from_relu(relu, x)
    xt = digits.test_x.double()
    with torch.no_grad():
        pred_relu = relu(xt).argmax(1)
        pred_snn = net(xt).argmax(1)
    assert float((pred_relu == digits.test_y).float().mean()) > 0.85
    assert torch.equal(pred_relu, pred_snn)
    # windows are 1.5 x the layer maxima on the calibration data
    assert all(w > 0 for w in net.windows.tolist())


def test_conversion_rejects_unsupported():
    with pytest.raises(ArchError, match="batch norm must directly follow"):
        from_relu(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.BatchNorm1d(3), nn.Linear(3, 2)), torch.rand(5, 4))
    with pytest.raises(ArchError, match="Sigmoid"):
        from_relu(nn.Sequential(nn.Linear(4, 3), nn.Sigmoid(), nn.Linear(3, 2)), torch.rand(5, 4))
    with pytest.raises(ArchError, match="the read-out is a synapse without one"):
        from_relu(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2), nn.ReLU()), torch.rand(5, 4))
    with pytest.raises(ArchError, match="before its ReLU: a TTFS layer spikes only through one"):
        from_relu(nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2)), torch.rand(5, 4))


def test_relu_twin_structure_matches_arch():
    arch = vgg((1, 8, 8), [4, "P", 6], [10], 3)
    model = relu_twin(arch)
    assert len(model.graph.layers) == 4 and len(model.synapses) == 4       # 3 ReLU layers and the read-out
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 3)
    assert math.prod((6, 4, 4)) == arch[-2]["in"]


def test_gradients_equal_relu_where_a_pre_activation_is_exactly_zero(digits):
    """Zero biases and zero-padded convolutions over blank image borders make many pre-activations
    exactly 0, where ReLU's gradient is 0: the TTFS net's must be too (a clamp of t_max - z would
    pass it on)."""
    torch.manual_seed(0)
    net = TTFSNet(preset("vgg-small", (1, 8, 8), 10), (1, 8, 8), dtype=torch.float64)
    relu = to_relu(net)
    x, y = digits.train_x[:64].double(), digits.train_y[:64]
    assert any(bool((z == 0).any()) for z in [net.synapses[0](x)])                      # the case is not vacuous
    for model in (net, relu):
        nn.functional.cross_entropy(model(x), y).backward()
    for a, b in zip(net.synapses, relu.synapses):
        assert (a.weight.grad - b.weight.grad).abs().max() < 1e-9
        assert (a.bias.grad - b.bias.grad).abs().max() < 1e-9          # zero-region neurons add to the bias's
