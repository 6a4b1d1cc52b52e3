"""ubench's modules form layers, and imports point down them (docs/architecture.md, "Layers").

Every module under ``ubench/`` is parsed with ``ast`` (nothing is imported) and each of its
import statements that names a ubench module becomes an edge of the module graph: imports at the
top, inside functions and under ``if TYPE_CHECKING:`` alike. Then:

(a) no import cycle between modules (the failure shows the cycle's path);
(b) no import from a lower layer to a higher one (``LAYERS``, declared once, below);
(c) every module has a layer, so a new module fails here until it is placed in the table (and
    every entry of the table still names a module).

What is an edge:

- ``import ubench.a.b``, ``from ubench.a import b`` (``b`` a module) and ``from ubench.a.b import
  name`` are edges to ``ubench.a.b``; ``from ubench.a import name`` (not a module) is an edge to
  the package ``ubench.a`` itself (its ``__init__``). Relative imports are resolved the same way.
- Importing ``ubench.a.b`` also runs ``ubench/a/__init__.py`` first; that implicit import is not an
  edge. So a package ``__init__`` re-exporting its own submodules (``models/__init__.py``) is no
  cycle, while a submodule that imports a name from its package's ``__init__`` that the
  ``__init__`` imports from that submodule is one (it breaks depending on import order).
- ``TYPE_CHECKING`` imports never run, so they cannot form an import-time cycle (importing a type
  only for an annotation is the usual way out of one) and are left out of (a). They do count for
  (b): a lower layer that names a higher layer's types depends on it all the same.
- Imports by name at run time are not seen: ``models/registry.py`` imports each model file and
  ``data/converters/__init__.py`` each converter (plugin discovery, inside their own package).

Within a layer imports may point either way; (a) still forbids cycles there.
"""

from __future__ import annotations

import ast
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# Lowest first. Entries are module names relative to the package: an entry covers that module and,
# for a package, everything under it ("models" is the registry, ops/ and every model file).
# "__init__" is the package ``ubench`` itself (``ubench/__init__.py``: the version).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("core", ("__init__", "errors", "names", "paths", "io", "runtime", "output_guard")),
    ("domain", ("models", "data", "metrics")),
    ("config", ("config",)),
    ("components", ("checkpoint", "inference", "efficiency", "analysis", "ubench_weights", "ubench_keymap",
                    "stage_sources")),
    ("work", ("train", "evaluate", "advisor")),
    ("application", ("pipeline", "model_table", "verify", "publish", "dvc_files", "scratch", "grid")),
    ("entry", ("cli", "cli_tools", "__main__")),
)


@dataclass
class Edge:
    line: int  # of the first import statement that makes it
    type_only: bool  # every import making it is under ``if TYPE_CHECKING:``


@dataclass
class Graph:
    package: str
    root: Path  # the package's folder
    files: dict[str, Path] = field(default_factory=dict)  # module -> its file
    edges: dict[str, dict[str, Edge]] = field(default_factory=dict)  # importer -> imported -> Edge

    def rel(self, module: str) -> str:
        """``module`` relative to the package, as LAYERS writes it ("__init__" for the package)."""
        return "__init__" if module == self.package else module[len(self.package) + 1:]


