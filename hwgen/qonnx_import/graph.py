"""Reading an ONNX / QONNX file without trusting it: bounded, checked, topologically sorted.

:func:`read_graph` returns a :class:`Graph`: the nodes in an order where every input is
produced before it is used, the constants (initializers and ``Constant`` nodes) as NumPy
arrays, and the one real graph input and output. Everything wrong with the file (not
protobuf, too large, external data, a cycle, two producers of one tensor, more than one
real input or output, an unknown data type) is an :class:`ImportError_` with one line.
Only the ``onnx`` package is needed here.
"""

from __future__ import annotations

import math
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..environment import size_limit
from ..files import open_regular, read_bounded, read_upto
from ..interrupts import import_deferred

MAX_ONNX_BYTES = 1 << 29  # 512 MiB; $SBN_MAX_ONNX_BYTES overrides
MAX_NODES = 500  # the QONNX check's execution time grows with the square of the count
MAX_CONSTANT_ELEMENTS = 1 << 21  # values of one constant: exact (Fraction) arithmetic on
# them takes ~130 bytes a value; the largest weight tensor of a supported network is 2^20


class ImportError_(UserError):
    """A QONNX file this importer cannot turn into a model file (one line, no file written)."""


@dataclass
class Node:
    """One ONNX node: ``op`` (its op_type), ``inputs``/``outputs`` (tensor names, '' for an
    omitted optional input), ``attrs`` (plain Python values; strings decoded)."""

    op: str
    domain: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict = field(default_factory=dict)
    index: int = 0

    def describe(self) -> str:
        """How errors name the node: its name when it has one, else op and output."""
        label = self.name or f"#{self.index}"
        out = self.outputs[0] if self.outputs else "?"
        return f"node {label!r} ({self.op} -> {out!r})"


@dataclass
class Graph:
    nodes: list[Node]
    constants: dict[str, np.ndarray]
    input_name: str
    input_shape: tuple[int, ...]
    output_name: str
    producer: str = ""
    proto: object = None  # the parsed onnx.ModelProto, for the QONNX execution


def _attr_value(attr):
    from onnx import helper

    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list):
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value]
    return value


def _external_data(tensor, where: str, folder: Path, budget: list[int],
                   read: dict | None = None) -> None:
    """Read ``tensor``'s external data (ONNX's ``location``/``offset``/``length``) into
    ``raw_data``. The location must be a relative path inside the model's folder (no
    absolute path, no ``..``) naming a regular file; at most ``budget[0]`` bytes are read
    over all tensors, and from each file (``read``: bytes so far per file) no more than it
    holds: tensors that share bytes (250 naming the same 2 MiB took 2.5 GB) are refused."""
    from onnx import TensorProto

    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    parts = Path(location).parts
    if not location or Path(location).is_absolute() or ".." in parts or "\0" in location:
        raise ImportError_(f"{where}: external data location {location!r} must be a file "
                           f"name relative to the model's folder")
    try:
        offset = int(info.get("offset", 0))
        length = int(info["length"]) if "length" in info else None
    except ValueError:
        raise ImportError_(f"{where}: external data offset/length are not numbers") from None
    if offset < 0 or (length is not None and not 0 <= length <= budget[0]):
        raise ImportError_(f"{where}: external data offset/length out of range")
    try:
        inside = folder.resolve() in (folder / location).resolve().parents
    except (OSError, RuntimeError):  # a link loop
        inside = False
    if not inside:  # through a link: onnx refuses it too
        raise ImportError_(f"{where}: external data location {location[:80]!r} resolves "
                           f"outside the model's folder")
    with open_regular(folder / location, ImportError_, "external data file") as stream:
        info = os.fstat(stream.fileno())
        size, identity = info.st_size, (info.st_dev, info.st_ino)
        if offset > size:  # also keeps seek() from overflowing (offsets of 2**63 and up)
            shown = offset if offset < 10**19 else f"of {len(str(offset))} digits"
            raise ImportError_(f"{where}: external data offset {shown} is past the end of "
                               f"{location[:80]!r} ({size} bytes)")
        want = budget[0] + 1 if length is None else length
        try:
            stream.seek(offset)
            data = read_upto(stream, want)
        except OSError as err:
            raise ImportError_(f"{where}: cannot read the external data file "
                               f"{location[:80]!r} ({err.strerror or err})") from None
    if length is not None and len(data) != length:
        raise ImportError_(f"{where}: external data file {location!r} ends before offset "
                           f"{offset} + length {length}")
    if len(data) > budget[0]:
        raise ImportError_(f"{where}: external data larger than the {MAX_ONNX_BYTES}-byte "
                           f"limit ($SBN_MAX_ONNX_BYTES)")
    if read is not None:
        read[identity] = read.get(identity, 0) + len(data)
        if read[identity] > size:
            raise ImportError_(f"{where}: the tensors' external data in {location[:80]!r} add "
                               f"up to more than its {size} bytes (tensors that share bytes "
                               f"are not supported)")
    budget[0] -= len(data)
    tensor.raw_data = bytes(data)
    del tensor.external_data[:]
    tensor.data_location = TensorProto.DEFAULT


