"""Dataset containers (`Interactions`, `ItemAttributes`, `Dataset`) and how they are built from raw columns."""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np
from absl import logging

from seqrec_jax.core.errors import DataError


PAD_TOKEN = "<pad>"


# ---------------------------------------------------------------------------------------------
# Containers.


@dataclasses.dataclass(frozen=True)
class Interactions:
  """All users' item sequences in CSR form, sorted by time within each user.

  Attributes:
    offsets: int64 [num_users + 1]; user u's interactions are `offsets[u]:offsets[u + 1]`.
    items: int32 [num_interactions], ids in 1..num_items-1 (0 is padding).
    timestamps: int64 [num_interactions], seconds, non-decreasing within each user.
    num_items: V, the size of the item vocabulary including the padding id 0.
    user_ids: str [num_users], the original user ids.
    item_ids: str [V], the original item ids; entry 0 is "<pad>".
  """

  offsets: np.ndarray
  items: np.ndarray
  timestamps: np.ndarray
  num_items: int
  user_ids: np.ndarray
  item_ids: np.ndarray

  @property
  def num_users(self) -> int:
    return len(self.offsets) - 1

  @property
  def num_interactions(self) -> int:
    return int(self.offsets[-1])

  @property
  def lengths(self) -> np.ndarray:
    """int64 [num_users], each user's sequence length."""
    return np.diff(self.offsets)

  def sequence(self, user: int) -> np.ndarray:
    """int32 [length] view of user `user`'s items (row index, not the original id)."""
    return self.items[self.offsets[user]:self.offsets[user + 1]]

  def user_index(self) -> np.ndarray:
    """int64 [num_interactions], the row (user) of each interaction."""
    return np.repeat(np.arange(self.num_users, dtype=np.int64), self.lengths)


@dataclasses.dataclass(frozen=True)
class ItemAttributes:
  """Item attributes aligned with `Interactions.item_ids`.

  Attributes:
    multi_hot: bool [V, G]; row 0 (padding) is all False.
    names: [G] attribute (genre) names.
    titles: str [V]; entry 0 is "<pad>".
    release_years: int32 [V], each item's release year, 0 where unknown (always at the
      padding row); None where the data holds no years (synthetic data, generic CSV). The
      MovieLens readers fill it (see `movielens`); `derived.release_decades` turns it into
      `decade:YYYYs` attributes.
  """

  multi_hot: np.ndarray
  names: tuple[str, ...]
  titles: np.ndarray
  release_years: np.ndarray | None = None

  @property
  def num_attributes(self) -> int:
    return len(self.names)


@dataclasses.dataclass(frozen=True)
class Dataset:
  name: str
  interactions: Interactions
  attributes: ItemAttributes | None


def item_text(dataset, item: int) -> tuple[str, str]:
  """`(title, "Genre, Genre")` of one item."""
  attrs = dataset.attributes
  names = [attrs.names[g] for g in np.flatnonzero(attrs.multi_hot[item])]
  return str(attrs.titles[item]), ", ".join(names)


def default_data_dir() -> pathlib.Path:
  """`$SEQREC_DATA_DIR`, else `~/.cache/seqrec_jax`."""
  env = os.environ.get("SEQREC_DATA_DIR")
  if env:
    return pathlib.Path(env).expanduser()
  return pathlib.Path.home() / ".cache" / "seqrec_jax"


# ---------------------------------------------------------------------------------------------
# Building the arrays from raw columns.


