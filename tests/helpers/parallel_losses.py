"""Run 10 SASRec train steps in one compilation mode and print the losses as JSON.

Used by tests/core/test_training.py in a subprocess, so that XLA_FLAGS can give the CPU N devices
before jax is imported: `python -m tests.helpers.parallel_losses MODE [DROPOUT]`.
"""

import json
import sys

import jax
import numpy as np
import optax

from seqrec_jax.recommender import train as recommender_train
from seqrec_jax.core import training
from seqrec_jax.recommender.model import ModelConfig, init_params


def losses(mode: str, steps: int = 10, dropout: float = 0.0) -> list[float]:
  cfg = ModelConfig(kind="sasrec", num_items=60, max_len=10, hidden_dim=16, num_blocks=1,
                    num_heads=2, mlp_dim=32, dropout_rate=dropout)
  tx = optax.adam(1e-2)
  parallel = training.Parallel(mode)
  step = parallel.compile(recommender_train.make_step_fns(cfg, tx))
  state = parallel.put_state(
      training.create_train_state(init_params(cfg, jax.random.PRNGKey(0)), tx, seed=0))
  rng = np.random.default_rng(0)
  out = []
  for _ in range(steps):
    ids = rng.integers(1, 60, (8, 11)).astype(np.int32)
    ids[:, : rng.integers(0, 9)] = 0  # uneven padding: per-device token counts differ
    ids[:2, :9] = 0
    batch = {"input_ids": ids[:, :-1], "labels": ids[:, 1:]}
    state, metrics = step(state, parallel.put_batch(batch))
    out.append(parallel.get_metrics(metrics)["loss"])
  return out


if __name__ == "__main__":
  dropout = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
  print(json.dumps({"devices": jax.device_count(), "losses": losses(sys.argv[1], dropout=dropout)}))
