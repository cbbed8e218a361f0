"""Sweep points on Ray (hwtune.executors): a driver killed midway leaves no Ray process behind, and the
rerun resumes and gives the serial records point for point, Lava's check included;
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


def test_a_ray_sweep_killed_midway_leaves_nothing_and_its_rerun_equals_the_serial_sweep(ci_sweep, ray_cluster,
                                                                                         tmp_path, capsys):
    """The CI sweep on Ray: its driver killed once a point is written leaves no Ray process behind; the
    rerun (on Ray too) skips the written points and runs the rest; every point then equals the serial
    sweep's in every field (accuracies, spikes, Lava's check run in Ray's workers)."""
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
        driver.kill()                                       # the driver alone (issue 31: its group, before)
        driver.wait()
    assert len(ray_processes) >= 4                          # GCS, raylet, agents, workers (and Lava's)
    deadline = time.monotonic() + 15                        # Ray's agents outlived it by 60-120 s: the watchdog
    while _alive(ray_processes) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(ray_processes), [Path(f"/proc/{p}/cmdline").read_text()[:80] for p in _alive(ray_processes)]
    finished = len(read_points(out))
    assert 1 <= finished < 8
    capsys.readouterr()
    assert main(["sweep", RECIPE, "--executor", "ray", "--out", str(out)]) == 0
    assert f"skipped {finished} finished point(s)" in capsys.readouterr().err
    records = read_points(out)
    assert len(records) == 8 and by_id(out) == by_id(ci_sweep[1])   # each point once, as if never interrupted
    assert [r["backend_identical"] for r in records if r["jitter"] == 0] == [10] * 4  # Lava in Ray workers
    assert json.loads((out / "sweep.json").read_text())["execution"]["executor"] == "ray"


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


# ---- issue 31: addresses, signals and processes of a Ray sweep ---------------------------------------

TINY = ("name: tiny\ndataset: digits\ntarget: loihi2\nmodel: {train: {arch: fc-small, epochs: 0.3}}\ntrain_samples: 64\n"
        "samples: 60\nfinetune: {epochs: 3, lr: 0.001}\ngrid: {bits: [4, 6, 8], steps: [8, 16], finetune: [true]}\n")


@contextlib.contextmanager
def _listener(reply: bytes | None):
    """A loopback TCP port that accepts connections and answers ``reply`` (None: says nothing)."""
    import socket
    import threading
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held, stop = [], threading.Event()

    def serve():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            held.append(conn)
            if reply is not None:
                conn.sendall(reply)
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


@pytest.mark.parametrize("reply", [None, b"HTTP/1.0 400 Bad Request\r\n\r\n"], ids=["silent", "http1"])
def test_a_listener_that_is_not_ray_is_refused_within_seconds(reply):
    with _listener(reply) as port:
        start = time.monotonic()
        with pytest.raises(HwtuneError, match=f"cannot connect to the Ray cluster at 127.0.0.1:{port}: something "
                                              "accepts connections there but does not speak Ray's protocol"):
            executors.check_reachable(f"127.0.0.1:{port}")
        assert time.monotonic() - start < 2 * executors.CONNECT_TIMEOUT + 1


def test_a_sweep_given_a_listener_that_is_not_ray_stops_before_any_work(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY)
    with _listener(None) as port:
        start = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "hwtune.cli", "sweep", str(tmp_path / "tiny.yaml"), "--executor",
                                 "ray", "--address", f"127.0.0.1:{port}", "--out", str(tmp_path / "s"), "-q"],
                                cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 3 and "does not speak Ray's protocol" in result.stderr, result.stderr[-2000:]
    assert time.monotonic() - start < 60 and not (tmp_path / "s").exists()


def _ray_driver(tmp_path: Path) -> tuple[subprocess.Popen, set[int]]:
    """A tiny Ray sweep (a local instance of 1 CPU), returned once its raylet and agents run, with its
    processes (every descendant of the driver: GCS, raylet, agents, workers, the watchdog)."""
    (tmp_path / "tiny.yaml").write_text(TINY)
    log = open(tmp_path / "driver.log", "w")
    driver = subprocess.Popen([sys.executable, "-m", "hwtune.cli", "sweep", str(tmp_path / "tiny.yaml"), "--executor",
                               "ray", "--workers", "1", "--out", str(tmp_path / "s"), "-q"], cwd=ROOT, stdout=log,
                              stderr=log, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + WAIT_S
    while True:
        below = _descendants(driver.pid)
        names = {Path(f"/proc/{pid}/cmdline").read_text(errors="replace").split("\0")[0] for pid in _alive(below)}
        if any("DashboardAgent" in n for n in names) and any(n.endswith("raylet") for n in names):
            return driver, below
        assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "Ray did not start in time"
        time.sleep(0.2)


def test_sigterm_stops_a_ray_sweep_with_exit_130(tmp_path):
    driver, processes = _ray_driver(tmp_path)
    driver.send_signal(signal.SIGTERM)
    assert driver.wait(timeout=120) == 130, (tmp_path / "driver.log").read_text()[-3000:]
    assert "Traceback" not in (tmp_path / "driver.log").read_text()
    deadline = time.monotonic() + 30
    while _alive(processes) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(processes)


def test_the_watchdog_kills_the_drivers_ray_processes_and_nothing_else():
    """hwtune.watchdog: Ray processes the driver starts after it (a child whose command line names Ray,
    and all below it, even once orphaned) die with the driver; a child the driver had before lives."""
    from hwtune.watchdog import stat
    ray_like = "import subprocess, time; subprocess.Popen(['sleep', '120']); time.sleep(120)  # ray"
    driver = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time\n"
                               "subprocess.Popen(['sleep', '121'])\n"          # the driver's own, before the watchdog
                               "sys.stdin.readline()\n"
                               f"subprocess.Popen([sys.executable, '-c', {ray_like!r}])\n"
                               "time.sleep(120)\n"], stdin=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not _descendants(driver.pid):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    own, = _descendants(driver.pid)
    watchdog = subprocess.Popen([sys.executable, "-m", "hwtune.watchdog", f"{driver.pid}:{stat(driver.pid)[1]}"],
                                stdin=subprocess.PIPE, start_new_session=True)
    time.sleep(1.0)
    driver.stdin.write(b"go\n")
    driver.stdin.flush()
    while len(_descendants(driver.pid)) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    ray_child = next(pid for pid in _descendants(driver.pid) if _state_and_parent(pid)[1] == driver.pid and pid != own)
    grandchild, = _descendants(ray_child)
    time.sleep(1.5)                          # recorded
    os.kill(ray_child, signal.SIGKILL)       # the grandchild is an orphan now: no longer below the driver
    time.sleep(1.0)
    driver.kill()
    driver.wait()
    watchdog.stdin.close()                   # the pipe from the driver ends (here the test holds it)
    try:
        assert watchdog.wait(timeout=30) == 0
        deadline = time.monotonic() + 10
        while _alive({grandchild}) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive({grandchild}) and _alive({own})
    finally:
        for pid in _alive({own, grandchild}):
            os.kill(pid, signal.SIGKILL)
