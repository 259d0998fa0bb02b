"""Bounded work for small hostile inputs (issue 16): a file under 10 MB never costs more
than 512 MiB of memory, whatever the layers, images or graph it declares.

The reference computes large layers in bands (conv output rows), fan-in slices (dense) and
output blocks (packed engine); these tests check that the blocked computation is exactly
the one-shot one, and measure the peak memory of the commands in child processes.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hwgen import model as model_io
from hwgen import reference as ref
from hwgen.datasets import MAX_IMAGES, write_idx
from hwgen.errors import DatasetError, ModelFormatError
from hwgen.model import Conv2d, Dense, InputSpec, MaxPool2d, Model
from hwgen.random_models import conv, dense, pool, random_images, random_model

from .conftest import ROOT

MEMORY_PROMISE = 512 << 20

# ----------------------------------------------------------------------------- reference


def _models():
    rng = np.random.default_rng(160)
    yield random_model(rng, (2, 11, 9), [conv(5, 3, stride=2, padding=1, pad_value=1),
                                         conv(4, (2, 3)), pool(2), dense(7)],
                       classes=5, binarize_at=None)
    yield random_model(rng, (1, 12, 12), [conv(6, 3, padding=1), pool(2), dense(9),
                                          dense(8)], classes=4, binarize_at=90)
    yield random_model(rng, (3, 5, 5), [dense(130), dense(70)], classes=3,
                       binarize_at=None, bits=6)


@pytest.mark.parametrize("engine", ref.ENGINES)
def test_blocked_reference_is_exactly_the_one_shot_one(monkeypatch, engine):
    rng = np.random.default_rng(161)
    for model in _models():
        images = random_images(rng, model.input, 23)
        whole = ref.Reference(model, engine).run(images)
        # tiny blocks: every layer runs in bands, fan-in slices and output blocks
        monkeypatch.setattr(ref, "_BAND_ELEMENTS", 37)
        monkeypatch.setattr(ref, "_WIDE_MATRIX", 20)
        monkeypatch.setattr(ref, "_PACKED_ELEMENTS", 3)
        monkeypatch.setattr(ref, "_CHUNK_ELEMENTS", 500)
        blocked = ref.Reference(model, engine)
        assert blocked.chunk < len(images)
        np.testing.assert_array_equal(blocked.run(images), whole)
        np.testing.assert_array_equal(blocked.predict(images), ref.predict(whole))
        monkeypatch.undo()


def test_bounded_matmul_is_exact_at_the_float32_bound():
    rng = np.random.default_rng(162)
    n = (1 << 24) // 255 - 1            # the largest fan-in float32 holds at 8-bit input
    rows = np.full((2, n), 255, dtype=np.int32)
    rows[1, ::3] = 0
    matrix = rng.choice(np.array([-1, 1], np.int8), size=(n, 3))
    matrix[:, 0] = 1
    exact = rows.astype(np.int64) @ matrix.astype(np.int64)
    got = ref.bounded_matmul(rows, matrix, np.float32)
    np.testing.assert_array_equal(got.astype(np.int64), exact)
    assert got[0, 0] == 255 * n


# ----------------------------------------------------------------------------- peak memory


def _peak_of(argv, tmp_path) -> tuple[subprocess.CompletedProcess, int]:
    """Run ``python -m hwgen ARGV`` in a child that reports its own peak RSS (bytes): the
    ``VmHWM`` of its address space (``ru_maxrss`` would start from this process's RSS,
    which Linux carries into a child across fork and exec)."""
    if not Path("/proc/self/status").exists():
        pytest.skip("needs Linux's /proc/self/status")
    report = tmp_path / "peak.txt"
    code = ("import atexit, re, runpy, sys\n"
            "def peak():\n"
            "    status = open('/proc/self/status').read()\n"
            "    kib = re.search(r'VmHWM:\\s*(\\d+) kB', status).group(1)\n"
            f"    open({str(report)!r}, 'w').write(kib)\n"
            "atexit.register(peak)\n"
            f"sys.argv = ['hwgen'] + {[str(a) for a in argv]!r}\n"
            "runpy.run_module('hwgen', run_name='__main__')\n")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=env)
    return proc, int(report.read_text()) * 1024


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    """Small files declaring large work: a dense layer of 2**26 weights, a conv over a
    4096x4096 input, one all-zero 4096x4096 image, and 2**22 + 1 images of one value."""
    root = tmp_path_factory.mktemp("large")
    wide = Model(InputSpec((1, 4096, 4096), 8, 128),
                 [Dense(np.ones((4, 4096 * 4096), np.int8))], list("abcd"), {})
    model_io.save(wide, root / "wide.npz")
    big_conv = Model(InputSpec((1, 4096, 4096), 8, None),
                     [Conv2d(np.ones((1, 1, 3, 3), np.int8), np.zeros(1, np.int64),
                             np.ones(1, np.int8), (1, 1), (0, 0), 0),
                      MaxPool2d((64, 64), (64, 64)),
                      Dense(np.ones((2, 63 * 63), np.int8), None, None, np.zeros(2, np.int32))],
                     ["a", "b"], {})
    model_io.save(big_conv, root / "conv.npz")
    image = root / "image.idx"
    write_idx(image, np.zeros((1, 4096, 4096), np.uint8))
    (root / "image.idx.gz").write_bytes(gzip.compress(image.read_bytes(), 9))
    image.unlink()
    one = random_model(np.random.default_rng(163), (1, 1, 1), [dense(2)], classes=2,
                       binarize_at=None)
    model_io.save(one, root / "one.npz")
    # a raw-input layer of 2**26 weights: fold searches count its signs once, not per fold
    square = Model(InputSpec((1024, 8, 1), 1, None),
                   [Dense(np.ones((8190, 8192), np.int8), np.zeros(8190, np.int64),
                          np.ones(8190, np.int8)),
                    Dense(np.ones((2, 8190), np.int8), None, None, np.zeros(2, np.int32))],
                   ["a", "b"], {})
    model_io.save(square, root / "square.npz")
    many = root / "many.idx"
    write_idx(many, np.zeros((MAX_IMAGES + 1, 1, 1), np.uint8))
    (root / "many.idx.gz").write_bytes(gzip.compress(many.read_bytes(), 9))
    many.unlink()
    for name in ("wide.npz", "conv.npz", "image.idx.gz", "one.npz", "many.idx.gz",
                 "square.npz"):
        assert (root / name).stat().st_size < 10 << 20, name
    return root


_TOO_MANY = (f"error: {{root}}/many.idx.gz: {MAX_IMAGES + 1} images, more than the "
             f"{MAX_IMAGES} the tools take at once (use --limit, or split the file)")
_TOO_MANY_BITS = ("error: the model has {bits} weight bits, more than the 4194304 hardware is "
                  "generated for")


@pytest.mark.parametrize("argv, refused", [
    (["info", "{root}/wide.npz"], None),
    (["eval", "{root}/wide.npz", "--images", "{root}/image.idx.gz"], None),
    (["eval", "{root}/wide.npz", "--images", "{root}/image.idx.gz", "--engine", "packed"], None),
    (["eval", "{root}/conv.npz", "--images", "{root}/image.idx.gz"], None),
    (["eval", "{root}/conv.npz", "--images", "{root}/image.idx.gz", "--engine", "packed"], None),
    (["eval", "{root}/one.npz", "--images", "{root}/many.idx.gz"], _TOO_MANY),
    (["eval", "{root}/one.npz", "--images", "{root}/many.idx.gz", "--limit", str(MAX_IMAGES)],
     None),
    (["info", "{root}/square.npz", "--fold"],
     _TOO_MANY_BITS.format(bits=8190 * 8192 + 2 * 8190)),
    (["info", "{root}/square.npz", "--fold", "fastest"],
     _TOO_MANY_BITS.format(bits=8190 * 8192 + 2 * 8190)),
    (["verilog", "{root}/square.npz", "--fold", "fastest", "-o", "{root}/v"],
     _TOO_MANY_BITS.format(bits=8190 * 8192 + 2 * 8190)),
    (["vectors", "{root}/wide.npz", "--images", "{root}/image.idx.gz", "-n", "1", "-o",
      "{root}/v"],
     _TOO_MANY_BITS.format(bits=4 << 24)),
], ids=["info-wide", "eval-wide", "eval-wide-packed", "eval-conv", "eval-conv-packed",
        "eval-too-many", "eval-limit", "info-fold-square", "info-fastest-square",
        "verilog-square", "vectors-wide"])
def test_small_files_declaring_large_work_stay_under_512_mib(large, tmp_path, argv, refused):
    argv = [a.format(root=large) for a in argv]
    proc, peak = _peak_of(argv, tmp_path)
    assert "Traceback" not in proc.stderr, proc.stderr
    if refused:
        assert proc.returncode == 2
        assert proc.stderr.strip() == refused.format(root=large)
        assert not (large / "v").exists()
    else:
        assert proc.returncode == 0, proc.stderr
    assert peak < MEMORY_PROMISE, f"peak RSS {peak >> 20} MiB"


def test_eval_of_the_wide_model_is_right(large):
    model = model_io.load(large / "wide.npz")
    # all weights +1 on an all-zero image binarized at 128: every input is -1
    scores = ref.Reference(model).run(np.zeros((1, 1, 4096, 4096), np.uint8))
    assert scores.tolist() == [[-(1 << 24)] * 4]


# ----------------------------------------------------------------------------- other bounds


def test_too_many_images_with_labels(tmp_path):
    from hwgen.datasets import load_idx_pair

    write_idx(tmp_path / "images", np.zeros((6, 2, 2), np.uint8))
    write_idx(tmp_path / "labels", np.arange(6, dtype=np.uint8))
    write_idx(tmp_path / "five", np.arange(5, dtype=np.uint8))
    images, labels = load_idx_pair(tmp_path / "images", tmp_path / "labels", limit=4)
    assert images.shape == (4, 1, 2, 2) and labels.tolist() == [0, 1, 2, 3]
    # the labels must match the file's images, not only the ones --limit keeps
    with pytest.raises(DatasetError, match="5 labels for 6 images"):
        load_idx_pair(tmp_path / "images", tmp_path / "five", limit=4)


def test_a_graph_with_a_repeated_key_is_refused(tmp_path):
    model = random_model(np.random.default_rng(164), (1, 4, 4), [dense(3)], classes=2)
    arrays = model_io.to_arrays(model)
    text = str(arrays["graph"])
    assert text.startswith("{")
    arrays["graph"] = np.array('{"classes": ["x", "y"], ' + text[1:])
    np.savez(tmp_path / "m.npz", **arrays)
    with pytest.raises(ModelFormatError, match='key "classes" appears twice in one object'):
        model_io.load(tmp_path / "m.npz")


def test_fold_json_with_a_repeated_key_is_refused(tmp_path):
    from hwgen.cli import main

    model = random_model(np.random.default_rng(165), (1, 4, 4), [dense(3)], classes=2)
    model_io.save(model, tmp_path / "m.npz")
    fold = json.dumps([{"pe": 1, "simd": 1}, {"pe": 1, "simd": 1}])
    fold = fold.replace('"simd": 1}', '"simd": 1, "pe": 2}', 1)
    code = main(["info", str(tmp_path / "m.npz"), "--fold", fold])
    assert code == 2


def test_data_dir_that_is_not_a_folder(tmp_path, monkeypatch, capsys):
    from hwgen.cli import main

    model = random_model(np.random.default_rng(166), (1, 28, 28), [dense(3)], classes=10)
    model_io.save(model, tmp_path / "m.npz")
    (tmp_path / "afile").write_text("x")
    for value, why in ((tmp_path / "afile", "not a folder"), (tmp_path / "no", "no such folder")):
        assert main(["eval", str(tmp_path / "m.npz"), "--dataset", "mnist",
                     "--data-dir", str(value)]) == 2
        assert capsys.readouterr().err == f"error: --data-dir {value}: {why}\n"
    monkeypatch.setenv("SBN_DATA_DIR", str(tmp_path / "afile"))
    assert main(["eval", str(tmp_path / "m.npz"), "--dataset", "mnist"]) == 2
    assert capsys.readouterr().err == f"error: SBN_DATA_DIR {tmp_path / 'afile'}: not a folder\n"


def test_layer_limit_holds_in_the_format_and_in_training():
    from train.arch import ArchError, parse_arch

    assert model_io.MAX_LAYERS == 256
    parse_arch("mlp:" + "-".join(["8"] * 255))
    with pytest.raises(ArchError, match="256 items; a model holds at most 256 layers"):
        parse_arch("mlp:" + "-".join(["8"] * 256))
    with pytest.raises(ArchError, match="5001 items"):
        parse_arch("mlp:" + "-".join(["8"] * 5001))


def test_a_yosys_that_cannot_reserve_its_memory_is_one_error():
    from amaranth._toolchain.yosys import YosysError

    from hwgen.gateware.portable import _start_failure

    text = ("Traceback (most recent call last):\n  File \"x\", line 1\n"
            "wasmtime._error.WasmtimeError: mmap failed to reserve 0x104000000 bytes\n\n"
            "Caused by:\n    Cannot allocate memory (os error 12)")
    assert _start_failure(YosysError(text)) == "mmap failed to reserve 0x104000000 bytes"
    assert _start_failure(YosysError("ERROR: syntax error")) is None
    assert _start_failure(ValueError(text)) is None


def test_verilog_under_a_small_address_space_is_one_error(tmp_path):
    """YoWASP's runtime reserves several GB of address space; under ``ulimit -v`` the
    command ends in one error line (the built-in Yosys may start: then it succeeds)."""
    model = random_model(np.random.default_rng(167), (1, 4, 4), [dense(3)], classes=2)
    model_io.save(model, tmp_path / "m.npz")

    def cap():
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    proc = subprocess.run([sys.executable, "-m", "hwgen", "verilog", str(tmp_path / "m.npz"),
                           "-o", str(tmp_path / "v")], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, preexec_fn=cap)
    assert "Traceback" not in proc.stderr, proc.stderr
    if proc.returncode:
        assert proc.returncode == 2
        assert proc.stderr.startswith("error: Yosys could not start: "), proc.stderr
        assert len(proc.stderr.splitlines()) == 1
        assert not (tmp_path / "v").exists()


def test_hardware_is_generated_only_for_networks_of_a_buildable_size(tmp_path, capsys):
    from hwgen.cli import main
    from hwgen.gateware.network import MAX_GENERATED_INPUT_VALUES

    wide = random_model(np.random.default_rng(168), (1, 1025, 1024), [], classes=2,
                        binarize_at=128)
    model_io.save(wide, tmp_path / "wide.npz")
    assert main(["verilog", str(tmp_path / "wide.npz"), "-o", str(tmp_path / "v")]) == 2
    assert capsys.readouterr().err == (
        f"error: the model takes {1025 * 1024} input values per image, more than the "
        f"{MAX_GENERATED_INPUT_VALUES} hardware is generated for\n")
    assert not (tmp_path / "v").exists()
    assert main(["info", str(tmp_path / "wide.npz")]) == 0   # still a valid model


@pytest.mark.parametrize("command", ["verilog", "eval"])
def test_a_full_stdout_leaves_no_output(tmp_path, command):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    model = random_model(np.random.default_rng(169), (1, 4, 4), [dense(3)], classes=2)
    model_io.save(model, tmp_path / "m.npz")
    write_idx(tmp_path / "images", random_images(np.random.default_rng(1), model.input, 3)[:, 0])
    argv = {"verilog": ["verilog", tmp_path / "m.npz", "-o", tmp_path / "out"],
            "eval": ["eval", tmp_path / "m.npz", "--images", tmp_path / "images",
                     "--save-predictions", tmp_path / "out.npy"]}[command]
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "hwgen", *map(str, argv)], cwd=ROOT,
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == "error: cannot write to standard output (No space left on device)\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "m.npz"]


def test_a_fold_too_costly_to_generate_is_one_error(tmp_path, capsys, monkeypatch):
    from hwgen.cli import main

    model = random_model(np.random.default_rng(170), (1, 8, 8), [dense(32)], classes=4,
                         binarize_at=None)
    model_io.save(model, tmp_path / "m.npz")
    monkeypatch.setenv("SBN_MAX_GENERATION_BYTES", str(100 << 20))
    # 32*64 raw terms + 4*32 binary ones + 2 layers + 4 output lanes: 48 MiB + 2048 * 100 KiB
    # + 128 * 36 KiB + 2 * 1 MiB + 4 * 128 KiB = 255 MiB
    argv = ["verilog", str(tmp_path / "m.npz"), "--fold", "32x64,4x32", "-o", str(tmp_path / "v")]
    assert main(argv) == 2
    from hwgen.fold import parse_fold, plan

    lanes = plan(model, parse_fold("32x64,4x32", model)).lanes
    assert capsys.readouterr().err == (
        f"error: fold 32x64,4x32 at --lanes {lanes} would take about 255 MiB to generate, "
        "more than the limit of 100 MiB: give a fold with a smaller PExSIMD, --lanes dividing "
        "the first layer's input word, or raise $SBN_MAX_GENERATION_BYTES\n")
    assert not (tmp_path / "v").exists()
    monkeypatch.setenv("SBN_MAX_GENERATION_BYTES", str(256 << 20))
    argv[3] = "2x8,1x4"
    assert main(argv) == 0
    assert (tmp_path / "v" / "interface.json").exists()


def _pool_chain(path: Path, side: int, pools: int) -> None:
    """A binary 1 x side x side input, ``pools`` 2x2 max-pools of stride 1, a dense output."""
    n = (side - pools) ** 2
    weight = np.ones((2, n), np.int8)
    weight[1] = -1
    np.savez(path, format=np.array("sbn-model"), version=np.array(1), w=weight,
             graph=np.array(json.dumps({
                 "input": {"shape": [1, side, side], "bits": 8, "binarize_at": 1},
                 "layers": [{"op": "maxpool2d", "kernel": [2, 2], "stride": [1, 1]}] * pools
                 + [{"op": "dense", "weight": "w", "threshold": None, "sign": None,
                     "bias": None}],
                 "classes": ["a", "b"], "provenance": {}})))


@pytest.mark.parametrize("case", ["cnn", "pools", "classes"])
def test_the_generation_estimate_bounds_the_measured_peak(tmp_path, case):
    """:func:`generation_bytes` is an upper bound of what generating a fold costs (a fold
    of 3,392 binary XNOR terms on the shipped UP5K CNN, estimated 189 MiB; 60 max-pools
    over 64x64, once estimated at 111 MiB: 112 MiB in this process with Yosys a child of its
    own, 224 MiB for both, 195 MiB with Yosys in process, now estimated at 291)."""
    from hwgen.fold import parse_fold, plan
    from hwgen.gateware.network import generation_bytes

    if case == "cnn":
        path, fold = ROOT / "models/fmnist-cnn-up5k.npz", "1x9,32x32,64x32,10x32"
    elif case == "pools":
        path, fold = tmp_path / "pools.npz", None
        _pool_chain(path, 64, 60)
    else:   # an output layer of many lanes: its scores and argmax tree (round 33: 4096
        # classes at 4096x1 took 620 MiB, estimated 193 before they were counted)
        from hwgen.random_models import random_model

        path, fold = tmp_path / "classes.npz", "1024x1"
        model_io.save(random_model(np.random.default_rng(2), (2, 1, 1), [], classes=1024,
                                   binarize_at=1), path)
    model = model_io.load(path)
    estimate = generation_bytes(plan(model, None if fold is None else parse_fold(fold, model)))
    proc, peak = _peak_of(["verilog", path, *(["--fold", fold] if fold else []), "-o",
                           tmp_path / "v"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert peak <= estimate, (peak >> 20, estimate >> 20)
    if case == "cnn":
        assert peak >= estimate // 2, (peak >> 20, estimate >> 20)   # and not a loose one


def test_vectors_memory_does_not_grow_with_the_image_count(tmp_path):
    """Golden vectors of 3000 images cost about what 10 do (the packing went a whole image
    set at a time, about 0.11 MiB an image: 1154 MiB for 10000 MNIST images)."""
    images = np.random.default_rng(5).integers(0, 256, size=(3000, 1, 28, 28))
    write_idx(tmp_path / "images.idx", images[:, 0].astype(np.uint8))
    peaks = []
    for count in (10, 3000):
        proc, peak = _peak_of(["vectors", ROOT / "models" / "fmnist-mlp-up5k.npz", "--images",
                               tmp_path / "images.idx", "-n", str(count), "-o",
                               tmp_path / f"v{count}"], tmp_path)
        assert proc.returncode == 0, proc.stderr
        peaks.append(peak)
    assert len((tmp_path / "v3000" / "inputs.hex").read_text().splitlines()) == 3000 * 784
    assert peaks[1] - peaks[0] < 40 << 20, [p >> 20 for p in peaks]


def test_a_long_chain_of_max_pools_is_refused_before_generation(tmp_path, capsys):
    """Fuzz round 25: 255 stride-1 max-pools over 256x256 (a 1.3 KB model) were estimated at
    334 MiB and took 574 MiB and 224 s; a pool now counts 4 MiB, so it is refused at once."""
    from hwgen.cli import main

    _pool_chain(tmp_path / "pools.npz", 256, 255)
    assert main(["verilog", str(tmp_path / "pools.npz"), "-o", str(tmp_path / "v")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "to generate, more than the limit" in err, err
    assert not (tmp_path / "v").exists()
