"""``doctor``'s lines on unsloth_zoo's vLLM image limit and what the plugin makes of it."""

from __future__ import annotations

from ..collate import vllm_limit
from ..engine import compat

__all__ = ["limit_report", "rollout_limit_line"]


def limit_report(pending: bool = False) -> list[str]:
    """Lines for ``doctor``: the installed unsloth_zoo's vLLM image limit, and what the plugin
    makes of it (read from the source and the compat table; unsloth_zoo is not imported).
    ``pending``: the patch waits for ``unsloth_zoo.vllm_utils`` to be imported (said so, in the
    future tense, so that the line agrees with the patch table)."""
    version = compat.installed_version(vllm_limit.DISTRIBUTION)
    if version is None:
        return ["vLLM image limit: unsloth_zoo is not installed (no vLLM engine to limit)"]
    if not vllm_limit.sets_limit():
        return [f"vLLM image limit: unsloth_zoo {version} sets none (vLLM's own default applies)"]
    decisions = vllm_limit.limit_decisions()
    raising = [d for d in decisions.values() if d.applies]
    lines = [f"vLLM image limit: unsloth_zoo {version} builds vision engines with limit_mm_per_prompt image=1"]
    if raising:
        when = (
            "will be raised by the plugin, when your script imports unsloth_zoo.vllm_utils (doctor leaves it "
            "unimported: it needs vLLM), to"
            if pending
            else "raised by the plugin to"
        )
        lines.append(
            f"  {when} {vllm_limit.wanted_images()} per prompt (configure(vllm_max_images=N) / "
            f"UNSLOTH_MULTIIMAGE_VLLM_MAX_IMAGES; checked on CPU up to the engine arguments, vLLM itself unverified)"
        )
    else:
        reasons = "; ".join(f"{n}: {d.reason}" for n, d in decisions.items())
        lines.append(f"  NOT raised by the plugin ({reasons}): rollout prompts with 2+ images are refused by vLLM")
    return lines


def rollout_limit_line(most_images: int) -> str:
    """``doctor --dataset``: the most images a row sends against the vLLM rollout limit."""
    limit = vllm_limit.effective_limit()
    if limit is None:
        return f"most images in one row: {most_images} (no unsloth_zoo vLLM image limit applies here)"
    verdict = "admitted" if most_images <= limit else "REFUSED by vLLM rollouts: raise configure(vllm_max_images=N)"
    return f"most images in one row: {most_images}; unsloth_zoo's vLLM engine takes {limit} per prompt: {verdict}"
