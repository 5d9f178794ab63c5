"""`import pimm` must stay framework-level: no lib, no tools, no torch; and its subpackages import
each other in one direction only."""
import ast
import os
import subprocess
import sys
from typing import Dict, Set

PIMM = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pimm")


def test_import_pimm_pulls_in_nothing_cream_specific():
    code = (
        "import sys, pimm, pimm.layers, pimm.models, pimm.data, pimm.loss, pimm.optim, "
        "pimm.scheduler, pimm.utils, pimm.deploy\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('lib', 'tools', 'torch', 'timm'))\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"pimm imported {out.stdout.strip()}"


def _subpackage_imports() -> Dict[str, Set[str]]:
    """For each subpackage of pimm, the other subpackages its modules import (anywhere in a
    module, function-level imports included)."""
    graph: Dict[str, Set[str]] = {}
    for root, _, files in os.walk(PIMM):
        relative = os.path.relpath(root, PIMM)
        if relative == ".":
            continue
        own = relative.split(os.sep)[0]
        package = ["pimm"] + relative.split(os.sep)
        for name in (f for f in files if f.endswith(".py")):
            with open(os.path.join(root, name), encoding="utf-8") as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    targets = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    base = package[:len(package) - node.level + 1] if node.level else []
                    module = ".".join(base + ([node.module] if node.module else []))
                    targets = [module] if node.module else [f"{module}.{a.name}" for a in node.names]
                else:
                    continue
                for target in targets:
                    parts = target.split(".")
                    if parts[0] == "pimm" and len(parts) > 1 and parts[1] != own:
                        graph.setdefault(own, set()).add(parts[1])
    return graph


def test_pimm_subpackages_have_no_import_cycles():
    graph = _subpackage_imports()
    assert graph.get("layers") and "utils" in graph["layers"]  # the walk sees imports at all
    assert "layers" in graph.get("deploy", set())
    done: Set[str] = set()

    def visit(node: str, path: list) -> None:
        if node in path:
            cycle = path[path.index(node):] + [node]
            raise AssertionError("import cycle between pimm subpackages: " + " -> ".join(cycle))
        if node in done:
            return
        for child in sorted(graph.get(node, ())):
            visit(child, path + [node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])
