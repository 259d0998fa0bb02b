"""Hostile model archives, graphs, declared shapes and image/label files (issue 16, 1/3/4).

Every case must end in the project's user error (one line), quickly and without allocating
what the file claims; a few also run ``python -m hwgen`` in a child process capped at 1 GiB
of address space and a timeout, and check: exit 2, exactly one ``error:`` line, no traceback.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import resource
import struct
import subprocess
import sys
import time
import zipfile
import zlib

import numpy as np
import pytest

from hwgen import model as model_io
from hwgen.model import limits as model_limits
from hwgen.archive import read_npz
from hwgen.datasets import load_idx_pair, read_cifar_batch, read_idx, write_idx
from hwgen.errors import DatasetError, ModelFormatError
from hwgen.jsontext import nesting_depth
from hwgen.random_models import conv, dense, pool, random_model

from .conftest import ROOT

# ----------------------------------------------------------------------------- helpers


def _cap_memory():
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def cli_rejects(*argv, timeout=60) -> str:
    """Run ``python -m hwgen ARGV`` capped at 1 GiB; expect one ``error:`` line, exit 2."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "hwgen", *map(str, argv)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env,
                          preexec_fn=_cap_memory)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def npy(array) -> bytes:
    import io

    stream = io.BytesIO()
    np.lib.format.write_array(stream, np.asarray(array), allow_pickle=False)
    return stream.getvalue()


def npy_header(header: str) -> bytes:
    """A version 1.0 .npy header holding ``header`` (a dict literal, padded as numpy does)."""
    text = header.encode("latin1")
    text += b" " * ((-(10 + len(text) + 1)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


def member(name, data=b"", method=0, raw=None, **fields) -> dict:
    """One zip member: ``data`` stored or deflated (``method`` 8), or given ``raw`` bytes.
    ``fields`` override what the headers say: flags, cd_method, crc, csize, size, offset."""
    if raw is None:
        if method == 8:
            packer = zlib.compressobj(6, zlib.DEFLATED, -15)
            raw = packer.compress(data) + packer.flush()
        else:
            raw = data
    return dict(dict(name=name, raw=raw, method=method, flags=0, crc=zlib.crc32(data),
                     csize=len(raw), size=len(data)), **fields)


def zip_bytes(members: list[dict]) -> bytes:
    """A zip archive written field by field, so that every header can lie."""
    out, central = bytearray(), bytearray()
    for m in members:
        name = m["name"].encode()
        offset = len(out)
        out += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, m["flags"], m["method"], 0,
                           0x21, m["crc"], len(m["raw"]), m["size"], len(name), 0)
        out += name + m["raw"]
        central += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, m["flags"],
                               m.get("cd_method", m["method"]), 0, 0x21, m["crc"],
                               m["csize"], m["size"], len(name), 0, 0, 0, 0, 0,
                               m.get("offset", offset)) + name
    n = len(members)
    return bytes(out + central + struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, n, n,
                                             len(central), len(out), 0))


def small_model():
    rng = np.random.default_rng(0)
    return random_model(rng, (1, 6, 6), [conv(3, 3, padding=1, pad_value=1), pool(2),
                                         dense(4)], classes=3, binarize_at=100)


def model_members(graph_change=None, graph_text=None) -> list[dict]:
    """The members of a valid small model, its graph optionally changed."""
    arrays = model_io.to_arrays(small_model())
    graph = json.loads(str(arrays["graph"]))
    if graph_change:
        graph_change(graph)
    text = graph_text if graph_text is not None else json.dumps(graph)
    arrays["graph"] = np.array(text)
    return [member(f"{key}.npy", npy(value), 8) for key, value in arrays.items()]


def named(members: list[dict], name: str) -> int:
    return next(i for i, m in enumerate(members) if m["name"] == name)


def write_zip(tmp_path, members, name="m.npz"):
    path = tmp_path / name
    path.write_bytes(zip_bytes(members))
    return path


def rejects(path, pattern, **kwargs) -> str:
    with pytest.raises(ModelFormatError) as err:
        model_io.load(path, **kwargs)
    message = str(err.value)
    assert len(message.splitlines()) == 1 and str(path) in message
    assert re.search(pattern, message), message
    return message


@pytest.fixture
def model_path(tmp_path):
    return model_io.save(small_model(), tmp_path / "good.npz")


def test_handmade_zip_of_a_valid_model_loads(tmp_path):
    """The hand-written zip format of these tests is one the reader accepts when honest."""
    model = model_io.load(write_zip(tmp_path, model_members()))
    assert model.classes == small_model().classes
    arrays = read_npz(write_zip(tmp_path, [member("a.npy", npy(np.arange(5)))], "s.npz"))
    assert arrays["a"].tolist() == [0, 1, 2, 3, 4] and arrays["a"].flags.writeable


# ----------------------------------------------------------------------------- 1: archives


@pytest.mark.parametrize("flags", [0x1, 0x41, 0x2000])
def test_encrypted_member(tmp_path, flags):
    members = model_members()
    members[named(members, "graph.npy")]["flags"] = flags
    rejects(write_zip(tmp_path, members), r"member 'graph.npy' is encrypted")


@pytest.mark.parametrize("method", [9, 12, 14, 99])
def test_unsupported_compression_method(tmp_path, method):
    members = model_members()
    members[3]["method"] = method
    rejects(write_zip(tmp_path, members), rf"uses compression method {method} \(")


@pytest.mark.parametrize("compression", [zipfile.ZIP_LZMA, zipfile.ZIP_BZIP2])
def test_real_lzma_and_bzip2_members_are_refused_unread(tmp_path, compression):
    path = tmp_path / "m.npz"
    with zipfile.ZipFile(path, "w", compression) as archive:
        archive.writestr("format.npy", npy(np.array("sbn-model")))
    data = bytearray(path.read_bytes())
    data[60:70] = b"\xff" * 10  # a corrupt stream: never decompressed, so never noticed
    path.write_bytes(bytes(data))
    rejects(path, rf"compression method {compression}")


def test_lying_directory_size(tmp_path):
    members = model_members()
    members[3]["size"] = 0xFFFFFFF0  # ~4 GiB claimed for a tiny member
    rejects(write_zip(tmp_path, members), r"unpacks to 4294967280 bytes, more than")


def test_lying_directory_compressed_size_and_offset(tmp_path):
    members = model_members()
    members[3]["csize"] = 10 ** 8
    rejects(write_zip(tmp_path, members, "a.npz"), r"extends past the end of the file")
    members = model_members()
    members[3]["offset"] = 7
    rejects(write_zip(tmp_path, members, "b.npz"), r"local header does not match")
    members = model_members()
    members[3]["cd_method"] = 0
    members[3]["csize"] = members[3]["size"]
    rejects(write_zip(tmp_path, members, "c.npz"), r"local header disagrees with the central "
                                                   r"directory on compression")
    members = model_members()
    members[3]["cd_method"] = 0
    rejects(write_zip(tmp_path, members, "d.npz"), r"stored but its sizes differ")


def test_damaged_central_directory(tmp_path, model_path):
    data = bytearray(model_path.read_bytes())
    start = data.rindex(b"PK\x01\x02")
    data[start:start + 4] = b"XXXX"
    path = tmp_path / "m.npz"
    path.write_bytes(bytes(data))
    rejects(path, r"not a readable \.npz archive")


def test_member_names(tmp_path):
    bad = [member("../x.npy", npy(np.arange(3)))]
    rejects(write_zip(tmp_path, bad, "a.npz"), r"member '../x.npy': an array name must be")
    twice = [member("a.npy", npy(np.arange(3)))] * 2
    rejects(write_zip(tmp_path, twice, "b.npz"), r"member 'a.npy' appears twice")


