"""Built-in plugin: TRL's GRPO and DPO trainers give a vision model every input its processor
built (the work: :mod:`unsloth_multiimage.collate.trl_inputs`). Three wrappers, one compat entry
each (the table keys a patch by its target).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..collate import trl_inputs
from ..collate.trl_inputs import LOSS_FIXES, DpoFix, Fix
from ..plugin import AdapterLookup, Decision, Patch, Wrapper, hookimpl, signature_accepts

__all__ = ["umi_patches"]

GRPO_MODULE = "trl.trainer.grpo_trainer"


@hookimpl
def umi_patches() -> list[Patch]:
    return [
        Patch(
            name="trl_grpo_rollout",
            module=GRPO_MODULE,
            attribute="GRPOTrainer._generate_and_score_completions",
            make_wrapper=make_rollout_wrapper,
            shape_check=trl_inputs.logps_shape,
            fixes=tuple(Fix),
        ),
        Patch(
            name="trl_grpo_loss",
            module=GRPO_MODULE,
            attribute="GRPOTrainer._compute_loss",
            make_wrapper=make_loss_wrapper,
            shape_check=lambda call: signature_accepts(call, positional=2),
            fixes=LOSS_FIXES,
        ),
        Patch(
            name="trl_dpo_collator",
            module="trl.trainer.dpo_trainer",
            attribute="DataCollatorForVisionPreference.torch_call",
            make_wrapper=make_dpo_wrapper,
            shape_check=lambda call: signature_accepts(call, positional=1),
            fixes=tuple(DpoFix),
        ),
    ]


def make_rollout_wrapper(decision: Decision, *, adapters: AdapterLookup) -> Wrapper:
    """``_generate_and_score_completions``: record the prompt encoding, carry its row inputs."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return trl_inputs.rollout(wrapped, instance, args, kwargs, decision, adapters)

    return wrapper


def make_loss_wrapper(decision: Decision) -> Wrapper:
    """``_compute_loss(model, inputs)``: the policy forward gets the rollout's row inputs."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return trl_inputs.loss(wrapped, args, kwargs)

    return wrapper


def make_dpo_wrapper(decision: Decision, *, adapters: AdapterLookup) -> Wrapper:
    """``DataCollatorForVisionPreference.torch_call``: per-token inputs over chosen / rejected."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return trl_inputs.dpo_collate(wrapped, instance, args, kwargs, adapters)

    return wrapper
