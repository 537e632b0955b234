"""`model.dtype = "bfloat16"`: bf16 activations and matmuls, float32 master weights and loss."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from seqrec_jax.recommender import losses
from seqrec_jax.recommender import train as recommender_train
from seqrec_jax.core import training
from seqrec_jax.recommender.model import ModelConfig, SequentialRecommender, init_params, make_model


def _config(dtype):
  return ModelConfig(kind="sasrec", num_items=300, max_len=12, hidden_dim=32, num_blocks=2,
                     num_heads=2, mlp_dim=64, dropout_rate=0.0, dtype=dtype)


def _batch():
  ids = np.random.default_rng(0).integers(1, 300, (8, 13)).astype(np.int32)
  ids[:3, :5] = 0
  return {"input_ids": jnp.asarray(ids[:, :-1]), "labels": jnp.asarray(ids[:, 1:])}


def _two_steps(dtype, loss="full"):
  cfg = _config(dtype)
  tx = optax.adam(1e-3)
  step = jax.jit(lambda s, b: training.train_step(
      s, b, recommender_train.make_step_fns(cfg, tx, losses.make_item_loss(loss, chunk_size=64))))
  state = training.create_train_state(init_params(cfg, jax.random.PRNGKey(0)), tx, seed=0)
  out = []
  for _ in range(2):
    state, metrics = step(state, _batch())
    out.append(metrics["loss"])
  return state, out


@pytest.mark.parametrize("loss", ["full", "chunked"])
def test_bf16_step_matches_float32(loss):
  state32, losses32 = _two_steps("float32", loss)
  state16, losses16 = _two_steps("bfloat16", loss)
  for value in losses16:
    assert value.dtype == jnp.float32 and np.isfinite(value)
  np.testing.assert_allclose(losses16, losses32, rtol=1e-2)
  # Master weights and optimiser moments stay float32.
  for leaf in jax.tree_util.tree_leaves((state16.params, state16.opt_state)):
    if jnp.issubdtype(leaf.dtype, jnp.floating):
      assert leaf.dtype == jnp.float32


def test_bf16_forward_runs_in_bf16():
  cfg = _config("bfloat16")
  params = init_params(cfg, jax.random.PRNGKey(0))
  model = make_model(cfg)
  ids = _batch()["input_ids"]
  hidden = model.apply({"params": params}, ids)
  assert hidden.dtype == jnp.bfloat16
  _, inter = model.apply({"params": params}, ids, capture_intermediates=True)
  assert inter["intermediates"]["blocks_0"]["mlp"]["__call__"][0].dtype == jnp.bfloat16
  logits = model.apply({"params": params}, hidden, method=SequentialRecommender.item_logits)
  assert logits.dtype == jnp.float32
  reference = make_model(_config("float32")).apply({"params": params}, ids)
  np.testing.assert_allclose(np.asarray(hidden, np.float32), reference, atol=0.1)
