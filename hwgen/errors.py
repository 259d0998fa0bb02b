"""Errors that are the user's to fix: the CLI prints them as one line and exits 2."""

import re


class UserError(Exception):
    """Base class for errors caused by user input (files, options, images).

    ``str(err)`` is a complete one-line message; the CLI prints ``error: <message>``.
    """


class ModelFormatError(UserError):
    """A model file that breaks ``docs/model-format.md`` (format version 1)."""


class DatasetError(UserError):
    """A dataset or image file that is missing, malformed, or does not fit the model."""


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first line of ``err``'s message (its type's name when it has none), at most
    ``limit`` characters: the reason a one-line error gives for a library's exception."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:limit]


def one_line(text: str) -> str:
    """``text`` made safe to print as one line: control characters (newline, tab, escape,
    C1 codes, line and paragraph separators) and lone surrogates (undecodable bytes in a
    file name) are written as Python escapes such as ``\\n`` and ``\\udcff``; the rest is
    kept as it is. Every one-line error message the CLIs print passes through here."""
    if _PLAIN.fullmatch(text):
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


_PLAIN = re.compile(r"[\x20-\x7e]*")  # printable ASCII: nothing to escape
