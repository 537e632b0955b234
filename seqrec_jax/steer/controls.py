"""Choosing each attribute's control by its measured effect, on the selection users only.

An attribute carried by no item of any unedited top 10 on the selection users gets no control
(`steerable`): no edit could be measured to move it. For every other attribute g the candidates
are

* single latents: those whose logit effect lifts g's items the most
  (`steer.effects.attribute_effect`, a first-order estimate measured on the selection users),
  plus its best latents by AUC and by correlation there (`candidate_latents`);
* a small weighted set of latents solved from the measured logit effects (`solved_control`):
  nonnegative weights over the top latents by effect whose combined effect on the item scores
  best matches "g's items up, every other item level";
* the two best single latents together, weighted by their scores.

Each candidate is swept over the positive strengths (to promote g) and over the negative ones
(to suppress it) on the selection users, and scored at its *operating point* (`operating_point`):
among the strengths of that sign keeping NDCG@10 at least `min_ndcg_ratio` of the unsteered
value, the largest change of g's top-10 share in the wanted direction (its *gain*) at a strength
where the knob is selective (`specificity.selectivity` >= 1: it moves g more, relatively, than
any other attribute of its family). A candidate with a selective operating point beats every
candidate without one; among those without, the score is gain x selectivity (clipped to [0, 1]),
so gain alone never decides. Where no candidate keeps NDCG@10 high enough, the one with the
largest gain per unit of NDCG@10 lost at the smallest strength wins.

Attributes are chosen independently, so two attributes share a control only when the same
control is measured best for both (`shared_controls` names them).

Nothing here reads the test users: the evaluation arrays, statistics and typical activations
passed in come from the selection users.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from scipy import optimize

from seqrec_jax.steer import specificity
from seqrec_jax.steer.methods import Control

# Latents (the top by logit effect) a weighted control is solved over. A constant, not a config
# field: steer records written before it existed stay current.
SOLVED_LATENTS = 8

# (control, signed strength) -> (share of each attribute in the top 10 [G], NDCG@10)
SweepFn = Callable[[Control, float], tuple[np.ndarray, float]]


def steerable(base_shares: np.ndarray, names: Sequence[str]) -> tuple[list[str], list[str]]:
  """`(with a control, without)`: attributes whose unedited top-10 share on the selection users
  (`base_shares[G]`) is positive, and those carried by no listed item."""
  shares = np.asarray(base_shares)
  return ([n for n, v in zip(names, shares) if v > 0], [n for n, v in zip(names, shares) if v <= 0])


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


def solved_control(logit_effect: np.ndarray, attribute_effect: np.ndarray, attributes: np.ndarray,
                   g: int, num: int = SOLVED_LATENTS,
                   item_weights: np.ndarray | None = None) -> Control | None:
  """A nonnegative weighted set of the `num` latents lifting attribute g most, solved so that
  their combined logit effect matches g's items lifted over every other item.

  Weighted nonnegative least squares over the real items v (weights `item_weights[V]`, default
  1): min_{w >= 0} sum_v c_v (sum_j w_j E~[j, v] - y~_v)^2, with E~ each latent's effect
  `logit_effect[M, V]` and y~ the indicator of g (`attributes[V, G]`), both centred by their
  weighted means (a uniform shift of the scores ranks nothing differently). The weights are then
  scaled so that the set's predicted lift of g (`attribute_effect[M, G]`) equals the best single
  latent's, which keeps strengths comparable with single-latent controls. None when fewer than
  two latents lift g or the solution keeps fewer than two.
  """
  lift = np.nan_to_num(np.asarray(attribute_effect, np.float64)[:, g], nan=-np.inf)
  top = [int(j) for j in np.argsort(-lift, kind="stable")[:num] if lift[j] > 0]
  if len(top) < 2:
    return None
  effect = np.asarray(logit_effect, np.float64)[top, 1:]  # [K, V-1], item 0 is padding
  target = np.asarray(attributes, np.float64)[1:, g]
  c = np.ones(effect.shape[1]) if item_weights is None else np.asarray(item_weights, np.float64)[1:]
  if not np.isfinite(effect).all() or c.sum() <= 0:
    return None
  c = c / c.sum()
  effect = effect - (effect @ c)[:, None]
  target = target - target @ c
  root = np.sqrt(c)
  w, _ = optimize.nnls(effect.T * root[:, None], target * root)
  keep = w > 1e-6 * max(w.max(), 0.0)
  if keep.sum() < 2:
    return None
  w = w * lift[top[0]] / float(w @ lift[top])
  return Control(tuple(np.asarray(top)[keep].tolist()), tuple(float(v) for v in w[keep]))


def operating_point(shares: np.ndarray, ndcgs: Sequence[float], strengths: Sequence[float], g: int,
                    *, base_shares: np.ndarray, base_ndcg: float, direction: int,
                    min_ndcg_ratio: float, peers: np.ndarray | None = None) -> dict:
  """A swept candidate's score (module docstring) from `shares[S, G]`, `ndcgs[S]` at the
  `strengths[S]`; `peers[G]` the attributes selectivity compares g with (default all others).

  Returns `{"score": (selective, value), "gain", "selectivity", "strength", "max_gain"}`:
  `selective` 1 when some eligible strength has selectivity >= 1 (then `value` is the largest
  gain among those), else 0 (`value` the largest gain x clip(selectivity, 0, 1), or the gain
  where it is not positive); `max_gain` the largest gain whatever the selectivity (-inf, and a
  score of (0, -inf), when no strength of the direction keeps NDCG@10).
  """
  best = {"score": (0, -np.inf), "gain": -np.inf, "selectivity": None, "strength": None,
          "max_gain": -np.inf}
  if not len(strengths):
    return best
  shares = np.asarray(shares, np.float64).reshape(len(strengths), -1)
  for row, ndcg, strength in zip(shares, ndcgs, strengths):
    if np.sign(strength) != direction or ndcg < min_ndcg_ratio * base_ndcg:
      continue
    gained = float(direction * (row[g] - base_shares[g]))
    sel = specificity.selectivity(row, base_shares, g, direction, peers=peers)
    selective = int(sel >= 1.0 and gained > 0)
    value = gained if selective or gained <= 0 else gained * min(max(sel, 0.0), 1.0)
    best["max_gain"] = max(best["max_gain"], gained)
    if (selective, value) > best["score"]:
      best.update(score=(selective, value), gain=gained, selectivity=sel, strength=float(strength))
  return best


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
           base_shares: np.ndarray, base_ndcg: float, direction: int,
           min_ndcg_ratio: float = 0.8, solved: Sequence[Control] = (),
           peers: np.ndarray | None = None) -> dict:
  """The control for attribute g in one direction (+1 promote, -1 suppress).

  `candidates` are single latents, `solved` weighted sets (`solved_control`); `base_shares[G]`
  the unedited top-10 shares of every attribute, `peers[G]` those selectivity compares g with
  (`specificity.peer_mask(names)[g]`; default every other attribute). Returns `{"control":
  Control, "kind": "single" | "solved" | "pair", "gain": float, "selectivity": float | None, "strength": float | None,
  "candidates": {latent: gain}, "candidate_selectivity": {latent: selectivity}}`: the chosen
  control's operating point and every single latent's (measured on the selection users).
  """
  base_shares = np.asarray(base_shares, np.float64)
  signed = [s for s in strengths if np.sign(s) == direction]
  curves, points, kinds = {}, {}, {}

  def measure(control, kind):
    if control in curves:
      return
    results = [sweep(control, s) for s in signed]
    curves[control] = (np.array([np.asarray(r[0], np.float64) for r in results]).reshape(
        len(results), len(base_shares)), [r[1] for r in results])
    points[control] = operating_point(*curves[control], signed, g, base_shares=base_shares,
                                      base_ndcg=base_ndcg, direction=direction,
                                      min_ndcg_ratio=min_ndcg_ratio, peers=peers)
    kinds[control] = kind

  for latent in candidates:
    measure(Control.single(latent), "single")
  ranked = sorted(curves, key=lambda c: points[c]["score"], reverse=True)
  if len(ranked) >= 2 and np.isfinite(points[ranked[1]]["score"][1]) and \
      points[ranked[1]]["score"][1] > 0 and points[ranked[0]]["score"][1] > 0:
    top_two = ranked[:2]
    weights = np.array([points[c]["score"][1] for c in top_two]) / points[top_two[0]]["score"][1]
    measure(Control(tuple(c.latents[0] for c in top_two), tuple(float(w) for w in weights)),
            "pair")
  for control in solved:
    measure(control, "solved")
  best = max(curves, key=lambda c: points[c]["score"])
  if not np.isfinite(points[best]["score"][1]):
    best = max(curves, key=lambda c: _fallback_score(curves[c][0][:, g], curves[c][1], signed,
                                                     base_shares[g], base_ndcg, direction))
  singles = [c for c in curves if kinds[c] == "single"]
  return {"control": best, "kind": kinds[best], "gain": float(points[best]["gain"]),
          "selectivity": points[best]["selectivity"], "strength": points[best]["strength"],
          "candidates": {int(c.latents[0]): float(points[c]["max_gain"]) for c in singles},
          "candidate_selectivity": {int(c.latents[0]): points[c]["selectivity"] for c in singles}}


def choose_all(sweep: SweepFn, candidates: Mapping[str, Sequence[int]], names: Sequence[str],
               strengths: Sequence[float], *, base_shares: np.ndarray, base_ndcg: float,
               min_ndcg_ratio: float = 0.8,
               solved: Mapping[str, Sequence[Control]] | None = None) -> dict[str, dict]:
  """`{name: {"promote": choice, "suppress": choice}}` for every attribute in `candidates`;
  selectivity compares each attribute with the others of its family (`specificity.peer_mask`)."""
  out = {}
  peers = specificity.peer_mask(names)
  for name, latents in candidates.items():
    g = list(names).index(name)
    out[name] = {direction_name: choose(sweep, latents, g, strengths, base_shares=base_shares,
                                        base_ndcg=base_ndcg, direction=direction,
                                        min_ndcg_ratio=min_ndcg_ratio,
                                        solved=(solved or {}).get(name, ()), peers=peers[g])
                 for direction_name, direction in (("promote", 1), ("suppress", -1))}
  return out


def shared_controls(controls: Mapping[str, Mapping[str, Control]]) -> dict[str, list[list[str]]]:
  """`{direction: [[name, name, ...], ...]}`: the groups of attributes whose chosen control in
  that direction is the same (each was measured best for every attribute of its group)."""
  out = {}
  for direction in ("promote", "suppress"):
    groups: dict[Control, list[str]] = {}
    for name, c in controls.items():
      if direction in c:
        groups.setdefault(c[direction], []).append(name)
    out[direction] = [names for names in groups.values() if len(names) > 1]
  return out


def random_latents(fire_rate: np.ndarray, names: Sequence[str], all_names: Sequence[str],
                   seed: int) -> dict[str, int]:
  """`{name: latent}`: for each attribute a latent drawn uniformly among those that fire on the
  selection users (`fire_rate[M] > 0`), seeded by `seed` and the attribute's index in
  `all_names` (the same draw whatever other attributes exist)."""
  alive = np.flatnonzero(np.asarray(fire_rate) > 0)
  if not len(alive):
    alive = np.arange(len(fire_rate))
  return {name: int(np.random.default_rng([int(seed), list(all_names).index(name)]).choice(alive))
          for name in names}
