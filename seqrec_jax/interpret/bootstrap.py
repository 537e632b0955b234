"""Bootstrap intervals over users for per-feature attribute statistics.

The unit resampled is the *user*, not the position: positions of one user are strongly dependent
(the same history, similar items), so resampling positions would give intervals that are far too
narrow. A replicate draws as many users as there are, with replacement, and weighs each position
by how often its user was drawn; every statistic is then the weighted version of the one in
`statistics` (same definitions: AUC with ties counted half, Pearson correlation, precision =
P(attribute | fired), frac_fired = P(fired | attribute), mean_act = E[value | attribute], and
F1 of "fired" against the attribute). Intervals are percentile intervals of the replicates.

Shapes: `values[N, K]` and `labels[N, K]` pair column k of the values with column k of the
labels (one selected feature per attribute), `users[N]` the user of each position.
"""

from __future__ import annotations

import numpy as np

STATISTICS = ("auc", "corr", "precision", "frac_fired", "mean_act", "f1")
# Weighted rows held at once per replicate chunk (float64 temporaries of this many elements).
_ELEMENTS_PER_CHUNK = 1 << 23


def user_counts(num_users: int, num_samples: int, seed: int) -> np.ndarray:
  """`[B, U]` how often each user is drawn in each of B replicates (U draws with replacement)."""
  rng = np.random.default_rng(seed)
  return rng.multinomial(num_users, np.full(num_users, 1.0 / num_users), size=num_samples)


def weighted_statistics(values, labels, weights, *, fire_threshold=0.0) -> dict[str, np.ndarray]:
  """Weighted statistics of each (value column, label column) pair.

  Args:
    values: `[N, K]` float scores.
    labels: `[N, K]` bool.
    weights: `[B, N]` non-negative row weights (all ones gives the plain statistics).
    fire_threshold: scalar or `[K]`; a column fires where `value > fire_threshold`.

  Returns:
    `{name: [B, K] float64}` for the names in `STATISTICS`; NaN where undefined (AUC and
    correlation with a constant label under the weights, ratios with a zero denominator).
  """
  values = np.asarray(values, np.float64)
  labels = np.asarray(labels, bool)
  weights = np.asarray(weights, np.float64)
  if values.shape != labels.shape or values.ndim != 2:
    raise ValueError(f"values {values.shape} and labels {labels.shape} must both be [N, K]")
  if weights.ndim != 2 or weights.shape[1] != len(values):
    raise ValueError(f"weights {weights.shape} must be [B, {len(values)}]")
  thresholds = np.broadcast_to(np.asarray(fire_threshold, np.float64), (values.shape[1],))
  y = labels.astype(np.float64)
  fired = (values > thresholds).astype(np.float64)
  total = weights.sum(axis=1, keepdims=True)
  # Weighted sums of every per-row quantity the ratio statistics need, one product each.
  sw_y, sw_x, sw_xx, sw_xy = weights @ y, weights @ values, weights @ values**2, weights @ (values * y)
  sw_f, sw_fy = weights @ fired, weights @ (fired * y)
  with np.errstate(divide="ignore", invalid="ignore"):
    rate = sw_y / total
    mean = sw_x / total
    cov = sw_xy / total - mean * rate
    var_x = np.maximum(sw_xx / total - mean**2, 0.0)
    var_y = rate * (1 - rate)
    corr = np.clip(cov / np.sqrt(var_x * var_y), -1.0, 1.0)
    out = {
        "corr": np.where((var_x > 0) & (var_y > 0), corr, np.nan),
        "precision": sw_fy / sw_f,
        "frac_fired": sw_fy / sw_y,
        "mean_act": sw_xy / sw_y,
        "f1": 2 * sw_fy / (sw_f + sw_y),
    }
  out["auc"] = np.stack([_weighted_auc(values[:, k], labels[:, k], weights)
                         for k in range(values.shape[1])], axis=1)
  return {name: out[name] for name in STATISTICS}


def _weighted_auc(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
  """`[B]` weighted ROC AUC of scores `x[N]` for labels `y[N]`, ties counted half."""
  order = np.argsort(x, kind="stable")
  xs, ys = x[order], y[order]
  starts = np.flatnonzero(np.concatenate([[True], xs[1:] != xs[:-1]]))  # tie blocks
  result = np.empty(len(weights))
  rows_per_chunk = max(1, _ELEMENTS_PER_CHUNK // max(len(x), 1))
  for b in range(0, len(weights), rows_per_chunk):
    w = weights[b:b + rows_per_chunk][:, order]
    pos = np.add.reduceat(w * ys, starts, axis=1)
    neg = np.add.reduceat(w * ~ys, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    with np.errstate(divide="ignore", invalid="ignore"):
      result[b:b + rows_per_chunk] = ((pos * (below + 0.5 * neg)).sum(1)
                                      / (pos.sum(1) * neg.sum(1)))
  return np.where(np.isfinite(result), result, np.nan)


def bootstrap(values, labels, users, *, num_samples: int = 1000, seed: int = 0,
              fire_threshold=0.0) -> dict[str, dict[str, np.ndarray]]:
  """Point estimates and user-bootstrap replicates of every statistic for each column pair.

  Args:
    values, labels: `[N, K]` (see module docstring).
    users: `[N]` ints, the user of each position.
    num_samples: B, replicates.
    seed: seeds the resampling.
    fire_threshold: scalar or `[K]`.

  Returns:
    `{name: {"value": [K], "samples": [B, K]}}`.
  """
  users = np.asarray(users).reshape(-1)
  _, user_of_row = np.unique(users, return_inverse=True)
  counts = user_counts(int(user_of_row.max()) + 1 if len(users) else 0, num_samples, seed)
  point = weighted_statistics(values, labels, np.ones((1, len(users))),
                              fire_threshold=fire_threshold)
  samples = {name: [] for name in STATISTICS}
  rows_per_chunk = max(1, _ELEMENTS_PER_CHUNK // max(len(users), 1))
  for b in range(0, num_samples, rows_per_chunk):
    part = weighted_statistics(values, labels, counts[b:b + rows_per_chunk][:, user_of_row],
                               fire_threshold=fire_threshold)
    for name in STATISTICS:
      samples[name].append(part[name])
  return {name: {"value": point[name][0], "samples": np.concatenate(samples[name])}
          for name in STATISTICS}


def interval(samples: np.ndarray, level: float = 0.95, axis: int = 0) -> np.ndarray:
  """Percentile interval `[2, ...]` (low, high) of bootstrap replicates along `axis`, NaN-aware."""
  tail = 100 * (1 - level) / 2
  with np.errstate(invalid="ignore"):
    return np.nanpercentile(samples, [tail, 100 - tail], axis=axis)
