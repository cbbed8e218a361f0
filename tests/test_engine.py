"""hwtune.layers.engine: oneDNN's int8, torch's float and numpy's kernels give the integer result
exactly (against int64 references built here), up to the float32 limit and the int8 kernels' pair
limit; torch runs only where its float32 math is IEEE; the emulator gives the same integers on
every engine and without torch."""
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from hwtune.backends.emulator import emulate
from hwtune.layers import Conv2d, Dense, engine, exact_dtype
from hwtune.random_artifacts import random_artifact, random_conv_artifact


def conv_reference(x: np.ndarray, q: np.ndarray, stride: int, padding: int, groups: int) -> np.ndarray:
    """Cross-correlation in int64 by its definition, one kernel tap at a time (no float anywhere)."""
    b, c_in, h, w = x.shape
    c_out, per_group, k, _ = q.shape
    h_o, w_o = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
    padded = np.zeros((b, c_in, h + 2 * padding, w + 2 * padding), dtype=np.int64)
    padded[:, :, padding:padding + h, padding:padding + w] = x
    out = np.zeros((b, c_out, h_o, w_o), dtype=np.int64)
    for o in range(c_out):
        first = o // (c_out // groups) * per_group
        for c in range(per_group):
            for dy in range(k):
                for dx in range(k):
                    rows, cols = slice(dy, dy + stride * (h_o - 1) + 1, stride), slice(dx, dx + stride * (w_o - 1) + 1, stride)
                    out[:, o] += q[o, c, dy, dx] * padded[:, first + c, rows, cols]
    return out


def per_position_reference(x: np.ndarray, q6: np.ndarray, stride: int, padding: int, groups: int) -> np.ndarray:
    """A kernel per output position: each position's output from the shared-kernel reference of its own kernel."""
    h_o, w_o = q6.shape[4:]
    out = np.zeros((len(x), q6.shape[0], h_o, w_o), dtype=np.int64)
    for y in range(h_o):
        for z in range(w_o):
            out[:, :, y, z] = conv_reference(x, q6[..., y, z], stride, padding, groups)[:, :, y, z]
    return out


@pytest.mark.parametrize("name", engine.ENGINES)
@pytest.mark.parametrize("c_in, c_out, k, stride, padding, groups, hw", [
    (1, 8, 3, 1, 1, 1, 9), (6, 4, 3, 2, 0, 2, 11), (4, 4, 3, 1, 1, 4, 8), (3, 5, 1, 1, 0, 1, 7), (2, 6, 5, 1, 2, 1, 12)])
