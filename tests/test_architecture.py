"""The package's shape: layers, no import cycle, and the two targets kept apart.

docs/architecture.md explains the layers; LAYERS below is the same table as
data. The import graph is built with ``ast`` from the source, so it counts every
import a run could make: at the top, inside functions, under ``TYPE_CHECKING``,
relative ones, and ``importlib.import_module("swarmforge....")`` with a literal
name. ``from swarmforge import packer`` is an edge to ``swarmforge.packer`` (the
module or package), ``from swarmforge.packer import render`` one to
``swarmforge.packer.render`` when that is a module, else to ``swarmforge.packer``.
A package's ``__init__`` is a module like any other.
"""

from __future__ import annotations

import ast
import itertools
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "swarmforge"

# Lowest layer first. A module may import only from its own layer or a lower one.
# A key names a module or a package (then it covers everything below it too); the
# longest key that matches wins. The package root ``swarmforge`` matches only
# itself (swarmforge/__init__.py), never its submodules.
LAYER_NAMES = {0: "base", 1: "adapters", 2: "targets", 3: "use cases", 4: "interface"}
LAYERS: dict[str, int] = {
    "swarmforge": 0,
    "swarmforge.errors": 0,
    "swarmforge.settings": 0,
    "swarmforge.nodes": 0,
    "swarmforge.node_facts": 0,
    "swarmforge.process": 0,
    "swarmforge.progress": 0,
    "swarmforge.beside": 0,  # work that only waits, run in a thread; its result handed over
    "swarmforge.redact": 0,
    "swarmforge.private_files": 0,  # 0600 files, 0700 dirs, whatever the umask
    "swarmforge.state_dir": 0,  # the clusters the state dir holds
    "swarmforge.runtime": 0,  # not in the layout note: imports only errors, used by ssh
    "swarmforge.unlock_keys": 0,  # the unlock key, never shown, and its store's seam
    "swarmforge.ssh": 1,
    "swarmforge.swarm": 1,
    "swarmforge.swarm_lock": 1,  # autolock's commands over SSH
    "swarmforge.terraform": 1,
    "swarmforge.backend": 1,
    "swarmforge.tools": 1,
    "swarmforge.workspace": 1,
    "swarmforge.operation": 1,
    "swarmforge.provenance": 1,
    "swarmforge.state_file": 1,
    "swarmforge.aws_api": 1,
    "swarmforge.terraform_output": 1,
    "swarmforge.setting_values": 0,
    "swarmforge.catalog": 1,
    "swarmforge.backup_store": 1,  # a backup's archive and manifest; the BackupStore seam
    "swarmforge.docker_context": 1,  # docker context create/update/rm, through the CLI
    "swarmforge.operator_ssh": 1,  # the operator's ssh: the Host alias, a shell on a node
    "swarmforge.packer": 1,
    "swarmforge.targets": 2,
    "swarmforge.cluster": 3,
    "swarmforge.apply_plan": 3,
    "swarmforge.apply_guards": 3,
    "swarmforge.bake": 3,
    "swarmforge.images": 3,
    "swarmforge.rebuild": 3,
    "swarmforge.roll": 3,
    "swarmforge.replace_node": 3,
    "swarmforge.replacement": 3,
    "swarmforge.picks": 3,
    "swarmforge.departure": 3,  # the graceful way out: drain, demote, leave, node rm
    "swarmforge.heal": 3,
    "swarmforge.scale_in": 3,
    "swarmforge.state_bootstrap": 3,
    "swarmforge.unlock": 3,
    "swarmforge.autolock": 3,  # locked managers unlocked with the stored key
    "swarmforge.unlock_key": 3,
    "swarmforge.access": 3,  # invoke context, invoke ssh
    "swarmforge.backup": 3,
    "swarmforge.restore": 3,
    "swarmforge.cli": 4,
}

# The two targets: neither may import the other (the seam is targets/base.py).
SEPARATE = ("swarmforge.targets.local", "swarmforge.targets.aws")

