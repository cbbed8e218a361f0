"""Hostile input files (issue 31): every reader is bounded before it allocates, recurses or blocks,
and refuses with exit 3 (or its error class) naming the file: .npz archives (damaged, odd
compression, encrypted, bombs, lying headers), IDX gzip bombs, artifacts and models whose layers
are each within the limit but not together, YAML nested deep, FIFOs and /dev/zero where a file is
expected. Memory bombs run in a child process whose address space is capped a few hundred MB above
what its imports took: an unbounded reader dies there of MemoryError instead of hurting the machine."""
import gzip
import io as bytes_io
import json
import os
import re
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

import hwtune
import hwtune.io
from hwtune.artifact import ARRAYS_FILE, Artifact, ArtifactError
from hwtune.cli import main
from hwtune.data import DatasetError, load_dataset, read_idx
from hwtune.recipes import RecipeError, load_recipe

ROOT = Path(__file__).resolve().parent.parent
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


# ---- building hostile archives ----------------------------------------------------------------

def _npy(array: np.ndarray) -> bytes:
    buffer = bytes_io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _npy_header(shape, descr="|u1") -> bytes:
    buffer = bytes_io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def _deflated_zeros(prefix: bytes, zeros: int) -> tuple[bytes, int]:
    """A raw deflate stream of ``prefix`` then ``zeros`` zero bytes, and its CRC-32, made in a second
    for gigabytes: one compressed 16 MiB block of zeros, full-flushed (byte-aligned, no reference to
    what came before), repeated."""
    block = 2 ** 24
    first = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = first.compress(prefix) + first.flush(zlib.Z_FULL_FLUSH)
    middle = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = middle.compress(bytes(block)) + middle.flush(zlib.Z_FULL_FLUSH)
    n, rest = divmod(zeros, block)
    last = zlib.compressobj(9, zlib.DEFLATED, -15)
    tail = last.compress(bytes(rest)) + last.flush(zlib.Z_FINISH)
    crc, zero_block = zlib.crc32(prefix), bytes(block)
    for _ in range(n):
        crc = zlib.crc32(zero_block, crc)
    return head + chunk * n + tail, zlib.crc32(bytes(rest), crc)


def _zip(path: Path, members) -> None:
    """A zip file of (name, method, stored bytes, crc, uncompressed size, flags) members, written by
    hand so that any field can lie."""
    out, central = bytearray(), bytearray()
    for name, method, data, crc, size, flags in members:
        offset, raw = len(out), name.encode()
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, flags, method, 0, 0, crc, len(data), size, len(raw), 0)
        out += raw + data
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, flags, method, 0, 0, crc, len(data), size,
                               len(raw), 0, 0, 0, 0, 0, offset) + raw
    out += central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central),
                                 len(out), 0)
    path.write_bytes(bytes(out))


def _stored(name: str, data: bytes, method: int = 0, flags: int = 0):
    return name, method, data, zlib.crc32(data), len(data), flags


def _arrays(n=12, classes=3):
    rng = np.random.default_rng(0)
    return {"x_train": rng.integers(0, 256, (n, 4, 4), dtype=np.uint8), "y_train": np.arange(n) % classes,
            "x_test": rng.integers(0, 256, (n, 4, 4), dtype=np.uint8), "y_test": np.arange(n) % classes}


def _dataset_npz(path: Path, **replace) -> Path:
    """A valid .npz dataset (stored members) with some members replaced by raw (name, ...) tuples."""
    members = [_stored(f"{k}.npy", _npy(v)) for k, v in _arrays().items() if f"{k}.npy" not in replace]
    _zip(path, members + list(replace.values()))
    return path


