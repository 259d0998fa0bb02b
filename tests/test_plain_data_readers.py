"""The two readers of files that other tools write as pickles, neither of which unpickles:
``hwgen.pickle_data`` (CIFAR-10 batches) and ``train.state_archive`` (checkpoints).

Properties: what the writer makes reads back equal (pickle protocols 0-5; every value kind a
checkpoint holds), and a damaged file is a result or the reader's own error, never another
exception."""

from __future__ import annotations

import math
import pickle
import random

import numpy as np
import pytest

from hwgen.pickle_data import PickleDataError, read_pickled_data

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

_SETTINGS = dict(deadline=None, database=None, suppress_health_check=list(HealthCheck))
_DTYPES = ["u1", "i1", "<u2", ">i2", "<i4", "<i8", ">u8", "<f2", "<f4", ">f8", "?"]


def _arrays():
    return st.sampled_from(_DTYPES).flatmap(lambda d: hnp.arrays(
        np.dtype(d), hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)))


def _plain(leaves):
    keys = st.one_of(st.text(max_size=6), st.integers(-(1 << 63), (1 << 63) - 1))
    return st.recursive(leaves, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.tuples(inner, inner),
        st.dictionaries(keys, inner, max_size=4)), max_leaves=12)


_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-(1 << 63), (1 << 63) - 1),
                    st.floats(allow_nan=True), st.text(max_size=8), st.binary(max_size=8))


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return (isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
                and a.tobytes() == b.tobytes())
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


@settings(max_examples=150, **_SETTINGS)
@given(_plain(_LEAVES | _arrays()), st.integers(0, pickle.HIGHEST_PROTOCOL))
def test_plain_data_and_arrays_read_back_from_every_protocol(value, protocol):
    assert _same(read_pickled_data(pickle.dumps(value, protocol=protocol)), value)


@settings(max_examples=300, **_SETTINGS)
@given(st.integers(0, pickle.HIGHEST_PROTOCOL), st.randoms(use_true_random=False))
def test_a_damaged_stream_is_data_or_one_error(protocol, rnd: random.Random):
    batch = {b"data": np.arange(24, dtype=np.uint8).reshape(2, 12), "labels": [1, 2],
             "x": (1.5, None, True, "s", b"b"), 7: [[1], {}]}
    stream = bytearray(pickle.dumps(batch, protocol=protocol))
    for _ in range(rnd.randint(1, 6)):
        i = rnd.randrange(len(stream))
        kind = rnd.random()
        if kind < 0.4:
            stream[i] = rnd.randrange(256)
        elif kind < 0.6:
            del stream[i:i + rnd.randint(1, 8)]
        elif kind < 0.8:
            stream[i:i] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 8)))
        else:
            j = rnd.randrange(len(stream))
            stream[i:i] = stream[j:j + rnd.randint(1, 20)]
    try:
        read_pickled_data(bytes(stream))
    except PickleDataError:
        pass


_ARRAY = pickle.dumps(np.zeros(3, np.uint8), protocol=2)


_HALF, _ONE = b"G?\xe0" + bytes(6), b"G?\xf0" + bytes(6)   # BINFLOAT 0.5 and 1.0


@pytest.mark.parametrize("old, new", [(b"b\x89", b"bN"), (b"b\x89", b"b" + _HALF),
                                      (b"(K\x01K\x03", b"(" + _ONE + b"K\x03")])
def test_an_array_state_numpy_would_refuse_is_refused(old, new):
    """An order flag of None or 0.5, or a state version of 1.0, were taken (bool(flag)
    read the data in Fortran order) where numpy raises (round 19 of the fuzz)."""
    assert _ARRAY.count(old) == 1
    assert read_pickled_data(_ARRAY).tolist() == [0, 0, 0]
    with pytest.raises(PickleDataError, match="array state"):
        read_pickled_data(_ARRAY.replace(old, new))


