"""How a packed sequence keeps its documents apart: which mechanism the installed transformers and
the model's attention implementation allow, and the block-diagonal mask where one is needed.

Three mechanisms:

- ``positions`` (eager/sdpa): no attention mask; every document's positions restart, and
  transformers builds the per-document mask from them (``masking_utils.find_packed_sequence_indices``).
  transformers does this only with NO cache in the
  forward (``masking_utils``: ``attention_mask is None and past_key_values is None``), so the packed
  batch carries ``use_cache=False``. Chosen where the installed transformers has that detection,
  no module of the model still builds its mask the pre-``masking_utils`` way (``_update_causal_mask``,
  which ignores positions), the family's own attention overlay stays inside a document, and, for
  an M-RoPE family, the release takes the text positions as a fourth row (compat_table.toml,
  ``[packing.mrope_text_positions]``).
- ``block_mask``: a 4D additive mask ``(sequences, 1, seq_len, seq_len)``, causal inside each
  document and closed between documents, with the family's bidirectional overlay (Gemma 3's image
  blocks, PaliGemma's prefix) built in. Every release of the matrix passes a 4D mask through
  unchanged on eager and sdpa; it also skips the model's sliding window, so it is refused when a
  document is longer than the window.
- ``varlen`` (flash attention): the ``positions`` conditions, and the whole batch in ONE row:
  transformers' flash-attention path reads document boundaries from position ids only for a batch
  of one row (``modeling_flash_attention_utils._is_packed_sequence``). Not verified here (no GPU in
  CI): tests/collate/test_packing_families.py has the GPU test that proves it.

Anything else (flash attention without the ``positions`` mechanism, flex attention, ...) is a
:class:`PackingRefused` that names the release, the attention implementation and what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..adapters import PackingFacts
from ..engine import compat
from ..errors import PackingRefused
from .pack_context import packing_off

__all__ = ["Mechanism", "Attention", "PackingRefused", "choose_attention", "block_mask", "sliding_window"]

Mechanism = Literal["positions", "block_mask", "varlen"]

#: attention implementations whose masks are additive 4D tensors or built from positions by masking_utils
MASKED = ("eager", "sdpa")


@dataclass(frozen=True)
class Attention:
    """The mechanism chosen for one model, and why."""

    mechanism: Mechanism
    implementation: str
    reason: str


def _transformers_version() -> str:
    import transformers

    return str(transformers.__version__)


def _packed_positions_supported() -> bool:
    """Whether the installed transformers builds per-document masks from packed position ids."""
    try:
        from transformers import masking_utils
    except ImportError:
        return False
    return hasattr(masking_utils, "find_packed_sequence_indices")


def _remaps_packed_positions() -> bool:
    """Whether masking_utils hands mask functions per-document positions in packed rows."""
    try:
        from transformers import masking_utils
    except ImportError:
        return False
    return hasattr(masking_utils, "remap_positions_for_packed_sequence")


def _takes_text_positions(family: str) -> bool:
    spec = compat.family_ranges("packing.mrope_text_positions").get(family)
    return spec is not None and spec.contains(_transformers_version(), prereleases=True)


def _legacy_mask_modules(model: Any) -> list[str]:
    """Classes in the model that build their causal mask without masking_utils (ignoring positions)."""
    modules = model.modules() if hasattr(model, "modules") else ()
    return sorted({type(m).__name__ for m in modules if callable(getattr(type(m), "_update_causal_mask", None))})


def text_config(model: Any) -> Any:
    config = getattr(model, "config", None)
    getter = getattr(config, "get_text_config", None)
    return getter() if callable(getter) else getattr(config, "text_config", config)


def implementation(model: Any) -> str:
    """The attention implementation of the model's language model."""
    for config in (text_config(model), getattr(model, "config", None)):
        found = getattr(config, "_attn_implementation", None)
        if isinstance(found, str) and found:
            return found
    return "eager"


def sliding_window(model: Any) -> int | None:
    """The window of the language model's sliding-window layers, or None when it has none."""
    config = text_config(model)
    window = getattr(config, "sliding_window", None)
    if not isinstance(window, int) or window <= 0 or getattr(config, "use_sliding_window", True) is False:
        return None
    layer_types = getattr(config, "layer_types", None)
    if isinstance(layer_types, (list, tuple)) and "sliding_attention" not in layer_types:
        return None
    return window


