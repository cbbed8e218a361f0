"""Lava backend (Lava's stock processes: LIFReset, Dense/Sparse, io adapters) == emulator, spike by
spike, on random nets (one long run each); every ProcessModel that ran is Lava's own."""
import warnings

import numpy as np
import pytest

pytest.importorskip("lava")

from hwtune.artifact import ArtifactError  # noqa: E402
from hwtune.random_artifacts import random_artifact  # noqa: E402
from test_emulator import random_conv_case  # noqa: E402
from hwtune.backends.emulator import emulate  # noqa: E402
from hwtune.backends.lava import run_lava  # noqa: E402
from hwtune.backends.lava.run import hardware_available  # noqa: E402
from hwtune.backends.lava.build import GUARD_KEY, calibrate, input_spikes, period_steps, plan  # noqa: E402
from test_emulator import GOLDEN_K0, golden_artifact  # noqa: E402
from test_grouped_conv import depthwise_case  # noqa: E402


def assert_lava_matches_emulator(a, k0):
    with warnings.catch_warnings():
        # Lava's model search executes every module next to a process; none may fail
        warnings.filterwarnings("error", message="Cannot import module", category=UserWarning)
        lava = run_lava(a, k0)
    emu = emulate(a, k0, mode="stepped")
    for n, (x, y) in enumerate(zip(lava.spike_steps, emu.spike_steps)):
        assert np.array_equal(x, y), f"spike steps of layer {n}"
    assert np.array_equal(lava.logits, emu.logits) and np.array_equal(lava.predictions, emu.predictions)
    # samples pipelined: a new one every P steps, P the power of two that holds the longest a layer is busy
    # (reset R to its last clock step) or the input's T_0 + 1 steps; the run lasts up to the read-out's last slot
    layers = plan(a)
    busy = max(a.input_steps + 1, *(max(layer.clock) - layer.reset + 1 for layer in layers))
    assert lava.period == period_steps(a) and lava.period & (lava.period - 1) == 0 and busy <= lava.period < 2 * busy
    assert lava.total_steps == len(k0) * lava.period + layers[-1].reset
    # what ran: Lava's stock models only (bit-accurate ones for neurons and synapses), one spike each
    assert lava.process_models and all(m.startswith("lava.proc.") for m in lava.process_models), lava.process_models
    assert "lava.proc.lif.models.PyLifResetModelBitAcc" in lava.process_models
    assert lava.max_spikes_per_neuron == 1
    return lava, emu


@pytest.mark.parametrize("seed, delay", [(0, 1), (2, 1), (3, 2), (4, 1), (5, 3), (7, 1), (8, 2)])
def test_lava_equals_emulator_on_conv_nets(seed, delay):
    """Random conv nets (stride, padding, sum pooling, per-layer and per-channel slopes, 2-8 weight
    bits, delays 1-3) run spike for spike as the emulator; at delay 1 the first convolution is Lava's
    Conv, beyond it DelaySparse (Conv has no delay)."""
    a, k0 = random_conv_case(seed, delay, batch=5)
    lava, _ = assert_lava_matches_emulator(a, k0)
    assert plan(a)[0].process_names() == ["Conv" if delay == 1 else "DelaySparse"]
    assert ("lava.proc.conv.models.PyConvModelFixed" in lava.process_models) == (delay == 1)


@pytest.mark.parametrize("seed", [1, 9])
def test_a_net_too_wide_for_the_worst_case_runs_with_calibrated_guards(seed):
    """8-bit conv nets whose worst-case potentials need more than the 16-bit a_in are refused as they
    are; sized for the potentials of 64 other samples (x2), they run exactly."""
    a, k0 = random_conv_case(seed, 1, batch=5)
    with pytest.raises(ArtifactError, match=r"a_in on step \d+ reaches \d+ > 32767"):
        plan(a)
    rng = np.random.default_rng(100 + seed)
    other = rng.integers(0, a.input_steps + 1, (64, a.n_in)) * (rng.random((64, a.n_in)) < 0.7)
    calibrate(a, other, "64 random samples")
    assert a.meta[GUARD_KEY]["samples"] == 64
    assert_lava_matches_emulator(a, k0)


def test_a_sample_outside_the_calibrated_guards_is_detected():
    """Guards sized for inputs without a spike: a real sample's neuron then spikes while its layer
    integrates, and the run says which, instead of returning wrong activations."""
    from hwtune.backends.lava.run import LavaRunError
    a, k0 = random_conv_case(9, 1, batch=5)
    calibrate(a, np.zeros((4, a.n_in), dtype=np.int64), "no input spikes")
    with pytest.raises(LavaRunError, match=r"layer '\w+' neuron \d+ of sample \d+ (spiked outside its firing steps|did not spike once)"):
        run_lava(a, k0)


