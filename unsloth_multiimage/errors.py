"""The errors a row can raise: each a ``ValueError`` whose message names the row, what was found
and the fix, and whose ``row`` attribute holds the row's index in its batch (None when unknown)."""

from __future__ import annotations

__all__ = [
    "RowError",
    "ImageCountError",
    "ImageLoadError",
    "RowShapeError",
    "FormatError",
    "UnknownFormatError",
    "ImageTagMismatchError",
]


class RowError(ValueError):
    """One row cannot be sent to the model (the message names it, the counts and the fix)."""

    def __init__(self, message: str, row: int | None = None) -> None:
        super().__init__(message)
        self.row = row


class ImageCountError(RowError):
    """A row's images and image placeholders disagree."""


class ImageLoadError(RowError):
    """An image of a row could not be loaded."""


class RowShapeError(RowError):
    """A row is not shaped like a chat the collator can read (a string for ``messages``, no chat key...)."""


class FormatError(RowShapeError):
    """A row in a public dataset layout cannot be converted (the message names the row and the format)."""


class UnknownFormatError(FormatError):
    """A row matches none of the layouts :mod:`unsloth_multiimage.formats` knows."""


class ImageTagMismatchError(FormatError, ImageCountError):
    """A row's image tags (or bare image parts) and its images disagree in number."""
