"""Progress on a terminal, nothing of it elsewhere: every long step of a verb draws a bar on a
terminal (training with its loss, Lava's sample loop, the guards' calibration), the bars stay on the
screen when done, and -q or a pipe shows none."""
import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import threading

import pytest

from hwtune.cli import main

HWTUNE = [sys.executable, "-m", "hwtune.cli"]


def on_a_terminal(argv: list[str], cwd) -> tuple[int, str, str]:
    """(exit code, stdout, the screen stderr leaves) of ``hwtune argv`` whose stderr is a 120-column
    terminal: each line as it ends up after its carriage returns (what a person sees at the end)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(HWTUNE + argv, cwd=cwd, stdout=subprocess.PIPE, stderr=slave,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    os.close(slave)
    chunks = []

    def drain():
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:           # every writer closed the terminal
                return
            if not data:
                return
            chunks.append(data)
    reader = threading.Thread(target=drain)
    reader.start()
    out = proc.stdout.read().decode()
    proc.wait(timeout=600)
    reader.join(timeout=60)
    os.close(master)
    text = b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")
    return proc.returncode, out, "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("progress")
    assert main(["train", "--arch", "fc-small", "--epochs", "1", "--batch-size", "16", "-o", str(root / "m"),
                 "-q"]) == 0
    assert main(["quantize", str(root / "m"), "--bits", "4", "--steps", "8", "--epochs", "0", "-o", str(root / "q"),
                 "-q"]) == 0
    return root


def test_training_shows_its_loss_and_the_bar_stays(model):
    code, out, screen = on_a_terminal(["train", "--arch", "fc-small", "--epochs", "1", "--batch-size", "16", "-o",
                                       "t"], model)
    assert code == 0 and out.startswith("train (ttfs, fc-small on digits)")
    done = [line for line in screen.splitlines() if line.startswith("train ttfs: 100%")]
    assert len(done) == 1 and "90/90" in done[0] and "loss=" in done[0], screen


def test_export_and_lava_run_show_their_progress(model):
    code, _, screen = on_a_terminal(["export", "q", "-o", "q.loihi2"], model)
    assert code == 0 and "calibrate Lava guards: 100%" in screen, screen
    code, out, screen = on_a_terminal(["lava-run", "q.loihi2", "--samples", "3"], model)
    assert code == 0 and "Lava == emulator spike for spike on 3/3 samples" in out
    assert "Lava: compiling" in screen and any(line.startswith("Lava: 100%") and "3/3" in line
                                               for line in screen.splitlines()), screen


def test_no_bar_with_quiet_or_in_a_pipe(model):
    code, _, screen = on_a_terminal(["export", "q", "-o", "quiet.loihi2", "-q"], model)
    assert code == 0 and (model / "quiet.loihi2").is_dir() and screen.strip() == "", screen
    res = subprocess.run(HWTUNE + ["export", "q", "-o", "piped.loihi2"], cwd=model, capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0 and "%|" not in res.stderr and "\r" not in res.stderr
    assert "export: the stock Loihi 2 neurons' guards sized for the potentials of digits train[:1000]" in res.stderr
