"""Stop signals: SIGTERM stops like Ctrl-C everywhere (also where a Ctrl-C is held back), at any
moment of start-up and training exit 130 with no output, and a second signal does not kill the clean-up."""
import os
import signal
import subprocess
import sys
import time

import pytest

from hwtune.interrupts import sigint_deferred


class _Stopped(Exception):
    pass


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_is_held_back_over_the_block_and_delivered_after(sig):
    def stop(signum, frame):
        raise _Stopped(signum)

    previous = signal.signal(sig, stop)
    try:
        with pytest.raises(_Stopped):
            with sigint_deferred():
                os.kill(os.getpid(), sig)
                time.sleep(0.05)
                reached_end_of_block = True
        assert reached_end_of_block
    finally:
        signal.signal(sig, previous)


def _train(out, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "hwtune.cli", "train", "--arch", "fc-small", "--epochs", "300",
                             "--train-samples", "256", "-q", "-o", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_at_any_start_up_offset_exits_130_and_writes_nothing(tmp_path, sig):
    # from 0.6 s (before: Python itself starts, no hwtune code has run); ~1-2 s: torch import; ~2-4 s:
    # torch._dynamo's lazy import (Adam), training
    for n, offset in enumerate((0.6, 1.0, 1.4, 2.0, 2.6, 3.4, 4.5)):
        out = tmp_path / f"m{n}"
        proc = _train(out)
        time.sleep(offset)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, (offset, proc.returncode, err[-2000:])
        assert "Traceback" not in err, (offset, err[-2000:])
        assert not out.exists() and not any(p.name.startswith(f".m{n}") for p in tmp_path.iterdir()), offset


def test_a_second_ctrl_c_after_the_first_does_not_kill_the_clean_up(tmp_path):
    for n, offset in enumerate((2.5, 4.0)):
        out = tmp_path / f"m{n}"
        proc = _train(out)
        time.sleep(offset)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, (offset, proc.returncode, err[-2000:])
        assert "interrupted" in err and "Traceback" not in err
        assert not out.exists()


def test_a_signal_once_the_output_is_committed_leaves_it_complete_and_exits_0(tmp_path):
    """The commit (the rename of the finished -o) ends the command: a stop signal from then on
    neither kills it nor leaves a half-reported result; the output is complete, exit 0."""
    import json
    for n, sig in enumerate((signal.SIGINT, signal.SIGTERM)):
        out = tmp_path / f"m{n}"
        proc = subprocess.Popen([sys.executable, "-m", "hwtune.cli", "train", "--arch", "fc-small", "--epochs", "1",
                                 "--train-samples", "64", "-q", "-o", str(out)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        while not out.exists() and proc.poll() is None:
            time.sleep(0.001)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, (sig, proc.returncode, err[-2000:])
        files = json.loads((out / ".hwtune-files.json").read_text())["files"]
        assert {"hwtune.json", "model.safetensors"} <= set(files) and all((out / f).is_file() for f in files)


def test_the_final_commit_ignores_stop_signals_and_a_failed_one_restores_them(tmp_path):
    """interrupts.committing: around the rename of the final output a Ctrl-C does not interrupt, and
    signals stay ignored once it succeeds; a rename that fails puts the handlers back; any other
    path is not affected."""
    from hwtune.interrupts import committing, set_final_output
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        set_final_output(tmp_path / "out")
        with committing(tmp_path / "other"):
            assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with pytest.raises(OSError):
            with committing(tmp_path / "out"):
                assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
                raise OSError("disk full")
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with committing(tmp_path / "out"):
            os.kill(os.getpid(), signal.SIGINT)       # would raise KeyboardInterrupt here
            time.sleep(0.05)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        set_final_output(None)
        signal.signal(signal.SIGINT, previous)
