import dataclasses
import gzip
import re

import numpy as np
import pytest

from hwgen.datasets import load_dataset, load_idx_pair, read_idx, write_idx
from hwgen.errors import DatasetError


@pytest.mark.parametrize("name", ["x.idx", "x.idx.gz"])
def test_idx_round_trip_raw_and_gzip(tmp_path, name):
    array = np.random.default_rng(0).integers(0, 256, (5, 3, 4), dtype=np.uint8)
    write_idx(tmp_path / name, array)
    np.testing.assert_array_equal(read_idx(tmp_path / name), array)


def test_gzip_is_detected_by_content_not_name(tmp_path):
    array = np.arange(6, dtype=np.uint8)
    write_idx(tmp_path / "a.gz", array)
    (tmp_path / "a.gz").rename(tmp_path / "plain-name")
    np.testing.assert_array_equal(read_idx(tmp_path / "plain-name"), array)


def test_idx_big_endian_int32(tmp_path):
    body = np.array([1, -2, 70000], dtype=">i4").tobytes()
    (tmp_path / "i").write_bytes(bytes([0, 0, 0x0C, 1]) + (3).to_bytes(4, "big") + body)
    assert read_idx(tmp_path / "i").tolist() == [1, -2, 70000]


@pytest.mark.parametrize("content,message", [
    (b"\x01\x02\x03\x04", "bad magic"),
    (bytes([0, 0, 8, 2, 0, 0, 0, 3]), "header is truncated"),
    (bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 2]), "says [3] (3 bytes) but the file holds 2"),
])
def test_malformed_idx(tmp_path, content, message):
    (tmp_path / "bad").write_bytes(content)
    with pytest.raises(DatasetError, match=re.escape(message)):
        read_idx(tmp_path / "bad")


def test_truncated_gzip(tmp_path):
    data = gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 200]) + bytes(200))
    (tmp_path / "t.gz").write_bytes(data[:20])
    with pytest.raises(DatasetError, match="cannot read"):
        read_idx(tmp_path / "t.gz")


def test_labels_must_match_images(tmp_path):
    write_idx(tmp_path / "i", np.zeros((4, 2, 2), np.uint8))
    write_idx(tmp_path / "l", np.zeros(3, np.uint8))
    with pytest.raises(DatasetError, match="3 labels for 4 images"):
        load_idx_pair(tmp_path / "i", tmp_path / "l")


def test_named_dataset_from_sbn_data_dir(tmp_path, monkeypatch):
    folder = tmp_path / "mnist"
    folder.mkdir()
    images = np.random.default_rng(1).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", images)
    write_idx(folder / "t10k-labels-idx1-ubyte", np.arange(7, dtype=np.uint8))
    monkeypatch.setenv("SBN_DATA_DIR", str(tmp_path))
    got, labels = load_dataset("mnist", "test", limit=5)
    assert got.shape == (5, 1, 28, 28) and labels.tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(got[:, 0], images[:5])


def test_missing_dataset_says_how_to_get_it(tmp_path, monkeypatch):
    from hwgen import datasets

    monkeypatch.delenv("SBN_DATA_DIR", raising=False)
    with pytest.raises(DatasetError, match="not found.*--data-dir"):
        load_dataset("mnist")
    absent = dataclasses.replace(datasets.DATASETS["fashion-mnist"],
                                 system_dir=str(tmp_path / "absent"))
    monkeypatch.setitem(datasets.DATASETS, "fashion-mnist", absent)
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", data_dir=tmp_path)


def test_fashion_mnist_from_debian(fashion_mnist_dir):
    images, labels = load_dataset("fashion-mnist", "test")
    assert images.shape == (10000, 1, 28, 28) and images.dtype == np.uint8
    assert sorted(np.unique(labels)) == list(range(10))
    train_images, _ = load_dataset("fashion-mnist", "train", limit=100)
    assert train_images.shape == (100, 1, 28, 28)


# ----------------------------------------------------------------------------- CIFAR-10

import os  # noqa: E402
import pickle  # noqa: E402
import struct  # noqa: E402

from hwgen.datasets import read_cifar_batch  # noqa: E402


def _cifar_arrays(n, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            [int(v) for v in rng.integers(0, 10, n)])


def write_cifar_batch(path, data, labels, protocol=2, str_keys=False):
    """A batch file like the official ones: a pickled dict (we made it, so dumping is fine)."""
    key = (lambda k: k) if str_keys else (lambda k: k.encode())
    batch = {key("batch_label"): b"synthetic batch", key("labels"): labels,
             key("data"): data, key("filenames"): [b"img_%d.png" % i for i in range(len(labels))]}
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=protocol)


