"""The importer's gate: the imported model against the QONNX graph's own execution.

:func:`execute_graph` runs the ONNX file with ``qonnx.core.onnx_exec.execute_onnx`` (the
QONNX reference execution; standard ops through onnxruntime) in float32, in batches.
:func:`compare` applies the tie-aware rule: a binary network's scores are whole multiples
of one unit plus a constant, so on an image where the model (exact integers) predicts class
``k``, the graph agrees when its float score for ``k`` is within half a unit of its largest
score (ties in the integers are common and float32 sums tied scores in different orders;
any real disagreement moves a score by at least one unit).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..heap import fixed_mmap_threshold
from ..interrupts import import_deferred
from ..reference import predict
from .graph import ImportError_

BATCH = 200
#: Values of all the graph's tensors for one batch at most: QONNX's execution holds every
#: tensor of the graph at once (float32), so a large graph runs fewer images at a time.
BATCH_VALUES = 1 << 22
#: The same for one image at most (128 MiB of float32): a graph that needs more is refused
#: rather than checked, so the check's memory is bounded whatever the file declares.
MAX_GRAPH_VALUES = 1 << 25
#: Scores (images x classes) checked at once: the reference's int64 scores, the graph's
#: float32 ones and their comparison stay tens of MiB, however many classes the graph has.
CHECK_SCORES = 1 << 22


@dataclass
class Agreement:
    images: int
    agree: int
    ties: int  # images whose largest integer score is shared by several classes
    first_disagreement: int | None
    predicted: np.ndarray  # the model's classes (ties to the lowest index)
    #: at the first disagreement: the graph's highest-scoring class and its score for the
    #: model's class (not finite when the graph overflowed)
    graph_best: int | None = None
    graph_score: float | None = None

    @property
    def ok(self) -> bool:
        return self.agree == self.images

    def describe_first(self) -> str:
        """The first disagreement in words (only when not :attr:`ok`)."""
        i = self.first_disagreement
        predicted = int(self.predicted[i])
        if not math.isfinite(self.graph_score):
            graph = f"the graph's float32 score for it is {self.graph_score}"
        else:
            graph = f"the graph's highest score is class {self.graph_best}"
        return f"it predicts class {predicted}, {graph}"


def compare(graph_scores: np.ndarray, model_scores: np.ndarray, unit: Fraction) -> Agreement:
    """Tie-aware agreement of float ``graph_scores`` [K, M] with int ``model_scores`` [K, M]."""
    graph_scores = np.asarray(graph_scores, dtype=np.float64)
    predicted = predict(model_scores)
    best = graph_scores.max(axis=1)
    chosen = graph_scores[np.arange(len(predicted)), predicted]
    good = np.isfinite(chosen) & (chosen >= best - float(unit) / 2)
    top = model_scores.max(axis=1, keepdims=True)
    ties = int(((model_scores == top).sum(axis=1) > 1).sum())
    bad = np.flatnonzero(~good)
    agreement = Agreement(len(predicted), int(good.sum()), ties,
                          int(bad[0]) if len(bad) else None, predicted)
    if len(bad):
        agreement.graph_best = int(np.argmax(graph_scores[bad[0]]))
        agreement.graph_score = float(chosen[bad[0]])
    return agreement


def check_agreement(execution: Execution, reference, images: np.ndarray, unit: Fraction,
                    convert=None, progress: bool = False) -> Agreement:
    """:func:`compare` of the graph's execution with ``reference`` (a
    :class:`~hwgen.reference.Reference`) on ``images`` [K, ...], a slice of at most
    :data:`CHECK_SCORES` scores at a time (whole graph batches); :class:`ImportError_` when
    the graph outputs another number of values than the model has classes."""
    from tqdm import tqdm

    count, classes = images.shape[0], len(reference.model.classes)
    batch = execution.batch
    step = max(batch, CHECK_SCORES // max(1, classes) // batch * batch)
    predicted = np.empty(count, dtype=np.int64)
    total = Agreement(count, 0, 0, None, predicted)
    for start in tqdm(range(0, count, step), desc="check", unit="slice",
                      disable=not progress):
        part = images[start:start + step]
        scores = reference.run(part)
        graph_scores = execute_graph(execution, part, convert=convert)
        if graph_scores.shape != scores.shape:
            raise ImportError_(f"the graph outputs {list(graph_scores.shape[1:])} values per "
                               f"image, the model {scores.shape[1]}")
        del part
        agreement = compare(graph_scores, scores, unit)
        predicted[start:start + len(scores)] = agreement.predicted
        total.agree += agreement.agree
        total.ties += agreement.ties
        if total.first_disagreement is None and agreement.first_disagreement is not None:
            total.first_disagreement = start + agreement.first_disagreement
            total.graph_best = agreement.graph_best
            total.graph_score = agreement.graph_score
    return total


def _prepared(proto, batch: int):
    """A qonnx ModelWrapper of ``proto`` with batch size ``batch`` and inferred shapes."""
    for name in ("onnx", "qonnx.core.modelwrapper"):
        import_deferred(name)
    import onnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.transformation.infer_shapes import InferShapes

    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    graph = proto.graph
    constants = [n for n in graph.node if n.op_type == "Constant"]
    for node in constants:  # as initializers, so that ChangeBatchSize sees Reshape targets
        value = next(a.t for a in node.attribute if a.name == "value")
        value.name = node.output[0]
        graph.initializer.append(value)
        graph.node.remove(node)
    initializers = {t.name for t in graph.initializer}
    image = [i for i in graph.input if i.name not in initializers]
    others = [i for i in graph.input if i.name in initializers]
    del graph.input[:]
    graph.input.extend(image + others)  # ChangeBatchSize changes input 0
    for value_info in image[:1]:
        value_info.type.tensor_type.shape.dim[0].dim_value = batch
    with warnings.catch_warnings():  # qonnx's notes (old-style domains converted) are not ours
        warnings.simplefilter("ignore")
        model = ModelWrapper(proto)
        model = model.transform(ChangeBatchSize(batch))
        return model.transform(InferShapes())


def graph_values(model) -> int:
    """Values of the tensors that QONNX's execution of ``model`` (a ModelWrapper with
    inferred shapes) holds at once: its input, every intermediate tensor and its output;
    :class:`ImportError_` when shape inference left a node output's size unknown."""
    graph = model.graph
    constants = {t.name for t in graph.initializer}
    infos = {info.name: info for info in (*graph.input, *graph.value_info, *graph.output)
             if info.name not in constants}
    for node in graph.node:  # a size shape inference could not tell would count as 1
        for name in node.output:
            info = infos.get(name)
            dims = info.type.tensor_type.shape.dim if info is not None else None
            if name and (info is None or not info.type.tensor_type.HasField("shape")
                         or any(d.dim_value <= 0 for d in dims)):
                raise ImportError_(f"node {node.name or node.op_type!r}: the size of its "
                                   f"output {name[:80]!r} cannot be inferred, so the check "
                                   f"cannot bound its memory (a Reshape to a computed shape?)")
    return sum(math.prod(d.dim_value for d in info.type.tensor_type.shape.dim)
               for info in infos.values())


