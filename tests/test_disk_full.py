"""A full disk (safetensors raises its own SafetensorError, not an OSError; numpy an OSError ENOSPC):
exit 3 with one line naming the output, no traceback, nothing left at --out."""
import errno

import pytest
from safetensors import SafetensorError

from hwtune import io
from hwtune.cli import main


@pytest.fixture
def full_disk(monkeypatch):
    def no_space(*args, **kwargs):
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                              'message: "No space left on device" })')
    monkeypatch.setattr(io, "save_file", no_space)


def test_train_on_a_full_disk_exits_3_and_leaves_nothing(tmp_path, full_disk, capsys):
    out = tmp_path / "m"
    assert main(["train", "--arch", "fc-small", "--epochs", "1", "--train-samples", "64", "-q", "-o", str(out)]) == 3
    err = capsys.readouterr().err
    assert "No space left on device" in err and str(out) in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_sweep_on_a_full_disk_exits_3_and_leaves_no_out(tmp_path, full_disk, capsys):
    recipe = tmp_path / "sweep.yaml"
    recipe.write_text("name: full\ndataset: digits\ntarget: loihi2\nmodel: {train: {arch: fc-small, epochs: 1}}\n"
                      "train_samples: 64\ngrid: {bits: [4], steps: [8]}\n")
    out = tmp_path / "out"
    assert main(["sweep", str(recipe), "--out", str(out), "-q"]) == 3
    assert "No space left on device" in capsys.readouterr().err
    assert not out.exists()


def test_an_enospc_oserror_in_a_sweep_leaves_an_emptied_out_empty(tmp_path, monkeypatch, capsys):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(io, "save_file", no_space)
    recipe = tmp_path / "sweep.yaml"
    recipe.write_text("name: full\ndataset: digits\ntarget: loihi2\nmodel: {train: {arch: fc-small, epochs: 1}}\n"
                      "train_samples: 64\ngrid: {bits: [4], steps: [8]}\n")
    out = tmp_path / "out"
    out.mkdir()
    assert main(["sweep", str(recipe), "--out", str(out), "-q"]) == 3
    assert out.is_dir() and list(out.iterdir()) == []
