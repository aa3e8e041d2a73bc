"""Pinned-version test sessions, one per row of compat/matrix.toml.

    nox                       # the default session: `tests` (the newest unsloth_zoo row)
    nox -l                    # list every session
    nox -s "row(tf4.46-zoo2024.12)"
    nox -s tests -- -k collator          # arguments after -- go to pytest
    nox -N ...                # --reuse-venv=never: rebuild the venvs from scratch

Every session builds a venv with its row's exact pins (CPU torch from a local wheel folder,
``--find-links``; set TORCH_FIND_LINKS to override /opt/wheels), unsloth_zoo with --no-deps,
the project itself with --no-deps and the test tools, then runs pytest over tests/ with
UMI_COMPAT_ROW=<row name>. A venv is reused while its pins (and this file's install recipe)
are unchanged: a warm session only reinstalls the project and runs pytest.
``bash .ci/run`` runs every session and prints the totals.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import nox

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent
MATRIX = tomllib.loads((ROOT / "compat" / "matrix.toml").read_text(encoding="utf-8"))
ROWS: dict[str, dict] = MATRIX["rows"]
COMMON: dict[str, str] = MATRIX.get("common", {})

# The row `nox` runs by default: the newest unsloth_zoo with the newest transformers it allows,
# i.e. what a user of the latest releases has.
DEFAULT_ROW = "tf5.17-zoo2026.10"

# Installed with their dependencies, in this order of the pin list.
PINNED = ("torch", "transformers", "tokenizers", "huggingface_hub", "datasets", "trl", "accelerate")
# Installed with --no-deps (their declared dependencies need a CUDA stack; timm declares
# torchvision, which cannot load beside the CPU torch: the Gemma 3n fixture imports timm under an
# import-only stand-in, see tests/support/tiny_vlms/torchvision_stand_in.py).
NO_DEPS = ("unsloth_zoo", "unsloth", "timm")
# The project is installed with --no-deps, so its runtime dependencies are listed here.
# num2words: SmolVLMProcessor needs it to be built at all (the SmolVLM adapter tests).
# av: PyAV, the `[video]` extra (the video tests encode small videos with it and decode them back).
# pytest-xdist: a session runs its tests on every CPU (most of a row's time is fresh interpreters
# importing torch and transformers, one core each).
TEST_TOOLS = (
    "pytest>=8",
    "pytest-xdist>=3.6",
    "hypothesis>=6.100",
    "wrapt>=1.14",
    "pluggy>=1.3",
    "packaging>=22",
    "num2words",
    "av>=14",
)
# The type checker, pinned: the lint session's, and the default test session's (a user's script
# type-checked against the public face).
MYPY = "mypy==2.4.1"
# Bump when the install recipe below changes, so every reused venv is rebuilt.
RECIPE = "2"

TORCH_FIND_LINKS = os.environ.get("TORCH_FIND_LINKS", "/opt/wheels")

RUN_ENV = {
    "UNSLOTH_ZOO_DISABLE_GPU_INIT": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONHASHSEED": "0",
    # TRL 1.15+'s GRPO/DPO log-prob kernel is Triton-only: its interpreter runs it on CPU.
    "TRITON_INTERPRET": "1",
}

nox.options.sessions = ["tests", "lint"]
nox.options.error_on_missing_interpreters = True
# uv when it is installed (`pip install nox uv`), else virtualenv (a dependency of nox).
VENV_BACKEND = "uv|virtualenv"

if DEFAULT_ROW not in ROWS:  # pragma: no cover - a matrix edit forgot the default row
    raise RuntimeError(f"noxfile.DEFAULT_ROW {DEFAULT_ROW!r} is not a row of compat/matrix.toml")


def row_requirements(row: dict) -> tuple[list[str], list[str]]:
    """(pins installed with dependencies, pins installed with --no-deps) of one matrix row.

    A row may move pins of PINNED to the --no-deps step with ``install_no_deps = [dist, ...]``
    when one of their declared dependencies is not installable here (the row's ``why`` says
    which); ``no_deps_requires = [requirement, ...]`` then lists what those pins would have
    pulled in, minus the missing one, and is resolved with the other pins."""
    moved = set(row.get("install_no_deps", ()))
    unknown = moved - set(PINNED)
    if unknown:
        raise ValueError(f"install_no_deps names {sorted(unknown)}, which are not pins of a row ({PINNED})")
    with_deps = [f"{dist}=={row[dist]}" for dist in PINNED if dist in row and dist not in moved]
    with_deps += [f"{dist}=={version}" for dist, version in COMMON.items()]
    with_deps += list(row.get("no_deps_requires", ()))
    with_deps += list(row.get("test_extras", ()))  # test-only packages of this row (triton, peft)
    no_deps = [f"{dist}=={row[dist]}" for dist in PINNED if dist in row and dist in moved]
    no_deps += [f"{dist}=={row[dist]}" for dist in NO_DEPS if dist in row]
    return with_deps, no_deps


def _stamp(with_deps: list[str], no_deps: list[str], python: str) -> str:
    blob = json.dumps([RECIPE, python, TORCH_FIND_LINKS, with_deps, no_deps, TEST_TOOLS], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _recreate_venv(session: nox.Session) -> None:
    """Empty a reused venv whose pins changed, so no stale package survives."""
    venv = session.virtualenv
    reuse = getattr(venv, "reuse_existing", None)
    try:
        venv.reuse_existing = False
        venv.create()
    except Exception as exc:  # noqa: BLE001 - nox internals moved: tell the user what to do
        session.error(f"the pins of this row changed; rebuild its venv with `nox -N -s {session.name!r}` ({exc})")
    finally:
        if reuse is not None:
            venv.reuse_existing = reuse


def run_row(
    session: nox.Session, name: str, extra_env: dict[str, str] | None = None, extra_tools: tuple[str, ...] = ()
) -> None:
    row = ROWS[name]
    with_deps, no_deps = row_requirements(row)
    with_deps += list(extra_tools)
    venv_dir = Path(session.virtualenv.location)
    stamp_file = venv_dir / ".umi-pins"
    stamp = _stamp(with_deps, no_deps, row["python"])
    old = stamp_file.read_text().strip() if stamp_file.is_file() else None
    if old == stamp:
        session.log(f"row {name}: pins unchanged, reusing {venv_dir}")
    else:
        if old is not None:
            session.log(f"row {name}: pins changed, rebuilding {venv_dir}")
            _recreate_venv(session)
        # One resolve for the pins and the tools; the torch pin carries its +cpu local version so
        # the resolver takes the local CPU wheel and never PyPI's CUDA build.
        session.install("--find-links", TORCH_FIND_LINKS, *with_deps, *TEST_TOOLS)
        if no_deps:
            session.install("--no-deps", *no_deps)
        stamp_file.write_text(stamp + "\n")
    # The project itself, rebuilt every run (it is what changes between runs).
    if session.venv_backend == "uv":
        session.install("--no-deps", "--reinstall-package", "unsloth-multiimage", str(ROOT))
    else:
        session.install("--no-deps", "--force-reinstall", str(ROOT))

    # A row's `env` table: variables its pins need to run here (its `why` says why).
    env = {**RUN_ENV, **row.get("env", {}), "UMI_COMPAT_ROW": name, **(extra_env or {})}
    # One pytest worker per CPU (UMI_TEST_WORKERS overrides; 0 runs in this process), tests handed
    # out one by one as workers free up: the slow ones (whole commands, fresh interpreters) spread.
    workers = os.environ.get("UMI_TEST_WORKERS", "auto")
    args = ["pytest", "-q", "-p", "no:cacheprovider", "--durations=10", "-n", workers, "--dist", "worksteal"]
    junit_dir = os.environ.get("UMI_JUNIT_DIR")
    if junit_dir:
        Path(junit_dir).mkdir(parents=True, exist_ok=True)
        args.append(f"--junitxml={Path(junit_dir) / (session.name + '.xml')}")
    args += session.posargs or ["tests"]
    session.run(*args, env=env)


@nox.session(python=ROWS[DEFAULT_ROW]["python"], venv_backend=VENV_BACKEND, reuse_venv=True)
def tests(session: nox.Session) -> None:
    """The test suite on the newest unsloth_zoo row (the default session), with the full
    2,000-example property runs."""
    # mypy: tests/engine/test_public_faces.py type-checks a user's script against the public face.
    run_row(session, DEFAULT_ROW, {"UMI_HYPOTHESIS_PROFILE": "ci-full"}, extra_tools=(MYPY,))


def _make_row_session(name: str):
    def session_func(session: nox.Session) -> None:
        run_row(session, name)

    session_func.__doc__ = f"Row {name}: {ROWS[name].get('why', '')}"
    session_func.__name__ = f"row_{len(name)}"
    return nox.session(
        name=f"row({name})",
        python=ROWS[name]["python"],
        venv_backend=VENV_BACKEND,
        reuse_venv=True,
        tags=["rows"],
    )(session_func)


for _name in ROWS:
    _make_row_session(_name)


# Pinned, so that CI lints the same way on every run.
LINT_TOOLS = ("ruff==0.17.6", MYPY)
# What mypy needs to see of the runtime dependencies (torch, transformers, PIL, numpy are optional).
LINT_DEPS = ("wrapt>=1.14", "pluggy>=1.3", "packaging>=22")


@nox.session(python=ROWS[DEFAULT_ROW]["python"], venv_backend=VENV_BACKEND, reuse_venv=True)
def lint(session: nox.Session) -> None:
    """ruff (lint + format check) over the repository and mypy over the package."""
    session.install(*LINT_TOOLS, *LINT_DEPS)
    session.run("ruff", "check", str(ROOT))
    session.run("ruff", "format", "--check", str(ROOT))
    session.run("mypy", "--config-file", str(ROOT / "pyproject.toml"), external=False)


@nox.session(python=False)
def compat_table(session: nox.Session) -> None:
    """Print the README's compat table (generated from compat/matrix.toml); `-- --check README.md`."""
    session.run(sys.executable, str(ROOT / "scripts" / "compat_table_md.py"), *session.posargs)