def test_depthwise_separable_net_on_lava(digits):
    """Depthwise + pointwise convolutions (the grouped one as Lava's Conv with groups) on 8 digits
    test images (Lava's Conv model recomputes every convolution every step: ~0.3 s a step here):
    Lava == emulator spike for spike."""
    *_, artifact, k0 = depthwise_case(digits)
    assert artifact.layers[1].synapse.groups == 4
    assert plan(artifact)[1].process_names() == ["Conv"]
    assert_lava_matches_emulator(artifact, k0[:8])


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
    """The first and third nets are pipelined: latency 18 steps, a new sample every 16 (layers busy
    10, 12, 8 and 12, 10, 3 steps)."""
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


def test_input_spike_timing():
    # sample 0: input 0 (k0 3) spikes at step T_0 - 3 = 1, input 1 (k0 0) at T_0 = 4 (every input spikes
    # once); sample 1 starts at step 12
    at = input_spikes(np.array([[3, 0], [4, 1]]), steps=4, period=12)
    assert [tuple(np.flatnonzero(at(t))) for t in range(24)] == \
        [(), (0,), (), (), (1,)] + [()] * 7 + [(0,), (), (), (1,)] + [()] * 8


def test_build_refuses_what_the_stock_neuron_cannot_hold():
    with pytest.raises(ArtifactError, match="at most 8 weight bits"):
        plan(golden_artifact(weight_bits=9))
    a = golden_artifact()
    # u would hold beta: more than the 16-bit a_in can bring in one step. By hand (T = T' = 4, q = [2, -1],
    # sigma 3): V <= 4 (2 + 40000) = 160008, K = 4, H = 16, L = 159992, P = L + H + 1 - 15 = 159994; u's
    # largest is sigma + max(P, K) = 159997 on F
    a.layers[0].bias[:] = 40000
    with pytest.raises(ArtifactError, match=r"layer 'hidden' neuron 0: u reaches \[-\d+, 159997\] weight units, "
                                            r"outside the 24-bit register.*a_in on step 1 reaches \d+ > 32767"):
        plan(a)
    a = golden_artifact()
    a.layers[0].slope[:] = 40000      # vth >= sigma T_1 + kick: beyond 17 bits
    with pytest.raises(ArtifactError, match=r"layer 'hidden': vth = \d+ > 131071"):
        plan(a)


def test_golden_plan_by_hand():
    """The clock of the golden case (test_emulator.golden_artifact), derived by hand from the module
    docstring of hwtune.backends.lava.build: hidden q = [2, -1], beta 1, sigma 3, T = T' = 4, R = 1, F = 5;
    V in [-4, 12]: kick K = 4, H = sigma T' + K = 16, lift L = 0, pulse P = L + H + 1 - sigma (T' + 1) = 2."""
    hidden, out = plan(golden_artifact())
    assert (hidden.reset, hidden.fire_start, hidden.threshold) == (1, 5, 16)
    assert {s: v.tolist() for s, v in hidden.clock.items()} == \
        {1: [1], 2: [0], 5: [3 - 1 - 1 + 2], 6: [-2], 9: [4], 10: [-7]}
    assert (out.reset, out.fire_start, out.threshold) == (6, 10, 131071)
    assert period_steps(golden_artifact()) == 16
    assert {s: v.tolist() for s, v in out.clock.items()} == {6: [-1], 10: [-(2 - 1)]}


def test_decode_checks_what_the_neurons_saw():
    from hwtune.backends.lava.run import LavaRunError, _decode
    layer = plan(golden_artifact())[0]        # fires on steps 5..9 (m = 0..4, m = 4: k = 0); its slots start at R = 1
    spikes = np.zeros((2, 16, 3), dtype=bool)
    spikes[0, 4, 0] = spikes[0, 7, 1] = spikes[0, 8, 2] = True
    spikes[1, 5, :] = True
    k, most = _decode(spikes, layer)
    assert k.tolist() == [[4, 1, 0], [3, 3, 3]] and most == 1
    spikes[1, 6, 1] = True
    with pytest.raises(LavaRunError, match="layer 'hidden' neuron 1 of sample 1 did not spike once"):
        _decode(spikes, layer)
    spikes[1, 6, 1] = spikes[1, 5, 2] = False
    spikes[1, 1, 2] = True
    with pytest.raises(LavaRunError, match="layer 'hidden' neuron 2 of sample 1 spiked outside its firing steps"):
        _decode(spikes, layer)


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


@pytest.mark.serial
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


