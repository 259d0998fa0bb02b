"""Constructor argument checks shared by the components."""

from __future__ import annotations

import functools


def checked_init(init):
    """Decorate a component's ``__init__``: when it raises (a bad argument), the half-built
    object is marked used, so Amaranth does not also warn that it was never elaborated."""

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        try:
            init(self, *args, **kwargs)
        except BaseException:
            self._MustUse__silence = True
            raise

    return wrapper


def check_int(name: str, value, minimum: int | None = None) -> None:
    """TypeError unless ``value`` is an int (not a bool); ValueError if below ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")
