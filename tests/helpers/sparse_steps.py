"""Dense and lazy-Adam sampled-softmax steps side by side, on a catalogue every batch covers.

`python -m tests.helpers.sparse_steps MODE [CLIP]` prints, as JSON, both runs' losses and the
largest difference of their parameters after `STEPS` steps; tests/recommender/test_sparse_items.py
imports `run` for one device and starts this module in a subprocess (XLA_FLAGS giving the CPU
several devices) for pmap and mesh.
"""

import json
import sys

import jax
import numpy as np
import optax

from seqrec_jax.core import sparse_rows, training
from seqrec_jax.recommender import losses, sparse_items
from seqrec_jax.recommender import train as recommender_train
from seqrec_jax.recommender.model import ModelConfig, init_params

NUM_ITEMS, STEPS, NEGATIVES, LR = 40, 5, 16, 1e-2
MODEL = ModelConfig(kind="sasrec", num_items=NUM_ITEMS, max_len=8, hidden_dim=16, num_blocks=1,
                    num_heads=2, mlp_dim=32, dropout_rate=0.1)


def covering_batches(seed: int = 0, batch_size: int = 8):
  """Batches whose inputs and labels hold every item id (and some padding)."""
  rng = np.random.default_rng(seed)
  for _ in range(STEPS):
    ids = rng.integers(1, NUM_ITEMS, (batch_size, MODEL.max_len + 1)).astype(np.int32)
    ids[0, :2] = 0
    ids.reshape(-1)[-(NUM_ITEMS - 1):] = rng.permutation(np.arange(1, NUM_ITEMS))
    yield {"input_ids": ids[:, :-1], "labels": ids[:, 1:]}


def _train(mode: str, fns: training.StepFns):
  parallel = training.Parallel(mode)
  step = parallel.compile(fns, donate=False)
  state = parallel.put_state(
      training.create_train_state(init_params(MODEL, jax.random.PRNGKey(0)), fns.tx, seed=0))
  out = []
  for batch in covering_batches():
    state, metrics = step(state, parallel.put_batch(batch))
    out.append(parallel.get_metrics(metrics)["loss"])
  return out, parallel.host_state(state).params


def run(mode: str, clip: float = 0.0) -> dict:
  dense_tx = optax.adam(LR)
  if clip:
    dense_tx = optax.chain(optax.clip_by_global_norm(clip), dense_tx)
  lazy_tx = sparse_rows.SparseRowsOptimizer(dense=optax.adam(LR), rows=sparse_rows.LazyAdam(LR),
                                            path=sparse_items.TABLE_PATH, clip_norm=clip)
  loss = losses.make_item_loss("sampled", num_negatives=NEGATIVES)
  dense_losses, dense_params = _train(mode, recommender_train.make_step_fns(MODEL, dense_tx, loss))
  lazy_losses, lazy_params = _train(
      mode, sparse_items.make_step_fns(MODEL, lazy_tx, num_negatives=NEGATIVES))
  flat_dense = dict(jax.tree_util.tree_leaves_with_path(dense_params))
  differences = {jax.tree_util.keystr(path): float(np.max(np.abs(value - flat_dense[path])))
                 for path, value in jax.tree_util.tree_leaves_with_path(lazy_params)}
  return {"devices": jax.device_count(), "dense": dense_losses, "lazy": lazy_losses,
          "max_abs_difference": differences}


if __name__ == "__main__":
  print(json.dumps(run(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.0)))
