"""Robustness studies (hwtune.study): validated before training; three arms per seed evaluated on
held-out devices; torch == emulator under the same draws; a report with error bars; resumable."""
import json

import pytest
import yaml

from hwtune.cli import main
from hwtune.recipes import RecipeError
from hwtune.study import parse_study, summarize

RECIPE = "recipes/robustness-study-ci.yaml"


@pytest.fixture(scope="module")
def study_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "ci"
    code = main(["sweep", RECIPE, "--out", str(out), "-q"])
    return code, out


def test_study_runs_every_arm_on_held_out_devices(study_run):
    code, out = study_run
    assert code == 0
    records = [json.loads(line) for line in (out / "points.jsonl").read_text().splitlines()]
    assert [r["seed"] for r in records] == [0, 1]
    for r in records:
        for name, study in r["studies"].items():
            assert set(study["curves"]) == {"plain", "control", "noise-aware"}
            for arm in study["curves"].values():
                clean, noisy = arm
                assert clean["level"] == 0 and len(noisy["accuracies"]) == 2   # two held-out devices
                assert noisy["accuracy"] < clean["accuracy"]                    # the noise costs something
            # the emulator, fed the same held-out devices and trial draws, gets the torch accuracy exactly
            assert study["check"]["torch"] == study["check"]["emulator"]
    summary = json.loads((out / "sweep.json").read_text())
    rows = summary["summaries"]["jitter"]
    assert [r["level"] for r in rows] == [0.0, 0.5] and rows[1]["control_loss"] > 0.05
    assert summary["provenance"]["machine"]["cores"] >= 1 and summary["execution"]["threads"] == 1
    report = (out / "report.md").read_text()
    assert "Seeds [0, 1]; every accuracy" in report
    assert "## weight mismatch (noise-aware arm trained at weight mismatch 0.5)" in report and (out / "robustness_jitter.png").stat().st_size > 10_000


def test_summary_arithmetic_by_hand():
    def curve(values):
        return {arm: [{"level": lv, "accuracy": a} for lv, a in zip((0.0, 0.3), values[arm])] for arm in values}
    records = [{"studies": {"j": {"curves": curve({"plain": (0.90, 0.80), "control": (0.92, 0.80),
                                                  "noise-aware": (0.91, 0.86)})}}},
               {"studies": {"j": {"curves": curve({"plain": (0.90, 0.82), "control": (0.92, 0.82),
                                                  "noise-aware": (0.91, 0.86)})}}}]
    row = summarize(records, "j")[1]
    assert row["control_loss"] == pytest.approx(0.11) and row["recovered"] == pytest.approx(0.05)
    assert row["recovery_ratio"] == pytest.approx(0.05 / 0.11) and row["recovered_std"] == pytest.approx(0.01414, 1e-3)
    assert row["beyond_2_std"] and row["plain_loss"] == pytest.approx(0.09)
    small = [{"studies": {"j": {"curves": curve({"plain": (0.90, 0.89), "control": (0.92, 0.915),
                                                "noise-aware": (0.91, 0.90)})}}}] * 2
    assert summarize(small, "j")[1]["recovery_ratio"] is None        # a 0.5-point loss: no ratio


def test_rerun_resumes(study_run, capsys):
    _, out = study_run
    assert main(["sweep", RECIPE, "--out", str(out)]) == 0
    assert "skipped 2 finished point(s)" in capsys.readouterr().err


@pytest.mark.parametrize("change, message", [
    (lambda r: r.pop("studies"), "studies must be a non-empty list"),
    (lambda r: r["studies"][0].update(train={"jitter": 0}), "needs some noise to train under"),
    (lambda r: r["studies"][0].update(eval={"jitter": [0.1], "weight_mismatch": [0.1]}), "eval maps one noise setting"),
    (lambda r: r["studies"][0].update(eval={"jitter": [0.1, -1]}), "jitter = -1 must be a number in [0, 100]"),
    (lambda r: r["studies"][1].update(name="jitter"), "a name appears twice"),
    (lambda r: r.update(seeds=[0, 0]), "seeds lists a seed twice"),
    (lambda r: r.update(seeds=[1.5]), "seeds = 1.5 must be an integer"),
    (lambda r: r.update(devices=0), "devices = 0 must be an integer in [1, 1000]"),
    (lambda r: r["quantize"].update(bits=12), "12-bit weights: target loihi2 holds 2..8"),
    (lambda r: r["finetune"].update(lr=-1), "finetune: lr = -1"),
    (lambda r: r.update(execution={"executor": "mpi"}), "execution: executor = 'mpi' must be one of"),
    (lambda r: r.update(window_search="yes"), "window_search = 'yes' must be true or false"),
])
def test_every_study_setting_is_checked_before_training(change, message):
    recipe = yaml.safe_load(open(RECIPE))
    change(recipe)
    with pytest.raises(RecipeError) as e:
        parse_study(recipe, "recipes/x.yaml")
    assert message in str(e.value) and "recipes/x.yaml" in str(e.value)


def test_levels_without_0_still_measure_clean():
    """The losses are clean minus noisy accuracy: a study listing only noisy levels gets level 0 added
    (the CI study's jitter lists [0.5]); its lowest listed level is never taken as clean."""
    recipe = yaml.safe_load(open(RECIPE))
    recipe["studies"][0]["eval"] = {"jitter": [0.3, 0.1]}
    study = parse_study(recipe, RECIPE)
    assert study.studies[0].levels == [0.0, 0.1, 0.3]
    assert parse_study(yaml.safe_load(open(RECIPE)), RECIPE).studies[0].levels == [0.0, 0.5]


def test_point_ids_of_studies_without_window_search_are_unchanged():
    """Ids (hence resume of committed studies) predate window_search: computed by the code before it."""
    from hwtune.study import point_id
    study = parse_study(yaml.safe_load(open(RECIPE)), RECIPE)
    assert [point_id(study, s) for s in study.seeds] == ["407da08b867c", "682dd276075e"]
    searched = parse_study({**yaml.safe_load(open(RECIPE)), "window_search": True}, RECIPE)
    assert searched.window_search and point_id(searched, 0) != "407da08b867c"
