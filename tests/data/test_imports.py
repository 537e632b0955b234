"""The data package's modules import one another without cycles (read statically)."""

from __future__ import annotations

import ast
import pathlib

import seqrec_jax.data

PACKAGE = pathlib.Path(seqrec_jax.data.__file__).parent


def _imports(path: pathlib.Path) -> set[str]:
  """Modules of `seqrec_jax.data` that a file imports anywhere (functions included)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module:
      found.add(node.module)
      found |= {f"{node.module}.{a.name}" for a in node.names}
    elif isinstance(node, ast.Import):
      found |= {a.name for a in node.names}
  return {m for m in found if m.startswith("seqrec_jax.data")}


def test_no_import_cycles_in_data_package():
  modules = {("seqrec_jax.data" if p.stem == "__init__" else f"seqrec_jax.data.{p.stem}"): p
             for p in PACKAGE.glob("*.py")}
  graph = {m: _imports(p) & set(modules) - {m} for m, p in modules.items()}
  # Depth-first search; a module met again on the current path closes a cycle.
  state: dict[str, int] = {}

  def visit(m: str, path: list[str]) -> None:
    state[m] = 1
    for n in sorted(graph[m]):
      assert state.get(n) != 1, "import cycle: " + " -> ".join(path[path.index(n):] + [m, n])
      if n not in state:
        visit(n, path + [m])
    state[m] = 2

  for m in sorted(graph):
    if m not in state:
      visit(m, [])


def test_public_names_are_unchanged():
  for name in ("PAD_TOKEN", "Dataset", "Interactions", "ItemAttributes", "build_attributes",
               "build_interactions", "default_data_dir", "item_text", "read_attribute_csv",
               "DATASETS", "load_dataset", "make_synthetic", "make_synthetic_with_truth"):
    assert hasattr(seqrec_jax.data, name), name
