"""--force replaces only what hwtune wrote (the manifest written with each output): a directory
that merely holds a file with hwtune's name, or an earlier output into which someone put a file,
is refused, naming the foreign files, and nothing is deleted."""
import json
import shutil

import pytest

from hwtune import io
from hwtune.artifact import JSON_FILE
from hwtune.atomic import MANIFEST
from hwtune.cli import main
from hwtune.sweep import FORMAT

TRAIN = ["train", "--arch", "fc-small", "--epochs", "1", "--train-samples", "64", "-q"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    out = tmp_path_factory.mktemp("force") / "m"
    assert main(TRAIN + ["-o", str(out)]) == 0
    return out


def test_an_output_lists_its_files_in_a_manifest(model):
    assert sorted(json.loads((model / MANIFEST).read_text())["files"]) == sorted(
        p.name for p in model.iterdir() if p.name != MANIFEST)


@pytest.mark.parametrize("marker", [io.CONFIG, "results.json", JSON_FILE])
def test_force_refuses_a_directory_that_merely_holds_a_file_with_hwtunes_name(tmp_path, capsys, marker):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    (mine / marker).write_text("{}")
    argv = {io.CONFIG: TRAIN + ["-o", str(mine), "--force"],
            "results.json": ["run", "recipes/quickstart.yaml", "--out", str(mine), "--force", "-q"],
            JSON_FILE: ["export", str(tmp_path / "none"), "-o", str(mine), "--force", "-q"]}[marker]
    if marker == JSON_FILE:
        assert main(TRAIN + ["-o", str(tmp_path / "none")]) == 0
        assert main(["quantize", str(tmp_path / "none"), "--bits", "4", "--steps", "8", "--epochs", "0", "-q",
                     "-o", str(tmp_path / "q")]) == 0
        argv[1] = str(tmp_path / "q")
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert "hwtune did not write" in err and "thesis.tex" in err
    assert (mine / "thesis.tex").read_text() == "years of work"


def test_force_refuses_an_earlier_model_into_which_someone_put_a_file(model, tmp_path, capsys):
    out = tmp_path / "m"
    shutil.copytree(model, out)
    (out / "notes.txt").write_text("mine")
    assert main(TRAIN + ["-o", str(out), "--force"]) == 3
    assert "notes.txt" in capsys.readouterr().err and (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    assert main(TRAIN + ["-o", str(out), "--force"]) == 0      # hwtune's own files only: replaced


@pytest.fixture
def sweep_dir_with_my_files(tmp_path):
    """A sweep directory (its manifest marks it) into which someone put a report and a points.csv."""
    out = tmp_path / "sweep"
    out.mkdir()
    for name in ("points.jsonl", "sweep.json"):
        shutil.copy(f"docs/results/robustness-ci/{name}", out / name)
    (out / MANIFEST).write_text(json.dumps({"format": FORMAT, "files": ["sweep.json"]}))
    (out / "report.md").write_text("my report")
    (out / "points.csv").write_text("my,points")
    return out


def test_sweep_and_report_refuse_to_overwrite_a_users_report_and_points(sweep_dir_with_my_files, capsys):
    out = sweep_dir_with_my_files
    assert main(["sweep", "recipes/robustness-ci.yaml", "--out", str(out), "-q"]) == 3
    assert "which hwtune did not write" in capsys.readouterr().err
    assert main(["report", str(out), "-q"]) == 3
    assert "report.md" in capsys.readouterr().err
    assert (out / "report.md").read_text() == "my report" and (out / "points.csv").read_text() == "my,points"


def test_report_rewrites_its_own_report(tmp_path):
    out = tmp_path / "sweep"
    shutil.copytree("docs/results/robustness-ci", out)
    (out / "report.md").write_text("stale")
    assert main(["report", str(out), "-q"]) == 0
    assert (out / "report.md").read_text().startswith("# Sweep")
