"""``funcnet.utils.data``: the torch.utils.data vocabulary, built for JAX (also ``funcnet.data``).

Datasets (:class:`Dataset`, :class:`IterableDataset`, :class:`TensorDataset`, :class:`Subset`,
:class:`ConcatDataset`, :func:`random_split`), samplers (:class:`SequentialSampler`,
:class:`RandomSampler`, :class:`SubsetRandomSampler`, :class:`WeightedRandomSampler`,
:class:`BatchSampler`, :class:`DistributedSampler`), :func:`default_collate`, the
:class:`DataLoader`, and batch transforms in :mod:`funcnet.utils.data.transforms`.
"""

from funcnet.utils.data import transforms
from funcnet.utils.data._workers import get_worker_info
from funcnet.utils.data.collate import default_collate
from funcnet.utils.data.dataloader import DataLoader
from funcnet.utils.data.dataset import (
    ConcatDataset,
    Dataset,
    IterableDataset,
    Subset,
    TensorDataset,
    random_split,
)
from funcnet.utils.data.sampler import (
    BatchSampler,
    DistributedSampler,
    RandomSampler,
    Sampler,
    SequentialSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
)

__all__ = [
    "BatchSampler", "ConcatDataset", "DataLoader", "Dataset", "DistributedSampler", "IterableDataset",
    "RandomSampler", "Sampler", "SequentialSampler", "Subset", "SubsetRandomSampler", "TensorDataset",
    "WeightedRandomSampler", "default_collate", "get_worker_info", "random_split", "transforms",
]
