"""Deterministic batches of activation rows, resumable from the step number alone."""

from __future__ import annotations


import jax
import numpy as np

from seqrec_jax.core import errors



class ActivationBatches:
  """Deterministic batches of rows of `values[N, d]` restricted to `rows`.

  Step t reads batch `t % steps_per_epoch` of the permutation of epoch `t // steps_per_epoch`
  (seeded by `(seed, epoch)`), so the data position is the step number alone. Each process
  returns its slice of the global batch; rows are read in sorted order (memmap friendly).
  """

  def __init__(self, values, rows: np.ndarray, global_batch_size: int, seed: int):
    self.values = values
    self.rows = np.asarray(rows, np.int64)
    self.global_batch_size = global_batch_size
    self.seed = seed
    if global_batch_size > len(self.rows):
      raise errors.ConfigError(
          f"SAE batch size {global_batch_size} exceeds the {len(self.rows)} training activations",
          field="sae.batch_size", hint=f"set it to at most {len(self.rows)}")
    count = jax.process_count()
    if global_batch_size % count:
      raise ValueError(f"SAE batch {global_batch_size} not divisible by {count} processes")
    self.steps_per_epoch = len(self.rows) // global_batch_size
    self._epoch, self._perm = -1, None

  def _permutation(self, epoch: int) -> np.ndarray:
    if epoch != self._epoch:
      self._epoch = epoch
      self._perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.rows))
    return self._perm

  def batch(self, step: int) -> dict[str, np.ndarray]:
    epoch, i = divmod(step, self.steps_per_epoch)
    b = self.global_batch_size
    index = self.rows[self._permutation(epoch)[i * b : (i + 1) * b]]
    local = b // jax.process_count()
    p = jax.process_index()
    index = np.sort(index[p * local : (p + 1) * local])
    return {"x": np.asarray(self.values[index], np.float32)}
