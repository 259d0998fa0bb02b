"""Errors that are the user's to fix: the CLI prints them as one line and exits 2."""


class UserError(Exception):
    """Base class for errors caused by user input (files, options, images).

    ``str(err)`` is a complete one-line message; the CLI prints ``error: <message>``.
    """


class ModelFormatError(UserError):
    """A model file that breaks ``docs/model-format.md`` (format version 1)."""


class DatasetError(UserError):
    """A dataset or image file that is missing, malformed, or does not fit the model."""
