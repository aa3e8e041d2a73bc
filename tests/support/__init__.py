"""The test suite's support code (the fixtures and pytest hooks are in tests/conftest.py).

This module: the installed versions (``TRANSFORMERS``, ``UNSLOTH_ZOO``), the repository root, fresh
interpreters and CLI runs, patches on/off, the compat rows that run the heavy tests. Beside it:

* :mod:`.tiny_vlms`: tiny random VLMs of every family, built offline (``tiny_vlms.build(family)``);
* :mod:`.family_cases` / :mod:`.inference_cases`: what the family tests expect, shared builders;
* :mod:`.tiles`, :mod:`.imagekit`, :mod:`.videokit`: coded images, small images, small videos;
* :mod:`.rowgen`: the property tests' generated rows; :mod:`.fakesite`: throw-away plugin
  distributions; :mod:`.zoo`: the installed unsloth_zoo's real ``vision_utils`` on CPU;
  :mod:`.optional_libraries`: which missing libraries make a test a skip.

Imported as ``tests.support`` (pytest puts the repository root first on ``sys.path``: pyproject's
``pythonpath``; :func:`fresh_python` does the same for new interpreters). Importing it stays cheap:
no torch, transformers or package import at module level.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path


def _version(dist: str):
    from packaging.version import Version

    try:
        return Version(importlib.metadata.version(dist))
    except importlib.metadata.PackageNotFoundError:
        return None


TRANSFORMERS = _version("transformers")
UNSLOTH_ZOO = _version("unsloth_zoo")
REPO = Path(__file__).resolve().parents[2]


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
    import unsloth_multiimage

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


def heavy_rows() -> list[str]:
    """The compat rows that run the tests marked ``heavy`` (``heavy_tests = true`` in compat/matrix.toml)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    matrix = tomllib.loads((REPO / "compat" / "matrix.toml").read_text(encoding="utf-8"))
    return [name for name, row in matrix["rows"].items() if row.get("heavy_tests")]
