"""TRL's GRPO and DPO trainers given every input a vision model's processor built.

TRL forwards a fixed set of vision keys (``pixel_values``, ``image_grid_thw``, ``image_sizes``,
``token_type_ids``, ...). The keys a family needs beyond them are adapter data
(:attr:`~unsloth_multiimage.adapters.ModelAdapter.row_inputs`, ``token_inputs``; Llama 3.2 Vision:
``aspect_ratio_ids``, ``aspect_ratio_mask`` and a ``cross_attention_mask`` covering the
completion); a family whose adapter names none is left to TRL untouched.

* :func:`rollout` (``GRPOTrainer._generate_and_score_completions``): while it runs, the trainer's
  processor is seen through a :class:`_Recorder`, so the prompt encoding TRL builds for its log-prob
  passes is kept; those passes get the missing keys (:class:`_Injecting`, a call-through stand-in
  for the model: TRL scores a batch in consecutive chunks of rows); the rollout it returns carries
  them (under :data:`ROW_PREFIX`, batch-first, so TRL's shuffling and splitting keep them with
  their rows), per-token keys extended over the completions.
* :func:`loss` (``GRPOTrainer._compute_loss``): the policy forward of the loss gets them.
* :func:`dpo_collate` (``DataCollatorForVisionPreference.torch_call``): the batch's per-token
  inputs are extended over the chosen/rejected tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..adapters import AdapterLookup, ModelAdapter
from ..engine.decision import Decision, StrEnum
from ..engine.patching import AnyObjectProxy, signature_accepts
from ..engine.swap import swapped
from ..errors import InternalError
from . import completion_mask

__all__ = [
    "Fix",
    "DpoFix",
    "LOSS_FIXES",
    "ROW_PREFIX",
    "dpo_collate",
    "extend_token_inputs",
    "logps_shape",
    "loss",
    "rollout",
]

#: The key prefix under which a rollout carries the family's row inputs.
ROW_PREFIX = "umi_rows:"
_LOGPS = "_get_per_token_logps_and_entropies"
_GENERATE = "_generate_single_turn"


class Fix(StrEnum):
    """The upstream gaps the GRPO patches fill (``[patches.trl_grpo_rollout]`` fixes)."""

    ROW_VISION_INPUTS = "row_vision_inputs"
    COMPLETION_CROSS_ATTENTION = "completion_cross_attention"
    LEFT_PADDED_GENERATION = "left_padded_generation"


#: The loss patch fills the first two gaps (generation is the rollout's).
LOSS_FIXES = (Fix.ROW_VISION_INPUTS, Fix.COMPLETION_CROSS_ATTENTION)


class DpoFix(StrEnum):
    """The upstream gap the DPO collator patch fills."""

    COMPLETION_CROSS_ATTENTION = "completion_cross_attention"


def logps_shape(call: Any) -> str | None:
    """The rollout takes the generation batch, and the trainer scores with the log-prob helper
    whose ``model`` argument the patch wraps."""
    problem = signature_accepts(call, positional=1)
    if problem:
        return problem
    owner = getattr(call, "__qualname__", "").rsplit(".", 1)[0]
    module = __import__(call.__module__, fromlist=["_"]) if getattr(call, "__module__", None) else None
    trainer = getattr(module, owner, None) if module is not None else None
    logps = getattr(trainer, _LOGPS, None)
    if logps is None:
        return f"{owner}.{_LOGPS} is missing"
    return signature_accepts(logps, "attention_mask", "logits_to_keep", positional=4)


def _keys(adapter: ModelAdapter | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if adapter is None:
        return (), ()
    return tuple(adapter.row_inputs), tuple(k for k in adapter.token_inputs if k in adapter.row_inputs)


def extend_token_inputs(
    rows: dict[str, Any], token_keys: tuple[str, ...], prompt_attention: Any, attention_mask: Any, completion: int
) -> dict[str, Any]:
    """``rows`` with each per-token input (built for the prompts, whose attention mask is
    ``prompt_attention``) laid over ``attention_mask``: the prompt tokens then ``completion``
    completion columns. Each completion token sees what the row's last prompt token sees; padding
    sees nothing (:func:`~.completion_mask.extend_over_completions`)."""
    import torch

    attention = torch.as_tensor(attention_mask)
    out = dict(rows)
    for key in token_keys:
        value = rows.get(key)
        if value is None or value.shape[1] == attention.shape[1]:
            continue
        batch = {"attention_mask": attention}
        completions = {"attention_mask": attention[:, attention.shape[1] - completion :]}
        # extend_over_completions writes the mask under its Mllama name; other keys reuse it.
        prompts = {"cross_attention_mask": value, "attention_mask": prompt_attention}
        completion_mask.extend_over_completions(batch, prompts, completions, "left")
        out[key] = batch["cross_attention_mask"]
    return out


class _Injecting:
    """Stands in for the model in TRL's log-prob helper: each call gets the rows of ``rows`` that
    follow the rows already handed out (TRL scores the batch in consecutive chunks of rows)."""

    def __init__(self, model: Any, rows: Mapping[str, Any]) -> None:
        self._umi_model = model
        self._umi_rows = rows
        self._umi_offset = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        ids: Any = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            return self._umi_model(*args, **kwargs)
        n = int(ids.shape[0])
        start = self._umi_offset
        total = next(iter(self._umi_rows.values())).shape[0]
        if start + n > total:
            raise InternalError(
                f"unsloth_multiimage: TRL scored more rows ({start + n}) than the rollout has vision inputs for "
                f"({total}); the trl_grpo patches do not know this TRL release's chunking. Fix: report it, or "
                f"disable them with UNSLOTH_MULTIIMAGE_DISABLE_PATCHES=trl_grpo_rollout,trl_grpo_loss."
            )
        device = ids.device
        for key, value in self._umi_rows.items():
            kwargs[key] = value[start : start + n].to(device)
        self._umi_offset += n
        return self._umi_model(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._umi_model, name)


class _Recorder(AnyObjectProxy):
    """The trainer's processor, recording what each call with images returns."""

    def __init__(self, processor: Any) -> None:
        super().__init__(processor)
        self._self_outputs: list[Any] = []
        self._self_templated: list[Any] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = self.__wrapped__(*args, **kwargs)
        if kwargs.get("images") is not None:
            # A snapshot: TRL's DPO collator overwrites input_ids / attention_mask of this very object.
            self._self_outputs.append(dict(out.items()))
        return out

    def apply_chat_template(self, *args: Any, **kwargs: Any) -> Any:
        out = self.__wrapped__.apply_chat_template(*args, **kwargs)
        if isinstance(out, Mapping):  # TRL 0.29+ tokenizes its generation prompts here
            self._self_templated.append(out)
        return out

    @property
    def umi_outputs(self) -> list[Any]:
        return self._self_outputs

    @property
    def umi_templated(self) -> list[Any]:
        return self._self_templated


