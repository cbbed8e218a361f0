"""Convolutions as Lava's stock Conv process (kernels stored once): the kernel Lava's model gets equals
the stage's explicit matrix, random conv nets built with Conv run spike for spike as the emulator,
the layers Conv cannot express stay Sparse (and say why), and a Conv whose 24-bit a_out would
wrap is refused naming layer and register."""
import numpy as np
import pytest

pytest.importorskip("lava")

from lava.proc.conv import utils as lava_conv  # noqa: E402

from hwtune import numerics  # noqa: E402
from hwtune.artifact import ArtifactError  # noqa: E402
from hwtune.backends.lava.build import calibrate, plan  # noqa: E402
from hwtune.backends.lava.conv import conv_kernel  # noqa: E402
from hwtune.layers import Conv2d, Dense, Flatten, SumPool  # noqa: E402
from hwtune.layers.stage import Stage  # noqa: E402
from hwtune.random_artifacts import random_conv_artifact  # noqa: E402
from test_lava import assert_lava_matches_emulator  # noqa: E402


def _random_stage(rng) -> Stage:
    """A conv2d stage: 1-2 groups, stride 1-2, padding 0-2, kernel 1-3, maybe after a 2x2 or 3x3 sum
    pooling of a map it divides, 2-8 weight bits, a shift that keeps them within 8 bits."""
    groups, pool = int(rng.integers(1, 3)), int(rng.choice([1, 2, 3]))
    c_in, c_out = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    h, w = pool * int(rng.integers(3, 6)), pool * int(rng.integers(3, 6))
    k, bits = int(rng.integers(1, 4)), int(rng.integers(2, 9))
    lo, hi = numerics.signed_range(bits)
    q = rng.integers(lo, hi + 1, (c_out, c_in // groups, k, k))
    conv = Conv2d(weight=q, in_shape=(c_in, h // pool, w // pool), stride=int(rng.integers(1, 3)),
                  padding=int(rng.integers(0, 3)), groups=groups)
    return Stage(synapse=conv, ops=(SumPool(kernel=pool),) if pool > 1 else (), in_shapes=((c_in, h, w),),
                 shift=int(rng.integers(0, 9 - bits)))


def test_lavas_conv_of_the_kernel_equals_the_stage_matrix():
    """Lava's fixed-point Conv arithmetic (lava.proc.conv.utils.conv: a flipped kernel, (W, H, C)
    layout) on the built kernel == the stage's explicit synapse matrix (ops folded in) on random
    spikes, for pooling folded into the kernel, groups, stride, padding and shifts."""
    rng = np.random.default_rng(0)
    for _ in range(40):
        stage = _random_stage(rng)
        kernel, why = conv_kernel(stage, delay=1)
        assert kernel is not None, why
        x = (rng.random(stage.in_shapes[0]) < 0.5).astype(np.int32)
        a_out = lava_conv.conv(x.transpose(2, 1, 0), kernel.weight, kernel.weight.shape[1:3],
                               (kernel.stride,) * 2, (kernel.padding,) * 2, (1, 1), kernel.groups)
        expected = stage.matrix() @ x.ravel()
        assert np.array_equal(a_out.transpose(2, 1, 0).ravel(), expected)


def test_what_conv_cannot_express_stays_sparse_and_says_why():
    conv = Conv2d(weight=np.ones((2, 1, 3, 3), dtype=np.int64), in_shape=(1, 3, 3), padding=1)
    assert conv_kernel(Stage(synapse=conv, ops=(SumPool(kernel=2),), in_shapes=((1, 7, 7),)), 1) == \
        (None, "a 2x2 sum pooling drops the remainder of a 7x7 map")
    assert conv_kernel(Stage(synapse=conv), 2) == (None, "it needs a delay of 2 steps and Conv delivers in 1")
    big = Conv2d(weight=np.full((2, 1, 3, 3), 100, dtype=np.int64), in_shape=(1, 3, 3))
    assert conv_kernel(Stage(synapse=big, shift=1), 1) == \
        (None, "its weights times 2^1 reach [200, 200], beyond 8 bits (Conv ignores weight_exp)")
    assert conv_kernel(Stage(synapse=big), 1)[0] is not None
    dense = Stage(synapse=Dense(weight=np.ones((2, 9), dtype=np.int64)), ops=(Flatten(),), in_shapes=((1, 3, 3),))
    assert conv_kernel(dense, 1) == (None, "a dense synapse is no convolution")


def _kernel_case(seed: int):
    """A random conv net every convolution of which Lava's Conv holds: groups, stride, padding, a
    2x2 sum pool folded into the next convolution, 2-8 weight bits, delay 1; five samples, guards
    calibrated on 64 others."""
    rng = np.random.default_rng(seed)
    groups = int(rng.integers(1, 3))
    shape = (2 * groups, 8, 2 * int(rng.integers(3, 5)))
    c1 = 2 * groups * int(rng.integers(1, 3))
    plan_ = [("conv", c1, 3, 1, 1, groups), ("pool", 2),
             ("conv", int(rng.integers(2, 5)), int(rng.integers(1, 4)), int(rng.integers(1, 3)),
              int(rng.integers(0, 2))), ("dense", 4)]
    bits = int(rng.integers(2, 9))
    a = random_conv_artifact(rng, shape, plan_, 3, bits=bits, steps=[int(t) for t in rng.integers(2, 6, 5)])
    other = rng.integers(0, a.input_steps + 1, (64, a.n_in)) * (rng.random((64, a.n_in)) < 0.7)
    calibrate(a, other, "64 random samples")
    k0 = rng.integers(0, a.input_steps + 1, (5, a.n_in)) * (rng.random((5, a.n_in)) < 0.7)
    return a, k0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_conv_nets_built_with_conv_equal_the_emulator(seed):
    a, k0 = _kernel_case(seed)
    names = [layer.process_names() for layer in plan(a)]
    assert names[:2] == [["Conv"], ["Conv"]] and a.layers[1].stage.ops == (SumPool(kernel=2),), names
    lava, _ = assert_lava_matches_emulator(a, k0)
    assert "lava.proc.conv.models.PyConvModelFixed" in lava.process_models


def test_a_conv_whose_a_out_would_wrap_is_refused_naming_layer_and_register():
    """65,600 weights of -128 into one output: a_out reaches -8,396,800 < -2^23 in one step."""
    rng = np.random.default_rng(0)
    a = random_conv_artifact(rng, (4100, 4, 4), [("conv", 1, 4, 1, 0)], 2, bits=8, steps=2)
    a.layers[0].synapse.weight[:] = -128
    with pytest.raises(ArtifactError, match=r"layer 'conv2d1' input 0 neuron 0: Conv a_out reaches \[-8396800, 0\] "
                                            r"in one step, outside its 24-bit register \[-8388608, 8388607\]"):
        plan(a)
