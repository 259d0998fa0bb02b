"""hwgen: binary neural network model files -> bit-exact integer reference -> FPGA dataflow RTL.

Importing this package never imports torch; training lives in the separate ``train`` package.
"""

from .errors import DatasetError, ModelFormatError, UserError

__all__ = ["DatasetError", "ModelFormatError", "UserError"]
__version__ = "0.1.0"