def py2_cifar_pickle(data, labels) -> bytes:
    """The byte stream Python 2's cPickle (protocol 2) writes for an official batch:
    ``numpy.core.multiarray._reconstruct``, str (BINSTRING) keys and array bytes."""
    def s(b):
        return (b"U" + bytes([len(b)]) + b if len(b) < 256
                else b"T" + struct.pack("<I", len(b)) + b)

    def i(v):
        return b"J" + struct.pack("<i", v)

    n = data.shape[0]
    out = b"\x80\x02}q\x01(" + s(b"batch_label") + s(b"training batch 1 of 5")
    out += s(b"labels") + b"](" + b"".join(i(v) for v in labels) + b"e"
    out += s(b"data") + b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
    out += i(0) + b"\x85" + s(b"b") + b"\x87R("
    out += i(1) + i(n) + i(3072) + b"\x86" + b"cnumpy\ndtype\n" + s(b"u1") + i(0) + i(1)
    out += b"\x87R(" + i(3) + s(b"|") + b"NNN" + i(-1) + i(-1) + i(0) + b"tb"
    out += b"\x89" + s(data.tobytes()) + b"tb"
    out += s(b"filenames") + b"](" + b"".join(s(b"x%d.png" % k) for k in range(n)) + b"eu."
    return out


