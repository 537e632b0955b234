"""Item attributes the data holds without labels files: popularity groups and release decades.

Each family is a bool multi-hot over items with its own attribute names, built to sit beside the
genres in `ItemAttributes` (`with_derived_attributes`) so that interpretation and steering treat
them like any other attribute:

* `popularity:head`, `popularity:tail`: from the training interaction counts
  (`train_item_counts`), see `popularity_groups` for the cut;
* `decade:1920s`, `decade:1930s`, ...: from `ItemAttributes.release_years` (MovieLens only), see
  `release_decades`.

`family_of(name)` tells the families apart by the name's prefix.
"""

from __future__ import annotations

import dataclasses
import fractions
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from seqrec_jax.data.containers import ItemAttributes

if TYPE_CHECKING:
  from seqrec_jax.data.splits import Split


FAMILIES = ("genre", "popularity", "decade")
DERIVED_FAMILIES = ("popularity", "decade")
POPULARITY_NAMES = ("popularity:head", "popularity:tail")


def family_of(name: str) -> str:
  """`"popularity"` for `popularity:*`, `"decade"` for `decade:*`, else `"genre"`."""
  for family in DERIVED_FAMILIES:
    if name.startswith(family + ":"):
      return family
  return "genre"


def train_item_counts(split: Split, num_items: int) -> np.ndarray:
  """int64 [V], how often each item occurs in the recommender's training sequences.

  `split.train`: the training users' sequences (temporal protocol) or every user's sequence
  without its last two items (leave-one-out); never the SAE or test users' items.
  """
  return np.bincount(split.train.items, minlength=num_items).astype(np.int64)


def _exact_share(share: float) -> fractions.Fraction:
  """`share` as the decimal it prints as (0.2 is 1/5), so that the cut is exact in integers."""
  return fractions.Fraction(repr(float(share))).limit_denominator(10**6)


def popularity_groups(train_item_counts: np.ndarray, share: float = 0.2,
                      ) -> tuple[np.ndarray, tuple[str, str]]:
  """The most and the least interacted items, each holding about `share` of the interactions.

  Items 1..V-1 are ranked by training count, most first; equal counts rank the lower item id
  first. With T the total count (item 0 excluded):

  * head: the shortest run from the top of the ranking whose counts sum to at least
    `share` * T (the smallest set of items holding that share; it holds less than one item's
    count more);
  * tail: the longest run from the bottom of the ranking whose counts sum to at most
    `share` * T (it holds less than one item's count less). Items never seen in training
    (count 0) rank last, so they are always in the tail.

  Items between the two runs are in neither group; item 0 (padding) is in neither. For
  `share` <= 0.5 the groups never overlap. `share` is read as the decimal it prints as (0.2 is
  1/5) and the sums are compared in integers, so a cut that lands exactly on `share` * T is
  exact.

  Args:
    train_item_counts: int [V] interactions per item in the training sequences; entry 0 is
      ignored.
    share: the fraction of training interactions each group holds, in (0, 0.5].

  Returns:
    multi_hot: bool [V, 2], columns head and tail; names: `POPULARITY_NAMES`.
  """
  counts = np.asarray(train_item_counts)
  if counts.ndim != 1 or counts.dtype.kind not in "iu" or len(counts) < 1:
    raise ValueError(f"train_item_counts must be a 1-d integer array, found {counts.dtype} "
                     f"{counts.shape}")
  if not 0 < share <= 0.5:
    raise ValueError(f"share must be in (0, 0.5], found {share}")
  counts = counts[1:].astype(np.int64)
  if (counts < 0).any():
    raise ValueError("train_item_counts must be non-negative")
  ratio = _exact_share(share)
  num, den = ratio.numerator, ratio.denominator
  total = int(counts.sum())
  order = np.lexsort((np.arange(len(counts)), -counts))  # count descending, then id ascending
  # Python integers (object arrays) keep `sum * den` vs `num * total` exact at any size.
  from_top = np.cumsum(counts[order]).astype(object) * den
  num_head = int(np.argmax(from_top >= num * total)) + 1 if total else 0
  from_bottom = np.cumsum(counts[order[::-1]]).astype(object) * den
  num_tail = int(np.sum(from_bottom <= num * total))
  multi_hot = np.zeros((len(counts) + 1, 2), dtype=bool)
  multi_hot[order[:num_head] + 1, 0] = True
  multi_hot[order[len(order) - num_tail:] + 1, 1] = True
  return multi_hot, POPULARITY_NAMES


