"""The number formats and integer rules of hwtune, defined once.

Every function here works on numpy arrays and on torch tensors alike, so the torch
quantized forward, the numpy emulator and the Lava process model share one definition.
See docs/design.md for the derivation. Units:

- ``k``: integer activation in time steps, 0 <= k <= T (spike at step T - k of its window;
  k = 0 is a silent neuron). Stored as an integer array or an integer-valued float tensor.
- ``V``: integer membrane potential at the end of a layer's integration window.
- ``sigma``: integer slope of the firing phase (potential units per step).
- ``T``: window length in time steps.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Lava's Dense (bit-accurate model) stores weights as 8-bit mantissas of a 9-bit signed range.
LAVA_WEIGHT_RANGE_BITS = 9
LAVA_WEIGHT_BITS = LAVA_WEIGHT_RANGE_BITS - 1
#: Loihi 2's LIF (Lava's bit-accurate model): a_in and vth are shifted left by LAVA_ACT_SHIFT bits
#: into u and v, which are LAVA_STATE_BITS-bit signed registers; vth is LAVA_VTH_BITS bits unsigned;
#: a_in, what a neuron receives in one step, LAVA_A_IN_BITS bits signed.
LAVA_ACT_SHIFT = 6
LAVA_STATE_BITS = 24
LAVA_VTH_BITS = 17
LAVA_A_IN_BITS = 16
# Ranges, each defined once here and used by the configs, targets, model files and artifacts:
#: Widths of a signed weight mantissa hwtune quantizes to (a pass's bits, a target's weights.bits, a model file).
WEIGHT_BITS = (2, 16)
#: Widths of the signed per-step bias mantissa (a target's weights.bias_bits, a model file).
BIAS_BITS = (2, 32)
#: Power-of-two weight scale exponents a target or a model file may allow (weights.exp_range).
SCALE_EXPONENTS = (-64, 64)
#: Synaptic delay d in steps (Loihi 2 / lava-dl: at most 62).
SYNAPTIC_DELAY = (1, 62)
#: Signed width of a target's current and membrane registers (state.membrane_bits).
MEMBRANE_BITS = (8, 62)
#: A weight format's scale exponents and bias width where a target or model file leaves them out.
DEFAULT_SCALE_EXPONENTS = (-32, 31)
DEFAULT_BIAS_BITS = 16
#: Longest window in steps, input or hidden, of any setting, model or artifact (Loihi 2's longest: 1,024).
MAX_STEPS = 65536
#: Signed widths an artifact may declare: what the integer model itself represents in int64 (wider
#: and narrower than any target, so the emulator can run and test any register, overflow included).
ARTIFACT_WEIGHT_BITS = (1, 32)
ARTIFACT_REGISTER_BITS = (2, 63)


def _floor(x):
    return x.floor() if hasattr(x, "floor") and not isinstance(x, np.ndarray) else np.floor(x)


def _as_float64(x):
    if isinstance(x, np.ndarray) or np.isscalar(x):
        return np.asarray(x, dtype=np.float64)
    return x.double()


def encode_input(u, steps: int):
    """Pixel intensity u in [0, 1] -> integer input activation k0 = floor(u * T0 + 1/2) in [0, T0].

    Computed in float64 whatever the input dtype, so numpy and torch agree bit for bit.
    The spike is emitted at step T0 - k0 of the input window (k0 = 0: no spike).
    """
    return _floor(_as_float64(u) * steps + 0.5).clip(0, steps)


def fire(V, sigma, steps: int):
    """Integer activation of a TTFS neuron: k = clip(floor(V / sigma), 0, T).

    V: membrane potential at the end of integration (integer), sigma: positive integer slope
    (scalar or one per neuron, broadcast on the last axis), T: window steps. Equivalent to
    the stepped rule "spike at the first firing step m with V + (m + 1) sigma >= sigma (T + 1)".

    A numpy float V (integer valued, |V| < 2^p with p = 24 for float32, 53 for float64: the fast
    emulator's exact types) gives the same integers as floor(V / sigma) with one correctly rounded
    division: if V / sigma is not an integer it lies at least 1/sigma from every integer, while
    rounding moves it by at most 2^-p |V| / sigma < 1/sigma, so the floor cannot change (and numpy's
    float ``//`` is about 30x slower). sigma is divided in V's type (an int64 array would promote a
    float32 V to float64, 3x slower): exact up to 2^p, and a larger sigma exceeds |V| rounded or
    not, which leaves floor(V / sigma) in {-1, 0}. The result is in V's float type.
    """
    if isinstance(V, np.ndarray) and V.dtype.kind == "f":
        k = np.divide(V, np.asarray(sigma, dtype=V.dtype))
        np.floor(k, out=k)
        return np.clip(k, 0, steps, out=k)
    return (V // sigma).clip(0, steps)


def threshold(sigma, steps: int):
    """Firing threshold theta = sigma * (T + 1) of the stepped neuron (see :func:`fire`)."""
    return sigma * (steps + 1)


def step_of(k, steps: int):
    """Step m = T - k inside its window of the spike of a neuron with activation k, and back: the
    activation of a spike at step m is k = T - m (the map is its own inverse). Silent neurons
    (k = 0) map to m = T, just after the window: where the stock Loihi 2 build makes them spike, so
    that they count on no integration step of the next layer."""
    return steps - k


def spike_step(k, steps: int):
    """:func:`step_of` as float, inf for silent neurons (k = 0)."""
    k = _as_float64(k)
    m = step_of(k, steps)
    if isinstance(m, np.ndarray):
        return np.where(k > 0, m, np.inf)
    return m.masked_fill(k <= 0, float("inf"))


def emission_step(k, start: int, steps: int):
    """Global step of each neuron's spike, start + :func:`step_of`, for a window starting at ``start``;
    -1 for silent neurons (k = 0). Integer numpy arrays."""
    return np.where(k > 0, start + step_of(k, steps), -1)


def counted_steps(k, steps: int, elapsed: int):
    """Integration steps an input of activation k has counted after ``elapsed`` of the T steps of the
    window: it arrives T - k steps in, so max(0, k - (T - elapsed)); equal to k when elapsed = T."""
    return np.maximum(0, k - (steps - elapsed))


def saturate(x, bits: int):
    """A ``bits``-bit signed register that saturates: x clipped to [-2^(bits-1), 2^(bits-1) - 1]."""
    lo, hi = signed_range(bits)
    return x.clip(lo, hi)


def wrap(x, bits: int):
    """A ``bits``-bit signed two's-complement register that wraps: x modulo 2^bits into its range."""
    lo = signed_range(bits)[0]
    return (x - lo) % (1 << bits) + lo


def jitter(k, delta, steps: int):
    """Move each emitted spike by ``delta`` steps (positive = later): k' = clip(k - delta, 0, T).

    Silent neurons (k = 0) stay silent; a spike pushed past its window end is lost (k' = 0),
    one pulled before the window start counts from the start (k' = T).
    """
    moved = (k - delta).clip(0, steps)
    return moved * (k > 0)


def mismatch(q, eps, level: float, lo: int, hi: int):
    """Weights of a device instance: q' = clip(round(q (1 + level eps)), lo, hi) (hwtune.device_noise).

    ``eps``: standard normals, one per physical synapse (broadcast against q by the caller)."""
    scaled = q * (1 + level * eps)
    return (scaled.round() if not isinstance(scaled, np.ndarray) else np.round(scaled)).clip(lo, hi)


def threshold_offset(shift, steps: int, sigma):
    """Threshold offset of each neuron, in potential units: delta = round(shift T sigma).

    ``shift``: the spike shift the offset causes, in fractions of the window (hwtune.device_noise: level x
    standard normal, fixed-pattern and trial-to-trial summed before the one rounding). Firing on
    V - delta (:func:`fire`) moves the spike by about shift T steps."""
    x = shift * steps * sigma
    return x.round() if not isinstance(x, np.ndarray) else np.round(x)


def jitter_steps(eps, level: float, steps: int):
    """Spike-time jitter in whole steps: delta = round(level T eps) (positive = later; :func:`jitter`)."""
    x = eps * (level * steps)
    return x.round() if not isinstance(x, np.ndarray) else np.round(x)


def delete(k, u, p: float):
    """Spike deletion: an emitted spike is lost (k = 0) where the uniform draw u < p."""
    return k * (u >= p)


def slope(delta_out: float, scale, delta_in: float):
    """sigma = max(1, round(Delta_n / (s * Delta_{n-1}))) as int64 (scale per layer or per neuron)."""
    return np.maximum(1, np.round(delta_out / (np.asarray(scale, dtype=np.float64) * delta_in))).astype(np.int64)


@dataclass(frozen=True)
class Timing:
    """When each node of a feed-forward graph of TTFS layers works, in global steps of one sample.

    window_steps: [T_0 (the input), T_1..T_N (the hidden layers)]; delay: the synaptic delay d;
    sources: for each layer n = 1..N+1 (0-based index n - 1; the read-out last), the nodes it reads
    (0: the input, m: layer m), default a chain (layer n reads node n - 1). Node p fires in
    [F_p, F_p + T_p), F_0 = 0; layer n fires from

        F_n = max_{p in sources_n} (F_p + T_p) + d

    (d steps after the last of its inputs' windows has ended; a chain: F_n = F_{n-1} + T_{n-1} + d)
    and integrates on the T = max_p T_p steps before F_n. A spike of activation k of input p is
    emitted on F_p + T_p - k and arrives d + D_np steps later, D_np = F_n - d - (F_p + T_p) >= 0 (0
    for the last input to end): on F_n - k, so it counts on exactly k integration steps. The last
    start F_{N+1} is the latency; the read-out's v holds its logit there.
    """

    window_steps: tuple
    delay: int
    sources: tuple | None = None

    def __post_init__(self):
        windows = tuple(int(t) for t in self.window_steps)
        sources = self.sources
        if sources is None:
            sources = tuple((n,) for n in range(len(windows)))
        sources = tuple(tuple(int(p) for p in s) for s in sources)
        if len(sources) != len(windows) or any(not s or min(s) < 0 or max(s) > n for n, s in enumerate(sources)):
            raise ValueError(f"sources must list, for each of the {len(windows)} layers, earlier nodes; got {sources}")
        starts = [0]
        for s in sources:
            starts.append(max(starts[p] + windows[p] for p in s) + self.delay)
        object.__setattr__(self, "window_steps", windows)
        object.__setattr__(self, "sources", sources)
        object.__setattr__(self, "starts", tuple(starts))

    @property
    def latency(self) -> int:
        """F_{N+1}: steps from the first input step to the read-out."""
        return self.starts[-1]

    def steps_in(self, n: int) -> int:
        """Integration steps T of layer n (0-based): the longest window among its inputs."""
        return max(self.window_steps[p] for p in self.sources[n])

    def integration(self, n: int) -> range:
        """Global steps on which layer n (0-based) integrates: the T steps before its firing start."""
        fire = self.starts[n + 1]
        return range(fire - self.steps_in(n), fire)

    def arrival_delay(self, n: int, p: int) -> int:
        """D: steps beyond the synaptic delay that spikes of node p wait before they reach layer n (0-based)."""
        return self.starts[n + 1] - self.delay - self.starts[p] - self.window_steps[p]


def schedule(window_steps: list[int], delay: int) -> list[int]:
    """Firing-phase start steps F_0..F_{N+1} of a chain (:class:`Timing`): F_0 = 0, F_n = F_{n-1} + d + T_{n-1}.

    ``window_steps`` = [T_0, T_1, ..., T_N] (input and hidden layers); the last entry of the
    result is the read-out step of the output layer = total latency in steps.
    """
    return list(Timing(window_steps, delay).starts)


def membrane_bound(abs_sum, beta, steps_in: int) -> np.ndarray:
    """Worst-case |V| of each neuron during integration: (sum_j |q_ij| + |beta_i|) * T_{n-1}.

    ``abs_sum``: sum_j |q_ij| per neuron (or per conv channel), counting an input that sums g
    presynaptic activations (sum pooling) g times."""
    return (np.asarray(abs_sum, dtype=np.int64) + np.abs(beta).astype(np.int64)) * steps_in


def signed_range(bits: int, narrow: bool = False) -> tuple[int, int]:
    """Integer range of a signed two's-complement field; narrow drops the most negative value."""
    lo = -(2 ** (bits - 1))
    return (lo + 1 if narrow else lo), 2 ** (bits - 1) - 1


#: Loihi 2's register limits in weight units (what a_in counts; u and v hold 2^LAVA_ACT_SHIFT times it):
#: u and v (u wraps, v is clipped at +-(2^23 - 1)), vth (unsigned), a_in (one step's input).
LAVA_STATE_MAX = signed_range(LAVA_STATE_BITS - LAVA_ACT_SHIFT)[1]
LAVA_VTH_MAX = 2 ** LAVA_VTH_BITS - 1
LAVA_A_IN_MAX = signed_range(LAVA_A_IN_BITS)[1]


@dataclass(frozen=True)
class WeightFormat:
    """Signed weight mantissa of ``bits`` bits times a power-of-two scale 2**e.

    ``scale`` is "per-layer" or "per-channel" (one exponent per output neuron/channel);
    ``exp_range`` bounds e; the bias is a per-step mantissa of ``bias_bits`` bits.
    """

    bits: int
    narrow: bool = False
    scale: str = "per-layer"
    exp_range: tuple[int, int] = DEFAULT_SCALE_EXPONENTS
    bias_bits: int = DEFAULT_BIAS_BITS

    @property
    def qmin(self) -> int:
        return signed_range(self.bits, self.narrow)[0]

    @property
    def qmax(self) -> int:
        return signed_range(self.bits, self.narrow)[1]


def bias_mantissa(b, scale, window_in: float, bias_bits: int):
    """Per-step integer bias beta = round(b / (s * L_{n-1})), clipped to ``bias_bits`` signed.

    Over the T_{n-1} integration steps it adds beta * T_{n-1} to V, i.e. b in float units.
    Works on numpy and torch (straight-through rounding is the caller's business).
    """
    lo, hi = signed_range(bias_bits)
    x = b / (scale * window_in)
    return (x.round() if not isinstance(x, np.ndarray) else np.round(x)).clip(lo, hi)


def lava_weights(q: np.ndarray, bits: int) -> tuple[np.ndarray, int]:
    """Weights and weight_exp for Lava's Dense so that its a_in equals sum_j q_ij exactly.

    Lava keeps ``(w >> (9 - bits)) << (9 - bits)`` of the mixed-sign weight clipped to
    [-256, 255] and then applies ``a >> -weight_exp``; w = q << (9 - bits) survives both. Integers
    beyond ``bits`` bits that share a factor 2^e (a join's branch scaled to the layer's unit) are
    held as q / 2^e with weight_exp raised by e: the smallest e that makes them fit.
    """
    if not 1 <= bits <= LAVA_WEIGHT_BITS:
        raise ValueError(f"Lava Dense holds 1..{LAVA_WEIGHT_BITS} weight bits, got {bits}")
    q = np.asarray(q, dtype=np.int64)
    lo, hi = signed_range(bits)
    exp = 0
    while q.size and (q.min() < lo or q.max() > hi):
        if np.any(q % 2):
            raise ValueError(f"weights in [{q.min()}, {q.max()}] do not fit {bits} signed bits times a power of two")
        q, exp = q // 2, exp + 1
    shift = LAVA_WEIGHT_RANGE_BITS - bits
    return q << shift, exp - shift


#: :func:`weight_digits`' base: 2^DIGIT_BITS, what an 8-bit Lava weight holds in [0, base) and (-base, base).
DIGIT_BITS = LAVA_WEIGHT_BITS - 1


def weight_digits(values):
    """Split integers x (n,) into x = low + base * sum_r high[:, r], base = 2^DIGIT_BITS (128), low in
    [0, base), high in [-(base - 1), base - 1], with as few columns r as the largest |x| needs (>= 1):
    how the Lava build carries per-neuron integers as 8-bit synaptic weights of scale 1 and of scale
    ``base`` (weight_exp DIGIT_BITS)."""
    base = 2 ** DIGIT_BITS
    high_max = base - 1
    values = np.asarray(values, dtype=np.int64)
    low = np.mod(values, base)
    rest = (values - low) // base
    columns = max(1, int(-(-np.abs(rest).max(initial=0) // high_max)))
    high = np.zeros((len(values), columns), dtype=np.int64)
    for r in range(columns):
        high[:, r] = np.clip(rest, -high_max, high_max)
        rest = rest - high[:, r]
    return low, high


def from_lava_state(v):
    """A Loihi 2 LIF register (u or v, integer array) in weight units, and where it is exact:
    (v // 2^LAVA_ACT_SHIFT, v mod 2^LAVA_ACT_SHIFT == 0); a_in and vth are shifted left by
    LAVA_ACT_SHIFT bits into the registers, so every value hwtune's build puts there is exact."""
    unit = 2 ** LAVA_ACT_SHIFT
    return v // unit, v % unit == 0


def stock_busy_steps(steps_in: int, steps_out: int) -> int:
    """Steps one layer of the stock build (:func:`stock_clock`) works on a sample: from its reset R, the
    first of its T = ``steps_in`` integration steps, to its last clock step F + T' + 1 (the read-out,
    ``steps_out`` = 0: F, where its v is read), inclusive: T + T' + 2 (read-out: T + 1). The next sample's
    inputs may arrive, and its reset come, on the step after: a pipelined build's sample interval is at
    least the largest of these."""
    return steps_in + steps_out + 2 if steps_out else steps_in + 1


def power_of_two_above(n: int) -> int:
    """The smallest power of two > n >= 0 (2^bit_length(n))."""
    return 1 << int(n).bit_length()


def integrate(u, v, a_in, beta):
    """One integration step of the stepped TTFS neuron: u += a_in; v += u + beta. Returns (u, v).

    a_in: sum of the weights q_ij of the spikes arriving this step; beta: per-step bias mantissa.
    All in potential units (integers).
    """
    u = u + a_in
    return u, v + u + beta


def fire_step(v, fired, sigma, theta):
    """One firing step: v += sigma; spike where v >= theta and not yet fired. Returns (v, spike, fired).

    ``fired`` and ``spike`` are boolean; a neuron spikes at most once per window.
    """
    v = v + sigma
    spike = (v >= theta) & ~fired
    return v, spike, fired | spike


def state_bound(abs_sum, beta, steps_in: int, sigma=None, steps_out: int = 0) -> np.ndarray:
    """Largest magnitude a neuron's registers (u, v, theta) can hold during a sample, per neuron.

    |u| <= sum_j |q_ij| (``abs_sum``) and |v| <= :func:`membrane_bound` during integration; a
    hidden neuron (``sigma`` given) then adds sigma on each of its T_n firing steps, so v can reach
    membrane_bound + sigma T_n, and it stores theta = sigma (T_n + 1). The read-out
    (``sigma=None``) stops after integration. Exact int64; a bound that int64 arithmetic could
    not hold (>= 2^62, wider than any register) is returned as the int64 maximum.
    """
    bound = membrane_bound(abs_sum, beta, steps_in)
    approx = (np.asarray(abs_sum, dtype=np.float64) + np.abs(beta)) * steps_in
    if sigma is not None:
        sigma = np.asarray(sigma, dtype=np.int64)
        bound = np.maximum(bound + sigma * steps_out, threshold(sigma, steps_out))
        approx = approx + np.abs(sigma) * (steps_out + 1.0)
    return np.where(approx < 2.0 ** 62, bound, np.iinfo(np.int64).max)


@dataclass(frozen=True)
class StockClock:
    """How Loihi 2's stock LIF neuron reproduces one layer (:func:`stock_clock`), in weight units:
    threshold H (vth, one per layer); clock: step -> change of u of each neuron on that step; u, v:
    the (lo, hi) per neuron its registers reach over every input."""

    threshold: int
    clock: dict
    u: tuple
    v: tuple


def stock_clock(pos, neg, beta, steps_in: int, integration: range, sigma=None, steps_out: int = 0,
                guard: tuple[int, int] | None = None) -> StockClock:
    """The clock that makes Loihi 2's stock LIF (u += a_in, v += u, a spike and v = 0 when v > vth;
    u and v zeroed before step R) fire each neuron of a layer once, on step F + T' - k with
    k = :func:`fire` (V, sigma, T'); the derivation: docs/design.md, "Loihi 2 mapping".

    Per neuron (int64 arrays): pos, neg = sum_j max(+-q_ij, 0); beta: per-step bias; steps_in: T;
    integration: :meth:`Timing.integration`, R .. F - 1. An input of activation k arrives on step
    R + T - k (k = 0: on F), so on F every input has arrived and u = sum_j q_ij + beta. sigma, steps_out:
    slope and T' of a hidden layer; None, 0: the read-out, whose v holds V from F - 1 on and never spikes.
    With V while integrating in [lo, hi] (``guard``, default the worst case :func:`membrane_bound`):

        R:       u += beta - L       L = max(0, hi - H): v gets -L once, so no spike while integrating
        R + 1:   u += L
        F:       u += sigma - sum_j q_ij - beta + P      P = L + H + 1 - sigma (T' + 1)
        F + 1:   u -= P              u = sigma: on firing step m, v = V + H + 1 - sigma (T' - m)
        F + T':  u += K              K = max(0, -lo), the kick: a neuron not yet fired fires (k = 0)
        F+T'+1:  u -= sigma + K      u = 0

    with H = max(1, max_i sigma_i T' + K_i). v > H on step F + m <=> V + sigma (m + 1) >= sigma (T' + 1)
    (:func:`threshold`), the first such m being T' - k; the kick makes it m = T' when V < 0."""
    q_sum = pos - neg
    u_min, u_max = -neg + np.minimum(beta, 0), pos + np.maximum(beta, 0)   # u while integrating (L aside)
    v_min, v_max = steps_in * u_min, steps_in * u_max                       # V while integrating (membrane_bound, signed)
    reset, fire_start = integration.start, integration.stop
    clock = {}

    def add(step, values):
        clock[step] = clock.get(step, 0) + values

    if sigma is None:
        add(reset, beta)
        add(fire_start, -(q_sum + beta))
        return StockClock(LAVA_VTH_MAX, clock, u=(u_min, u_max), v=(v_min, v_max))
    lo, hi = (v_min, v_max) if guard is None else (np.maximum(v_min, guard[0]), np.minimum(v_max, guard[1]))
    kick = np.maximum(0, -lo)
    vth = int(max(1, (sigma * steps_out + kick).max()))
    lift = np.maximum(0, hi - vth)
    pulse = lift + vth + 1 - threshold(sigma, steps_out)
    add(reset, beta - lift)
    add(reset + 1, lift)
    add(fire_start, sigma - q_sum - beta + pulse)
    add(fire_start + 1, -pulse)
    add(fire_start + steps_out, kick)
    add(fire_start + steps_out + 1, -(sigma + kick))
    # u holds sigma + P on F (> 0: H >= sigma + K), sigma on the firing steps and sigma + K on F + T';
    # v above H spikes and is zeroed on that step (Lava's clip at the register's top, H < LAVA_STATE_MAX,
    # keeps it above H), so between steps v holds at most H
    return StockClock(vth, clock, u=(u_min - lift, np.maximum(u_max, sigma + np.maximum(pulse, kick))),
                      v=(v_min - lift, np.full_like(v_min, vth)))
