"""Import binary networks from QONNX (Brevitas / FINN) into model format v1, exactly.

``python -m hwgen import MODEL.onnx -o MODEL.npz`` (:mod:`.command`) reads the graph
(:mod:`.graph`, needs ``onnx``), converts it exactly (:mod:`.convert`), and writes the file
only when the converted model's predictions agree with the graph's own QONNX execution
(:mod:`.check`, needs ``qonnx`` and ``onnxruntime``) on every checked image. The packages
come with the optional extra ``.[import]``; nothing else in :mod:`hwgen` needs them.
"""

from __future__ import annotations

from .graph import ImportError_

EXTRA_HINT = "pip install -e '.[import]' (onnx, onnxruntime, qonnx)"


def require_packages() -> None:
    """Raise :class:`ImportError_` naming the extra when onnx/qonnx/onnxruntime are missing."""
    import importlib.util

    missing = [name for name in ("onnx", "onnxruntime", "qonnx")
               if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError_(f"hwgen import needs {', '.join(missing)}: {EXTRA_HINT}")


def import_qonnx(path, input_bits: int | None = None, input_scale=None):
    """Read and convert ``path``: returns ``(graph, Imported)`` (no check, nothing written)."""
    from .convert import Converter
    from .graph import read_graph

    require_packages()
    graph = read_graph(path)
    return graph, Converter(graph, input_bits, input_scale).convert()


__all__ = ["EXTRA_HINT", "ImportError_", "import_qonnx", "require_packages"]
