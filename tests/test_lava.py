"""Lava fixed_pt backend == emulator, spike by spike, on random nets (one long run each)."""
import warnings

import numpy as np
import pytest

pytest.importorskip("lava")

from hwtune.artifact import ArtifactError  # noqa: E402
from random_artifacts import random_artifact  # noqa: E402
from test_emulator import random_conv_case  # noqa: E402
from hwtune.backends.emulator import emulate  # noqa: E402
from hwtune.backends.lava import run_lava  # noqa: E402
from hwtune.backends.lava.build import build_network, input_raster  # noqa: E402
from test_emulator import GOLDEN_K0, golden_artifact  # noqa: E402
from test_grouped_conv import depthwise_case  # noqa: E402


def assert_lava_matches_emulator(a, k0):
    with warnings.catch_warnings():
        # Lava's model search executes every module next to process.py; none may fail
        warnings.filterwarnings("error", message="Cannot import module", category=UserWarning)
        lava = run_lava(a, k0)
    emu = emulate(a, k0, mode="stepped")
    for n, (x, y) in enumerate(zip(lava.spike_steps, emu.spike_steps)):
        assert np.array_equal(x, y), f"spike steps of layer {n}"
    for n, (x, y) in enumerate(zip(lava.potentials, emu.potentials)):
        assert np.array_equal(x, y), f"potentials of layer {n + 1}"
    assert np.array_equal(lava.logits, emu.logits) and np.array_equal(lava.predictions, emu.predictions)
    assert lava.total_steps == len(k0) * (a.latency_steps + 2)
    return lava, emu


@pytest.mark.parametrize("seed, delay", [(0, 1), (1, 1), (2, 1), (3, 2), (4, 1), (5, 3)])
def test_lava_equals_emulator_on_conv_nets(seed, delay):
    """Random conv nets (stride, padding, sum pooling folded into Sparse synapses, per-layer and
    per-channel slopes, delays 1-3) run spike for spike as the emulator."""
    a, k0 = random_conv_case(seed, delay, batch=5)
    assert_lava_matches_emulator(a, k0)


def test_depthwise_separable_net_on_lava(digits):
    """Depthwise + pointwise convolutions (grouped synapses as block-diagonal Sparse matrices) on
    20 digits test images: Lava == emulator spike for spike."""
    *_, artifact, k0 = depthwise_case(digits)
    assert artifact.layers[1].synapse.groups == 4
    assert_lava_matches_emulator(artifact, k0[:20])


def test_golden_case_on_lava():
    lava, _ = assert_lava_matches_emulator(golden_artifact(), GOLDEN_K0)
    assert lava.spike_steps[1].tolist() == [[1.0]] and lava.logits.tolist() == [[2]]


@pytest.mark.parametrize("sizes, bits, steps, delay, seed", [
    ([12, 9, 7, 4], 4, [5, 3, 7], 1, 0),
    ([12, 9, 7, 4], 8, [8, 8, 8], 1, 1),
    ([12, 9, 7, 4], 8, [4, 6, 2], 2, 2),
    ([10, 6, 3], 2, [3, 5], 1, 3),
])
def test_lava_equals_emulator(sizes, bits, steps, delay, seed):
    rng = np.random.default_rng(seed)
    a = random_artifact(rng, sizes, bits=bits, steps=steps, delay=delay)
    k0 = rng.integers(0, a.input_steps + 1, (10, a.n_in)) * (rng.random((10, a.n_in)) < 0.7)
    k0[0] = 0                                # a sample with no input spike at all
    _, emu = assert_lava_matches_emulator(a, k0)
    hidden = np.concatenate([k.ravel() for k in emu.activations[1:]])
    assert (hidden == 0).any() and (hidden > 0).any()


def test_extreme_weights_keep_their_value():
    """All-negative and all-positive matrices with the extreme mantissas (-128, 127 at 8 bits):
    Lava would infer an INHIBITORY sign mode and clip -256 to -255 unless told MIXED."""
    rng = np.random.default_rng(4)
    a = random_artifact(rng, [12, 9, 4], bits=8, steps=[4, 4])
    a.layers[0].weight[:] = np.where(rng.random((9, 12)) < 0.5, -128, 0)
    a.layers[0].bias[:] = 300
    a.layers[1].weight[:] = np.where(rng.random((4, 9)) < 0.5, 127, 0)
    a.membrane_bits = 20
    assert_lava_matches_emulator(a, rng.integers(0, 5, (6, 12)))


def test_input_raster_timing():
    a = golden_artifact()
    raster = input_raster(a, np.array([[3, 1], [4, 0]]), period=12)
    # sample 0: input 0 spikes at step T_0 - 3 = 1, input 1 at 3; sample 1 starts at step 12
    assert [tuple(x) for x in np.argwhere(raster)] == [(0, 1), (0, 12), (1, 3)]