@pytest.fixture
def cifar_dir(tmp_path):
    """``tmp_path/cifar-10-batches-py`` with 5 training batches of 6 images and a test batch
    of 5; returns (folder, train data, train labels)."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    datas, labels = [], []
    for b in range(1, 6):
        d, y = _cifar_arrays(6, seed=b)
        write_cifar_batch(folder / f"data_batch_{b}", d, y)
        datas.append(d)
        labels += y
    d, y = _cifar_arrays(5, seed=9)
    write_cifar_batch(folder / "test_batch", d, y)
    return folder, np.concatenate(datas), labels


@pytest.mark.parametrize("where", ["folder", "parent", "env"])
def test_cifar10_loads_from_folder_or_parent(cifar_dir, monkeypatch, where):
    folder, data, labels = cifar_dir
    monkeypatch.delenv("SBN_DATA_DIR", raising=False)
    data_dir = {"folder": folder, "parent": folder.parent, "env": None}[where]
    if where == "env":
        monkeypatch.setenv("SBN_DATA_DIR", str(folder.parent))
    images, got = load_dataset("cifar10", "train", data_dir)
    assert images.shape == (30, 3, 32, 32) and images.dtype == np.uint8
    assert got.dtype == np.int64 and got.tolist() == labels
    # CHW: the first 1024 values of a row are the red plane, row-major
    np.testing.assert_array_equal(images[7, 0].reshape(-1), data[7, :1024])
    np.testing.assert_array_equal(images[7, 2, 31], data[7, 2048 + 31 * 32:])
    test_images, test_labels = load_dataset("cifar10", "test", data_dir)
    assert test_images.shape == (5, 3, 32, 32) and len(test_labels) == 5


@pytest.mark.parametrize("kind", ["fifo", "folder", "partial"])
def test_a_cifar_batch_that_is_no_file_is_refused_not_skipped(cifar_dir, kind):
    """A FIFO or folder named ``test_batch`` in the parent made the search take the nested
    folder's file instead (round 17 of the fuzz); a folder with some batches but not all
    is named too."""
    folder, _, _ = cifar_dir
    parent = folder.parent
    if kind == "fifo":
        os.mkfifo(parent / "test_batch")
    elif kind == "folder":
        (parent / "test_batch").mkdir()
    else:
        (parent / "data_batch_1").write_bytes((folder / "data_batch_1").read_bytes())
    split = "train" if kind == "partial" else "test"
    why = ("has data_batch_1 but not data_batch_2" if kind == "partial"
           else "test_batch: not a regular file")
    with pytest.raises(DatasetError, match=why):
        load_dataset("cifar10", split, parent)


@pytest.mark.parametrize("protocol, str_keys", [(2, False), (2, True), (4, False),
                                                (pickle.HIGHEST_PROTOCOL, True)])
def test_cifar_batch_pickle_protocols(tmp_path, protocol, str_keys):
    data, labels = _cifar_arrays(4)
    write_cifar_batch(tmp_path / "b", data, labels, protocol, str_keys)
    images, got = read_cifar_batch(tmp_path / "b")
    np.testing.assert_array_equal(images.reshape(4, -1), data)
    assert got.tolist() == labels


def test_cifar_batch_python2_stream(tmp_path):
    data, labels = _cifar_arrays(3)
    (tmp_path / "b").write_bytes(py2_cifar_pickle(data, labels))
    images, got = read_cifar_batch(tmp_path / "b")
    np.testing.assert_array_equal(images.reshape(3, -1), data)
    assert got.tolist() == labels


def test_cifar_limit_reads_only_needed_batches(cifar_dir):
    folder, data, labels = cifar_dir
    (folder / "data_batch_2").write_bytes(b"corrupt")
    images, got = load_dataset("cifar10", "train", folder, limit=4)
    assert images.shape == (4, 3, 32, 32) and got.tolist() == labels[:4]
    with pytest.raises(DatasetError, match="data_batch_2: not a CIFAR-10 python batch"):
        load_dataset("cifar10", "train", folder, limit=8)


class _Evil:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _EvilEval:
    def __reduce__(self):
        return (eval, ("__import__('os').system('touch pwned')",))


@pytest.mark.parametrize("make", ["os.system", "eval", "codec", "nested"])
def test_hostile_cifar_pickle_is_rejected_without_running(tmp_path, monkeypatch, make):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "pwned"
    data, labels = _cifar_arrays(2)
    payload = {"os.system": _Evil(f"touch {marker}"), "eval": _EvilEval()}.get(make)
    if make == "codec":  # an allowed global called with a codec other than latin1
        blob = pickle.dumps({b"data": data, b"labels": labels}, protocol=2)
        blob = blob.replace(b"X\x06\x00\x00\x00latin1", b"X\x06\x00\x00\x00rot_13", 1)
    else:
        obj = payload if make != "nested" else {b"data": data, b"labels": [_Evil(
            f"touch {marker}")]}
        blob = pickle.dumps(obj, protocol=2)
    (tmp_path / "test_batch").write_bytes(blob)
    with pytest.raises(DatasetError) as err:
        read_cifar_batch(tmp_path / "test_batch")
    message = str(err.value)
    assert len(message.splitlines()) == 1 and "not a valid CIFAR-10 python batch" in message
    assert ("refusing to load global" in message) or ("not allowed" in message)
    assert not marker.exists()


@pytest.mark.parametrize("data, labels, message", [
    (np.zeros((3, 3000), np.uint8), [0, 1, 2], "must be uint8 [N, 3072], got uint8 [3, 3000]"),
    (np.zeros((3, 3072), np.float32), [0, 1, 2], "got float32 [3, 3072]"),
    (np.zeros((3, 3072), np.uint8), [0, 1], "2 labels for 3 images"),
    (np.zeros((2, 3072), np.uint8), [0, 10], "labels must be in 0..9"),
    (np.zeros((2, 3072), np.uint8), [0, "1"], "list of ints"),
    ([[0] * 3072], [0], "got list"),
])
def test_cifar_batch_wrong_contents(tmp_path, data, labels, message):
    write_cifar_batch(tmp_path / "b", data, labels)
    with pytest.raises(DatasetError, match=re.escape(message)):
        read_cifar_batch(tmp_path / "b")


@pytest.mark.parametrize("content, message", [
    (b"", "not a binary pickle"),
    (b"data_batch", "not a binary pickle"),
    (pickle.dumps([1, 2], protocol=2), "a CIFAR-10 batch is a dict, got list"),
    (pickle.dumps({b"data": 1}, protocol=2), "lacks 'data' or 'labels'"),
])
def test_cifar_batch_not_a_batch(tmp_path, content, message):
    (tmp_path / "b").write_bytes(content)
    with pytest.raises(DatasetError, match=re.escape(message)):
        read_cifar_batch(tmp_path / "b")


def test_cifar_batch_truncated(tmp_path):
    data, labels = _cifar_arrays(2)
    write_cifar_batch(tmp_path / "b", data, labels)
    (tmp_path / "b").write_bytes((tmp_path / "b").read_bytes()[:-4000])
    with pytest.raises(DatasetError, match="not a valid CIFAR-10 python batch"):
        read_cifar_batch(tmp_path / "b")


def test_cifar10_missing_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv("SBN_DATA_DIR", raising=False)
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"")
    with pytest.raises(DatasetError) as err:
        load_dataset("cifar10", "train", tmp_path)
    message = str(err.value)
    assert len(message.splitlines()) == 1
    assert "data_batch_1" in message and "cifar-10-batches-py" in message
    assert "cifar-10-python.tar.gz" in message


def test_an_explicit_data_dir_is_the_only_place_looked_in(tmp_path, monkeypatch):
    """Fuzz round 25: a --data-dir holding only the training split silently took the test
    split from the system's folder (or $SBN_DATA_DIR), and an empty --data-dir all of it."""
    from hwgen.datasets import DatasetError, load_dataset, write_idx

    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3, np.uint8))
    monkeypatch.setenv("SBN_DATA_DIR", str(tmp_path))
    assert len(load_dataset("fashion-mnist", "train", tmp_path)[0]) == 3
    with pytest.raises(DatasetError, match=f"not found \\(looked in {tmp_path}"):
        load_dataset("fashion-mnist", "test", tmp_path)
    with pytest.raises(DatasetError, match="--data-dir is empty"):
        load_dataset("fashion-mnist", "test", "")