def release_decades(release_years: np.ndarray, min_items: int = 1,
                    ) -> tuple[np.ndarray, tuple[str, ...]]:
  """Release decades as attributes: `decade:1990s` holds the items released 1990-1999.

  Args:
    release_years: int [V], 0 where unknown (always entry 0, the padding).
    min_items: a decade becomes a column only if at least this many items have it (ML-100k has
      2 items of the 1920s, 29 of the 1930s).

  Returns:
    multi_hot: bool [V, D], one column per decade that occurs (in `min_items` items or more),
    in time order; items of unknown year are in none. names: [D] `("decade:1920s", ...)`.
  """
  years = np.asarray(release_years)
  if years.ndim != 1 or years.dtype.kind not in "iu":
    raise ValueError(f"release_years must be a 1-d integer array, found {years.dtype} "
                     f"{years.shape}")
  decade = np.where(years > 0, years // 10 * 10, 0)
  decade[:1] = 0
  present, size = np.unique(decade[decade > 0], return_counts=True)
  present = present[size >= min_items]
  multi_hot = decade[:, None] == present[None, :]
  return multi_hot, tuple(f"decade:{d}s" for d in present.tolist())


def with_derived_attributes(attributes: ItemAttributes, train_item_counts: np.ndarray | None,
                            families: Sequence[str] = DERIVED_FAMILIES,
                            popularity_share: float = 0.2,
                            decade_min_items: int = 1) -> ItemAttributes:
  """The attributes followed by the derived families' columns, titles and years unchanged.

  Args:
    attributes: the dataset's (genre) attributes, `multi_hot` bool [V, G].
    train_item_counts: int [V] training interactions per item (`train_item_counts`); only read
      for "popularity" (may be None without it).
    families: which derived families to add, in this order, from `DERIVED_FAMILIES`. "decade"
      adds columns only where the data has years (`attributes.release_years` not None, some
      known); otherwise it adds none.
    popularity_share: `popularity_groups`' `share`.
    decade_min_items: `release_decades`' `min_items`.

  Returns:
    `ItemAttributes` with `multi_hot` bool [V, G + 2 + D] (for both families), names the genre
    names then `popularity:head`, `popularity:tail`, then `decade:YYYYs` in time order.
  """
  unknown = [f for f in families if f not in DERIVED_FAMILIES]
  if unknown or len(set(families)) != len(families):
    raise ValueError(f"families must be distinct names from {DERIVED_FAMILIES}, found "
                     f"{tuple(families)}")
  already = [n for n in attributes.names if family_of(n) != "genre"]
  if already:
    raise ValueError(f"attributes already hold derived families ({already[0]!r}, ...)")
  num_items = attributes.multi_hot.shape[0]
  blocks, names = [attributes.multi_hot], list(attributes.names)
  for family in families:
    if family == "popularity":
      shape = None if train_item_counts is None else np.shape(train_item_counts)
      if shape != (num_items,):
        raise ValueError(f"train_item_counts must have shape ({num_items},) for popularity, "
                         f"found {shape}")
      multi_hot, new = popularity_groups(train_item_counts, popularity_share)
    elif attributes.release_years is not None:
      multi_hot, new = release_decades(attributes.release_years, decade_min_items)
    else:
      continue
    blocks.append(multi_hot)
    names.extend(new)
  return dataclasses.replace(attributes, multi_hot=np.concatenate(blocks, axis=1),
                             names=tuple(names))
