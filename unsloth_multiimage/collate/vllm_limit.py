"""unsloth_zoo's vLLM engine given as many images per prompt as the data has.

unsloth_zoo builds a vision model's vLLM engine (GRPO with ``fast_inference=True``) with
``limit_mm_per_prompt = {"image": 1, "video": 0}``, so vLLM refuses a rollout prompt with a second
image, while TRL sends every image of a prompt. The limit is raised to :func:`wanted_images`
(``configure(vllm_max_images=N)``, else ``max_images``, else :data:`DEFAULT_VLLM_MAX_IMAGES`);
``video`` stays 0 (videos reach the model as frames, which count as images). Two release shapes:

* ``vllm_image_limit``: ``load_vllm`` takes its multimodal arguments from the module function
  ``_get_multimodal_engine_args(config, is_vision_model)``; its result is raised
  (:func:`raise_engine_args`).
* ``vllm_image_limit_inline``: ``load_vllm`` assigns the dict itself and hands it straight to
  vLLM (``LLM``, ``EngineArgs``, ``AsyncEngineArgs``, imported from ``vllm`` inside the function),
  so while it runs those three names are seen through a shim that raises an ``image`` limit of
  exactly the zoo's 1 (:func:`load_raising_limit`). Its shape check reads the installed
  ``load_vllm``'s source (:func:`inline_shape_problem`); ``load_vllm`` itself needs a GPU.
"""

from __future__ import annotations

import ast
import inspect
import logging
import sys
import textwrap
from collections.abc import Callable, Mapping
from typing import Any

from ..engine import compat
from ..engine.decision import StrEnum
from ..engine.patching import signature_accepts
from ..engine.swap import swapped
from ..settings import get_settings

__all__ = [
    "DEFAULT_VLLM_MAX_IMAGES",
    "ZOO_IMAGE_LIMIT",
    "FUNCTION_PATCH",
    "INLINE_PATCH",
    "Fix",
    "InlineFix",
    "effective_limit",
    "function_shape",
    "inline_limit",
    "inline_shape_problem",
    "limit_decisions",
    "load_raising_limit",
    "load_vllm_node",
    "raise_engine_args",
    "raised_limits",
    "source_shape_problem",
    "sets_limit",
    "wanted_images",
]

logger = logging.getLogger(__name__)

DISTRIBUTION = "unsloth_zoo"
#: The patches of the two release shapes (their keys in ``compat_table.toml``).
FUNCTION_PATCH = "vllm_image_limit"
INLINE_PATCH = "vllm_image_limit_inline"
#: The per-prompt image limit when neither ``vllm_max_images`` nor ``max_images`` is set.
DEFAULT_VLLM_MAX_IMAGES = 8
#: unsloth_zoo's own image limit (every release that sets one).
ZOO_IMAGE_LIMIT = 1
_VLLM_CONSTRUCTORS = ("LLM", "EngineArgs", "AsyncEngineArgs")


class Fix(StrEnum):
    """The upstream limit the function-shape patch raises (``[patches.vllm_image_limit]``)."""

    IMAGE_LIMIT = "vllm_image_limit"


class InlineFix(StrEnum):
    """The upstream limit the inline-shape patch raises."""

    IMAGE_LIMIT = "vllm_image_limit"


def wanted_images() -> int:
    """The per-prompt image limit the patches set: ``vllm_max_images``, else ``max_images``, else
    :data:`DEFAULT_VLLM_MAX_IMAGES`."""
    settings = get_settings()
    return settings.vllm_max_images or settings.max_images or DEFAULT_VLLM_MAX_IMAGES


def raised_limits(limits: Any, wanted: int) -> Any:
    """``limits`` (a ``limit_mm_per_prompt`` dict) with an ``image`` limit of zoo's 1 raised to
    ``wanted``; anything else (0, a user's own value, not a dict) unchanged."""
    if not isinstance(limits, Mapping) or limits.get("image") != ZOO_IMAGE_LIMIT or wanted <= ZOO_IMAGE_LIMIT:
        return limits
    return {**limits, "image": wanted}


def function_shape(function: Any) -> str | None:
    """The function-shape patch's shape check: ``(config, is_vision_model)``."""
    return signature_accepts(function, positional=2)


