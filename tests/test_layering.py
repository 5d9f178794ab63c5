"""The layering of docs/DEVELOPING.md: pimm <- lib.models <- lib.search <- lib.engine <- tools.

`import pimm` must stay framework-level (no lib, no tools, no torch), and lib's subpackages import
each other one way only. The import graph is read from the source (every ``import`` statement,
function-level ones included), so an import moved into a function cannot hide a circle.
"""
import ast
import os
import subprocess
import sys
from typing import Dict, List, Set

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_import_pimm_pulls_in_nothing_cream_specific():
    code = (
        "import sys, pimm, pimm.layers, pimm.models, pimm.data, pimm.loss, pimm.optim, "
        "pimm.scheduler, pimm.utils\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('lib', 'tools', 'torch', 'timm'))\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"pimm imported {out.stdout.strip()}"


def _module_name(path: str) -> str:
    parts = os.path.relpath(path, ROOT)[:-len(".py")].split(os.sep)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(package: str) -> Dict[str, Set[str]]:
    """Every module of ``package`` -> the modules its import statements name (anywhere in it)."""
    graph: Dict[str, Set[str]] = {}
    for folder, _, files in os.walk(os.path.join(ROOT, package)):
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(folder, name)
            module = _module_name(path)
            is_package = name == "__init__.py"
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read(), path)
            targets = set()
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    targets.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom):
                    if node.level:  # relative: resolve against this module's package
                        base = module.split(".")
                        base = base[:len(base) - node.level + (1 if is_package else 0)]
                        target = ".".join(base + ([node.module] if node.module else []))
                    else:
                        target = node.module
                    targets.add(target)
            graph[module] = targets
    return graph


def _unit(module: str) -> str:
    """``lib.models.supernet`` -> ``lib.models``; top-level modules (``lib.config``) are units."""
    return ".".join(module.split(".")[:2])


def _cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One cycle of ``graph`` (a list of nodes, first == last), or [] when it has none."""
    state: Dict[str, int] = {}  # 1 on the current path, 2 done
    path: List[str] = []

    def visit(node: str) -> List[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def test_pimm_never_imports_lib_or_tools():
    offenders = {module: sorted(t for t in targets if t.split(".")[0] in ("lib", "tools"))
                 for module, targets in _imports("pimm").items()}
    assert not {m: t for m, t in offenders.items() if t}


def test_lib_never_imports_tools_and_its_subpackages_form_no_circle():
    graph = _imports("lib")
    assert not {m: sorted(t) for m, t in graph.items() if any(x.split(".")[0] == "tools" for x in t)}
    units: Dict[str, Set[str]] = {}
    for module, targets in graph.items():
        deps = {_unit(t) for t in targets if t.split(".")[0] == "lib" and _unit(t) != _unit(module)}
        units.setdefault(_unit(module), set()).update(deps)
    assert _cycle(units) == [], "lib's subpackages import each other in a circle"
    # lib.search sits above lib.models: the search space and FLOPs table are the models'
    assert "lib.search" not in units["lib.models"] and "lib.engine" not in units["lib.models"]
    assert "lib.engine" not in units["lib.search"]
    modules = {m: {t for t in targets if t in graph} for m, targets in graph.items()}
    assert _cycle(modules) == [], "lib's modules import each other in a circle"


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_pimm_subpackages_form_no_circle():
    graph = _imports("pimm")
    units: Dict[str, Set[str]] = {}
    for module, targets in graph.items():
        deps = {_unit(t) for t in targets if t.split(".")[0] == "pimm" and _unit(t) != _unit(module)}
        units.setdefault(_unit(module), set()).update(deps)
    assert "pimm.utils" in units["pimm.layers"]  # the walk sees imports at all
    assert _cycle(units) == [], "pimm's subpackages import each other in a circle"
