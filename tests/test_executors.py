"""Sweep points on Ray (hwtune.executors): the CI sweep gives the serial records point for point,
Lava's check included; a driver killed midway leaves no Ray process behind and the rerun resumes;
a failing point is reported by id and item and the sweep goes on, or stops."""
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray

from hwtune import executors, progress
from hwtune.cli import main
from hwtune.configs import ExecutionConfig
from hwtune.errors import HwtuneError
from hwtune.sweep import read_points, run_points

RECIPE = "recipes/robustness-ci.yaml"
ROOT = Path(__file__).resolve().parent.parent
WAIT_S = 600     # bound on waiting for the killed driver's first point (a busy 2-core machine)


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray instance of 2 CPUs for this module: the executor uses it instead of starting one.
    Its workers cannot import this test module: its point functions travel by value."""
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def by_id(out: Path) -> dict:
    return {r["id"]: r for r in read_points(out)}


def fresh_sweep_dir(ci_sweep, dest: Path) -> Path:
    """A copy of the serial CI sweep directory without its points: the cached base model is reused
    (not retrained), every point runs again."""
    code, out = ci_sweep
    assert code == 0 and len(read_points(out)) == 8
    shutil.copytree(out, dest, ignore=shutil.ignore_patterns("points.*", "report.md", "*.png"))
    return dest


def test_ray_sweep_equals_serial(ci_sweep, ray_cluster, tmp_path):
    out = fresh_sweep_dir(ci_sweep, tmp_path / "ray")
    assert main(["sweep", RECIPE, "--executor", "ray", "--out", str(out), "-q"]) == 0
    serial, on_ray = by_id(ci_sweep[1]), by_id(out)
    assert len(on_ray) == len(read_points(out)) == 8
    assert on_ray == serial          # every field of every point: accuracies, spikes, Lava's check
    assert [r["backend_identical"] for r in on_ray.values() if r["jitter"] == 0] == [10] * 4  # Lava in Ray workers
    assert json.loads((out / "sweep.json").read_text())["execution"]["executor"] == "ray"


def _state_and_parent(pid: int) -> tuple[str, int] | None:
    """A process's state letter and parent pid (/proc/PID/stat), None once it is gone."""
    try:
        state, ppid = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[:2]
    except (OSError, ValueError):
        return None
    return state, int(ppid)


def _alive(pids) -> set[int]:
    return {pid for pid in pids if (_state_and_parent(pid) or ("Z",))[0] != "Z"}


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid``."""
    children = {}
    for entry in Path("/proc").glob("[0-9]*"):
        info = _state_and_parent(int(entry.name))
        if info and info[0] != "Z":
            children.setdefault(info[1], []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        below = children.get(todo.pop(), [])
        found.update(below)
        todo.extend(below)
    return found


def test_killed_ray_driver_leaves_nothing_and_the_rerun_resumes(ci_sweep, ray_cluster, tmp_path, capsys):
    out = fresh_sweep_dir(ci_sweep, tmp_path / "killed")
    with open(tmp_path / "driver.log", "w") as log:
        driver = subprocess.Popen([sys.executable, "-m", "hwtune.cli", "sweep", RECIPE, "--executor", "ray",
                                   "--workers", "2", "--out", str(out), "-q"], cwd=ROOT, stdout=log, stderr=log,
                                  start_new_session=True)
    try:
        deadline = time.monotonic() + WAIT_S
        while not read_points(out):
            assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no point finished in time"
            time.sleep(0.2)
        ray_processes = _descendants(driver.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):      # the driver, GCS and raylet: its process group
            os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    assert len(ray_processes) >= 4                          # GCS, raylet, agents, workers (and Lava's)
    deadline = time.monotonic() + 30                        # the workers (process groups of their own) follow
    while _alive(ray_processes) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(ray_processes)
    finished = len(read_points(out))
    assert 1 <= finished < 8
    capsys.readouterr()
    assert main(["sweep", RECIPE, "--executor", "ray", "--out", str(out)]) == 0
    assert f"skipped {finished} finished point(s)" in capsys.readouterr().err
    records = read_points(out)
    assert len(records) == 8 and by_id(out) == by_id(ci_sweep[1])   # each point once, as if never interrupted


def _failing_at_2(shared: dict, item: int) -> dict:
    """A point function: item 2 fails as a user error would; the others take ``shared['sleep_s']``
    seconds and leave a file in ``shared['marks']``."""
    if item == 2:
        raise HwtuneError("no chip holds this point")
    time.sleep(shared["sleep_s"])
    (shared["marks"] / f"p{item}").touch()
    return {"id": f"p{item}", "value": 10 * item}


def _buggy(shared: dict, item: int) -> dict:
    return {"id": str(item), "value": 1 // 0}


@pytest.fixture(params=["serial", "ray"])
def executor(request):
    if request.param == "ray":
        request.getfixturevalue("ray_cluster")
    return request.param


def test_a_failing_point_is_reported_and_the_sweep_goes_on(executor, tmp_path, capsys):
    progress.set_quiet(False)
    items = [1, 2, 3]
    failures = run_points(tmp_path, _failing_at_2, {"sleep_s": 0, "marks": tmp_path}, items, [f"p{i}" for i in items],
                          ExecutionConfig(executor=executor, on_error="continue"), "test")
    assert failures == [{"id": "p2", "item": 2, "error": "no chip holds this point"}]
    assert sorted(r["value"] for r in read_points(tmp_path)) == [10, 30]
    assert "sweep: point p2 2 failed: no chip holds this point" in capsys.readouterr().err


def test_a_failing_point_stops_the_sweep(executor, tmp_path):
    items = [2, 1, 3, 4, 5, 6, 7, 8]          # the failing point first: on Ray the others are pending or running
    marks = tmp_path / "marks"
    marks.mkdir()
    with pytest.raises(HwtuneError, match="^point 2: no chip holds this point$") as e:
        run_points(tmp_path, _failing_at_2, {"sleep_s": 0.5, "marks": marks}, items, [f"p{i}" for i in items],
                   ExecutionConfig(executor=executor, on_error="stop"), "test")
    assert e.value.exit_code == 3 and read_points(tmp_path) == []
    if executor == "ray":
        time.sleep(2.5)                        # uncancelled, the 7 other points would all finish by now (2 CPUs)
    assert len(list(marks.iterdir())) <= (0 if executor == "serial" else 1)


def test_a_bug_in_a_point_is_not_taken_for_a_failed_point(executor, tmp_path):
    with pytest.raises(ZeroDivisionError):
        run_points(tmp_path, _buggy, {}, [1], ["1"], ExecutionConfig(executor=executor, on_error="continue"), "test")


def test_a_cluster_that_refuses_the_driver_is_a_clear_error(monkeypatch):
    def refuse(**settings):
        raise ConnectionError("Failed to connect to GCS. Last connection error: Traceback (most recent call last):\n"
                              "ray.exceptions.AuthenticationError: token is missing\n")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises(HwtuneError, match="^cannot connect to the Ray cluster at head:6379: "
                                          "ray.exceptions.AuthenticationError: token is missing$"):
        list(executors.run("ray", _buggy, {}, [1], address="head:6379"))


def test_an_unreachable_ray_address_fails_within_seconds_naming_it_before_any_work(tmp_path, capsys):
    import time
    start = time.monotonic()
    out = tmp_path / "never"
    assert main(["sweep", RECIPE, "--executor", "ray", "--address", "127.0.0.1:1", "--out", str(out), "-q"]) == 3
    assert time.monotonic() - start < 20
    assert "cannot connect to the Ray cluster at 127.0.0.1:1" in capsys.readouterr().err
    assert not out.exists()