def _token_codes(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Numbers raw id tokens in sorted order.

  Args:
    tokens: [n] integer array, or bytes (`S`) / str (`U`) array of id tokens.

  Returns:
    codes: int64 [n] in 0..k-1; vocab: str [k], the distinct tokens, `vocab[codes] == tokens`.
    The order is numeric if every token is a canonical integer, else lexicographic.
  """
  ints = tokens if tokens.dtype.kind in "iu" else _canonical_ints(tokens)
  if ints is not None:
    codes, uniq = _dense_codes(ints)
    return codes, uniq.astype(str)
  uniq, codes = np.unique(tokens, return_inverse=True)
  if uniq.dtype.kind == "S":
    uniq = np.char.decode(uniq, "utf-8")
  return codes.astype(np.int64).reshape(-1), uniq.astype(str)


def _dense_codes(ints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """`np.unique(ints, return_inverse=True)` reversed: (codes int64 [n], sorted distinct [k]).

  Small non-negative ids (the usual case) are numbered with a presence table in O(n).
  """
  if len(ints) and ints.min() >= 0 and ints.max() <= 4 * len(ints) + 1024:
    present = np.zeros(int(ints.max()) + 1, dtype=bool)
    present[ints] = True
    rank = np.cumsum(present) - 1
    return rank[ints].astype(np.int64), np.flatnonzero(present).astype(ints.dtype)
  uniq, codes = np.unique(ints, return_inverse=True)
  return codes.astype(np.int64).reshape(-1), uniq


def _sort_order(user_codes: np.ndarray, timestamps: np.ndarray) -> np.ndarray | None:
  """int64 [n] stable order by (user, timestamp), or None if the rows are already in it."""
  if timestamps.dtype.kind in "iu" and len(timestamps):
    t0, t1 = int(timestamps.min()), int(timestamps.max())
    span = t1 - t0 + 1
    if (int(user_codes.max()) + 1) * span < 2**62:
      key = user_codes * span + (timestamps - t0)
      if np.all(key[1:] >= key[:-1]):
        return None
      return np.argsort(key, kind="stable")
  order = np.argsort(timestamps, kind="stable")
  return order[np.argsort(user_codes[order], kind="stable")]


def _canonical_ints(tokens: np.ndarray) -> np.ndarray | None:
  """int64 [n] if every token is the canonical text of an integer ("7", "-3"), else None."""
  if len(tokens) == 0:
    return None
  try:
    ints = tokens.astype(np.int64)
  except (ValueError, OverflowError):
    return None
  # int() also accepts "07", " 7", "+7", "7_0"; each is longer than the canonical text.
  magnitude = np.abs(ints)
  digits = np.searchsorted(10 ** np.arange(1, 19, dtype=np.int64), magnitude, side="right") + 1
  canonical_len = digits + (ints < 0)
  if not np.array_equal(np.char.str_len(tokens), canonical_len):
    return None
  return ints


def build_from_columns(users: np.ndarray, items: np.ndarray, timestamps: np.ndarray,
           ) -> tuple[Interactions, np.ndarray]:
  """Raw columns -> `Interactions`, plus str [k] every item token seen before dropping users."""
  n = len(users)
  if not (len(items) == n and len(timestamps) == n):
    raise ValueError(f"columns differ in length: {n}, {len(items)}, {len(timestamps)}")
  user_codes, user_vocab = _token_codes(users)
  item_codes, all_item_ids = _token_codes(items)

  counts = np.bincount(user_codes, minlength=len(user_vocab))
  keep_user = counts >= 2
  num_dropped = int(np.sum(~keep_user))
  if num_dropped:
    logging.info("Dropped %d users with a single interaction (of %d users).", num_dropped,
                 len(user_vocab))
    keep_row = keep_user[user_codes]
    user_codes, item_codes, timestamps = (
        user_codes[keep_row], item_codes[keep_row], timestamps[keep_row])
    user_codes = (np.cumsum(keep_user) - 1)[user_codes]
  user_ids = user_vocab[keep_user]

  item_codes, used_items = _dense_codes(item_codes)
  item_ids = np.concatenate([np.array([PAD_TOKEN]), all_item_ids[used_items]]).astype(str)

  # Equal (user, time) keep file order: the sort is stable.
  order = _sort_order(user_codes, timestamps)
  if order is not None:
    item_codes, timestamps = item_codes[order], timestamps[order]
  stored_ts = timestamps
  if stored_ts.dtype.kind == "f":
    stored_ts = np.floor(stored_ts)
  offsets = np.zeros(len(user_ids) + 1, dtype=np.int64)
  np.cumsum(np.bincount(user_codes, minlength=len(user_ids)), out=offsets[1:])
  interactions = Interactions(
      offsets=offsets,
      items=(item_codes + 1).astype(np.int32),
      timestamps=stored_ts.astype(np.int64),
      num_items=len(item_ids),
      user_ids=user_ids.astype(str),
      item_ids=item_ids,
  )
  return interactions, all_item_ids


def require_users(interactions: Interactions, path: pathlib.Path) -> Interactions:
  if interactions.num_users == 0:
    raise DataError("expected at least one user with two or more interactions, found none",
                    file=path)
  return interactions


def build_interactions(users: np.ndarray, items: np.ndarray,
                       timestamps: np.ndarray) -> Interactions:
  """Builds `Interactions` from raw columns (see the module docstring for the rules).

  Args:
    users: [n] user id tokens (int, bytes or str array).
    items: [n] item id tokens.
    timestamps: [n] int or float timestamps.
  """
  return build_from_columns(np.asarray(users), np.asarray(items), np.asarray(timestamps))[0]


@dataclasses.dataclass(frozen=True)
class AttributeRecord:
  title: str
  attributes: tuple[str, ...]
  line: int
  year: int = 0  # release year, 0 if unknown


def build_attributes(item_ids: np.ndarray, records: Mapping[str, AttributeRecord | tuple],
                     names: Sequence[str] | None = None, *,
                     release_years: bool = False) -> ItemAttributes:
  """Aligns per-item attribute records with the item ids.

  Args:
    item_ids: str [V], entry 0 the padding token.
    records: original item id -> `(title, attribute names)`.
    names: the attribute names in column order; default: sorted union over `records`.
    release_years: whether the records' `year` fields are data (then `release_years` is an
      int32 [V] array, 0 for items without a record or a year) or absent (None).

  Returns:
    `ItemAttributes` with `multi_hot` bool [V, G]; items without a record get an all-False row
    and their raw id as title.
  """
  recs = {k: (v.title, v.attributes) if isinstance(v, AttributeRecord) else tuple(v)
          for k, v in records.items()}
  if names is None:
    names = sorted({a for _, attrs in recs.values() for a in attrs})
  names = tuple(names)
  column = {a: j for j, a in enumerate(names)}
  multi_hot = np.zeros((len(item_ids), len(names)), dtype=bool)
  titles = np.array(item_ids, dtype=object)
  titles[0] = PAD_TOKEN
  years = np.zeros(len(item_ids), dtype=np.int32)
  rows, cols = [], []
  for i in range(1, len(item_ids)):  # loops over items (thousands), not interactions
    key = str(item_ids[i])
    rec = recs.get(key)
    if rec is None:
      continue
    titles[i] = rec[0]
    original = records[key]
    if isinstance(original, AttributeRecord):
      years[i] = original.year
    for a in rec[1]:
      rows.append(i)
      cols.append(column[a])
  multi_hot[np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)] = True
  return ItemAttributes(multi_hot=multi_hot, names=names, titles=titles.astype(str),
                        release_years=years if release_years else None)


def check_attribute_items(records: Mapping[str, AttributeRecord], all_item_ids: np.ndarray,
                           path: pathlib.Path, policy: str) -> None:
  """Errors on (or logs and skips) attribute records whose item never occurs in interactions."""
  known = set(all_item_ids.tolist())
  unknown = [(rec.line, item) for item, rec in records.items() if item not in known]
  if not unknown:
    return
  if policy == "error":
    line, item = min(unknown)
    raise DataError(
        f"unknown item {item!r}: expected an item id that occurs in the interactions file "
        f"({len(unknown)} such items; pass unknown_attribute_items='skip' to ignore them)",
        file=path, line=line)
  logging.info("%s: skipped %d items that have no interactions.", path, len(unknown))
