"""``python -m hwgen run``: images to a board (or its Verilator simulation) over the UART
protocol, classes compared with the reference; the parser is in :mod:`boards.commands`."""

from __future__ import annotations

import sys
import time

import numpy as np

from hwgen import model as model_io
from hwgen.errors import UserError, one_line
from hwgen.fold import input_order
from hwgen.layout import in_stream_order
from hwgen.options import check_labels, load_images
from hwgen.reference import Reference, check_images

from . import protocol, weights
from .commands import _board, _check_baud, plan_for_board, rx_fifo_depth
from .png_image import load_png

#: The slowest link ``run --sim`` simulates: each bit is clock / baud simulated cycles
#: (5000 at 48 MHz and 9600 baud), so a slower rate (``--baud 1``: 48 million cycles a
#: bit) would simulate for days; a real board (``--port``) takes any rate it can.
MIN_SIM_BAUD = 9600


def cmd_run(args) -> int:
    import math

    from .host import (BoardError, Client, SerialTransport, WeightsError, WeightsUploadError,
                       network_sim_transport)
    from .uart import baud_divisor

    if args.sim == bool(args.port):
        raise UserError("give exactly one of --port DEVICE (a board) or --sim (simulated)")
    if args.weights is not None and not args.sim:
        raise UserError("--weights is for --sim (a real board reads its own flash)")
    board = _board(args.board)
    _check_baud(board, args.baud)
    baud = args.baud or board.default_baud
    if args.sim and baud < MIN_SIM_BAUD:
        raise UserError(f"--baud {baud} is too slow to simulate: --sim takes at least "
                        f"{MIN_SIM_BAUD} baud")
    model = model_io.load(args.model)
    # what the link cannot carry is refused before any image is decoded (a 130 KB PNG of
    # 4096x4096 took 800 MiB before the refusal)
    problem = protocol.link_problem(model.input.bits, len(model.classes),
                                     model.input.size)
    if problem:
        raise UserError(problem)
    labels = None
    if args.pngs:
        if args.dataset or args.images:
            raise UserError("give PNG files or --dataset/--images, not both")
        images = np.stack([load_png(p, model.input) for p in args.pngs])
    elif args.dataset or args.images:
        images, labels = load_images(args)
        check_labels(labels, model)
    else:
        raise UserError("no images: give --dataset NAME, --images IDX or PNG files")
    # the shape and value range the model takes, as eval checks them, before any link is
    # opened or simulated (a value the UART frame cannot carry would fail mid-run)
    images = check_images(model.input, images)
    # A model that binarizes its input gets bit-packed frames (CLASSIFY_PACKED, one bit per
    # value); the client falls back to byte frames if the board refuses them.
    binarize_at = model.input.binarize_at
    packed = binarize_at is not None
    frame_bytes = protocol.REQUEST_OVERHEAD + protocol.image_payload_length(model.input.size,
                                                                           packed)
    net = None
    if args.sim or args.load_weights == "":
        _, net, _ = plan_for_board(args.model, board, args.fold, args.lanes, None, baud)
    upload_image = (None if args.load_weights is None
                    else weights.upload_image(net, args.load_weights))
    if args.sim:
        # the board at its default clock and --baud, so that simulated time is board time
        clock_hz = board.default_clock_mhz * 1e6
        try:
            divisor = baud_divisor(clock_hz, baud)
        except ValueError as err:
            raise UserError(f"--baud: {err}") from None
        # a board that loads its weights over the UART: its flash holds none (erased)
        flash_image = weights.sim_flash_image(net, args.weights,
                                              erased=upload_image is not None)
        link_baud = clock_hz / divisor
        # frames in flight: enough to cover a frame's reply (core latency + 7 bytes), so the
        # link stays busy; one at a time when the core cannot take frames back to back
        frame_cycles = frame_bytes * 10 * divisor
        reply_cycles = net.latency_cycles + protocol.REPLY_LENGTH * (10 * divisor + 1)
        window = (2 + math.ceil(reply_cycles / frame_cycles)
                  if net.cycles_per_image <= frame_cycles else 1)
        depth = rx_fifo_depth(net, board, board.default_clock_mhz, baud)
        if board.family != "ice40":
            depth = max(depth, 512)   # the ULX3S top's own FIFO
        transport = network_sim_transport(net, divisor=divisor, clock_hz=clock_hz,
                                          flash_image=flash_image, rx_fifo_depth=depth,
                                          uart_weights=upload_image is not None)
        transport.idle(weights.boot_seconds(net, clock_hz))  # the board boots first
    else:
        link_baud = baud
        # a USB-serial adapter answers within a few ms: keep that much in flight
        window = 2 + math.ceil(0.004 * link_baud / (frame_bytes * 10))
        try:
            transport = SerialTransport(str(args.port), baud=baud)
        except Exception as err:  # pyserial's SerialException, ImportError, OSError
            raise UserError(f"{args.port}: cannot open ({err})") from None
    client = Client(transport, bits=model.input.bits, window=min(window, 32), packed=packed,
                    binarize_at=binarize_at)
    # The core reads each image's values in its input order (interface.json "order").
    sent = in_stream_order(images, input_order(model))
    try:
        if upload_image is not None:
            upload_start = time.perf_counter()
            upload = client.load_weights(upload_image)
            print(weights.upload_line(upload, time.perf_counter() - upload_start))
        start = time.perf_counter()
        board_start = transport.sim_time if args.sim else None
        got = np.array(client.classify(sent), dtype=np.int64)
        board_time = transport.sim_time - board_start if args.sim else None
    except WeightsUploadError as err:
        raise UserError(weights.upload_failure_message(err, args.load_weights)) from None
    except WeightsError as err:
        raise UserError(weights.failure_message(err, sim=args.sim,
                                                weights_file=args.weights)) from None
    except BoardError as err:
        raise UserError(f"board: {err}") from None
    finally:
        transport.close()
    elapsed = time.perf_counter() - start
    wrong = np.flatnonzero((got < 0) | (got >= len(model.classes)))
    if wrong.size:
        k = int(wrong[0])
        raise UserError(f"board: answered class {got[k]} for image {k}, but the model has "
                        f"{len(model.classes)} classes (is its bitstream built from another "
                        f"model?)")
    reference = Reference(model).predict(images)
    if len(images) <= 20:
        for k, c in enumerate(got):
            print(f"image {k}: class {c} ({one_line(model.classes[c])})")
    n = len(images)
    agree = int((got == reference).sum())
    print(f"agreement {agree}/{n} with reference")
    if labels is not None:
        correct = int((got == labels).sum())
        print(f"accuracy {correct / n:.4f} ({correct}/{n})")
    stats = client.stats
    if client.packed:
        framing = f"packed frames (1 bit per value, {frame_bytes} bytes)"
    else:
        size = protocol.REQUEST_OVERHEAD + model.input.size
        framing = f"byte frames ({size} bytes" + ("; the board refused packed frames)"
                                                 if stats.packed_refused else ")")
    counts = f"{stats.frames_sent} frames sent, {stats.retries} retries"
    if args.sim:
        print(f"{n / board_time:.1f} inferences/s in simulated board time "
              f"({board.default_clock_mhz:g} MHz, {link_baud:.0f} baud, {divisor} cycles per "
              f"bit; {n / elapsed:.1f}/s in wall-clock time) over the simulated link, "
              f"{framing}, {counts}")
    else:
        print(f"{n / elapsed:.1f} inferences/s (wall clock) over the link at {link_baud:.0f} "
              f"baud, {framing}, {counts}")
    if agree != n:   # the check failed: one line says so, as sim's does
        first = int(np.flatnonzero(np.asarray(got) != reference)[0])
        print(f"error: the {'simulated ' if args.sim else ''}board disagrees with the "
              f"reference on {n - agree} of {n} images (first: image {first}, class "
              f"{int(got[first])} against {int(reference[first])})", file=sys.stderr)
        return 1
    return 0
