"""``MNIST`` and ``FashionMNIST`` from IDX files in a folder you provide. Never downloads.

Looks for ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte`` (each raw or ``.gz``; the ``…-images.idx3-ubyte`` spelling too) in
``root`` and in torchvision's layout ``root/<MNIST|FashionMNIST>/raw``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from funcnet.datasets._base import ImageClassification
from funcnet.datasets.idx import IDXError, read_idx


def _find(root: Path, folder_name: str, stem: str, dataset: str) -> Path:
    dotted = stem.replace("-idx", ".idx")
    dirs = [root, root / folder_name / "raw"]
    tried = [d / (name + ext) for d in dirs for name in (stem, dotted) for ext in ("", ".gz")]
    for p in tried:
        if p.is_file():
            return p
    listing = ", ".join(str(p) for p in tried[:2]) + ", …"
    raise FileNotFoundError(f"{dataset}: file {stem}[.gz] not found (looked for {listing} and in "
                            f"{root / folder_name / 'raw'}). funcnet never downloads: put the four IDX files "
                            f"of {dataset} in {root}")


class MNIST(ImageClassification):
    """``torchvision.datasets.MNIST(root, train=True)`` without download or transforms.

    Samples are ``(float32[1, 28, 28] in [0, 1], int32 label)``; ``data`` holds the raw
    ``uint8[N, 28, 28]`` and ``targets`` the labels. 60,000 train / 10,000 test samples.

    Raises:
        FileNotFoundError: ``root`` or one of the files is missing (the message names it).
        IDXError: a file is corrupt (bad magic number, truncated, size mismatch) or the images and
            labels disagree (count, image size, label range).
    """

    folder_name = "MNIST"
    classes_names = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five", "6 - six",
                     "7 - seven", "8 - eight", "9 - nine"]

    def __init__(self, root: str | Path, train: bool = True) -> None:
        name = type(self).__name__
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"{name}: folder {str(self.root)!r} does not exist (funcnet never "
                                    f"downloads; give the folder holding the IDX files)")
        self.train = bool(train)
        self.split = "train" if self.train else "test"
        prefix = "train" if self.train else "t10k"
        images_path = _find(self.root, self.folder_name, f"{prefix}-images-idx3-ubyte", name)
        labels_path = _find(self.root, self.folder_name, f"{prefix}-labels-idx1-ubyte", name)
        images = read_idx(images_path)
        labels = read_idx(labels_path)
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
            raise IDXError(f"{images_path}: expected uint8 images [N, 28, 28], got {images.dtype} "
                           f"{list(images.shape)}")
        if labels.dtype != np.uint8 or labels.ndim != 1:
            raise IDXError(f"{labels_path}: expected uint8 labels [N], got {labels.dtype} "
                           f"{list(labels.shape)}")
        if len(images) != len(labels):
            raise IDXError(f"{name}: {images_path} has {len(images)} images but {labels_path} has "
                           f"{len(labels)} labels")
        if len(labels) and labels.max() >= len(self.classes_names):
            raise IDXError(f"{labels_path}: label {int(labels.max())} out of range [0, "
                           f"{len(self.classes_names) - 1}]")
        self.images_path, self.labels_path = images_path, labels_path
        super().__init__(images, labels, self.classes_names, scale=255.0)


class FashionMNIST(MNIST):
    """``torchvision.datasets.FashionMNIST(root, train=True)``: Zalando's clothes images, same
    format and interface as :class:`MNIST` (files in ``root`` or ``root/FashionMNIST/raw``)."""

    folder_name = "FashionMNIST"
    classes_names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                     "Bag", "Ankle boot"]