def test_build_refuses_what_lava_cannot_hold():
    a = golden_artifact(membrane_bits=5)
    with pytest.raises(ArtifactError, match="layer 'hidden' neuron 0: membrane worst case"):
        build_network(a, GOLDEN_K0, "/tmp")
    with pytest.raises(ArtifactError, match="at most 8 weight bits"):
        build_network(golden_artifact(weight_bits=9), GOLDEN_K0, "/tmp")


def test_decode_checks_what_the_neurons_saw():
    from hwtune.backends.lava.run import LavaRunError, _decode
    # window [5, 9): tau 5 -> m 0 -> k 4; tau 8 -> k 1; -1 silent
    assert _decode(np.array([[5, 8, -1]]), "h", 5, 4).tolist() == [[4, 1, 0]]
    with pytest.raises(LavaRunError, match="layer 'h' neuron 1 of sample 0 spiked more than once"):
        _decode(np.array([[5, -2, -1]]), "h", 5, 4)
    with pytest.raises(LavaRunError, match="layer 'h' neuron 2 of sample 1 spiked outside its window"):
        _decode(np.array([[5, 6, 7], [5, 6, 9]]), "h", 5, 4)


def _group_members(pgid: int) -> list[int]:
    import os
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry))
    return members


def test_a_ctrl_c_held_back_survives_a_bare_except():
    """sigint_deferred holds a Ctrl-C over code that would swallow it (brevitas' import has a bare
    except around a seconds-long torch._dynamo import; a Ctrl-C then vanished and the run went on)
    and delivers it when the block ends."""
    import os
    import signal
    import time
    from hwtune.interrupts import sigint_deferred
    finished = []
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)   # Python's, whatever ran before
    try:
        with pytest.raises(KeyboardInterrupt):
            with sigint_deferred():
                try:
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(0.2)
                except:  # noqa: E722 - what the import does
                    pytest.fail("the Ctrl-C was raised inside the block")
                finished.append(True)
    finally:
        signal.signal(signal.SIGINT, inherited)
    assert finished == [True]


def test_ctrl_c_stops_a_lava_run_cleanly(tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) during `hwtune lava-run`:
    exit code 130 within seconds, no Lava worker left behind."""
    import os
    import signal
    import subprocess
    import sys
    import time
    a = random_artifact(np.random.default_rng(0), [64, 300, 10], bits=4, steps=16)
    a.meta["dataset"] = {"name": "digits"}
    a.save(tmp_path / "art")
    def as_from_a_terminal():   # SIGINT handled and unblocked, whatever this test process inherited or set
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    proc = subprocess.Popen([sys.executable, "-m", "hwtune.cli", "lava-run", str(tmp_path / "art"), "--samples",
                             "360", "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=as_from_a_terminal)
    time.sleep(6)                      # imports, Lava compile and start, then well into the run
    assert proc.poll() is None, proc.communicate()
    start = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert time.monotonic() - start < 10 and "interrupted" in err
    time.sleep(0.5)
    assert _group_members(proc.pid) == []


def test_lava_workers_die_with_a_killed_parent_and_remove_the_temp_dirs(tmp_path):
    """`hwtune lava-run` killed outright (SIGKILL: no clean-up of its own) mid-run: its Lava workers
    end within seconds, and the run's hwtune-lava-* / pymp-* temp dirs are gone."""
    import os
    import signal
    import subprocess
    import sys
    import time
    a = random_artifact(np.random.default_rng(0), [64, 300, 10], bits=4, steps=16)
    a.meta["dataset"] = {"name": "digits"}
    a.save(tmp_path / "art")
    temp = tmp_path / "temp"
    temp.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "hwtune.cli", "lava-run", str(tmp_path / "art"), "--samples",
                             "360", "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env={**os.environ, "TMPDIR": str(temp)})
    deadline = time.monotonic() + 60
    while len(_group_members(proc.pid)) < 3 and time.monotonic() < deadline:   # Lava's workers are up
        time.sleep(0.2)
    time.sleep(1)
    assert proc.poll() is None and len(_group_members(proc.pid)) >= 3
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.monotonic() + 20
    while _group_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _group_members(proc.pid) == []
    assert [p.name for p in temp.iterdir() if p.name.startswith(("hwtune-lava-", "pymp-"))] == []


def test_a_group_sigterm_during_lava_stops_quietly(tmp_path):
    """SIGTERM to the whole process group (a job controller stopping it) during `hwtune lava-run`:
    exit 130, no traceback from any worker, none left behind."""
    import os
    import signal
    import subprocess
    import sys
    import time
    a = random_artifact(np.random.default_rng(0), [64, 300, 10], bits=4, steps=16)
    a.meta["dataset"] = {"name": "digits"}
    a.save(tmp_path / "art")
    proc = subprocess.Popen([sys.executable, "-m", "hwtune.cli", "lava-run", str(tmp_path / "art"), "--samples",
                             "360", "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while len(_group_members(proc.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    assert proc.poll() is None
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err[-3000:]
    time.sleep(0.5)
    assert _group_members(proc.pid) == []
