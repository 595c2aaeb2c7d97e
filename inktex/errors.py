"""Every error InkTeX raises, in one place.

`InputError` and its subclasses are the user's to fix: the API answers them with a
4xx and the message, which says what was wrong and what to do. Anything else is ours.
"""

from __future__ import annotations


class InkTeXError(Exception):
    """Base class of InkTeX's own errors."""


class InputError(InkTeXError):
    """The input cannot be used as given; the message tells the user why."""

    status = 400


class LatexSyntaxError(InputError):
    """LaTeX that does not parse (unbalanced braces, a missing argument)."""


class ImageError(InputError):
    """Bytes that are not a usable image (not an image, truncated, empty, too large)."""


class ImageTooLargeError(ImageError):
    """An image beyond the pixel limit; a smaller photo or a crop will do."""

    status = 413


class RequestTooLargeError(InputError):
    """A request body over the API's limit; large photos go through a presigned upload."""

    status = 413


class BlankInputError(InputError):
    """An image or drawing with no ink on it."""


class StrokesError(InputError):
    """Pen strokes that are malformed (NaN, infinite or negative points, too many points)."""


class InkMLError(InputError):
    """An InkML document that is malformed, hostile or holds no traces."""


class VocabularyError(InputError):
    """LaTeX using symbols the model cannot write."""


class ModelPackageError(InkTeXError):
    """A model package that is incomplete, corrupted or does not match its version id."""


class DataError(InkTeXError):
    """A dataset folder or label file that cannot be read at all."""
