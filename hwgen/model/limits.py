"""The model format's name and version, and the limits of what the tools can build and run.

:func:`~hwgen.model.validate` refuses models beyond these, naming the key. It reads them
from this module when it runs, so a test may lower one with ``monkeypatch.setattr``.
"""

FORMAT_NAME = "sbn-model"
FORMAT_VERSION = 1
MAX_INPUT_BITS = 24
# What the tools can build and run; validate() refuses models beyond these, naming the key.
MAX_SPATIAL = 4096  # height and width of every activation, every kernel, stride and padding
MAX_INPUT_CHANNELS = 1024
MAX_ACTIVATION = 1 << 24  # values of one image's activation after any layer (or the input)
MAX_TOTAL_ACTIVATION = 1 << 26  # those summed over the input and every layer's output
MAX_WEIGHTS = 1 << 26  # weights summed over all layers
MAX_LAYERS = 256  # `verilog` of 256 tiny layers: ~20 s, ~250 MB
MAX_GRAPH_CHARS = 1 << 20  # the graph JSON, provenance included (shipped models: ~1,500)
MAX_NAME_CHARS = 200  # a layer's optional name