def _deflate_bomb(prefix: bytes, mebibytes: int) -> bytes:
    """Raw deflate of ``prefix`` + ``mebibytes`` MiB of zeros, built in milliseconds."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = packer.compress(prefix) + packer.flush(zlib.Z_FULL_FLUSH)
    block = packer.compress(bytes(1 << 20)) + packer.flush(zlib.Z_FULL_FLUSH)
    return head + block * mebibytes + packer.flush(zlib.Z_FINISH)


def _bomb_archive(tmp_path, declared: int) -> tuple:
    header = npy_header(f"{{'descr': '|u1', 'fortran_order': False, 'shape': ({declared},), }}")
    raw = _deflate_bomb(header, 1024)  # ~1 MB that inflates to 1 GiB
    bomb = member("bomb.npy", method=8, raw=raw, size=len(header) + declared, crc=0)
    return write_zip(tmp_path, [bomb], "bomb.npz"), raw


def test_zip_bomb_lying_about_its_size_stops_at_the_declared_size(tmp_path):
    path, raw = _bomb_archive(tmp_path, 1000)
    assert 900_000 < len(raw) < 1_200_000
    start = time.perf_counter()
    rejects(path, r"member 'bomb.npy' inflates past its declared size")
    assert time.perf_counter() - start < 2
    assert "inflates past" in cli_rejects("info", path)  # in 1 GiB of address space


def test_zip_bomb_declaring_its_size_is_refused_before_inflating(tmp_path):
    path, _ = _bomb_archive(tmp_path, 1 << 30)
    start = time.perf_counter()
    rejects(path, r"member 'bomb.npy' unpacks to \d+ bytes, more than the \d+-byte limit")
    assert time.perf_counter() - start < 1


@pytest.mark.parametrize("make,pattern", [
    (lambda raw: b"\xff" * 32, r"corrupt deflate stream"),
    (lambda raw: raw[:len(raw) // 2], r"deflate stream ends early"),
    (lambda raw: raw + b"junk", r"data after the end of its deflate stream"),
])
def test_corrupt_truncated_or_padded_deflate(tmp_path, make, pattern):
    members = model_members()
    index = named(members, "graph.npy")
    raw = make(members[index]["raw"])
    members[index] = dict(members[index], raw=raw, csize=len(raw))
    rejects(write_zip(tmp_path, members), rf"member 'graph.npy'.*{pattern}")


def test_crc_mismatch(tmp_path):
    bad = [member("a.npy", npy(np.arange(3)), crc=12345)]
    rejects(write_zip(tmp_path, bad), r"member 'a.npy' fails its CRC-32 check")


@pytest.mark.parametrize("header,pattern", [
    ("{'descr': '|u1', 'fortran_order': False, 'shape': (10**12,), }",
     r"not a valid \.npy header"),  # not even a literal
    ("{'descr': '|u1', 'fortran_order': False, 'shape': (1000000000000,), }",
     r"declares \|u1 \[1000000000000\] \(1000000000000 bytes\) but the member holds 4"),
    ("{'descr': '|V1000000000', 'fortran_order': False, 'shape': (), }",
     r"has dtype \|V1000000000; a model file holds only integer and string arrays"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", r"has dtype <f4"),
    ("{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': (1,), }", r"has dtype"),
    ("{'descr': '|u1', 'fortran_order': False, 'shape': (-4,), }", r"invalid shape"),
    ("{'descr': '|u1', 'fortran_order': False, 'shape': " + "(" * 5000 + ")" * 5000 + ", }",
     r"not a valid \.npy header"),
])
def test_hostile_npy_headers(tmp_path, header, pattern):
    bad = [member("l0.weight.npy", npy_header(header) + b"\x01\x02\x03\x04", 8)]
    start = time.perf_counter()
    rejects(write_zip(tmp_path, bad), pattern)
    assert time.perf_counter() - start < 1


def test_size_limit_keyword_and_environment(tmp_path, model_path, monkeypatch):
    rejects(model_path, r"more than the 0.0009\d* MiB limit|unpacks to", max_bytes=1000)
    assert model_io.load(model_path, max_bytes=1 << 20).classes
    monkeypatch.setenv("SBN_MAX_MODEL_BYTES", "1000")
    rejects(model_path, r"SBN_MAX_MODEL_BYTES")
    monkeypatch.setenv("SBN_MAX_MODEL_BYTES", "lots")
    with pytest.raises(ModelFormatError, match=r"environment SBN_MAX_MODEL_BYTES='lots': "
                                               r"expected a whole number of bytes in 1\.\."):
        model_io.load(model_path)


@pytest.mark.parametrize("kind", ["directory", "device"])
def test_model_path_that_is_not_a_regular_file(tmp_path, kind):
    path = tmp_path if kind == "directory" else "/dev/zero"
    with pytest.raises(ModelFormatError, match=f"is a {kind}|is a character device"):
        model_io.load(path)


def test_model_path_naming_a_fifo_does_not_block(tmp_path):
    fifo = tmp_path / "m.npz"
    os.mkfifo(fifo)
    assert "is a FIFO, not a regular model file" in cli_rejects("info", fifo, timeout=30)


# ----------------------------------------------------------------------------- 1: graph JSON


def test_graph_nested_100000_deep(tmp_path):
    text = '{"input": ' + "[" * 100_000 + "]" * 100_000 + "}"
    path = write_zip(tmp_path, model_members(graph_text=text))
    rejects(path, r"graph nests 100001 levels deep, more than the limit of 64")
    assert "levels deep" in cli_rejects("info", path)


def test_provenance_nested_deep_and_brackets_inside_strings(tmp_path):
    def deep(graph):
        graph["provenance"] = {"note": "[[[[" * 100, "x": json.loads("[" * 70 + "]" * 70)}

    rejects(write_zip(tmp_path, model_members(deep)), r"nests 72 levels deep")

    def strings(graph):
        graph["provenance"] = {"note": "[[{{" * 1000 + '\\"]'}

    assert model_io.load(write_zip(tmp_path, model_members(strings), "ok.npz")).classes


@pytest.mark.parametrize("text,depth", [
    ('["a\\"]", [{}]]', 3), ('"[" [', 1), ('{"a": "\\\\"} [[]]', 2), ("", 0),
    ('"' + '\\"' * 400_000, 0), ('"' + '\\"' * 400_000 + "\\", 0),  # quadratic for a
    ("[" * 400_000 + "]" * 400_000, 400_000),                       # naive string regex
])
def test_nesting_depth_scan_is_right_and_linear(text, depth):
    start = time.perf_counter()
    assert nesting_depth(text) == depth
    assert time.perf_counter() - start < 1


@pytest.mark.parametrize("times,pattern", [
    (1, r"graph is \d+ characters, more than the limit of 1048576"),
    (4, r"member 'graph.npy' unpacks to \d+ bytes, more than the \d+-byte limit \(the most a "
        r"'graph' member needs\)"),
])
def test_graph_too_long(tmp_path, times, pattern):
    def huge(graph):
        graph["provenance"] = {"log": "x" * (times * model_io.MAX_GRAPH_CHARS)}

    rejects(write_zip(tmp_path, model_members(huge)), pattern)


@pytest.mark.parametrize("change,pattern", [
    (lambda g: g["layers"][0].update(op=["conv2d"]),
     r"layer 0: op must be a string naming the layer type .*got \['conv2d'\]"),
    (lambda g: g["layers"][0].update(op={"a": 1}), r"layer 0: op must be a string"),
    (lambda g: g["layers"][1].update(op=None), r"layer 1: op must be a string"),
    (lambda g: g.update(input=[1, 6, 6]), r"input: must be a JSON object"),
    (lambda g: g["input"].update(shape="1x6x6"), r"input: shape must be \[C, H, W\]"),
    (lambda g: g["input"].update(bits=8.5), r"input: bits must be an integer"),
    (lambda g: g["input"].update(bits=True), r"input: bits must be an integer"),
    (lambda g: g.update(layers={"0": 1}), r"graph: layers must be a list"),
    (lambda g: g["layers"].__setitem__(0, "conv2d"), r"layer 0: must be a JSON object"),
    (lambda g: g["layers"][0].update(weight=5), r"layer 0 \(conv2d\): weight must be an "
                                                r"array name \(string\), got 5"),
    (lambda g: g["layers"][0].update(stride={"h": 1}), r"stride must be a pair of integers"),
    (lambda g: g["layers"][0].update(name=5), r"layer 0 \(conv2d\): name must be a string of "
                                              r"at most 200 characters, got 5"),
    (lambda g: g["layers"][0].update(name="n" * 201), r"name must be a string of at most 200"),
    (lambda g: g.update(classes="abc"), r"graph: classes must be a list of strings"),
    (lambda g: g.update(classes=[1, 2, 3]), r"graph: classes must be a list of strings"),
    (lambda g: g.update(provenance=[1]), r"graph: provenance must be a JSON object"),
    (lambda g: g.update(layers=g["layers"] * 100), r"graph: 400 layers, more than the "
                                                   r"limit of 256"),
])
def test_graph_with_wrong_types(tmp_path, change, pattern):
    rejects(write_zip(tmp_path, model_members(change)), pattern)


@pytest.mark.parametrize("text,pattern", [
    ('{"input": 1e999}', r"graph is not valid JSON \(1e999 does not fit"),
    ('{"input": NaN}', r"graph is not valid JSON \(NaN is not allowed"),
    ('{"input": ' + "9" * 5000 + "}", r"graph is not valid JSON"),
    ('[', r"graph is not valid JSON"),
])
def test_graph_that_is_not_strict_json(tmp_path, text, pattern):
    rejects(write_zip(tmp_path, model_members(graph_text=text)), pattern)


def test_wrong_json_type_through_the_cli(tmp_path):
    path = write_zip(tmp_path, model_members(lambda g: g["layers"][0].update(op=["dense"])))
    assert "layer 0: op must be a string" in cli_rejects("info", path)


# ------------------------------------------------------------- 3: valid format, unbuildable


def _set(*path_and_value):
    *keys, last, value = path_and_value

    def change(graph):
        obj = graph
        for key in keys:
            obj = obj[key]
        obj[last] = value
    return change


@pytest.mark.parametrize("change,pattern", [
    (_set("input", "shape", [1, 100_000, 100_000]),
     r"input: shape \[1, 100000, 100000\] is larger than 4096x4096"),
    (_set("input", "shape", [1, 10 ** 30, 6]), r"input: shape \[1, 10{30}, 6\] is larger"),
    (_set("input", "shape", [2000, 6, 6]), r"input: shape \[2000, 6, 6\] has more than 1024 "
                                           r"channels"),
    (_set("input", "shape", [1024, 128, 256]), r"input: shape \[1024, 128, 256\] has "
                                               r"33554432 values, more than the limit"),
    (_set("layers", 0, "padding", [10 ** 9, 1]),
     r"layer 0 \(conv2d\): padding \[1000000000, 1\] is above the limit of 4096"),
    (_set("layers", 0, "padding", [1, 2046]),
     r"layer 0 \(conv2d\): the padded input width 4098 is above the limit of 4096"),
    (_set("layers", 0, "stride", [1, 10 ** 9]),
     r"layer 0 \(conv2d\): stride \[1, 1000000000\] is above the limit of 4096"),
    (_set("layers", 1, "stride", [10 ** 30, 1]), r"layer 1 \(maxpool2d\): stride .* limit"),
])
def test_declared_shapes_beyond_what_the_tools_can_do(tmp_path, change, pattern):
    rejects(write_zip(tmp_path, model_members(change)), pattern)


def test_padding_beyond_the_kernel_is_still_allowed(tmp_path):
    path = write_zip(tmp_path, model_members(_set("layers", 0, "padding", [5, 5])))
    with pytest.raises(ModelFormatError, match=r"layer 2 \(dense\): weight has shape"):
        model_io.load(path)  # gets past layer 0: only the next layer's weights mismatch


def test_the_padded_input_is_bounded_like_an_activation(tmp_path, monkeypatch):
    path = write_zip(tmp_path, model_members(_set("layers", 0, "padding", [5, 5])))
    monkeypatch.setattr(model_limits, "MAX_ACTIVATION", 200)
    rejects(path, r"layer 0 \(conv2d\): the padded input holds 256 values, above the limit "
                  r"of 200")


def test_weight_and_total_activation_budgets(tmp_path, model_path, monkeypatch):
    monkeypatch.setattr(model_limits, "MAX_WEIGHTS", 30)
    rejects(model_path, r"layer 2 \(dense\): weights up to here number 135, more than the "
                        r"limit of 30")
    monkeypatch.setattr(model_limits, "MAX_WEIGHTS", 1 << 26)
    monkeypatch.setattr(model_limits, "MAX_TOTAL_ACTIVATION", 150)
    rejects(model_path, r"layer 1 \(maxpool2d\): activations up to here hold 171 values")


@pytest.mark.parametrize("command", ["eval", "verilog"])
def test_huge_padding_through_the_cli(tmp_path, command):
    path = write_zip(tmp_path, model_members(_set("layers", 0, "padding", [10 ** 9, 1])))
    images = tmp_path / "i.idx"
    write_idx(images, np.zeros((2, 6, 6), np.uint8))
    extra = ["--images", images] if command == "eval" else ["-o", tmp_path / "out"]
    assert "is above the limit of 4096" in cli_rejects(command, path, *extra)
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- 4: IDX files


def idx_bytes(dtype_code: int, dims, body: bytes = b"") -> bytes:
    return bytes([0, 0, dtype_code, len(dims)]) + b"".join(
        d.to_bytes(4, "big") for d in dims) + body


@pytest.mark.parametrize("content,pattern", [
    (idx_bytes(8, [1] * 65, b"\x00"), r"declares 65 dimensions; images and labels have 1 to 4"),
    (idx_bytes(8, [1] * 255), r"declares 255 dimensions"),
    (idx_bytes(8, []), r"declares 0 dimensions"),
    (idx_bytes(8, [2 ** 31, 2 ** 31, 4]), r"says \[2147483648, 2147483648, 4\] "
                                          r"\(18446744073709551616 bytes\), more than the limit"),
    (idx_bytes(0x0E, [2 ** 32 - 1, 2 ** 32 - 1]), r"more than the limit"),
    (idx_bytes(8, [3], b"\x01\x02\x03\x04"), r"says \[3\] \(3 bytes\) but the file holds 4"),
])
def test_malformed_idx_headers(tmp_path, content, pattern):
    for name, data in (("raw", content), ("gz", gzip.compress(content))):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DatasetError, match=pattern.replace("holds 4", "holds (4|more)")):
            read_idx(tmp_path / name)


def test_gzip_bomb_stops_one_byte_past_the_header(tmp_path):
    data = gzip.compress(idx_bytes(8, [10], bytes(64 << 20)), compresslevel=1)
    (tmp_path / "bomb.gz").write_bytes(data)
    start = time.perf_counter()
    with pytest.raises(DatasetError, match=r"says \[10\] \(10 bytes\) but the file holds more "
                                           r"than 10 bytes"):
        read_idx(tmp_path / "bomb.gz")
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize("corrupt", [
    lambda data: data[:10] + b"\xff" * 40,  # a gzip header, then not a deflate stream
    lambda data: data[:-12],  # truncated
    lambda data: data[:-8] + b"\x00" * 8,  # wrong CRC and length
])
def test_corrupt_gzip(tmp_path, corrupt):
    data = gzip.compress(idx_bytes(8, [200], bytes(range(200))))
    (tmp_path / "c.gz").write_bytes(corrupt(data))
    with pytest.raises(DatasetError, match=r"c.gz: cannot read \(corrupt or truncated gzip"):
        read_idx(tmp_path / "c.gz")


def test_idx_size_limit_from_the_environment(tmp_path, monkeypatch):
    write_idx(tmp_path / "i", np.zeros((4, 8, 8), np.uint8))
    monkeypatch.setenv("SBN_MAX_IDX_BYTES", "100")
    with pytest.raises(DatasetError, match=r"\(256 bytes\), more than the limit of 100 bytes"):
        read_idx(tmp_path / "i")


@pytest.mark.parametrize("kind", ["directory", "character device", "FIFO"])
def test_image_path_that_is_not_a_regular_file(tmp_path, kind):
    path = {"directory": tmp_path, "character device": "/dev/zero",
            "FIFO": tmp_path / "f"}[kind]
    if kind == "FIFO":
        os.mkfifo(path)
    for reader in (read_idx, read_cifar_batch):
        message = not_blocking(reader, path)
        assert f"is a {kind}, not a regular file" in message


def not_blocking(reader, path) -> str:
    """``reader(path)``'s DatasetError message; fails (instead of hanging) if it blocks."""
    import threading

    result = []

    def run():
        try:
            reader(path)
            result.append("no error")
        except DatasetError as err:
            result.append(str(err))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():  # blocked opening a FIFO: open the write end to release it
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(10)
        pytest.fail(f"{reader.__name__} blocked on {path}")
    return result[0]