def test_float_images_and_labels_are_refused_from_the_header(tmp_path):
    """A float IDX is refused before its data is read (a 128 MiB float file was read whole
    first): the header alone, with no data behind it, gets the dtype error."""
    import struct

    from hwgen.datasets import load_idx_pair
    from hwgen.errors import DatasetError

    header_only = tmp_path / "f.idx"
    header_only.write_bytes(bytes([0, 0, 0x0E, 3]) + struct.pack(">III", 1000, 28, 28))
    with pytest.raises(DatasetError, match=r"f\.idx: images have dtype float64; expected "
                                           r"unsigned integers"):
        load_idx_pair(header_only)
    images = tmp_path / "i.idx"
    images.write_bytes(bytes([0, 0, 0x08, 3]) + struct.pack(">III", 2, 2, 2) + bytes(8))
    labels = tmp_path / "l.idx"
    labels.write_bytes(bytes([0, 0, 0x0D, 1]) + struct.pack(">I", 2))
    with pytest.raises(DatasetError, match=r"l\.idx: labels must be integers, got float32"):
        load_idx_pair(images, labels)


def test_wide_idx_values_are_swapped_in_place(tmp_path):
    import struct

    from hwgen.idx import read_idx

    path = tmp_path / "w.idx"
    values = np.array([[1, -2, 70000]], ">i4")
    path.write_bytes(bytes([0, 0, 0x0C, 2]) + struct.pack(">II", 1, 3) + values.tobytes())
    array = read_idx(path)
    assert array.dtype == np.dtype("=i4") and array.tolist() == [[1, -2, 70000]]


def test_a_limit_keeps_only_the_images_it_takes(tmp_path):
    """With ``limit``, only the images taken are kept: a 1 MB gzip of 171,196 blank images
    (128 MiB inflated) cost training 255 MB more for 256 images (round 29 of the fuzz). The
    rest of a gzip stream is still inflated (a chunk at a time) and checked to its end: a
    damaged one trained with a limit (round 30). The headers must still agree."""
    import tracemalloc

    images = np.zeros((20000, 28, 28), np.uint8)
    images[:, 3, 3] = np.arange(20000) % 256
    labels = (np.arange(20000) % 10).astype(np.uint8)
    write_idx(tmp_path / "images.gz", images)
    write_idx(tmp_path / "labels", labels)
    tracemalloc.start()
    got, got_labels = load_idx_pair(tmp_path / "images.gz", tmp_path / "labels", limit=100)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert np.array_equal(got[:, 0], images[:100]) and np.array_equal(got_labels, labels[:100])
    assert peak < 8 << 20, peak  # the whole file inflates to 15.7 MB
    packed = (tmp_path / "images.gz").read_bytes()
    for name, damaged in (("cut", packed[:-10]), ("crc", packed[:-8] + bytes(8)),
                          ("garbage", packed + b"garbage")):
        (tmp_path / name).write_bytes(damaged)
        with pytest.raises(DatasetError, match="corrupt or truncated gzip stream"):
            load_idx_pair(tmp_path / name, tmp_path / "labels", limit=100)
    write_idx(tmp_path / "short-labels", labels[:1999])
    with pytest.raises(DatasetError, match="1999 labels for 20000 images"):
        load_idx_pair(tmp_path / "images.gz", tmp_path / "short-labels", limit=100)
    with pytest.raises(DatasetError, match="holds 15680001 bytes"):  # a raw file: its size
        (tmp_path / "raw").write_bytes(_idx_bytes(images) + b"\0")
        load_idx_pair(tmp_path / "raw", tmp_path / "labels", limit=100)
    import gzip as gzip_module
    (tmp_path / "less.gz").write_bytes(gzip_module.compress(_idx_bytes(images)[:-5]))
    with pytest.raises(DatasetError, match="holds 15679995 bytes"):
        load_idx_pair(tmp_path / "less.gz", tmp_path / "labels", limit=100)


def _idx_bytes(array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big")
                                                      for d in array.shape)
    return header + array.tobytes()
