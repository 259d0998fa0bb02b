"""Image datasets, NumPy only (shared by ``hwgen`` and ``train``).

- :func:`read_idx` reads an IDX file (the MNIST family's format), gzip-compressed or raw.
- :func:`load_dataset` finds a named dataset (``fashion-mnist``, ``mnist``) and returns
  ``(images uint8 [K, 1, 28, 28], labels int64 [K])`` for a split (``train``/``test``).

Where a dataset is looked for, first match wins: the ``data_dir`` argument (``--data-dir``),
then ``$SBN_DATA_DIR``, then the dataset's system folder (Debian's ``dataset-fashion-mnist``
installs ``/usr/share/datasets/fashion-mnist``). In each folder both ``<dir>/`` and
``<dir>/<name>/`` are tried.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DatasetError

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}
_MAX_IDX_BYTES = 1 << 31


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file as a NumPy array (gzip detected by its magic bytes, not by the name)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        opener = gzip.open if head == b"\x1f\x8b" else open
        with opener(path, "rb") as f:
            data = f.read(_MAX_IDX_BYTES + 1)
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except (OSError, EOFError) as err:
        raise DatasetError(f"{path}: cannot read ({err})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DatasetError(f"{path}: not an IDX file (bad magic number)")
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    if ndim < 1 or len(data) < 4 + 4 * ndim:
        raise DatasetError(f"{path}: IDX header is truncated")
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    body = data[4 + 4 * ndim:]
    if len(body) != expected:
        raise DatasetError(f"{path}: IDX header says {list(dims)} ({expected} bytes) but the "
                           f"file holds {len(body)} bytes")
    return np.frombuffer(body, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    classes: tuple[str, ...]
    files: dict  # split -> (images file stem, labels file stem)
    system_dir: str | None
    how_to_get: str


_MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}

DATASETS = {
    "fashion-mnist": DatasetInfo(
        "fashion-mnist",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
         "Bag", "Ankle boot"),
        _MNIST_FILES, "/usr/share/datasets/fashion-mnist",
        "install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or "
        "pass --data-dir / set SBN_DATA_DIR to a folder with its IDX files"),
    "mnist": DatasetInfo(
        "mnist", tuple(str(d) for d in range(10)), _MNIST_FILES, None,
        "pass --data-dir or set SBN_DATA_DIR to a folder with the MNIST IDX files "
        "(t10k-images-idx3-ubyte[.gz], ...)"),
}


def _find(stem: str, folders: list[Path]) -> Path | None:
    for folder in folders:
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def dataset_folders(name: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for dataset ``name``, in order."""
    roots = [Path(p) for p in (data_dir, os.environ.get("SBN_DATA_DIR")) if p]
    info = DATASETS[name]
    if info.system_dir:
        roots.append(Path(info.system_dir))
    folders = []
    for root in roots:
        folders += [root, root / name]
    return folders


def load_dataset(name: str, split: str = "test", data_dir: str | os.PathLike | None = None,
                 limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 [K, 1, H, W], labels int64 [K])`` of a named dataset's split."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r} (known: {', '.join(DATASETS)})")
    info = DATASETS[name]
    if split not in info.files:
        raise DatasetError(f"dataset {name} has no split {split!r} "
                           f"(known: {', '.join(info.files)})")
    folders = dataset_folders(name, data_dir)
    image_stem, label_stem = info.files[split]
    images_path, labels_path = _find(image_stem, folders), _find(label_stem, folders)
    if images_path is None or labels_path is None:
        where = ("looked in " + ", ".join(str(f) for f in folders) if folders
                 else "no --data-dir or SBN_DATA_DIR given")
        raise DatasetError(f"dataset {name} ({split}) not found ({where}); "
                           f"{info.how_to_get}")
    return load_idx_pair(images_path, labels_path, limit)


def load_idx_pair(images_path, labels_path=None, limit: int | None = None):
    """Images ``[K, 1, H, W]`` (a channel axis is added to 3-D IDX images) and labels or None."""
    images = read_idx(images_path)
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim == 2:  # flat vectors
        images = images[:, :, None, None]
    if images.ndim != 4:
        raise DatasetError(f"{images_path}: expected images [K, H, W] or [K, C, H, W], got "
                           f"{list(images.shape)}")
    labels = None
    if labels_path is not None:
        labels = read_idx(labels_path)
        if labels.ndim != 1:
            raise DatasetError(f"{labels_path}: labels must be 1-D, got {list(labels.shape)}")
        if labels.shape[0] != images.shape[0]:
            raise DatasetError(f"{labels_path}: {labels.shape[0]} labels for "
                               f"{images.shape[0]} images in {images_path}")
        labels = labels.astype(np.int64)
    if limit is not None:
        if limit < 1:
            raise DatasetError(f"--limit must be at least 1, got {limit}")
        images = images[:limit]
        labels = None if labels is None else labels[:limit]
    return images, labels


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` (uint8 or int8, any shape) as an IDX file, gzip if the name ends in .gz."""
    array = np.ascontiguousarray(array)
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09}
    if array.dtype not in codes:
        raise ValueError(f"write_idx supports uint8 and int8, got {array.dtype}")
    header = bytes([0, 0, codes[array.dtype], array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())
