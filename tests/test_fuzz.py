"""Fuzzing the loaders: any bytes, any JSON/YAML value anywhere in a valid file, gives the loader's
own named error (an HwtuneError subclass naming the file), never another exception or a hang.

Example counts per test are the ``max_examples`` below (the closing note reports them)."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwtune import io
from hwtune.artifact import ARRAYS_FILE, JSON_FILE, Artifact, ArtifactError
from hwtune.random_artifacts import random_conv_artifact
from hwtune.recipes import RecipeError, parse_recipe
from hwtune.sweep import parse_sweep
from hwtune.target import TARGETS_DIR, TargetError, load_target, parse_target
from hwtune.ttfs import TTFSNet, preset

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])
#: JSON-like values, hostile ones included (NaN, infinities, huge ints, deep nesting, wrong types)
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12) | st.sampled_from([0, -1, 1, 2 ** 31, 0.5, "", "nan", "digits", "loihi2", [], {}]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)


def paths(doc, prefix=()):
    """Every key/index path of a JSON-like document."""
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from paths(v, prefix + (i,))


@st.composite
def mutated(draw, doc):
    """``doc`` with one value replaced, one key deleted, or one key added, somewhere."""
    doc = json.loads(json.dumps(doc))
    where = draw(st.sampled_from(list(paths(doc))))
    action = draw(st.sampled_from(["replace", "delete", "add"]))
    if not where:
        return draw(VALUES) if action == "replace" else doc
    parent = doc
    for key in where[:-1]:
        parent = parent[key]
    if action == "replace":
        parent[where[-1]] = draw(VALUES)
    elif action == "delete":
        del parent[where[-1]]
    elif isinstance(parent, dict):
        parent[draw(st.text(min_size=1, max_size=8))] = draw(VALUES)
    return doc


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "model"
    net = TTFSNet(preset("vgg-small", (1, 8, 8), 10), (1, 8, 8))
    net.info = {"dataset": {"name": "digits"}, "history": [], "target": load_target("loihi2").to_dict()}
    io.save(net, path)
    return path


def copy_of(src: Path, tmp_path: Path, name: str) -> Path:
    dst = tmp_path / name
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst


@FUZZ
@given(data=st.data())
def test_model_directory_loader(model_dir, tmp_path, data):
    path = copy_of(model_dir, tmp_path, "m")
    config = json.loads((path / io.CONFIG).read_text())
    what = data.draw(st.sampled_from(["json", "bytes", "tensors"]))
    if what == "json":
        (path / io.CONFIG).write_text(json.dumps(data.draw(mutated(config))))
    elif what == "bytes":
        (path / io.CONFIG).write_bytes(data.draw(st.binary(max_size=300)))
    else:
        raw = (path / io.TENSORS).read_bytes()
        cut = data.draw(st.integers(0, len(raw)))
        (path / io.TENSORS).write_bytes(raw[:cut] + data.draw(st.binary(max_size=40)))
    try:
        io.load(path)
    except io.ModelFileError as e:
        assert str(path) in str(e) and len(str(e)) < 2000


@pytest.fixture(scope="module")
def artifact_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "artifact"
    random_conv_artifact(np.random.default_rng(0), (1, 8, 8), [("conv", 3, 3, 1, 1), ("pool", 2), ("dense", 5)],
                         4).save(path)
    return path


@FUZZ
@given(data=st.data())
def test_artifact_loader(artifact_dir, tmp_path, data):
    path = copy_of(artifact_dir, tmp_path, "a")
    doc = json.loads((path / JSON_FILE).read_text())
    what = data.draw(st.sampled_from(["json", "bytes", "arrays"]))
    if what == "json":
        (path / JSON_FILE).write_text(json.dumps(data.draw(mutated(doc))))
    elif what == "bytes":
        (path / JSON_FILE).write_bytes(data.draw(st.binary(max_size=300)))
    else:
        raw = (path / ARRAYS_FILE).read_bytes()
        at = data.draw(st.integers(0, len(raw) - 1))
        garbage = data.draw(st.binary(min_size=1, max_size=20))
        (path / ARRAYS_FILE).write_bytes(raw[:at] + garbage + raw[at + len(garbage):])
    try:
        Artifact.load(path)
    except ArtifactError as e:
        assert str(path) in str(e) and len(str(e)) < 2000


TARGET = yaml.safe_load((TARGETS_DIR / "loihi2.yaml").read_text())


@FUZZ
@given(doc=mutated(TARGET))
def test_target_loader(doc):
    try:
        parse_target(doc, "fuzz.yaml")
    except TargetError as e:
        assert "fuzz.yaml" in str(e) and len(str(e)) < 2000


@FUZZ
@given(text=st.text(max_size=200))
def test_target_file_of_any_text(tmp_path, text):
    path = tmp_path / "t.yaml"
    path.write_text(text)
    try:
        load_target(str(path))
    except TargetError as e:
        assert str(path) in str(e)


RECIPE = yaml.safe_load(open("recipes/quickstart.yaml"))
SWEEP = yaml.safe_load(open("recipes/robustness-ci.yaml"))


@FUZZ
@given(doc=mutated(RECIPE))
def test_recipe_loader(doc):
    try:
        parse_recipe(doc, "fuzz.yaml")
    except RecipeError as e:
        assert "fuzz.yaml" in str(e) and len(str(e)) < 2000


@FUZZ
@given(doc=mutated(SWEEP))
def test_sweep_loader(doc):
    try:
        parse_sweep(doc, "fuzz.yaml")
    except RecipeError as e:
        assert "fuzz.yaml" in str(e) and len(str(e)) < 2000