def _positions_problem(model: Any, family: str, facts: PackingFacts) -> str | None:
    """Why the ``positions`` mechanism is not exact for this model, or None."""
    version = _transformers_version()
    if not _packed_positions_supported():
        return f"transformers {version} builds no per-document mask from position ids (no masking_utils packing)"
    legacy = _legacy_mask_modules(model)
    if legacy:
        return (
            f"in transformers {version}, {', '.join(legacy)} build(s) the causal mask without looking at position ids"
        )
    if not facts.overlay_per_document:
        return f"{family}'s bidirectional {facts.overlay} overlay from {facts.overlay_key} spans every document of a packed row"
    if facts.overlay == "image_blocks" and _remaps_packed_positions():
        # The sliding layers get the image blocks as an extra mask function, called with each token's
        # position in its document instead of its place in the row: the blocks are read at wrong tokens.
        return (
            f"transformers {version} calls {family}'s image-block mask function at per-document positions "
            f"in a packed row (masking_utils.remap_positions_for_packed_sequence), not at the tokens' places"
        )
    if facts.positions == "mrope" and not _takes_text_positions(family):
        return f"{family} in transformers {version} does not take text positions beside its M-RoPE positions"
    return None


def choose_attention(model: Any, family: str, facts: PackingFacts) -> Attention:
    """The exact mechanism for ``model`` (of adapter ``family``), or :class:`PackingRefused`."""
    impl = implementation(model)
    problem = _positions_problem(model, family, facts)
    if impl in MASKED:
        if problem is None:
            return Attention("positions", impl, "transformers builds per-document masks from the packed position ids")
        return Attention("block_mask", impl, problem)
    if "flash" in impl:
        if problem is None:
            return Attention("varlen", impl, "flash attention reads document boundaries from the position ids")
        why = f"{problem}, and a block-diagonal mask only reaches eager and sdpa attention"
    else:
        why = "packing is proven for eager, sdpa and flash attention only"
    raise PackingRefused(
        f"unsloth_multiimage: packing {family} is refused with attn_implementation={impl!r}: {why}. Fix: load the "
        f'model with attn_implementation="sdpa" (or "eager"), or turn packing off ({packing_off()}) to '
        f"train on unpacked batches."
    )


def check_overlay_present(model: Any, family: str, facts: PackingFacts, present: bool) -> None:
    """Refuse a batch without the overlay key where the family's legacy mask then attends both ways."""
    legacy = _legacy_mask_modules(model)
    if facts.legacy_mask_needs_overlay and not present and legacy:
        raise PackingRefused(
            f"unsloth_multiimage: packing {family} is refused for this batch on transformers {_transformers_version()}: "
            f"it has no {facts.overlay_key}, and then {', '.join(legacy)} let every token attend to the whole row in "
            f"both directions (its non-training mask), which a packed batch cannot reproduce. Fix: have the "
            f"processor return {facts.overlay_key}, upgrade transformers, or turn packing off ({packing_off()})."
        )


def check_window(model: Any, family: str, lengths: Sequence[int]) -> None:
    """Refuse a block mask when a document is longer than the model's sliding window."""
    window = sliding_window(model)
    longest = max(lengths, default=0)
    if window is not None and longest > window:
        raise PackingRefused(
            f"unsloth_multiimage: packing {family} with a block-diagonal mask is refused on transformers "
            f"{_transformers_version()}: a document has {longest} tokens, more than the sliding window "
            f"({window}), and a 4D mask replaces the window. Fix: upgrade transformers to a release that packs "
            f"{family} from position ids, or turn packing off ({packing_off()})."
        )


def block_mask(docs: Any, real: Any, overlay: Any, kind: str | None, dtype: Any) -> Any:
    """The additive 4D mask ``(sequences, 1, seq_len, seq_len)`` of packed sequences.

    Args:
        docs: ``(sequences, seq_len)`` document number of every token (a sequence's padding tail
            belongs to its last document, after every real token).
        real: ``(sequences, seq_len)`` True for the documents' own tokens (False: padding tail,
            which takes no part in an overlay).
        overlay: ``(sequences, seq_len)`` values of the family's overlay key, or None.
        kind: the overlay (``image_blocks``: a run of ``== 1`` tokens attends to itself
            bidirectionally; ``prefix``: the ``== 0`` tokens of a document attend to each other).
        dtype: the model's dtype (0 where attended, its most negative value elsewhere).
    """
    import torch

    seq_len = int(docs.shape[1])
    same_doc = docs[:, :, None] == docs[:, None, :]
    causal = torch.ones(seq_len, seq_len, dtype=torch.bool, device=docs.device).tril()
    allowed = same_doc & causal[None]
    if overlay is not None and kind == "image_blocks":
        image = (overlay == 1) & real
        starts = image & ~torch.nn.functional.pad(image, (1, 0))[:, :-1]
        block = torch.where(image, starts.long().cumsum(-1), -1)  # one number per run, row-wide
        allowed |= same_doc & (block[:, :, None] == block[:, None, :]) & (block[:, :, None] >= 0)
    elif overlay is not None and kind == "prefix":
        prefix = (overlay == 0) & real
        allowed |= same_doc & prefix[:, :, None] & prefix[:, None, :]
    mask = torch.zeros(allowed.shape, dtype=dtype, device=docs.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[:, None]
