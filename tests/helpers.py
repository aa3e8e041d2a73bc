"""Helpers shared by the test modules (the fixtures are in conftest.py)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import subprocess
import sys
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
