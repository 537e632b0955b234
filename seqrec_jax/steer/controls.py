"""Choosing each attribute's control by its measured effect, on the selection users only.

For attribute g the candidates are the latents whose logit effect lifts g's items the most
(`steer.effects.attribute_effect`, a first-order estimate measured on the selection users)
plus its best latents by AUC and by correlation there. Each candidate is swept over the positive
strengths (to promote g) and over the negative ones (to suppress it) on the selection users, and
scored by its *gain*: the largest change of g's top-10 share, in the wanted direction, at a
strength that keeps NDCG@10 at least `min_ndcg_ratio` of the unsteered value (the operating point
the README reports). The two best candidates are also tried together, weighted by their gains;
the pair replaces the single latent when its gain is larger. Where no candidate keeps NDCG@10
high enough, the one with the largest gain per unit of NDCG@10 lost at the smallest strength wins.

Nothing here reads the test users: the evaluation arrays, statistics and typical activations
passed in come from the selection users.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from seqrec_jax.steer.methods import Control

# (control, signed strength) -> (share of each attribute in the top 10 [G], NDCG@10)
SweepFn = Callable[[Control, float], tuple[np.ndarray, float]]


def candidate_latents(attribute_effect: np.ndarray, selection_auc: np.ndarray,
                      selection_corr: np.ndarray, g: int, num: int = 5) -> list[int]:
  """Latents worth sweeping for attribute g: top `num` by logit effect, best by AUC and corr."""
  effect = np.nan_to_num(np.asarray(attribute_effect)[:, g], nan=-np.inf)
  ranked = [int(j) for j in np.argsort(-effect, kind="stable")[:num]]
  for table in (selection_auc, selection_corr):
    column = np.nan_to_num(np.asarray(table)[:, g], nan=-np.inf)
    if np.isfinite(column.max()):
      ranked.append(int(column.argmax()))
  return list(dict.fromkeys(ranked))


def gain(shares: Sequence[float], ndcgs: Sequence[float], strengths: Sequence[float], *,
         base_share: float, base_ndcg: float, direction: int, min_ndcg_ratio: float) -> float:
  """Largest `direction * (share - base_share)` over strengths of that sign keeping NDCG@10 at
  `min_ndcg_ratio * base_ndcg` or more; -inf when none does."""
  best = -np.inf
  for share, ndcg, strength in zip(shares, ndcgs, strengths):
    if np.sign(strength) == direction and ndcg >= min_ndcg_ratio * base_ndcg:
      best = max(best, direction * (share - base_share))
  return best


def _fallback_score(shares, ndcgs, strengths, base_share, base_ndcg, direction) -> float:
  """Share gained per NDCG@10 lost at the smallest strength of the direction."""
  order = [i for i in np.argsort(np.abs(strengths)) if np.sign(strengths[i]) == direction]
  if not order:
    return -np.inf
  i = order[0]
  return direction * (shares[i] - base_share) / max(base_ndcg - ndcgs[i], 1e-9)


def choose(sweep: SweepFn, candidates: Sequence[int], g: int, strengths: Sequence[float], *,
           base_share: float, base_ndcg: float, direction: int,
           min_ndcg_ratio: float = 0.8) -> dict:
  """The control for attribute g in one direction (+1 promote, -1 suppress).

  Returns `{"control": Control, "gain": float, "candidates": {latent: gain}}` (gains measured
  on the selection users).
  """
  signed = [s for s in strengths if np.sign(s) == direction]
  curves = {}

  def measure(control):
    results = [sweep(control, s) for s in signed]
    return [r[0][g] for r in results], [r[1] for r in results]

  for latent in candidates:
    curves[Control.single(latent)] = measure(Control.single(latent))
  scores = {c: gain(*curves[c], signed, base_share=base_share, base_ndcg=base_ndcg,
                    direction=direction, min_ndcg_ratio=min_ndcg_ratio) for c in curves}
  ranked = sorted(scores, key=lambda c: -scores[c])
  if len(ranked) >= 2 and np.isfinite(scores[ranked[1]]) and scores[ranked[1]] > 0:
    top_two = ranked[:2]
    weights = np.array([scores[c] for c in top_two]) / scores[top_two[0]]
    pair = Control(tuple(c.latents[0] for c in top_two), tuple(float(w) for w in weights))
    curves[pair] = measure(pair)
    scores[pair] = gain(*curves[pair], signed, base_share=base_share, base_ndcg=base_ndcg,
                        direction=direction, min_ndcg_ratio=min_ndcg_ratio)
  best = max(scores, key=lambda c: scores[c])
  if not np.isfinite(scores[best]):
    best = max(curves, key=lambda c: _fallback_score(*curves[c], signed, base_share, base_ndcg,
                                                     direction))
  return {"control": best, "gain": float(scores[best]),
          "candidates": {int(c.latents[0]): float(v) for c, v in scores.items()
                         if len(c.latents) == 1}}


def choose_all(sweep: SweepFn, candidates: Mapping[str, Sequence[int]], names: Sequence[str],
               strengths: Sequence[float], *, base_shares: np.ndarray, base_ndcg: float,
               min_ndcg_ratio: float = 0.8) -> dict[str, dict]:
  """`{name: {"promote": choice, "suppress": choice}}` for every attribute in `candidates`."""
  out = {}
  for name, latents in candidates.items():
    g = list(names).index(name)
    out[name] = {direction_name: choose(sweep, latents, g, strengths, base_share=base_shares[g],
                                        base_ndcg=base_ndcg, direction=direction,
                                        min_ndcg_ratio=min_ndcg_ratio)
                 for direction_name, direction in (("promote", 1), ("suppress", -1))}
  return out
