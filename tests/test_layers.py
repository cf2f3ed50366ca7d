"""The package's layers, as its folders show them: ``core/`` (no Lightning), ``job/`` (the
LightningModule and its callbacks), ``commands/`` (what users run). A module imports
only its own layer or those below, no two modules import each other through any chain,
neither the core nor the data-preparation commands load Lightning at import time
(``synth`` and ``evaluate`` start in a fraction of the time ``fit`` does), and no module
outgrows 500 lines.

Read from the source (imports at any depth of a module, lazy ones included), so the
tests cost nothing and name the offending line.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lightning_deblur"

LAYERS = {"core": 0, "job": 1, "commands": 2}
"""Layer of each top folder; the package's own ``__init__``/``__main__`` face the user (2)."""

WITHOUT_LIGHTNING = {"commands.synth", "commands.evaluate", "commands.figures", "commands.function_cli"}
"""Commands that must not load Lightning at import time, besides the core."""

MAX_LINES = 500


def module_name(path: Path) -> str:
    """``lightning_deblur/core/nets/skip.py`` -> ``core.nets.skip``; a package's
    ``__init__`` is the package (``core.nets``; the top one ``__init__``)."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> int:
    return LAYERS.get(module.split(".")[0], 2)


def imports(path: Path, module_level_only: bool = False) -> list[tuple[int, str]]:
    """``(line, imported module)`` of every import in the file: package modules by their
    :func:`module_name` (``from lightning_deblur.core import physics`` names
    ``core.physics``), others by their top-level name."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else ast.walk(tree)
    found = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
            if node.module.startswith("lightning_deblur"):
                names = [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            found.append((node.lineno, package_module(name) if name.startswith("lightning_deblur") else name.split(".")[0]))
    return found


def package_module(dotted: str) -> str:
    """The longest prefix of ``lightning_deblur.a.b.c`` that is a module of the package,
    by its :func:`module_name` (an imported class or function is cut off)."""
    parts = dotted.split(".")[1:]
    while parts:
        candidate = PACKAGE.joinpath(*parts)
        if candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file():
            return ".".join(parts)
        parts.pop()
    return "__init__"


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def graph(module_level_only: bool = False) -> dict[str, set[str]]:
    edges = {module_name(path): set() for path in sources()}
    for path in sources():
        edges[module_name(path)].update(name for _, name in imports(path, module_level_only) if name in edges)
    return edges


def test_no_module_imports_a_layer_above_its_own():
    names = set(graph())
    wrong = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"
        for path in sources()
        for line, name in imports(path)
        if name in names and layer(name) > layer(module_name(path))
    ]
    assert wrong == []


def test_no_import_cycle():
    edges = graph()
    # A package's __init__ may re-export its own modules; that is not a cycle of concerns.
    for module in edges:
        edges[module] = {name for name in edges[module] if not name.startswith(module + ".")}
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        for name in sorted(edges[module]):
            if name in path:
                cycles.append(" -> ".join(path[path.index(name):] + [name]))
            elif name not in done:
                visit(name, path + [name])
        done.add(module)

    done: set[str] = set()
    for module in sorted(edges):
        if module not in done:
            visit(module, [module])
    assert cycles == []


def test_the_core_and_the_data_commands_do_not_load_lightning_when_imported():
    edges = {module_name(path): set() for path in sources()}
    for path in sources():
        edges[module_name(path)].update(name for _, name in imports(path, module_level_only=True))

    def loads_lightning(module: str, seen: set[str]) -> bool:
        if module in seen or module not in edges:
            return module in ("lightning", "pytorch_lightning")
        seen.add(module)
        return any(loads_lightning(name, seen) for name in edges[module])

    checked = [m for m in edges if m in WITHOUT_LIGHTNING or layer(m) == 0]
    assert len(checked) > 20  # the core is most of the package
    assert [m for m in checked if loads_lightning(m, set())] == []


def test_no_module_is_over_500_lines():
    long = {module_name(path): n for path in sources() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_checks_see_an_upward_import_and_a_cycle(tmp_path):
    # The checks above must be able to fail: a core module importing the job is caught...
    path = tmp_path / "physics.py"
    path.write_text("from lightning_deblur.job.deblur_job import DeblurJob\n\ndef f():\n    import lightning_deblur.commands.fit\n")
    found = [name for _, name in imports(path)]
    assert found == ["job.deblur_job", "commands.fit"]
    assert layer("job.deblur_job") > layer("core.physics") and layer("commands.fit") > layer("job.deblur_job")
    # ... and `from package import module` names the module.
    path.write_text("from lightning_deblur.core import physics\n")
    assert [name for _, name in imports(path)] == ["core.physics"]
