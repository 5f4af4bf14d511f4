"""ImageFolder / DatasetFolder against torchvision.datasets.folder (real torchvision code from its
wheel, on the same folders), plus corrupt files and bad layouts."""

import os
import warnings

import numpy as np
import pytest
from PIL import Image

from funcnet.datasets import DatasetFolder, ImageFolder, UnreadableFileError
from funcnet.vision import transforms as T
from tests.torchvision_wheel import import_torchvision


@pytest.fixture(scope="module")
def tv_folder():
    return import_torchvision("torchvision.datasets.folder")


def write_image(path, size, seed, mode="RGB"):
    rng = np.random.default_rng(seed)
    w, h = size
    arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img = Image.fromarray(arr).convert(mode)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img.save(path, quality=90) if path.lower().endswith((".jpg", ".jpeg")) else img.save(path)


def make_tree(root):
    """Classes with nested sub-folders, mixed case extensions, JPEG/PNG of several sizes, grayscale,
    a non-image file, a hidden-ish name, and class folders whose sort order differs from creation."""
    files = {
        "zebra/b.jpg": (40, 30), "zebra/a.PNG": (17, 23), "zebra/sub/deeper/c.jpeg": (64, 48),
        "Apple/x.png": (33, 33), "Apple/y.JPG": (20, 50), "Apple/.z.png": (12, 12),
        "mango/1.jpg": (28, 21), "mango/10.jpg": (28, 21), "mango/2.bmp": (9, 11),
        "mango/notes.txt": None, "mango/sub/gray.png": (30, 20),
    }
    for i, (rel, size) in enumerate(files.items()):
        path = os.path.join(root, rel)
        if size is None:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write("not an image")
        else:
            write_image(path, size, i, mode="L" if "gray" in rel else "RGB")
    with open(os.path.join(root, "stray_file_at_root.jpg"), "wb") as f:
        f.write(b"ignored: not in a class folder")
    return root


@pytest.fixture
def tree(tmp_path):
    return make_tree(str(tmp_path / "data"))


def test_classes_and_samples_equal_torchvision(tree, tv_folder):
    ours, theirs = ImageFolder(tree), tv_folder.ImageFolder(tree)
    assert ours.classes == theirs.classes == ["Apple", "mango", "zebra"]
    assert ours.class_to_idx == theirs.class_to_idx
    assert ours.samples == theirs.samples and ours.imgs == theirs.imgs
    assert ours.targets == theirs.targets
    assert len(ours) == len(theirs) == 10
    for i in range(len(ours)):
        x, y = ours[i]
        ref, ref_y = theirs[i]
        assert isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 3 and x.shape[2] == 3
        np.testing.assert_array_equal(x, np.asarray(ref))
        assert y == ref_y


def test_is_valid_file_extensions_and_allow_empty_equal_torchvision(tree, tv_folder):
    only_png = lambda p: p.endswith(".png")
    with pytest.raises(FileNotFoundError, match="Found no valid file for the classes zebra"):
        ImageFolder(tree, is_valid_file=only_png)
    with pytest.raises(FileNotFoundError, match="zebra"):
        tv_folder.ImageFolder(tree, is_valid_file=only_png)
    ours = ImageFolder(tree, is_valid_file=only_png, allow_empty=True)
    assert ours.samples == tv_folder.ImageFolder(tree, is_valid_file=only_png, allow_empty=True).samples
    loader = lambda p: os.path.getsize(p)
    d = DatasetFolder(tree, loader, extensions=(".txt",), allow_empty=True)
    ref = tv_folder.DatasetFolder(tree, loader, extensions=(".txt",), allow_empty=True)
    assert d.samples == ref.samples and d[0] == ref[0]
    with pytest.raises(ValueError, match="Both extensions and is_valid_file"):
        DatasetFolder(tree, loader)
    with pytest.raises(ValueError, match="Both extensions and is_valid_file"):
        DatasetFolder(tree, loader, extensions=(".jpg",), is_valid_file=only_png)