def _processor_slot(trainer: Any) -> str:
    return "processing_class" if getattr(trainer, "processing_class", None) is not None else "processor"


# ------------------------------------------------------------------ GRPO


def rollout(
    wrapped: Callable[..., Any],
    instance: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    decision: Decision,
    adapters: AdapterLookup,
) -> Any:
    """``_generate_and_score_completions``: record the prompt encoding, carry its row inputs."""
    if instance is None:
        return wrapped(*args, **kwargs)
    slot = _processor_slot(instance)
    processor = getattr(instance, slot, None)
    row_keys, token_keys = _keys(adapters(processor) if processor is not None else None)
    if not row_keys:
        return wrapped(*args, **kwargs)
    recorder = _Recorder(processor)
    logps = getattr(instance, _LOGPS)

    def scoring(model: Any, input_ids: Any, attention_mask: Any, logits_to_keep: int, *a: Any, **kw: Any) -> Any:
        for key in row_keys:  # TRL hands over every processor key it got; the helper takes a fixed set
            if key not in _FIXED_LOGPS_KEYS:
                kw.pop(key, None)
        rows = _rows_from(recorder, row_keys, token_keys, attention_mask, logits_to_keep)
        if rows:
            model = _Injecting(model, rows)
        return logps(model, input_ids, attention_mask, logits_to_keep, *a, **kw)

    # The trainer's own methods are shadowed on the instance for the call (restored by deletion).
    replaced: dict[str, Any] = {slot: recorder, _LOGPS: scoring}
    generation = _generation_override(instance, decision, recorder, token_keys)
    if generation is not None:
        replaced[_GENERATE] = generation
    with swapped(instance, **replaced):
        out = wrapped(*args, **kwargs)
    if recorder.umi_outputs and "prompt_mask" in out and "completion_mask" in out:
        import torch

        attention = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
        rows = _rows_from(recorder, row_keys, token_keys, attention, out["completion_mask"].shape[1])
        out.update({ROW_PREFIX + key: value for key, value in rows.items()})
    return out


def _generation_override(
    instance: Any, decision: Decision, recorder: _Recorder, token_keys: tuple[str, ...]
) -> Callable[..., Any] | None:
    """TRL 0.29+ ``_generate_single_turn(prompt_ids, images, multimodal_fields, ...)`` left-pads the
    unpadded prompt ids for ``generate`` and passes a per-token array as it is: laid out from each row's
    first token, it no longer lines up with the ids of a shorter prompt. Each per-token key is handed
    over as TRL's own per-token layout instead (one list per row, its real tokens only), which TRL
    left-pads exactly like the ids (``pad_to_multiple_of`` included)."""
    if Fix.LEFT_PADDED_GENERATION not in decision.fixes or not token_keys:
        return None
    single_turn = getattr(instance, _GENERATE, None)
    if single_turn is None or signature_accepts(single_turn, "prompt_ids", "multimodal_fields"):
        return None

    def generating(prompt_ids: Any, images: Any, multimodal_fields: Any, *a: Any, **kw: Any) -> Any:
        fields = dict(multimodal_fields)
        for key in token_keys:
            if fields.get(key) is not None:
                fields[key] = _per_token_rows(fields[key], prompt_ids, _attention_of(recorder, key, fields[key]))
        return single_turn(prompt_ids, images, fields, *a, **kw)

    return generating


