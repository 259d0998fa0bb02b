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
