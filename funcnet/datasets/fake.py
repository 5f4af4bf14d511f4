"""``FakeData``: random images and labels for tests and benchmarks (torchvision ``FakeData``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from funcnet.utils.data.dataset import TensorDataset


class FakeData(TensorDataset):
    """``size`` samples ``(float32[image_size] uniform in [0, 1), int32 label in [0, num_classes))``.

    Deterministic for a ``seed``; generated at once in memory (unlike torchvision, which makes each
    image on access), so it exercises the batched fast path. Default ``image_size`` is ``(3, 32, 32)``
    (torchvision: ``(3, 224, 224)``, which would be 600 MB held in memory for 1,000 samples).
    """

    def __init__(self, size: int = 1000, image_size: Sequence[int] = (3, 32, 32), num_classes: int = 10,
                 seed: int = 0) -> None:
        if size < 0 or num_classes <= 0:
            raise ValueError(f"FakeData: size must be >= 0 and num_classes > 0, got size={size}, "
                             f"num_classes={num_classes}")
        rng = np.random.default_rng(seed)
        self.image_size = tuple(image_size)
        self.num_classes = num_classes
        images = rng.random((size, *self.image_size), dtype=np.float32)
        labels = rng.integers(0, num_classes, size=size).astype(np.int32)
        super().__init__(images, labels)
        self.targets = labels
        self.classes = [str(i) for i in range(num_classes)]
