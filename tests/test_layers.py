"""Layers only import downwards: every ``import`` in ``expo_rl`` (module level or inside a
function, ``TYPE_CHECKING`` blocks included) is checked against the layer table of
docs/ARCHITECTURE.md, parsed with ``ast`` (nothing is imported)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "expo_rl"
TABLE_HEADER = "| layer | modules | job |"


def layer_table(text: str) -> list[tuple[str, list[str]]]:
    """``[(layer, [module names])]`` lowest first, from the markdown table under TABLE_HEADER.
    ``expo_rl.engine.{step,value}`` names two modules; entries that are not dotted module names
    (``expo_rl/presets/*.yaml``) are skipped."""
    lines = text[text.index(TABLE_HEADER):].splitlines()[2:]
    layers = []
    for line in lines:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        names = []
        for entry in re.findall(r"`([^`]+)`", cells[1]):
            braces = re.fullmatch(r"([\w.]+)\.\{([\w,\s]+)\}", entry)
            if braces:
                names += [f"{braces[1]}.{part.strip()}" for part in braces[2].split(",")]
            elif re.fullmatch(r"[\w.]+", entry):
                names.append(entry)
        layers.append((cells[0], names))
    return layers


def module_names(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted name -> file of every module under ``package`` (a package is its ``__init__``)."""
    modules = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def layer_of(module: str, index: dict[str, int]) -> int | None:
    """The layer of the longest table entry that is ``module`` or a package above it; the root
    package ``expo_rl`` covers only itself (each subpackage must be listed)."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        name = ".".join(parts[:end])
        if name in index and (end == len(parts) or end > 1):
            return index[name]
    return None


def imported_modules(path: Path, module: str, modules: dict[str, Path]) -> list[tuple[int, str]]:
    """``(line, target module)`` of every import of an ``expo_rl`` module in ``path``;
    ``from pkg import name`` targets ``pkg.name`` when that is a module, else ``pkg``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.append((node.lineno, full if full in modules else base))
    return [(line, name) for line, name in found if name == "expo_rl" or name.startswith("expo_rl.")]


def upward_imports(table: list[tuple[str, list[str]]], modules: dict[str, Path], root: Path = ROOT
                   ) -> tuple[list[str], list[str]]:
    """(violations, modules missing from the table)."""
    index = {name: k for k, (_, names) in enumerate(table) for name in names}
    layer_names = [layer for layer, _ in table]
    violations, missing = [], []
    for module, path in sorted(modules.items()):
        own = layer_of(module, index)
        if own is None:
            missing.append(module)
            continue
        for line, target in imported_modules(path, module, modules):
            theirs = layer_of(target, index)
            if theirs is not None and theirs > own:
                violations.append(f"{path.relative_to(root)}:{line}: {module} ({layer_names[own]}) imports "
                                  f"{target} ({layer_names[theirs]})")
    return violations, missing


def import_cycles(modules: dict[str, Path]) -> list[list[str]]:
    """Groups of modules that import each other (directly or through others), function-local
    imports included; a module importing its own package does not count."""
    graph = {m: {t for _, t in imported_modules(p, m, modules) if t in modules and not (m == t or m.startswith(t + "."))}
             for m, p in modules.items()}
    reach = {m: set() for m in graph}
    for start in graph:
        todo = list(graph[start])
        while todo:
            m = todo.pop()
            if m not in reach[start]:
                reach[start].add(m)
                todo.extend(graph[m])
    cycles = {tuple(sorted({m} | {o for o in reach[m] if m in reach[o]})) for m in graph if m in reach[m]}
    return sorted(list(c) for c in cycles)


def test_no_import_cycle() -> None:
    """Same-layer modules may import each other one way only (config -> recipe -> config was a
    circle hidden by a function-local import)."""
    assert import_cycles(module_names()) == []


def test_the_cycle_check_catches_a_circle(tmp_path: Path) -> None:
    package = tmp_path / "expo_rl"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "config.py").write_text("def names():\n    from expo_rl.recipe import NAMES\n    return NAMES\n")
    (package / "recipe.py").write_text("from expo_rl.config import names\nNAMES = []\n")
    assert import_cycles(module_names(package)) == [["expo_rl.config", "expo_rl.recipe"]]


def test_no_import_goes_up_a_layer() -> None:
    table = layer_table((ROOT / "docs" / "ARCHITECTURE.md").read_text())
    assert [layer for layer, _ in table][:2] == ["records", "data"], table
    violations, missing = upward_imports(table, module_names())
    assert not missing, f"modules in no layer of docs/ARCHITECTURE.md: {missing}"
    assert not violations, "imports that go up a layer:\n" + "\n".join(violations)


def test_the_check_catches_an_upward_import(tmp_path: Path) -> None:
    """The check fails on a planted upward import, module-level and function-local alike."""
    package = tmp_path / "expo_rl"
    (package / "data").mkdir(parents=True)
    (package / "engine").mkdir()
    for init in (package, package / "data", package / "engine"):
        (init / "__init__.py").write_text("")
    (package / "engine" / "runtime.py").write_text("from expo_rl.data import records\n")
    (package / "data" / "records.py").write_text("def f():\n    from expo_rl.engine.runtime import train\n")
    (package / "data" / "jsonl.py").write_text("from .records import f\nimport expo_rl.engine.runtime\n")
    table = layer_table(f"{TABLE_HEADER}\n| --- | --- | --- |\n| records | `expo_rl.data.records` | |\n"
                        "| data | `expo_rl.data` | |\n| recipe | `expo_rl`, `expo_rl.engine.{runtime}` | |\n"
                        "| step | `expo_rl.engine` | |\n")
    violations, missing = upward_imports(table, module_names(package), tmp_path)
    assert missing == []
    assert [v.split(": ", 1)[1] for v in violations] == [
        "expo_rl.data.jsonl (data) imports expo_rl.engine.runtime (recipe)",
        "expo_rl.data.records (records) imports expo_rl.engine.runtime (recipe)",
    ]
    table.append(("cli", []))
    (package / "cli.py").write_text("")
    assert upward_imports(table, module_names(package), tmp_path)[1] == ["expo_rl.cli"]


@pytest.mark.parametrize("entry, modules", [
    ("`expo_rl.engine.{step, value}`", ["expo_rl.engine.step", "expo_rl.engine.value"]),
    ("`expo_rl/presets/*.yaml`, `expo_rl.cli`", ["expo_rl.cli"]),
])
def test_table_entries(entry: str, modules: list[str]) -> None:
    assert layer_table(f"{TABLE_HEADER}\n| --- |\n| x | {entry} | job |\n") == [("x", modules)]
