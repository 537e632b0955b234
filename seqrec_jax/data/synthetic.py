"""Synthetic sequences with planted genres: the ground truth for interpretation tests.

The generative story (all draws from one `np.random.default_rng(seed)`):

1. Items 1..num_items each get one primary genre (genres are balanced: item counts per genre
   differ by at most one) and, with probability `second_genre_prob`, a second, different genre.
2. Within each genre, items have Zipf-like popularity: weight `1 / rank**popularity_exponent`
   for a random ranking. An item counts for its second genre with half its weight.
3. Each user prefers `min_user_genres..max_user_genres` distinct genres (uniform).
4. A user's sequence is a Markov chain over their preferred genres: the first genre is uniform
   among them; at each later step the chain stays with probability `stay_prob`, else moves to
   another preferred genre (a user with one preferred genre always stays). Each step draws an
   item of the current genre by popularity, never one the user already has (so seen-item
   filtering never hides a target); if the genre is exhausted, from the user's other preferred
   genres, then from any genre.
5. Lengths are uniform in `min_len..max_len`. Users start at staggered times spread over
   `start_spread_days`, and each next interaction comes 1 minute to 1 day later, so timestamps
   strictly increase within a user and a global temporal split is meaningful.

Names: genres "genre_00", items "item_0001" (also the titles), users "user_0000".
"""

from __future__ import annotations

import dataclasses

import numpy as np

from seqrec_jax.data.containers import PAD_TOKEN, Dataset, Interactions, ItemAttributes

_BASE_TIME = 1_577_836_800  # 2020-01-01T00:00:00Z, so timestamps look like real epoch seconds


@dataclasses.dataclass(frozen=True)
class PlantedTruth:
  """What the generator planted, aligned with the returned `Dataset`.

  Attributes:
    item_genre: int32 [V], each item's primary genre; -1 for padding.
    user_genres: bool [num_users, G], each user's preferred genres.
    interaction_genre: int32 [num_interactions], the chain's genre at each interaction
      (aligned with `Interactions.items`).
  """

  item_genre: np.ndarray
  user_genres: np.ndarray
  interaction_genre: np.ndarray


def _item_genres(rng: np.random.Generator, num_items: int, num_genres: int,
                 second_genre_prob: float, size_exponent: float = 0.0,
                 ) -> tuple[np.ndarray, np.ndarray]:
  """Primary genre int64 [num_items] and membership bool [num_items, G] (primary + second).

  Genre g holds a share of the items proportional to 1 / (g + 1) ** size_exponent (0: balanced,
  counts differing by at most one; every genre keeps at least one item).
  """
  if size_exponent:
    share = (np.arange(num_genres) + 1.0) ** -size_exponent
    counts = np.maximum(1, np.floor(share / share.sum() * num_items)).astype(np.int64)
    counts[0] += num_items - counts.sum()
    primary = rng.permutation(np.repeat(np.arange(num_genres), counts))
  else:
    primary = rng.permutation(np.arange(num_items) % num_genres)
  member = np.zeros((num_items, num_genres), dtype=bool)
  member[np.arange(num_items), primary] = True
  has_second = rng.random(num_items) < second_genre_prob
  if num_genres > 1:
    # Adding 1..G-1 to the primary genre (mod G) gives a uniformly drawn different genre.
    second = (primary + rng.integers(1, num_genres, size=num_items)) % num_genres
    member[np.flatnonzero(has_second), second[has_second]] = True
  return primary, member


def _genre_item_weights(rng: np.random.Generator, primary: np.ndarray, member: np.ndarray,
                        exponent: float) -> np.ndarray:
  """float64 [G, num_items]: popularity of each item within each genre (0 if not a member)."""
  num_items, num_genres = member.shape
  weight = np.zeros(num_items)
  for g in range(num_genres):  # loops over genres
    items = np.flatnonzero(primary == g)
    ranks = rng.permutation(len(items)) + 1
    weight[items] = ranks.astype(np.float64) ** -exponent
  is_primary = np.zeros_like(member)
  is_primary[np.arange(num_items), primary] = True
  return (weight[:, None] * np.where(is_primary, 1.0, 0.5) * member).T


def _user_genres(rng: np.random.Generator, num_users: int, num_genres: int, low: int,
                 high: int) -> np.ndarray:
  """bool [num_users, G]: a uniform number in low..high of distinct preferred genres each."""
  counts = rng.integers(low, high + 1, size=num_users)
  ranks = np.argsort(rng.random((num_users, num_genres)), axis=1)
  chosen = np.zeros((num_users, num_genres), dtype=bool)
  np.put_along_axis(chosen, ranks, np.arange(num_genres)[None, :] < counts[:, None], axis=1)
  return chosen


