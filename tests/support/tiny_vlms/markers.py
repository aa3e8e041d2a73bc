"""The marker language of the family table: a config value that depends on the family's tokenizer or
on the installed transformers is written as a marker, resolved (:func:`resolve`) when the model is
made, so every family stays plain data:

* ``Tok("<image>")``: that token's id; ``VOCAB``, ``PAD``, ``BOS``, ``EOS``: ``len(tokenizer)`` and
  its pad / bos / eos ids (``TokAttr``);
* ``Rope(text, mrope)`` / ``MRope(text, rope, tf5)``: a text config with the rope settings the
  installed transformers reads (``rope_parameters`` on 5.x, ``rope_theta`` + ``rope_scaling`` on 4.x);
* ``Tf4Extra(values, extra)``: ``extra`` keys on transformers 4.x only; ``Lazy(make)``: computed when
  the model is made (from a library imported only then).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .installed import tf_major


@dataclass(frozen=True)
class Tok:
    """The id of ``token`` in the family's tokenizer."""

    token: str


@dataclass(frozen=True)
class TokAttr:
    """An attribute of the family's tokenizer (``pad_token_id`` ...)."""

    name: str


#: ``len(tokenizer)``
VOCAB = TokAttr("__len__")
PAD, BOS, EOS = TokAttr("pad_token_id"), TokAttr("bos_token_id"), TokAttr("eos_token_id")


@dataclass(frozen=True)
class Rope:
    """A text config with default rope settings for the installed transformers (:func:`_rope`)."""

    text: dict
    mrope: list[int] | None = None


@dataclass(frozen=True)
class MRope:
    """A text config with extra rope keys (:func:`_mrope`); ``tf5`` keys only on transformers 5."""

    text: dict
    rope: dict
    tf5: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Tf4Extra:
    """A dict with ``extra`` keys added on transformers 4.x only."""

    values: dict
    extra: dict


@dataclass(frozen=True)
class Lazy:
    """A value computed when the model is made (e.g. from a library imported only then)."""

    make: Callable[[], Any]


def resolve(value: Any, tok: Any) -> Any:
    """``value`` with every marker replaced (a fresh structure: configs may edit their dicts)."""
    if isinstance(value, Tok):
        return tok.convert_tokens_to_ids(value.token)
    if isinstance(value, TokAttr):
        return len(tok) if value is VOCAB else getattr(tok, value.name)
    if isinstance(value, Rope):
        return _rope(resolve(value.text, tok), value.mrope)
    if isinstance(value, MRope):
        return _mrope(resolve(value.text, tok), **value.rope, **(value.tf5 if tf_major() >= 5 else {}))
    if isinstance(value, Tf4Extra):
        return {**resolve(value.values, tok), **(value.extra if tf_major() < 5 else {})}
    if isinstance(value, Lazy):
        return value.make()
    if isinstance(value, dict):
        return {k: resolve(v, tok) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(resolve(v, tok) for v in value)
    return copy.deepcopy(value)


def _rope(config_text: dict, mrope: list[int] | None = None) -> dict:
    if tf_major() >= 5:
        rp: dict[str, Any] = {"rope_type": "default", "rope_theta": 10000.0}
        if mrope:
            rp["mrope_section"] = mrope
        config_text["rope_parameters"] = rp
    else:
        config_text["rope_theta"] = 10000.0
        config_text["rope_scaling"] = {"type": "mrope", "mrope_section": mrope} if mrope else {"rope_type": "default"}
    return config_text


def _mrope(config_text: dict, **rope: Any) -> dict:
    """A text config's rope settings with extra keys (``mrope_section`` ...): ``rope_parameters`` on
    transformers 5, ``rope_theta`` + ``rope_scaling`` on 4.x."""
    if tf_major() >= 5:
        config_text["rope_parameters"] = rope5(**rope)
    else:
        config_text.update(rope_theta=10000.0, rope_scaling={"rope_type": "default", **rope})
    return config_text


def rope5(**extra: Any) -> dict:
    """A transformers 5 ``rope_parameters`` dict."""
    return {"rope_type": "default", "rope_theta": 10000.0, **extra}