# Outside the package, above everything: nothing in it may import these.
ABOVE_PACKAGE = ("tasks", "tests", "benchmarks")


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target``, at ``path:line``."""

    source: str
    target: str
    path: Path
    line: int

    def where(self) -> str:
        return f"{_shown(self.path)}:{self.line}"


@dataclass(frozen=True)
class Graph:
    modules: Mapping[str, Path]  # module name -> its file (a directory for a namespace package)
    edges: tuple[Edge, ...]  # between modules of the package, self-imports left out
    outside: tuple[Edge, ...]  # to ABOVE_PACKAGE names

    def successors(self) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {name: set() for name in self.modules}
        for edge in self.edges:
            found[edge.source].add(edge.target)
        return found

    def edge(self, source: str, target: str) -> Edge:
        return next(e for e in self.edges if e.source == source and e.target == target)


# --- building the graph -----------------------------------------------------------------


def discover(root: Path, package: str) -> dict[str, Path]:
    """Every module and package under ``root/package``, by dotted name."""
    modules: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if "__pycache__" in parts:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
        # Every directory on the way is a package, with or without an __init__.py.
        for depth in range(1, len(parts)):
            name = ".".join(parts[:depth])
            modules.setdefault(name, root.joinpath(*parts[:depth]))
    return modules


def build_graph(root: Path, package: str, above: tuple[str, ...] = ABOVE_PACKAGE) -> Graph:
    modules = discover(root, package)
    edges: list[Edge] = []
    outside: list[Edge] = []
    for name, path in modules.items():
        if path.is_dir():
            continue  # a namespace package: no code of its own
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(), filename=str(path))
        for target, line in _imported_names(tree, name, is_package):
            top = target.partition(".")[0]
            if top in above:
                outside.append(Edge(name, target, path, line))
                continue
            if top != package:
                continue
            for resolved in _resolve(target, modules):
                if resolved != name:
                    edges.append(Edge(name, resolved, path, line))
    return Graph(modules, tuple(dict.fromkeys(edges)), tuple(outside))


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[str, int]]:
    """Every name an import statement (or a literal import_module call) in ``tree`` asks for.

    ``from X import a`` yields ``X.a`` and ``_resolve`` falls back to ``X`` when
    ``X.a`` is not a module.
    """
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node.module, node.level, module, is_package)
            for alias in node.names:
                yield (base if alias.name == "*" else f"{base}.{alias.name}"), node.lineno
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func):
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str) \
                    and not first.value.startswith("."):
                yield first.value, node.lineno


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in ("import_module", "__import__")
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def _absolute(target: str | None, level: int, module: str, is_package: bool) -> str:
    """The absolute name of ``from <level dots><target> import ...`` written in ``module``."""
    if level == 0:
        return target or ""
    base = module if is_package else module.rpartition(".")[0]
    for _ in range(level - 1):
        base = base.rpartition(".")[0]
    return f"{base}.{target}" if target else base


def _resolve(name: str, modules: Mapping[str, Path]) -> list[str]:
    """The module ``name`` lands on: itself, else its longest prefix that is a module."""
    parts = name.split(".")
    for length in range(len(parts), 0, -1):
        candidate = ".".join(parts[:length])
        if candidate in modules:
            return [candidate]
    return []


# --- the rules ----------------------------------------------------------------------------


def strongly_connected(successors: Mapping[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, each sorted, in a stable order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(successors.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(successors):
        if node not in index:
            visit(node)
    return sorted(components)


def cycles(graph: Graph) -> list[str]:
    """One line per import cycle: a shortest loop through the component's first module."""
    successors = graph.successors()
    problems = []
    for component in strongly_connected(successors):
        if len(component) < 2:
            continue
        loop = _shortest_loop(component[0], set(component), successors)
        steps = " -> ".join(f"{a} ({graph.edge(a, b).where()})" for a, b in itertools.pairwise(loop))
        problems.append(f"import cycle among {', '.join(component)}: {steps} -> {loop[-1]}")
    return problems


def _shortest_loop(start: str, members: set[str], successors: Mapping[str, set[str]]) -> list[str]:
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for successor in sorted(successors[node] & members):
            if successor == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if successor not in came_from:
                came_from[successor] = node
                queue.append(successor)
    raise AssertionError(f"{start} is in a component but on no loop")


def layer_of(module: str, layers: Mapping[str, int], root: str = PACKAGE) -> int | None:
    matches = [key for key in layers
               if module == key or (key != root and module.startswith(key + "."))]
    return layers[max(matches, key=len)] if matches else None


