"""``Digits``: the UCI handwritten digits (8×8), shipped with funcnet — no download, no sklearn."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from funcnet.datasets._base import ImageClassification

_FILE = Path(__file__).with_name("_data") / "digits.npz"


class Digits(ImageClassification):
    """The UCI ML "Optical Recognition of Handwritten Digits" set (Alpaydin & Kaynak, 1998, CC BY 4.0):
    1,797 grey 8×8 images of the digits 0–9, values 0..16.

    ``Digits(train=True)`` -> 1,438 samples, ``Digits(train=False)`` -> 359: a fixed stratified 80/20
    split stored in the shipped file (see ``funcnet/datasets/_build_digits.py``).

    Samples are ``(float32[1, 8, 8] in [0, 1], int32 label)``; ``data`` keeps the raw ``uint8[N, 8, 8]``
    (0..16) and ``targets`` the labels. The whole set is in memory; iterate it with
    ``DataLoader(Digits(), batch_size=…, shuffle=True)`` (batched fast path) or use the on-device mode.
    """

    classes_names = [str(i) for i in range(10)]

    def __init__(self, train: bool = True) -> None:
        self.train = bool(train)
        self.split = "train" if self.train else "test"
        with np.load(_FILE) as f:
            data = f[f"{self.split}_images"]
            labels = f[f"{self.split}_labels"]
        super().__init__(data, labels, self.classes_names, scale=16.0)