def _tensor_array(tensor, where: str) -> np.ndarray:
    from onnx import TensorProto, numpy_helper

    if tensor.data_location == TensorProto.EXTERNAL or tensor.external_data:
        raise ImportError_(f"{where} keeps its data in an external file that was not read")
    numeric = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16,
               TensorProto.BFLOAT16, TensorProto.BOOL, TensorProto.INT8, TensorProto.INT16,
               TensorProto.INT32, TensorProto.INT64, TensorProto.UINT8, TensorProto.UINT16,
               TensorProto.UINT32, TensorProto.UINT64}
    if tensor.data_type not in numeric:
        name = (TensorProto.DataType.Name(tensor.data_type)
                if tensor.data_type in TensorProto.DataType.values() else tensor.data_type)
        raise ImportError_(f"{where} holds {name} values, not numbers")
    count = math.prod(int(d) for d in tensor.dims) if tensor.dims else 1
    if any(int(d) < 0 for d in tensor.dims) or count > MAX_CONSTANT_ELEMENTS:
        raise ImportError_(f"{where} has shape {list(tensor.dims)[:8]}: more than the "
                           f"{MAX_CONSTANT_ELEMENTS} values a constant may hold")
    try:
        array = numpy_helper.to_array(tensor)
    except Exception as err:  # a malformed tensor of any kind
        raise ImportError_(f"{where} cannot be read ({type(err).__name__}: {err})") from None
    if array.size != count:
        raise ImportError_(f"{where} holds {array.size} values for shape {list(tensor.dims)}")
    return np.array(array)


def _value_shape(value_info) -> tuple[int, ...] | None:
    tensor_type = value_info.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    return tuple(int(d.dim_value) if d.HasField("dim_value") else -1
                 for d in tensor_type.shape.dim)


