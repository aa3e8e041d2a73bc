"""The package's folders are layers, and data flows one way between them (README, Design).

Read from the source with ``ast``: every import of ``unsloth_multiimage`` code, at module level or
inside a function (and ``importlib.import_module("unsloth_multiimage....")`` with a literal name),
must go to a layer the importing layer may use; no command module imports another (the CLI
dispatches to them); and the import graph has no cycle at any depth.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "unsloth_multiimage"
BASE = {"__init__", "__main__", "_bootstrap", "_env", "_version", "settings", "errors", "hooks"}

#: layer -> the layers it may import from (besides itself).
ALLOWED = {
    "base": {"base"},
    "engine": {"base", "adapters"},  # the engine hands the patches the adapter lookup it builds
    "rows": {"base"},
    "formats": {"base", "rows"},
    "adapters": {"base"},  # the hookimpl marker is in the base (hooks), as a third party uses it
    # What patches share (packing): the row pipeline's data and the adapters' facts.
    "collate": {"base", "engine", "rows", "adapters"},
    "patches": {"base", "engine", "rows", "formats", "adapters", "collate"},
    # After training: prompts through the training pipeline (the collator's row steps and patches).
    "inference": {"base", "engine", "rows", "formats", "adapters", "patches"},
    # Measurements over prepared rows and a processor (the token report): no commands.
    "measure": {"base", "engine", "rows", "formats", "adapters", "patches"},
    "tools": {"base", "engine", "rows", "formats", "adapters", "patches", "inference", "measure"},
    # The demo harness: may use everything below; only the CLI imports it (it dispatches).
    "demo": {"base", "engine", "rows", "formats", "adapters", "patches", "tools", "inference", "measure"},
}
#: The deliberate exceptions, each with its reason (the lazy public names of ``__init__`` go
#: through ``importlib`` with computed names, which no layer rule reads).
EXCEPTIONS = {
    # The bootstrap's activation callback, the single upward import: the package hands it to
    # `_bootstrap.start`, so `_bootstrap` itself never imports the engine (import stays cheap).
    ("__init__", "engine.activation"): "the bootstrap's activation callback",
    ("__main__", "tools.cli"): "the `python -m unsloth_multiimage` entry point",
}

#: The command modules (one per CLI command); none imports another, and only the CLI, which
#: dispatches to them, imports them. Helpers they share live in modules that are not commands.
DISPATCHER = "tools.cli"
COMMANDS = {"tools.doctor", "tools.convert", "tools.preview", "tools.ask", "demo.demo", "demo.compare"}


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
            else:  # the module, and each name as a possible submodule (`from ..demo import compare`)
                found.add(".".join(target) or "__init__")
                found |= {".".join([*target, alias.name]) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("unsloth_multiimage"):
            module = node.module.removeprefix("unsloth_multiimage").lstrip(".")
            found.add(module or "__init__")
            found |= {f"{module}.{alias.name}".lstrip(".") for alias in node.names}
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("unsloth_multiimage."):
                    found.add(alias.name.removeprefix("unsloth_multiimage."))
        elif isinstance(node, ast.Call) and _called(node) == "import_module" and node.args:
            name = node.args[0]
            if isinstance(name, ast.Constant) and str(name.value).startswith("unsloth_multiimage."):
                found.add(str(name.value).removeprefix("unsloth_multiimage."))
    return found


def _excepted(module: str, target: str) -> bool:
    """``module`` importing ``target`` (or a name inside it) is a named exception."""
    parts = target.split(".")
    return any((module, ".".join(parts[:n])) in EXCEPTIONS for n in range(1, len(parts) + 1))


def _called(node: ast.Call) -> str:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def test_every_import_goes_to_a_layer_the_importer_may_use():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        layer = layer_of(module)
        for target in imports(path):
            target_layer = layer_of(target)
            if module == DISPATCHER and target_layer == "demo":
                continue  # the CLI dispatches to the demo harness
            if target_layer == layer or target_layer in ALLOWED[layer] or target in ALLOWED[layer]:
                continue
            if _excepted(module, target):
                continue
            wrong.append(f"{module} ({layer}) imports {target} ({target_layer})")
    assert not wrong, "\n".join(wrong)


def test_the_layers_cover_every_folder_of_the_package():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert folders == set(ALLOWED) - {"base"}
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top == BASE


def _graph() -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere (functions included; not the imports
    under ``if TYPE_CHECKING:``, which never run), without the named exceptions."""
    names = {".".join(p.relative_to(PACKAGE).with_suffix("").parts) for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = [n for n in ast.walk(tree) if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)]
        skipped = {id(n) for block in typing_only for stmt in block.body for n in ast.walk(stmt)}
        kept = [
            n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom, ast.Call)) and id(n) not in skipped
        ]
        targets = set()
        for target in imports(path, [ast.Expr(n) if isinstance(n, ast.Call) else n for n in kept]):
            while target and target not in names and f"{target}.__init__" not in names:
                target = target.rpartition(".")[0]  # `from .adapters import ModelAdapter` -> adapters
            if target and not _excepted(module, target):
                targets.add(target if target in names else f"{target}.__init__")
        graph[module] = targets - {module}
    return graph


def test_no_command_imports_another_and_only_the_cli_imports_commands():
    graph = _graph()
    assert COMMANDS <= set(graph), COMMANDS - set(graph)  # the list names real modules
    wrong = [
        f"{module} imports the command {target}"
        for module, targets in sorted(graph.items())
        for target in sorted(targets & COMMANDS)
        if module != DISPATCHER
    ]
    assert not wrong, "\n".join(wrong)


def test_nothing_but_the_cli_imports_the_demo_harness():
    graph = _graph()
    wrong = [
        f"{module} imports {target}"
        for module, targets in sorted(graph.items())
        if not module.startswith("demo.") and module != DISPATCHER
        for target in sorted(targets)
        if target.startswith("demo.")
    ]
    assert not wrong, "\n".join(wrong)


def test_there_is_no_import_cycle_at_any_depth():
    graph = _graph()
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack, node, nxt]))
            if nxt not in state:
                visit(nxt, [*stack, node])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_the_cycle_check_sees_imports_inside_functions():
    """The reader is the test: a cycle made only of function-level imports must be found."""
    tree = ast.parse(
        "def f():\n    from .b import g\n    import importlib\n    importlib.import_module('unsloth_multiimage.c')\n"
    )
    fake = PACKAGE / "a.py"
    assert imports(fake, list(ast.walk(tree))[1:]) >= {"b", "c"}
