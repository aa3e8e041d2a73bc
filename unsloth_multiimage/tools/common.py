"""What several commands share: the processor that renders rows, and the row pipeline + chat
template step that turns dataset rows into the texts and images a processor gets.

Commands (``doctor``, ``convert``, ``preview``; the demo harness above them) import this module,
never each other (tests/engine/test_layers.py).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

__all__ = ["adds_special_tokens", "load_processor", "native_video", "prepare_rows", "render_chat", "starts_with_bos"]


def load_processor(model: str | None, *, required: bool = False) -> tuple[Any | None, str]:
    """``(processor, what it is)``: the processor of the local checkpoint folder ``model`` (never
    downloaded), else the tiny offline Llama-3.2-Vision one; ``(None, why)`` when transformers
    cannot build it (with ``required``, an error instead).

    Raises:
        CommandError: ``model`` is not a folder whose processor loads (naming ``--model`` and the fix).
    """
    from ..errors import CommandError, first_line
    from ..tiny_mllama import processor_of

    if model is not None and not os.path.isdir(model):
        raise CommandError(
            f"--model {model}: no such folder. Fix: give the folder of a local checkpoint (what save_pretrained "
            f"writes); models are never downloaded here."
        )
    try:
        processor = processor_of(model)
    except ImportError as exc:
        if required:
            raise CommandError(f"--model {model}: transformers cannot build its processor here ({exc}).") from None
        return None, f"no processor ({exc}): placeholders are not checked in the rendered text"
    except (OSError, ValueError, KeyError) as exc:
        first = first_line(exc)
        raise CommandError(
            f"--model {model}: its processor does not load ({first}). Fix: give the folder of a local checkpoint "
            f"with its processor files (preprocessor_config.json, tokenizer files: processor.save_pretrained(DIR))."
        ) from None
    if model is not None:
        return processor, f"the processor of {model}"
    return processor, "the tiny offline Llama-3.2-Vision processor (--model PATH: yours)"


def prepare_rows(
    examples: Sequence[Any], processor: Any, settings: Any | None = None, first_row: int = 0
) -> tuple[list[Any], list[Any], list[str]]:
    """The row pipeline on ``examples`` (:func:`unsloth_multiimage.rows.pipeline.prepare_batch`:
    the settings in force unless ``settings`` is given; errors number the rows from ``first_row``),
    then each chat rendered. Returns ``(examples, plans, texts)`` after the policies."""
    from ..adapters import group_masked_family
    from ..engine.activation import find_adapter
    from ..rows.pipeline import prepare_batch

    adapter = find_adapter(processor) if processor is not None else None
    prepared = prepare_batch(
        examples,
        settings,
        first_row=first_row,
        native_video=native_video(processor),
        group_masked_family=group_masked_family(adapter),
    )
    rows = [p.example for p in prepared]
    return rows, [p.plan for p in prepared], [render_chat(processor, e) for e in rows]


def native_video(processor: Any) -> bool:
    """Whether the installed unsloth_zoo hands this processor's videos to it (``video="auto"`` then
    leaves video parts alone, as the patched collator does); False without a processor."""
    if processor is None:
        return False
    from ..collate import release as zoo_release
    from ..engine.activation import find_adapter

    return zoo_release.takes_native_video(zoo_release.installed_decision(), find_adapter(processor))


def adds_special_tokens(processor: Any, texts: Sequence[str]) -> bool:
    """The processor's ``add_special_tokens`` for rendered ``texts``, as the installed unsloth_zoo's
    collator calls it: releases with the ``no_special_tokens`` capability off let the tokenizer add its
    BOS after the template's (a second BOS the model trains with, and ``prepare_inputs`` gives at
    inference); later releases, and a template that writes no BOS, let the tokenizer add it once."""
    from ..collate.release import collator_adds_special_tokens, installed_decision

    return collator_adds_special_tokens(installed_decision()) or not starts_with_bos(processor, texts)


def starts_with_bos(processor: Any, texts: Sequence[str]) -> bool:
    """True when the chat template already wrote the BOS token (then the tokenizer must not add one)."""
    bos = getattr(getattr(processor, "tokenizer", processor), "bos_token", None)
    return isinstance(bos, str) and bool(bos) and all(t.startswith(bos) for t in texts)


def render_chat(processor: Any, example: Any) -> str:
    """The chat of ``example`` rendered by the processor's chat template (no generation prompt)."""
    from ..rows.chat import messages_of

    messages = messages_of(example)
    template_owner = (
        processor if getattr(processor, "chat_template", None) else getattr(processor, "tokenizer", processor)
    )
    return str(template_owner.apply_chat_template(messages, tokenize=False, add_generation_prompt=False))
