"""``DatasetFolder`` / ``ImageFolder``: torchvision's ``root/class_x/xxx.ext`` datasets.

Class discovery, ordering, ``class_to_idx``, ``samples``, ``extensions``, ``is_valid_file``,
``allow_empty`` and ``loader`` follow ``torchvision.datasets.folder`` exactly: classes are the sorted
names of ``root``'s sub-folders; each class folder is walked recursively (following links), folders
and file names in sorted order.

The JAX-way difference: augmentation randomness is explicit. ``dataset[i]`` calls
``transform(sample, rng)`` (for transforms with ``takes_rng``, e.g. :mod:`funcnet.vision.transforms`)
with ``rng = numpy.random.default_rng((seed, epoch, i))``. The DataLoader calls
:meth:`DatasetFolder.set_epoch` at every pass, so an epoch is reproducible and resumable mid-epoch
with any number of workers. A final PIL image becomes a ``uint8[H, W, C]`` numpy array.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from funcnet.utils.data.dataset import Dataset

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class UnreadableFileError(OSError):
    """A sample file that the loader could not read (corrupt, truncated, not an image)."""


def has_file_allowed_extension(filename: str, extensions: str | tuple[str, ...]) -> bool:
    """True if ``filename`` ends with one of ``extensions`` (case-insensitive)."""
    return filename.lower().endswith(extensions if isinstance(extensions, str) else tuple(extensions))


def is_image_file(filename: str) -> bool:
    return has_file_allowed_extension(filename, IMG_EXTENSIONS)


def find_classes(directory: str | os.PathLike) -> tuple[list[str], dict[str, int]]:
    """The sorted sub-folder names of ``directory`` and ``{name: index}``."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"DatasetFolder: root {os.fspath(directory)!r} is not a directory")
    classes = sorted(entry.name for entry in os.scandir(directory) if entry.is_dir())
    if not classes:
        raise FileNotFoundError(f"Couldn't find any class folder in {os.fspath(directory)}. DatasetFolder expects "
                                f"root/<class name>/<files>.")
    return classes, {name: i for i, name in enumerate(classes)}


def make_dataset(directory: str | os.PathLike, class_to_idx: dict[str, int] | None = None,
                 extensions: str | tuple[str, ...] | None = None,
                 is_valid_file: Callable[[str], bool] | None = None,
                 allow_empty: bool = False) -> list[tuple[str, int]]:
    """``[(path, class_index), …]`` in torchvision's order (classes sorted, then each class folder
    walked with sorted sub-folders and sorted file names)."""
    directory = os.path.expanduser(os.fspath(directory))
    if class_to_idx is None:
        _, class_to_idx = find_classes(directory)
    elif not class_to_idx:
        raise ValueError("'class_to_index' must have at least one entry to collect any samples.")
    if (extensions is None) == (is_valid_file is None):
        raise ValueError("Both extensions and is_valid_file cannot be None or not None at the same time")
    if extensions is not None:
        exts = extensions

        def is_valid_file(x: str) -> bool:
            return has_file_allowed_extension(x, exts)

    instances: list[tuple[str, int]] = []
    available: set[str] = set()
    for target_class in sorted(class_to_idx):
        class_index = class_to_idx[target_class]
        target_dir = os.path.join(directory, target_class)
        if not os.path.isdir(target_dir):
            continue
        for root, _, fnames in sorted(os.walk(target_dir, followlinks=True)):
            for fname in sorted(fnames):
                path = os.path.join(root, fname)
                if is_valid_file(path):
                    instances.append((path, class_index))
                    available.add(target_class)
    empty = set(class_to_idx) - available
    if empty and not allow_empty:
        msg = f"Found no valid file for the classes {', '.join(sorted(empty))}. "
        if extensions is not None:
            msg += f"Supported extensions are: {extensions if isinstance(extensions, str) else ', '.join(extensions)}"
        raise FileNotFoundError(msg)
    return instances


def pil_loader(path: str) -> Any:
    """Open ``path`` with Pillow as an RGB image (decoded now, so a corrupt file fails here)."""
    from PIL import Image

    with open(path, "rb") as f:
        img = Image.open(f)
        img.load()
        return img if img.mode == "RGB" else img.convert("RGB")


def simplejpeg_loader(path: str) -> Any:
    """Like :func:`pil_loader`, but JPEG files are decoded by libjpeg-turbo through ``simplejpeg``
    (``pip install 'funcnet[jpeg]'``), skipping Pillow's file parsing; other formats, and JPEGs
    simplejpeg declines (CMYK, …), go to Pillow.

    Pixels: identical to Pillow's decode when both use the same libjpeg-turbo (checked by
    ``tests/test_image_folder.py`` on 4:4:4, 4:2:2, 4:2:0 and grayscale JPEGs with the installed
    versions); a different libjpeg build may round the IDCT/upsampling differently, so Pillow stays
    the default loader.
    """
    import simplejpeg
    from PIL import Image

    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\xff\xd8":
        try:
            return Image.fromarray(simplejpeg.decode_jpeg(data, colorspace="RGB"))
        except ValueError:
            pass  # not a baseline/progressive YCbCr/gray JPEG simplejpeg handles: Pillow decides
    return pil_loader(path)


def default_loader(path: str) -> Any:
    """torchvision's default: Pillow, RGB."""
    return pil_loader(path)


