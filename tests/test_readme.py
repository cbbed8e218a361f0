"""The README runs as written: the first hour (a user's own net and data, and what each command
prints), the CLI tour (every model ends on loihi2, Lava == emulator), the Loihi 2 block (the VGG's
training aside) and the Python API example."""
import gzip
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from hwtune.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"


def blocks(after: str, lang: str = "") -> str:
    """The first fenced code block (``` + lang) after the heading ``after``."""
    text = README.read_text().split(after, 1)[1]
    return re.search(rf"```{lang}\n(.*?)```", text, re.S).group(1)


def section_blocks(heading: str) -> list[tuple[str, str]]:
    """Every fenced block (language, text) of the README section under ``heading``, in order."""
    text = README.read_text().split(heading + "\n", 1)[1]
    text = re.split(r"(?m)^#{2,3} ", text, maxsplit=1)[0]
    return re.findall(r"```(\w*)\n(.*?)```", text, re.S)


def commands(block: str) -> list[str]:
    """The command lines of a shell block, comments cut off."""
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def shape(line: str) -> str:
    """A printed line with its numbers masked and its spacing collapsed: what stays the same when a
    float-trained net moves by a test image on another CPU."""
    return " ".join(re.sub(r"\d+(?:[.,]\d+)*", "#", line).split())


def test_the_tour_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    lines = [line.split("  #")[0].strip() for line in blocks("## A tour of the CLI").splitlines() if line.strip()]
    assert len(lines) == 10 and all(line.startswith("hwtune ") for line in lines)
    for line in lines:
        capsys.readouterr()
        assert main(shlex.split(line)[1:] + ["-q"]) == 0, line
    assert "Lava == emulator spike for spike on 20/20 samples" in capsys.readouterr().out
    for model in ("fc-w4", "fc-w4-noise", "fc-w4-noise-t8"):
        assert json.loads((tmp_path / "runs" / model / "hwtune.json").read_text())["target"]["name"] == "loihi2"
    artifact = json.loads((tmp_path / "runs/fc-w4-noise-t8.loihi2/artifact.json").read_text())
    assert artifact["meta"]["target"]["name"] == "loihi2" and artifact["meta"]["resources"]["total"]["cores"] >= 2


def test_the_first_hour_runs_as_written_and_prints_what_it_shows(tmp_path, monkeypatch, capsys):
    """The user's net (mynet.py) and data (prepare.py) as the README gives them, then each command as
    written; what each prints (stderr's notes, then stdout) has the lines the README shows, numbers aside."""
    monkeypatch.chdir(tmp_path)
    (net, mynet), (prep, prepare), (shell, lines), (text, printed) = section_blocks(
        "### Your own net and your own data, end to end")
    assert (net, prep, shell, text) == ("python", "python", "", "text")
    (tmp_path / "mynet.py").write_text(mynet)
    (tmp_path / "prepare.py").write_text(prepare)
    lines = commands(lines)
    assert lines[0] == "python prepare.py" and all(line.startswith("hwtune ") for line in lines[1:])
    subprocess.run([sys.executable, "prepare.py"], cwd=tmp_path, check=True, timeout=600)
    shown = {}
    for chunk in printed.split("$ ")[1:]:
        command, *out = chunk.rstrip("\n").split("\n")
        shown[command] = out
    assert list(shown) == lines[1:]
    monkeypatch.syspath_prepend(str(tmp_path))          # a fresh `mynet` for this test's directory
    sys.modules.pop("mynet", None)
    for line in lines[1:]:
        capsys.readouterr()
        assert main(shlex.split(line)[1:]) == 0, line
        said = capsys.readouterr()
        got = (said.err + said.out).replace(str(tmp_path.resolve()), "/home/you/first-hour").splitlines()
        assert [shape(x) for x in got] == [shape(x) for x in shown[line]], (line, got)
    info = json.loads((tmp_path / "runs/make_net-ttfs-w4/hwtune.json").read_text())
    assert [p["pass"] for p in info["history"]] == ["convert", "quantize"] and info["target"]["name"] == "loihi2"


def fashion_slice(directory: Path, train: int, test: int) -> None:
    """The first ``train`` / ``test`` images of the installed Fashion-MNIST as IDX files in ``directory``."""
    from hwtune.data import FASHION_DIR, read_idx
    directory.mkdir()
    for stem, n in (("train-images-idx3-ubyte", train), ("train-labels-idx1-ubyte", train),
                    ("t10k-images-idx3-ubyte", test), ("t10k-labels-idx1-ubyte", test)):
        a = read_idx(Path(FASHION_DIR) / f"{stem}.gz")[:n]
        header = (0x803 if a.ndim == 3 else 0x801).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in a.shape)
        (directory / f"{stem}.gz").write_bytes(gzip.compress(header + a.tobytes()))


def test_the_loihi2_block_runs_as_written(tmp_path, monkeypatch, capsys):
    """Every line of the Loihi 2 block but the VGG's 2-hour training, as written, on a stand-in for
    the VGG (fc-small trained briefly: a VGG-sized net takes Lava minutes per 100 samples) and the
    first 2,000 / 40 Fashion-MNIST images (HWTUNE_DATA points at them, as the Data section says; so
    `lava-run --samples 100` runs the 40 test images there are)."""
    monkeypatch.chdir(tmp_path)
    fashion_slice(tmp_path / "fashion", 2000, 40)
    monkeypatch.setenv("HWTUNE_DATA", str(tmp_path / "fashion"))
    (_, block), = [b for b in section_blocks("## Loihi 2: what runs on the chip") if b[0] == ""]
    train, *lines = commands(block)
    assert train.startswith("hwtune train --arch vgg --dataset fashion-mnist") and train.endswith("-o runs/fmnist-vgg")
    assert main(["train", "--arch", "fc-small", "--dataset", "fashion-mnist", "--epochs", "0.5", "--batch-size", "64",
                 "-o", "runs/fmnist-vgg", "-q"]) == 0
    hardware = lines.pop()
    for line in lines:
        capsys.readouterr()
        assert main(shlex.split(line)[1:]) == 0, line
    result = json.loads(capsys.readouterr().out)
    assert result["identical_spike_for_spike"] == result["samples"] == 40 and result["max_spikes_per_neuron"] == 1
    artifact = json.loads((tmp_path / "runs/fmnist-vgg-w4.loihi2/artifact.json").read_text())
    assert artifact["meta"]["lava_guard"]["source"] == "fashion-mnist train[:1000]" and artifact["weight_bits"] == 4
    from hwtune.backends.lava.run import hardware_available
    assert hardware.endswith("--hardware") and main(shlex.split(hardware)[1:]) == (0 if hardware_available() else 3)


def test_the_python_api_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks("## Python API", "python"), "README.md", "exec"), {})
    out = capsys.readouterr().out
    quantized, emulated = (float(x) for x in re.findall(r"([\d.]+) %", out))
    assert quantized == pytest.approx(emulated) and quantized > 80
    assert (tmp_path / "runs/api-fc-w4/hwtune.json").exists()


def test_the_readme_warns_that_convert_module_function_runs_user_code():
    prose = README.read_text().split("## Python API", 1)[1].split("## Scaling out", 1)[0]
    assert "Warning:** `convert module:function` imports" in prose and "working directory first on `sys.path`" in prose
