"""Host client for the UART inference board: send images, get classes.

The client talks to a *transport*: anything with ``write(bytes)``, ``read(n, timeout) -> bytes``
(up to ``n`` bytes, fewer on timeout), ``idle(seconds)``, ``close()`` and the attributes ``baud``
(bits per second on the wire), ``board_timeout`` (seconds of silence after which the board
abandons a frame) and ``latency`` (extra seconds a reply may take, e.g. USB). Two exist:

* :class:`SerialTransport`: a real board through pyserial (imported only when used);
* :class:`SimTransport`: the board top simulated in the Amaranth simulator, bit-level UART
  included (:class:`boards.simulation.SimBoard`), so the very same client code is tested
  without hardware.

:func:`classify` is the entry point::

    with SerialTransport("/dev/ttyUSB1", baud=3_000_000) as link:
        classes = classify(link, images, bits=8)

It keeps up to ``window`` frames in flight (the board handles back-to-back frames), matches
replies by sequence number, resends a frame whose reply reports a checksum error, timeout or
overrun, and after silence waits out the board's frame timeout before resending, so a
corrupted or truncated frame never leaves the two ends out of step. A BAD_LENGTH or
BAD_COMMAND reply means host and board disagree about the model; it raises
:class:`BoardError` at once. The one exception: with ``packed=True`` (bit-packed
CLASSIFY_PACKED frames, for a model with ``binarize_at``) a BAD_COMMAND reply to a packed
frame means the board does not take them (protocol version 1, or a bitstream built without
``binarize_at``): the client resends that image, and every later one, as a byte frame
(``packed`` becomes False, ``stats.packed_refused`` True). An OVERRUN reply means the board's
core does not take images as fast as back-to-back frames bring them (e.g. packed frames to a
core folded for byte frames): the client resends that image and keeps one frame in flight
from then on (``window`` becomes 1).

A board whose core loads its weights from flash (protocol version 3) answers
WEIGHTS_LOADING while it loads them (tens of ms after power-up): the client waits
``loading_poll`` seconds and resends, for up to ``weights_wait`` seconds in all, then raises
:class:`BoardError`. NO_WEIGHTS, WRONG_WEIGHTS and BAD_WEIGHTS (the board's flash holds no
weight image, one of another model or fold, or a corrupt one) raise :class:`WeightsError` at
once: no resend can help.

Simulated transports have ``sim_time``: simulated seconds since the board started, for rates
in board time (what a real board at that clock and baud would do) rather than wall time.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from hwgen.errors import first_line

from . import protocol as P


class BoardError(RuntimeError):
    """The board could not classify an image (after retries), or rejects the frames."""


def _port_errors() -> tuple[type[BaseException], ...]:
    """What a serial port raises when its other end goes away mid-run: pyserial's
    SerialException (an OSError), termios.error from a flush on a dead pty, OSError."""
    errors: tuple[type[BaseException], ...] = (OSError,)
    try:
        import termios
        errors += (termios.error,)
    except ImportError:  # not POSIX
        pass
    return errors


#: Batches of replies in a row that match no frame in flight before they count as silence
#: (each then costs every pending image a retry, so a peer that only repeats stale
#: sequence numbers ends in a BoardError).
MAX_STALE_BATCHES = 8

#: What each weight failure status means (the reply to an image frame).
WEIGHT_FAILURES = {
    P.STATUS_NO_WEIGHTS: "the board's flash holds no weights for this model",
    P.STATUS_WRONG_WEIGHTS: "the board's flash holds weights for another model or fold",
    P.STATUS_BAD_WEIGHTS: "the weights in the board's flash are corrupt (CRC mismatch)",
}


class WeightsError(BoardError):
    """The board's core has no usable weights: ``status`` is the reply's (NO_WEIGHTS,
    WRONG_WEIGHTS or BAD_WEIGHTS); the message is :data:`WEIGHT_FAILURES`'s."""

    def __init__(self, status: int):
        super().__init__(WEIGHT_FAILURES[status])
        self.status = status