def unplaced(graph: Graph, layers: Mapping[str, int], root: str = PACKAGE) -> list[str]:
    return [f"{name} ({_shown(path)}) has no layer: place it in LAYERS in tests/test_architecture.py "
            "(and in the table of docs/architecture.md)"
            for name, path in sorted(graph.modules.items()) if layer_of(name, layers, root) is None]


def upward(graph: Graph, layers: Mapping[str, int], root: str = PACKAGE) -> list[str]:
    problems = []
    for edge in graph.edges:
        source, target = layer_of(edge.source, layers, root), layer_of(edge.target, layers, root)
        if source is not None and target is not None and target > source:
            problems.append(f"{edge.source} (layer {source}, {LAYER_NAMES.get(source, '?')}) imports "
                            f"{edge.target} (layer {target}, {LAYER_NAMES.get(target, '?')}) "
                            f"at {edge.where()}")
    problems += [f"{edge.source} imports {edge.target}, which sits above the package, at {edge.where()}"
                 for edge in graph.outside]
    return problems


def crossings(graph: Graph, separate: tuple[str, ...] = SEPARATE) -> list[str]:
    """Imports from one of the ``separate`` subtrees into another."""

    def side(module: str) -> str | None:
        return next((s for s in separate if module == s or module.startswith(s + ".")), None)

    return [f"{edge.source} imports {edge.target} at {edge.where()}: {side(edge.source)} and "
            f"{side(edge.target)} must not import each other (share code through a lower layer)"
            for edge in graph.edges
            if side(edge.source) and side(edge.target) and side(edge.source) != side(edge.target)]


def target_comparisons(root: Path, package: str) -> list[str]:
    """``grep -rn 'target == '`` over the package's .py files outside its targets/ package."""
    allowed = root / package / "targets"
    found = []
    for path in sorted((root / package).rglob("*.py")):
        if allowed in path.parents:
            continue
        for number, text in enumerate(path.read_text().splitlines(), start=1):
            if "target == " in text:
                found.append(f"{_shown(path)}:{number}: {text.strip()}")
    return found


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def _report(what: str, problems: list[str]) -> str:
    return f"{len(problems)} {what}:\n  " + "\n  ".join(problems)


# --- the package ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> Graph:
    built = build_graph(REPO, PACKAGE)
    # Not vacuous: the package and its imports were found.
    assert len(built.modules) >= 20, sorted(built.modules)
    assert any(e.source == "swarmforge.cli" for e in built.edges), "found no import in swarmforge.cli"
    return built


def test_every_module_has_a_layer(graph: Graph) -> None:
    problems = unplaced(graph, LAYERS)
    assert not problems, _report("modules without a layer", problems)


def test_no_import_cycle(graph: Graph) -> None:
    problems = cycles(graph)
    assert not problems, _report("import cycles", problems)


def test_no_upward_import(graph: Graph) -> None:
    problems = upward(graph, LAYERS)
    assert not problems, _report("upward imports (see LAYERS and docs/architecture.md)", problems)


def test_local_and_aws_targets_do_not_import_each_other(graph: Graph) -> None:
    problems = crossings(graph)
    assert not problems, _report("imports between the targets", problems)


def test_no_target_name_comparison_outside_targets() -> None:
    problems = target_comparisons(REPO, PACKAGE)
    assert not problems, _report(
        "comparisons with a target name outside swarmforge/targets/ (ask the Target instead)",
        problems)


# --- the checks themselves, on a small package of our own ----------------------------------


