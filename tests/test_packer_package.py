"""swarmforge.packer as a package (issue 14): small modules in one order, no cycle, and
every name a caller reaches through ``swarmforge.packer`` still there."""

from __future__ import annotations

import ast
from pathlib import Path

import swarmforge.packer

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "swarmforge" / "packer"
#: Lowest first: a module imports only modules before it.
ORDER = ("render", "machine_readable", "manifest", "run")
CALLERS = [ROOT / "tasks.py", *(ROOT / d for d in ("swarmforge", "tests", "benchmarks"))]


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, inside functions and under TYPE_CHECKING too."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_the_modules_import_only_lower_ones() -> None:
    assert sorted(p.stem for p in PACKAGE.glob("*.py")) == sorted([*ORDER, "__init__"])
    for level, name in enumerate(ORDER):
        siblings = {m.removeprefix("swarmforge.packer.") for m in imported(PACKAGE / f"{name}.py")
                    if m.startswith("swarmforge.packer.")} & set(ORDER)
        assert siblings <= set(ORDER[:level]), f"{name} imports {siblings - set(ORDER[:level])}"


def test_no_module_is_long() -> None:
    lengths = {p.name: len(p.read_text().splitlines()) for p in PACKAGE.glob("*.py")}
    assert max(lengths.values()) <= 300, lengths


def used_names(path: Path) -> set[str]:
    """Names ``path`` takes from swarmforge.packer: ``packer.X`` after ``from swarmforge
    import packer``, and ``from swarmforge.packer import X``."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    module_imported = False
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "swarmforge.packer":
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module == "swarmforge":
            module_imported |= any(alias.name == "packer" and not alias.asname for alias in node.names)
    if module_imported:
        names |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                  and isinstance(node.value, ast.Name) and node.value.id == "packer"}
    return names


def test_every_name_callers_use_is_exported() -> None:
    files = [p for c in CALLERS for p in ([c] if c.is_file() else c.rglob("*.py"))
             if PACKAGE not in p.parents]
    used: dict[str, list[str]] = {}
    for path in files:
        for name in used_names(path):
            used.setdefault(name, []).append(str(path.relative_to(ROOT)))

    assert {"build", "validate", "docker_pin", "BakeVariables", "ProgressSink"} <= set(used)
    missing = {name: where for name, where in used.items() if name not in swarmforge.packer.__all__}
    assert missing == {}
    assert all(hasattr(swarmforge.packer, name) for name in swarmforge.packer.__all__)
