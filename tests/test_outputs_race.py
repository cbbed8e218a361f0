"""Outputs that stay true (issue 31): an output is checked again when it is committed, concurrent
writers of one output see exactly one win, a sweep directory is hwtune's by its marker, and links
or FIFOs inside outputs are refused, never followed. Races are hit every time with hooks (a
function that runs at the moment another writer would) or barriers."""
import json
import os
import threading

import pytest

import hwtune
from hwtune import atomic, io, recipes, workflow
from hwtune.atomic import MANIFEST, OutputError, atomic_directory, check_output
from hwtune.cli import main
from hwtune.sweep import POINTS, _append_point, read_points, sweep_directory

TRAIN = ["train", "--arch", "fc-small", "--epochs", "0.2", "--train-samples", "64", "-q"]


@pytest.fixture
def recipe(tmp_path):
    """A sweep of one quick point (a refused sweep must be refused before it trains anything)."""
    path = tmp_path / "tiny.yaml"
    path.write_text("name: tiny\ndataset: digits\nmodel: {train: {arch: fc-small, epochs: 0.2}}\ntrain_samples: 64\n"
                    "samples: 60\ngrid: {bits: [4], steps: [8]}\n")
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A trained fc-small (a few steps) and its model directory."""
    root = tmp_path_factory.mktemp("race")
    assert main(TRAIN + ["-o", str(root / "m")]) == 0
    return io.load(root / "m"), root / "m"


def _during_training(monkeypatch, action):
    """Run ``action`` once, while the command trains (after its output was checked, before the commit)."""
    real = workflow.train_model

    def train_then_act(*args, **kwargs):
        result = real(*args, **kwargs)
        action()
        return result
    monkeypatch.setattr(workflow, "train_model", train_then_act)


def _kept(parent, name):
    return [p for p in parent.iterdir() if p.name.startswith(f"{name}.kept-")]


@pytest.mark.parametrize("argv,what", [(TRAIN, "model"),
                                       (["run", "recipes/quickstart.yaml", "-q", "--seed", "0"], "recipe run")])
def test_a_directory_made_while_hwtune_works_is_never_replaced(tmp_path, monkeypatch, capsys, argv, what):
    out = tmp_path / "Y4"
    if argv[0] == "run":
        recipe = tmp_path / "r.yaml"
        recipe.write_text("name: r\ndataset: digits\nmodel: {train: {arch: fc-small, epochs: 0.2}}\n"
                          "train_samples: 64\n")
        argv = ["run", str(recipe), "-q"]

    def users_files():
        out.mkdir()
        (out / "thesis.tex").write_text("years of work")
    _during_training(monkeypatch, users_files)
    assert main(argv + ["-o", str(out)]) == 3
    err = capsys.readouterr().err
    assert "appeared while hwtune worked" in err and "was kept in" in err
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"] and (out / "thesis.tex").read_text() == "years of work"
    kept, = _kept(tmp_path, "Y4")
    assert str(kept) in err and (kept / MANIFEST).is_file()      # the finished result, complete, named


def test_of_two_writers_of_a_new_output_the_second_is_refused(tiny, tmp_path, monkeypatch, capsys):
    net, _ = tiny
    out = tmp_path / "TX"
    _during_training(monkeypatch, lambda: hwtune.save(net, out))     # another train -o TX finished first
    assert main(TRAIN + ["-o", str(out), "--seed", "3"]) == 3
    assert "appeared while hwtune worked" in capsys.readouterr().err
    assert io.fingerprint(out) == io.fingerprint(tiny[1])          # the first writer's model stands


def test_of_two_forced_writers_the_second_is_refused(tiny, tmp_path, monkeypatch, capsys):
    net, _ = tiny
    out = tmp_path / "TX"
    assert main(TRAIN + ["-o", str(out), "--seed", "1"]) == 0
    _during_training(monkeypatch, lambda: hwtune.save(net, out, force=True))
    assert main(TRAIN + ["-o", str(out), "--seed", "2", "--force"]) == 3
    assert "was replaced or removed while hwtune worked" in capsys.readouterr().err
    assert io.fingerprint(out) == io.fingerprint(tiny[1])


def test_a_file_put_into_an_output_being_replaced_is_kept(tmp_path, monkeypatch, capsys):
    out = tmp_path / "TX"
    assert main(TRAIN + ["-o", str(out)]) == 0
    _during_training(monkeypatch, lambda: (out / "notes.txt").write_text("mine"))
    assert main(TRAIN + ["-o", str(out), "--force"]) == 3
    assert "files hwtune did not write appeared in it" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine" and (out / io.CONFIG).is_file()


def test_concurrent_writers_of_one_output_exactly_one_wins(tmp_path):
    out, n = tmp_path / "out", 6
    barrier, outcomes = threading.Barrier(n), []

    def writer(i):
        dest = check_output(out, "w.txt")
        try:
            with atomic_directory(dest) as tmp:
                (tmp / "w.txt").write_text(str(i))
                barrier.wait()                    # every writer commits at once
            outcomes.append(("won", i))
        except OutputError:
            outcomes.append(("refused", i))
    threads = [threading.Thread(target=writer, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [i for kind, i in outcomes if kind == "won"]
    assert len(won) == 1 and (out / "w.txt").read_text() == str(won[0])
    assert len(_kept(tmp_path, "out")) == n - 1                      # every loser's result kept, never lost


def test_replacing_an_output_deletes_only_its_listed_files(tmp_path):
    from hwtune.atomic import remove_own
    out = tmp_path / "o"
    with atomic_directory(out) as tmp:
        (tmp / "a.txt").write_text("a")
    (out / "later.txt").write_text("someone's")
    assert remove_own(out) == ["later.txt"] and (out / "later.txt").read_text() == "someone's"


# ---- sweep directories ------------------------------------------------------------------------------

def test_two_sweeps_entering_a_new_directory_at_once_never_delete_each_others_files(tmp_path):
    from hwtune.sweep import FORMAT
    for run in range(10):
        out = tmp_path / f"s{run}"
        barrier, entered, refused, release = threading.Barrier(2), [], [], threading.Event()

        def sweep():
            barrier.wait()
            try:
                with sweep_directory(out):
                    entered.append(1)
                    release.wait(10)
            except OutputError:
                refused.append(1)
                release.set()
        threads = [threading.Thread(target=sweep) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(entered) == 1 and len(refused) == 1, run
        assert json.loads((out / MANIFEST).read_text())["format"] == FORMAT and (out / ".lock").is_file(), run


def test_a_sweep_that_loses_the_creation_race_leaves_the_winner_alone(tmp_path, monkeypatch):
    out = tmp_path / "s"
    real, holding, done = atomic.rename_noreplace, threading.Event(), threading.Event()

    def winner():
        with sweep_directory(out):
            (out / "points.jsonl").write_text('{"id": "a"}\n')
            holding.set()
            done.wait(10)

    def rename_after_the_winner(src, dst):
        if dst == out and not holding.is_set() and threading.current_thread() is threading.main_thread():
            threading.Thread(target=winner).start()
            holding.wait(10)
        return real(src, dst)
    monkeypatch.setattr(atomic, "rename_noreplace", rename_after_the_winner)
    try:
        with pytest.raises(OutputError, match="another sweep is writing there"):
            with sweep_directory(out):
                pass
        assert sorted(os.listdir(out)) == [".hwtune-files.json", ".lock", "points.jsonl"]
    finally:
        done.set()


@pytest.mark.parametrize("name", ["points.jsonl", ".lock"])
def test_a_users_directory_with_a_sweeps_file_name_is_not_a_sweep_directory(tmp_path, capsys, recipe, name):
    mine = tmp_path / "U1"
    mine.mkdir()
    (mine / name).write_text('{"id": "x"}\n{"id": "unfinished')
    before = (mine / name).read_text()
    assert main(["sweep", str(recipe), "--out", str(mine), "-q"]) == 3
    assert "not an hwtune sweep" in capsys.readouterr().err
    assert os.listdir(mine) == [name] and (mine / name).read_text() == before
    assert main(["report", str(mine), "-q"]) == 3
    assert "not a sweep directory" in capsys.readouterr().err and os.listdir(mine) == [name]


# ---- links and FIFOs inside outputs ----------------------------------------------------------------

@pytest.fixture
def sweep_dir(tmp_path):
    """A copy of the committed CI sweep directory (a sweep directory of hwtune 0.3: its manifest lists sweep.json)."""
    import shutil
    out = tmp_path / "S"
    shutil.copytree("docs/results/robustness-ci", out, ignore=shutil.ignore_patterns("models"))
    return out


def test_a_lock_that_is_a_link_is_refused_not_truncated(sweep_dir, tmp_path, capsys, recipe):
    victim = tmp_path / "v3.txt"
    victim.write_text("mine")
    (sweep_dir / ".lock").symlink_to(victim)
    assert main(["sweep", str(recipe), "--out", str(sweep_dir), "-q"]) == 3
    assert "symbolic link" in capsys.readouterr().err and victim.read_text() == "mine"


@pytest.mark.parametrize("dangling", [False, True])
def test_a_plot_that_is_a_link_is_refused_not_written_through(sweep_dir, tmp_path, capsys, dangling):
    victim = tmp_path / "v1.txt"
    if not dangling:
        victim.write_text("mine")
    (sweep_dir / "accuracy_vs_bits.png").unlink()
    (sweep_dir / "accuracy_vs_bits.png").symlink_to(victim)
    assert main(["report", str(sweep_dir), "-q"]) == 3
    assert "accuracy_vs_bits.png: is a symbolic link" in capsys.readouterr().err
    assert (victim.read_text() == "mine") if not dangling else not victim.exists()


def test_a_points_file_that_is_a_link_is_refused(sweep_dir, tmp_path):
    victim = tmp_path / "outside.jsonl"
    victim.write_text("")
    (sweep_dir / POINTS).unlink()
    (sweep_dir / POINTS).symlink_to(victim)
    with pytest.raises(hwtune.errors.HwtuneError, match="symbolic link"):
        _append_point(sweep_dir, {"id": "p"})
    with pytest.raises(hwtune.errors.HwtuneError, match="symbolic link"):
        read_points(sweep_dir)
    assert victim.read_text() == ""


def test_a_report_lists_only_the_plots_it_wrote(sweep_dir, capsys):
    assert main(["report", str(sweep_dir), "-q"]) == 0
    listed = json.loads((sweep_dir / MANIFEST).read_text())["files"]
    assert "accuracy_vs_steps.png" not in listed                # the CI sweep has one steps value: not drawn
    (sweep_dir / "accuracy_vs_steps.png").write_text("my plot")
    assert main(["report", str(sweep_dir), "-q"]) == 0
    assert (sweep_dir / "accuracy_vs_steps.png").read_text() == "my plot"


def test_a_manifest_that_is_a_link_or_a_fifo_is_refused_at_once(tmp_path):
    out = tmp_path / "m"
    with atomic_directory(out) as tmp:
        (tmp / io.CONFIG).write_text("{}")
    (out / MANIFEST).unlink()
    os.mkfifo(out / MANIFEST)
    with pytest.raises(OutputError, match="not a regular file"):
        atomic.read_manifest(out)
    (out / MANIFEST).unlink()
    (out / MANIFEST).symlink_to("/dev/zero")
    with pytest.raises(OutputError, match="symbolic link"):
        atomic.read_manifest(out)
    with pytest.raises(OutputError, match="is a symbolic link"):
        check_output(out, io.CONFIG, force=True)


def test_a_recipe_run_commits_onto_what_was_checked(tmp_path, monkeypatch):
    """run_recipe takes check_output's Destination: a destination filled meanwhile is refused."""
    out = tmp_path / "run"
    recipe = recipes.parse_recipe({"name": "r", "dataset": "digits", "train_samples": 64,
                                   "model": {"train": {"arch": "fc-small", "epochs": 0.2}}}, "r.yaml")
    _during_training(monkeypatch, lambda: (out.mkdir(), (out / "data.csv").write_text("1,2")))
    with pytest.raises(OutputError, match="appeared while hwtune worked"):
        recipes.run_recipe(recipe, out=out)
    assert os.listdir(out) == ["data.csv"]
