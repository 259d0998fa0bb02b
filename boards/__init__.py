"""boards: board tops, UART link and host client for the streaming core.

* :mod:`boards.core`: the core's stream contract (:class:`~boards.core.CoreShape`) and
  :class:`~boards.core.StreamCore`, which adapts an Amaranth component or a Verilog module.
* :mod:`boards.uart`, :mod:`boards.fifo`, :mod:`boards.framer`, :mod:`boards.top`: the
  board-independent logic (8N1 UART, receive buffer, frame parser / reply generator).
* :mod:`boards.protocol`, :mod:`boards.host`: the host side (``docs/uart-protocol.md``).
* :mod:`boards.pll_ice40`, :mod:`boards.pll_ecp5`, :mod:`boards.clocking`: clocking.
* :mod:`boards.icebreaker`, :mod:`boards.ulx3s`, :mod:`boards.targets`, :mod:`boards.build`:
  boards and builds.
* :mod:`boards.simulation`, :mod:`boards.verilator_board`, :mod:`boards.cocotb_board`:
  simulated boards. :mod:`boards.standin`: a stand-in core for tests.
* :mod:`boards.flash_loader`, :mod:`boards.weight_gate`, :mod:`boards.weights`: weights kept in
  SPRAM, loaded from the board's SPI flash after power-up (gateware, and the commands' side).

See ``docs/boards.md``.
"""
