"""Every error the plugin raises on purpose: one base class, :class:`UnslothMultiimageError`.

A bad row raises a :class:`RowError` (a ``ValueError``) whose message names the row, what was found
and the fix, and whose ``row`` attribute holds the row's index in its batch (None when unknown); met
in a collator call, it also says where the row is (:meth:`RowError.locate`). A failure of the
plugin's own logic, never the user's data, is an :class:`InternalError`."""

from __future__ import annotations

__all__ = [
    "UnslothMultiimageError",
    "BatchError",
    "DatasetIOError",
    "InternalError",
    "PackingRefused",
    "PackingLayoutError",
    "RowError",
    "ImageCountError",
    "ImageLoadError",
    "VideoLoadError",
    "RowShapeError",
    "FormatError",
    "UnknownFormatError",
    "ImageTagMismatchError",
    "RowTooLongError",
    "HiddenFramesError",
    "SettingsError",
    "CommandError",
]


class UnslothMultiimageError(Exception):
    """The base of every error unsloth_multiimage raises on purpose (catch this to catch them all)."""


class BatchError(UnslothMultiimageError, ValueError):
    """A batch the installed release cannot collate as a whole, though each row is fine."""


class DatasetIOError(UnslothMultiimageError, ValueError):
    """A dataset file cannot be read or written; the message names the file, the row or line and the fix."""


class InternalError(UnslothMultiimageError, RuntimeError):
    """The plugin's own logic failed (a bug to report, never blamed on a row); the message says how
    to run without the patch involved."""


class PackingRefused(UnslothMultiimageError, RuntimeError):
    """Packing cannot be exact here: the message names the family, the release or attention
    implementation, and the fallback (unpacked batches)."""


class PackingLayoutError(InternalError):
    """A padded batch does not look like its family's packing facts say (a bug to report)."""


class RowError(UnslothMultiimageError, ValueError):
    """One row cannot be sent to the model (the message names it, the counts and the fix)."""

    def __init__(self, message: str, row: int | None = None) -> None:
        super().__init__(message)
        self.row = row
        #: the message as raised, without the location :meth:`locate` adds
        self.message = message
        self.batch_size: int | None = None
        self.identity: str | None = None

    def locate(self, batch_size: int, identity: str | None) -> RowError:
        """Say where the row is, once: its place in a batch of ``batch_size`` and what identifies it
        in the dataset (``identity``, e.g. "its `id` is 17"); the message gains one sentence. A
        collator sees a batch, so "row 1" alone cannot be found in a shuffled dataset."""
        if self.row is None or self.batch_size is not None:
            return self
        self.batch_size, self.identity = batch_size, identity
        where = f"row {self.row} of this batch of {batch_size}"
        where += f": {identity}" if identity else " (it has no id, image path or text to name it by)"
        message = str(self.args[0]) if self.args else ""
        self.args = (f"{message.rstrip()} [{where}]",)
        return self


class ImageCountError(RowError):
    """A row's images and image placeholders disagree."""


class ImageLoadError(RowError):
    """An image of a row could not be loaded."""


class VideoLoadError(ImageLoadError):
    """A video of a row could not be turned into frames (unreadable, no frames, no decoder installed)."""


class HiddenFramesError(RowError):
    """A row's video frames would be hidden from the text after them: labelled frames form separate
    image groups, and Llama 3.2 Vision's ``latest`` mask shows a text token the last group only."""


class RowShapeError(RowError):
    """A row is not shaped like a chat the collator can read (a string for ``messages``, no chat key...)."""


class FormatError(RowShapeError):
    """A row in a public dataset layout cannot be converted (the message names the row and the format)."""


class UnknownFormatError(FormatError):
    """A row matches none of the layouts :mod:`unsloth_multiimage.formats` knows."""


class ImageTagMismatchError(FormatError, ImageCountError):
    """A row's image tags (or bare image parts) and its images disagree in number."""


class RowTooLongError(RowError):
    """A row is longer than one packed sequence may be."""


class SettingsError(UnslothMultiimageError, ValueError):
    """A setting has a value it cannot take; the message names where the value came from (the
    ``UNSLOTH_MULTIIMAGE_*`` variable, the ``configure()`` argument or the command-line option), the
    value and the values it may take."""

    def __init__(self, message: str, source: str | None = None) -> None:
        super().__init__(message)
        #: the variable, argument or option that gave the bad value (None when unknown)
        self.source = source


class CommandError(UnslothMultiimageError, ValueError):
    """A command cannot run with what it was given (a path, an option, a file's contents): the
    message names that input and the fix. The command line prints it and exits non-zero."""

    def __init__(self, message: str, *, usage: bool = False) -> None:
        super().__init__(message)
        #: True when the fault is in the arguments themselves (exit status 2, as argparse's)
        self.usage = usage


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, else its type's name: what a one-line error quotes of
    an upstream failure (not an error class: outside ``__all__``)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
