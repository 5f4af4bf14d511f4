"""Reader for the IDX format of MNIST-style files (raw or ``.gz``), with precise errors.

IDX: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
0x0E float64), the number of dimensions, each dimension as a big-endian uint32, then the data in
big-endian C order. http://yann.lecun.com/exdb/mnist/ (format description).
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class IDXError(ValueError):
    """A malformed IDX file; the message names the file and what is wrong."""


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise FileNotFoundError(f"IDX file {str(path)!r} does not exist")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the name
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise IDXError(f"{path}: corrupt or truncated gzip data ({e})") from e
    if path.suffix == ".gz":
        raise IDXError(f"{path}: named .gz but is not gzip data (first bytes {raw[:4].hex()})")
    return raw


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (raw or gzip-compressed) into a native-endian numpy array.

    Raises:
        FileNotFoundError: the file does not exist.
        IDXError: bad magic number, unknown type code, truncated header or data, or extra bytes.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise IDXError(f"{path}: truncated: {len(raw)} bytes, shorter than the 4-byte IDX magic number")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _TYPES or raw[3] == 0:
        raise IDXError(f"{path}: bad magic number {raw[:4].hex()} (expected 0000TTDD with type TT in "
                       f"{{08,09,0b,0c,0d,0e}} and DD >= 1 dimensions); not an IDX file")
    dtype = np.dtype(_TYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IDXError(f"{path}: truncated header: {ndim} dimensions need {header} bytes, "
                       f"file has {len(raw)}")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(raw) - header
    if actual < expected:
        raise IDXError(f"{path}: truncated data: shape {shape} of {dtype.name} needs {expected} bytes after "
                       f"the header, found {actual}")
    if actual > expected:
        raise IDXError(f"{path}: size mismatch: shape {shape} of {dtype.name} needs {expected} bytes after "
                       f"the header, found {actual} ({actual - expected} extra)")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write ``array`` as IDX (gzip if ``compress`` or the name ends in ``.gz``). For tests and tools."""
    path = Path(path)
    array = np.asarray(array)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _TYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise TypeError(f"write_idx: dtype {array.dtype} has no IDX type code")
    body = bytes([0, 0, codes[native], array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    body += array.astype(np.dtype(_TYPES[codes[native]])).tobytes()
    if compress or (compress is None and path.suffix == ".gz"):
        body = gzip.compress(body)
    path.write_bytes(body)
