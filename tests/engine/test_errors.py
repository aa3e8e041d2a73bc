"""Errors are types: every error class the package defines lives in ``errors.py`` and derives from
one base class, so ``except UnslothMultiimageError`` catches everything the plugin raises on purpose."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from unsloth_multiimage import errors

PACKAGE = Path(__file__).resolve().parents[2] / "unsloth_multiimage"


def test_every_error_class_is_in_errors_py():
    """No module but errors.py defines an exception class (read from the source)."""
    names = set(errors.__all__)
    elsewhere = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "errors.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef):
                continue
            bases = {ast.unparse(base).rpartition(".")[2] for base in node.bases}
            if any(b.endswith(("Error", "Exception", "Warning")) or b in names for b in bases):
                elsewhere.append(f"{path.relative_to(PACKAGE)}: class {node.name}")
    assert not elsewhere, "\n".join(elsewhere)


def test_every_error_derives_from_the_one_base_class():
    classes = [getattr(errors, name) for name in errors.__all__]
    assert all(inspect.isclass(c) and issubclass(c, errors.UnslothMultiimageError) for c in classes)
    defined = {
        name
        for name, value in vars(errors).items()
        if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == errors.__name__
    }
    assert defined == set(errors.__all__), "an error class missing from errors.__all__"


def test_user_errors_are_value_errors_and_the_internal_one_is_not():
    """Callers that caught ValueError for bad data keep working; a bug of the plugin is never one."""
    for cls in (errors.RowError, errors.SettingsError, errors.CommandError, errors.BatchError, errors.DatasetIOError):
        assert issubclass(cls, ValueError)
    assert issubclass(errors.InternalError, RuntimeError) and not issubclass(errors.InternalError, ValueError)