def _lava_run_under_way(tmp_path, workers: int = 3, **popen):
    """`hwtune lava-run` of a random 64-300-10 net on 360 samples, started in a session of its own (``popen``:
    more subprocess.Popen arguments); returned once ``workers`` processes of its group are up and the run
    has gone on a second."""
    import subprocess
    import sys
    import time
    a = random_artifact(np.random.default_rng(0), [64, 300, 10], bits=4, steps=16)
    a.meta["dataset"] = {"name": "digits"}
    a.save(tmp_path / "art")
    proc = subprocess.Popen([sys.executable, "-m", "hwtune.cli", "lava-run", str(tmp_path / "art"), "--samples",
                             "360", "-q"], start_new_session=True, **popen)
    deadline = time.monotonic() + 60
    while len(_group_members(proc.pid)) < workers and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    assert proc.poll() is None and len(_group_members(proc.pid)) >= workers
    return proc


@pytest.mark.serial
def test_lava_workers_die_with_a_killed_parent_and_remove_the_temp_dirs(tmp_path):
    """`hwtune lava-run` killed outright (SIGKILL: no clean-up of its own) mid-run: its Lava workers
    end within seconds, and the run's hwtune-lava-* / pymp-* temp dirs are gone."""
    import os
    import signal
    import subprocess
    import time
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory(prefix="hw-", dir="/tmp") as short:   # room for Lava's socket paths
        temp = Path(short)
        proc = _lava_run_under_way(tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   env={**os.environ, "TMPDIR": str(temp)})
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 20
        while _group_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _group_members(proc.pid) == []
        assert [p.name for p in temp.iterdir() if p.name.startswith(("hwtune-lava-", "pymp-"))] == []


def test_a_temp_dir_too_deep_for_lavas_sockets_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    """Lava's workers talk over Unix sockets in TMPDIR (at most 107 characters on Linux): a TMPDIR of
    76+ characters made lava-run end in "AF_UNIX path too long" and a traceback. Now lava-run, a recipe
    and a sweep that would run Lava are refused before any work, naming TMPDIR."""
    import tempfile
    import time
    from hwtune.cli import main
    deep = tmp_path / ("t" * max(1, 76 - len(str(tmp_path)) - 1))
    deep.mkdir()
    assert len(str(deep)) >= 76
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    a = random_artifact(np.random.default_rng(0), [6, 5, 3], bits=4, steps=4)
    a.meta["dataset"] = {"name": "digits"}
    a.save(tmp_path / "art")
    start = time.monotonic()
    for args in (["lava-run", str(tmp_path / "art"), "--samples", "2"],
                 ["run", "recipes/quickstart.yaml", "--out", str(tmp_path / "qs")],
                 ["sweep", "recipes/robustness-ci.yaml", "--out", str(tmp_path / "sw")]):
        capsys.readouterr()
        assert main(args + ["-q"]) == 3, args
        err = capsys.readouterr().err
        assert f"Unix sockets in the temp dir {str(deep)!r}" in err and "set TMPDIR to a directory of at most 75 " \
            "characters" in err and "Traceback" not in err, err
    assert time.monotonic() - start < 30          # no training, no Lava
    assert not (tmp_path / "qs").exists() and not (tmp_path / "sw").exists()