def _module_name(package_dir: Path, package: str, path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(package_dir).with_suffix("").parts)
    is_init = parts[-1] == "__init__"
    if is_init:
        parts = parts[:-1]
    return ".".join([package, *parts]), is_init


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, type_only: bool = False):
    """(node, type_only) of every Import/ImportFrom in ``tree``, functions and branches included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, type_only
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                yield from _imports_in(child, True)
            for child in node.orelse:
                yield from _imports_in(child, type_only)
        else:
            yield from _imports(node, type_only)


def _imports_in(node: ast.AST, type_only: bool):
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node, type_only
    else:
        yield from _imports(node, type_only)


def import_graph(package_dir: Path, package: str) -> Graph:
    """The graph of ``package``'s internal imports, from the source files under ``package_dir``."""
    g = Graph(package, package_dir)
    inits = set()
    for path in sorted(package_dir.rglob("*.py")):
        name, is_init = _module_name(package_dir, package, path)
        g.files[name] = path
        if is_init:
            inits.add(name)

    def resolve(dotted: str) -> str | None:
        """The longest known module that ``dotted`` names or lies in (None: not ours)."""
        while dotted and dotted not in g.files:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    for name, path in g.files.items():
        here = name if name in inits else name.rpartition(".")[0]  # the package it sits in
        out: dict[str, Edge] = {}
        for node, type_only in _imports(ast.parse(path.read_text(), filename=str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in g.files else module
                           for a in node.names]
            for target in targets:
                if not (target == package or target.startswith(package + ".")):
                    continue
                dst = resolve(target)
                if dst is None or dst == name:
                    continue
                if dst in out:
                    out[dst].type_only = out[dst].type_only and type_only
                else:
                    out[dst] = Edge(node.lineno, type_only)
        g.edges[name] = out
    return g


def find_cycles(g: Graph) -> list[list[str]]:
    """One cycle (a path that returns to its start) per group of mutually importing modules,
    over the imports that run (TYPE_CHECKING ones left out)."""
    succ = {m: sorted(d for d, e in g.edges[m].items() if not e.type_only) for m in g.edges}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def strongconnect(v: str) -> None:  # Tarjan; the graph is small enough for recursion
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in succ[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(succ):
        if v not in index:
            strongconnect(v)

    cycles = []
    for group in sorted(groups):
        start, members = group[0], set(group)
        parent: dict[str, str] = {}
        queue = deque([start])
        while queue:  # breadth first: the shortest way from start back to start inside the group
            v = queue.popleft()
            if start in succ[v]:
                path = [v]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                cycles.append([*reversed(path), start])
                break
            for w in succ[v]:
                if w in members and w != start and w not in parent:
                    parent[w] = v
                    queue.append(w)
    return cycles


def layer_of(g: Graph, module: str, layers) -> tuple[int, str] | None:
    """(rank, name) of the layer whose longest entry covers ``module``; None if none does."""
    rel = g.rel(module)
    best = None
    for rank, (layer, entries) in enumerate(layers):
        for entry in entries:
            if rel == entry or (entry != "__init__" and rel.startswith(entry + ".")):
                if best is None or len(entry) > best[0]:
                    best = (len(entry), rank, layer)
    return None if best is None else best[1:]


def unplaced_modules(g: Graph, layers) -> list[str]:
    return [m for m in sorted(g.files) if layer_of(g, m, layers) is None]


def stale_entries(g: Graph, layers) -> list[str]:
    modules = [g.rel(m) for m in g.files]
    return [e for _, entries in layers for e in entries
            if not any(r == e or (e != "__init__" and r.startswith(e + ".")) for r in modules)]


def upward_imports(g: Graph, layers) -> list[str]:
    out = []
    for src in sorted(g.edges):
        low = layer_of(g, src, layers)
        for dst, edge in sorted(g.edges[src].items()):
            high = layer_of(g, dst, layers)
            if low is not None and high is not None and high[0] > low[0]:
                where = g.files[src].relative_to(g.root.parent).as_posix()
                out.append(f"{src} (layer {low[1]}) imports {dst} (layer {high[1]}) at "
                           f"{where}:{edge.line}" + (" under TYPE_CHECKING" if edge.type_only else ""))
    return out


def check(package_dir: Path, package: str, layers) -> dict[str, list[str]]:
    """Every problem found, by kind: "cycle", "upward", "unplaced", "stale"."""
    g = import_graph(package_dir, package)
    return {
        "cycle": [" -> ".join(c) for c in find_cycles(g)],
        "upward": upward_imports(g, layers),
        "unplaced": unplaced_modules(g, layers),
        "stale": stale_entries(g, layers),
    }


# --- ubench ---------------------------------------------------------------------------------------

def _ubench() -> dict[str, list[str]]:
    return check(REPO_ROOT / "ubench", "ubench", LAYERS)


def test_every_module_has_a_layer():
    found = _ubench()
    assert not found["unplaced"], (
        "modules with no layer: place each in LAYERS of tests/test_layers.py (and in "
        f"docs/architecture.md, Layers): {found['unplaced']}")
    assert not found["stale"], f"LAYERS entries that name no module of ubench: {found['stale']}"


def test_no_import_cycle():
    cycles = _ubench()["cycle"]
    assert not cycles, "import cycles between ubench modules:\n  " + "\n  ".join(cycles)


def test_imports_point_down_the_layers():
    upward = _ubench()["upward"]
    assert not upward, "imports from a lower layer to a higher one:\n  " + "\n  ".join(upward)


def test_the_graph_sees_imports_inside_functions():
    """The checker is not blind to ubench's lazy imports (pipeline imports each stage's module
    inside the stage's function)."""
    g = import_graph(REPO_ROOT / "ubench", "ubench")
    assert {"ubench.train", "ubench.evaluate", "ubench.data.prepare"} <= set(g.edges["ubench.pipeline"])
    assert "ubench.inference" in g.edges["ubench.evaluate"]


# --- the checker itself, on a package made to fail -------------------------------------------------

def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_checker_reports_a_cycle_an_upward_import_and_an_unplaced_module(tmp_path):
    _write(tmp_path / "pkg", {
        "__init__.py": "",
        "low.py": "def f():\n    from pkg import high  # upward, hidden in a function\n",
        "high.py": "from pkg.mid import x\n",
        "mid.py": "x = 1\n\ndef g():\n    from . import high  # back to high: a cycle\n",
        # a package __init__ re-exporting its submodules, which import each other: allowed
        "sub/__init__.py": "from pkg.sub.a import A\nfrom pkg.sub.b import B\n",
        "sub/a.py": "A = 1\n",
        "sub/b.py": "from pkg.sub.a import A\nB = A\n",
        # a type-only import: counts for layers, not for cycles
        "typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.high import x\n",
        "orphan.py": "",
    })
    layers = (("bottom", ("__init__", "low", "sub", "typed", "gone")), ("top", ("high", "mid")))
    found = check(tmp_path / "pkg", "pkg", layers)

    assert found["cycle"] == ["pkg.high -> pkg.mid -> pkg.high"]
    assert any(u.startswith("pkg.low (layer bottom) imports pkg.high (layer top) at pkg/low.py:2")
               for u in found["upward"]), found["upward"]
    assert any(u.startswith("pkg.typed (layer bottom) imports pkg.high") and u.endswith("TYPE_CHECKING")
               for u in found["upward"]), found["upward"]
    assert len(found["upward"]) == 2  # pkg.sub's re-exports and its a <- b import are fine
    assert found["unplaced"] == ["pkg.orphan"]
    assert found["stale"] == ["gone"]


def test_checker_cycle_through_a_package_init_is_reported(tmp_path):
    """A submodule importing a name from its package's __init__, which imports that submodule:
    a real cycle (the name may not exist yet, depending on import order)."""
    _write(tmp_path / "pkg", {
        "__init__.py": "from pkg.a import A\nB = 2\n",
        "a.py": "from pkg import B\nA = B\n",
    })
    found = check(tmp_path / "pkg", "pkg", (("all", ("__init__", "a")),))
    assert found["cycle"] == ["pkg -> pkg.a -> pkg"]
    assert found["upward"] == found["unplaced"] == found["stale"] == []


def test_checker_type_only_cycle_is_allowed(tmp_path):
    _write(tmp_path / "pkg", {
        "__init__.py": "",
        "a.py": "import pkg.b\n",
        "b.py": "import typing\nif typing.TYPE_CHECKING:\n    from pkg.a import A\nelse:\n    pass\n",
    })
    assert check(tmp_path / "pkg", "pkg", (("all", ("__init__", "a", "b")),))["cycle"] == []
