"""Datasets: the embedded digits, a strict IDX reader, and the real Fashion-MNIST files."""
import gzip

import numpy as np
import pytest
import torch

from hwtune.data import DatasetError, batches, load_dataset, read_idx, subset


def idx_bytes(array: np.ndarray) -> bytes:
    magic = {1: 0x00000801, 3: 0x00000803}[array.ndim]
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_digits_shapes_split_and_determinism(digits):
    assert digits.train_x.shape == (1437, 1, 8, 8) and digits.test_x.shape == (360, 1, 8, 8)
    assert digits.train_x.dtype == torch.float32 and 0 <= digits.train_x.min() and digits.train_x.max() == 1.0
    counts = torch.bincount(digits.test_y, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37          # stratified: ~36 per class
    again = load_dataset("digits")
    assert torch.equal(again.test_x, digits.test_x)
    other = load_dataset("digits", split_seed=1)
    assert not torch.equal(other.test_x, digits.test_x)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
    images = np.arange(2 * 3 * 4).reshape(2, 3, 4) % 256
    path = tmp_path / ("x.idx.gz" if gz else "x.idx")
    data = idx_bytes(images)
    path.write_bytes(gzip.compress(data) if gz else data)
    assert np.array_equal(read_idx(path), images)


def test_idx_errors_name_the_file(tmp_path):
    good = idx_bytes(np.zeros((4, 2, 2)))
    cases = {
        "magic.idx": b"\x00\x00\x09\x99" + good[4:],
        "trunc.idx": good[:-3],
        "short.idx": good[:5],
        "bad.gz": b"not gzip at all",
    }
    messages = {"magic.idx": "bad IDX magic", "trunc.idx": "(16 bytes of data), the file holds 13",
                "short.idx": "too short", "bad.gz": "corrupt gzip"}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DatasetError) as e:
            read_idx(tmp_path / name)
        assert name in str(e.value) and messages[name] in str(e.value)


def test_fashion_mnist_from_directory_and_errors(tmp_path):
    for prefix, n in (("train", 6), ("t10k", 4)):
        (tmp_path / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(np.full((n, 28, 28), 255)))
        (tmp_path / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(np.arange(n) % 10))
    ds = load_dataset("fashion-mnist", data_dir=str(tmp_path))
    assert ds.train_x.shape == (6, 1, 28, 28) and float(ds.train_x.max()) == 1.0 and ds.test_y.tolist() == [0, 1, 2, 3]
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.arange(3)))
    with pytest.raises(DatasetError, match="has 4 images but .*t10k-labels-idx1-ubyte has 3 labels"):
        load_dataset("fashion-mnist", data_dir=str(tmp_path))
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", data_dir=str(tmp_path / "missing"))
    with pytest.raises(DatasetError, match="known: digits, fashion-mnist"):
        load_dataset("imagenet")


def test_real_fashion_mnist():
    """The Makefile installs Debian's dataset-fashion-mnist; CI must have the real files."""
    ds = load_dataset("fashion-mnist")
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.test_x.shape == (10000, 1, 28, 28)
    assert torch.bincount(ds.train_y).tolist() == [6000] * 10
    assert 0.0 <= float(ds.train_x.min()) and float(ds.train_x.max()) == 1.0


