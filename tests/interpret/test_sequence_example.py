"""`interpret.stage.sequence_example` (indexed once per stage) against a direct scan."""

import types

import numpy as np

from seqrec_jax.interpret import dashboards as stage


def _direct(acts, row, history):
  same = np.flatnonzero((acts.rows == acts.rows[row]) & (acts.positions <= acts.positions[row]))
  return list(acts.items[same[np.argsort(acts.positions[same])]][-history:])


def test_history_matches_a_direct_scan_in_any_row_order():
  rng = np.random.default_rng(0)
  rows, positions = [], []
  for r in range(30):
    p = np.sort(rng.choice(16, size=rng.integers(1, 12), replace=False))
    rows += [r] * len(p)
    positions += list(p)
  perm = rng.permutation(len(rows))  # activations need not come sorted
  acts = types.SimpleNamespace(rows=np.asarray(rows)[perm], positions=np.asarray(positions)[perm],
                               items=rng.integers(1, 50, len(rows)), users=np.asarray(rows)[perm])
  dataset = types.SimpleNamespace(
      interactions=types.SimpleNamespace(user_ids=np.asarray([f"u{i}" for i in range(30)])),
      attributes=types.SimpleNamespace(titles=np.asarray([f"t{i}" for i in range(50)])))
  index = stage.history_index(acts)
  for row in range(len(rows)):
    example = stage.sequence_example(dataset, acts, index, row, 5)
    assert example["items"] == [f"t{i}" for i in _direct(acts, row, 5)]
    assert example["position"] == acts.positions[row]
    assert example["user"] == f"u{acts.rows[row]}"
