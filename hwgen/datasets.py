"""Image datasets, NumPy only (shared by ``hwgen`` and ``train``).

- :func:`~hwgen.idx.read_idx` (re-exported here) reads an IDX file (the MNIST family's
  format), gzip-compressed or raw, bounded and checked; :func:`load_idx_pair` adds the
  rules for images and labels (at least one image, integer labels >= 0, one per image).
- :func:`read_cifar_batch` reads one CIFAR-10 "python version" batch file (a pickle)
  without unpickling it: :func:`hwgen.pickle_data.read_pickled_data` interprets its opcodes
  and can build nothing but dicts, lists, strings, numbers and numeric NumPy arrays.
- :func:`load_dataset` finds a named dataset (``fashion-mnist``, ``mnist``, ``cifar10``)
  and returns ``(images uint8 [K, C, H, W], labels int64 [K])`` for a split
  (``train``/``test``): ``[K, 1, 28, 28]`` for the MNIST family, ``[K, 3, 32, 32]`` for
  CIFAR-10.

Where a dataset is looked for, first match wins: the ``data_dir`` argument (``--data-dir``),
then ``$SBN_DATA_DIR``, then the dataset's system folder (Debian's ``dataset-fashion-mnist``
installs ``/usr/share/datasets/fashion-mnist``). In each folder ``<dir>/`` and
``<dir>/<name>/`` are tried, and for CIFAR-10 also ``<dir>/cifar-10-batches-py/`` and
``<dir>/cifar10/cifar-10-batches-py/`` (the folder the official archive unpacks to).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DatasetError
from .files import folder_problem, read_bounded
from .idx import read_idx, read_idx_prefix, write_idx
from .pickle_data import PickleDataError, read_pickled_data

#: Images one command takes at once (after ``--limit``): their predictions and labels
#: stay within a few tens of MiB.
MAX_IMAGES = 1 << 22

__all__ = ["DATASETS", "DatasetInfo", "dataset_folders", "load_cifar_batches", "load_dataset",
           "load_idx_pair", "read_cifar_batch", "read_idx", "write_idx"]

@dataclass(frozen=True)
class DatasetInfo:
    name: str
    classes: tuple[str, ...]
    files: dict  # split -> (images file stem, labels file stem)
    system_dir: str | None
    how_to_get: str
    format: str = "idx"  # "idx" (files: split -> (images, labels)) or "cifar" (batch files)
    subdirs: tuple[str, ...] = ()  # more folder names tried under each root
    shape: tuple[int, int, int] = (1, 28, 28)  # image shape [C, H, W]


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
    "cifar10": DatasetInfo(
        "cifar10",
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
         "truck"),
        {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
        None,
        "download and unpack the CIFAR-10 python version (cifar-10-python.tar.gz from "
        "https://www.cs.toronto.edu/~kriz/cifar.html) and pass --data-dir / set SBN_DATA_DIR "
        "to the cifar-10-batches-py folder or its parent",
        format="cifar", subdirs=("cifar-10-batches-py",), shape=(3, 32, 32)),
}


def _find(stem: str, folders: list[Path]) -> Path | None:
    """The first ``stem`` or ``stem.gz`` in ``folders``; DatasetError when the first such
    name is there but is not a regular file (a FIFO, a folder): it is not skipped, since
    a later folder's file would silently stand in for it."""
    for folder in folders:
        for name in (stem, stem + ".gz"):
            path = folder / name
            if os.path.isfile(path):  # (os.path's tests: no error for a too long name)
                return path
            if os.path.lexists(path):
                raise DatasetError(f"{path}: not a regular file")
    return None