def _package(root: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


TOY_LAYERS = {"toy": 0, "toy.base": 0, "toy.adapters": 1, "toy.targets": 2, "toy.cli": 3}
CLEAN = {
    "toy/__init__.py": '"""Toy."""\n',
    "toy/base.py": "import os\n",
    "toy/adapters/__init__.py": "from toy.adapters import ssh\n",
    "toy/adapters/ssh.py": "from .. import base\nfrom toy.base import os\n",
    "toy/targets/local/__init__.py": "",
    "toy/targets/local/run.py": "from toy.adapters.ssh import base\n",
    "toy/targets/aws/run.py": "import toy.adapters.ssh\n",
    "toy/cli.py": (
        "from typing import TYPE_CHECKING\n"
        "from toy.targets.local import run\n"
        "if TYPE_CHECKING:\n    from toy.targets.aws import run as aws_run\n"
        "def main():\n    from toy import adapters\n    return adapters\n"
    ),
}


def test_a_clean_package_passes(tmp_path: Path) -> None:
    toy = build_graph(_package(tmp_path, CLEAN), "toy")
    pairs = {(e.source, e.target) for e in toy.edges}
    assert {("toy.adapters", "toy.adapters.ssh"),           # a package's own submodule
            ("toy.adapters.ssh", "toy.base"),                # relative, and `from X import name`
            ("toy.targets.local.run", "toy.adapters.ssh"),
            ("toy.targets.aws.run", "toy.adapters.ssh"),     # plain `import a.b.c`
            ("toy.cli", "toy.targets.local.run"),
            ("toy.cli", "toy.targets.aws.run"),              # under TYPE_CHECKING
            ("toy.cli", "toy.adapters")} <= pairs            # inside a function
    assert "toy.targets" in toy.modules  # a namespace package is a module too
    assert not cycles(toy)
    assert not unplaced(toy, TOY_LAYERS, "toy")
    assert not upward(toy, TOY_LAYERS, "toy")
    assert not crossings(toy, ("toy.targets.local", "toy.targets.aws"))


def test_a_cycle_is_found_with_its_edges(tmp_path: Path) -> None:
    files = {**CLEAN, "toy/base.py": "def late():\n    from toy.adapters import ssh\n    return ssh\n"}
    problems = cycles(build_graph(_package(tmp_path, files), "toy"))
    assert len(problems) == 1, problems
    assert "toy.adapters.ssh" in problems[0] and "toy.base" in problems[0]
    assert "toy/base.py:2" in problems[0]


def test_a_package_importing_its_submodule_can_close_a_cycle(tmp_path: Path) -> None:
    files = {**CLEAN, "toy/adapters/ssh.py": "import toy.adapters\n"}
    problems = cycles(build_graph(_package(tmp_path, files), "toy"))
    assert len(problems) == 1 and "toy.adapters, toy.adapters.ssh" in problems[0], problems


def test_an_upward_import_is_found(tmp_path: Path) -> None:
    files = {**CLEAN, "toy/adapters/ssh.py": "if True:\n    from toy.cli import main\n"}
    problems = upward(build_graph(_package(tmp_path, files), "toy"), TOY_LAYERS, "toy")
    assert len(problems) == 1, problems
    assert "toy.adapters.ssh (layer 1" in problems[0] and "toy.cli (layer 3" in problems[0]


def test_the_targets_importing_each_other_is_found(tmp_path: Path) -> None:
    files = {**CLEAN, "toy/targets/aws/run.py": "from ..local import run\n"}
    problems = crossings(build_graph(_package(tmp_path, files), "toy"),
                         ("toy.targets.local", "toy.targets.aws"))
    assert len(problems) == 1 and problems[0].startswith("toy.targets.aws.run imports toy.targets.local.run")


def test_a_module_without_a_layer_is_named(tmp_path: Path) -> None:
    files = {**CLEAN, "toy/newcomer.py": ""}
    problems = unplaced(build_graph(_package(tmp_path, files), "toy"), TOY_LAYERS, "toy")
    assert len(problems) == 1 and problems[0].startswith("toy.newcomer ") and "place it" in problems[0]


def test_the_root_key_covers_only_the_root(tmp_path: Path) -> None:
    assert layer_of("toy", TOY_LAYERS, "toy") == 0
    assert layer_of("toy.unknown", TOY_LAYERS, "toy") is None
    assert layer_of("toy.targets.aws.run", TOY_LAYERS, "toy") == 2
    assert layer_of("toy.cli", {**TOY_LAYERS, "toy.c": 0}, "toy") == 3  # whole names, not prefixes


def test_tarjan_finds_every_component() -> None:
    successors = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": {"e"}, "e": {"d"}, "f": set()}
    assert strongly_connected(successors) == [["a", "b", "c"], ["d", "e"], ["f"]]


def test_a_target_comparison_outside_targets_is_found(tmp_path: Path) -> None:
    files = {**CLEAN, "toy/cli.py": 'if settings.target == "local":\n    pass\n',
             "toy/targets/local/run.py": 'ok = settings.target == "local"\n'}
    found = target_comparisons(_package(tmp_path, files), "toy")
    assert len(found) == 1 and found[0].endswith('cli.py:1: if settings.target == "local":'), found
