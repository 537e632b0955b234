"""The fast paths against what they replaced: the train step (fused QKV attention, hashed dropout,
row-blocked fused softmax CE) against stock flax attention and dropout and the autodiff softmax
cross-entropy; ranking with the last block at the last position only against the full forward."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from seqrec_jax.core import training
from seqrec_jax.recommender import dropout, evaluation, hooks, losses, model
from seqrec_jax.recommender import train as recommender_train
from seqrec_jax.recommender.model import ModelConfig, init_params


def _stock_attention(cfg, name):
  mha = nn.MultiHeadDotProductAttention(
      num_heads=cfg.num_heads, dtype=cfg.dtype, dropout_rate=cfg.dropout_rate,
      deterministic=cfg.deterministic, force_fp32_for_softmax=True, name=name)
  return lambda x, mask, last_only=False: mha(x, x, mask=mask)  # never last_only in training


def _autodiff_full_ce(hidden, table, labels, rng):
  hidden, labels = hidden.reshape(-1, hidden.shape[-1]), labels.reshape(-1)
  logits = hidden @ table.T
  logits = logits.at[:, 0].set(-jnp.inf)
  nll = jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, labels[:, None], -1)[:, 0]
  valid = labels != 0
  return jnp.sum(jnp.where(valid, nll, 0.0)), jnp.sum(valid)


def _losses(cfg, item_loss=None, steps=10):
  tx = optax.adam(3e-3)
  parallel = training.Parallel("jit")
  step = parallel.compile(recommender_train.make_step_fns(cfg, tx, item_loss))
  state = parallel.put_state(training.create_train_state(init_params(cfg, jax.random.PRNGKey(3)), tx, 0))
  rng = np.random.default_rng(0)
  out = []
  for _ in range(steps):
    # Learnable: each next item is the previous one plus one.
    starts = rng.integers(0, cfg.num_items - 1, (16, 1))
    ids = ((starts + np.arange(cfg.max_len + 1)) % (cfg.num_items - 1) + 1).astype(np.int32)
    ids[: 5, : 7] = 0  # padded histories
    state, metrics = step(state, parallel.put_batch({"input_ids": ids[:, :-1], "labels": ids[:, 1:]}))
    out.append(parallel.get_metrics(metrics)["loss"])
  return np.asarray(out)


@pytest.mark.parametrize("kind,num_items", [("sasrec", 300), ("bert4rec", 5000)])
def test_fast_step_equals_the_stock_step_over_ten_steps(monkeypatch, kind, num_items):
  # 5000 items: several row blocks in the fused loss (blocks of 1M logits).
  cfg = ModelConfig(kind=kind, num_items=num_items, max_len=24, hidden_dim=32, num_heads=2,
                    mlp_dim=128, dropout_rate=0.0)
  fast = _losses(cfg)
  with monkeypatch.context() as patch:
    patch.setattr(model, "SelfAttention", _stock_attention)
    patch.setattr(model, "Dropout", nn.Dropout)
    stock = _losses(cfg, _autodiff_full_ce)
  assert fast[-1] < fast[0] - 0.01  # it trains
  np.testing.assert_allclose(fast, stock, rtol=1e-5)


def test_fused_ce_handles_rows_and_labels_at_the_edges():
  rng = np.random.default_rng(1)
  num_items, dim = 300_001, 8  # blocks of 8 rows: 17 rows padded to 3 blocks
  hidden = jnp.asarray(rng.normal(size=(17, dim)), jnp.float32)
  table = jnp.asarray(rng.normal(size=(num_items, dim)) * 0.3, jnp.float32)
  labels = jnp.asarray(rng.integers(1, num_items, 17)).at[np.array([0, 5, 16])].set(0)
  labels = labels.at[1].set(num_items - 1).at[2].set(1)
  got = jax.grad(lambda h, t: losses.full_softmax_ce(h, t, labels)[0], (0, 1))(hidden, table)
  want = jax.grad(lambda h, t: _autodiff_full_ce(h, t, labels, None)[0], (0, 1))(hidden, table)
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)
  assert float(jnp.abs(got[0][np.array([0, 5, 16])]).max()) == 0.0  # unlabelled rows
  assert float(jnp.abs(got[1][0]).max()) == 0.0  # the padding item


def test_hashed_dropout_keeps_the_right_fraction_independently():
  keys = jax.random.split(jax.random.PRNGKey(0), 2)
  a = np.asarray(dropout.keep_mask(keys[0], 0.1, (256, 64, 64)))
  b = np.asarray(dropout.keep_mask(keys[1], 0.1, (256, 64, 64)))
  n = a.size
  for m in (a, b):
    assert abs(m.mean() - 0.9) < 4 * np.sqrt(0.09 / n)
  # Independent across keys and along each axis (neighbouring positions).
  assert abs((a & b).mean() - 0.81) < 4 * np.sqrt(0.81 * 0.19 / n)
  for axis in range(3):
    both = np.take(a, np.arange(1, a.shape[axis]), axis) & np.take(a, np.arange(a.shape[axis] - 1), axis)
    assert abs(both.mean() - 0.81) < 4 * np.sqrt(0.81 * 0.19 / both.size)
  np.testing.assert_array_equal(a, np.asarray(dropout.keep_mask(keys[0], 0.1, (256, 64, 64))))
  x = jnp.ones((1000, 100))
  y = dropout.dropout(x, 0.25, keys[0])
  np.testing.assert_allclose(np.unique(np.asarray(y)), [0.0, 1 / 0.75], rtol=1e-6)
  assert abs(float(y.mean()) - 1.0) < 0.02


def test_dropout_differs_between_call_sites_and_steps():
  cfg = ModelConfig(kind="sasrec", num_items=100, max_len=16, hidden_dim=16, num_heads=2,
                    mlp_dim=64, dropout_rate=0.3)
  params = init_params(cfg, jax.random.PRNGKey(0))
  ids = np.random.default_rng(0).integers(1, 100, (4, 16)).astype(np.int32)
  train = model.make_model(cfg, train=True)
  run = lambda key: np.asarray(train.apply({"params": params}, ids, rngs={"dropout": key}))
  first, again, other = run(jax.random.PRNGKey(1)), run(jax.random.PRNGKey(1)), run(jax.random.PRNGKey(2))
  np.testing.assert_array_equal(first, again)
  assert not np.allclose(first, other)
  _, inter = train.apply({"params": params}, ids, rngs={"dropout": jax.random.PRNGKey(1)},
                         capture_intermediates=True)
  zero_0 = np.asarray(inter["intermediates"]["blocks_0"]["mlp"]["__call__"][0]) == 0
  zero_1 = np.asarray(inter["intermediates"]["blocks_1"]["mlp"]["__call__"][0]) == 0
  assert 0.2 < zero_0.mean() < 0.4 and not np.array_equal(zero_0, zero_1)


@pytest.mark.parametrize("kind", ["sasrec", "bert4rec"])
def test_ranking_with_the_last_position_only_equals_the_full_forward(kind):
  cfg = ModelConfig(kind=kind, num_items=80, max_len=12, hidden_dim=16, num_heads=2, mlp_dim=64,
                    num_blocks=3, dropout_rate=0.0)
  params = init_params(cfg, jax.random.PRNGKey(0))
  ids = np.random.default_rng(0).integers(1, 80, (5, 12)).astype(np.int32)
  ids[:3, :4] = 0
  net = model.make_model(cfg)
  full = net.apply({"params": params}, ids)
  last = net.apply({"params": params}, ids, last_only=True)
  assert last.shape == (5, 1, 16)
  np.testing.assert_allclose(last[:, 0], full[:, -1], rtol=1e-5, atol=1e-6)
  want = net.apply({"params": params}, full[:, -1], method=model.SequentialRecommender.item_logits)
  np.testing.assert_allclose(evaluation.scores_last(params, ids, cfg), want, rtol=1e-5, atol=1e-5)
  # An edit in the last block sees (and changes) every position; one before it, too.
  for layer in ("blocks_2/mlp", "blocks_1"):
    seen_shapes = []
    edit = hooks.LayerEdit(layer, _record_shape_and_zero_first_position(seen_shapes))
    edited = evaluation.scores_last(params, ids, cfg, edit=edit)
    assert seen_shapes == [(5, 12, 16)]
    full_edit = hooks.maybe_edited_apply(net, {"params": params}, ids, edit)
    np.testing.assert_allclose(edited, net.apply({"params": params}, full_edit[:, -1],
                                                 method=model.SequentialRecommender.item_logits),
                               rtol=1e-5, atol=1e-5)


def _record_shape_and_zero_first_position(shapes):
  def fn(args, h):
    shapes.append(h.shape)
    return h.at[:, 0].set(0.0)
  return fn