class DatasetFolder(Dataset):
    """``torchvision.datasets.DatasetFolder``: samples ``(loader(path) → transform, class_index)``.

    Args:
        root: the folder of class sub-folders.
        loader: ``path -> sample`` (must be picklable for worker processes).
        extensions / is_valid_file: which files count (exactly one of the two).
        transform: ``transform(sample, rng)`` if it has ``takes_rng`` (funcnet's transforms), else
            ``transform(sample)``.
        target_transform: ``target_transform(class_index)``.
        allow_empty: accept class folders without valid files.
        seed: the augmentation seed; sample ``i`` of epoch ``e`` uses ``default_rng((seed, e, i))``.
        on_error: ``"raise"`` (default): an unreadable file raises :class:`UnreadableFileError` naming
            its path; ``"skip"``: warn and return the next readable sample instead (same epoch key).

    Attributes (torchvision's): ``classes``, ``class_to_idx``, ``samples``, ``targets``.
    """

    def __init__(self, root: str | os.PathLike, loader: Callable[[str], Any],
                 extensions: str | tuple[str, ...] | None = None, transform: Callable | None = None,
                 target_transform: Callable | None = None, is_valid_file: Callable[[str], bool] | None = None,
                 allow_empty: bool = False, seed: int = 0, on_error: str = "raise") -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"DatasetFolder: on_error must be 'raise' or 'skip', got {on_error!r}")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"DatasetFolder: seed must be a non-negative int, got {seed!r}")
        self.root = os.fspath(root)
        self.loader, self.extensions = loader, extensions
        self.transform, self.target_transform = transform, target_transform
        self.seed, self.epoch, self.on_error = int(seed), 0, on_error
        self.classes, self.class_to_idx = self.find_classes(self.root)
        self.samples = self.make_dataset(self.root, self.class_to_idx, extensions, is_valid_file, allow_empty)
        self.targets = [s[1] for s in self.samples]

    @staticmethod
    def make_dataset(directory: str, class_to_idx: dict[str, int], extensions: Any = None,
                     is_valid_file: Callable[[str], bool] | None = None,
                     allow_empty: bool = False) -> list[tuple[str, int]]:
        if class_to_idx is None:
            raise ValueError("The class_to_idx parameter cannot be None.")
        return make_dataset(directory, class_to_idx, extensions, is_valid_file, allow_empty)

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        return find_classes(directory)

    def set_epoch(self, epoch: int) -> None:
        """The epoch of the augmentation keys (the DataLoader calls this at every pass)."""
        self.epoch = int(epoch)

    def sample_rng(self, index: int) -> np.random.Generator:
        """The generator of sample ``index`` in the current epoch: ``default_rng((seed, epoch, index))``."""
        return np.random.default_rng((self.seed, self.epoch, int(index)))

    def _load(self, index: int) -> Any:
        path = self.samples[index][0]
        try:
            return self.loader(path)
        except Exception as e:  # noqa: BLE001 - re-raised with the path, the cause attached
            raise UnreadableFileError(f"{type(self).__name__}: cannot read sample {index} {path!r}: "
                                      f"{type(e).__name__}: {e}") from e

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        """Sample ``index`` of the current epoch: ``get(index, sample_rng(index))``."""
        n = len(self.samples)
        if not -n <= index < n:
            raise IndexError(f"{type(self).__name__}: index {index} out of range for {n} samples")
        return self.get(index % n, self.sample_rng(index % n))

    def get(self, index: int, rng: np.random.Generator) -> tuple[Any, Any]:
        """Sample ``index`` transformed with the generator ``rng`` (e.g. one from Grain's ``random_map``)."""
        n = len(self.samples)
        source = index
        for _ in range(n):
            try:
                sample = self._load(source)
                break
            except UnreadableFileError as e:
                if self.on_error == "raise":
                    raise
                warnings.warn(f"{e}; skipped (on_error='skip'), using sample {(source + 1) % n}", stacklevel=2)
                source = (source + 1) % n
        else:
            raise UnreadableFileError(f"{type(self).__name__}: no readable sample in {self.root!r}")
        target = self.samples[source][1]
        if self.transform is not None:
            t = self.transform
            sample = t(sample, rng) if getattr(t, "takes_rng", False) else t(sample)
        if self.target_transform is not None:
            target = self.target_transform(target)
        if hasattr(sample, "getbands"):  # a PIL image: hand numpy to collate
            sample = np.asarray(sample)
        return sample, target

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={self.root!r}, samples={len(self)}, classes={len(self.classes)}, "
                f"transform={self.transform!r})")


class ImageFolder(DatasetFolder):
    """``torchvision.datasets.ImageFolder``: a :class:`DatasetFolder` of images (Pillow, RGB) with
    torchvision's image extensions."""

    def __init__(self, root: str | os.PathLike, transform: Callable | None = None,
                 target_transform: Callable | None = None, loader: Callable[[str], Any] = default_loader,
                 is_valid_file: Callable[[str], bool] | None = None, allow_empty: bool = False, seed: int = 0,
                 on_error: str = "raise", extensions: Sequence[str] | None = None) -> None:
        exts = (tuple(extensions) if extensions is not None else IMG_EXTENSIONS) if is_valid_file is None else None
        super().__init__(root, loader, exts, transform, target_transform, is_valid_file, allow_empty, seed,
                         on_error)
        self.imgs = self.samples
