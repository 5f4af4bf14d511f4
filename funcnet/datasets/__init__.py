"""``funcnet.datasets``: :class:`Digits` (shipped), :class:`MNIST`/:class:`FashionMNIST` (IDX files from a
folder you provide; never downloaded) and :class:`FakeData` are in-memory
:class:`~funcnet.utils.data.TensorDataset` s of ``(float32 images [N, 1, H, W] in [0, 1], int32 labels)``.
:class:`ImageFolder`/:class:`DatasetFolder` read files on access (torchvision's folder layout and rules)."""

from funcnet.datasets.digits import Digits
from funcnet.datasets.fake import FakeData
from funcnet.datasets.folder import IMG_EXTENSIONS, DatasetFolder, ImageFolder, UnreadableFileError
from funcnet.datasets.idx import IDXError, read_idx, write_idx
from funcnet.datasets.mnist import MNIST, FashionMNIST

__all__ = ["IMG_EXTENSIONS", "MNIST", "DatasetFolder", "Digits", "FakeData", "FashionMNIST", "IDXError", "ImageFolder",
           "UnreadableFileError", "read_idx", "write_idx"]
