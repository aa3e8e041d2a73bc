"""Three audiences, one import path each: users import ``unsloth_multiimage``, plugin authors
``unsloth_multiimage.plugin``; everything else is internal. Type checkers see the real signatures."""

from __future__ import annotations

import ast
import importlib
import re
import warnings
from pathlib import Path

import pytest

import unsloth_multiimage
from unsloth_multiimage import plugin

PACKAGE = Path(__file__).resolve().parents[2] / "unsloth_multiimage"


def test_all_is_the_lazy_table_and_every_name_resolves():
    assert unsloth_multiimage.__all__ == ["__version__", *unsloth_multiimage._PUBLIC]
    for name in unsloth_multiimage.__all__:
        assert getattr(unsloth_multiimage, name) is not None, name
    for name in plugin.__all__:
        assert getattr(plugin, name) is not None, name


def test_every_users_name_is_imported_for_type_checkers():
    """The ``TYPE_CHECKING`` block of ``__init__`` imports exactly the lazy names (read from the source)."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    block = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    imported = {alias.asname or alias.name for n in block.body if isinstance(n, ast.ImportFrom) for alias in n.names}
    assert set(unsloth_multiimage._PUBLIC) <= imported
    for name, module in unsloth_multiimage._PUBLIC.items():
        loaded = importlib.import_module(f"unsloth_multiimage.{module}")
        expected = loaded if module.rpartition(".")[2] == name else getattr(loaded, name)
        assert getattr(unsloth_multiimage, name) is expected, name


def test_the_faces_do_not_overlap():
    """A name has one import path: no plugin-author name is listed on the users' face."""
    assert not set(plugin.__all__) & set(unsloth_multiimage.__all__)


@pytest.mark.parametrize("name", sorted(unsloth_multiimage._MOVED_TO_PLUGIN))
def test_a_moved_name_still_works_with_a_deprecation_warning(name):
    with pytest.warns(DeprecationWarning, match=rf"unsloth_multiimage\.plugin\.{name}"):
        value = getattr(unsloth_multiimage, name)
    assert value is getattr(plugin, name)
    assert name not in unsloth_multiimage.__all__ and name not in dir(unsloth_multiimage)


def test_the_built_in_patches_import_the_plugin_face_as_a_third_party_does():
    for path in sorted((PACKAGE / "patches").glob("*.py")):
        if path.name == "__init__.py":
            continue
        text = path.read_text(encoding="utf-8")
        assert "from ..plugin import" in text, path.name
        assert not re.search(r"from \.\.engine", text), f"{path.name} reaches into the engine past the plugin face"


USER_SCRIPT = """
import unsloth_multiimage
from unsloth_multiimage import errors, formats

{reveals}
"""


def test_a_users_script_sees_real_types_not_any(tmp_path):
    """mypy on a user's script: every public name has its real type (the lazy table alone made
    each one ``Any``)."""
    mypy = pytest.importorskip("mypy.api", reason="mypy is installed in the default test session only (noxfile)")
    names = [n for n in unsloth_multiimage.__all__ if n != "__version__"]
    script = tmp_path / "user_script.py"
    script.write_text(
        USER_SCRIPT.format(reveals="\n".join(f"reveal_type(unsloth_multiimage.{n})" for n in names)),
        encoding="utf-8",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stdout, stderr, status = mypy.run(
            [str(script), "--no-incremental", "--ignore-missing-imports", "--follow-imports=silent"]
        )
    revealed = re.findall(r'Revealed type is "(.*)"', stdout)
    assert len(revealed) == len(names), stdout + stderr
    untyped = [f"{name}: {kind}" for name, kind in zip(names, revealed) if kind == "Any"]
    assert not untyped, "public names mypy sees as Any:\n" + "\n".join(untyped)
    assert status == 0 and "Success: no issues found" in stdout, stdout + stderr
