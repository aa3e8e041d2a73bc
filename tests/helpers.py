"""Helpers shared by the test modules (the fixtures are in conftest.py)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import unsloth_multiimage


def _version(dist: str):
    from packaging.version import Version

    try:
        return Version(importlib.metadata.version(dist))
    except importlib.metadata.PackageNotFoundError:
        return None


TRANSFORMERS = _version("transformers")
UNSLOTH_ZOO = _version("unsloth_zoo")
REPO = Path(__file__).resolve().parents[1]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any ``UNSLOTH_MULTIIMAGE_*`` variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNSLOTH_MULTIIMAGE_")}
    env.update(extra)
    return env


def fresh_python(
    code: str, *, path: tuple[str, ...] = (), timeout: int = 300, **env: str
) -> subprocess.CompletedProcess:
    """Run ``code`` in a new interpreter: the repository (then ``path``) first on ``PYTHONPATH``,
    no ``UNSLOTH_MULTIIMAGE_*`` variable but those in ``env``."""
    pythonpath = os.pathsep.join([str(REPO), *path, os.environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", code],
        env=clean_env(**{"PYTHONPATH": pythonpath, **env}),
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@contextlib.contextmanager
def patches_off():
    """Run a block with every patch reverted (the upstream behaviour), then re-activate."""
    unsloth_multiimage.deactivate()
    try:
        yield
    finally:
        unsloth_multiimage.activate()


def upstream_pc_failure(collator, tiny):
    """Why the installed zoo's own prompt/completion path cannot carry even one embedded image
    (unpatched), or None when it can. 2025.9.14 hands a 3-tuple to its own resize step."""
    row = {
        "prompt": [
            {
                "role": "user",
                "content": [
                    {"type": "image", "image": tiny.make_tile_image(0, 0)},
                    {"type": "text", "text": "describe"},
                ],
            }
        ],
        "completion": [{"role": "assistant", "content": [{"type": "text", "text": "red"}]}],
    }
    with patches_off():
        try:
            collator([row])
        except Exception as exc:
            return repr(exc)
    return None


def run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m unsloth_multiimage ARGS`` in a new interpreter: the repository first on
    ``PYTHONPATH``, offline, no progress bars, no ``UNSLOTH_MULTIIMAGE_*`` variable of this process."""
    env = clean_env(
        PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        TQDM_DISABLE="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    return subprocess.run(
        [sys.executable, "-m", "unsloth_multiimage", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(REPO),
        env=env,
    )


@contextlib.contextmanager
def real_triton() -> Iterator[None]:
    """The real ``triton`` in ``sys.modules`` while the block runs.

    unsloth_zoo imported with ``UNSLOTH_ZOO_DISABLE_GPU_INIT=1`` (as the suite does) puts a permissive
    triton stub and an import finder for it into ``sys.modules`` / ``sys.meta_path``
    (``unsloth_zoo/stubs/triton_stub.py``). TRL 1.15+ scores log-probs with a Triton kernel, run on CPU
    by Triton's interpreter, which then resolves its own ``triton.runtime.jit`` to the stub. Restores
    the stub afterwards, so the zoo tests that follow see what they saw before.
    """

    def is_stub(module: object) -> bool:
        return type(module).__module__.startswith("unsloth_zoo.stubs") or getattr(module, "__name__", "").startswith(
            "unsloth_zoo.stubs"
        )

    saved = {k: v for k, v in sys.modules.items() if k == "triton" or k.startswith("triton.")}
    finders = [f for f in sys.meta_path if type(f).__module__.startswith("unsloth_zoo.stubs")]
    if not finders and not any(is_stub(m) for m in saved.values()):
        yield
        return
    try:
        import trl.kernels.chunked_logprob as kernel
    except ImportError:  # trl before 1.15 scores log-probs without Triton
        yield
        return
    import trl.trainer.utils as trl_utils

    for finder in finders:
        sys.meta_path.remove(finder)
    real = getattr(kernel, "triton", None)
    function_before = getattr(trl_utils, "_ChunkedLogProbFunction", None)
    if real is not None and not is_stub(real):
        # TRL bound the real triton before the stub came: put its modules back (a second import of
        # triton's native core aborts the process, so nothing is imported again).
        for name, module in saved.items():
            if not is_stub(module):
                continue
            found: object = real
            for part in name.split(".")[1:]:
                found = getattr(found, part, None)
            if isinstance(found, types.ModuleType) and not is_stub(found):
                sys.modules[name] = found
            else:
                del sys.modules[name]
    else:  # the real triton was never imported: import it now and bind TRL's kernel to it
        for name in saved:
            del sys.modules[name]
        import importlib

        trl_utils._ChunkedLogProbFunction = importlib.reload(kernel).ChunkedLogProbFunction
    try:
        yield
    finally:
        trl_utils._ChunkedLogProbFunction = function_before
        for name in [k for k in sys.modules if k == "triton" or k.startswith("triton.")]:
            del sys.modules[name]
        sys.modules.update(saved)
        sys.meta_path[:0] = finders
