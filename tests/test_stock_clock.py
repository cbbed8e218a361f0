"""numerics.stock_clock against a model of Loihi 2's stock LIF written here from Lava's equations
(lava/proc/lif/models.py with du = -1, dv = 0: u += a_in; v += u; a spike and v = 0 where v > vth),
step by step: every hidden neuron spikes once, on step F + T' - k with k = floor(V / sigma) clipped
to [0, T'] (computed here, not by numerics.fire); the read-out's v holds V from F - 1 on; u and v
stay inside the bounds the clock claims."""
import numpy as np
import pytest

from hwtune import numerics


def run_stock_lif(q, beta, k, steps_in, reset, clock, vth, steps):
    """Spike steps (B, n; -1: none, -2: more than one), v per step (steps, B, n), and the extremes of
    u and v (v after its reset) of a layer of stock LIF neurons fed inputs of activation k (B, n_in):
    input j arrives on step R + T - k_j (k_j = 0: on R + T = F)."""
    batch, n = len(k), len(q)
    arrival = reset + steps_in - k
    u, v = np.zeros((batch, n), dtype=np.int64), np.zeros((batch, n), dtype=np.int64)
    spike_step = np.full((batch, n), -1)
    vs, u_lo, u_hi, v_lo, v_hi = [], u.copy(), u.copy(), v.copy(), v.copy()
    for t in range(steps):
        if t >= reset:
            u = u + (arrival == t).astype(np.int64) @ q.T + clock.get(t, 0)
            v = v + u
            fired = v > vth
            spike_step = np.where(fired, np.where(spike_step == -1, t, -2), spike_step)
            v = np.where(fired, 0, v)
        vs.append(v)
        u_lo, u_hi = np.minimum(u_lo, u), np.maximum(u_hi, u)
        v_lo, v_hi = np.minimum(v_lo, v), np.maximum(v_hi, v)
    return spike_step, np.stack(vs), (u_lo, u_hi), (v_lo, v_hi)


def row_sums(q):
    return np.maximum(q, 0).sum(axis=1), np.maximum(-q, 0).sum(axis=1)


def potentials(q, beta, k, steps_in):
    """V(s) (s = 1..T, B, n) after s integration steps: each input counts from its arrival on."""
    return np.stack([np.maximum(0, k - (steps_in - s)) @ q.T + beta * s for s in range(1, steps_in + 1)])


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("calibrated", [False, True])
def test_every_hidden_neuron_spikes_once_on_step_F_plus_T_out_minus_k(seed, calibrated):
    rng = np.random.default_rng(seed)
    n_in, n, steps_in, steps_out = rng.integers(1, 7), rng.integers(1, 6), rng.integers(1, 9), rng.integers(1, 9)
    q = rng.integers(-7, 8, size=(n, n_in))
    beta, sigma = rng.integers(-4, 5, size=n), rng.integers(1, 12, size=n)
    k = rng.integers(0, steps_in + 1, size=(64, n_in))
    reset = int(rng.integers(0, 4))
    V_s = potentials(q, beta, k, steps_in)
    guard = (min(0, int(V_s[-1].min())), max(0, int(V_s.max()))) if calibrated else None
    pos, neg = row_sums(q)
    stock = numerics.stock_clock(pos, neg, beta, steps_in, range(reset, reset + steps_in), sigma, steps_out, guard)
    fire_start = reset + steps_in
    spikes, _, (u_lo, u_hi), (v_lo, v_hi) = run_stock_lif(q, beta, k, steps_in, reset, stock.clock, stock.threshold,
                                                          fire_start + steps_out + 4)
    expected_k = np.clip(np.floor_divide(V_s[-1], sigma), 0, steps_out)
    assert np.array_equal(spikes, fire_start + steps_out - expected_k)
    assert np.all(u_lo >= stock.u[0]) and np.all(u_hi <= stock.u[1])
    assert np.all(v_lo >= stock.v[0]) and np.all(v_hi <= stock.v[1])


@pytest.mark.parametrize("seed", range(10))
def test_the_readout_holds_V_from_its_last_integration_step_and_never_spikes(seed):
    rng = np.random.default_rng(seed)
    n_in, n, steps_in = rng.integers(1, 7), rng.integers(1, 6), rng.integers(1, 9)
    q, beta = rng.integers(-7, 8, size=(n, n_in)), rng.integers(-4, 5, size=n)
    k = rng.integers(0, steps_in + 1, size=(32, n_in))
    pos, neg = row_sums(q)
    stock = numerics.stock_clock(pos, neg, beta, steps_in, range(2, 2 + steps_in))
    fire_start = 2 + steps_in
    spikes, v, (u_lo, u_hi), (v_lo, v_hi) = run_stock_lif(q, beta, k, steps_in, 2, stock.clock, stock.threshold,
                                                          fire_start + 5)
    assert np.all(spikes == -1) and stock.threshold == 2 ** numerics.LAVA_VTH_BITS - 1
    assert np.all(v[fire_start - 1:] == k @ q.T + beta * steps_in)
    assert np.all(u_lo >= stock.u[0]) and np.all(u_hi <= stock.u[1])
    assert np.all(v_lo >= stock.v[0]) and np.all(v_hi <= stock.v[1])


def test_a_lava_register_is_read_in_weight_units():
    V, exact = numerics.from_lava_state(np.array([-128, -64, 0, 64, 640, 65]))
    assert V[:5].tolist() == [-2, -1, 0, 1, 10] and exact.tolist() == [True] * 5 + [False]
