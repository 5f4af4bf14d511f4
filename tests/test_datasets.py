"""Datasets: the shipped Digits, the IDX reader and MNIST/FashionMNIST on files the tests write, FakeData."""

import gzip

import numpy as np
import pytest

from funcnet.datasets import MNIST, Digits, FakeData, FashionMNIST, IDXError, read_idx, write_idx
from funcnet.utils.data import DataLoader

UCI_CLASS_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]  # the 1,797-image UCI test set


def test_digits_shapes_dtypes_split():
    train, test = Digits(train=True), Digits(train=False)
    assert len(train) + len(test) == 1797 and len(test) == 359
    x, y = train.tensors
    assert x.shape == (len(train), 1, 8, 8) and x.dtype == np.float32 and y.dtype == np.int32
    assert x.min() == 0.0 and x.max() == 1.0
    assert train.data.dtype == np.uint8 and train.data.max() == 16
    np.testing.assert_array_equal(x[:, 0], train.data / np.float32(16))
    counts = np.bincount(train.targets, minlength=10) + np.bincount(test.targets, minlength=10)
    assert counts.tolist() == UCI_CLASS_COUNTS
    ratio = np.bincount(test.targets, minlength=10) / np.array(UCI_CLASS_COUNTS)
    assert np.all(np.abs(ratio - 0.2) < 0.01)  # stratified
    # no image of the test split is an exact copy of a training one (checks the split is a partition)
    train_rows = {r.tobytes() for r in train.data}
    assert sum(r.tobytes() in train_rows for r in test.data) < 5
    sample = train[0]
    assert sample[0].shape == (1, 8, 8) and int(sample[1]) == train.targets[0]
    batch = next(iter(DataLoader(train, batch_size=32, shuffle=True)))
    assert batch[0].shape == (32, 1, 8, 8)


def test_fake_data():
    ds = FakeData(size=20, image_size=(1, 5, 5), num_classes=3, seed=1)
    x, y = ds.tensors
    assert x.shape == (20, 1, 5, 5) and x.dtype == np.float32 and 0 <= x.min() and x.max() < 1
    assert y.dtype == np.int32 and set(y.tolist()) <= {0, 1, 2}
    again = FakeData(size=20, image_size=(1, 5, 5), num_classes=3, seed=1)
    np.testing.assert_array_equal(again.tensors[0], x)
    assert len(FakeData(size=0)) == 0


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("gz", [False, True])
def test_idx_roundtrip_and_byte_layout(tmp_path, dtype, gz):
    a = (np.arange(24).reshape(2, 3, 4) - (0 if np.dtype(dtype).kind == "u" else 5)).astype(dtype)
    path = tmp_path / ("a.idx" + (".gz" if gz else ""))
    write_idx(path, a)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == (2, 3, 4)
    np.testing.assert_array_equal(back, a)
    raw = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    assert raw[:2] == b"\0\0" and raw[3] == 3 and raw[4:8] == (2).to_bytes(4, "big")
    big_endian_first = a.astype(np.dtype(dtype).newbyteorder(">")).ravel()[:1].tobytes()
    assert raw[16:16 + np.dtype(dtype).itemsize] == big_endian_first


def write_mnist(folder, n=5, gz=False, prefix="train", seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    ext = ".gz" if gz else ""
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", labels)
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reads_valid_files(tmp_path, gz):
    images, labels = write_mnist(tmp_path, gz=gz)
    ds = MNIST(tmp_path)
    x, y = ds.tensors
    assert x.shape == (5, 1, 28, 28) and x.dtype == np.float32 and y.dtype == np.int32
    np.testing.assert_array_equal(ds.data, images)
    np.testing.assert_allclose(x[:, 0], images / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, labels)
    assert len(ds.classes) == 10
    t_images, _ = write_mnist(tmp_path, n=3, prefix="t10k", seed=1)
    np.testing.assert_array_equal(MNIST(tmp_path, train=False).data, t_images)


def test_fashion_mnist_torchvision_layout(tmp_path):
    images, _ = write_mnist(tmp_path / "FashionMNIST" / "raw", n=4, gz=True)
    ds = FashionMNIST(tmp_path)
    np.testing.assert_array_equal(ds.data, images)
    assert ds.classes[9] == "Ankle boot"
    with pytest.raises(FileNotFoundError, match="MNIST: file train-images-idx3-ubyte"):
        MNIST(tmp_path)  # the FashionMNIST files are not MNIST's


def test_missing_folder_and_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="folder .*nope.* does not exist"):
        MNIST(tmp_path / "nope")
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(FileNotFoundError, match="file train-labels-idx1-ubyte"):
        MNIST(tmp_path)


def test_corrupted_files(tmp_path):
    path = tmp_path / "x-idx"
    path.write_bytes(b"\x08\x03\x00\x00" + bytes(20))
    with pytest.raises(IDXError, match=r"x-idx: bad magic number 08030000"):
        read_idx(path)
    path.write_bytes(b"\x00\x00\x08\x03" + (2).to_bytes(4, "big"))
    with pytest.raises(IDXError, match="truncated header: 3 dimensions need 16 bytes, file has 8"):
        read_idx(path)
    write_idx(path, np.zeros((3, 28, 28), np.uint8))
    full = path.read_bytes()
    path.write_bytes(full[:-10])
    with pytest.raises(IDXError, match=r"truncated data: shape \(3, 28, 28\) of uint8 needs 2352 bytes after "
                                       r"the header, found 2342"):
        read_idx(path)
    path.write_bytes(full + b"xx")
    with pytest.raises(IDXError, match="size mismatch.*2 extra"):
        read_idx(path)
    gz = tmp_path / "y.gz"
    gz.write_bytes(gzip.compress(full)[:-12])
    with pytest.raises(IDXError, match="y.gz: corrupt or truncated gzip data"):
        read_idx(gz)
    gz.write_bytes(full)
    with pytest.raises(IDXError, match="named .gz but is not gzip data"):
        read_idx(gz)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_idx(tmp_path / "missing")


def test_mnist_inconsistent_files(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(IDXError, match="has 3 images but .*train-labels-idx1-ubyte has 4 labels"):
        MNIST(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 1, 12], np.uint8))
    with pytest.raises(IDXError, match=r"label 12 out of range \[0, 9\]"):
        MNIST(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 20, 20), np.uint8))
    with pytest.raises(IDXError, match=r"expected uint8 images \[N, 28, 28\], got uint8 \[3, 20, 20\]"):
        MNIST(tmp_path)
