"""Grain interop: funcnet datasets and transforms inside a Grain pipeline (``pip install 'funcnet[grain]'``).

Grain (``grain`` on PyPI) is the JAX ecosystem's input pipeline for many hosts: per-process sharding
(``ShardByJaxProcess``), checkpointable iterators, ``mp_prefetch`` worker processes. funcnet does
not wrap it; its map-style datasets already are Grain ``RandomAccessDataSource`` s (``__len__``,
``__getitem__``), and this module adds the one missing piece, augmentation driven by Grain's
per-record generator:

    import grain
    from funcnet.utils.data.grain_interop import GrainRandomMap

    folder = ImageFolder(root, transform=T.Compose([T.RandomResizedCrop(224), T.ToTensor()]))
    ds = (grain.MapDataset.range(len(folder)).shuffle(seed=0).repeat(2)
          .random_map(GrainRandomMap(folder), seed=0).batch(64))
    for images, labels in ds.to_iter_dataset().mp_prefetch(grain.MultiprocessingOptions(num_workers=2)):
        ...

Why not the other way round (funcnet's DataLoader over Grain): see ``docs/data.md`` (measured).
"""

from __future__ import annotations

from typing import Any

import grain
import numpy as np


class GrainRandomMap(grain.transforms.RandomMap):
    """``index -> dataset.get(index, rng)``: a funcnet dataset's sample, transformed with Grain's
    per-record ``numpy.random.Generator`` (so Grain's ``seed`` drives the augmentation).

    ``dataset`` needs ``get(index, rng)`` (``ImageFolder``/``DatasetFolder``); any other map-style
    dataset is read with ``dataset[index]`` and ``transform(sample, rng)`` applied to its first field.
    """

    def __init__(self, dataset: Any, transform: Any = None) -> None:
        if not hasattr(dataset, "get") and transform is None:
            raise TypeError(f"GrainRandomMap: {type(dataset).__name__} has no get(index, rng); pass transform= "
                            f"to apply transform(sample, rng) to dataset[index]")
        self.dataset, self.transform = dataset, transform

    def random_map(self, element: Any, rng: np.random.Generator) -> Any:
        index = int(element)
        if self.transform is None:
            return self.dataset.get(index, rng)
        sample = self.dataset[index]
        if isinstance(sample, tuple):
            return (self.transform(sample[0], rng), *sample[1:])
        return self.transform(sample, rng)
