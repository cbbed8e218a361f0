"""The CI robustness sweep: it runs inside the test suite, its floors hold, a broken floor fails
the command, an interrupted sweep resumes, and a malformed sweep fails before any training."""
import json
import runpy
import shutil

import pytest
import yaml

from hwtune.cli import main
from hwtune.errors import HwtuneError
from hwtune.recipes import RecipeError
from hwtune.study import load_sweep
from hwtune.sweep import base_dir, broken_floors, parse_sweep, point_id, read_points

RECIPE = "recipes/robustness-ci.yaml"


def test_ci_sweep_holds_its_floors(ci_sweep):
    code, out = ci_sweep
    records = read_points(out)
    assert code == 0
    assert len(records) == 8 and len({r["id"] for r in records}) == 8
    for r in records:
        if r["jitter"] == 0:
            assert r["torch_emulator_agreement"] == 1.0 and r["accuracy_emulator"] == r["accuracy_torch"]
            assert r["backend_identical"] == r["backend_samples"] == 10
    assert broken_floors(load_sweep(RECIPE), records) == []
    assert (out / "points.csv").read_text().count("\n") == 9
    report = (out / "report.md").read_text()
    assert "accuracy_vs_bits.png" in report and (out / "accuracy_vs_bits.png").stat().st_size > 10_000


def test_broken_floor_fails_the_command(ci_sweep, tmp_path, capsys):
    _, out = ci_sweep
    recipe = yaml.safe_load(open(RECIPE))
    recipe["floors"][0]["min_relative_to_float"] = 0.5  # 50 points above float: impossible
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(recipe))
    shutil.copytree(out, tmp_path / "copy")  # finished points: nothing is recomputed
    assert main(["sweep", str(path), "--out", str(tmp_path / "copy")]) == 1
    said = capsys.readouterr()
    assert "BROKEN FLOOR" in said.err and "accuracy_torch" in said.err
    assert "floors: 2 of 3 held (BROKEN FLOOR lines above)" in said.out
    assert len(broken_floors(load_sweep(path), read_points(tmp_path / "copy"))) == 1


def test_rerun_resumes_without_recomputing(ci_sweep, tmp_path, capsys):
    out = shutil.copytree(ci_sweep[1], tmp_path / "ci")      # the session's sweep stays as it is
    before = (out / "points.jsonl").read_text()
    partial = "\n".join(before.splitlines()[:5]) + "\n"   # as if interrupted after 5 points
    (out / "points.jsonl").write_text(partial)
    assert main(["sweep", RECIPE, "--out", str(out)]) == 0
    said = capsys.readouterr()
    assert "skipped 5 finished point(s)" in said.err and "floors: 3 of 3 held\n" in said.out
    after = (out / "points.jsonl").read_text().splitlines()
    assert after[:5] == partial.splitlines() and len(after) == 8
    assert sorted(json.loads(line)["id"] for line in after) == sorted(json.loads(line)["id"]
                                                                      for line in before.splitlines())


@pytest.mark.parametrize("change,message", [
    (lambda r: r["grid"].update(bits=[12]), "12-bit weights: target loihi2 holds 2..8"),
    (lambda r: r["grid"].update(colour=[1]), "grid must map axes"),
    (lambda r: r["grid"].update(jitter=[float("nan")]), "grid: jitter = nan must be a number"),
    (lambda r: r["grid"].update(jitter=[-1]), "grid: jitter = -1 must be a number in [0, 100]"),
    (lambda r: r["floors"][0].update(metric="speed"), "floors[0]: metric must be one of"),
    (lambda r: r.update(points=[{"bits": 4}]), "exactly one of 'grid' or 'points'"),
    (lambda r: r.pop("grid") and r.update(points=[{"bits": 4, "steps": -1}]), "points[0]: steps = -1"),
    (lambda r: r["grid"].update(bits=[4.7]), "grid: bits = 4.7 must be an integer in [2, 16]"),
    (lambda r: r["grid"].update(bits=[]), "grid: bits is an empty list"),
    (lambda r: r["grid"].update(bits=[4, 4]), "appears twice"),
    (lambda r: r["floors"][0]["point"].update(bits=3), "floors[0]: point {'bits': 3"),
    (lambda r: r["floors"][0].update(min_relative_to_float="high"), "floors[0]: min_relative_to_float = 'high'"),
    (lambda r: r["floors"][0]["point"].update(jitter="zero"), "floors[0]: point: jitter = 'zero'"),
    (lambda r: r["finetune"].update(lr=0), "finetune: lr = 0 must be a number in (0, 10]"),
    (lambda r: r.update(backend_samples="ten"), "backend_samples = 'ten' must be an integer in [0, 100000]"),
    (lambda r: r.update(samples=-5), "samples = -5 must be an integer >= 1"),
    (lambda r: r.update(seed=-1), "seed = -1 must be an integer"),
    (lambda r: r.update(dataset="nope"), "dataset: name = 'nope' must be one of"),
])
def test_every_setting_is_checked_before_training(change, message):
    """A malformed sweep fails at parse time, naming the file and the key."""
    recipe = yaml.safe_load(open(RECIPE))
    change(recipe)
    with pytest.raises(RecipeError) as e:
        parse_sweep(recipe, "recipes/x.yaml")
    assert message in str(e.value) and "recipes/x.yaml" in str(e.value)


