"""Hidden states of one named layer at every real position of a set of sequences.

`capture_activations` runs the recommender with `capture_intermediates` filtered on the layer's
module path (e.g. `blocks_0`, `blocks_0/attention`, `blocks_0/mlp`, `final_norm`; see
`models.layer_names`), jitted, over fixed-shape batches of sequences (the last one padded). Each
sequence contributes the last `L = max_len` items, right-aligned as in `input_pipeline` (for
BERT4Rec the plain sequence, no mask token). The result is a dense `[N, d]` float32 array plus
index arrays, one entry per non-padding position, in (sequence, position) order. When `N * d * 4`
bytes exceed a memory budget the values are streamed into a memory-mapped `.npy` file on disk.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import tempfile

import jax
import numpy as np
from absl import logging

from seqrec_jax.recommender.input_pipeline import right_align
from seqrec_jax.recommender.model import PAD_ID, ModelConfig, layer_names, make_model
from seqrec_jax.data.splits import Sequences


@dataclasses.dataclass(frozen=True)
class Activations:
  """Activations of `layer` and what they belong to; all arrays have N rows."""

  values: np.ndarray  # float32 [N, d] (np.ndarray or read-only np.memmap)
  users: np.ndarray  # int64 [N] user id (row of `Interactions`)
  rows: np.ndarray  # int64 [N] index of the sequence in the `Sequences` captured
  positions: np.ndarray  # int32 [N] column in the right-aligned [L] window (L-1 = most recent)
  items: np.ndarray  # int32 [N] input item at that position
  next_items: np.ndarray  # int32 [N] the sequence's next item (0 after its last item)
  layer: str

  def __len__(self) -> int:
    return len(self.users)

  def subset(self, index: np.ndarray) -> Activations:
    """The rows `index` (values copied into memory)."""
    index = np.asarray(index)
    return Activations(
        np.asarray(self.values[index], np.float32), self.users[index], self.rows[index],
        self.positions[index], self.items[index], self.next_items[index], self.layer)


def layer_path(layer: str) -> tuple[str, ...]:
  """`"blocks_0/mlp"` (or `"blocks_0/mlp/__call__"`) -> `("blocks_0", "mlp")`."""
  parts = tuple(p for p in layer.split("/") if p)
  if parts and parts[-1] == "__call__":
    parts = parts[:-1]
  if not parts:
    raise ValueError(f"empty layer name {layer!r}")
  return parts


def check_layer(model_cfg: ModelConfig, layer: str) -> str:
  name = "/".join(layer_path(layer))
  if name not in layer_names(model_cfg):
    raise ValueError(f"unknown layer {layer!r}; capturable layers: {layer_names(model_cfg)}")
  return name


@functools.partial(jax.jit, static_argnames=("model_cfg", "layer"))
def layer_output(params, input_ids: jax.Array, *, model_cfg: ModelConfig, layer: str) -> jax.Array:
  """Output `[B, L, d]` of `layer` for `input_ids[B, L]` (via `capture_intermediates`)."""
  path = layer_path(layer)
  model = make_model(model_cfg)
  _, state = model.apply(
      {"params": params}, input_ids, mutable=["intermediates"],
      capture_intermediates=lambda mdl, method: method == "__call__" and mdl.path == path,
  )
  node = state["intermediates"]
  for name in path:
    node = node[name]
  return node["__call__"][0]


def sequence_windows(seqs: Sequences, max_len: int) -> np.ndarray:
  """int32 `[n, L]`: the last L items of every sequence, right-aligned (0 = padding)."""
  out = np.zeros((len(seqs), max_len), np.int32)
  for i in range(len(seqs)):
    out[i] = right_align(seqs[i], max_len)
  return out


def _index_arrays(seqs: Sequences, max_len: int):
  lengths = seqs.lengths
  kept = np.minimum(lengths, max_len)
  n = int(kept.sum())
  rows = np.repeat(np.arange(len(seqs), dtype=np.int64), kept)
  starts = np.repeat(np.cumsum(kept) - kept, kept)
  t = np.arange(n) - starts  # 0..kept-1 within the window
  positions = (max_len - np.repeat(kept, kept) + t).astype(np.int32)
  index_in_seq = np.repeat(lengths - kept, kept) + t  # index into the full sequence
  flat = seqs.offsets[rows] + index_in_seq
  items = seqs.items[flat].astype(np.int32)
  has_next = index_in_seq + 1 < np.repeat(lengths, kept)
  next_items = np.where(has_next, seqs.items[np.minimum(flat + 1, len(seqs.items) - 1)], PAD_ID)
  return rows, seqs.users[rows].astype(np.int64), positions, items, next_items.astype(np.int32)


def capture_activations(
    params, model_cfg: ModelConfig, seqs: Sequences, layer: str, *, batch_size: int = 256,
    memory_budget_bytes: int = 2 << 30, out_dir: str | pathlib.Path | None = None,
) -> Activations:
  """Activations of `layer` at every real position of the last `max_len` items of `seqs`.

  Args:
    params: recommender parameters.
    model_cfg: its config.
    seqs: the sequences (e.g. `split.sae` or `split.test_sequences`).
    layer: a name from `models.layer_names(model_cfg)`.
    batch_size: sequences per forward pass (fixed shape; the last batch is padded).
    memory_budget_bytes: above this size, values go to `out_dir/values.npy` (memory-mapped) and
      the index arrays to `out_dir/index.npz`; `out_dir=None` then uses a fresh temp directory.
    out_dir: see above.
  Returns:
    `Activations` with `values[N, d]` float32.
  """
  layer = check_layer(model_cfg, layer)
  rows, users, positions, items, next_items = _index_arrays(seqs, model_cfg.max_len)
  n, d = len(rows), model_cfg.hidden_dim
  if n * d * 4 > memory_budget_bytes:
    if out_dir is None:
      out_dir = tempfile.mkdtemp(prefix="seqrec_activations_")
    out_dir = pathlib.Path(out_dir)
    if jax.process_count() > 1:  # every process captures all positions; never share one file
      out_dir = out_dir / f"process_{jax.process_index()}"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "values.npy"
    logging.info("activations: %d x %d float32 (%.1f MB) over the budget; streaming to %s",
                 n, d, n * d * 4 / 1e6, path)
    values = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
  else:
    path, values = None, np.empty((n, d), np.float32)

  windows = sequence_windows(seqs, model_cfg.max_len)
  filled = 0
  for start in range(0, len(windows), batch_size):
    ids = windows[start : start + batch_size]
    count = len(ids)
    if count < batch_size:
      ids = np.concatenate([ids, np.zeros((batch_size - count, ids.shape[1]), np.int32)])
    out = np.asarray(jax.device_get(layer_output(params, ids, model_cfg=model_cfg, layer=layer)))
    real = ids[:count] != PAD_ID
    block = out[:count][real]  # row-major: (sequence, position), as the index arrays
    values[filled : filled + len(block)] = block
    filled += len(block)
  if filled != n:
    raise AssertionError(f"captured {filled} positions, expected {n}")

  if path is not None:
    values.flush()
    del values
    np.savez(out_dir / "index.npz", users=users, rows=rows, positions=positions, items=items,
             next_items=next_items, layer=np.asarray(layer))
    values = np.load(path, mmap_mode="r")
  return Activations(values, users, rows, positions, items, next_items, layer)


def load_activations(out_dir: str | pathlib.Path) -> Activations:
  """Activations streamed to `out_dir` by `capture_activations` (values memory-mapped)."""
  out_dir = pathlib.Path(out_dir)
  index = np.load(out_dir / "index.npz")
  values = np.load(out_dir / "values.npy", mmap_mode="r")
  return Activations(values, index["users"], index["rows"], index["positions"], index["items"],
                     index["next_items"], str(index["layer"]))
