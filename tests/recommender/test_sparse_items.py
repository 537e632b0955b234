"""Lazy-Adam item rows (`train.item_optimizer="lazy_adam"`) against dense Adam."""

import json
import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import optax
import pytest

from seqrec_jax.core import sparse_rows, training
from seqrec_jax.recommender import losses, sparse_items
from seqrec_jax.recommender import train as recommender_train
from seqrec_jax.recommender.model import ModelConfig, init_params
from tests.helpers import sparse_steps

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The attention's key bias has a zero gradient in exact arithmetic (the softmax ignores a shift
# shared by all keys), so Adam turns its rounding noise into steps of about the learning rate;
# any two ways of summing the same gradient disagree there.
NOISE_ONLY = "['blocks_0']['attention']['self_attention']['key']['bias']"


def _check_equal(result):
  np.testing.assert_allclose(result["lazy"], result["dense"], rtol=1e-5)
  assert len(set(result["dense"])) == sparse_steps.STEPS  # the steps do train
  for name, difference in result["max_abs_difference"].items():
    if name != NOISE_ONLY:
      assert difference < 1e-5, (name, difference)


@pytest.mark.parametrize("clip", [0.0, 0.5])
def test_lazy_adam_equals_dense_adam_when_every_row_is_used(clip):
  _check_equal(sparse_steps.run("jit", clip))


@pytest.mark.parametrize("mode", ["pmap", "mesh"])
def test_lazy_adam_equals_dense_adam_on_several_devices(mode):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-m", "tests.helpers.sparse_steps", mode], cwd=ROOT,
                       env=env, capture_output=True, text=True, check=True)
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result["devices"] == 2
  _check_equal(result)


def test_rows_a_step_does_not_use_stay_unchanged():
  num_items, negatives = 500, 8
  cfg = ModelConfig(kind="sasrec", num_items=num_items, max_len=6, hidden_dim=8, num_blocks=1,
                    num_heads=2, mlp_dim=16, dropout_rate=0.0)
  tx = sparse_rows.SparseRowsOptimizer(dense=optax.adam(1e-2), rows=sparse_rows.LazyAdam(1e-2),
                                       path=sparse_items.TABLE_PATH)
  fns = sparse_items.make_step_fns(cfg, tx, num_negatives=negatives)
  step = jax.jit(lambda s, b: training.train_step(s, b, fns))
  state = training.create_train_state(init_params(cfg, jax.random.PRNGKey(0)), tx, seed=0)
  last_table = np.asarray(state.params["item_embedding"]["embedding"])
  rng = np.random.default_rng(0)
  for _ in range(3):
    ids = rng.integers(1, 40, (4, cfg.max_len + 1)).astype(np.int32)
    batch = {"input_ids": ids[:, :-1], "labels": ids[:, 1:]}
    step_rng = jax.random.fold_in(state.rng, state.step)  # as training.train_step draws it
    used = np.asarray(fns.rows_fn(batch, step_rng))
    used = used[used < num_items]
    last_moments = [np.asarray(m) for m in (state.opt_state["rows"].mu, state.opt_state["rows"].nu)]
    state, _ = step(state, batch)
    table = np.asarray(state.params["item_embedding"]["embedding"])
    unused = np.setdiff1d(np.arange(num_items), used)
    assert len(unused) > num_items - 40 - negatives
    np.testing.assert_array_equal(table[unused], last_table[unused])
    for before, after in zip(last_moments, (state.opt_state["rows"].mu, state.opt_state["rows"].nu)):
      np.testing.assert_array_equal(np.asarray(after)[unused], before[unused])
    batch_items = np.unique(ids)
    assert np.all(np.any(table[batch_items] != last_table[batch_items], axis=1))
    last_table = table


def test_lazy_adam_needs_the_sampled_loss():
  config = ml_collections.ConfigDict({"train": {
      "learning_rate": 1e-3, "loss": "full", "item_optimizer": "lazy_adam", "grad_clip_norm": 0.0}})
  with pytest.raises(ValueError, match="item_optimizer"):
    recommender_train.make_optimizer(config)
  config.train.item_optimizer = "sparse"
  with pytest.raises(ValueError, match="item_optimizer"):
    recommender_train.make_optimizer(config)
  config.train.item_optimizer, config.train.loss = "lazy_adam", "sampled"
  assert isinstance(recommender_train.make_optimizer(config), sparse_rows.SparseRowsOptimizer)


def _step_temp_bytes(num_items: int, lazy: bool) -> int:
  """XLA's temporary buffer bytes of one compiled (donating) sampled-softmax step."""
  cfg = ModelConfig(kind="sasrec", num_items=num_items, max_len=8, hidden_dim=8, num_blocks=1,
                    num_heads=2, mlp_dim=16, dropout_rate=0.1)
  if lazy:
    tx = sparse_rows.SparseRowsOptimizer(dense=optax.adam(1e-3), rows=sparse_rows.LazyAdam(1e-3),
                                         path=sparse_items.TABLE_PATH)
    fns = sparse_items.make_step_fns(cfg, tx, num_negatives=64)
  else:
    tx = optax.adam(1e-3)
    fns = recommender_train.make_step_fns(cfg, tx, losses.make_item_loss("sampled",
                                                                         num_negatives=64))
  state = jax.eval_shape(lambda: training.create_train_state(
      init_params(cfg, jax.random.PRNGKey(0)), tx, seed=0))
  batch = {k: jax.ShapeDtypeStruct((4, 8), np.int32) for k in ("input_ids", "labels")}
  compiled = training.Parallel("jit").compile(fns).lower(state, batch).compile()
  return compiled.memory_analysis().temp_size_in_bytes


def test_lazy_step_needs_no_table_sized_buffer():
  """The lazy step's temporaries do not grow with the catalogue (the dense step's grow by at
  least a table: its gradient), so no table-sized work runs beside the in-place scatters."""
  small, large = 1_000, 200_000
  table_bytes = (large - small) * 8 * 4
  assert _step_temp_bytes(large, lazy=False) >= table_bytes  # the measure sees a dense gradient
  lazy_growth = _step_temp_bytes(large, lazy=True) - _step_temp_bytes(small, lazy=True)
  assert lazy_growth < table_bytes / 10