def _limited(module: str, code: str, extra_mb: int, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``code`` after ``import {module}`` in a child whose address space is capped ``extra_mb`` MB
    above what the import took."""
    script = (f"import resource, sys\nimport {module}\n"
              "size = int(next(l for l in open('/proc/self/status') if l.startswith('VmSize')).split()[1]) * 1024\n"
              f"resource.setrlimit(resource.RLIMIT_AS, (size + {extra_mb} * 2 ** 20, resource.RLIM_INFINITY))\n"
              "from hwtune.errors import HwtuneError\n"
              f"try:\n    {code}\nexcept HwtuneError as e:\n    print('REFUSED', e)\n    sys.exit(3)\n"
              "print('ACCEPTED')\n")
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


# ---- .npz datasets ------------------------------------------------------------------------------------

def _damaged(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.npz"
    x = _npy(_arrays()["x_train"])
    if kind == "renamed-npy":
        path.write_bytes(x)
    elif kind == "crc":
        _dataset_npz(path, **{"x_train.npy": ("x_train.npy", 0, x, zlib.crc32(x) ^ 1, len(x), 0)})
    elif kind == "deflate":
        bad = zlib.compressobj(6, zlib.DEFLATED, -15)
        data = bytearray(bad.compress(x) + bad.flush())
        data[len(data) // 2] ^= 0xFF
        _dataset_npz(path, **{"x_train.npy": ("x_train.npy", 8, bytes(data), zlib.crc32(x), len(x), 0)})
    elif kind == "truncated":
        _dataset_npz(path)
        path.write_bytes(path.read_bytes()[:300])
    elif kind == "method-99":
        _dataset_npz(path, **{"x_train.npy": _stored("x_train.npy", x, method=99)})
    elif kind == "encrypted":
        _dataset_npz(path, **{"x_train.npy": _stored("x_train.npy", x, flags=1)})
    elif kind == "no-npy-suffix":
        _dataset_npz(path, **{"x_train.npy": _stored("x_train", x)})
    elif kind == "empty-dimension":
        _dataset_npz(path, **{"x_train.npy": _stored("x_train.npy", _npy(np.zeros((5, 1, 0, 8), np.uint8)))})
    elif kind == "16-TiB-header":
        _dataset_npz(path, **{"x_train.npy": _stored("x_train.npy", _npy_header((2 ** 44,)) + bytes(64))})
    elif kind == "object-array":
        header = _npy_header((2,), "|O")
        _dataset_npz(path, **{"x_train.npy": _stored("x_train.npy", header + bytes(16))})
    elif kind == "huge-label":
        y = np.arange(12)
        y[3] = 10 ** 6
        _dataset_npz(path, **{"y_train.npy": _stored("y_train.npy", _npy(y))})
    return path


@pytest.mark.parametrize("kind,message", [
    ("renamed-npy", "not a readable .npz file"), ("crc", "Bad CRC-32"), ("deflate", "unreadable"),
    ("truncated", "not a readable .npz file"), ("method-99", "compression method 99"), ("encrypted", "is encrypted"),
    ("no-npy-suffix", "member 'x_train' is not an .npy array"), ("empty-dimension", "every size >= 1"),
    ("16-TiB-header", "claims shape (17592186044416,)"), ("object-array", "not a plain number type"),
    ("huge-label", "label 1000000 of sample 3 makes more than hwtune's limit of 65,536 classes"),
])
def test_a_hostile_npz_dataset_is_refused_naming_it(tmp_path, capsys, kind, message):
    path = _damaged(tmp_path, kind)
    with pytest.raises(DatasetError) as e:
        load_dataset(str(path))
    assert str(path) in str(e.value) and message in str(e.value)
    if kind in ("crc", "16-TiB-header"):         # the same through the CLI: exit 3, one line
        assert main(["train", "--arch", "fc-small", "--dataset", str(path), "-o", str(tmp_path / "m"), "-q"]) == 3
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and not (tmp_path / "m").exists()


@pytest.mark.parametrize("kind,message", [
    ("16-TiB-header", "claims shape (17592186044416,) (17,592,186,044,416 values), more than hwtune's limit of"),
    ("encrypted", "is encrypted"),
])
def test_a_refusal_under_a_long_path_keeps_its_whole_message(tmp_path, kind, message):
    """A refusal raised while reading an archive is not taken for damage (relabelled "unreadable" and
    cut to 200 characters): under a 250-character path its message still ends with the limit."""
    deep = tmp_path.joinpath(*["d" * 60] * 4)
    deep.mkdir(parents=True)
    path = _damaged(deep, kind)
    with pytest.raises(DatasetError) as e:
        load_dataset(str(path))
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value) and "unreadable" not in str(e.value)
    if kind == "16-TiB-header":
        assert re.search(r"more than hwtune's limit of [\d,]+$", str(e.value))


def test_a_3_gb_zip_bomb_is_refused_before_it_inflates(tmp_path):
    size = 3 * 10 ** 9
    prefix = _npy_header((size,))
    data, crc = _deflated_zeros(prefix, size)
    bomb = tmp_path / "bomb.npz"
    _dataset_npz(bomb, **{"x_train.npy": ("x_train.npy", 8, data, crc, len(prefix) + size, 0)})
    assert bomb.stat().st_size < 10 ** 7
    result = _limited("hwtune.data", f"hwtune.data.load_dataset({str(bomb)!r})", extra_mb=500)
    assert result.returncode == 3, result.stderr[-2000:]
    assert "declare more than 2,147,483,648 bytes together" in result.stdout


# ---- IDX files ------------------------------------------------------------------------------------------

def _gzip(path: Path, deflated: bytes, crc: int, size: int) -> None:
    path.write_bytes(b"\x1f\x8b\x08\x00" + bytes(4) + b"\x00\xff" + deflated + struct.pack("<II", crc, size % 2 ** 32))


def test_an_idx_gzip_bomb_stops_at_the_size_its_header_claims(tmp_path):
    header = struct.pack(">IIII", 0x803, 10, 28, 28)
    data, crc = _deflated_zeros(header, 2 * 10 ** 9)
    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    _gzip(bomb, data, crc, len(header) + 2 * 10 ** 9)
    result = _limited("hwtune.data", f"hwtune.data.read_idx({str(bomb)!r})", extra_mb=300)
    assert result.returncode == 3, result.stderr[-2000:]
    assert "the file holds more than 7,840" in result.stdout


def test_a_corrupt_idx_gzip_is_refused_naming_it(tmp_path):
    raw = gzip.compress(struct.pack(">II", 0x801, 4) + bytes(4))
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(raw[:12] + bytes([raw[12] ^ 0xFF]) + raw[13:])
    with pytest.raises(DatasetError, match="corrupt gzip data") as e:
        read_idx(path)
    assert str(path) in str(e.value)


# ---- artifacts and models ----------------------------------------------------------------------------

def _copy(src: Path, dest: Path) -> Path:
    import shutil
    shutil.copytree(src, dest)
    return dest


@pytest.mark.parametrize("verb", ["emulate", "lava-run"])
def test_artifact_members_without_npy_are_refused(made, tmp_path, capsys, verb):
    art = _copy(made[3], tmp_path / "a")
    with np.load(art / ARRAYS_FILE) as npz:
        arrays = dict(npz)
    _zip(art / ARRAYS_FILE, [_stored(k, _npy(v)) for k, v in arrays.items()])     # "layer0.weight", no .npy
    assert main([verb, str(art), "-q"]) == 3
    err = capsys.readouterr().err
    assert "member 'layer0.weight' is not an .npy array" in err and "Traceback" not in err


def test_an_artifact_weight_beyond_int64_is_refused(made, tmp_path):
    art = _copy(made[3], tmp_path / "a")
    with np.load(art / ARRAYS_FILE) as npz:
        arrays = dict(npz)
    weight = arrays["layer0.weight"].astype(np.uint64)
    weight[0, 0] = 2 ** 64 - 1
    np.savez(art / ARRAYS_FILE, **{**arrays, "layer0.weight": weight})
    with pytest.raises(ArtifactError, match="holds 18446744073709551615 at \\[0, 0\\], beyond the int64 range"):
        Artifact.load(art)


def test_artifact_layers_each_within_the_limit_but_not_together_are_refused(tmp_path):
    n, layers, art = 8192, 14, tmp_path / "a"
    art.mkdir()
    doc = {"format": "hwtune-artifact", "version": 3, "input_shape": [n], "input_steps": 8, "synaptic_delay": 1,
           "weight_bits": 8, "membrane_bits": 24, "overflow": "error", "schedule": [], "meta": {},
           "layers": [{"name": f"d{i}", "inputs": ["input" if i == 0 else f"d{i - 1}"], "in_shape": [n], "ops": [],
                       "synapse": {"kind": "dense", "in": n, "out": n}, "window_steps": None if i == layers - 1 else 8,
                       "readout": i == layers - 1, "logit_scale": 1.0} for i in range(layers)]}
    (art / "artifact.json").write_text(json.dumps(doc))
    weight = _deflated_zeros(_npy_header((n, n), "|i1"), n * n)
    small = _npy(np.ones(n, np.int64))
    members = []
    for i in range(layers):
        members.append((f"layer{i}.weight.npy", 8, weight[0], weight[1], len(_npy_header((n, n), "|i1")) + n * n, 0))
        members += [_stored(f"layer{i}.bias.npy", small)] + ([_stored(f"layer{i}.slope.npy", small)]
                                                               if i < layers - 1 else [])
    _zip(art / ARRAYS_FILE, members)
    result = _limited("hwtune.artifact", f"hwtune.artifact.Artifact.load({str(art)!r})", extra_mb=700)
    assert result.returncode == 3, result.stderr[-2000:]
    assert "more than hwtune's limit of 268,435,456" in result.stdout


def test_model_layers_each_within_the_limit_but_not_together_are_refused(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    arch = [{"kind": "dense", "in": 8000, "out": 8000} for _ in range(40)] + [{"kind": "dense", "in": 8000, "out": 10}]
    config = {"format": "hwtune-model", "version": 3, "arch": arch, "input_shape": [8000], "dtype": "float32",
              "windows": [1.0] * 40}
    (model / "hwtune.json").write_text(json.dumps(config))
    assert len((model / "hwtune.json").read_text()) < 3000
    with pytest.raises(hwtune.io.ModelFileError) as e:          # read before any layer is allocated
        hwtune.io._read_config(model)
    assert "the net's 41 layers have" in str(e.value) and "more than hwtune's limit of 268,435,456" in str(e.value)


# ---- YAML ---------------------------------------------------------------------------------------------

def test_yaml_nested_50000_deep_is_refused_within_seconds(tmp_path):
    recipe = tmp_path / "deep.yaml"
    recipe.write_text("name: deep\ndataset: digits\nmodel: " + "[" * 50_000 + "]" * 50_000 + "\n")
    start = time.process_time()                 # CPU time: the machine's load does not count (was 81 s)
    with pytest.raises(RecipeError, match="nested more than 64 deep"):
        load_recipe(recipe)
    assert time.process_time() - start < 5


def test_yaml_merge_keys_work_and_a_complex_key_is_refused(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: merged\ndataset: digits\nmodel: {train: {arch: fc-small}}\n"
                      "passes:\n  - quantize: &q {bits: 4, steps: 8, epochs: 0}\n  - latency:\n      <<: *q\n"
                      "      bits: null\n")
    with pytest.raises(RecipeError, match="latency: unknown setting"):      # merged: bits is no latency setting
        load_recipe(recipe)
    recipe.write_text("name: merged\ndataset: digits\nbase: &b {arch: fc-small, epochs: 1}\n"
                      "model: {train: {<<: *b, epochs: 2}}\n")
    with pytest.raises(RecipeError, match="unknown key\\(s\\) base"):    # parsed: the merge itself works
        load_recipe(recipe)
    recipe.write_text("name: x\ndataset: digits\nmodel: {train: {arch: fc-small}}\n? [a, b]\n: 1\n? [a, b]\n: 2\n")
    assert main(["run", str(recipe), "-q"]) == 3


def test_a_yaml_merge_gives_the_merged_settings(tmp_path):
    from hwtune.yamlfile import read_yaml
    path = tmp_path / "m.yaml"
    path.write_text("base: &b {arch: fc-small, epochs: 1}\ntrain: {<<: *b, epochs: 2}\n")
    assert read_yaml(path, RecipeError, "recipe")["train"] == {"arch": "fc-small", "epochs": 2}


# ---- FIFOs and devices where a file is expected --------------------------------------------------------

def _finishes(call, fifos, seconds=30):
    """(finished in time, result): ``call`` in a thread; if it is still blocked after ``seconds``,
    each FIFO gets a writer that closes at once (the reader sees its end) and it counts as hung."""
    result = {}
    thread = threading.Thread(target=lambda: result.update(value=call()), daemon=True)
    thread.start()
    thread.join(seconds)
    hung = thread.is_alive()
    if hung:
        for fifo in fifos:
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        thread.join(30)
    return not hung, result.get("value")


def test_a_fifo_as_manifest_is_refused_at_once(made, tmp_path, capsys):
    from hwtune.atomic import MANIFEST
    model = _copy(made[2], tmp_path / "m")
    (model / MANIFEST).unlink()
    os.mkfifo(model / MANIFEST)
    argv = ["train", "--arch", "fc-small", "--epochs", "0.1", "--force", "-o", str(model), "-q"]
    assert _finishes(lambda: main(argv), [model / MANIFEST]) == (True, 3)
    assert "not a regular file" in capsys.readouterr().err
    sweep = tmp_path / "s"
    sweep.mkdir()
    os.mkfifo(sweep / MANIFEST)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text("name: tiny\ndataset: digits\nmodel: {train: {arch: fc-small, epochs: 0.2}}\n"
                      "grid: {bits: [4], steps: [8]}\n")
    assert _finishes(lambda: main(["sweep", str(recipe), "--out", str(sweep), "-q"]),
                     [sweep / MANIFEST]) == (True, 3)
    assert _finishes(lambda: main(["report", str(sweep), "-q"]), [sweep / MANIFEST]) == (True, 3)


def test_a_manifest_linked_to_dev_zero_is_refused(made, tmp_path):
    from hwtune.atomic import MANIFEST
    model = _copy(made[2], tmp_path / "m")
    (model / MANIFEST).unlink()
    (model / MANIFEST).symlink_to("/dev/zero")
    result = _limited("hwtune.atomic", f"hwtune.atomic.check_output({str(model)!r}, 'hwtune.json', force=True)",
                      extra_mb=500)
    assert result.returncode == 3, result.stderr[-2000:]
    assert ".hwtune-files.json: is a symbolic link" in result.stdout


def test_fifos_as_dataset_idx_and_weights_files_are_refused_at_once(tmp_path, capsys):
    fifo = tmp_path / "x.npz"
    os.mkfifo(fifo)
    assert _finishes(lambda: main(["train", "--arch", "fc-small", "--dataset", str(fifo), "-o", str(tmp_path / "m"),
                                   "-q"]), [fifo]) == (True, 3)
    assert "not a regular file" in capsys.readouterr().err
    idx = tmp_path / "idx"
    idx.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        os.mkfifo(idx / name)
    assert _finishes(lambda: main(["train", "--arch", "fc-small", "--dataset", "fashion-mnist", "--data-dir", str(idx),
                                   "-o", str(tmp_path / "f"), "-q"]), list(idx.iterdir())) == (True, 3)
    assert "not a regular file" in capsys.readouterr().err
    weights = tmp_path / "w.safetensors"
    os.mkfifo(weights)
    (tmp_path / "mymodel.py").write_text("import torch\ndef make():\n    return torch.nn.Sequential(torch.nn.Flatten(), "
                                          "torch.nn.Linear(64, 10))\n")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert _finishes(lambda: main(["convert", "mymodel:make", "--weights", str(weights), "--dataset", "digits",
                                       "-o", str(tmp_path / "c"), "-q"]), [weights]) == (True, 3)
    finally:
        os.chdir(cwd)
    assert "not a regular file" in capsys.readouterr().err