def raise_engine_args(result: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``_get_multimodal_engine_args(config, is_vision_model)``'s ``result`` with the image limit of
    a vision model's engine raised (a text-only engine's zeroed limits are left alone)."""
    vision = args[1] if len(args) > 1 else kwargs.get("is_vision_model", False)
    if not vision or not isinstance(result, dict) or result.get("language_model_only"):
        return result
    limits = result.get("limit_mm_per_prompt")
    raised = raised_limits(limits, wanted_images())
    if raised is not limits:
        logger.info("unsloth_multiimage: vLLM limit_mm_per_prompt %s -> %s", limits, raised)
        result = {**result, "limit_mm_per_prompt": raised}
    return result


def _function_tree(function: Any) -> ast.AST | None:
    try:
        return ast.parse(textwrap.dedent(inspect.getsource(inspect.unwrap(function))))
    except (OSError, TypeError, SyntaxError):
        return None


def load_vllm_node(module_source: str) -> ast.FunctionDef | None:
    """The ``load_vllm`` definition in the text of an unsloth_zoo ``vllm_utils.py`` (no import)."""
    try:
        tree = ast.parse(module_source)
    except SyntaxError:
        return None
    return next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "load_vllm"), None)


def inline_limit(load_vllm: Any) -> dict[Any, Any] | None:
    """The ``limit_mm_per_prompt`` dict ``load_vllm`` assigns in its own body (read from its
    source; ``load_vllm`` is the function or its parsed definition), or None when it assigns none."""
    tree = load_vllm if isinstance(load_vllm, ast.AST) else _function_tree(load_vllm)
    for node in ast.walk(tree) if tree is not None else ():
        if not isinstance(node, ast.Assign):
            continue
        for target in node.targets:
            if (
                isinstance(target, ast.Subscript)
                and isinstance(target.slice, ast.Constant)
                and target.slice.value == "limit_mm_per_prompt"
            ):
                try:
                    value = ast.literal_eval(node.value)
                except ValueError:
                    return None
                return value if isinstance(value, dict) else None
    return None


def _imports_from_vllm(tree: ast.AST | None) -> set[str]:
    return {
        alias.name
        for node in (ast.walk(tree) if tree is not None else ())
        if isinstance(node, ast.ImportFrom) and node.module == "vllm"
        for alias in node.names
    }


def source_shape_problem(load_vllm: Any) -> str | None:
    """None when ``load_vllm`` (the function or its parsed definition) assigns zoo's limit itself
    and imports the vLLM constructors inside its body, else what differs."""
    tree = load_vllm if isinstance(load_vllm, ast.AST) else _function_tree(load_vllm)
    if tree is None:
        return "the source of load_vllm cannot be read"
    limit = inline_limit(tree)
    if limit is None or limit.get("image") != ZOO_IMAGE_LIMIT:
        return f"load_vllm does not assign limit_mm_per_prompt = {{'image': {ZOO_IMAGE_LIMIT}, ...}} itself"
    missing = set(_VLLM_CONSTRUCTORS) - _imports_from_vllm(tree)
    if missing:
        return f"load_vllm no longer imports {', '.join(sorted(missing))} from vllm inside its body"
    return None


def inline_shape_problem(load_vllm: Any) -> str | None:
    """The inline patch's shape check: the signature takes ``is_vision_model``, and
    :func:`source_shape_problem` finds nothing."""
    return signature_accepts(load_vllm, "is_vision_model") or source_shape_problem(load_vllm)


def _limit_raising(constructor: Any, wanted: int) -> Callable[..., Any]:
    def shim(*args: Any, **kwargs: Any) -> Any:
        if "limit_mm_per_prompt" in kwargs:
            limits = kwargs["limit_mm_per_prompt"]
            raised = raised_limits(limits, wanted)
            if raised is not limits:
                logger.info("unsloth_multiimage: vLLM limit_mm_per_prompt %s -> %s", limits, raised)
                kwargs["limit_mm_per_prompt"] = raised
        return constructor(*args, **kwargs)

    shim.__wrapped__ = constructor  # type: ignore[attr-defined]  # inspect.signature(shim) reads vLLM's
    return shim


def load_raising_limit(wrapped: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``load_vllm(..., is_vision_model=True)``: while it runs, ``vllm.LLM`` / ``EngineArgs`` /
    ``AsyncEngineArgs`` raise zoo's image limit in the keyword arguments they are given."""
    vllm = sys.modules.get("vllm")
    if not kwargs.get("is_vision_model") or vllm is None:
        return wrapped(*args, **kwargs)
    wanted = wanted_images()
    shims = {name: _limit_raising(vars(vllm)[name], wanted) for name in _VLLM_CONSTRUCTORS if name in vars(vllm)}
    with swapped(vllm, **shims):
        result = wrapped(*args, **kwargs)
    if kwargs.get("return_args") and isinstance(result, dict) and "limit_mm_per_prompt" in result:
        result["limit_mm_per_prompt"] = raised_limits(result["limit_mm_per_prompt"], wanted)
    return result


def sets_limit() -> bool:
    """Whether the installed unsloth_zoo sets a vLLM image limit at all (read from its source,
    unsloth_zoo is not imported)."""
    path = _vllm_utils_path() if compat.installed_version(DISTRIBUTION) is not None else None
    return path is not None and "limit_mm_per_prompt" in path.read_text(encoding="utf-8", errors="replace")


def limit_decisions() -> dict[str, Any]:
    """Each limit patch's decision for the installed unsloth_zoo (absent: none)."""
    version = compat.installed_version(DISTRIBUTION)
    if version is None:
        return {}
    return {name: compat.decide(name, version) for name in (FUNCTION_PATCH, INLINE_PATCH)}


def effective_limit() -> int | None:
    """Images per prompt unsloth_zoo's vLLM engine takes with the plugin as installed: the raised
    limit where a patch applies, 1 where the release sets the limit and none applies, None when
    unsloth_zoo is absent or sets no limit."""
    if not sets_limit():
        return None
    if any(d.applies for d in limit_decisions().values()):
        return wanted_images()
    return ZOO_IMAGE_LIMIT


def _vllm_utils_path() -> Any:
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec(DISTRIBUTION)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "vllm_utils.py"
    return path if path.is_file() else None