def test_convolution_exact_on_each_engine(name, c_in, c_out, k, stride, padding, groups, hw):
    rng = np.random.default_rng(c_in * 100 + k)
    q = rng.integers(-8, 8, (c_out, c_in // groups, k, k))
    x = rng.integers(0, 17, (5, c_in, hw, hw))
    conv = Conv2d(weight=q, in_shape=(c_in, hw, hw), stride=stride, padding=padding, groups=groups)
    ref = conv_reference(x, q, stride, padding, groups)
    per_position = np.broadcast_to(q[..., None, None], q.shape + ref.shape[2:]) + \
        rng.integers(-1, 2, q.shape + ref.shape[2:])
    ref_pp = per_position_reference(x, per_position, stride, padding, groups)
    with engine.forced(name):
        for dtype in (np.float32, np.float64, np.int64):
            out = conv.apply(x, dtype)
            assert out.dtype == dtype and np.array_equal(out, ref)
            assert np.array_equal(conv.apply(x, dtype, per_position), ref_pp)
    if name == "torch-int8":          # these layers are too small for int8_pays: the int8 kernel itself
        assert np.array_equal(engine.Int8Conv(q, stride, padding, groups)(x), ref)


@pytest.mark.parametrize("name", engine.ENGINES)
def test_dense_exact_on_each_engine(name):
    rng = np.random.default_rng(1)
    q = rng.integers(-128, 128, (37, 300))
    x = rng.integers(0, 256, (50, 300))
    with engine.forced(name):
        for dtype in (np.float32, np.float64, np.int64):
            out = Dense(weight=q).apply(x, dtype)
            assert out.dtype == dtype and np.array_equal(out, x @ q.T)


@pytest.mark.parametrize("name", engine.ENGINES)
def test_exact_at_the_float32_limit(name):
    """Sums of 255 products of about 255 x 258 reach 2^24 - 766, with odd terms (257 x 255): exact in
    float32 on both engines (a kernel rounding below float32, as bfloat16 products would, fails)."""
    q = np.full((3, 255), 255)
    q[1, :100] = 254
    q[2] = -255
    x = np.full((4, 255), 258)
    x[1::2, ::3] = 257
    bound = int(np.abs(q).sum(axis=1).max()) * int(x.max())
    assert exact_dtype(bound) is np.float32 and bound > 2 ** 23
    with engine.forced(name):
        assert np.array_equal(Dense(weight=q).apply(x, np.float32), x @ q.T)
        conv = Conv2d(weight=q.reshape(3, 255, 1, 1), in_shape=(255, 1, 1))
        assert np.array_equal(conv.apply(x.reshape(4, 255, 1, 1), np.float32).reshape(4, 3), x @ q.T)


def test_engine_inputs_torch_cannot_share_are_copied():
    """Read-only, reversed and big-endian arrays (torch.from_numpy refuses them) give the right
    product, without a warning."""
    rng = np.random.default_rng(2)
    q = rng.integers(-8, 8, (6, 20))
    x = rng.integers(0, 17, (9, 20))
    frozen = x.copy()
    frozen.flags.writeable = False
    with engine.forced("torch"), warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(engine.matmul(frozen, q.T, np.float32), x @ q.T)
        assert np.array_equal(engine.matmul(x[::-1], q.T, np.float32), x[::-1] @ q.T)
        assert np.array_equal(engine.matmul(x.astype(">i8"), q.T, np.float32), x @ q.T)


def test_torch_runs_only_with_ieee_float32():
    """oneDNN disabled (NNPACK's Winograd may convolve) or reduced precision for oneDNN's matmul or
    convolution (bfloat16 products on CPUs that have them): the numpy engine runs instead."""
    assert engine.active() == "torch-int8"
    with torch.backends.mkldnn.flags(enabled=False, allow_tf32=False):
        assert engine.active() == "numpy" and not engine.on_torch(np.float32)
        for name in ("torch", "torch-int8"):
            with pytest.raises(ValueError, match="not exact here.*the fastest exact one is 'numpy'"):
                with engine.forced(name):
                    pass
    for op in ("matmul", "conv"):
        backend = getattr(torch.backends.mkldnn, op)
        before = backend.fp32_precision
        try:
            backend.fp32_precision = "bf16"
            assert engine.active() == "numpy"
        finally:
            backend.fp32_precision = before
    try:
        torch.set_float32_matmul_precision("medium")
        assert engine.active() == "numpy"
    finally:
        torch.set_float32_matmul_precision("highest")
    assert engine.active() == "torch-int8"


def test_nnpack_is_why_onednn_must_be_enabled():
    """With oneDNN disabled, torch convolves a 3x3 kernel over a batch of 16 or more with NNPACK's
    Winograd transform, which rounds even 4-bit products of 4-bit inputs; the engine then runs
    numpy's kernels and stays exact."""
    rng = np.random.default_rng(5)
    q = rng.integers(-8, 9, (8, 64, 3, 3))
    x = rng.integers(0, 17, (32, 64, 12, 12))
    conv = Conv2d(weight=q, in_shape=(64, 12, 12), padding=1)
    ref = conv_reference(x, q, 1, 1, 1)
    with torch.backends.mkldnn.flags(enabled=False, allow_tf32=False):
        assert engine.active() == "numpy"
        assert np.array_equal(conv.apply(x, np.float32), ref)
        if torch.backends.nnpack.is_available():
            winograd = torch.nn.functional.conv2d(torch.from_numpy(x).float(), torch.from_numpy(q).float(), padding=1)
            assert not np.array_equal(winograd.numpy(), ref)
    with engine.forced("torch"):
        assert np.array_equal(conv.apply(x, np.float32), ref)


def test_forced_engine_is_checked():
    with pytest.raises(ValueError, match="engine must be one of"):
        with engine.forced("cupy"):
            pass


@pytest.mark.parametrize("x_max, q_lo, q_hi, int8", [
    (255, -64, 64, True),           # 2 * 255 * 64 = 32640: the largest pair sum an int16 holds
    (16, -128, 127, True),
    (255, -128, 127, False),        # 2 * 255 * 128 = 65280 would saturate without VNNI: float kernels
    (256, -1, 1, False),            # not u8
    (16, -129, 0, False)])          # not s8
def test_int8_kernels_where_operands_fit(monkeypatch, x_max, q_lo, q_hi, int8):
    """The int8 kernels run exactly where int8_fits says (u8 x, s8 q, pair sums within int16), float
    kernels elsewhere; both exact at these limits, for dense and convolution (144 terms into 392
    and 130 outputs: large enough for int8_pays)."""
    rng = np.random.default_rng(x_max - q_lo)
    x = rng.integers(0, x_max + 1, (3, 16, 7, 7))
    q = rng.integers(q_lo, q_hi + 1, (8, 16, 3, 3))
    x[:, :, 3, 3], q[:4, :, 1, 1], q[4:, :, 1, 1] = x_max, q_lo, q_hi
    rows = x.reshape(3, -1)[:, :144]
    kernels = np.concatenate([q.reshape(8, -1)] * 17)[:130]
    ran = spy_int8(monkeypatch)
    assert engine.int8_fits(engine.input_max(x), q, np.float32) is int8 and \
        not engine.int8_fits(engine.input_max(x), q, np.float64)
    conv = Conv2d(weight=q, in_shape=(16, 7, 7), padding=1)
    with engine.forced("torch-int8"):
        assert np.array_equal(conv.apply(x, np.float32), conv_reference(x, q, 1, 1, 1))
        assert np.array_equal(Dense(weight=kernels).apply(rows, np.float32), rows @ kernels.T)
    assert ran == (["Int8Conv", "Int8Dense"] if int8 else [])


def spy_int8(monkeypatch) -> list:
    """The names of the int8 kernels called from now on, in order."""
    ran = []
    for kind in (engine.Int8Dense, engine.Int8Conv):
        monkeypatch.setattr(kind, "__call__", (lambda f, name: lambda self, x: ran.append(name) or f(self, x))(
            kind.__call__, kind.__name__))
    return ran


def test_int8_kernels_only_where_they_pay(monkeypatch):
    """Short sums (a 3x3 kernel over 8 channels: 72 terms) and few outputs (a 10-neuron read-out) run
    the float kernels, whose fixed costs are lower; the layers of the VGG and the FC2 hidden layer run int8."""
    ran = spy_int8(monkeypatch)
    rng = np.random.default_rng(6)
    with engine.forced("torch-int8"):
        Conv2d(weight=rng.integers(-8, 8, (32, 8, 3, 3)), in_shape=(8, 14, 14), padding=1).apply(
            rng.integers(0, 17, (2, 8, 14, 14)), np.float32)
        Dense(weight=rng.integers(-8, 8, (10, 340))).apply(rng.integers(0, 17, (2, 340)), np.float32)
        assert ran == []
        Conv2d(weight=rng.integers(-8, 8, (32, 32, 3, 3)), in_shape=(32, 14, 14), padding=1).apply(
            rng.integers(0, 17, (2, 32, 14, 14)), np.float32)
        Dense(weight=rng.integers(-8, 8, (340, 784))).apply(rng.integers(0, 17, (2, 784)), np.float32)
        assert ran == ["Int8Conv", "Int8Dense"]


def test_without_int8_kernels_the_float_kernels_run(monkeypatch):
    """A torch whose oneDNN integer ops fail their probe (missing, called differently, inexact) runs
    the float kernels."""
    monkeypatch.setattr(engine, "int8_available", lambda: False)
    assert engine.natural() == engine.active() == "torch"
    with pytest.raises(ValueError, match="the fastest exact one is 'torch'"):
        with engine.forced("torch-int8"):
            pass


def test_emulator_same_integers_on_every_engine(monkeypatch):
    """Fast mode on each engine == stepped, every activation and potential; the device-noise path
    (a kernel per position) too. The last net has layers large enough for the int8 kernels."""
    from hwtune.backends.emulator import EmulatorNoise
    from hwtune.device_noise import NoiseSpec
    rng = np.random.default_rng(3)
    nets = [random_artifact(rng, [30, 20, 6], bits=4, steps=8, slope="per-neuron"),
            random_conv_artifact(rng, (2, 8, 8), [("conv", 4, 3, 1, 1), ("pool", 2), ("conv", 6, 3, 2, 1), ("dense", 7)],
                                 5, bits=4, steps=6),
            random_conv_artifact(rng, (2, 8, 8), [("conv", 16, 3, 1, 1), ("conv", 16, 3, 1, 1), ("dense", 130)],
                                 10, bits=4, steps=8)]
    ran = spy_int8(monkeypatch)
    for a in nets:
        k0 = rng.integers(0, a.input_steps + 1, (12, a.n_in))
        results = {}
        for name in engine.ENGINES:
            with engine.forced(name):
                results[name] = emulate(a, k0)
        stepped = emulate(a, k0, mode="stepped")
        for run in (results["torch"], results["numpy"], stepped):
            assert all(np.array_equal(x, y) for x, y in zip(results["torch-int8"].activations, run.activations))
            assert all(np.array_equal(x, y) for x, y in zip(results["torch-int8"].potentials, run.potentials))
        spec = NoiseSpec(weight_mismatch=0.2, threshold_mismatch=0.1)
        noisy = {}
        for name in engine.ENGINES:
            with engine.forced(name):
                noisy[name] = emulate(a, k0, noise=EmulatorNoise.evaluation(a, spec, seed=0, index=1))
        for run in (noisy["torch"], noisy["numpy"]):
            assert all(np.array_equal(x, y) for x, y in zip(noisy["torch-int8"].potentials, run.potentials))
        assert not all(np.array_equal(x, y) for x, y in zip(noisy["torch"].potentials, results["torch"].potentials))
    assert ran.count("Int8Conv") >= 2 and ran.count("Int8Dense") >= 2        # the last net, fast and stepped


def test_emulator_without_torch_gives_the_same_integers(tmp_path):
    """An install without torch (import torch fails) runs the numpy engine: the same integers."""
    rng = np.random.default_rng(4)
    a = random_conv_artifact(rng, (1, 10, 10), [("conv", 4, 3, 1, 1), ("pool", 2), ("dense", 8)], 4, bits=4, steps=6)
    a.save(tmp_path / "art")
    k0 = rng.integers(0, a.input_steps + 1, (16, a.n_in))
    np.save(tmp_path / "k0.npy", k0)
    code = ("import sys; sys.modules['torch'] = None\n"
            "import numpy as np\n"
            "from hwtune.artifact import Artifact\n"
            "from hwtune.backends.emulator import emulate\n"
            "from hwtune.layers import engine\n"
            f"r = emulate(Artifact.load({str(tmp_path / 'art')!r}), np.load({str(tmp_path / 'k0.npy')!r}))\n"
            "assert engine.active() == 'numpy'\n"
            f"np.save({str(tmp_path / 'logits.npy')!r}, r.logits)\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert np.array_equal(np.load(tmp_path / "logits.npy"), emulate(a, k0).logits)