class WeightsUploadError(BoardError):
    """The board checked a weight image sent over the UART and refused it: ``verdict`` is
    the weight status it reported (:data:`protocol.WEIGHTS_CLASSES`)."""

    def __init__(self, verdict: int):
        what = P.WEIGHTS_CLASSES.get(verdict, f"status {verdict}")
        super().__init__(f"the board refused the weight image: {what}")
        self.verdict = verdict


@dataclass
class WeightsUpload:
    """What :meth:`Client.load_weights` did: ``loaded`` (False: good weights were in
    already, nothing was sent), frames and bytes sent, loads started over."""

    loaded: bool
    frames: int = 0
    bytes_sent: int = 0
    restarts: int = 0


class SerialTransport:
    """A board on a serial port (pyserial). ``board_timeout``: the frame timeout the board was
    built with (default 10 ms)."""

    latency = 0.05  # USB-serial adapters buffer replies for up to a few ms; be generous

    def __init__(self, port: str, baud: int = 3_000_000, board_timeout: float = 0.01):
        try:
            import serial
        except ImportError:
            raise BoardError("pyserial is needed to talk to a board: pip install pyserial") \
                from None
        self.baud = baud
        self.board_timeout = board_timeout
        try:
            # serial_for_url: a device path, or a pyserial URL (loop://, socket://host:port)
            # a write that the other end never drains (a pty nobody reads, loop://'s full
            # queue) ends in an error, not a hang: the longest frame takes 0.7 s at 1 Mbaud
            self.write_timeout = max(2.0, 20 * (P.MAX_PAYLOAD + 64) * 10 / baud)
            self._serial = serial.serial_for_url(port, baudrate=baud, bytesize=8, parity="N",
                                                 stopbits=1, timeout=0.1,
                                                 write_timeout=self.write_timeout)
        except (serial.SerialException, ValueError) as e:
            raise BoardError(f"cannot open {port}: {e}") from None
        try:  # Linux FTDI driver: do not hold short replies for the 16 ms latency timer
            self._serial.set_low_latency_mode(True)
        except (AttributeError, NotImplementedError, OSError, ValueError):
            pass
        self._serial.reset_input_buffer()

    def write(self, data: bytes):
        import queue

        import serial

        try:
            self._serial.write(data)
            self._serial.flush()
        except (serial.SerialTimeoutException, queue.Full):
            raise BoardError(f"the port took no data for {self.write_timeout:.0f} s: is a "
                             f"board at the other end, reading?") from None
        except _port_errors() as err:
            raise BoardError(f"the port failed while writing ({first_line(err)}): was the board "
                             f"unplugged?") from None

    def read(self, n: int, timeout: float) -> bytes:
        try:
            self._serial.timeout = timeout
            return self._serial.read(n)
        except _port_errors() as err:
            raise BoardError(f"the port failed while reading ({first_line(err)}): was the board "
                             f"unplugged?") from None

    def idle(self, seconds: float):
        time.sleep(seconds)

    def close(self):
        self._serial.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SimTransport:
    """The board top in the Amaranth simulator. Times (timeouts, ``idle``) are simulated."""

    latency = 0.0   # extra seconds (simulated) a reply may take; see for_core

    def __init__(self, board):
        from .simulation import SimBoard
        if not isinstance(board, SimBoard):
            raise TypeError(f"board must be a SimBoard, not {board!r}")
        self.board = board
        self.baud = board.baud
        self.board_timeout = board.top.timeout / board.clock_hz

    @property
    def sim_time(self) -> float:
        """Simulated seconds so far."""
        return self.board.now

    @classmethod
    def for_core(cls, core, *, divisor: int = 8, timeout_bytes: int = 4,
                 clock_hz: float = 1e6, rx_fifo_depth: int = 0,
                 compute_cycles: int = 0, flash=None, flash_image: bytes = b"",
                 uart_weights: bool = False) \
            -> "SimTransport":
        """A simulated board around ``core`` (a :class:`boards.core.StreamCore`): UART at
        ``divisor`` cycles per bit, frame timeout of ``timeout_bytes`` character times.
        ``compute_cycles`` (e.g. the core's latency plus cycles per image) is added to the
        time the client waits for a reply. A core with weight words needs ``flash`` (a
        :class:`~boards.flash_loader.FlashConfig`); ``flash_image`` is what the simulated
        flash holds at its offset."""
        from .simulation import SimBoard
        from .top import UARTInferenceTop
        top = UARTInferenceTop(core, divisor=divisor, timeout=timeout_bytes * 10 * divisor,
                               rx_fifo_depth=rx_fifo_depth, flash=flash,
                               uart_weights=uart_weights)
        link = cls(SimBoard(top, clock_hz=clock_hz, flash_image=flash_image))
        link.latency = compute_cycles / clock_hz
        return link

    def write(self, data: bytes):
        self.board.write(data)

    def read(self, n: int, timeout: float) -> bytes:
        return self.board.read(n, timeout)

    def idle(self, seconds: float):
        self.board.idle(seconds)

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@dataclass
class Stats:
    frames_sent: int = 0
    retries: int = 0
    error_replies: dict = field(default_factory=dict)   # status name -> count
    bytes_skipped: int = 0
    packed_refused: bool = False   # the board answered BAD_COMMAND to a packed frame
    loading_waits: int = 0         # waits for a board still loading its weights
    weight_frames: int = 0         # LOAD_WEIGHTS frames sent


