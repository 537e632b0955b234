"""Sampled-softmax training whose item-table update touches only the rows a step uses.

`config.train.item_optimizer = "lazy_adam"` (with `train.loss = "sampled"`): each step gathers
the rows of its input items, labels and sampled negatives (`step_rows`, at most
`B L + B L + S + 1` of them, a static size), runs the model and the sampled softmax on those
`[R, d]` rows with ids renumbered into them, and updates only them with lazy Adam
(`core.sparse_rows`, whose docstring gives the exact semantics). Nothing of the table's size is
computed per step except the in-place scatters of the rows into the table and its two moments,
so the step time does not grow with the catalogue. The rest of the model uses `optax.adam`.

With the same seed, the dropout masks and (uniform) negatives equal those of the dense step
(`stage.make_step_fns`), so where every step uses every row the two runs are the same.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from seqrec_jax.core import sparse_rows, training
from seqrec_jax.recommender import losses
from seqrec_jax.recommender.model import (
  PAD_ID,
  ModelConfig,
  SequentialRecommender,
  make_model,
)

TABLE_PATH = ("item_embedding", "embedding")


def _keys(rng):
  """`(dropout_rng, loss_rng)`, split as in `stage.make_step_fns`."""
  return jax.random.split(rng)


def make_negative_sampler(num_negatives: int, num_items: int, log_q: jax.Array | None):
  """`rng -> [S]` negative ids. Popularity sampling draws by inverse CDF (`O(S log V)`; the
  dense path's `jax.random.categorical` draws `S x V` Gumbel numbers): the same distribution as
  `losses.sample_negatives`, other draws."""
  if log_q is None:
    return lambda rng: losses.draw_negatives(rng, num_negatives, num_items, None)
  cdf = jnp.cumsum(jnp.exp(log_q))

  def sample(rng):
    u = jax.random.uniform(rng, (num_negatives,), maxval=cdf[-1])
    ids = jnp.searchsorted(cdf, u, side="right").astype(jnp.int32)
    return jnp.clip(ids, 1, num_items - 1)  # log_q[0] = -inf: never the padding id

  return sample


def step_rows(batch: dict, negatives: jax.Array, vocab_size: int) -> jax.Array:
  """Sorted unique ids `[R]` of the padding row, the batch's inputs and labels and the negatives,
  padded with `vocab_size` (dropped by gathers and scatters); `R = min(count, vocab_size)`."""
  ids = jnp.concatenate([jnp.full((1,), PAD_ID, jnp.int32), batch["input_ids"].reshape(-1),
                         batch["labels"].reshape(-1), negatives]).astype(jnp.int32)
  return jnp.unique(ids, size=min(ids.size, vocab_size), fill_value=vocab_size)


def make_step_fns(model_cfg: ModelConfig, tx: sparse_rows.SparseRowsOptimizer, *,
                  num_negatives: int, log_q: jax.Array | None = None) -> training.StepFns:
  """The sampled-softmax step with lazy-Adam item rows (`tx` from `stage.make_optimizer`)."""
  if tuple(tx.path) != TABLE_PATH:
    raise ValueError(f"the item table lives at {TABLE_PATH}, the optimiser updates {tx.path}")
  model = make_model(model_cfg, train=True)
  sample = make_negative_sampler(num_negatives, model_cfg.num_items, log_q)

  def rows_fn(batch, rng):
    return step_rows(batch, sample(_keys(rng)[1]), model_cfg.vocab_size)

  def loss_fn(params, model_state, batch, rng):
    del model_state
    dropout_rng, loss_rng = _keys(rng)
    rows = batch[sparse_rows.ROWS_KEY]
    table = sparse_rows.get_path(params, TABLE_PATH)  # [R, d]: the step's rows
    local = lambda ids: jnp.searchsorted(rows, ids).astype(jnp.int32)  # id -> its row in table
    hidden = model.apply({"params": params}, table[local(batch["input_ids"])], batch["input_ids"],
                         rngs={"dropout": dropout_rng}, method=SequentialRecommender.encode)
    local_log_q = None if log_q is None else log_q.at[rows].get(mode="fill", fill_value=-jnp.inf)
    loss_sum, count = losses.sampled_softmax_ce(
        hidden, table, local(batch["labels"]), negatives=local(sample(loss_rng)),
        log_q=local_log_q)
    return loss_sum, training.LossAux(count=count, metrics={})

  return training.StepFns(loss_fn=loss_fn, tx=tx, rows_fn=rows_fn)
