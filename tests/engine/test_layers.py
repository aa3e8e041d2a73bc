"""The package's folders are layers, and data flows one way between them (README, Design).

Read from the source with ``ast``: every import of ``unsloth_multiimage`` code, at module level or
inside a function, must go to a layer the importing layer may use.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "unsloth_multiimage"
BASE = {"__init__", "__main__", "_bootstrap", "_env", "_version", "settings", "errors"}

#: layer -> the layers it may import from (besides itself).
ALLOWED = {
    "base": {"base"},
    "engine": {"base", "adapters"},  # the engine hands the patches the adapter lookup it builds
    "rows": {"base"},
    "formats": {"base", "rows"},
    "adapters": {"base", "engine.hookspecs"},  # the hookimpl marker, as a third party uses it
    "patches": {"base", "engine", "rows", "formats", "adapters"},
    "tools": {"base", "engine", "rows", "formats", "adapters", "patches"},
}
#: The deliberate exceptions, each with its reason.
EXCEPTIONS = {
    # The bootstrap's activation callback: the one deferred import upward (import stays cheap).
    ("_bootstrap", "engine.activation"),
    # The lazy public names and the `python -m` entry point.
    ("__init__", "*"),
    ("__main__", "tools.cli"),
}


def layer_of(module: str) -> str:
    top = module.split(".")[0]
    return "base" if top in BASE else top


def imports(path: Path, nodes: list[ast.stmt] | None = None) -> set[str]:
    """The modules of the package that ``path`` imports (dotted, relative to the package); only in
    ``nodes`` when given."""
    package = list(path.relative_to(PACKAGE).parts[:-1])  # the folder a relative import starts from
    found: set[str] = set()
    tree = ast.Module(body=nodes, type_ignores=[]) if nodes is not None else ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
            target = [*base, *(node.module.split(".") if node.module else [])]
            if node.module is None:  # from . import x
                found |= {".".join([*base, alias.name]) for alias in node.names}
            else:
                found.add(".".join(target) or "__init__")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("unsloth_multiimage"):
            found.add(node.module.removeprefix("unsloth_multiimage").lstrip(".") or "__init__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("unsloth_multiimage."):
                    found.add(alias.name.removeprefix("unsloth_multiimage."))
    return found


def test_every_import_goes_to_a_layer_the_importer_may_use():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        layer = layer_of(module)
        for target in imports(path):
            target_layer = layer_of(target)
            if target_layer == layer or target_layer in ALLOWED[layer] or target in ALLOWED[layer]:
                continue
            if (module, target) in EXCEPTIONS or (module, "*") in EXCEPTIONS:
                continue
            wrong.append(f"{module} ({layer}) imports {target} ({target_layer})")
    assert not wrong, "\n".join(wrong)


def test_the_layers_cover_every_folder_of_the_package():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert folders == set(ALLOWED) - {"base"}
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top == BASE


def _module_level_imports(path: Path) -> set[str]:
    """Like :func:`imports`, for the statements that run when the module is imported (not inside
    functions or classes, not under ``if TYPE_CHECKING:``)."""

    def statements(body: list[ast.stmt]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                out += statements(node.orelse)
            elif isinstance(node, (ast.If, ast.Try, ast.With)):
                for field in ("body", "orelse", "finalbody"):
                    out += statements(getattr(node, field, []) or [])
                for handler in getattr(node, "handlers", []):
                    out += statements(handler.body)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                out.append(node)
        return out

    return imports(path, statements(ast.parse(path.read_text(encoding="utf-8")).body))


def test_there_is_no_import_cycle_at_module_level():
    graph: dict[str, set[str]] = {}
    names = {".".join(p.relative_to(PACKAGE).with_suffix("").parts) for p in PACKAGE.rglob("*.py")}
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        targets = set()
        for target in _module_level_imports(path):
            while target and target not in names and f"{target}.__init__" not in names:
                target = target.rpartition(".")[0]  # `from .adapters import ModelAdapter` -> adapters
            if target:
                targets.add(target if target in names else f"{target}.__init__")
        graph[module] = targets - {module}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack, node, nxt]))
            if nxt not in state:
                visit(nxt, [*stack, node])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
