"""Prose that cannot go stale: every dotted name of the package and every repository path named in
docstrings, comments, README, docs and the other maintained documents resolves to something that
exists (CHANGELOG.md is history and names what was)."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "unsloth_multiimage"
DOCUMENTS = [ROOT / "README.md", ROOT / "compat" / "README.md", ROOT / "benchmarks" / "README.md"]
DOCUMENTS += sorted((ROOT / "docs").glob("*.md"))
SOURCES = sorted(PACKAGE.rglob("*.py")) + sorted((ROOT / "tests").rglob("*.py")) + sorted(ROOT.glob("*/*.py"))
SOURCES += [ROOT / "noxfile.py"]

DOTTED = re.compile(r"(?<![\w/.])unsloth_multiimage(?:\.[A-Za-z_]\w*)+")
PATH = re.compile(r"(?<![\w./-])(?:unsloth_multiimage|tests|compat|scripts|benchmarks|docs|\.ci)/[\w./-]*\w")
ROLE = re.compile(r":(?:mod|func|class|meth|attr|data|exc):`~?([\w.]+)`")


def _files() -> list[Path]:
    """What is read: everything but this file, whose examples are made up on purpose."""
    me = Path(__file__).resolve()
    return sorted({p for p in [*DOCUMENTS, *SOURCES] if p.is_file() and "__pycache__" not in p.parts and p != me})


def _resolves(dotted: str) -> bool:
    """``dotted`` names a module, or an attribute reachable from the longest importable prefix."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def _module_of(path: Path) -> str | None:
    if PACKAGE not in path.parents:
        return None
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _role_target(module: str, path: Path, target: str) -> str:
    """A Sphinx role's target as an absolute dotted name (relative ones start from the module's
    package); a bare name is looked up as Sphinx does: in the module, its classes, then up the
    packages (the first candidate that resolves, else the module's own)."""
    if target.startswith("unsloth_multiimage"):
        return target
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    if target.startswith("."):
        dots = len(target) - len(target.lstrip("."))
        base = package.split(".")[: len(package.split(".")) - (dots - 1)]
        return ".".join([*base, target.lstrip(".")])
    candidates = [f"{module}.{target}"]
    loaded = importlib.import_module(module)
    candidates += [f"{module}.{name}.{target}" for name, value in vars(loaded).items() if isinstance(value, type)]
    parts = package.split(".")
    candidates += [".".join([*parts[:n], target]) for n in range(len(parts), 0, -1)]
    return next((c for c in candidates if _resolves(c)), candidates[0])


#: Names that are meant not to exist (the reader's own examples): (file, reference) -> why.
EXEMPT = {
    ("tests/engine/test_layers.py", "unsloth_multiimage.c"): "a made-up import the cycle reader must see",
}


def _references() -> list[tuple[str, str, str]]:
    """(where, kind, reference) for every dotted name, role target and repository path found."""
    found = []
    for path in _files():
        text = path.read_text(encoding="utf-8")
        where = str(path.relative_to(ROOT))
        found += [(where, "name", m.group(0)) for m in DOTTED.finditer(text)]
        found += [(where, "path", m.group(0)) for m in PATH.finditer(text)]
        module = _module_of(path)
        if module is not None:
            found += [(where, "role", _role_target(module, path, m.group(1))) for m in ROLE.finditer(text)]
    return found


def _exists(reference: str) -> bool:
    path = reference.split("::")[0].split(":")[0].rstrip(".")
    return (ROOT / path).exists()


def test_every_named_module_object_and_path_exists():
    pytest.importorskip("wrapt")
    broken = []
    for where, kind, reference in _references():
        if (where, reference) in EXEMPT:
            continue
        ok = _exists(reference) if kind == "path" else _resolves(reference)
        if not ok:
            broken.append(f"{where}: {kind} {reference}")
    assert not broken, "stale references:\n" + "\n".join(sorted(set(broken)))


def test_the_reader_finds_what_it_checks():
    text = (
        "see :func:`~.proxy.BatchImages` and unsloth_multiimage.nothing.here, "
        "tests/engine/test_layers.py::test_x and `docs/third-party-adapter.md`"
    )
    names = [m.group(0) for m in DOTTED.finditer(text)]
    paths = [m.group(0) for m in PATH.finditer(text)]
    assert names == ["unsloth_multiimage.nothing.here"] and not _resolves(names[0])
    assert paths == ["tests/engine/test_layers.py", "docs/third-party-adapter.md"] and all(map(_exists, paths))
    module_path = PACKAGE / "collate" / "zoo_collator.py"
    assert _role_target("unsloth_multiimage.collate.zoo_collator", module_path, ".proxy.BatchImages") == (
        "unsloth_multiimage.collate.proxy.BatchImages"
    )
    assert _resolves("unsloth_multiimage.collate.proxy.BatchImages")


def test_module_docstrings_say_what_the_module_is_for_in_a_few_lines():
    """History goes to CHANGELOG.md; a module docstring is its purpose (at most 30 lines)."""
    long = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        if len(doc.splitlines()) > 30:
            long[str(path.relative_to(ROOT))] = len(doc.splitlines())
    assert not long, long
