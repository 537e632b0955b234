"""The package's imports, read statically: no module imports one that imports it back, and the
folders import one way (README "Layout")."""

from __future__ import annotations

import ast
import pathlib

import seqrec_jax

PACKAGE = pathlib.Path(seqrec_jax.__file__).parent
# Each folder (or top-level module) may import only itself and those before it.
FLOORS = ("core", "data", "recommender", "sae", "interpret", "steer", "workdir", "stages",
          "serve")


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: pathlib.Path) -> set[str]:
  """Package modules a file imports anywhere (`from a import b` counts `a` and `a.b`)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module:
      found.add(node.module)
      found |= {f"{node.module}.{a.name}" for a in node.names}
    elif isinstance(node, ast.Import):
      found |= {a.name for a in node.names}
  return found & set(MODULES)


GRAPH = {m: _imports(p) - {m} for m, p in MODULES.items()}


def test_no_module_imports_one_that_imports_it_back():
  state: dict[str, int] = {}

  def visit(m: str, path: list[str]) -> None:  # `path` ends with m
    state[m] = 1
    for n in sorted(GRAPH[m]):
      assert state.get(n) != 1, "import cycle: " + " -> ".join(path[path.index(n):] + [n])
      if n not in state:
        visit(n, path + [n])
    state[m] = 2

  for m in sorted(GRAPH):
    if m not in state:
      visit(m, [m])


def _floor(module: str) -> int | None:
  parts = module.split(".")
  return FLOORS.index(parts[1]) if len(parts) > 1 and parts[1] in FLOORS else None


def test_folders_import_downwards_only():
  upward = [(m, n) for m, imported in GRAPH.items() for n in imported
            if _floor(m) is not None and _floor(n) is not None and _floor(n) > _floor(m)]
  assert not upward, upward
