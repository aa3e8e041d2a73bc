"""Public multi-image dataset layouts in, the TRL/Unsloth messages layout out (pure Python).

The plugin reads a row as ``messages`` (a list of ``{"role", "content": [parts]}``) plus an
``images`` list whose entries fill the bare ``{"type": "image"}`` parts in order.
:func:`to_messages` produces exactly that from the layouts public multi-image sets ship in:

===================== =========================================================================
format                what a row holds
===================== =========================================================================
``messages``          already the layout: contents are lists of typed parts (``text``/``image``)
``llava``             LLaVA / ShareGPT: ``conversations`` of ``{"from", "value"}`` strings with
                      ``<image>`` tags; images in ``image`` (a path or a list) or ``images``
``mantis``            Mantis-Instruct: ``conversation(s)`` of ``{"role", "content"}`` strings with
                      ``<image>`` tags; ``images`` as paths or ``{"bytes", "path"}`` dicts
``llamafactory``      LLaMA-Factory: ``messages`` with *string* contents holding ``<image>`` tags
``cauldron``          the_cauldron: ``images`` + ``texts: [{"user", "assistant", "source"}]``, no tags
``openai``            OpenAI chat: ``{"type": "image_url", "image_url": {"url": ...}}`` parts
``prompt_completion`` TRL: ``prompt`` (and ``completion``) message lists, ``images``
===================== =========================================================================

Conversion rules (the same for every format):

* Image tags (default ``<image>`` and ``<|image|>``, see ``image_tags``) become bare image parts,
  in order; the text is kept exactly, minus the tag itself and **one** ``"\\n"`` directly after
  it (LLaVA's ``"<image>\\n..."`` convention; ``strip_tag_newline=False`` keeps it). Empty text
  parts are dropped. In list contents (``messages``, ``openai``, ``prompt_completion``) tags in
  text parts are converted only when the row holds no image part at all; otherwise the text is
  literal.
* A row with images but no placeholder at all (no tag, no image part) gets every image at the
  start of its first user turn (the_cauldron's convention). Any other disagreement between the
  number of placeholders and the number of images raises :class:`ImageTagMismatchError`.
* No image is dropped: a row whose images have no turn to go into (an empty chat) or sit in a
  column its format does not read (``image`` beside a ``messages`` chat) raises
  :class:`FormatError` naming the row; an empty chat is read by the layout its keys name
  (``conversations: []`` with an ``image`` is LLaVA, see :func:`detect`).
* Roles: ``human`` -> ``user``; ``gpt``, ``bot``, ``model`` -> ``assistant``; others unchanged.
  Messages keep only ``role`` and ``content``; parts only ``type`` and ``text``.
* Images keep the type they came in (path, ``{"bytes", "path"}`` dict, PIL, bytes) with two
  exceptions: ``file://`` URIs become paths, and every ``image_url`` (OpenAI) payload becomes a
  ``{"bytes", "path"}`` dict (``bytes`` for a ``data:`` URI, ``path`` for a local path or an
  http(s) URL, kept verbatim; the plugin's decoder refuses URLs unless the user opted in).
  ``image_root`` resolves relative paths (bytes, absolute paths and URLs are left alone).
* Every other column is returned unchanged; the consumed ones (e.g. ``conversations``,
  ``image``, ``texts``) are left out. ``prompt_completion`` rows keep ``prompt``/``completion``
  (TRL's completion-only loss depends on the split) with converted contents.

Arrow stability: every text part is ``{"type": "text", "text": str}`` and every image part is
``{"type": "image", "text": None}``: the same two keys in every part of every row, which is what
an Arrow-backed dataset returns anyway. With ``{"type": "image"}`` alone, a ``map`` shard or
writer batch whose parts are all images infers ``struct<type>``, and ``datasets`` then fails to
align the shards or to cast the next batch (pyarrow, handed that struct, drops ``text`` silently).
Two limits remain for a plain ``Dataset.map(to_messages)``: a value that is None throughout the
first writer batch of a shard (``images: []`` of text-only rows) or throughout a shard (the
``bytes`` of path-only OpenAI rows) infers a null type the other rows cannot be cast to; and
when the output replaces an existing ``messages`` column, ``datasets`` first tries that
column's old type, so old part keys linger as None. :func:`convert_dataset` avoids both: it
maps Arrow batches with explicit output features.

Use with ``datasets``::

    dataset = unsloth_multiimage.formats.convert_dataset(dataset, image_root="/data/images", num_proc=4)
    # or, by hand (the function and its partials pickle, so num_proc works):
    fn = functools.partial(unsloth_multiimage.formats.to_messages, image_root="/data/images")
    dataset = dataset.map(fn, with_indices=True, num_proc=4, remove_columns=["conversations", "image"])

``with_indices=True`` passes the row index, so errors name the row.
"""

from ..errors import FormatError, ImageTagMismatchError, UnknownFormatError
from ..rows.layouts import FORMATS, describe, detect
from .convert import DEFAULT_IMAGE_TAGS, resolve_image, resolve_paths, to_messages
from .dataset import consumed_columns, convert_dataset
from .inverse import from_messages
from .preference import to_grpo_prompt, to_preference

__all__ = [
    "FORMATS",
    "DEFAULT_IMAGE_TAGS",
    "FormatError",
    "UnknownFormatError",
    "ImageTagMismatchError",
    "detect",
    "to_messages",
    "to_grpo_prompt",
    "to_preference",
    "from_messages",
    "describe",
    "consumed_columns",
    "convert_dataset",
    "resolve_image",
    "resolve_paths",
]
