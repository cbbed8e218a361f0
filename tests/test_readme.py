"""The README runs as written: the CLI tour (every model ends on loihi2, Lava == emulator) and the
Python API example."""
import json
import re
import shlex
from pathlib import Path

import pytest

from hwtune.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"


def blocks(after: str, lang: str = "") -> str:
    """The first fenced code block (``` + lang) after the heading ``after``."""
    text = README.read_text().split(after, 1)[1]
    return re.search(rf"```{lang}\n(.*?)```", text, re.S).group(1)


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
