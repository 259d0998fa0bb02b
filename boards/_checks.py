"""Constructor-argument checks shared by the board components."""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def checking(component):
    """Wrap a component constructor's argument checks: when one raises, the half-built object
    is marked so that Amaranth does not also warn that it was created but never used."""
    try:
        yield
    except (TypeError, ValueError):
        component._MustUse__silence = True
        raise


def integer(name: str, value, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int in ``minimum..maximum``: TypeError if not an integer (bools are not),
    ValueError if out of range."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        if maximum is None:
            bound = f"at least {minimum}"
        elif minimum is None:
            bound = f"at most {maximum}"
        else:
            bound = f"{minimum}..{maximum}"
        raise ValueError(f"{name} must be {bound}, not {value}")
    return value
