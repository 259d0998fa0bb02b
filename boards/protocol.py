"""The UART framing protocol, host side (pure Python): constants, frame encoder, reply decoder.

The gateware in :mod:`boards.framer` implements the same protocol; ``docs/uart-protocol.md``
is the specification. Summary (multi-byte fields big-endian)::

    request: A5 5A | CMD | SEQ | LEN_HI LEN_LO | LEN payload bytes | CRC_HI CRC_LO
    reply:   A5 5A | STATUS | SEQ | CLASS | CRC_HI CRC_LO

CRC is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor) over every
byte between the sync bytes and the CRC (request: CMD..payload; reply: STATUS, SEQ, CLASS).

Commands: PING; CLASSIFY (one byte per input value); CLASSIFY_PACKED (protocol version 2, only
for a model that binarizes its input at ``binarize_at``: one bit per value, bit = ``value >=
binarize_at``, value k in bit ``k % 8`` of payload byte ``k // 8``, ``ceil(values / 8)``
bytes; a board that does not take it answers BAD_COMMAND).

Protocol version 3 adds the weight statuses: a board whose core loads its weights from the
board's flash at power-up answers image frames with WEIGHTS_LOADING until they are in, and
with NO_WEIGHTS, WRONG_WEIGHTS or BAD_WEIGHTS when the flash holds no weight image, one of
another model or fold, or a corrupt one (PING is answered as always).

Protocol version 4 adds LOAD_WEIGHTS, the same weight image over the UART (for a board whose
flash holds none, or a wrong one): payload ``OFFSET (3 bytes) | DATA``, the image's bytes
from ``OFFSET`` on. A frame at offset 0 starts a load over (and resets the core); every
other frame must continue where the previous one ended. The board takes the frame (reply OK,
CLASS = its weight status after the frame, :data:`WEIGHTS_CLASSES`) or refuses it, taking
none of its bytes: WEIGHTS_LOCKED (good weights are already in: a reset is needed to load
others), WEIGHTS_LOADING (the flash load is still running), BAD_OFFSET (out of order, or the
load broke: start again at 0). A frame with no DATA only asks for the weight status. A board
without SPRAM weights answers BAD_COMMAND.
"""

from __future__ import annotations

from dataclasses import dataclass

SYNC = b"\xa5\x5a"
PROTOCOL_VERSION = 4   # 1: PING, CLASSIFY; 2: CLASSIFY_PACKED; 3: weight statuses; 4: LOAD_WEIGHTS
DEFAULT_BAUD = 3_000_000  # both boards' default link rate (`Board.default_baud`)

CMD_PING = 0x00       # LEN must be 0; reply STATUS_OK with CLASS = PROTOCOL_VERSION
CMD_CLASSIFY = 0x01   # LEN = the model's input value count; one byte per value
CMD_CLASSIFY_PACKED = 0x02   # LEN = ceil(values / 8); one bit per value (value >= binarize_at)
CMD_LOAD_WEIGHTS = 0x03  # LEN >= 3: a 24-bit offset into the weight image, then its bytes
WEIGHT_OFFSET_BYTES = 3

STATUS_OK = 0x00
STATUS_BAD_CHECKSUM = 0x01
STATUS_BAD_LENGTH = 0x02
STATUS_BAD_COMMAND = 0x03
STATUS_TIMEOUT = 0x04
STATUS_OVERRUN = 0x05
# version 3: image frames to a board that loads its core's weights from flash
STATUS_WEIGHTS_LOADING = 0x06   # still loading them (tens of ms after power-up): try again
STATUS_NO_WEIGHTS = 0x07        # the flash holds no weight image
STATUS_WRONG_WEIGHTS = 0x08     # the flash holds the image of another model or fold
STATUS_BAD_WEIGHTS = 0x09       # the flash's weight image is corrupt (CRC mismatch)
WEIGHT_STATUSES = (STATUS_WEIGHTS_LOADING, STATUS_NO_WEIGHTS, STATUS_WRONG_WEIGHTS,
                   STATUS_BAD_WEIGHTS)
# version 4: LOAD_WEIGHTS frames the board refuses (none of their bytes are taken)
STATUS_WEIGHTS_LOCKED = 0x0A    # good weights are in already (until reset)
STATUS_BAD_OFFSET = 0x0B        # not where the load stands (or it broke): start again at 0

