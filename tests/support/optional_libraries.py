"""Which libraries a test may lack: a test, fixture or test module that fails only because one of
them is not installed is reported as skipped, naming it (tests/conftest.py's hooks), so the suite
passes or skips on a bare install (the package, pytest, hypothesis)."""

from __future__ import annotations

import importlib.machinery
import re

#: Libraries that tests use where they are installed and that the package does not depend on.
OPTIONAL_LIBRARIES = frozenset(
    {"PIL", "accelerate", "av", "datasets", "numpy", "pandas", "pyarrow", "timm", "tokenizers", "torch"}
    | {"transformers", "trl", "unsloth", "unsloth_zoo"}
)
#: The missing module named in a collection error's text.
NO_MODULE = re.compile(r"ModuleNotFoundError: No module named '([\w.]+)'")


def missing_optional_library(name: str | None) -> str | None:
    """The optional library a missing module ``name`` belongs to, when it is not installed (searched
    on sys.path, not in sys.modules: a test that hides an installed library is not skipped)."""
    top = (name or "").partition(".")[0]
    if top in OPTIONAL_LIBRARIES and importlib.machinery.PathFinder.find_spec(top) is None:
        return top
    return None


def skip_reason(library: str) -> str:
    return f"{library} is not installed here and this test needs it"
