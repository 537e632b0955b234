"""Does a knob move its own attribute most? Selectivity and the precision of the items it brings in.

For attribute a with top-10 share b_a unedited and s_a edited, its *relative gain* is

    r_a = (s_a - b_a) / (b_a + 1/k),

the relative change of its share with the baseline smoothed by one recommended item per list
(1/k of the share): an attribute absent from every unedited list (b_a = 0) that gains one item
per ten lists (s_a = 0.01) gains 0.1, not infinity, so rare attributes cannot fake large gains.
r_a lies in [-1, k] whatever the shares.

A knob for target g at strength s is compared in its own direction d = sign(s) (+1 at 0):

    selectivity = d r_g / max(max_{a in peers(g)} d r_a, MIN_GAIN),

the target's relative gain over the largest relative gain of any other attribute of its family
(`peer_mask`: a genre against the other genres, `decade:1990s` against the other decades,
`popularity:tail` against `popularity:head`; families by `data.derived.family_of`): >= 1 when the
knob moves its own attribute most (promoting it for s > 0; for s < 0, suppressing it more than
any other). The denominator is floored at `MIN_GAIN` (a 1 % relative gain), which keeps the value
finite (JSON holds it) and bounded (|selectivity| <= k / MIN_GAIN) when no other attribute
moves the knob's way; a knob that moves nothing has selectivity 0. Comparing within a family
keeps a question about genres about genres: a Sci-Fi knob that brings in 1970s films has not moved
another genre, and a tail knob necessarily brings in films of some decade.

`new_item_precision` (`recommender.metrics`): of the items an edit brings into the users' top
10, pooled over users, the fraction that carry the target; compare it with the target's share of
the unedited lists (what a random pick among the listed items would give).
"""

from __future__ import annotations

import numpy as np

from seqrec_jax.data.derived import family_of

MIN_GAIN = 0.01  # the floor of selectivity's denominator, a relative gain


def relative_gain(shares: np.ndarray, base_shares: np.ndarray, k: int = 10) -> np.ndarray:
  """`[..., G]` (s - b) / (b + 1/k) for edited `shares[..., G]` and unedited `base_shares[G]`."""
  base = np.asarray(base_shares, np.float64)
  return (np.asarray(shares, np.float64) - base) / (base + 1.0 / k)


def peer_mask(names) -> np.ndarray:
  """`[G, G]` bool: `[g, a]` when attribute a is another attribute of g's family."""
  families = np.array([family_of(str(n)) for n in names])
  return (families[:, None] == families[None, :]) & ~np.eye(len(families), dtype=bool)


def selectivity(shares: np.ndarray, base_shares: np.ndarray, g: int, direction: int = 1,
                k: int = 10, peers: np.ndarray | None = None) -> float:
  """The knob for attribute g's selectivity (module docstring) from `shares[G]`, `base_shares[G]`;
  `direction` is the sign of the strength (+1 promote, -1 suppress); `peers[G]` (bool) the
  attributes compared with (`peer_mask(names)[g]`; default every other attribute)."""
  d = -1.0 if direction < 0 else 1.0
  gains = d * relative_gain(shares, base_shares, k)
  others = np.delete(gains, g) if peers is None else gains[np.asarray(peers, bool)]
  largest = others.max() if others.size else -np.inf
  return float(gains[g] / max(largest, MIN_GAIN))


def selectivities(all_shares: dict[str, list[float]], base: dict[str, float], target: str,
                  strengths, k: int = 10) -> list[float]:
  """Selectivity per strength from `all_shares` `{attribute: [share per strength]}` and the
  baseline shares `{attribute: share}`, against the target's family (`peer_mask`)."""
  names = list(all_shares)
  g = names.index(target)
  base_shares = np.array([base[n] for n in names])
  table = np.array([all_shares[n] for n in names]).T  # [S, G]
  peers = peer_mask(names)[g]
  return [selectivity(row, base_shares, g, int(np.sign(s)), k, peers)
          for row, s in zip(table, strengths)]


def finite_or_none(values) -> list[float | None]:
  """JSON-safe floats: NaN (e.g. no new item at strength 0) becomes None."""
  return [float(v) if np.isfinite(v) else None for v in values]
