"""Amaranth 0.5 gateware for folded binary-network dataflow (see ``docs/hardware.md``).

* :mod:`.repack` -- :class:`~.repack.Repack`: regroups a vector's elements between beat widths;
  :class:`~.repack.SkidBuffer`: a register slice with a registered ready;
* :mod:`.input` -- :class:`~.input.Binarize`: the input comparator;
* :mod:`.popcount` -- pipelined adder / popcount trees;
* :mod:`.rom` -- weight and threshold ROMs laid out for iCE40 block RAM;
* :mod:`.spram` -- :class:`~.spram.SPRAMBank`: a layer's weights in iCE40UP5K SPRAM, written
  at run time;
* :mod:`.mvtu` -- :class:`~.mvtu.MVTU`: the folded matrix-vector-threshold unit;
* :mod:`.window` -- :class:`~.window.SlidingWindow`: line buffer and conv windows;
* :mod:`.maxpool` -- :class:`~.maxpool.MaxPool`: OR over each window of binary values;
* :mod:`.argmax` -- :class:`~.argmax.Argmax`: class index, ties to the lowest;
* :mod:`.network` -- :class:`~.network.Network` and :func:`~.network.write_verilog`;
* :mod:`.testing` -- stream drivers and monitors for simulation testbenches;
* :mod:`.rtlil_memory` -- memory contents written to RTLIL in linear memory (installed on
  import).
"""

from .rtlil_memory import install as _install_rtlil_memory

_install_rtlil_memory()
