import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqrec_jax.recommender import losses

V, D = 53, 8


@pytest.fixture
def inputs():
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
  hidden = jax.random.normal(k1, (4, 6, D))
  table = jax.random.normal(k2, (V, D))
  labels = jax.random.randint(k3, (4, 6), 1, V).at[0, :3].set(0)  # some unlabelled positions
  return hidden, table, labels


def _mean(loss):
  def f(hidden, table, labels):
    total, count = loss(hidden, table, labels)
    return total / count
  return f


def _naive(hidden, table, labels):
  logits = np.asarray(hidden, np.float64) @ np.asarray(table, np.float64).T
  logits[..., 0] = -np.inf
  lse = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
  picked = np.take_along_axis(logits, np.asarray(labels)[..., None], -1)[..., 0]
  valid = np.asarray(labels) > 0
  return np.where(valid, lse - picked, 0.0).sum(), valid.sum()


def test_full_matches_naive(inputs):
  total, count = losses.full_softmax_ce(*inputs)
  want_total, want_count = _naive(*inputs)
  assert int(count) == want_count
  np.testing.assert_allclose(total, want_total, rtol=1e-5)


@pytest.mark.parametrize("chunk_size", [7, 16, 53, 64])
def test_chunked_equals_full_in_value_and_gradient(inputs, chunk_size):
  full = _mean(losses.full_softmax_ce)
  chunked = _mean(lambda h, t, l: losses.chunked_softmax_ce(h, t, l, chunk_size=chunk_size))
  np.testing.assert_allclose(chunked(*inputs), full(*inputs), rtol=1e-5)
  g_full = jax.grad(full, argnums=(0, 1))(*inputs)
  g_chunk = jax.grad(chunked, argnums=(0, 1))(*inputs)
  for a, b in zip(g_chunk, g_full):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_sampled_with_all_items_and_no_correction_equals_full(inputs):
  all_items = jnp.arange(1, V, dtype=jnp.int32)
  sampled = _mean(lambda h, t, l: losses.sampled_softmax_ce(h, t, l, negatives=all_items, log_q=None))
  full = _mean(losses.full_softmax_ce)
  np.testing.assert_allclose(sampled(*inputs), full(*inputs), rtol=1e-5)
  for a, b in zip(jax.grad(sampled, argnums=(0, 1))(*inputs), jax.grad(full, argnums=(0, 1))(*inputs)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_sampled_loss_is_finite_and_corrected(inputs):
  hidden, table, labels = inputs
  counts = np.arange(V, dtype=np.float32)
  log_q = losses.popularity_log_q(counts)
  assert np.isneginf(log_q[0]) and np.isclose(np.exp(log_q).sum(), 1.0, atol=1e-5)
  loss = losses.make_item_loss("sampled", num_negatives=20, log_q=log_q)
  total, count = loss(hidden, table, labels, jax.random.PRNGKey(1))
  assert np.isfinite(total) and int(count) == int((labels > 0).sum())
  negatives = losses.sample_negatives(jax.random.PRNGKey(2), 5000, log_q)
  assert int(negatives.min()) >= 1  # padding is never sampled
  # Popular ids are drawn more often.
  assert (negatives > V // 2).mean() > 0.6
