"""Errors the library raises on purpose.

Everything a user can cause (a bad file, a wrong shape, an unknown option, a missing
weight file) raises a subclass of :class:`PercepmetricError`. The CLI turns exactly these
into one line on stderr and exit code 2; anything else is a bug and keeps its traceback.
"""


class PercepmetricError(Exception):
    """Base class of every error a user can cause and fix."""


class InputError(PercepmetricError, ValueError):
    """An image, tensor, argument or option is not what the function needs."""


class WeightsNotFoundError(PercepmetricError, FileNotFoundError):
    """A pretrained or trained weight file is absent and could not be fetched."""
