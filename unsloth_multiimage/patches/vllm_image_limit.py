"""Built-in plugin: unsloth_zoo's vLLM engine takes as many images per prompt as the data has
(the work: :mod:`unsloth_multiimage.collate.vllm_limit`). One patch per release shape, each gated
by version and by shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..collate import vllm_limit
from ..collate.vllm_limit import Fix, InlineFix
from ..plugin import Decision, Patch, Wrapper, hookimpl

__all__ = ["umi_patches"]

MODULE = "unsloth_zoo.vllm_utils"


@hookimpl
def umi_patches() -> list[Patch]:
    return [
        Patch(
            name=vllm_limit.FUNCTION_PATCH,
            module=MODULE,
            attribute="_get_multimodal_engine_args",
            make_wrapper=make_wrapper,
            shape_check=vllm_limit.function_shape,
            fixes=tuple(Fix),
        ),
        Patch(
            name=vllm_limit.INLINE_PATCH,
            module=MODULE,
            attribute="load_vllm",
            make_wrapper=make_inline_wrapper,
            shape_check=vllm_limit.inline_shape_problem,
            fixes=tuple(InlineFix),
        ),
    ]


def make_wrapper(decision: Decision) -> Wrapper:
    """``_get_multimodal_engine_args``: the vision engine's image limit raised."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return vllm_limit.raise_engine_args(wrapped(*args, **kwargs), args, kwargs)

    return wrapper


def make_inline_wrapper(decision: Decision) -> Wrapper:
    """``load_vllm``: vLLM's constructors raise the image limit while it runs."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return vllm_limit.load_raising_limit(wrapped, args, kwargs)

    return wrapper
