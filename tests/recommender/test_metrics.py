import jax.numpy as jnp
import numpy as np
import pytest

from seqrec_jax.recommender import metrics
from seqrec_jax.recommender.input_pipeline import EvalArrays

V, K = 40, 10


def _oracle(scores, targets, seen, filter_seen, k=K):
  """Brute force: rank = items strictly better, ties broken by lower id (top_k's order)."""
  n = len(targets)
  hr = np.zeros(n); ndcg = np.zeros(n); mrr = np.zeros(n)
  recommended = set()
  for u in range(n):
    s = scores[u].astype(np.float64).copy()
    s[0] = -np.inf
    if filter_seen:
      s[seen[u][seen[u] > 0]] = -np.inf
    order = sorted(range(V), key=lambda i: (-s[i], i))[:k]
    recommended.update(order)
    if targets[u] in order:
      r = order.index(targets[u])
      hr[u], ndcg[u], mrr[u] = 1, 1 / np.log2(r + 2), 1 / (r + 1)
  return {"hr@10": hr.mean(), "ndcg@10": ndcg.mean(), "mrr@10": mrr.mean(),
          "coverage@10": len(recommended - {0}) / (V - 1)}


def _evaluate(scores, targets, seen, filter_seen, batch_size):
  n = len(targets)
  pad = -(-n // batch_size) * batch_size - n
  arrays = EvalArrays(
      input_ids=np.zeros((n + pad, 1), np.int32),
      targets=np.concatenate([targets, np.zeros(pad, np.int32)]),
      seen=np.concatenate([seen, np.zeros((pad, seen.shape[1]), np.int32)]),
      valid=np.arange(n + pad) < n,
  )
  all_scores = np.concatenate([scores, np.zeros((pad, V), np.float32)])
  acc = metrics.RankingAccumulator(V, K)
  for start, batch in zip(range(0, n + pad, batch_size), arrays.batches(batch_size)):
    s = jnp.asarray(all_scores[start : start + batch_size])
    if filter_seen:
      s = metrics.mask_seen(s, jnp.asarray(batch["seen"]))
    s = s.at[:, 0].set(-jnp.inf)
    top = metrics.top_k_items(s, K)
    acc.add(metrics.per_user_metrics(top, jnp.asarray(batch["targets"])), top, batch["valid"])
  return acc.result()


@pytest.mark.parametrize("filter_seen", [False, True])
@pytest.mark.parametrize("batch_size", [1, 7, 23])
def test_metrics_match_bruteforce_oracle(filter_seen, batch_size):
  rng = np.random.default_rng(0)
  n = 23
  scores = rng.normal(size=(n, V)).astype(np.float32)
  scores[:, 5] = scores[:, 6]  # a tie, broken by the lower id
  targets = rng.integers(1, V, n).astype(np.int32)
  seen = rng.integers(0, V, (n, 6)).astype(np.int32)
  # Make targets likely to be near the top so hits happen.
  scores[np.arange(n), targets] += rng.uniform(0, 3, n).astype(np.float32)
  got = _evaluate(scores, targets, seen, filter_seen, batch_size)
  want = _oracle(scores, targets, seen, filter_seen)
  assert got["num_users"] == n
  for key, value in want.items():
    assert got[key] == pytest.approx(value, abs=1e-6), key


def test_padding_and_seen_items_never_recommended():
  rng = np.random.default_rng(1)
  scores = jnp.asarray(rng.normal(size=(5, V)).astype(np.float32)).at[:, 0].set(100.0)
  seen = jnp.asarray(np.array([[3, 4, 0]] * 5, np.int32))
  top = np.asarray(metrics.top_k_items(metrics.mask_seen(scores, seen), K))
  assert not np.isin(top, [0, 3, 4]).any()


def test_list_features_match_direct_computation():
  rng = np.random.default_rng(3)
  counts = rng.integers(0, 50, V).astype(np.float64)
  attrs = rng.random((V, 4)) < 0.3
  attrs[7] = False  # an item without attributes
  features = metrics.ListFeatures(counts, attrs, ["a", "b", "c", "d"])
  top = rng.integers(1, V, (6, 5))
  top[0, 0] = 7
  got = features.per_user(top)
  p = (counts + 1) / (counts.sum() + V)
  for u in range(len(top)):
    items = top[u]
    assert got["novelty"][u] == pytest.approx(np.mean(-np.log2(p[items])))
    distances = []
    for i in range(5):
      for j in range(5):
        if i != j:
          a, b = attrs[items[i]].astype(float), attrs[items[j]].astype(float)
          cos = a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) if a.any() and b.any() else 0.0
          distances.append(1 - cos)
    assert got["ild"][u] == pytest.approx(np.mean(distances))
    np.testing.assert_allclose(got["share"][u], attrs[items].mean(0))


def test_top_k_breaks_exact_ties_by_the_lower_item_id():
  scores = np.full((2, 12), -1.0, np.float32)
  scores[:, 0] = -np.inf  # padding
  # Row 0: items 9, 4 and 7 tie at the top; row 1: items 3, 11 and 6 tie for the last two slots.
  scores[0, [9, 4, 7]] = 5.0
  scores[0, [2, 10]] = 3.0
  scores[1, [8, 1]] = [4.0, 3.0]
  scores[1, [3, 11, 6]] = 2.0
  top = np.asarray(metrics.top_k_items(jnp.asarray(scores), 4))
  np.testing.assert_array_equal(top[0], [4, 7, 9, 2])
  np.testing.assert_array_equal(top[1], [8, 1, 3, 6])
  # A tie at the k-th slot decides whether the target is a hit.
  hits = metrics.per_user_metrics(jnp.asarray(top), jnp.asarray([9, 11]))["hr"]
  np.testing.assert_array_equal(np.asarray(hits), [1.0, 0.0])


def test_gini_of_exposure_against_the_mean_absolute_difference():
  rng = np.random.default_rng(0)
  for exposure in (rng.integers(0, 20, 50), np.ones(7), np.r_[np.zeros(9), 5.0]):
    x = np.asarray(exposure, np.float64)
    direct = np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) ** 2 * x.mean())
    assert metrics.gini(exposure) == pytest.approx(direct)
  assert metrics.gini(np.ones(7)) == 0.0
  assert metrics.gini(np.r_[np.zeros(9), 5.0]) == pytest.approx(0.9)  # (n - 1) / n