#: CLASS of an OK LOAD_WEIGHTS reply: the board's weight status after the frame (the
#: values of :class:`boards.flash_loader.LoadStatus`).
WEIGHTS_LOADING, WEIGHTS_OK, WEIGHTS_NO_IMAGE, WEIGHTS_WRONG_MODEL, WEIGHTS_BAD_CRC = range(5)
WEIGHTS_CLASSES = {
    WEIGHTS_LOADING: "loading", WEIGHTS_OK: "loaded", WEIGHTS_NO_IMAGE: "not a weight image",
    WEIGHTS_WRONG_MODEL: "the image of another model or fold",
    WEIGHTS_BAD_CRC: "corrupt (CRC mismatch)",
}

STATUS_NAMES = {
    STATUS_OK: "ok",
    STATUS_BAD_CHECKSUM: "bad checksum",
    STATUS_BAD_LENGTH: "bad length",
    STATUS_BAD_COMMAND: "bad command",
    STATUS_TIMEOUT: "timeout (truncated frame)",
    STATUS_OVERRUN: "receiver overrun",
    STATUS_WEIGHTS_LOADING: "weights loading",
    STATUS_NO_WEIGHTS: "no weights in flash",
    STATUS_WRONG_WEIGHTS: "weights of another model in flash",
    STATUS_BAD_WEIGHTS: "corrupt weights in flash",
    STATUS_WEIGHTS_LOCKED: "weights already loaded",
    STATUS_BAD_OFFSET: "weight chunk out of order",
}

REQUEST_OVERHEAD = 8   # sync 2 + cmd + seq + len 2 + crc 2
REPLY_LENGTH = 7
MAX_PAYLOAD = 0xFFFF


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = (((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)) & 0xFFFF
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (check value of b"123456789" is 0x29B1); table-driven,
    a byte per step (a 12 Mbaud link carries ~1,500 frames of 792 bytes a second)."""
    table = _CRC_TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[(crc >> 8) ^ byte]
    return crc


def _u8(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{name} must be in 0..255, not {value}")
    return value


def encode_request(cmd: int, seq: int, payload: bytes = b"") -> bytes:
    """One request frame."""
    cmd, seq = _u8("command", cmd), _u8("sequence number", seq)
    payload = bytes(payload)
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes is longer than {MAX_PAYLOAD}")
    body = bytes([cmd, seq, len(payload) >> 8, len(payload) & 0xFF]) + payload
    crc = crc16(body)
    return SYNC + body + bytes([crc >> 8, crc & 0xFF])


def encode_weights(seq: int, offset: int, data: bytes = b"") -> bytes:
    """A LOAD_WEIGHTS frame: ``data``, the weight image's bytes from ``offset`` on (none:
    a status query)."""
    if isinstance(offset, bool) or not isinstance(offset, int) \
            or not 0 <= offset < 1 << (8 * WEIGHT_OFFSET_BYTES):
        raise ValueError(f"offset must be an integer in 0..2**24-1, not {offset!r}")
    return encode_request(CMD_LOAD_WEIGHTS, seq,
                          offset.to_bytes(WEIGHT_OFFSET_BYTES, "big") + bytes(data))


def encode_image(seq: int, values, bits: int = 8) -> bytes:
    """A CLASSIFY frame for one image: ``values`` in C, H, W row-major order, each in
    ``0..2**bits - 1`` (one byte each)."""
    return encode_request(CMD_CLASSIFY, seq, bytes(check_values(values, bits)))


def packed_length(n_values: int) -> int:
    """Payload bytes of a CLASSIFY_PACKED frame for ``n_values`` values: ``ceil(n / 8)``."""
    if isinstance(n_values, bool) or not isinstance(n_values, int) or n_values < 1:
        raise ValueError(f"value count must be a positive integer, not {n_values!r}")
    return -(-n_values // 8)


def link_problem(input_bits: int, classes: int, values: int = 1) -> str | None:
    """Why a model with ``input_bits``-bit values, ``values`` of them per image, and
    ``classes`` classes cannot go over the link (a CLASSIFY frame has one byte per value and
    at most :data:`MAX_PAYLOAD` of them, a reply one byte of class), or None."""
    if values > MAX_PAYLOAD:
        return (f"a UART frame carries at most {MAX_PAYLOAD} values per image; this model "
                f"takes {values}")
    if input_bits > 8:
        return (f"the UART protocol carries one byte per value; this model takes "
                f"{input_bits}-bit values")
    if classes > 256:
        return (f"a UART reply carries the class in one byte (at most 256 classes); this "
                f"model has {classes}")
    return None


def image_payload_length(n_values: int, packed: bool) -> int:
    """Payload bytes of one image's frame: ``n_values`` (CLASSIFY, a byte per value) or
    :func:`packed_length` (CLASSIFY_PACKED)."""
    return packed_length(n_values) if packed else n_values


def check_values(values, bits: int) -> list[int]:
    """``values`` as ints, each checked to be in ``0..2**bits - 1`` (``ValueError``)."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
        raise ValueError(f"bits per value must be 1..8, not {bits!r}")
    checked = []
    for i, value in enumerate(values):
        v = int(value)
        if v != value or not 0 <= v < (1 << bits):
            raise ValueError(f"value {i} is {value!r}, outside 0..{(1 << bits) - 1}")
        checked.append(v)
    return checked