def read_graph(path: Path) -> Graph:
    """Parse ``path`` (an ONNX file) into a :class:`Graph`."""
    import_deferred("onnx")
    import onnx
    from google.protobuf.message import DecodeError

    limit = size_limit("SBN_MAX_ONNX_BYTES", MAX_ONNX_BYTES, ImportError_)
    data = read_bounded(path, limit, ImportError_, reason=" ($SBN_MAX_ONNX_BYTES)")
    try:
        proto = onnx.load_from_string(bytes(data))
    except (DecodeError, ValueError, RuntimeError, TypeError) as err:
        raise ImportError_(f"{path}: not an ONNX file ({type(err).__name__})") from None
    graph = proto.graph
    if len(graph.node) > MAX_NODES:
        raise ImportError_(f"{path}: {len(graph.node)} nodes, more than {MAX_NODES}")
    budget, read = [limit - len(data)], {}
    for tensor in list(graph.initializer) + [a.t for n in graph.node for a in n.attribute
                                             if a.HasField("t")]:
        if (tensor.data_location == onnx.TensorProto.EXTERNAL) != bool(tensor.external_data):
            raise ImportError_(f"{path}: tensor {tensor.name[:80]!r} has external data entries "
                               f"but not an EXTERNAL data location, or the other way round")
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            _external_data(tensor, f"tensor {tensor.name!r}", Path(path).parent, budget, read)
    constants = {}
    for tensor in graph.initializer:  # onnx.checker: "initializer name is not unique"
        if tensor.name in constants:
            raise ImportError_(f"{path}: initializer {tensor.name[:80]!r} appears twice (ONNX "
                               f"names a value once)")
        constants[tensor.name] = _tensor_array(tensor, f"initializer {tensor.name!r}")
    nodes = []
    for index, proto_node in enumerate(graph.node):
        attrs = {a.name: _attr_value(a) for a in proto_node.attribute}
        node = Node(proto_node.op_type, proto_node.domain, proto_node.name,
                    list(proto_node.input), list(proto_node.output), attrs, index)
        if node.op == "Constant":
            if "value" not in attrs or len(node.outputs) != 1:
                raise ImportError_(f"{node.describe()}: only a tensor 'value' is supported")
            if node.outputs[0] in constants:
                raise ImportError_(f"{node.describe()}: its output is also an initializer or "
                                   f"another Constant's (ONNX names a value once)")
            constants[node.outputs[0]] = _tensor_array(
                next(a.t for a in proto_node.attribute if a.name == "value"), node.describe())
            continue
        nodes.append(node)
    inputs = [i for i in graph.input if i.name not in constants]
    if len(inputs) != 1:
        raise ImportError_(f"{path}: the graph has {len(inputs)} inputs that are not "
                           f"constants ({', '.join(repr(i.name) for i in inputs)}); "
                           f"one image input is supported")
    if len(graph.output) != 1:
        raise ImportError_(f"{path}: the graph has {len(graph.output)} outputs; one "
                           f"(the class scores) is supported")
    shape = _value_shape(inputs[0])
    if not shape or any(d == 0 for d in shape) or any(d < 0 for d in shape[1:]):
        raise ImportError_(f"{path}: the input {inputs[0].name!r} has no fixed shape "
                           f"({shape}); export with a fixed image size")
    sorted_nodes = _topological(nodes, set(constants) | {inputs[0].name}, path)
    producer = " ".join(p for p in (proto.producer_name, proto.producer_version) if p)
    return Graph(sorted_nodes, constants, inputs[0].name, shape, graph.output[0].name,
                 producer, proto)


def _topological(nodes: list[Node], available: set[str], path: Path) -> list[Node]:
    producer: dict[str, Node] = {}
    for node in nodes:
        for out in node.outputs:
            if out and (out in producer or out in available):
                raise ImportError_(f"{path}: tensor {out!r} has more than one producer")
            if out:
                producer[out] = node
    order, done, ready = [], set(available), deque()
    waiting = {}
    for node in nodes:
        missing = {i for i in node.inputs if i and i not in done}
        unknown = [i for i in missing if i not in producer]
        if unknown:
            raise ImportError_(f"{node.describe()}: input {unknown[0]!r} is produced by no "
                               f"node")
        waiting[id(node)] = missing
        if not missing:
            ready.append(node)
    users: dict[str, list[Node]] = {}
    for node in nodes:
        for i in waiting[id(node)]:
            users.setdefault(i, []).append(node)
    while ready:
        node = ready.popleft()
        order.append(node)
        for out in node.outputs:
            for user in users.pop(out, []):
                waiting[id(user)].discard(out)
                if not waiting[id(user)]:
                    ready.append(user)
    if len(order) != len(nodes):
        raise ImportError_(f"{path}: the graph has a cycle")
    return order
