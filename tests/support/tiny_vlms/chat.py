"""The tiny tokenizers and chat templates: a ``tokenizers`` WordLevel tokenizer carrying a family's
special tokens (wrapped in ``PreTrainedTokenizerFast`` or the class a 4.x processor checks for), and
a chat template written for this project in the family's format."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from unsloth_multiimage.tiny_mllama import WORDS

from .installed import tf_class, tf_major


def word_level_tokenizer(
    specials: list[str],
    *,
    template: str,
    bos: str | None,
    eos: str,
    pad: str,
    unk: str = "[UNK]",
    prepend_bos: bool = False,
    extra: dict | None = None,
    words: Sequence[str] = WORDS,
    cls: Any = None,
    added: Sequence[str] = (),
    tail: Sequence[str] = (),
    padding_side: str = "right",
) -> Any:
    """A WordLevel tokenizer: ``specials``, ``unk``, ``added`` (plain added tokens such as a newline,
    kept by the whitespace pre-tokenizer), ``words``, then ``tail`` (special tokens that must have
    the highest ids, e.g. Gemma 3n's vision / audio vocabulary regions)."""
    from tokenizers import AddedToken, processors
    from transformers import PreTrainedTokenizerFast

    from unsloth_multiimage.tiny_mllama import word_level_backend

    backend, vocab = word_level_backend(specials, (*added, *words, *tail), unk)
    if added:  # plain (not special) added tokens
        backend.add_tokens([AddedToken(t, special=False, normalized=False) for t in added])
    if tail:
        backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in tail])
    if prepend_bos and bos:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B:1", special_tokens=[(bos, vocab[bos])]
        )
    kwargs: dict[str, Any] = dict(
        tokenizer_object=backend,
        eos_token=eos,
        pad_token=pad,
        unk_token=unk,
        padding_side=padding_side,
        model_input_names=["input_ids", "attention_mask"],
        chat_template=template,
    )
    if bos:
        kwargs["bos_token"] = bos
    if extra:
        kwargs["extra_special_tokens"] = extra
    tok = (cls or PreTrainedTokenizerFast)(**kwargs)
    tok.chat_template = template
    return tok


def chat_template(
    *,
    begin: str = "",
    turn: str,
    end: str,
    image: str,
    roles: dict | None = None,
    gen: str = "",
    trim: bool = False,
    images_first: bool = False,
    text_prefix: str = "",
) -> str:
    """A chat template in a family's format. ``turn`` and ``end`` are Jinja expressions (``role`` is
    the mapped role); every image item renders ``image``, every text item its text (trimmed where the
    family's template trims, after ``text_prefix``). ``images_first``: a message's image items first,
    then its texts (the LLaVA-NeXT / OneVision / PaddleOCR-VL / PaliGemma layout)."""
    image_item = "{{- '" + image + "' -}}"
    text = "item['text'] | trim" if trim else "item['text']"
    text_item = "{{- '" + text_prefix + "' + " + text + " -}}" if text_prefix else "{{- " + text + " -}}"
    if images_first:
        body = (
            "{%- for item in message['content'] -%}{%- if item['type'] in ('image', 'image_url') -%}"
            + image_item
            + "{%- endif -%}{%- endfor -%}{%- for item in message['content'] -%}{%- if item['type'] == 'text' -%}"
            + text_item
            + "{%- endif -%}{%- endfor -%}"
        )
    else:
        body = (
            "{%- for item in message['content'] -%}{%- if item['type'] in ('image', 'image_url') -%}"
            + image_item
            + "{%- elif item['type'] == 'text' -%}"
            + text_item
            + "{%- endif -%}{%- endfor -%}"
        )
    return (
        "{%- set rmap = "
        + repr(roles or {})
        + " -%}"
        + ("{{- '" + begin + "' -}}" if begin else "")
        + "{%- for message in messages -%}"
        "{%- set role = rmap.get(message['role'], message['role']) -%}"
        "{{- " + turn + " -}}"
        "{%- if message['content'] is string -%}{{- message['content'] -}}"
        "{%- elif message['content'] is not none -%}" + body + "{%- endif -%}"
        "{{- " + end + " -}}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '" + gen + "' -}}{%- endif -%}"
    )


CHATML = dict(turn="'<|im_start|>' + role + '\n'", end="'<|im_end|>\n'", gen="<|im_start|>assistant\n")


def tokenizer_class_4x(module: str, name: str) -> Any:
    """The tokenizer class a 4.x processor type-checks for (None on 5.x, which checks nothing)."""
    return tf_class(module, name) if tf_major() < 5 else None