def _attention_of(recorder: _Recorder, key: str, value: Any) -> Any:
    """The attention mask of the chat-template encoding that produced ``value`` (None if unknown)."""
    for out in reversed(recorder.umi_templated):
        if out.get(key) is value:
            return out.get("attention_mask")
    return None


def _per_token_rows(value: Any, prompt_ids: Any, attention: Any) -> Any:
    """``value`` (rows x positions x ...) as one nested list per row holding its real tokens only.

    The real positions are those of ``attention`` (padded either side, or unpadded lists); without
    it, the first ``len(prompt_ids[r])`` positions (how a processor lays out unpadded rows). Left
    unchanged when the shapes do not agree, which TRL then reports as before."""
    import torch

    if not hasattr(value, "shape") or len(value.shape) < 2 or value.shape[0] != len(prompt_ids):
        return value
    tensor = torch.as_tensor(value)
    rows = []
    for r, ids in enumerate(prompt_ids):
        n = len(ids)
        if attention is not None and len(attention) == len(prompt_ids):
            positions = torch.as_tensor(attention[r]).nonzero().flatten()
        else:
            positions = torch.arange(min(n, tensor.shape[1]))
        if len(positions) != n or (len(positions) and int(positions.max()) >= tensor.shape[1]):
            return value
        rows.append(tensor[r, positions].tolist())
    return rows


# The vision keys TRL's log-prob helper takes as parameters (every release with image lists).
_FIXED_LOGPS_KEYS = frozenset({"pixel_values", "image_grid_thw", "pixel_attention_mask", "image_sizes"})


def _rows_from(
    recorder: _Recorder, row_keys: tuple[str, ...], token_keys: tuple[str, ...], attention_mask: Any, completion: int
) -> dict[str, Any]:
    """The row inputs of the last prompt encoding with images, laid over ``attention_mask``."""
    if not recorder.umi_outputs:
        return {}
    encoded = recorder.umi_outputs[-1]
    rows = {key: encoded[key] for key in row_keys if key in encoded}
    if not rows:
        return {}
    return extend_token_inputs(rows, token_keys, encoded["attention_mask"], attention_mask, completion)


def loss(wrapped: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``_compute_loss(model, inputs)``: the policy forward gets the rollout's row inputs."""
    if len(args) != 2 or kwargs:
        return wrapped(*args, **kwargs)
    model, inputs = args
    rows = {k[len(ROW_PREFIX) :]: v for k, v in inputs.items() if isinstance(k, str) and k.startswith(ROW_PREFIX)}
    if not rows:
        return wrapped(*args, **kwargs)
    return wrapped(_Injecting(model, rows), inputs)


# ------------------------------------------------------------------ DPO


def dpo_collate(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any], adapters: AdapterLookup
) -> Any:
    """``DataCollatorForVisionPreference.torch_call``: the prompt's per-token inputs extended over
    the chosen / rejected tokens of each row."""
    processor = getattr(instance, "processor", None) if instance is not None else None
    _, token_keys = _keys(adapters(processor) if processor is not None else None)
    if not token_keys:
        return wrapped(*args, **kwargs)
    recorder = _Recorder(processor)
    with swapped(instance, processor=recorder):
        out = wrapped(*args, **kwargs)
    if not recorder.umi_outputs or "attention_mask" not in out:
        return out
    import torch

    prompts = recorder.umi_outputs[0]
    attention = torch.as_tensor(out["attention_mask"])
    rows = {k: out[k] for k in token_keys if k in out}
    # The completion columns: each row's real tokens past its prompt's (TRL flushes left).
    prompt_real = torch.as_tensor(prompts["attention_mask"]).sum(dim=1)
    completion = max(int(attention.shape[1] - prompt_real.min()), 0)
    for key, value in rows.items():
        if value.shape[1] == attention.shape[1]:
            continue
        batch = {"attention_mask": attention}
        real = attention.sum(dim=1)
        counts = (real - prompt_real).clamp(min=0)
        completions = {"attention_mask": torch.arange(max(completion, 1))[None, :] < counts[:, None]}
        completion_mask.extend_over_completions(
            batch,
            {"cross_attention_mask": value, "attention_mask": prompts["attention_mask"]},
            completions,
            "right",
        )
        out[key] = batch["cross_attention_mask"]
    return out