def dataset_folders(name: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for dataset ``name``, in order: those of ``data_dir`` alone when
    it is given (a split it lacks is an error, never taken from another folder), else of
    ``$SBN_DATA_DIR`` and the system's folder. DatasetError when ``data_dir`` or
    ``$SBN_DATA_DIR`` is given but is not a folder."""
    roots = []
    explicit = data_dir is not None
    for origin, value in (("--data-dir", data_dir),
                          ("SBN_DATA_DIR", None if explicit else os.environ.get("SBN_DATA_DIR"))):
        if origin == "--data-dir" and explicit and not str(value):
            raise DatasetError("--data-dir is empty: give a folder")
        if value:
            problem = folder_problem(value)
            if problem:
                raise DatasetError(f"{origin} {value}: {problem}")
            roots.append(Path(value))
    info = DATASETS[name]
    if info.system_dir and not explicit:
        roots.append(Path(info.system_dir))
    folders = []
    for root in roots:
        for base in (root, root / name):
            folders += [base] + [base / sub for sub in info.subdirs]
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
    if info.format == "cifar":
        stems = info.files[split]
        folder = _cifar_folder(name, split, stems, folders)
        if folder is None:
            where = ("looked in " + ", ".join(str(f) for f in folders) if folders
                     else "no --data-dir or SBN_DATA_DIR given")
            raise DatasetError(f"dataset {name} ({split}: {', '.join(stems)}) not found "
                               f"({where}); {info.how_to_get}")
        return _known_labels(name, *load_cifar_batches([folder / s for s in stems], limit))
    image_stem, label_stem = info.files[split]
    for folder in folders:   # the first folder with either file must hold both
        images_path, labels_path = _find(image_stem, [folder]), _find(label_stem, [folder])
        if images_path is not None and labels_path is not None:
            return _known_labels(name, *load_idx_pair(images_path, labels_path, limit))
        if images_path is not None or labels_path is not None:
            missing = label_stem if labels_path is None else image_stem
            raise DatasetError(f"dataset {name} ({split}): {folder} has "
                               f"{(images_path or labels_path).name} but not {missing}[.gz]")
    where = ("looked in " + ", ".join(str(f) for f in folders) if folders
             else "no --data-dir or SBN_DATA_DIR given")
    raise DatasetError(f"dataset {name} ({split}) not found ({where}); {info.how_to_get}")


def _cifar_folder(name: str, split: str, stems, folders: list[Path]) -> Path | None:
    """The first folder holding any of a CIFAR-10 split's batch files; it must hold all of
    them, as regular files (a FIFO or folder in a batch's place is an error, not skipped:
    a later folder's file would silently stand in for it)."""
    for folder in folders:
        present = [stem for stem in stems if os.path.lexists(folder / stem)]
        if not present:
            continue
        for stem in stems:
            path = folder / stem
            if not os.path.lexists(path):
                raise DatasetError(f"dataset {name} ({split}): {folder} has {present[0]} but "
                                   f"not {stem}")
            if not os.path.isfile(path):
                raise DatasetError(f"{path}: not a regular file")
        return folder
    return None


def _known_labels(name: str, images: np.ndarray, labels: np.ndarray):
    """``(images, labels)``; DatasetError when a label is not one of dataset ``name``'s
    classes."""
    classes = len(DATASETS[name].classes)
    if labels.size and int(labels.max()) >= classes:
        raise DatasetError(f"dataset {name}: label {int(labels.max())} is not one of its "
                           f"{classes} classes (0..{classes - 1})")
    return images, labels


def load_idx_pair(images_path, labels_path=None, limit: int | None = None):
    """Images ``[K, 1, H, W]`` (a channel axis is added to 3-D IDX images) and labels or None.

    Both files are read with :func:`~hwgen.idx.read_idx_prefix`: with ``limit``, only their
    first ``limit`` entries (the headers must still agree). Raises :class:`DatasetError` when
    the images are not ``[K, N]``, ``[K, H, W]`` or ``[K, C, H, W]`` with ``K >= 1``, or the
    labels are not 1-D integers (IDX types 08/09/0B/0C; float labels are refused, NaN or
    not) in ``[0, 2**31)``, one per image, or more than :data:`MAX_IMAGES` images remain
    after ``limit``.
    """
    if limit is not None and limit < 1:
        raise DatasetError(f"--limit must be at least 1, got {limit}")
    images, count = read_idx_prefix(images_path, limit, integers="images")
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim == 2:  # flat vectors
        images = images[:, :, None, None]
    if images.ndim != 4:
        raise DatasetError(f"{images_path}: expected images [K, H, W] or [K, C, H, W], got "
                           f"{list(images.shape)}")
    if images.shape[0] == 0:
        raise DatasetError(f"{images_path}: holds no images (the IDX header says "
                           f"{list(images.shape)})")
    if images.shape[0] > MAX_IMAGES:
        raise DatasetError(f"{images_path}: {images.shape[0]} images, more than the "
                           f"{MAX_IMAGES} the tools take at once (use --limit, or split "
                           f"the file)")
    labels = None
    if labels_path is not None:
        labels, declared = read_idx_prefix(labels_path, limit, integers="labels")
        if labels.ndim != 1:
            raise DatasetError(f"{labels_path}: labels must be 1-D, got {list(labels.shape)}")
        if labels.dtype.kind not in "iu":
            raise DatasetError(f"{labels_path}: labels must be integers, got "
                               f"{labels.dtype.name} values")
        if declared != count:
            raise DatasetError(f"{labels_path}: {declared} labels for "
                               f"{count} images in {images_path}")
        labels = labels[:images.shape[0]].astype(np.int64)
        if labels.min() < 0:
            raise DatasetError(f"{labels_path}: label {int(labels.min())} is negative; labels "
                               f"are class indices")
    return images, labels


# ----------------------------------------------------------------------------- CIFAR-10

_CIFAR_CLASSES = 10
_CIFAR_SHAPE = (3, 32, 32)
_CIFAR_ROW = 3 * 32 * 32
_MAX_CIFAR_BATCH_BYTES = 1 << 28  # an official batch is 31 MB


def _key(d: dict, name: str, path):
    """``d[name]`` or ``d[b"name"]`` (None if neither); DatasetError if both are there."""
    present = [key for key in (name, name.encode("ascii")) if key in d]
    if len(present) == 2:
        raise DatasetError(f"{path}: CIFAR-10 batch holds both {name!r} and b{name!r}")
    return d[present[0]] if present else None


def read_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch file -> ``(images uint8 [N, 3, 32, 32], labels int64 [N])``.

    The file is a pickle (protocol 2) of a dict with ``data`` (uint8 ``[N, 3072]``: per image
    1024 red, then 1024 green, then 1024 blue values, each plane row-major 32x32) and
    ``labels`` (N ints in 0..9); ``batch_label`` and ``filenames`` are ignored. Keys may be
    ``str`` or ``bytes``. It is read with :func:`hwgen.pickle_data.read_pickled_data`, never
    unpickled; anything else raises :class:`DatasetError` with one line.
    """
    path = Path(path)
    raw = read_bounded(path, _MAX_CIFAR_BATCH_BYTES, DatasetError,
                       reason=", not a CIFAR-10 batch")
    if raw[:1] != b"\x80":
        raise DatasetError(f"{path}: not a CIFAR-10 python batch (not a binary pickle)")
    try:
        batch = read_pickled_data(raw)
    except PickleDataError as err:
        raise DatasetError(f"{path}: not a valid CIFAR-10 python batch ({err})") from None
    if not isinstance(batch, dict):
        raise DatasetError(f"{path}: a CIFAR-10 batch is a dict, got {type(batch).__name__}")
    data, labels = _key(batch, "data", path), _key(batch, "labels", path)
    if data is None or labels is None:
        raise DatasetError(f"{path}: CIFAR-10 batch lacks 'data' or 'labels'")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != _CIFAR_ROW:
        what = (f"{data.dtype} {list(data.shape)}" if isinstance(data, np.ndarray)
                else type(data).__name__)
        raise DatasetError(f"{path}: CIFAR-10 'data' must be uint8 [N, {_CIFAR_ROW}], got "
                           f"{what}")
    if not isinstance(labels, list) or not all(type(v) is int for v in labels):
        raise DatasetError(f"{path}: CIFAR-10 'labels' must be a list of ints")
    if len(labels) != data.shape[0]:
        raise DatasetError(f"{path}: {len(labels)} labels for {data.shape[0]} images")
    bad = next((v for v in labels if not 0 <= v < _CIFAR_CLASSES), None)
    if bad is not None:
        shown = bad if abs(bad) < 10**18 else f"a {len(str(abs(bad)))}-digit number"
        raise DatasetError(f"{path}: CIFAR-10 labels must be in 0..{_CIFAR_CLASSES - 1}, got "
                           f"{shown}")
    labels = np.asarray(labels, dtype=np.int64)
    images = np.ascontiguousarray(data).reshape((data.shape[0],) + _CIFAR_SHAPE)
    return images, labels


def load_cifar_batches(paths, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated batches (in the given order); with ``limit`` only the first ``limit``
    images, reading no more files than needed."""
    if limit is not None and limit < 1:
        raise DatasetError(f"--limit must be at least 1, got {limit}")
    images, labels, count = [], [], 0
    for path in paths:
        x, y = read_cifar_batch(path)
        images.append(x)
        labels.append(y)
        count += x.shape[0]
        if limit is not None and count >= limit:
            break
    images = np.concatenate(images)[:limit]
    labels = np.concatenate(labels)[:limit]
    if not len(images):
        raise DatasetError(f"{', '.join(str(p) for p in paths)}: hold no images")
    return images, labels