@pytest.mark.parametrize("stream, why", [
    (b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.", "refusing to load global os.system"),
    (b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x8c\x04eval\x93.",
     "refusing to load global builtins.eval"),
    (b"(i__main__\nX\n.", "opcode INST is not allowed"),
    (b"\x80\x02cnumpy\nndarray\nK\x01\x85R.", "numpy.ndarray cannot be called"),
    (b"\x80\x02X\x01\x00\x00\x00aQ.", "opcode BINPERSID is not allowed"),
    (b"\x80\x02\x82\x01.", "opcode EXT1 is not allowed"),
    (b"\x80\x04\x8f\x94.", "opcode EMPTY_SET is not allowed"),
    (b"\x80\x02]q\x00.", None),
    # memo indices that all hash alike made each PUT compare with every earlier one
    # (80,000 of them took 100 s; round 17 of the fuzz)
    (b"\x80\x02N" + b"".join(b"p%d\n" % (k * (2**61 - 1)) for k in range(1, 4)) + b".",
     "a memo index outside 0..2\\*\\*32-1 is not allowed"),
])
def test_what_a_stream_may_not_do(stream, why):
    if why is None:
        assert read_pickled_data(stream) == []
        return
    with pytest.raises(PickleDataError, match=why):
        read_pickled_data(stream)


# ----------------------------------------------------------------------------- checkpoints

torch = pytest.importorskip("torch")
from hwgen.errors import UserError  # noqa: E402
from train.state_archive import read_state, write_state  # noqa: E402

_TENSORS = st.sampled_from(["float32", "float64", "float16", "int64", "int32", "bool"]).flatmap(
    lambda d: hnp.arrays(np.dtype(d), hnp.array_shapes(min_dims=0, max_dims=3, min_side=0,
                                                       max_side=3))
).map(torch.from_numpy)
_STATE_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-(1 << 70), 1 << 70),
                          st.floats(allow_nan=True), st.text(max_size=8), _TENSORS)


def _same_state(a, b) -> bool:
    if torch.is_tensor(a):
        return (torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape
                and bool(torch.equal(a, b) or (a.is_floating_point() and torch.equal(
                    torch.nan_to_num(a, nan=7.0), torch.nan_to_num(b, nan=7.0)))))
    if isinstance(a, (list, tuple)):
        return (type(a) is type(b) and len(a) == len(b)
                and all(_same_state(x, y) for x, y in zip(a, b)))
    if isinstance(a, dict):
        return (type(b) is dict and a.keys() == b.keys()
                and all(_same_state(a[k], b[k]) for k in a))
    return _same(a, b)


@settings(max_examples=60, **_SETTINGS)
@given(_plain(_STATE_LEAVES).map(lambda v: {"state": v, "$odd": {0: v}}))
def test_a_training_state_reads_back_equal(tmp_path_factory, state):
    path = tmp_path_factory.mktemp("state") / "c.pt"
    write_state(state, path)
    assert _same_state(read_state(path), state)


@settings(max_examples=150, **_SETTINGS)
@given(st.randoms(use_true_random=False))
def test_a_damaged_checkpoint_is_one_error(tmp_path_factory, rnd: random.Random):
    folder = tmp_path_factory.mktemp("damaged")
    state = {"model": {"w": torch.ones(3, 4)}, "opt": {0: {"step": torch.tensor(3.0)}},
             "betas": (0.9, 0.999), "nu": math.inf, "history": [{"loss": 0.5}]}
    write_state(state, folder / "c.pt")
    data = bytearray((folder / "c.pt").read_bytes())
    for _ in range(rnd.randint(1, 4)):
        data[rnd.randrange(len(data))] = rnd.randrange(256)
    (folder / "d.pt").write_bytes(bytes(data))
    try:
        read_state(folder / "d.pt")
    except UserError as err:
        assert len(str(err).splitlines()) == 1


def test_a_checkpoint_of_many_small_values_is_refused_before_parsing(tmp_path):
    """A 10 MB checkpoint whose JSON was ``[[],[],...]`` took 764 MiB (``json.loads`` makes
    ~80 bytes per empty list, and the depth scan's regular expressions ~60 per match):
    values are counted before parsing, in a few bytes per character (round 17 of the
    fuzz)."""
    import tracemalloc

    from train.checkpoint import load_checkpoint

    body = ('{"format": "sbn-train-checkpoint", "version": 2, "state": ['
            + "[]," * (1 << 20) + "[]]}").encode()
    path = tmp_path / "bomb.pt"
    with open(path, "wb") as f:
        np.savez(f, state=np.frombuffer(body, np.uint8))
    tracemalloc.start()
    try:
        with pytest.raises(UserError, match=r"holds about \d{7} values, more than the limit"):
            load_checkpoint(path, epochs=1000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40 * len(body), peak


def test_members_whose_data_add_up_past_the_file_are_refused(tmp_path):
    """Members nested in one another (each holding the next one's header and data, every
    CRC valid) made a 9.5 MB checkpoint take 2.5 GB: each was read in full (round 18 of
    the fuzz). Their data may add up to at most the file's size."""
    import zipfile

    from hwgen.archive import _check_members
    from hwgen.errors import ModelFormatError

    infos = []
    for name, offset in (("a.npy", 0), ("b.npy", 40)):
        info = zipfile.ZipInfo(name)
        info.header_offset, info.compress_size, info.file_size = offset, 600, 600
        infos.append(info)
    _check_members(tmp_path, infos[:1], 1000, 1 << 20, {}, "checkpoint", True)
    with pytest.raises(ModelFormatError, match=r"members' data add up to more than the "
                                               r"file's 1000 bytes \(members overlap\)"):
        _check_members(tmp_path, infos, 1000, 1 << 20, {}, "checkpoint", True)