def _flatten(image) -> list[int]:
    try:
        import numpy as np
        return [int(v) for v in np.asarray(image).reshape(-1)]
    except ImportError:  # pragma: no cover - numpy is a project dependency
        return [int(v) for v in image]


class Client:
    """Frames images for one board. ``bits``: bits per input value (1..8). ``window``: frames
    in flight (enough to cover the time from a frame's end to its reply keeps the link busy).
    ``packed``: send CLASSIFY_PACKED frames, one bit per value (``value >= binarize_at``; the
    model's threshold, required then), falling back to byte frames if the board refuses
    them."""

    def __init__(self, transport, *, bits: int = 8, window: int = 2, retries: int = 3,
                 packed: bool = False, binarize_at: int | None = None,
                 weights_wait: float = 2.0, loading_poll: float = 0.01):
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
            raise ValueError(f"bits per value must be 1..8, not {bits!r}")
        if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= 128:
            raise ValueError(f"window must be 1..128 frames, not {window!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a non-negative integer, not {retries!r}")
        if not isinstance(packed, bool):
            raise TypeError(f"packed must be True or False, not {packed!r}")
        if binarize_at is not None and (isinstance(binarize_at, bool)
                                        or not isinstance(binarize_at, int)
                                        or not 0 <= binarize_at <= 1 << bits):
            raise ValueError(f"binarize_at must be an integer in 0..{1 << bits}, not "
                             f"{binarize_at!r}")
        if packed and binarize_at is None:
            raise ValueError("packed frames need binarize_at (the model's input threshold)")
        for name, value in (("weights_wait", weights_wait), ("loading_poll", loading_poll)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0 < value < 3600:
                raise ValueError(f"{name} must be a number of seconds in (0, 3600), not "
                                 f"{value!r}")
        self.weights_wait = float(weights_wait)
        self.loading_poll = float(loading_poll)
        self.transport = transport
        self.bits = bits
        self.window = window
        self.retries = retries
        self.packed = packed
        self.binarize_at = binarize_at
        self.stats = Stats()
        self._decoder = P.ReplyDecoder()
        self._seq = 0

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    def _wait_time(self, nbytes: int) -> float:
        t = self.transport
        return nbytes * 10 / t.baud * 1.5 + t.board_timeout + t.latency

    def ping(self) -> int:
        """The board's protocol version (raises :class:`BoardError` if it does not answer)."""
        for _ in range(self.retries + 1):
            seq = self._next_seq()
            self.transport.write(P.encode_request(P.CMD_PING, seq))
            for reply in self._read_replies(self._wait_time(P.REQUEST_OVERHEAD + 7)):
                if reply.seq == seq and reply.ok:
                    return reply.klass
            self._resync()
        raise BoardError("the board does not answer PING")

    def load_weights(self, image: bytes, chunk: int = 1024) -> WeightsUpload:
        """Send the weight image ``image`` (what ``hwgen build`` writes as weights.bin) in
        LOAD_WEIGHTS frames of ``chunk`` bytes, one frame in flight. A lost or refused frame
        starts the load over (at most ``retries`` times); a board still loading from its
        flash is waited for (``weights_wait``). Raises :class:`WeightsUploadError` when the
        board checks the image and refuses it, :class:`BoardError` when it does not take
        LOAD_WEIGHTS or does not answer."""
        image = bytes(image)
        if not image:
            raise ValueError("the weight image is empty")
        if len(image) >= 1 << (8 * P.WEIGHT_OFFSET_BYTES):
            raise ValueError(f"a weight image of {len(image)} bytes does not fit 24-bit "
                             f"offsets")
        if isinstance(chunk, bool) or not isinstance(chunk, int) \
                or not 1 <= chunk <= P.MAX_PAYLOAD - P.WEIGHT_OFFSET_BYTES:
            raise ValueError(f"chunk must be 1..{P.MAX_PAYLOAD - P.WEIGHT_OFFSET_BYTES} "
                             f"bytes, not {chunk!r}")
        upload = WeightsUpload(loaded=True)
        offset, waited, queries = 0, 0.0, 0

        def start_over(why: str):
            nonlocal offset
            upload.restarts += 1
            if upload.restarts > self.retries:
                raise BoardError(f"weight upload: {why} after {self.retries} restarts")
            offset = 0

        while True:
            data = image[offset:offset + chunk] if offset < len(image) else b""
            reply = self._weights_frame(offset, data)
            upload.frames += 1
            upload.bytes_sent += len(data)
            if reply is None:
                self._resync()
                start_over("no answer")
                continue
            if reply.status == P.STATUS_WEIGHTS_LOCKED:
                upload.loaded = offset > 0   # good weights were in before this upload
                return upload
            if reply.status == P.STATUS_WEIGHTS_LOADING:   # the flash load still runs
                if waited >= self.weights_wait:
                    raise BoardError(f"the board is still loading its weights from flash "
                                     f"after {waited:.2f} s")
                self.stats.loading_waits += 1
                self.transport.idle(self.loading_poll)
                waited += self.loading_poll
                continue
            if reply.status == P.STATUS_BAD_COMMAND:
                raise BoardError("the board does not take weights over the UART (build it "
                                 "with hwgen build --uart-weights; a bitstream without SPRAM "
                                 "weights, or before protocol version 4, never does)")
            if reply.status == P.STATUS_BAD_LENGTH:
                raise BoardError("the board refused a LOAD_WEIGHTS frame's length")
            if not reply.ok:   # bad offset, checksum, timeout, overrun: start over
                start_over(f"'{reply.status_name}'")
                continue
            verdict = reply.klass
            if verdict not in (P.WEIGHTS_LOADING, P.WEIGHTS_OK):
                raise WeightsUploadError(verdict)
            offset += len(data)
            if offset < len(image):
                continue
            if verdict == P.WEIGHTS_OK:
                return upload
            # every byte is in but the board has no verdict: ask again (a query frame)
            queries += 1
            if queries > self.retries:
                raise BoardError("the board took the whole weight image but reports no "
                                 "verdict")

    def _weights_frame(self, offset: int, data: bytes) -> P.Reply | None:
        """One LOAD_WEIGHTS frame and its reply (None: silence)."""
        seq = self._next_seq()
        frame = P.encode_weights(seq, offset, data)
        self.transport.write(frame)
        self.stats.frames_sent += 1
        self.stats.weight_frames += 1
        deadline = self._wait_time(len(frame) + P.REPLY_LENGTH)
        for _ in range(4):    # replies to earlier frames may come first
            replies = self._read_replies(deadline)
            if not replies:
                return None
            for reply in replies:
                if reply.seq == seq:
                    if not reply.ok:
                        name = reply.status_name
                        self.stats.error_replies[name] = \
                            self.stats.error_replies.get(name, 0) + 1
                    return reply
        return None

    def _read_replies(self, timeout: float) -> list[P.Reply]:
        replies = self._decoder.feed(self.transport.read(P.REPLY_LENGTH, timeout))
        self.stats.bytes_skipped = self._decoder.skipped
        return replies

    def _resync(self):
        """Stay silent longer than the board's frame timeout, then drop whatever came back."""
        self.transport.idle(2 * self.transport.board_timeout + self.transport.latency)
        self._decoder = P.ReplyDecoder()

    def classify(self, images) -> list[int]:
        """The class of each image (values in C, H, W order, each ``0..2**bits - 1``)."""
        frames_values = [_flatten(img) for img in images]
        for values in frames_values:  # refuse bad values before anything is sent
            P.check_values(values, self.bits)
        n = len(frames_values)
        results: list[int | None] = [None] * n
        attempts = [0] * n
        pending: deque = deque()          # (k, seq, frame bytes, packed), in send order
        todo = deque(range(n))            # images to send (resends first), within the window

        def send(k):
            seq = self._next_seq()
            if self.packed:
                frame = P.encode_packed_image(seq, frames_values[k], self.binarize_at,
                                              self.bits)
            else:
                frame = P.encode_image(seq, frames_values[k], self.bits)
            self.transport.write(frame)
            self.stats.frames_sent += 1
            pending.append((k, seq, frame, self.packed))

        def retry(k):
            attempts[k] += 1
            self.stats.retries += 1
            if attempts[k] > self.retries:
                raise BoardError(f"image {k}: no valid answer after {self.retries} retries")

        def resend_pending():
            """Every frame in flight counts as lost: the board times out, each is resent."""
            lost = [p[0] for p in pending]
            pending.clear()
            self._resync()
            for k in lost:
                retry(k)
            todo.extendleft(reversed(lost))

        waited = 0.0                      # seconds spent waiting for the weights to load
        stale_batches = 0                 # reply batches in a row that matched no frame
        while todo or pending:
            while len(pending) < self.window and todo:
                send(todo.popleft())
            in_flight = sum(len(p[2]) for p in pending) + P.REPLY_LENGTH * len(pending)
            replies = self._read_replies(self._wait_time(in_flight))
            if not replies:
                # silence: frames (or replies) were lost; let the board time out, resend all
                resend_pending()
                continue
            loading = False
            if not any(p[1] == reply.seq for reply in replies for p in pending):
                # only stale or duplicate replies: as silence after a few such batches (a
                # peer repeating one old sequence number kept this loop going for ever)
                stale_batches += 1
                if stale_batches >= MAX_STALE_BATCHES:
                    stale_batches = 0
                    resend_pending()
                continue
            stale_batches = 0
            for reply in replies:
                match = next((p for p in pending if p[1] == reply.seq), None)
                if match is None:
                    continue  # stale or duplicate reply
                k = match[0]
                pending.remove(match)
                if reply.ok:
                    results[k] = reply.klass
                    continue
                name = reply.status_name
                self.stats.error_replies[name] = self.stats.error_replies.get(name, 0) + 1
                if reply.status in WEIGHT_FAILURES:
                    raise WeightsError(reply.status)
                if reply.status == P.STATUS_WEIGHTS_LOADING:   # not a retry: send it again
                    loading = True
                    todo.appendleft(k)
                    continue
                if reply.status == P.STATUS_BAD_COMMAND and match[3]:
                    # the board does not take packed frames: byte frames from now on
                    self.packed = False
                    self.stats.packed_refused = True
                    todo.appendleft(k)
                    continue
                if reply.status == P.STATUS_OVERRUN:
                    # the board's core cannot take frames back to back at this rate: one
                    # frame at a time from now on (it has then finished the previous image)
                    self.window = 1
                if reply.status in (P.STATUS_BAD_LENGTH, P.STATUS_BAD_COMMAND):
                    raise BoardError(f"image {k}: board replied '{name}': does the board's "
                                     f"model take {len(frames_values[k])} values per image?")
                retry(k)
                todo.appendleft(k)
            if loading:   # the board is loading its weights: give it time
                if waited >= self.weights_wait:
                    raise BoardError(f"the board is still loading its weights after "
                                     f"{waited:.2f} s")
                self.stats.loading_waits += 1
                self.transport.idle(self.loading_poll)
                waited += self.loading_poll
        return results


def classify(transport, images, *, bits: int = 8, window: int = 2, retries: int = 3,
             packed: bool = False, binarize_at: int | None = None, **options) -> list[int]:
    """Classes of ``images`` from the board behind ``transport`` (see :class:`Client`;
    ``options``: ``weights_wait``, ``loading_poll``)."""
    return Client(transport, bits=bits, window=window, retries=retries, packed=packed,
                  binarize_at=binarize_at, **options).classify(images)


def network_sim_transport(net, *, backend: str = "verilator", divisor: int = 4, **options):
    """A simulated board (``--sim``) around the generated network for ``net`` (a
    :class:`hwgen.fold.NetworkPlan`): ``backend`` ``"verilator"`` (compiled, fast; the default)
    or ``"amaranth"`` (the Amaranth simulator: no compiler needed, seconds per image).
    ``divisor``: clock cycles per UART bit; ``options`` go to ``for_core`` (``clock_hz``: the
    simulated board clock, default 1 MHz; ``rx_fifo_depth``, ``timeout_bytes``, ...). The board
    takes CLASSIFY_PACKED frames when the model has ``input.binarize_at``. A plan with SPRAM
    layers (``net.spram_words``) gets the board's flash loader, and its simulated flash holds
    ``flash_image`` (default: :func:`hwgen.weight_image.image_for` ``(net)``, as ``hwgen
    build`` writes it) at :data:`~hwgen.weight_image.FLASH_OFFSET`."""
    from hwgen.gateware.network import Network, check_generatable

    from .core import CoreShape, StreamCore
    words = getattr(net, "spram_words", 0)
    shape = CoreShape(net.lanes, net.bits, net.beats_per_image, net.class_bits, net.input_size,
                      net.model.input.binarize_at, words)
    flash_image = options.pop("flash_image", None)
    if words:
        from hwgen.weight_image import header, image_for, model_id

        from .flash_loader import FlashConfig
        options["flash"] = FlashConfig.for_clock(header(words, model_id(net)),
                                                 options.get("clock_hz", 1e6))
        options["flash_image"] = image_for(net) if flash_image is None else flash_image
    check_generatable(net)
    core = StreamCore.wrap(Network(net), shape)
    options.setdefault("compute_cycles", net.latency_cycles + net.cycles_per_image)
    if backend == "verilator":
        from .verilator_board import VerilatorTransport
        return VerilatorTransport.for_core(core, divisor=divisor, **options)
    if backend == "amaranth":
        return SimTransport.for_core(core, divisor=divisor, **options)
    raise ValueError(f"unknown simulation backend {backend!r} (verilator, amaranth)")
