"""Train / validation / test splits of interaction sequences.

Two protocols:

* ``"temporal"`` (the paper's, the seed default): the users whose last interaction is latest form
  the test set (`test_fraction` of users); of the others a random `sae_fraction` is held out for
  training the SAE and for validation; the rest train the recommender. Items never seen in
  training are removed from the held-out sequences (wherever they stand, the last item
  included), and a held-out user left with fewer than two items is dropped (the count is
  logged). Validation and test predict each held-out user's last remaining item from the items
  before it.
* ``"leave_one_out"`` (the literature's): every user trains on all but the last two items,
  validates on the second last and is tested on the last.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
from absl import logging

if TYPE_CHECKING:
  from seqrec_jax.data.containers import Interactions

PROTOCOLS = ("temporal", "leave_one_out")


@dataclasses.dataclass(frozen=True)
class Sequences:
  """Item sequences in CSR form."""

  offsets: np.ndarray  # int64 [n + 1]
  items: np.ndarray  # int32 [offsets[-1]]
  users: np.ndarray  # int64 [n], row index into `Interactions`

  def __len__(self) -> int:
    return len(self.users)

  def __getitem__(self, i: int) -> np.ndarray:
    return self.items[self.offsets[i] : self.offsets[i + 1]]

  @property
  def lengths(self) -> np.ndarray:
    return np.diff(self.offsets)


@dataclasses.dataclass(frozen=True)
class EvalSet:
  """Next-item prediction targets: predict `targets[i]` from `histories[i]`."""

  histories: Sequences
  targets: np.ndarray  # int32 [n]

  def __len__(self) -> int:
    return len(self.targets)


@dataclasses.dataclass(frozen=True)
class Split:
  protocol: str
  train: Sequences  # training sequences of the recommender
  val: EvalSet
  test: EvalSet
  sae: Sequences  # full sequences for SAE training (temporal) / training users (leave-one-out)
  test_sequences: Sequences  # the test users' full sequences (interpretation, steering)


def make_sequences(lists: list[np.ndarray], users) -> Sequences:
  lengths = np.array([len(s) for s in lists], np.int64)
  offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
  items = np.concatenate(lists).astype(np.int32) if lists else np.zeros(0, np.int32)
  return Sequences(offsets, items, np.asarray(users, np.int64))


def _eval_set(seqs: Sequences) -> EvalSet:
  """Last item of each sequence is the target; the items before it the history."""
  return EvalSet(
      histories=make_sequences([seqs[i][:-1] for i in range(len(seqs))], seqs.users),
      targets=seqs.items[seqs.offsets[1:] - 1].astype(np.int32),
  )


def _keep(inter: Interactions, users: np.ndarray, item_allowed: np.ndarray | None) -> Sequences:
  """Sequences of `users`, optionally restricted to allowed items, dropping those left with < 2."""
  lists, kept = [], []
  for u in users:
    s = inter.sequence(u)
    if item_allowed is not None:
      s = s[item_allowed[s]]
    if len(s) >= 2:
      lists.append(s)
      kept.append(u)
  dropped = len(users) - len(kept)
  if dropped:
    logging.info("split: dropped %d held-out users left with fewer than 2 known items", dropped)
  return make_sequences(lists, kept)


def temporal_split(
    inter: Interactions, *, test_fraction: float = 0.1, sae_fraction: float = 0.4, seed: int = 0
) -> Split:
  last_time = inter.timestamps[inter.offsets[1:] - 1]
  order = np.argsort(-last_time, kind="stable")  # latest last interaction first
  num_test = max(1, int(round(test_fraction * inter.num_users)))
  test_users = np.sort(order[:num_test])
  rest = np.sort(order[num_test:])
  rng = np.random.default_rng(seed)
  held = rng.random(len(rest)) < sae_fraction
  train_users, sae_users = rest[~held], rest[held]

  train = _keep(inter, train_users, None)
  seen = np.zeros(inter.num_items, bool)
  seen[train.items] = True
  sae = _keep(inter, sae_users, seen)
  test_sequences = _keep(inter, test_users, seen)
  return Split("temporal", train, _eval_set(sae), _eval_set(test_sequences), sae, test_sequences)


def leave_one_out_split(inter: Interactions) -> Split:
  users = np.arange(inter.num_users)
  full = make_sequences([inter.sequence(u) for u in users], users)
  lengths = full.lengths
  # Users with 2 items have an empty training sequence; they still give a test example.
  train_users = users[lengths >= 4]
  train = make_sequences([full[u][:-2] for u in train_users], train_users)
  val_users = users[lengths >= 3]
  val = EvalSet(
      make_sequences([full[u][:-2] for u in val_users], val_users),
      np.array([full[u][-2] for u in val_users], np.int32),
  )
  test = _eval_set(full)
  return Split("leave_one_out", train, val, test, train, full)


def split(inter: Interactions, protocol: str, **kwargs) -> Split:
  if protocol == "temporal":
    return temporal_split(inter, **kwargs)
  if protocol == "leave_one_out":
    return leave_one_out_split(inter)
  raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
