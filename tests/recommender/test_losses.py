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


def _naive_sampled(hidden, table, labels, negatives, log_q):
  """Sampled softmax with the logQ correction, written out row by row in float64."""
  h = np.asarray(hidden, np.float64).reshape(-1, D)
  t = np.asarray(table, np.float64)
  y = np.asarray(labels).reshape(-1)
  q = np.asarray(log_q, np.float64)
  neg = np.asarray(negatives)
  s = len(neg)
  total = 0.0
  for row, label in zip(h, y):
    if label == 0:
      continue
    pos = row @ t[label] - np.log(s) - q[label]
    others = [row @ t[j] - np.log(s) - q[j] for j in neg if j != label and j != 0]
    total += np.logaddexp.reduce([pos, *others]) - pos
  return total


def test_sampled_log_q_correction_matches_a_direct_computation(inputs):
  hidden, table, labels = inputs
  log_q = losses.popularity_log_q(np.arange(V, dtype=np.float32) ** 2)  # strongly skewed
  negatives = losses.sample_negatives(jax.random.PRNGKey(3), 25, log_q)
  negatives = negatives.at[:2].set(jnp.asarray(labels)[1, :2])  # two accidental hits
  total, _ = losses.sampled_softmax_ce(hidden, table, labels, negatives=negatives, log_q=log_q)
  np.testing.assert_allclose(total, _naive_sampled(hidden, table, labels, negatives, log_q),
                             rtol=1e-5)
  # The correction matters: without it the same negatives give another loss.
  plain, _ = losses.sampled_softmax_ce(hidden, table, labels, negatives=negatives, log_q=None)
  assert abs(float(plain) - float(total)) > 1e-2 * abs(float(total))
