"""Shared base: an in-memory image-classification dataset over numpy arrays."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from funcnet.utils.data.dataset import TensorDataset


class ImageClassification(TensorDataset):
    """A :class:`~funcnet.utils.data.TensorDataset` of ``(image, label)``.

    Attributes:
        data: the raw images, ``uint8[N, H, W]`` as stored in the files.
        targets: labels, ``int32[N]``.
        classes: class names.
        tensors: ``(float32[N, 1, H, W] in [0, 1], int32[N])`` — what a sample/batch holds.
    """

    def __init__(self, data: np.ndarray, targets: np.ndarray, classes: Sequence[str], scale: float) -> None:
        self.data = data
        self.targets = np.asarray(targets, dtype=np.int32)
        self.classes = list(classes)
        images = (data.astype(np.float32) / np.float32(scale))[:, None, :, :]
        super().__init__(images, self.targets)

    @property
    def class_to_idx(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.classes)}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(split={getattr(self, 'split', '?')!r}, samples={len(self)}, "
                f"image_shape={tuple(self.tensors[0].shape[1:])}, classes={len(self.classes)})")
