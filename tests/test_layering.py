"""The layering of percepmetric: the core below, the applications above.

The core (errors, image I/O, the registry, devices, checkpoints, options, statistics, the
metrics and the LPIPS backbones: every module that is not an application) never imports an
application, so that ``import percepmetric`` and ``create_metric`` work without the benchmark,
the trainers or the command line, and a change in an application cannot break a metric. The
applications import the core and, apart from the command line that assembles them, not each
other: bench reaches DeePSiM's models through the plugin interface of
``percepmetric.bench.models``.

Imports are read from the source with ``ast``: relative or absolute, at module level or inside
a function, ``from percepmetric import bench`` as well as ``import percepmetric.bench.runner``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import ROOT

PACKAGE = ROOT / "percepmetric"

#: The applications: packages and modules above the core. Everything else is core.
APPLICATIONS = ("bench", "train", "deepsim", "data", "cli", "cli_options", "weights_command", "matrix_command",
                "fid_command", "__main__")
#: Modules that must be in the core (those that exist); a rename that drops one from it fails here.
CORE_MODULES = ("errors", "io", "registry", "devices", "checkpoints", "memory", "stats", "functional", "options",
                "metrics", "nets.backbones", "pairwise")
#: Which application may not import which (bench scores DeePSiM's models through a plugin).
APPLICATION_RULES = {
    "bench": ("deepsim", "train"),
    "train": ("deepsim", "bench"),
    "deepsim": ("bench", "train"),
}


def module_name(path: Path) -> str:
    """``percepmetric/metrics/ssim.py`` -> ``percepmetric.metrics.ssim``; a package's
    ``__init__.py`` is the package itself."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, name: str, is_package: bool = False) -> set[str]:
    """Every module that the source of module ``name`` imports, as absolute dotted names.

    ``from X import a, b`` counts as importing ``X``, ``X.a`` and ``X.b`` (a and b may be
    submodules); relative imports are resolved against ``name`` (a package's ``__init__``
    resolves against the package itself). Calls to ``importlib.import_module("...")`` with a
    constant absolute name count too.
    """
    package = name.split(".") if is_package else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Call) and _called_name(node) == "import_module" and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.add(first.value)
    return found


def _called_name(call: ast.Call) -> str | None:
    """``f`` of ``f(...)`` or of ``a.b.f(...)``."""
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def is_within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def application_of(module: str) -> str | None:
    """The application ``module`` belongs to (``percepmetric.bench.runner`` -> ``bench``), or None: core."""
    for app in APPLICATIONS:
        if is_within(module, f"percepmetric.{app}"):
            return app
    return None


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path) -> set[str]:
    return imported_modules(path.read_text(encoding="utf-8"), name, path.name == "__init__.py")


def violations(importer_filter, forbidden: tuple[str, ...]) -> list[str]:
    """``importer imports target`` for every module chosen by ``importer_filter`` that imports a
    module within one of the ``forbidden`` applications."""
    out = []
    for name, path in modules().items():
        if not importer_filter(name):
            continue
        for target in sorted(imports_of(name, path)):
            if any(is_within(target, f"percepmetric.{app}") for app in forbidden):
                out.append(f"{path.relative_to(ROOT)} imports {target}")
    return out


# ---------------------------------------------------------------- the checker itself

def test_checker_resolves_every_form_of_import():
    source = """
import percepmetric.bench.runner
from percepmetric import deepsim
from ... import cli
from ...data.bapps import to_tensor
from . import sibling


def later():
    from ...train import loop  # inside a function
    import importlib
    importlib.import_module("percepmetric.cli_options")
"""
    found = imported_modules(source, "percepmetric.metrics.sub.mod")
    assert {"percepmetric.bench.runner", "percepmetric.deepsim", "percepmetric.cli", "percepmetric.data.bapps",
            "percepmetric.metrics.sub.sibling", "percepmetric.train.loop", "percepmetric.cli_options"} <= found
    # in a package's __init__, "." is the package itself
    assert "percepmetric.metrics.ssim" in imported_modules("from .ssim import SSIM", "percepmetric.metrics", True)
    assert application_of("percepmetric.cli_options") == "cli_options"
    assert application_of("percepmetric.cli") == "cli" and application_of("percepmetric.clip") is None
    assert application_of("percepmetric.metrics.ssim") is None