def test_results_depend_on_everything_they_are_keyed_by():
    recipe = yaml.safe_load(open(RECIPE))
    sweep = parse_sweep(recipe, RECIPE)
    other = parse_sweep({**recipe, "finetune": {"epochs": 1, "lr": 0.001}}, RECIPE)
    tuned = [p["finetune"] for p in sweep.points]
    same = [point_id(sweep, p) == point_id(other, p) for p in sweep.points]
    assert same == [not t for t in tuned]    # other fine-tuning settings: only fine-tuned points are new
    reseeded = parse_sweep({**recipe, "seed": 1}, RECIPE)
    assert base_dir(sweep) != base_dir(reseeded)   # another seed (digits split) trains its own base model
    assert base_dir(parse_sweep({**recipe, "samples": 100}, RECIPE)) == base_dir(sweep)


def test_an_interrupted_append_is_dropped_not_fatal(tmp_path, capsys):
    good = json.dumps({"id": "a"}) + "\n"
    (tmp_path / "points.jsonl").write_text(good + '{"id": "b", "bi')
    assert read_points(tmp_path) == [{"id": "a"}]
    assert "line 2 is unfinished" in capsys.readouterr().err
    (tmp_path / "points.jsonl").write_text('{"id": "b", "bi\n' + good)
    with pytest.raises(HwtuneError, match="points.jsonl: line 1 is not a JSON record"):
        read_points(tmp_path)
    (tmp_path / "points.jsonl").write_text("[1, 2]\n")
    with pytest.raises(HwtuneError, match="line 1 is not a point record"):
        read_points(tmp_path)


def test_report_and_results_table_regenerate_from_the_sweep_dir(ci_sweep, tmp_path, capsys):
    _, out = ci_sweep
    (out / "report.md").unlink()
    assert main(["report", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "accuracy vs steps per window (latency): not plotted" in report and report.count("| 8 |") == 4
    table = runpy.run_path("scripts/make_results_table.py")["table"]([out])
    rows = [line for line in table.splitlines() if line.startswith("| digits | fc-small |")]
    assert [row.split(" | ")[5] for row in rows] == ["float", "8", "4"]
    assert "– ReLU acc: the base model was trained without the ReLU twin" in table


def test_report_on_a_directory_no_sweep_wrote_says_so(tmp_path, capsys):
    (tmp_path / "fc").mkdir()
    (tmp_path / "fc" / "hwtune.json").write_text("{}")          # a model directory, say
    assert main(["report", str(tmp_path / "fc")]) == 3
    assert f"{tmp_path / 'fc'}: not a sweep directory (no hwtune manifest marks it)" in capsys.readouterr().err


def test_one_sweep_per_directory(tmp_path, capsys):
    """A second sweep into a directory another sweep is writing is refused at once (lock file)."""
    from hwtune.sweep import sweep_directory
    with sweep_directory(tmp_path / "busy"):
        assert main(["sweep", RECIPE, "--out", str(tmp_path / "busy")]) == 3
    assert "another sweep is writing there" in capsys.readouterr().err
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert main(["sweep", RECIPE, "--out", str(tmp_path / "mine")]) == 3
    assert "is not a sweep directory" in capsys.readouterr().err and (tmp_path / "mine/notes.txt").exists()