def _draw(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
  """int64 [n]: one index per row of `weights` [n, k] (rows with positive sum)."""
  cdf = np.cumsum(weights, axis=1)
  u = rng.random(len(weights)) * cdf[:, -1]
  return np.argmax(cdf > u[:, None], axis=1)


def _sequences(rng: np.random.Generator, user_genres: np.ndarray, genre_weights: np.ndarray,
               primary: np.ndarray, length: int, stay_prob: float,
               ) -> tuple[np.ndarray, np.ndarray]:
  """Items int64 [num_users, length] (0-based) and the chain's genres int64 [num_users, length].

  When a user has seen every item of the current genre the item comes from the fallback and the
  chain moves to that item's primary genre, so `genres` always names the genre drawn from.
  """
  num_users, num_genres = user_genres.shape
  num_items = genre_weights.shape[1]
  rows = np.arange(num_users)
  seen = np.zeros((num_users, num_items), dtype=bool)
  items = np.zeros((num_users, length), dtype=np.int64)
  genres = np.zeros((num_users, length), dtype=np.int64)
  genre = _draw(rng, user_genres.astype(np.float64))
  preferred_weights = user_genres.astype(np.float64) @ genre_weights  # [num_users, num_items]
  for t in range(length):  # loops over positions, vectorised over users
    if t > 0:
      others = user_genres.copy()
      others[rows, genre] = False
      move = (rng.random(num_users) >= stay_prob) & others.any(axis=1)
      # The draw runs for all users so that the random stream does not depend on `move`.
      new_genre = _draw(rng, np.where(others.any(axis=1, keepdims=True), others, 1.0))
      genre = np.where(move, new_genre, genre)
    w = genre_weights[genre] * ~seen
    exhausted = w.sum(axis=1) <= 0
    if exhausted.any():
      fallback = np.where(preferred_weights > 0, preferred_weights, 0.0) * ~seen
      fallback = np.where(fallback.sum(axis=1, keepdims=True) > 0, fallback,
                          (~seen).astype(np.float64))
      w = np.where(exhausted[:, None], fallback, w)
    item = _draw(rng, w)
    genre = np.where(exhausted, primary[item], genre)
    seen[rows, item] = True
    items[:, t] = item
    genres[:, t] = genre
  return items, genres


def make_synthetic_with_truth(
    *,
    num_users: int = 1000,
    num_items: int = 400,
    num_genres: int = 8,
    min_len: int = 20,
    max_len: int = 50,
    min_user_genres: int = 1,
    max_user_genres: int = 3,
    stay_prob: float = 0.8,
    second_genre_prob: float = 0.1,
    popularity_exponent: float = 1.0,
    genre_size_exponent: float = 0.0,
    start_spread_days: float = 365.0,
    seed: int = 0,
) -> tuple[Dataset, PlantedTruth]:
  """Generates the planted-genre dataset (see the module docstring) and what was planted.

  Args:
    num_users: number of users.
    num_items: number of real items; V = num_items + 1 with 0 the padding id.
    num_genres: G.
    min_len, max_len: sequence length range (inclusive); 2 <= min_len <= max_len <= num_items.
    min_user_genres, max_user_genres: range of the number of genres each user prefers.
    stay_prob: probability that the chain keeps its genre at each step.
    second_genre_prob: probability that an item also carries a second genre.
    popularity_exponent: Zipf exponent of item popularity within a genre.
    genre_size_exponent: genre g holds items in proportion to 1 / (g + 1) ** this (0: balanced).
    start_spread_days: users' first interactions are spread uniformly over this many days.
    seed: the only source of randomness.

  Returns:
    (dataset, truth). The dataset's attributes carry every item's genres (primary and second).
  """
  if not 2 <= min_len <= max_len <= num_items:
    raise ValueError(f"need 2 <= min_len <= max_len <= num_items, found min_len={min_len}, "
                     f"max_len={max_len}, num_items={num_items}")
  if not 1 <= min_user_genres <= max_user_genres <= num_genres:
    raise ValueError(f"need 1 <= min_user_genres <= max_user_genres <= num_genres, found "
                     f"{min_user_genres}, {max_user_genres}, {num_genres}")
  if num_users < 1 or not 0.0 <= stay_prob <= 1.0 or not 0.0 <= second_genre_prob <= 1.0:
    raise ValueError("need num_users >= 1 and probabilities in [0, 1]")
  rng = np.random.default_rng(seed)
  primary, member = _item_genres(rng, num_items, num_genres, second_genre_prob,
                                 genre_size_exponent)
  genre_weights = _genre_item_weights(rng, primary, member, popularity_exponent)
  user_genres = _user_genres(rng, num_users, num_genres, min_user_genres, max_user_genres)
  items, genres = _sequences(rng, user_genres, genre_weights, primary, max_len, stay_prob)
  lengths = rng.integers(min_len, max_len + 1, size=num_users)
  keep = np.arange(max_len)[None, :] < lengths[:, None]

  start = _BASE_TIME + rng.uniform(0, start_spread_days * 86400, size=num_users).astype(np.int64)
  gaps = rng.integers(60, 86400, size=(num_users, max_len), endpoint=True)
  gaps[:, 0] = 0
  times = start[:, None] + np.cumsum(gaps, axis=1)

  offsets = np.zeros(num_users + 1, dtype=np.int64)
  np.cumsum(lengths, out=offsets[1:])
  width = max(4, len(str(num_items)))
  item_ids = np.array([PAD_TOKEN] + [f"item_{i:0{width}d}" for i in range(1, num_items + 1)])
  user_width = max(4, len(str(num_users - 1)))
  interactions = Interactions(
      offsets=offsets,
      items=(items[keep] + 1).astype(np.int32),
      timestamps=times[keep].astype(np.int64),
      num_items=num_items + 1,
      user_ids=np.array([f"user_{u:0{user_width}d}" for u in range(num_users)]),
      item_ids=item_ids,
  )
  multi_hot = np.concatenate([np.zeros((1, num_genres), dtype=bool), member])
  attributes = ItemAttributes(multi_hot=multi_hot,
                              names=tuple(f"genre_{g:02d}" for g in range(num_genres)),
                              titles=item_ids.copy())
  truth = PlantedTruth(
      item_genre=np.concatenate([[-1], primary]).astype(np.int32),
      user_genres=user_genres,
      interaction_genre=genres[keep].astype(np.int32),
  )
  return Dataset(name="synthetic", interactions=interactions, attributes=attributes), truth


def make_synthetic(**options) -> Dataset:
  """The planted-genre dataset alone; `options` are `make_synthetic_with_truth`'s arguments."""
  return make_synthetic_with_truth(**options)[0]