def test_the_core_is_what_the_layout_says():
    names = modules()
    core = {name for name in names if application_of(name) is None}
    for expected in CORE_MODULES:
        module = f"percepmetric.{expected}"
        if (PACKAGE / f"{expected.replace('.', '/')}.py").exists() or (PACKAGE / expected).is_dir():
            assert module in core, f"{module} should be core"
    # nets/ holds the metrics' networks only: the LPIPS family's trunks (ImageNet and shift-tolerant)
    # and FID's Inception v3; DeePSiM's networks live in deepsim/, commands beside the CLI
    assert sorted(n for n in names if is_within(n, "percepmetric.nets")) == [
        "percepmetric.nets", "percepmetric.nets.antialiased", "percepmetric.nets.backbones",
        "percepmetric.nets.inception"]
    assert "percepmetric.deepsim.networks" in names


# ---------------------------------------------------------------- the layering

def test_the_core_imports_no_application():
    found = violations(lambda name: application_of(name) is None, APPLICATIONS)
    assert not found, "the core must not import an application:\n" + "\n".join(found)


@pytest.mark.parametrize("application", sorted(APPLICATION_RULES))
def test_applications_do_not_import_each_other(application):
    forbidden = APPLICATION_RULES[application]
    found = violations(lambda name: application_of(name) == application, forbidden)
    assert not found, (f"{application} must not import {' or '.join(forbidden)}:\n" + "\n".join(found))



# ---------------------------------------------------------------- no import cycles

def runtime_tree(source: str) -> ast.Module:
    """The AST of ``source`` without the bodies of ``if TYPE_CHECKING:`` (read by type checkers,
    never run)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and (
                (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
                or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")):
            node.body = [ast.Pass()]
    return tree


def import_graph(sources: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """Module -> the modules of ``sources`` that its statements import when they run, at module
    level or inside a function (``sources``: name -> (source, is_package)).

    ``from X import a`` is an edge to the module ``X.a`` when there is one (``from . import
    sibling``), else to ``X`` (``from percepmetric import create_metric`` runs
    ``percepmetric/__init__.py``). The parent packages Python initialises on the way to a module
    are not edges: every module would then depend on ``percepmetric/__init__.py``, which imports
    the API it re-exports.
    """
    graph: dict[str, set[str]] = {}
    for name, (source, is_package) in sources.items():
        package = name.split(".") if is_package else name.split(".")[:-1]
        targets: set[str] = set()
        for node in ast.walk(runtime_tree(source)):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = (".".join(package[: len(package) - (node.level - 1)] + ([node.module] if node.module else []))
                        if node.level else node.module or "")
                targets.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in sources else base
                               for alias in node.names)
            elif isinstance(node, ast.Call) and _called_name(node) == "import_module" and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    targets.add(first.value)
        graph[name] = {t for t in targets if t in sources and t != name}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle ``[a, b, ..., a]`` through each group of modules that import each other
    (each strongly connected component of more than one module), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def connect(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            components.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return sorted(_cycle_in(graph, component) for component in components if len(component) > 1)


def _cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the first module (by name) of ``component`` (breadth first)."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & component):
                if nxt == start:
                    return paths[node] + [start]
                if nxt not in paths:
                    paths[nxt] = paths[node] + [nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # a strongly connected component always has one


def test_the_cycle_finder_names_each_cycle():
    sources = {
        "p": ("from . import a\nfrom .c import thing", True),
        "p.a": ("from .b import x", False),
        "p.b": ("def later():\n    from . import a\n", False),  # inside a function: it still counts
        "p.c": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import d\nthing = 1", False),
        "p.d": ("from .c import thing", False),  # p.c imports it for type checkers only: no cycle
        "p.e": ("from p import a, thing\nimport importlib\nimportlib.import_module('p.d')", False),
    }
    graph = import_graph(sources)
    assert graph["p"] == {"p.a", "p.c"} and graph["p.c"] == set()
    assert graph["p.e"] == {"p", "p.a", "p.d"}  # thing is not a module: p's __init__ gives it
    assert find_cycles(graph) == [["p.a", "p.b", "p.a"]]
    assert find_cycles({"x": {"y"}, "y": {"z"}, "z": {"x"}, "w": {"x"}}) == [["x", "y", "z", "x"]]


def test_no_module_of_percepmetric_imports_itself_in_a_circle():
    """Modules that import each other (at module level or inside a function) cannot be
    understood, tested or replaced apart, and one of them meets the other half-initialised
    when the import order changes. What two modules share belongs in a third."""
    sources = {name: (path.read_text(encoding="utf-8"), path.name == "__init__.py") for name, path in modules().items()}
    cycles = find_cycles(import_graph(sources))
    assert not cycles, "modules that import each other:\n" + "\n".join(" -> ".join(c) for c in cycles)