def test_subset_and_batches_are_deterministic(digits):
    a, b = subset(digits, n_train=100, seed=3), subset(digits, n_train=100, seed=3)
    assert torch.equal(a.train_x, b.train_x) and len(a.test_x) == len(digits.test_x)
    seen = torch.cat([y for _, y in batches(a.train_x, a.train_y, 32, shuffle=True,
                                              generator=torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == sorted(a.train_y.tolist())


@pytest.mark.parametrize("images, labels, message", [
    (np.full((4, 28, 28), 7), np.array([0, 1, 200, 3]), "label 200 of sample 2 is not a class (0..9)"),
    (np.full((4, 8, 8), 7), np.arange(4), "Fashion-MNIST images are 28x28, found 8x8"),
    (np.zeros((0, 28, 28)), np.zeros(0), "holds no images"),
])
def test_hostile_fashion_files_are_named(tmp_path, images, labels, message):
    for prefix in ("train", "t10k"):
        (tmp_path / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(images))
        (tmp_path / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_dataset("fashion-mnist", data_dir=str(tmp_path))


def test_augmentation_shifts_and_flips_by_seed():
    from hwtune.data import augment_batch
    x = torch.arange(2 * 16, dtype=torch.float32).reshape(2, 1, 4, 4)
    a = augment_batch(x, torch.Generator().manual_seed(0), shift=1)
    b = augment_batch(x, torch.Generator().manual_seed(0), shift=1)
    assert torch.equal(a, b) and a.shape == x.shape
    for img, src in zip(a[:, 0], x[:, 0]):
        # every row of the result is a (possibly flipped) shifted row of the source, zero-filled
        kept = set(img[img > 0].tolist())
        assert kept <= set(src.reshape(-1).tolist()) and len(kept) >= 6


def write_npz(path, n_train=40, n_test=12, shape=(6, 6), classes=3, **override):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
              "y_train": np.arange(n_train) % classes, "x_test": rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
              "y_test": np.arange(n_test) % classes}
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return arrays


def test_a_users_npz_dataset(tmp_path):
    from hwtune.data import load_npz
    arrays = write_npz(tmp_path / "mine.npz")
    ds = load_dataset(str(tmp_path / "mine.npz"))
    assert ds.train_x.shape == (40, 1, 6, 6) and ds.test_y.tolist() == arrays["y_test"].tolist()
    assert torch.equal(ds.train_x[3, 0], torch.from_numpy(arrays["x_train"][3].astype(np.float32) / 255))
    assert ds.meta["name"] == "npz" and ds.meta["n_classes"] == 3 and ds.meta["shape"] == [1, 6, 6]
    assert load_npz(tmp_path / "mine.npz").meta["sha256"] == ds.meta["sha256"]
    floats = write_npz(tmp_path / "f.npz", x_train=np.full((40, 2, 4, 4), 0.5), x_test=np.zeros((12, 2, 4, 4)))
    assert load_dataset(str(tmp_path / "f.npz")).train_x.shape == (40, 2, 4, 4) and floats


@pytest.mark.parametrize("override, message", [
    ({"y_test": None}, "missing array(s) y_test"),
    ({"x_train": np.full((40, 6, 6), np.nan)}, "finite and in [0, 1]"),
    ({"x_train": np.full((40, 6, 6), 2.0)}, "finite and in [0, 1]"),
    ({"x_train": np.zeros((40, 6, 6), dtype=np.int32)}, "must be uint8 (0..255) or float in [0, 1]"),
    ({"y_train": np.zeros(39, dtype=np.int64)}, "y_train must be 40 integer labels"),
    ({"y_train": np.full(40, 0.5)}, "y_train must be 40 integer labels"),
    ({"y_train": np.full(40, -1)}, "label -1 is negative"),
    ({"x_test": np.zeros((12, 5, 5), dtype=np.uint8)}, "x_test samples (1, 5, 5)"),
    ({"x_train": np.zeros((0, 6, 6), dtype=np.uint8), "y_train": np.zeros(0, dtype=np.int64)}, "N >= 1"),
])
def test_npz_errors_name_the_file_and_array(tmp_path, override, message):
    write_npz(tmp_path / "bad.npz", **override)
    with pytest.raises(DatasetError) as e:
        load_dataset(str(tmp_path / "bad.npz"))
    assert message in str(e.value) and "bad.npz" in str(e.value)


def test_channels_last_images_are_read_as_such(tmp_path, capsys):
    """(N, H, W, C) with a few channels, as PIL and TensorFlow store images: transposed, with a note
    (it was read as 14 channels of 14 x 1 pixels and failed later with "in = 0")."""
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (40, 14, 14, 1), dtype=np.uint8)
    rgb = rng.integers(0, 256, (12, 14, 14, 3), dtype=np.uint8)
    write_npz(tmp_path / "grey.npz", x_train=x, x_test=x[:12])
    write_npz(tmp_path / "rgb.npz", x_train=np.concatenate([rgb] * 4)[:40], x_test=rgb)
    grey = load_dataset(str(tmp_path / "grey.npz"))
    assert grey.train_x.shape == (40, 1, 14, 14) and grey.meta["shape"] == [1, 14, 14]
    assert torch.equal(grey.train_x[5, 0], torch.from_numpy(x[5, :, :, 0].astype(np.float32) / 255))
    assert "x_train of shape (40, 14, 14, 1) read as channels-last (N, H, W, C)" in capsys.readouterr().err
    colour = load_dataset(str(tmp_path / "rgb.npz"))
    assert colour.test_x.shape == (12, 3, 14, 14)
    assert torch.equal(colour.test_x[2, 1], torch.from_numpy(rgb[2, :, :, 1].astype(np.float32) / 255))


@pytest.mark.parametrize("y_train, y_test, message", [
    (np.arange(40) % 3 + 1, np.arange(12) % 3 + 1, "class(es) 0 of 0..3 have no training sample; labels run 1..3, "
                                                   "hwtune numbers classes from 0: store y - 1"),
    (np.arange(40) % 2 * 2, np.arange(12) % 3, "class(es) 1 of 0..2 have no training sample"),
])
def test_labels_that_leave_a_class_empty_are_refused(tmp_path, y_train, y_test, message):
    """Labels numbered from 1 made an empty class 0 that the net then learned never to predict."""
    write_npz(tmp_path / "one.npz", y_train=y_train, y_test=y_test)
    with pytest.raises(DatasetError) as e:
        load_dataset(str(tmp_path / "one.npz"))
    assert str(e.value).startswith(str(tmp_path / "one.npz")) and message in str(e.value)


def test_npz_that_is_not_an_npz(tmp_path):
    (tmp_path / "x.npz").write_text("hello")
    with pytest.raises(DatasetError, match="x.npz: not a readable .npz file"):
        load_dataset(str(tmp_path / "x.npz"))
    with pytest.raises(DatasetError, match="missing.npz: file not found"):
        load_dataset(str(tmp_path / "missing.npz"))


def test_train_and_evaluate_on_a_users_npz_from_the_cli(tmp_path, capsys, monkeypatch):
    import json

    from hwtune.cli import main
    write_npz(tmp_path / "mine.npz", n_train=60, n_test=20, shape=(8, 8))
    out = tmp_path / "m"
    assert main(["train", "--arch", "fc-small", "--epochs", "1", "--dataset", str(tmp_path / "mine.npz"),
                 "-o", str(out), "-q"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out), "--json", "-q"]) == 0      # the model finds its file again
    assert json.loads(capsys.readouterr().out)["n"] == 20
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--arch", "fc-small", "--epochs", "0.1", "--dataset", "mine.npz", "-q"]) == 0
    assert (tmp_path / "runs/fc-small-mine" / "hwtune.json").exists()      # not runs/fc-small-mine.npz
    assert main(["train", "--dataset", "mine.csv", "-o", str(tmp_path / "x"), "-q"]) in (2, 3)
    assert "or a path to an .npz file" in capsys.readouterr().err


def test_dataset_from_tensors_alone_and_clear_errors():
    from hwtune.data import Dataset
    x, y = torch.rand(10, 1, 4, 4), torch.arange(10) % 4
    ds = Dataset(x, y, x[:4], y[:4])                                # no meta: read off the tensors
    assert ds.meta["shape"] == [1, 4, 4] and ds.meta["n_classes"] == 4 and ds.meta["name"] == "custom"
    with pytest.raises(DatasetError, match=r"Dataset.train_x: expected a float tensor \(N, C, H, W\)"):
        Dataset(torch.rand(10, 16), y, x[:4], y[:4])
    with pytest.raises(DatasetError, match="Dataset.test_y: expected 4 int64 labels"):
        Dataset(x, y, x[:4], y[:3])
    with pytest.raises(DatasetError, match=r"meta\['shape'\] = \[1, 8, 8\] but the samples have shape \[1, 4, 4\]"):
        Dataset(x, y, x[:4], y[:4], {"shape": [1, 8, 8]})
    with pytest.raises(DatasetError, match="outside the 2 classes"):
        Dataset(x, y, x[:4], y[:4], {"n_classes": 2})
    with pytest.raises(DatasetError, match="Dataset.train_y: expected a torch.Tensor, got ndarray"):
        Dataset(x, y.numpy(), x[:4], y[:4])
