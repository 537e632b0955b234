"""Full-ranking next-item metrics, one module for training, evaluation and steering.

Per user, with `rank` the 0-based position of the target in the top-k list (k if absent):
HR@k = [rank < k], NDCG@k = 1 / log2(rank + 2), MRR@k = 1 / (rank + 1) (both 0 when absent).
Coverage@k = distinct recommended items / (V - 1), over all users.
Ties in scores are broken by the lower item id first (the order of `jax.lax.top_k`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from seqrec_jax.models import PAD_ID


def mask_seen(scores: jax.Array, seen: jax.Array) -> jax.Array:
  """Set the scores `[B, V]` of items listed in `seen[B, S]` (0-padded) to -inf."""
  rows = jnp.arange(scores.shape[0])[:, None]
  masked = scores.at[rows, seen].set(-jnp.inf)
  # Padding slots wrote to column 0, which is -inf already for real models; keep it so.
  return masked.at[:, PAD_ID].set(-jnp.inf)


def top_k_items(scores: jax.Array, k: int) -> jax.Array:
  """Item ids `[B, k]` of the k best scores `[B, V]` (padding never, as it scores -inf)."""
  return jax.lax.top_k(scores, k)[1].astype(jnp.int32)


def per_user_metrics(top_items: jax.Array, targets: jax.Array) -> dict[str, jax.Array]:
  """`top_items[B, k]`, `targets[B]` -> per-user `hr`, `ndcg`, `mrr`, each `[B]` float32."""
  k = top_items.shape[-1]
  hits = top_items == targets[:, None]
  found = hits.any(-1)
  rank = jnp.where(found, jnp.argmax(hits, -1), k).astype(jnp.float32)
  return {
      "hr": found.astype(jnp.float32),
      "ndcg": jnp.where(found, 1.0 / jnp.log2(rank + 2.0), 0.0),
      "mrr": jnp.where(found, 1.0 / (rank + 1.0), 0.0),
  }


class RankingAccumulator:
  """Sums per-user metrics over batches on the host, ignoring padding rows."""

  def __init__(self, num_items: int, k: int):
    self.k = k
    self.num_items = num_items
    self.sums: dict[str, float] = {}
    self.count = 0
    self.recommended = np.zeros(num_items, bool)

  def add(self, per_user: dict, top_items, valid) -> None:
    valid = np.asarray(valid, bool)
    for name, values in per_user.items():
      self.sums[name] = self.sums.get(name, 0.0) + float(np.asarray(values, np.float64)[valid].sum())
    self.count += int(valid.sum())
    self.recommended[np.asarray(top_items)[valid].ravel()] = True

  def result(self) -> dict[str, float]:
    out = {f"{name}@{self.k}": total / max(self.count, 1) for name, total in self.sums.items()}
    out[f"coverage@{self.k}"] = float(self.recommended[1:].sum()) / max(self.num_items - 1, 1)
    out["num_users"] = self.count
    return out