def constant_values(model) -> int:
    """The part of :func:`graph_values` that does not depend on the image: the outputs of
    nodes that read constants only (computed once per batch, whatever its size)."""
    graph = model.graph
    dynamic = {i.name for i in graph.input} - {t.name for t in graph.initializer}
    fixed = set()
    for node in graph.node:   # ONNX keeps nodes in topological order
        if any(name in dynamic for name in node.input):
            dynamic.update(node.output)
        else:
            fixed.update(name for name in node.output if name)
    infos = {info.name: info for info in graph.value_info}
    return sum(math.prod(d.dim_value for d in infos[name].type.tensor_type.shape.dim)
               for name in fixed if name in infos)


@dataclass
class Execution:
    """The graph prepared for :func:`execute_graph`: ``model`` takes ``batch`` images."""

    model: object
    batch: int


def prepare_execution(proto, count: int) -> Execution:
    """The graph ready to run ``count`` images in as few batches as
    :data:`BATCH` and :data:`BATCH_VALUES` allow; :class:`ImportError_` when one image
    needs more than :data:`MAX_GRAPH_VALUES` values."""
    single = _prepared(proto, 1)
    total = graph_values(single)
    fixed = constant_values(single)   # computed from constants: not per image
    per_image = max(1, total - fixed)
    if total > MAX_GRAPH_VALUES:
        raise ImportError_(f"the graph's tensors hold {total} values per image, more "
                           f"than the import's check can execute ({MAX_GRAPH_VALUES}); "
                           f"nothing written")
    batch = max(1, min(BATCH, count, BATCH_VALUES // per_image))
    return Execution(single if batch == 1 else _prepared(proto, batch), batch)


def execute_graph(execution: Execution, inputs: np.ndarray, progress: bool = False,
                  convert=None) -> np.ndarray:
    """The graph's output [K, M] (float32) for graph inputs ``inputs`` [K, ...] (float32),
    or ``convert(inputs[batch])`` of each batch (so that only one batch is ever float)."""
    for name in ("onnxruntime", "qonnx.core.onnx_exec"):
        import_deferred(name)
    from qonnx.core.onnx_exec import execute_onnx
    from tqdm import tqdm

    import onnxruntime

    # fatal only: its warnings are not ours to print, and a failed run is reported as our
    # one error line
    onnxruntime.set_default_logger_severity(4)
    fixed_mmap_threshold()  # each batch's tensors are freed back, not kept on the heap
    count = inputs.shape[0]
    model, batch = execution.model, execution.batch
    name = model.graph.input[0].name
    out_name = model.graph.output[0].name
    shape = tuple(d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim)
    outputs = []
    for start in tqdm(range(0, count, batch), desc="QONNX execution", unit="batch",
                      disable=not progress):
        chunk = inputs[start:start + batch]
        if convert is not None:
            chunk = convert(chunk)
        padded = np.zeros((batch,) + shape[1:], dtype=np.float32)
        padded[:len(chunk)] = chunk.reshape((len(chunk),) + shape[1:])
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            result = execute_onnx(model, {name: padded})[out_name]
        outputs.append(np.asarray(result).reshape(batch, -1)[:len(chunk)])
    return np.concatenate(outputs)
