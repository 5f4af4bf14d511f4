"""Build ``funcnet/datasets/_data/digits.npz`` from scikit-learn's copy of the UCI digits.

Run once by the maintainers (``python -m funcnet.datasets._build_digits``); needs scikit-learn,
which funcnet does not need at run time. Source: UCI Machine Learning Repository, "Optical
Recognition of Handwritten Digits" (E. Alpaydin, C. Kaynak, 1998), CC BY 4.0,
https://doi.org/10.24432/C50P49 — the 1,797-image 8×8 test-set version shipped with scikit-learn.

The split is a deterministic stratified 80/20: for each class, its samples in a fixed random order
(numpy PCG64, seed 0); the first ``round(0.2 · count)`` go to the test split. Both splits keep the
original sample order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

OUT = Path(__file__).with_name("_data") / "digits.npz"


def build(out: Path = OUT) -> Path:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.uint8)  # values 0..16
    labels = digits.target.astype(np.uint8)
    assert images.shape == (1797, 8, 8) and images.max() == 16 and images.min() == 0
    rng = np.random.default_rng(0)
    is_test = np.zeros(len(labels), dtype=bool)
    for c in range(10):
        members = np.flatnonzero(labels == c)
        chosen = rng.permutation(members)[: int(round(0.2 * len(members)))]
        is_test[chosen] = True
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        train_images=images[~is_test], train_labels=labels[~is_test],
        test_images=images[is_test], test_labels=labels[is_test],
    )
    return out


if __name__ == "__main__":
    path = build()
    with np.load(path) as f:
        print(path, {k: f[k].shape for k in f.files}, path.stat().st_size, "bytes")