def test_unknown_extension_only_is_a_clear_error(tmp_path):
    os.makedirs(tmp_path / "a")
    (tmp_path / "a" / "img.heic").write_bytes(b"xx")
    with pytest.raises(FileNotFoundError, match=r"Found no valid file for the classes a\. Supported extensions are"):
        ImageFolder(str(tmp_path))


def test_empty_folder_and_no_class_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="Couldn't find any class folder"):
        ImageFolder(str(tmp_path))
    write_image(str(tmp_path / "flat.jpg"), (10, 10), 0)
    with pytest.raises(FileNotFoundError, match="Couldn't find any class folder"):
        ImageFolder(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        ImageFolder(str(tmp_path / "missing"))


def corrupt(tree):
    path = os.path.join(tree, "mango", "10.jpg")
    with open(path, "r+b") as f:  # keep the header, truncate the scan data
        data = f.read()
        f.seek(0)
        f.truncate()
        f.write(data[: len(data) // 3])
    return path


def test_corrupt_image_raises_with_its_path_or_is_skipped(tree):
    path = corrupt(tree)
    ds = ImageFolder(tree)
    index = [p for p, _ in ds.samples].index(path)
    with pytest.raises(UnreadableFileError, match=f"sample {index} .*10.jpg"):
        ds[index]
    skipping = ImageFolder(tree, on_error="skip")
    with pytest.warns(UserWarning, match="10.jpg.*skipped"):
        x, y = skipping[index]
    np.testing.assert_array_equal(x, ds[index + 1][0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        skipping[0]  # readable samples do not warn


def test_augmentation_is_a_function_of_seed_epoch_index(tree):
    t = T.Compose([T.RandomResizedCrop(16), T.RandomHorizontalFlip(), T.ToTensor()])
    a, b = ImageFolder(tree, transform=t, seed=3), ImageFolder(tree, transform=t, seed=3)
    for i in range(len(a)):
        np.testing.assert_array_equal(a[i][0], b[i][0])
        assert a[i][0].shape == (3, 16, 16) and a[i][0].dtype == np.float32
    first = [a[i][0] for i in range(len(a))]
    a.set_epoch(1)
    assert not all(np.array_equal(first[i], a[i][0]) for i in range(len(a)))
    a.set_epoch(0)
    assert all(np.array_equal(first[i], a[i][0]) for i in range(len(a)))
    c = ImageFolder(tree, transform=t, seed=4)
    assert not all(np.array_equal(first[i], c[i][0]) for i in range(len(c)))


def test_simplejpeg_loader_pixels_equal_pillow(tmp_path):
    pytest.importorskip("simplejpeg", reason="optional extra funcnet[jpeg] not installed")
    from funcnet.datasets.folder import pil_loader, simplejpeg_loader

    root, tmp_path = tmp_path, tmp_path / "cls"
    tmp_path.mkdir()
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (97, 131, 3), dtype=np.uint8))
    cases = {f"s{sub}.jpg": dict(subsampling=sub, quality=q) for sub, q in [(0, 95), (1, 80), (2, 60)]}
    for name, kw in cases.items():
        img.save(tmp_path / name, **kw)
    img.convert("L").save(tmp_path / "gray.jpg", quality=85)
    img.save(tmp_path / "prog.jpg", quality=85, progressive=True)
    img.save(tmp_path / "p.png")
    for path in sorted(tmp_path.iterdir()):
        ours, ref = simplejpeg_loader(str(path)), pil_loader(str(path))
        assert ours.mode == "RGB" and ours.size == ref.size
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref), err_msg=path.name)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    ds = ImageFolder(str(root), loader=simplejpeg_loader)
    bad = [p for p, _ in ds.samples].index(str(tmp_path / "bad.jpg"))
    with pytest.raises(UnreadableFileError, match="bad.jpg"):
        ds[bad]
