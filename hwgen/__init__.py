"""hwgen: binary neural network model files -> bit-exact integer reference -> FPGA dataflow RTL.

Importing this package never imports torch; training lives in the separate ``train`` package.
It imports nothing at all until a name is asked for: ``python -m hwgen`` imports the package
before its ``__main__``, and the shorter that is, the shorter the window in which a Ctrl-C
meets no handler of ours.
"""

__all__ = ["DatasetError", "ModelFormatError", "UserError"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in __all__:
        from . import errors
        return getattr(errors, name)
    raise AttributeError(f"module 'hwgen' has no attribute {name!r}")