@pytest.mark.serial
def test_a_group_sigterm_during_lava_stops_quietly(tmp_path):
    """SIGTERM to the whole process group (a job controller stopping it) during `hwtune lava-run`:
    exit 130, no traceback from any worker, none left behind."""
    import os
    import signal
    import subprocess
    import time
    proc = _lava_run_under_way(tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err[-3000:]
    time.sleep(0.5)
    assert _group_members(proc.pid) == []


@pytest.mark.serial
def test_a_lava_worker_killed_mid_run_ends_the_run_with_its_name(tmp_path):
    """One of Lava's workers killed mid-run (SIGKILL, as the out-of-memory killer does on a large net):
    `hwtune lava-run` stops within seconds with an error naming the worker and the signal (it waited
    for ever for the dead worker's spikes, ignoring Ctrl-C), and leaves no worker behind."""
    import os
    import signal
    import subprocess
    import time
    proc = _lava_run_under_way(tmp_path, workers=8, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = max(pid for pid in _group_members(proc.pid) if pid != proc.pid)   # the last worker Lava forked
    os.kill(victim, signal.SIGKILL)
    start = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3 and time.monotonic() - start < 15, err[-2000:]
    assert f"(pid {victim}) was killed by SIGKILL" in err and "Traceback" not in err, err[-2000:]
    time.sleep(0.5)
    assert _group_members(proc.pid) == []


def test_hardware_runs_the_stock_build_on_a_board_or_is_refused_before_any_work(tmp_path, capsys):
    """With lava-loihi (a Loihi 2 board): the stock build on the board == the emulator, one spike per
    neuron. Without it (here): `lava-run --hardware` exits 3 naming what is missing, before the
    artifact is even read (the path given does not exist)."""
    from hwtune.cli import main
    if hardware_available():
        rng = np.random.default_rng(0)
        a = random_artifact(rng, [12, 9, 7, 4], bits=4, steps=[5, 3, 7])
        k0 = rng.integers(0, a.input_steps + 1, (10, a.n_in))
        board, emu = run_lava(a, k0, hardware=True), emulate(a, k0, mode="stepped")
        assert all(np.array_equal(x, y) for x, y in zip(board.activations, emu.activations))
        assert np.array_equal(board.logits, emu.logits) and board.max_spikes_per_neuron == 1
        return
    assert main(["lava-run", str(tmp_path / "no-such-artifact"), "--hardware"]) == 3
    err = capsys.readouterr().err
    assert "lava-loihi" in err and "not installed" in err and "no-such-artifact" not in err


def test_saturating_artifacts_are_refused():
    """The stock neuron holds every value (plan checks it), so it cannot reproduce an artifact's
    narrower saturating or wrapping membrane: refused, naming the setting."""
    for overflow in ("saturate", "wrap"):
        with pytest.raises(ArtifactError, match=f"overflow '{overflow}'.*export for a target with overflow: error"):
            plan(golden_artifact(overflow=overflow))


@pytest.mark.serial
def test_ctrl_c_during_a_recipes_lava_check_leaves_no_output(tmp_path):
    """`hwtune run` of a recipe whose deploy runs Lava: a Ctrl-C to the process group during the Lava
    check exits 130, leaves no --out (nor its temporary directory) and no Lava worker."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path
    model = Path(__file__).resolve().parents[1] / "docs/results/robustness-ci/models/28ee4dd0b469/model"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: r\nseed: 0\ndataset: digits\ntarget: loihi2\nout: {tmp_path / 'out'}\n"
                      f"model: {{load: {model}}}\npasses: []\ndeploy: {{backend_samples: 360}}\n")
    proc = subprocess.Popen([sys.executable, "-m", "hwtune.cli", "run", str(recipe), "-q"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while len(_group_members(proc.pid)) < 3 and time.monotonic() < deadline:   # Lava's workers are up
        time.sleep(0.2)
    time.sleep(1)
    assert proc.poll() is None and len(_group_members(proc.pid)) >= 3, proc.communicate()
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err[-3000:]
    time.sleep(0.5)
    assert _group_members(proc.pid) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.yaml"]


def test_api_run_lava_checks_hardware_before_any_work():
    import hwtune
    from hwtune.backends.lava.run import HardwareUnavailable
    x = np.array([[0.75, 0.25]])
    with pytest.raises(TypeError, match="hardware must be True or False, got 'yes'"):
        hwtune.run_lava(golden_artifact(), x, hardware="yes")
    if not hardware_available():
        with pytest.raises(HardwareUnavailable, match="lava-loihi"):
            hwtune.run_lava(golden_artifact(), x, hardware=True)


@pytest.mark.parametrize("guard", [[1, 2, 3], {"ranges": {"hidden": [5, 9]}}, {"ranges": {"nope": [-1, 1]}},
                                   {"ranges": {"hidden": [-1.5, 2]}}, {"ranges": {"hidden": [-1, True]}}])
def test_a_malformed_lava_guard_in_an_artifact_is_refused(guard):
    """meta.lava_guard comes from a file: anything but integer ranges lo <= 0 <= hi of hidden layers
    is refused before a build, naming the key."""
    a = golden_artifact()
    a.meta["lava_guard"] = guard
    with pytest.raises(ArtifactError, match="meta.lava_guard: expected"):
        plan(a)


def test_clock_integers_split_into_weight_digits_by_hand():
    """numerics.weight_digits: x = low + 128 sum_r high_r, low in [0, 128), |high_r| <= 127; the
    period is the power of two that holds the longest a layer is busy (numerics.stock_busy_steps: the
    golden case's hidden layer R = 1 .. F + T' + 1 = 10, the read-out 6 .. 10)."""
    from hwtune import numerics
    low, high = numerics.weight_digits(np.array([0, 127, 128, -1, 300, 16256, 16257, -16385]))
    assert low.tolist() == [0, 127, 0, 127, 44, 0, 1, 127]
    assert high.tolist() == [[0, 0], [0, 0], [1, 0], [-1, 0], [2, 0], [127, 0], [127, 0], [-127, -2]]
    assert numerics.weight_digits(np.array([5]))[1].shape == (1, 1)
    assert [numerics.power_of_two_above(n) for n in (0, 1, 7, 8, 100)] == [1, 2, 8, 16, 128]
    assert [numerics.stock_busy_steps(4, 4), numerics.stock_busy_steps(4, 0)] == [10, 5]
