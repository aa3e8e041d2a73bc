"""Built-in plugin: unsloth_zoo's vLLM engine takes as many images per prompt as the data has.

Since unsloth_zoo PR #202 (2025-09-16) a vision model's vLLM engine (GRPO with
``fast_inference=True``) is built with ``limit_mm_per_prompt = {"image": 1, "video": 0}``, so a
rollout prompt with a second image is refused by vLLM, while TRL sends every image of a prompt
since 0.24. The limit is raised to :func:`wanted_images` (``configure(vllm_max_images=N)``, else
``max_images``, else :data:`DEFAULT_VLLM_MAX_IMAGES`); ``video`` stays 0 (videos reach the model
as frames, which count as images). Two shapes, each gated by version and by shape:

* ``vllm_image_limit`` (2026.10.9): ``load_vllm`` takes its multimodal arguments from the module
  function ``_get_multimodal_engine_args(config, is_vision_model)``; its result is raised. The
  function runs on CPU: proven on the real function of the installed release.
* ``vllm_image_limit_inline`` (2025.9.14 - 2026.9.7): ``load_vllm`` assigns the dict itself and
  hands ``engine_args`` straight to vLLM (``LLM(**engine_args)``, ``EngineArgs(**engine_args)``,
  ``AsyncEngineArgs(**engine_args)``, imported from ``vllm`` inside the function). No unsloth_zoo
  function sees the dict in between, so while ``load_vllm(is_vision_model=True)`` runs, those three
  vLLM names are seen through a shim that raises an ``image`` limit of exactly the zoo's 1 (and
  puts them back after). The shape check reads the installed ``load_vllm``'s source: it must
  assign the limit and import those names from ``vllm`` inside the function. ``load_vllm`` itself
  cannot run without a GPU (it reads CUDA memory first), so that it reaches the shim is read from
  the source, not run: see README, "RL and preference training".
"""

from __future__ import annotations

import ast
import inspect
import logging
import sys
import textwrap
import threading
from collections.abc import Callable, Mapping
from typing import Any

from ..engine.decision import Decision, StrEnum
from ..engine.hookspecs import hookimpl
from ..engine.patching import Patch, Wrapper, signature_accepts
from ..settings import get_settings

__all__ = [
    "DEFAULT_VLLM_MAX_IMAGES",
    "Fix",
    "InlineFix",
    "umi_patches",
    "wanted_images",
    "raised_limits",
    "inline_limit",
    "inline_shape_problem",
    "limit_report",
    "effective_limit",
    "rollout_limit_line",
    "load_vllm_node",
    "source_shape_problem",
]

logger = logging.getLogger(__name__)

MODULE = "unsloth_zoo.vllm_utils"
PATCH_NAME = "vllm_image_limit"
INLINE_PATCH_NAME = "vllm_image_limit_inline"
#: The per-prompt image limit when neither ``vllm_max_images`` nor ``max_images`` is set.
DEFAULT_VLLM_MAX_IMAGES = 8
#: unsloth_zoo's own image limit (every release that sets one).
ZOO_IMAGE_LIMIT = 1
_VLLM_CONSTRUCTORS = ("LLM", "EngineArgs", "AsyncEngineArgs")


class Fix(StrEnum):
    """The upstream limit the function-shape patch raises (version range: ``compat_table.toml``)."""

    IMAGE_LIMIT = "vllm_image_limit"


class InlineFix(StrEnum):
    """The upstream limit the inline-shape patch raises."""

    IMAGE_LIMIT = "vllm_image_limit"


@hookimpl
def umi_patches() -> list[Patch]:
    return [
        Patch(
            name=PATCH_NAME,
            module=MODULE,
            attribute="_get_multimodal_engine_args",
            make_wrapper=make_wrapper,
            shape_check=_function_shape,
            fixes=tuple(Fix),
        ),
        Patch(
            name=INLINE_PATCH_NAME,
            module=MODULE,
            attribute="load_vllm",
            make_wrapper=make_inline_wrapper,
            shape_check=inline_shape_problem,
            fixes=tuple(InlineFix),
        ),
    ]


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


# ------------------------------------------------------------------ 2026.10.9: the function


def _function_shape(function: Any) -> str | None:
    return signature_accepts(function, positional=2)


