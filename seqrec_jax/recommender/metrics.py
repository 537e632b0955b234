"""Full-ranking next-item metrics, one module for training, evaluation and steering.

Per user, with `rank` the 0-based position of the target in the top-k list (k if absent):
HR@k = [rank < k], NDCG@k = 1 / log2(rank + 2), MRR@k = 1 / (rank + 1) (both 0 when absent).
Coverage@k = distinct recommended items / (V - 1), over all users.
Ties in scores are broken by the lower item id first (the order of `jax.lax.top_k`).

Beyond accuracy, given item features (`ListFeatures`), per user and averaged over users:
Novelty@k = mean self-information -log2 p(i) of the listed items under training popularity
(p smoothed: (count + 1) / (total + V)); ILD@k (intra-list diversity) = mean over pairs of listed
items of 1 - cosine similarity of their attribute vectors (an item without attributes is at
distance 1 from every other); share@k[g] = fraction of listed items that have attribute g.

Comparing two rankings of the same users (an edit against none): `new_item_precision[g]` = of the
items the edited list holds that the unedited one did not, pooled over users, the fraction that
have attribute g (NaN where no item is new).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from seqrec_jax.recommender.model import PAD_ID


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


class ListFeatures:
  """Item features for beyond-accuracy metrics of recommendation lists."""

  def __init__(self, item_counts: np.ndarray, attributes: np.ndarray, attribute_names):
    """`item_counts[V]` training interactions per item; `attributes[V, G]` multi-hot."""
    counts = np.asarray(item_counts, np.float64)
    p = (counts + 1.0) / (counts.sum() + len(counts))
    self.self_information = -np.log2(p)  # [V]
    attrs = np.asarray(attributes, np.float64)
    norms = np.linalg.norm(attrs, axis=1, keepdims=True)
    self.attributes = attrs > 0  # [V, G]
    self.unit_attributes = np.divide(attrs, norms, out=np.zeros_like(attrs), where=norms > 0)
    self.attribute_names = list(attribute_names)

  def per_user(self, top_items: np.ndarray) -> dict[str, np.ndarray]:
    """`top_items[B, k]` -> `novelty[B]`, `ild[B]`, `share[B, G]`."""
    k = top_items.shape[1]
    unit = self.unit_attributes[top_items]  # [B, k, G]
    cosine = np.einsum("bkg,bjg->bkj", unit, unit)
    off_diagonal = ~np.eye(k, dtype=bool)
    ild = (1.0 - cosine)[:, off_diagonal].mean(-1) if k > 1 else np.zeros(len(top_items))
    return {"novelty": self.self_information[top_items].mean(-1), "ild": ild,
            "share": self.attributes[top_items].mean(1)}


def new_items(base_top: np.ndarray, top: np.ndarray) -> np.ndarray:
  """`[U, k]` bool: the items of `top[U, k]` absent from the same user's `base_top[U, k]`."""
  base_top, top = np.asarray(base_top), np.asarray(top)
  if base_top.shape[0] != top.shape[0]:
    raise ValueError(f"new_items: {base_top.shape[0]} unedited lists for {top.shape[0]} edited")
  return ~(top[:, :, None] == base_top[:, None, :]).any(-1)


def new_item_precision(base_top: np.ndarray, top: np.ndarray, attributes: np.ndarray) -> np.ndarray:
  """`[G]` fraction of the new items of `top` (`new_items`, pooled over users) that carry each
  attribute of `attributes[V, G]`; NaN for every attribute where no item is new."""
  new = new_items(base_top, top)
  carried = np.asarray(attributes, bool)[np.asarray(top)[new]]  # [num_new, G]
  if not len(carried):
    return np.full(np.asarray(attributes).shape[1], np.nan)
  return carried.mean(0)


class RankingAccumulator:
  """Sums per-user metrics over batches on the host, ignoring padding rows (and keeps the valid
  users' top-k lists, in order, when `keep_top`)."""

  def __init__(self, num_items: int, k: int, list_features: ListFeatures | None = None,
               keep_top: bool = False):
    self.k = k
    self.tops = [] if keep_top else None
    self.num_items = num_items
    self.list_features = list_features
    self.sums: dict[str, float] = {}
    self.share_sums = None
    self.count = 0
    self.recommended = np.zeros(num_items, bool)
    self.exposure = np.zeros(num_items, np.int64)  # times each item is in a top-k list

  def add(self, per_user: dict, top_items, valid) -> None:
    valid = np.asarray(valid, bool)
    top_items = np.asarray(top_items)[valid]
    per_user = {name: np.asarray(v, np.float64)[valid] for name, v in per_user.items()}
    if self.list_features is not None:
      extra = self.list_features.per_user(top_items)
      share = extra.pop("share").sum(0)
      self.share_sums = share if self.share_sums is None else self.share_sums + share
      per_user.update(extra)
    for name, values in per_user.items():
      self.sums[name] = self.sums.get(name, 0.0) + float(values.sum())
    self.count += int(valid.sum())
    listed = top_items[top_items >= 0]  # -1: a user whose scores were not finite
    self.recommended[listed] = True
    self.exposure += np.bincount(listed, minlength=self.num_items)[:self.num_items]
    if self.tops is not None:
      self.tops.append(top_items)

  def top_items(self) -> np.ndarray:
    """`[U, k]` the valid users' top-k items in the order added (needs `keep_top`)."""
    if self.tops is None:
      raise ValueError("RankingAccumulator(keep_top=False) keeps no lists")
    return np.concatenate(self.tops) if self.tops else np.zeros((0, self.k), np.int32)

  def result(self) -> dict:
    count = max(self.count, 1)
    out = {f"{name}@{self.k}": total / count for name, total in self.sums.items()}
    out[f"coverage@{self.k}"] = float(self.recommended[1:].sum()) / max(self.num_items - 1, 1)
    out["num_users"] = self.count
    if self.share_sums is not None:
      out[f"share@{self.k}"] = {name: float(v / count) for name, v in
                                zip(self.list_features.attribute_names, self.share_sums)}
      out[f"gini@{self.k}"] = gini(self.exposure[1:])
    return out


def gini(exposure: np.ndarray) -> float:
  """Gini coefficient `[0, 1]` of item exposure `[V-1]` (how often each real item is listed):
  0 when every item is listed equally often, (n-1)/n when one item takes every slot."""
  x = np.sort(np.asarray(exposure, np.float64))
  n, total = len(x), x.sum()
  if n == 0 or total == 0:
    return 0.0
  return float(2.0 * np.sum(np.arange(1, n + 1) * x) / (n * total) - (n + 1.0) / n)