def pack_bits(values, binarize_at: int, bits: int = 8) -> bytes:
    """The CLASSIFY_PACKED payload: bit ``k % 8`` of byte ``k // 8`` is ``values[k] >=
    binarize_at`` (LSB first; unused high bits of the last byte are 0). ``values`` are checked
    as :func:`encode_image` checks them; ``binarize_at`` must be in ``0..2**bits``."""
    values = check_values(values, bits)
    if isinstance(binarize_at, bool) or not isinstance(binarize_at, int) \
            or not 0 <= binarize_at <= 1 << bits:
        raise ValueError(f"binarize_at must be an integer in 0..{1 << bits}, not "
                         f"{binarize_at!r}")
    if not values:
        raise ValueError("an image has at least one value")
    data = bytearray(packed_length(len(values)))
    for k, v in enumerate(values):
        if v >= binarize_at:
            data[k >> 3] |= 1 << (k & 7)
    return bytes(data)


def encode_packed_image(seq: int, values, binarize_at: int, bits: int = 8) -> bytes:
    """A CLASSIFY_PACKED frame for one image (``values`` in C, H, W row-major order, each in
    ``0..2**bits - 1``; see :func:`pack_bits`)."""
    return encode_request(CMD_CLASSIFY_PACKED, seq, pack_bits(values, binarize_at, bits))


@dataclass(frozen=True)
class Reply:
    status: int
    seq: int
    klass: int

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    @property
    def status_name(self) -> str:
        return STATUS_NAMES.get(self.status, f"unknown status 0x{self.status:02x}")


def encode_reply(status: int, seq: int, klass: int) -> bytes:
    """One reply frame (what the board sends)."""
    body = bytes([_u8("status", status), _u8("sequence number", seq), _u8("class", klass)])
    crc = crc16(body)
    return SYNC + body + bytes([crc >> 8, crc & 0xFF])


class ReplyDecoder:
    """Incremental reply parser: feed it any bytes, get back the complete, CRC-valid replies.
    Bytes that are not part of a valid reply are skipped (counted in ``skipped``)."""

    def __init__(self):
        self.buffer = bytearray()
        self.skipped = 0

    def feed(self, data: bytes) -> list[Reply]:
        self.buffer += data
        replies = []
        while True:
            start = self.buffer.find(SYNC)
            if start < 0:
                keep = 1 if self.buffer[-1:] == SYNC[:1] else 0
                self.skipped += len(self.buffer) - keep
                del self.buffer[:len(self.buffer) - keep]
                return replies
            self.skipped += start
            del self.buffer[:start]
            if len(self.buffer) < REPLY_LENGTH:
                return replies
            frame = bytes(self.buffer[:REPLY_LENGTH])
            if crc16(frame[2:5]) == (frame[5] << 8 | frame[6]):
                replies.append(Reply(frame[2], frame[3], frame[4]))
                del self.buffer[:REPLY_LENGTH]
            else:  # not a reply after all: skip this sync byte and hunt again
                self.skipped += 1
                del self.buffer[:1]
