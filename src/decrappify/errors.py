"""Exceptions raised for bad input, with messages that name the thing and the fix."""

from __future__ import annotations


class DecrappifyError(Exception):
    """Base class of every error decrappify raises on purpose.

    The message is a single line meant for the user: it names the file or
    parameter, what was expected and what was received.
    """


class InputError(DecrappifyError, ValueError):
    """An input file, array or parameter is not what was expected."""


class OutputError(DecrappifyError, OSError):
    """An output cannot be written (unwritable folder, would overwrite an input...)."""


class ModelFileError(DecrappifyError, ValueError):
    """A model file is missing, corrupted or does not match what is asked of it."""


class Cancelled(DecrappifyError):
    """A long operation was cancelled by the user; nothing half-written is left."""


def short_message(error: BaseException, limit: int = 160) -> str:
    """One line of at most ``limit`` characters describing an error (for wrapped errors).

    Parameters
    ----------
    error : BaseException
        An error raised by a library (tifffile, zarr ...).
    limit : int
        Longest text.

    Returns
    -------
    str
        Its message on one line (its type's name when it has none), cut with ``...``.
    """
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
