"""The package's layers: the functional core, the job, the commands. A module imports only
its own layer or those below, and neither the core nor the data-preparation commands
load Lightning (``synth`` and ``evaluate`` start in a fraction of the time ``fit`` does).

Read from the source (imports at any depth of a module, lazy ones included), so the
test costs nothing and names the offending line.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lightning_deblur"

JOB_LAYER = {
    "data", "job", "stages", "multiscale", "schedule", "curves", "outputs", "image_logging", "progress",
    "divergence", "checkpointing",
}  # fmt: skip
"""The LightningModule, its datamodule and its callbacks."""

COMMAND_LAYER = {"__init__", "__main__", "api", "cli", "batch", "pool", "synth", "evaluate", "figures", "fit_experiment", "function_cli"}
"""What the command line runs; everything else is the functional core."""

WITHOUT_LIGHTNING = {"synth", "evaluate", "figures", "fit_experiment", "function_cli", "manifest"}
"""Commands and modules that must not load Lightning at import time, besides the core."""


def module_name(path: Path) -> str:
    """``lightning_deblur/nets/skip.py`` -> ``nets``: a subpackage counts as one module."""
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def layer(module: str) -> int:
    return 2 if module in COMMAND_LAYER else 1 if module in JOB_LAYER else 0


def imports(path: Path, module_level_only: bool = False) -> list[tuple[int, str]]:
    """``(line, imported module)`` of every import in the file (package modules by their
    :func:`module_name`, others by their top-level name)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else ast.walk(tree)
    found = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            found.append((node.lineno, parts[1] if parts[0] == "lightning_deblur" and len(parts) > 1 else parts[0]))
    return found


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_module_imports_a_layer_above_its_own():
    wrong = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"
        for path in sources()
        for line, name in imports(path)
        if (PACKAGE / f"{name}.py").exists() or (PACKAGE / name).is_dir()
        if layer(name) > layer(module_name(path))
    ]
    assert wrong == []


def test_the_core_and_the_data_commands_do_not_load_lightning_when_imported():
    graph = {module_name(path): set() for path in sources()}
    for path in sources():
        graph[module_name(path)].update(name for _, name in imports(path, module_level_only=True))

    def loads_lightning(module: str, seen: set[str]) -> bool:
        if module in seen or module not in graph:
            return module in ("lightning", "pytorch_lightning")
        seen.add(module)
        return any(loads_lightning(name, seen) for name in graph[module])

    checked = [m for m in graph if m in WITHOUT_LIGHTNING or layer(m) == 0]
    assert len(checked) > 20  # the core is most of the package
    assert [m for m in checked if loads_lightning(m, set())] == []


def test_the_layer_check_sees_an_upward_import(tmp_path):
    # The check above must be able to fail: a core module importing the job is caught.
    path = tmp_path / "physics.py"
    path.write_text("from lightning_deblur.job import DeblurJob\n\ndef f():\n    import lightning_deblur.cli\n")
    found = [name for _, name in imports(path)]
    assert found == ["job", "cli"] and layer("job") > layer("physics") and layer("cli") > layer("job")