def test_zero_images_and_zero_labels(tmp_path):
    write_idx(tmp_path / "i", np.zeros((0, 28, 28), np.uint8))
    write_idx(tmp_path / "l", np.zeros(0, np.uint8))
    with pytest.raises(DatasetError, match=r"i: holds no images \(the IDX header says "
                                           r"\[0, 1, 28, 28\]\)"):
        load_idx_pair(tmp_path / "i", tmp_path / "l")


@pytest.mark.parametrize("code,values,pattern", [
    (0x0D, np.array([0, np.nan, 1], ">f4"), r"labels must be integers, got float32"),
    (0x0E, np.array([0, 1, 2], ">f8"), r"labels must be integers, got float64"),
    (0x09, np.array([0, -1, 2], "i1"), r"label -1 is negative"),
])
def test_labels_must_be_non_negative_integers(tmp_path, code, values, pattern):
    write_idx(tmp_path / "i", np.zeros((3, 4, 4), np.uint8))
    (tmp_path / "l").write_bytes(idx_bytes(code, [3], values.tobytes()))
    with pytest.raises(DatasetError, match=pattern):
        load_idx_pair(tmp_path / "i", tmp_path / "l")


def test_hostile_images_through_the_cli(tmp_path, model_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert "is a FIFO" in cli_rejects("eval", model_path, "--images", fifo, timeout=30)
    assert "is a character device" in cli_rejects("eval", model_path, "--images", "/dev/zero")
    (tmp_path / "dims").write_bytes(idx_bytes(8, [1] * 65))
    assert "65 dimensions" in cli_rejects("eval", model_path, "--images", tmp_path / "dims")
    data = gzip.compress(idx_bytes(8, [2, 6, 6], bytes(72)))
    (tmp_path / "c.gz").write_bytes(data[:10] + b"\xff" * 40)
    assert "corrupt or truncated gzip" in cli_rejects("eval", model_path, "--images",
                                                      tmp_path / "c.gz")


def test_empty_and_nan_labelled_datasets_through_the_cli(tmp_path, model_path):
    write_idx(tmp_path / "i0", np.zeros((0, 6, 6), np.uint8))
    write_idx(tmp_path / "l0", np.zeros(0, np.uint8))
    assert "holds no images" in cli_rejects("eval", model_path, "--images", tmp_path / "i0",
                                            "--labels", tmp_path / "l0")
    write_idx(tmp_path / "i", np.zeros((2, 6, 6), np.uint8))
    (tmp_path / "l").write_bytes(idx_bytes(0x0D, [2], np.array([np.nan, 1], ">f4").tobytes()))
    assert "labels must be integers" in cli_rejects("eval", model_path, "--images",
                                                    tmp_path / "i", "--labels", tmp_path / "l")


@pytest.mark.parametrize("command", ["eval", "sim"])
def test_labels_naming_a_class_the_model_lacks(tmp_path, model_path, command):
    classes = len(model_io.load(model_path).classes)
    write_idx(tmp_path / "i", np.zeros((2, 6, 6), np.uint8))
    write_idx(tmp_path / "l", np.array([0, classes], np.uint8))
    message = cli_rejects(command, model_path, "--images", tmp_path / "i", "--labels",
                          tmp_path / "l")
    assert f"the labels name class {classes}, but the model has {classes} classes" in message
    write_idx(tmp_path / "l", np.array([0, classes - 1], np.uint8))
    from hwgen.cli import main
    assert main(["eval", str(model_path), "--images", str(tmp_path / "i"), "--labels",
                 str(tmp_path / "l")]) == 0


# ----------------------------------------------------------------------------- a fourth fuzz


def _train_rejects(*argv, timeout=120) -> str:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "train", *map(str, argv)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def _tiny_fmnist(folder, labels_value=None):
    folder.mkdir()
    rng = np.random.default_rng(4)
    for stem, n in (("train", 64), ("t10k", 16)):
        write_idx(folder / f"{stem}-images-idx3-ubyte",
                  rng.integers(0, 256, (n, 28, 28)).astype(np.uint8))
        labels = rng.integers(0, 10, n) if labels_value is None else np.full(n, labels_value)
        write_idx(folder / f"{stem}-labels-idx1-ubyte", labels.astype(np.uint8))
    return folder


def test_padding_that_grows_a_map_past_the_generation_limit(tmp_path):
    model = model_io.Model(
        model_io.InputSpec((1, 2, 2), 8, 128),
        [model_io.Conv2d(np.ones((1, 1, 1, 1), np.int8), np.zeros(1, np.int64),
                         np.ones(1, np.int8), (1, 1), (2047, 2047), 1),
         model_io.MaxPool2d((4096, 4096), (4096, 4096)),
         model_io.Dense(np.ones((2, 1), np.int8))], ["a", "b"], {})
    model_io.save(model, tmp_path / "m.npz")
    assert cli_rejects("verilog", tmp_path / "m.npz", "-o", tmp_path / "v") == (
        "error: layer 0 (conv2d) reads a 1x4096x4096 map (padded), more than the 1048576 "
        "values per image hardware is generated for")
    assert not (tmp_path / "v").exists()


def test_large_line_buffers_count_in_the_generation_estimate(tmp_path):
    """A 1024x1024 max-pool window on a 2**20-value input: 2 Mbit of line buffer, about
    350 MB to generate, over the default limit."""
    model = model_io.Model(model_io.InputSpec((1, 1024, 1024), 8, 128),
                           [model_io.MaxPool2d((1024, 1024), (1024, 1024)),
                            model_io.Dense(np.ones((2, 1), np.int8))], ["a", "b"], {})
    model_io.save(model, tmp_path / "m.npz")
    line = cli_rejects("verilog", tmp_path / "m.npz", "-o", tmp_path / "v")
    assert line.startswith("error: fold -,2x1 at --lanes 1 would take about ")
    assert "MiB to generate" in line
    assert not (tmp_path / "v").exists()


@pytest.mark.parametrize("lanes, message", [
    # a repack of 779 lanes into words of 8: millions of multiplexer inputs (a RecursionError
    # in Amaranth, or with 500 lanes 980 MB and two minutes, before it was counted)
    ("779", r"error: fold \S+ at --lanes 779 would take about \d+ MiB to generate"),
    ("500", r"error: fold \S+ at --lanes 500 would take about \d+ MiB to generate"),
])
def test_input_lanes_count_in_the_generation_estimate(tmp_path, lanes, message):
    line = cli_rejects("verilog", ROOT / "models" / "fmnist-mlp-up5k.npz", "--lanes", lanes,
                       "-o", tmp_path / "v")
    assert re.match(message, line), line
    assert not (tmp_path / "v").exists()


def test_input_beats_wider_than_the_generator_takes(tmp_path):
    """16384 lanes of 8 bits: a 131072-bit port, past Amaranth's signal width (an
    AssertionError before)."""
    model = model_io.Model(model_io.InputSpec((1, 128, 128), 8, None),
                           [model_io.Dense(np.ones((2, 128 * 128), np.int8))], ["a", "b"], {})
    model_io.save(model, tmp_path / "m.npz")
    line = cli_rejects("verilog", tmp_path / "m.npz", "--lanes", "16384", "-o", tmp_path / "v")
    assert line == ("error: --lanes 16384 makes input beats of 131072 bits, more than the 8192 "
                    "hardware is generated for")
    assert not (tmp_path / "v").exists()


@pytest.mark.parametrize("make", ["bomb", "header"])
def test_a_png_of_too_many_pixels_is_one_error(tmp_path, make):
    from PIL import Image

    path = tmp_path / "big.png"
    if make == "bomb":   # 12000 x 16000 grey: past Pillow's decompression-bomb limit
        Image.new("L", (12000, 16000)).save(path, optimize=True)
    else:                # a header declaring 2**31 - 1 squared pixels
        ihdr = struct.pack(">IIBBBBB", 2**31 - 1, 2**31 - 1, 8, 0, 0, 0, 0)
        chunk = b"IHDR" + ihdr
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
                         + struct.pack(">I", zlib.crc32(chunk))
                         + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND")))
    assert cli_rejects("run", "--sim", ROOT / "models/fmnist-mlp-up5k.npz", path) == (
        f"error: {path}: a PNG of more pixels than the model takes ([1, 28, 28])")


def test_weights_for_a_fold_without_spram_are_refused(tmp_path):
    (tmp_path / "w.bin").write_bytes(b"x" * 64)
    expected = ("error: --load-weights: this model's fold keeps no weights in SPRAM, so the "
                "board has none to load (its weights are in the bitstream)")
    png = tmp_path / "i.png"
    from PIL import Image
    Image.new("L", (28, 28)).save(png)
    assert cli_rejects("run", "--sim", "--load-weights", tmp_path / "w.bin",
                       ROOT / "models/fmnist-mlp-up5k.npz", png) == expected
    assert cli_rejects("build", "--board", "icebreaker", ROOT / "models/fmnist-mlp-up5k.npz",
                       "-o", tmp_path / "b", "--uart-weights").startswith(
        "error: --uart-weights: fold 5x4,2x2,2x16 keeps no weights in SPRAM")
    assert not (tmp_path / "b").exists()


def test_a_data_folder_entry_that_is_not_a_file_is_not_skipped(tmp_path):
    folder = _tiny_fmnist(tmp_path / "d")
    (folder / "t10k-images-idx3-ubyte").unlink()
    os.mkfifo(folder / "t10k-images-idx3-ubyte")
    assert cli_rejects("eval", ROOT / "models/fmnist-mlp-up5k.npz", "--dataset",
                       "fashion-mnist", "--data-dir", folder) == (
        f"error: {folder}/t10k-images-idx3-ubyte: not a regular file")
    (folder / "t10k-images-idx3-ubyte").unlink()   # images elsewhere, labels here: refused
    assert cli_rejects("eval", ROOT / "models/fmnist-mlp-up5k.npz", "--dataset",
                       "fashion-mnist", "--data-dir", folder) == (
        f"error: dataset fashion-mnist (test): {folder} has t10k-labels-idx1-ubyte but not "
        f"t10k-images-idx3-ubyte[.gz]")


_TRAIN = ["--epochs", "1", "--no-progress", "--threads", "1", "--arch", "mlp:8",
          "--batch-size", "16"]


def test_training_labels_outside_the_classes(tmp_path):
    folder = _tiny_fmnist(tmp_path / "d", labels_value=12)
    assert _train_rejects(*_TRAIN, "--data-dir", folder, "--out", tmp_path / "m.npz") == (
        "error: dataset fashion-mnist: label 12 is not one of its 10 classes (0..9)")


@pytest.mark.parametrize("content, why", [
    ("empty", "not a readable .npz archive"), ("tensor", "a checkpoint of an older train"),
    ("pickle", "a pickle, not a checkpoint"), ("list", "it holds a list, not a dictionary"),
    ("npz", "not a checkpoint written by train (no 'state' member)")])
def test_resume_from_a_file_that_is_no_checkpoint(tmp_path, content, why):
    """Nothing that could hold a pickle is unpickled: torch.save's files (the checkpoints
    of train before version 2 included) are recognized and refused."""
    import pickle

    import torch

    from train.state_archive import write_state

    folder = _tiny_fmnist(tmp_path / "d")
    ckpt = tmp_path / "m.ckpt.pt"
    if content == "empty":
        ckpt.write_bytes(b"")
    elif content == "tensor":
        torch.save({"epoch": 1, "model": torch.zeros(3)}, ckpt)
    elif content == "pickle":
        ckpt.write_bytes(pickle.dumps(np.random.default_rng(0)))   # an object, not data
    elif content == "list":
        write_state([torch.zeros(3)], ckpt)
    else:
        with open(ckpt, "wb") as f:
            np.savez(f, weights=np.zeros(3, np.float32))
    line = _train_rejects(*_TRAIN, "--data-dir", folder, "--out", tmp_path / "m.npz",
                          "--resume")
    assert line.startswith(f"error: {ckpt}: ") and why in line, line
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize("argv, fragment", [
    (["--init-bound", "3.5e38"], "argument --init-bound: must be at most"),
    (["--weight-decay", "1e300"], "argument --weight-decay: must be at most"),
    (["--checkpoint", "{out}"], "is the --out model file"),
])
def test_training_options_that_cannot_work(tmp_path, argv, fragment):
    folder = _tiny_fmnist(tmp_path / "d")
    out = tmp_path / "m.npz"
    argv = [a.format(out=out) for a in argv]
    assert fragment in _train_rejects(*_TRAIN, "--data-dir", folder, "--out", out, *argv)
    assert not out.exists()


# ----------------------------------------------------------------------------- a fifth fuzz


def test_a_whole_number_of_32_digits_is_out_of_range_not_malformed(tmp_path):
    line = cli_rejects("verilog", ROOT / "models/fmnist-mlp-up5k.npz", "--lanes", "9" * 32,
                       "-o", tmp_path / "v")
    assert "must be at most" in line and "whole number" not in line
    # and --limit takes it: at most that many images, i.e. all of them
    proc = subprocess.run([sys.executable, "-m", "hwgen", "eval",
                           str(ROOT / "models/fmnist-mlp-up5k.npz"), "--dataset",
                           "fashion-mnist", "--limit", "0" * 31 + "5"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "(" in proc.stdout and "/5)" in proc.stdout, proc


def test_a_png_that_is_a_fifo_is_one_error(tmp_path):
    os.mkfifo(tmp_path / "f.png")
    assert cli_rejects("run", "--sim", ROOT / "models/fmnist-mlp-up5k.npz",
                       tmp_path / "f.png", timeout=30) == (
        f"error: {tmp_path}/f.png: is a FIFO, not a regular PNG file")


def test_many_layers_count_in_the_generation_estimate(tmp_path):
    """255 small 3x3 convs (a 160 KB file) took 594 MB to generate: each layer costs a
    few MB of its own, which the estimate now charges."""
    conv = model_io.Conv2d(np.ones((2, 2, 3, 3), np.int8), np.zeros(2, np.int64),
                           np.ones(2, np.int8), (1, 1), (1, 1), -1)
    model = model_io.Model(model_io.InputSpec((2, 8, 8), 8, 1),
                           [conv] * 255 + [model_io.Dense(np.ones((2, 128), np.int8))],
                           ["a", "b"], {})
    model_io.save(model, tmp_path / "m.npz")
    line = cli_rejects("verilog", tmp_path / "m.npz", "-o", tmp_path / "v")
    assert " MiB to generate, more than the limit of 448 MiB" in line
    assert not (tmp_path / "v").exists()


def test_training_and_test_images_of_different_sizes(tmp_path):
    folder = _tiny_fmnist(tmp_path / "d")
    write_idx(folder / "t10k-images-idx3-ubyte", np.zeros((16, 27, 27), np.uint8))
    assert _train_rejects(*_TRAIN, "--data-dir", folder, "--out", tmp_path / "m.npz") == (
        "error: dataset fashion-mnist: the training images are 1x28x28 but the test images "
        "1x27x27")


@pytest.mark.parametrize("change, why", [
    ("epoch_nan", "epoch nan is not a whole number in 1..1"),
    ("epoch_negative", "epoch -5 is not a whole number in 1..1"),
    ("epoch_bool", "epoch True is not a whole number in 1..1"),
    ("settings_list", "its settings are not a dictionary of plain values"),
    ("weights_nan", "network blocks.0.weight is not all finite"),
    ("weights_shape",
     "network blocks.0.weight is not a torch.float32 tensor of shape [8, 784]"),
    ("no_weights", "its network's parameters are not this architecture's"),
])
def test_resume_from_a_checkpoint_of_plain_data_that_is_wrong(tmp_path, change, why):
    import subprocess as sp

    import torch

    from train.checkpoint import load_checkpoint
    from train.state_archive import write_state

    folder = _tiny_fmnist(tmp_path / "d")
    out = tmp_path / "m.npz"
    argv = [sys.executable, "-m", "train", *_TRAIN, "--data-dir", str(folder), "--out",
            str(out)]
    sp.run(argv, cwd=ROOT, check=True, capture_output=True, timeout=120)
    ckpt = tmp_path / "m.ckpt.pt"
    state = load_checkpoint(ckpt)
    model = state["model"]
    state.update({
        "epoch_nan": {"epoch": float("nan")}, "epoch_negative": {"epoch": -5},
        "epoch_bool": {"epoch": True}, "settings_list": {"settings": [1, 2]},
        "weights_nan": {"model": {k: v * float("nan") if v.is_floating_point() else v
                                  for k, v in model.items()}},
        "weights_shape": {"model": {k: torch.zeros(3) for k in model}},
        "no_weights": {"model": {}}}[change])
    write_state(state, ckpt)
    out.unlink()
    assert _train_rejects(*_TRAIN, "--data-dir", folder, "--out", out, "--resume") == (
        f"error: {ckpt}: not a checkpoint of this training run ({why})")
    assert not out.exists()


def test_a_stop_during_the_verilator_compile_leaves_nothing_running(tmp_path):
    """SIGTERM while Verilator compiles: exit 143, its make and compilers killed, and no
    build folder left in the cache."""
    import signal as sig

    from hwgen.random_models import random_images

    model = random_model(np.random.default_rng(175), (1, 6, 6), [dense(9)], classes=3,
                         binarize_at=None)
    model_io.save(model, tmp_path / "m.npz")
    write_idx(tmp_path / "i", random_images(np.random.default_rng(1), model.input, 4)[:, 0])
    cache = tmp_path / "cache"
    env = dict(os.environ, SBN_CACHE_DIR=str(cache))
    proc = subprocess.Popen([sys.executable, "-m", "hwgen", "sim", str(tmp_path / "m.npz"),
                             "--images", str(tmp_path / "i"), "-j", "1"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(cache.glob("verilator/build-*/obj")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(cache.glob("verilator/build-*/obj")), "the compile never started"
    time.sleep(0.5)
    proc.send_signal(sig.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err == "error: interrupted\n"
    assert not list(cache.glob("verilator/build-*"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        alive = subprocess.run(["pgrep", "-f", f"Mdir obj .*{tmp_path.name}|{cache}"],
                               capture_output=True, text=True).stdout.split()
        if not alive:
            break
        time.sleep(0.2)
    assert not alive


def test_verilog_too_large_for_verilator_is_refused_before_it_runs(tmp_path):
    """A 1.6 KB model (a 1x1 conv over a 4096x1 map) generated 52 MB of Verilog, and
    Verilator took 4.1 GB for it: the source is bounded before Verilator starts."""
    env = dict(os.environ, SBN_MAX_VERILATOR_SOURCE_BYTES="4096",
               SBN_CACHE_DIR=str(tmp_path / "cache"))
    # not under cli_rejects's 1 GiB cap: YoWASP's Yosys reserves several GB of address space
    proc = subprocess.run([sys.executable, "-m", "hwgen", "sim",
                           str(ROOT / "models/fmnist-mlp-up5k.npz"), "--dataset",
                           "fashion-mnist", "--limit", "2", "-j", "1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr
    line = proc.stderr.strip()
    assert re.fullmatch(r"error: the generated Verilog is [0-9.]+ MiB, more than the "
                        r"0\.00390625 MiB Verilator is given \(its memory grows with the "
                        r"source\): give a fold with a smaller PExSIMD, or raise "
                        r"\$SBN_MAX_VERILATOR_SOURCE_BYTES", line), line
    assert not list((tmp_path / "cache").glob("**/sim"))


def test_a_string_member_past_unicode_is_one_error(tmp_path):
    """A 0-d '<U1' member holding code point 0x110000 made numpy raise SystemError."""
    src = tmp_path / "ok.npz"
    model_io.save(model_io.Model(model_io.InputSpec((4, 1, 1), 8, None),
                                 [model_io.Dense(np.ones((2, 4), np.int8))], ["a", "b"], {}),
                  src)
    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(bad, "w") as new:
        for info in old.infolist():
            data = old.read(info)
            if info.filename == "format.npy":
                data = npy_header("{'descr': '<U1', 'fortran_order': False, 'shape': (), }") + \
                    b"\x00\x00\x11\x00"
            new.writestr(info.filename, data)
    assert cli_rejects("info", bad) == (
        f"error: {bad}: key 'format' holds a character that is not Unicode")


@pytest.mark.parametrize("arch, why", [
    ("mlp:65536-65536", "4346347520 weights in the hidden layers, more than the 33554432"),
    ("cnn:c4096-c8", "3217536 activation values per image, more than the 2097152"),
])
def test_training_a_network_too_large_is_refused_before_allocating(tmp_path, arch, why):
    line = _train_rejects("--arch", arch, "--epochs", "1", "--no-progress", "--data-dir",
                          _tiny_fmnist(tmp_path / "d"), "--out", tmp_path / "m.npz")
    assert line.startswith(f"error: architecture {arch!r}: {why}")


def test_a_checkpoint_with_compressed_records_is_not_inflated(tmp_path):
    """A 2 MB checkpoint whose deflated record held 2 GB of zeros took 2.3 GB to refuse."""
    folder = _tiny_fmnist(tmp_path / "d")
    out = tmp_path / "m.npz"
    subprocess.run([sys.executable, "-m", "train", *_TRAIN, "--data-dir", str(folder),
                    "--out", str(out)], cwd=ROOT, check=True, capture_output=True, timeout=120)
    ckpt = tmp_path / "m.ckpt.pt"
    stored = ckpt.read_bytes()
    with zipfile.ZipFile(ckpt, "w", zipfile.ZIP_DEFLATED) as packed, \
            zipfile.ZipFile(io.BytesIO(stored)) as original:
        for info in original.infolist():
            packed.writestr(info.filename, original.read(info))
    out.unlink()
    line = _train_rejects(*_TRAIN, "--data-dir", folder, "--out", out, "--resume")
    assert line == f"error: {ckpt}: member 'state.npy' is compressed; a checkpoint stores " \
                   f"its members"
    assert not out.exists()


def test_a_damaged_simulator_cache_is_rebuilt_or_named(tmp_path):
    from hwgen.random_models import random_images

    model = random_model(np.random.default_rng(3), (4, 1, 1), [dense(3)], classes=2)
    model_io.save(model, tmp_path / "m.npz")
    write_idx(tmp_path / "i", random_images(np.random.default_rng(4), model.input, 8)
              .reshape(8, 4).astype(np.uint8))
    argv = [sys.executable, "-m", "hwgen", "sim", str(tmp_path / "m.npz"), "--images",
            str(tmp_path / "i"), "-j", "1"]

    def sim(cache, **env):
        return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300,
                              env=dict(os.environ, SBN_CACHE_DIR=str(cache), **env))

    (tmp_path / "afile").write_text("")
    proc = sim(tmp_path / "afile")
    assert proc.returncode == 2 and proc.stderr == (
        f"error: the simulator cache {tmp_path}/afile/verilator cannot be used (Not a "
        f"directory): set $SBN_CACHE_DIR to a writable folder\n")
    cache = tmp_path / "cache"
    # make's options from the environment are not the build's: -t (touch) put an empty
    # "simulator" into the cache, which every later run then failed to start (round 29)
    proc = sim(cache, MAKEFLAGS="-t")
    assert proc.returncode == 0 and "agreement 8/8" in proc.stdout, proc.stderr
    (exe,) = cache.glob("verilator/*/sim")
    for damage in ("empty", "script", "folder"):
        exe.unlink() if exe.is_file() else None
        {"empty": lambda: exe.write_bytes(b""),
         "script": lambda: exe.write_text("#!/bin/sh\nexit 0\n"),
         "folder": exe.mkdir}[damage]()
        proc = sim(cache)
        assert proc.returncode == 0 and "agreement 8/8" in proc.stdout, (damage, proc.stderr)
        assert exe.is_file() and not list(exe.parent.glob("*.tmp"))
    # the digest beside it is never read unless it is a regular file, and then bounded (a
    # FIFO there hung the run, a link to /dev/zero took 19 GB)
    exe.unlink()
    with open(exe, "wb") as sparse:  # 64 GB of nothing: rebuilt without being read
        sparse.truncate(64 << 30)
    proc = sim(cache)
    assert proc.returncode == 0 and "agreement 8/8" in proc.stdout, proc.stderr
    assert exe.stat().st_size < 1 << 30
    digest = exe.parent / "sim.sha256"
    for damage in ("fifo", "zeros"):
        digest.unlink()
        os.mkfifo(digest) if damage == "fifo" else digest.symlink_to("/dev/zero")
        proc = sim(cache)
        assert proc.returncode == 0 and "agreement 8/8" in proc.stdout, (damage, proc.stderr)
        assert digest.is_file() and not digest.is_symlink() and len(digest.read_text()) == 64


def test_a_build_that_made_no_simulator_never_enters_the_cache(tmp_path):
    """What a pretending make leaves (nothing, an empty file, a file no one can run) is
    refused with one line naming the build, and the cache keeps no entry for it."""
    from hwgen.errors import UserError
    from sim.cache import publish

    built, exe = tmp_path / "obj" / "sim", tmp_path / "cache" / "k" / "sim"
    built.parent.mkdir()
    for state, why in (("missing", "it wrote none"), ("empty", "it is empty"),
                       ("plain", "it is not executable")):
        if state == "empty":
            built.write_bytes(b"")
            built.chmod(0o755)
        elif state == "plain":
            built.write_bytes(b"\x7fELF")
            built.chmod(0o644)
        with pytest.raises(UserError, match=re.escape(f"made no simulator (sim: {why})")):
            publish(built, exe)
        assert not (tmp_path / "cache").exists()
    built.chmod(0o755)
    publish(built, exe)
    assert exe.read_bytes() == b"\x7fELF" and (exe.parent / "sim.sha256").is_file()


def test_a_full_simulator_cache_is_one_line(tmp_path, monkeypatch, capsys):
    """No space left where the build's sources go: one line naming the cache, no build
    folder left (the disk is made full by failing the write)."""
    import errno
    from pathlib import Path as PathClass

    from hwgen.cli import main

    model = random_model(np.random.default_rng(5), (4, 1, 1), [dense(3)], classes=2)
    model_io.save(model, tmp_path / "m.npz")
    write_idx(tmp_path / "i", np.zeros((2, 4), np.uint8))
    monkeypatch.setenv("SBN_CACHE_DIR", str(tmp_path / "cache"))
    real = PathClass.write_text

    def full(self, *args, **kwargs):
        if self.name == "harness.cpp":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(PathClass, "write_text", full)
    assert main(["sim", str(tmp_path / "m.npz"), "--images", str(tmp_path / "i")]) == 2
    assert capsys.readouterr().err == (
        f"error: the simulator cache {tmp_path}/cache/verilator cannot take a build (No space "
        f"left on device): free space there or set $SBN_CACHE_DIR to another folder\n")
    assert not list((tmp_path / "cache").glob("verilator/build-*"))


class _UninitialisedImages:
    """Pickles as numpy's ``_reconstruct`` of ``N`` CIFAR rows with no bytes behind them."""

    def __init__(self, n):
        self.n = n

    def __reduce__(self):
        from numpy._core.multiarray import _reconstruct

        return (_reconstruct, (np.ndarray, (self.n, 3072), b"b"))


class _ObjectArray:
    """Pickles as ``numpy.ndarray((N,), object)``: made, it holds N references to None."""

    def __init__(self, n):
        self.n = n

    def __reduce__(self):
        return (np.ndarray, ((self.n,), np.dtype("O")))


@pytest.mark.parametrize("batch, why", [
    ({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 2 ** 70]},
     "an integer beyond 64 bits is not allowed"),
    ({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 2 ** 62]},
     "CIFAR-10 labels must be in 0..9, got a 19-digit number"),
    ({"data": _UninitialisedImages(20000), "labels": [0] * 20000},
     "a numpy array is never given its contents (_reconstruct without BUILD)"),
    ({"data": _ObjectArray(200_000_000), "labels": []},
     "numpy dtype 'O8' is not allowed (only integers, floats and bools)"),
])
def test_a_cifar_batch_with_a_huge_label_or_declared_images(tmp_path, batch, why):
    import pickle

    raw = pickle.dumps(batch, protocol=2).replace(b"cnumpy._core.multiarray\n",
                                                  b"cnumpy.core.multiarray\n")
    (tmp_path / "b").write_bytes(raw)
    with pytest.raises(DatasetError, match=re.escape(why)):
        read_cifar_batch(tmp_path / "b")


def test_import_bounds_constant_arithmetic_before_computing(tmp_path):
    """A 262 KB ONNX file adding a [N, 1] and a [1, N] initializer took 4.2 GB."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    n = 32768
    graph = helper.make_graph(
        [helper.make_node("Add", ["A", "B"], ["C"]), helper.make_node("Identity", ["x"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 28, 28])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 28, 28])],
        [numpy_helper.from_array(np.ones((n, 1), np.float32), "A"),
         numpy_helper.from_array(np.ones((1, n), np.float32), "B")])
    onnx.save(helper.make_model(graph), tmp_path / "m.onnx")
    assert cli_rejects("import", tmp_path / "m.onnx", "-o", tmp_path / "m.npz") == (
        "error: node '#0' (Add -> 'C'): Add of constants would make 1073741824 values, more "
        "than the 2097152 the importer computes")
    assert not (tmp_path / "m.npz").exists()


def test_the_board_simulation_cache_must_be_a_folder(tmp_path):
    (tmp_path / "afile").write_text("x")
    proc = subprocess.run([sys.executable, "-m", "hwgen", "run", "--sim", "--dataset",
                           "fashion-mnist", "--limit", "1",
                           str(ROOT / "models/fmnist-mlp-up5k-sbn.npz")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, SBN_CACHE_DIR=str(tmp_path / "afile")))
    assert proc.returncode == 2 and proc.stderr == (
        f"error: the simulator cache {tmp_path}/afile/board-verilator cannot be used (Not a "
        f"directory): set $SBN_CACHE_DIR to a writable folder\n"), proc.stderr


def test_the_simulator_cache_path_must_suit_make(tmp_path):
    """Verilator's make splits paths at spaces: a cache under one fails in the compile and
    used to leave its build folder; a non-UTF-8 byte made the log undecodable (traceback)."""
    for name in ("a b", os.fsdecode(b"c\xff")):
        cache = tmp_path / name
        proc = subprocess.run([sys.executable, "-m", "hwgen", "sim",
                               str(ROOT / "models/fmnist-mlp-up5k-sbn.npz"), "--dataset",
                               "fashion-mnist", "--limit", "1"], cwd=ROOT,
                              capture_output=True, text=True, timeout=300,
                              env=dict(os.environ, SBN_CACHE_DIR=str(cache)))
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert "which Verilator's make cannot build under" in proc.stderr
        assert not cache.exists()


def _chain_onnx(path, nodes, initializers):
    """An ONNX file: input x [1, 16] -> ``nodes`` -> output y (tensor names as given)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in initializers.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def _binary_tail(source: str):
    """MatMul W1 -> BipolarQuant -> MatMul W2 -> y, from tensor ``source``."""
    from onnx import helper

    q = {"domain": "qonnx.custom_op.general"}
    rng = np.random.default_rng(0)
    return ([helper.make_node("MatMul", [source, "W1"], ["a"]),
             helper.make_node("BipolarQuant", ["a", "s"], ["b"], **q),
             helper.make_node("MatMul", ["b", "W2"], ["y"])],
            {"W1": rng.choice([-1.0, 1.0], (16, 8)), "W2": rng.choice([-1.0, 1.0], (8, 3)),
             "s": 1.0})


def test_import_bounds_the_node_count_and_pow(tmp_path):
    """A 20,000-node chain took hours in the QONNX check (its time grows with the square of
    the node count); Pow of a [N, 1] and a [1, N] constant took 2 GB."""
    pytest.importorskip("onnx")
    from onnx import helper

    tail, inits = _binary_tail("i600")
    chain = [helper.make_node("Identity", [f"i{k}"], [f"i{k + 1}"]) for k in range(600)]
    _chain_onnx(tmp_path / "long.onnx",
                [helper.make_node("Identity", ["x"], ["i0"]), *chain, *tail], inits)
    assert cli_rejects("import", tmp_path / "long.onnx", "-o", tmp_path / "m.npz") == (
        f"error: {tmp_path / 'long.onnx'}: 604 nodes, more than 500")
    tail, inits = _binary_tail("x")
    _chain_onnx(tmp_path / "pow.onnx", [helper.make_node("Pow", ["pa", "pb"], ["pc"]), *tail],
                {**inits, "pa": np.ones((4096, 1)), "pb": np.ones((1, 4096))})
    assert cli_rejects("import", tmp_path / "pow.onnx", "-o", tmp_path / "m.npz") == (
        "error: node '#0' (Pow -> 'pc'): Pow of constants would make 16777216 values, more "
        "than the 2097152 the importer computes")
    assert not (tmp_path / "m.npz").exists()


def test_import_refuses_an_input_scale_beyond_float32(tmp_path):
    """An input Quant with scale 3e38 printed numpy's overflow warning (three lines)."""
    pytest.importorskip("onnx")
    from onnx import helper

    tail, inits = _binary_tail("xq")
    quant = helper.make_node("Quant", ["x", "qs", "qz", "qb"], ["xq"], signed=0, narrow=0,
                             rounding_mode="ROUND", domain="qonnx.custom_op.general")
    _chain_onnx(tmp_path / "m.onnx", [quant, *tail],
                {**inits, "qs": 3e38, "qz": 0.0, "qb": 8.0})
    line = cli_rejects("import", tmp_path / "m.onnx", "-o", tmp_path / "m.npz",
                       "--check-images", "5")
    assert "the input quantizer maps pixels to values beyond float32" in line
    assert not (tmp_path / "m.npz").exists()


def test_build_checks_the_clock_against_the_pll_first():
    """``--clock 1`` used to fail only in the board top, after a 40 s Verilator check."""
    assert cli_rejects("build", "--board", "icebreaker", ROOT / "models/fmnist-mlp-up5k-sbn.npz",
                       "--clock", "1", timeout=30) == (
        "error: --clock 1: icebreaker: PLL output frequency 1.000 MHz is outside 16..275 MHz")


@pytest.mark.parametrize("value, jobs", [(None, 1), ("1", 1), ("16", 16), ("0", None),
                                         ("65", None), ("x", None), ("", None), ("٣", None)])
def test_verilator_build_jobs_come_from_the_environment(monkeypatch, value, jobs):
    from hwgen.errors import UserError
    from sim.toolchain import build_jobs

    if value is None:
        monkeypatch.delenv("SBN_VERILATOR_JOBS", raising=False)
    else:
        monkeypatch.setenv("SBN_VERILATOR_JOBS", value)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    if jobs is None:
        with pytest.raises(UserError, match="SBN_VERILATOR_JOBS"):
            build_jobs()
    else:
        assert build_jobs() == min(jobs, 8)  # never more compilers than CPUs


def test_import_refuses_string_tensors_before_reading_them(tmp_path):
    """A 2 MB file holding a STRING initializer of a million entries (one of 1000
    characters) took 3.9 GB: ONNX makes a fixed-width array of them."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    strings = TensorProto(name="s", data_type=TensorProto.STRING, dims=[100000])
    strings.string_data.extend([b"a" * 1000] + [b""] * 99999)
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], initializer=[strings])
    (tmp_path / "m.onnx").write_bytes(helper.make_model(graph).SerializeToString())
    assert cli_rejects("import", tmp_path / "m.onnx", "-o", tmp_path / "m.npz") == (
        "error: initializer 's' holds STRING values, not numbers")


@pytest.mark.parametrize("input_shape, layers, message", [
    ((1, 2048, 2048), [conv(1, kernel=1024)], "one output row needs 1074790400 patch values"),
    ((1, 1024, 1024), [pool(kernel=512, stride=1)],
     "the model needs 68988700674 operations per image, more than the 4294967296"),
])
def test_the_reference_refuses_work_it_cannot_bound(tmp_path, input_shape, layers, message):
    """A 14 KB model whose conv has a 1024x1024 window took 2 GB and never finished in
    ``eval``; a 2048x2048 max-pool window ran for hours and did not heed Ctrl-C."""
    from hwgen.reference import Reference

    model = random_model(np.random.default_rng(0), input_shape, layers, classes=2)
    with pytest.raises(ModelFormatError, match=re.escape(message)):
        Reference(model)
    model_io.save(model, tmp_path / "m.npz")
    write_idx(tmp_path / "i.gz", np.zeros((1,) + input_shape[1:], np.uint8))
    assert message in cli_rejects("eval", tmp_path / "m.npz", "--images", tmp_path / "i.gz")


def test_info_fold_refuses_a_model_hardware_is_not_generated_for(tmp_path):
    """256 dense layers of 512x512 (2^26 weight bits): `info --fold fastest` ran past 90 s
    and 788 MB; `verilog` refused it at once."""
    model = random_model(np.random.default_rng(0), (512, 1, 1), [dense(512)] * 20, classes=2)
    model_io.save(model, tmp_path / "m.npz")
    assert cli_rejects("info", tmp_path / "m.npz", "--fold", "fastest") == (
        "error: the model has 5243904 weight bits, more than the 4194304 hardware is "
        "generated for")


def test_a_file_output_ending_in_a_slash_is_refused(tmp_path):
    from hwgen.outputs import output_problem

    assert output_problem(f"{tmp_path}/x.npy/") == "needs a file name, not a folder"


def _bn(name, x, y, channels, mean, var):
    from onnx import helper

    inits = {f"{name}_g": np.ones(channels), f"{name}_b": np.zeros(channels),
             f"{name}_m": np.full(channels, mean), f"{name}_v": np.full(channels, var)}
    node = helper.make_node("BatchNormalization", [x, *inits], [y], epsilon=0.0)
    return node, inits


@pytest.mark.parametrize("variance", [1.0, 16.0, 1e6])
def test_an_output_batch_norm_does_not_widen_the_check(tmp_path, variance):
    """docs/import.md's float32 example disagrees with its graph (exit 1); a uniform batch
    norm after the output layer made the tie tolerance sqrt(var) times too wide, and the
    same disagreements passed (exit 0, file written)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    q = {"domain": "qonnx.custom_op.general"}
    hidden_bn, hidden = _bn("h", "g1", "n1", 1, 0.3, 1.0)
    out_bn, out = _bn("o", "yy", "y", 2, 0.0, variance)
    nodes = [helper.make_node("Sub", ["x", "c"], ["x0"]),
             helper.make_node("BipolarQuant", ["x0", "s"], ["b0"], **q),
             helper.make_node("Gemm", ["b0", "w1"], ["g1"]), hidden_bn,
             helper.make_node("BipolarQuant", ["n1", "s"], ["b1"], **q),
             helper.make_node("Gemm", ["b1", "w2"], ["yy"]), out_bn]
    inits = {"c": np.float32(127.5), "s": np.float32(1.0), "w1": np.full((3, 1), 0.1),
             "w2": np.array([[1.0, -1.0]]), **hidden, **out}
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]),
              tmp_path / "m.onnx")
    proc = subprocess.run([sys.executable, "-m", "hwgen", "import", str(tmp_path / "m.onnx"),
                           "-o", str(tmp_path / "m.npz")], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1 and "disagrees with the QONNX execution" in proc.stderr, (
        proc.returncode, proc.stderr)
    assert not (tmp_path / "m.npz").exists()


def test_import_takes_casts_to_float_only(tmp_path):
    """A Cast to INT64 (or BOOL) changes the values in the graph's execution; the importer
    took every Cast as one to float32 and wrote a model that differed from the graph."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    tail, inits = _binary_tail("x")
    tail[-1] = helper.make_node("MatMul", ["b", "W2c"], ["y"])
    casts = [helper.make_node("Cast", ["W2"], ["W2i"], to=TensorProto.INT64),
             helper.make_node("Cast", ["W2i"], ["W2c"], to=TensorProto.FLOAT)]
    _chain_onnx(tmp_path / "m.onnx", [*casts, *tail], inits)
    assert cli_rejects("import", tmp_path / "m.onnx", "-o", tmp_path / "m.npz") == (
        "error: node '#0' (Cast -> 'W2i'): Cast to ONNX type 7: only casts to FLOAT or DOUBLE "
        "are taken")


class _SharedArray:
    """Pickles as an array built from ``raw``; arrays sharing one ``raw`` share its memo."""

    def __init__(self, raw):
        self.raw = raw

    def __reduce__(self):
        from numpy._core.multiarray import _reconstruct

        return (_reconstruct, (np.ndarray, (0,), b"b"),
                (1, (len(self.raw),), np.dtype("u1"), False, self.raw))


def test_a_cifar_batch_cannot_multiply_its_bytes(tmp_path):
    """An 8 MB batch handing one memoized bytes object to 1000 arrays took 7.9 GB: arrays
    now view the stream's bytes, and one string encoded to bytes again and again is
    refused once that makes more bytes than the stream holds."""
    import pickle
    import pickletools
    import tracemalloc

    from hwgen.pickle_data import read_pickled_data

    shared = bytes(1 << 20)
    batch = {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1],
             "junk": [_SharedArray(shared) for _ in range(300)]}
    raw = pickle.dumps(batch, protocol=2).replace(b"cnumpy._core.multiarray\n",
                                                  b"cnumpy.core.multiarray\n")
    assert len(raw) < 2 << 20
    tracemalloc.start()
    try:
        junk = read_pickled_data(raw)["junk"]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(junk) == 300 and all(np.shares_memory(a, junk[0]) for a in junk)
    assert peak < 16 << 20, peak
    (tmp_path / "b").write_bytes(raw)
    assert read_cifar_batch(tmp_path / "b")[1].tolist() == [0, 1]

    text = "x" * (1 << 20)   # _codecs.encode(text, "latin1") 300 times from the memo
    encode = (b"c_codecs\nencode\nq\x00X" + len(text).to_bytes(4, "little") + text.encode()
              + b"X\x06\x00\x00\x00latin1\x86q\x01")   # GLOBAL, BINUNICODE x2, TUPLE2
    stream = b"\x80\x02" + encode + b"00]q\x02(" + b"h\x00h\x01R" * 300 + b"e."
    assert pickletools.dis(stream, out=open(os.devnull, "w")) is None
    tracemalloc.start()
    try:
        copies = read_pickled_data(stream)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(copies) == 300 and all(c is copies[0] for c in copies)  # encoded once
    assert peak < 16 << 20, peak


def test_bytes_before_the_archive_are_refused(tmp_path, model_path):
    """zipfile reads an archive behind a prefix (a self-extractor); numpy's np.load and the
    format do not."""
    prefixed = tmp_path / "prefixed.npz"
    prefixed.write_bytes(b"\0" * 400 + model_path.read_bytes())
    rejects(prefixed, r"not a readable \.npz archive \(bytes before its first member\)")


def test_a_clock_the_uart_cannot_divide_is_refused_before_any_fold(tmp_path):
    """``--clock 20`` (the PLL makes 19.875 MHz) cannot carry the default 3 Mbaud within 2%:
    refused with the other option checks, before a fold is chosen or verified (it used to
    be found when the top was elaborated, after the Verilator check)."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "hwgen", "build", "--board", "icebreaker",
                           str(ROOT / "models" / "fmnist-mlp-up5k.npz"), "--clock", "20",
                           "--skip-verify", "-o", str(tmp_path / "b")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2 and proc.stdout == "", (proc.stdout, proc.stderr)
    assert proc.stderr.splitlines() == [
        "error: --clock 20 and --baud: baud rate 3000000 cannot be made from a 19.875 MHz "
        "clock: closest is 2839286 (5.4% off, more than 2%); allowed are 19.875 MHz / N for "
        "a whole N >= 4 (within 2%), the nearest 3312500 (6 cycles per bit) and 2839286 "
        "(7 cycles per bit)"]
    assert not (tmp_path / "b").exists()


def test_build_program_without_a_programmer_fails_before_building(tmp_path, monkeypatch,
                                                                  capsys):
    """--program with neither openFPGALoader nor iceprog installed: refused at once (it
    built for a minute and replaced the output folder first)."""
    import shutil

    from hwgen.cli import main

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "report.json").write_text("OLD")
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    assert main(["build", "--board", "icebreaker", str(ROOT / "models" /
                 "fmnist-mlp-up5k-sbn.npz"), "--program", "-o", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == (
        "error: --program needs openFPGALoader (or iceprog for iCE40) on PATH\n")
    assert (tmp_path / "out" / "report.json").read_text() == "OLD"


def test_waves_that_cannot_be_written_end_the_simulation_with_one_line(tmp_path):
    """The waveform's writes fail (a file-size limit stands in for a full disk: with
    SIGXFSZ ignored, a write past it fails as one to a full disk does): one line, exit 2,
    no staging file (Verilator's own fatal handler deadlocked on the waveform's lock)."""
    import resource
    import signal as signals

    model = random_model(np.random.default_rng(11), (16, 1, 1), [dense(8)], classes=2)
    model_io.save(model, tmp_path / "m.npz")
    write_idx(tmp_path / "i", np.zeros((3000, 16), np.uint8))  # waves beyond the core
    argv = [sys.executable, "-m", "hwgen", "sim", str(tmp_path / "m.npz"), "--images",
            str(tmp_path / "i"), "-j", "1"]
    env = dict(os.environ, SBN_CACHE_DIR=str(tmp_path / "cache"))
    warm = subprocess.run([*argv, "--waves", str(tmp_path / "warm.vcd")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=env)
    assert warm.returncode == 0, warm.stderr
    size = (tmp_path / "warm.vcd").stat().st_size

    def small_files():
        signals.signal(signals.SIGXFSZ, signals.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 4, size // 4))

    (tmp_path / "w").mkdir()
    proc = subprocess.run([*argv, "--waves", str(tmp_path / "w" / "w.vcd")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=env,
                          preexec_fn=small_files)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == ("error: simulation failed: VerilatedVcd::bufferFlush: File too "
                           "large\n")
    assert list((tmp_path / "w").iterdir()) == []
