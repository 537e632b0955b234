"""Tests of the planted-genre generator."""

from __future__ import annotations

import numpy as np
import pytest

from seqrec_jax.data.synthetic import make_synthetic, make_synthetic_with_truth

SMALL = dict(num_users=300, num_items=200, num_genres=6, min_len=10, max_len=30)


@pytest.fixture(scope="module")
def planted():
  return make_synthetic_with_truth(seed=0, **SMALL)


def test_same_seed_same_data_other_seed_other_data():
  a, b, c = (make_synthetic(seed=s, **SMALL) for s in (1, 1, 2))
  for field in ("offsets", "items", "timestamps"):
    assert np.array_equal(getattr(a.interactions, field), getattr(b.interactions, field))
  assert np.array_equal(a.attributes.multi_hot, b.attributes.multi_hot)
  assert not np.array_equal(a.interactions.items[:200], c.interactions.items[:200])


def test_shapes_ids_and_names(planted):
  ds, truth = planted
  x, a = ds.interactions, ds.attributes
  assert ds.name == "synthetic"
  assert x.num_users == 300 and x.num_items == 201
  assert x.items.dtype == np.int32 and x.offsets.dtype == np.int64
  assert x.items.min() >= 1 and x.items.max() <= 200
  assert np.all((x.lengths >= 10) & (x.lengths <= 30))
  assert a.multi_hot.shape == (201, 6) and not a.multi_hot[0].any()
  assert a.multi_hot[1:].any(axis=1).all()
  assert a.names == tuple(f"genre_{g:02d}" for g in range(6))
  assert x.item_ids[0] == "<pad>" and x.item_ids[1] == "item_0001" and a.titles[7] == "item_0007"
  assert truth.item_genre[0] == -1
  assert a.multi_hot[np.arange(1, 201), truth.item_genre[1:]].all()
  assert len(truth.interaction_genre) == x.num_interactions


def test_defaults_use_every_item():
  ds = make_synthetic()
  x = ds.interactions
  assert (x.num_users, x.num_items) == (1000, 401)
  assert len(np.unique(x.items)) == x.num_items - 1


def test_no_repeats_and_increasing_times(planted):
  x = planted[0].interactions
  for u in range(x.num_users):
    seq = x.sequence(u)
    assert len(np.unique(seq)) == len(seq)
    assert np.all(np.diff(x.timestamps[x.offsets[u]:x.offsets[u + 1]]) > 0)


def test_users_start_at_staggered_times(planted):
  x = planted[0].interactions
  first = x.timestamps[x.offsets[:-1]]
  last = x.timestamps[x.offsets[1:] - 1]
  assert np.ptp(first) > 100 * 86400  # spread over months
  # A global temporal cut-off leaves users on both sides and some spanning it.
  cut = np.quantile(last, 0.9)
  assert 0 < np.mean(last > cut) < 0.2 and np.mean(first > cut) < np.mean(last > cut)


def test_sequences_are_dominated_by_preferred_genres(planted):
  ds, truth = planted
  x = ds.interactions
  user = x.user_index()
  in_preferred = truth.user_genres[user, truth.item_genre[x.items]]
  assert in_preferred.mean() > 0.9
  per_user = np.bincount(user, weights=in_preferred) / x.lengths
  assert np.median(per_user) > 0.9
  # Far above chance: a user prefers at most half the genres.
  assert truth.user_genres.sum(axis=1).max() <= 3
  assert truth.user_genres.sum(axis=1).min() >= 1
  # The chain's genre matches the drawn item's genres.
  assert ds.attributes.multi_hot[x.items, truth.interaction_genre].all()


def test_genre_chain_is_sticky(planted):
  ds, truth = planted
  x = ds.interactions
  g = truth.interaction_genre
  same_user = np.ones(len(g) - 1, dtype=bool)
  same_user[x.offsets[1:-1] - 1] = False
  multi = truth.user_genres.sum(axis=1)[x.user_index()[1:]] > 1
  stay = (g[1:] == g[:-1])[same_user & multi].mean()
  assert 0.7 < stay < 0.9  # stay_prob = 0.8


def test_popularity_is_skewed_within_genres(planted):
  ds, truth = planted
  counts = np.bincount(ds.interactions.items, minlength=ds.interactions.num_items)[1:]
  genre = truth.item_genre[1:]
  top_shares = []
  for g in range(6):
    c = np.sort(counts[genre == g])[::-1]
    top_shares.append(c[:len(c) // 5].sum() / c.sum())
  assert np.mean(top_shares) > 0.3  # top 20% of a genre's items take > 30% of its plays


@pytest.mark.parametrize("kwargs", [dict(min_len=1), dict(max_len=500), dict(min_user_genres=0),
                                    dict(max_user_genres=9), dict(stay_prob=1.5)])
def test_invalid_arguments(kwargs):
  with pytest.raises(ValueError):
    make_synthetic(**{**SMALL, **kwargs})
