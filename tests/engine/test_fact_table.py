"""One fact table: every release fact is written in ``engine/compat_table.toml`` and nowhere else
in the package; the code names its keys, and every key it names exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from unsloth_multiimage.engine import compat

PACKAGE = Path(__file__).resolve().parents[2] / "unsloth_multiimage"
#: The table's reader and the package's own version are the only files allowed a version literal.
READERS = {"engine/compat.py", "_version.py"}
VERSION_LITERALS = [
    re.compile(r"\b20[12]\d\.\d{1,2}(\.\d{1,2})?\b"),  # an unsloth_zoo release: 2025.9, 2025.12.4
    re.compile(r"\b\d+\.\d+\.\d+\b"),  # any x.y.z release
    re.compile(r"\b[45]\.\d{2}\b"),  # a transformers release line: 4.45, 5.23
    re.compile(r"\b(transformers|trl|torch|unsloth_zoo|unsloth|vllm|vLLM|datasets)[ -]v?\d+\.\d+"),
    re.compile(r"\(20[12]\d, *\d+"),  # a release tuple
]


def _sources() -> list[tuple[str, str]]:
    return [
        (path.relative_to(PACKAGE).as_posix(), path.read_text(encoding="utf-8"))
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).as_posix() not in READERS
    ]


def test_no_release_version_literal_in_package_code():
    """Code, comments and docstrings name a fix or capability key, never a release."""
    found = [
        f"{name}:{number}: {line.strip()}"
        for name, text in _sources()
        for number, line in enumerate(text.splitlines(), 1)
        if any(pattern.search(line) for pattern in VERSION_LITERALS)
    ]
    assert not found, "release facts belong in engine/compat_table.toml:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "line",
    ["as unsloth_zoo 2025.9+ does", "(2025, 9, 3)", "transformers 5.23 builds", "from 4.45 to 5.x", "2026.10.9"],
)
def test_the_literal_check_finds_what_it_forbids(line):
    assert any(pattern.search(line) for pattern in VERSION_LITERALS)


def _named_capabilities() -> set[tuple[str, str]]:
    """(distribution, capability) of every ``does(decision, "x")``, ``compat.has(dist, "x", ...)`` and
    ``compat.since(dist, "x")`` call with literal names (``DISTRIBUTION`` is unsloth_zoo's)."""
    found = set()
    for _name, text in _sources():
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.Call):
                continue
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            args = node.args
            if func == "does" and len(args) == 2 and isinstance(args[1], ast.Constant):
                found.add(("unsloth_zoo", args[1].value))
            elif func in ("has", "since") and len(args) >= 2 and isinstance(args[1], ast.Constant):
                dist = args[0].value if isinstance(args[0], ast.Constant) else "unsloth_zoo"
                found.add((dist, args[1].value))
    return found


def test_every_capability_the_code_names_is_in_the_table_and_every_one_is_used():
    named = _named_capabilities()
    table = set(compat.capabilities())
    assert named, "the reader found no capability names: the check is broken"
    assert named <= table, f"named but not in compat_table.toml: {sorted(named - table)}"
    # A fact the code does not read is still named where it applies (``key`` in a docstring or comment).
    prose = "\n".join(text for _name, text in _sources())
    unused = {key for key in table - named if f"`{key[1]}`" not in prose and f"``{key[1]}``" not in prose}
    assert not unused, f"in compat_table.toml but neither read nor named by the package: {sorted(unused)}"


def test_an_unreadable_version_is_older_than_every_release_everywhere():
    """One rule: decide() calls it unsupported, has() gives it no capability."""
    assert compat.decide("unsloth_collator", "not-a-version").state == "unsupported"
    assert compat.parse_version("not-a-version") is None
    assert not any(compat.has(dist, name, "not-a-version") for dist, name in compat.capabilities())
    assert not any(compat.has(dist, name, None) for dist, name in compat.capabilities())


def test_a_capability_starts_at_its_first_release():
    for (dist, name), fact in compat.capabilities().items():
        first = str(fact.since)
        assert compat.since(dist, name) == first
        assert compat.has(dist, name, first)
        assert compat.has(dist, name, first + ".dev0")  # a pre-release of that release has it too
        before = list(fact.since.release)
        before[-1] -= 1
        if before[-1] >= 0:
            assert not compat.has(dist, name, ".".join(map(str, before))), (dist, name)
