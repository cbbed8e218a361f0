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