def make_wrapper(decision: Decision) -> Wrapper:
    """``_get_multimodal_engine_args(config, is_vision_model)``: raise the image limit of a vision
    model's engine (a text-only engine's zeroed limits are left alone)."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        result = wrapped(*args, **kwargs)
        vision = args[1] if len(args) > 1 else kwargs.get("is_vision_model", False)
        if not vision or not isinstance(result, dict) or result.get("language_model_only"):
            return result
        limits = result.get("limit_mm_per_prompt")
        raised = raised_limits(limits, wanted_images())
        if raised is not limits:
            logger.info("unsloth_multiimage: vLLM limit_mm_per_prompt %s -> %s", limits, raised)
            result = {**result, "limit_mm_per_prompt": raised}
        return result

    return wrapper


# ------------------------------------------------------------------ 2025.9.14 - 2026.9.7: inline


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


_inline_lock = threading.RLock()


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


def make_inline_wrapper(decision: Decision) -> Wrapper:
    """``load_vllm(..., is_vision_model=True)``: while it runs, ``vllm.LLM`` / ``EngineArgs`` /
    ``AsyncEngineArgs`` raise zoo's image limit in the keyword arguments they are given."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        vllm = sys.modules.get("vllm")
        if not kwargs.get("is_vision_model") or vllm is None:
            return wrapped(*args, **kwargs)
        wanted = wanted_images()
        with _inline_lock:
            saved = {name: vars(vllm)[name] for name in _VLLM_CONSTRUCTORS if name in vars(vllm)}
            for name, constructor in saved.items():
                setattr(vllm, name, _limit_raising(constructor, wanted))
            try:
                result = wrapped(*args, **kwargs)
            finally:
                for name, constructor in saved.items():
                    setattr(vllm, name, constructor)
        if kwargs.get("return_args") and isinstance(result, dict) and "limit_mm_per_prompt" in result:
            result["limit_mm_per_prompt"] = raised_limits(result["limit_mm_per_prompt"], wanted)
        return result

    return wrapper


# ------------------------------------------------------------------ doctor


def limit_report(pending: bool = False) -> list[str]:
    """Lines for ``doctor``: the installed unsloth_zoo's vLLM image limit, and what the plugin
    makes of it (read from the source and the compat table; unsloth_zoo is not imported).
    ``pending``: the patch waits for ``unsloth_zoo.vllm_utils`` to be imported (said so, in the
    future tense, so that the line agrees with the patch table)."""
    from ..engine import compat

    version = compat.installed_version("unsloth_zoo")
    if version is None:
        return ["vLLM image limit: unsloth_zoo is not installed (no vLLM engine to limit)"]
    path = _vllm_utils_path()
    source = path.read_text(encoding="utf-8", errors="replace") if path is not None else ""
    if "limit_mm_per_prompt" not in source:
        return [f"vLLM image limit: unsloth_zoo {version} sets none (vLLM's own default applies)"]
    decisions = {name: compat.decide(name, version) for name in (PATCH_NAME, INLINE_PATCH_NAME)}
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
            f"  {when} {wanted_images()} per prompt (configure(vllm_max_images=N) / "
            f"UNSLOTH_MULTIIMAGE_VLLM_MAX_IMAGES; checked on CPU up to the engine arguments, vLLM itself unverified)"
        )
    else:
        reasons = "; ".join(f"{n}: {d.reason}" for n, d in decisions.items())
        lines.append(f"  NOT raised by the plugin ({reasons}): rollout prompts with 2+ images are refused by vLLM")
    return lines


def effective_limit() -> int | None:
    """Images per prompt unsloth_zoo's vLLM engine takes with the plugin as installed: the raised
    limit where a patch applies, 1 where the release sets the limit and none applies, None when
    unsloth_zoo is absent or sets no limit."""
    from ..engine import compat

    version = compat.installed_version("unsloth_zoo")
    path = _vllm_utils_path() if version is not None else None
    if path is None or "limit_mm_per_prompt" not in path.read_text(encoding="utf-8", errors="replace"):
        return None
    if any(compat.decide(name, version).applies for name in (PATCH_NAME, INLINE_PATCH_NAME)):
        return wanted_images()
    return ZOO_IMAGE_LIMIT


def rollout_limit_line(most_images: int) -> str:
    """``doctor --dataset``: the most images a row sends against the vLLM rollout limit."""
    limit = effective_limit()
    if limit is None:
        return f"most images in one row: {most_images} (no unsloth_zoo vLLM image limit applies here)"
    verdict = "admitted" if most_images <= limit else "REFUSED by vLLM rollouts: raise configure(vllm_max_images=N)"
    return f"most images in one row: {most_images}; unsloth_zoo's vLLM engine takes {limit} per prompt: {verdict}"


def _vllm_utils_path() -> Any:
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("unsloth_zoo")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "vllm_utils.py"
    return path if path.is_file() else None
