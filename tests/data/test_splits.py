import numpy as np
import pytest

from seqrec_jax.recommender import input_pipeline
from seqrec_jax import data
from seqrec_jax.data import splits
from seqrec_jax.data.synthetic import make_synthetic


@pytest.fixture(scope="module")
def inter():
  return make_synthetic(num_users=300, num_items=120, min_len=5, max_len=30, seed=3).interactions


def _pairs(evalset):
  return {(int(u), int(t)) for u, t in zip(evalset.histories.users, evalset.targets)}


@pytest.mark.parametrize("protocol", ["temporal", "leave_one_out"])
def test_held_out_targets_never_reach_training(inter, protocol):
  split = splits.split(inter, protocol, **({"seed": 1} if protocol == "temporal" else {}))
  for evalset in (split.val, split.test):
    # A held-out target is the user's interaction at a specific position: in leave-one-out the
    # same user trains, so compare positions, not just (user, item), via sequence prefixes.
    for i in range(len(evalset)):
      u = int(evalset.histories.users[i])
      full = inter.sequence(u)
      hist = evalset.histories[i]
      # The history is a prefix of the user's sequence and the target comes right after it.
      if protocol == "leave_one_out":
        np.testing.assert_array_equal(full[: len(hist)], hist)
        assert full[len(hist)] == evalset.targets[i]
  # Training windows are built from train sequences only: their items are prefixes that stop
  # before every validation and test target.
  if protocol == "leave_one_out":
    # Exactly the sequence without its last two items (a window such as seq[2:] has the same
    # length but trains on the validation and test targets).
    for i in range(len(split.train)):
      u = int(split.train.users[i])
      np.testing.assert_array_equal(split.train[i], inter.sequence(u)[:-2])
  else:
    held = set(split.val.histories.users.tolist()) | set(split.test.histories.users.tolist())
    assert not held & set(split.train.users.tolist())


def test_temporal_test_users_are_the_latest(inter):
  split = splits.temporal_split(inter, test_fraction=0.1, sae_fraction=0.4, seed=0)
  last = inter.timestamps[inter.offsets[1:] - 1]
  test_users = split.test.histories.users
  others = np.setdiff1d(np.arange(inter.num_users), test_users)
  assert last[test_users].min() >= last[others].max()
  assert len(test_users) == round(0.1 * inter.num_users)
  # A test history holds only items before its target (in time).
  for i, u in enumerate(test_users):
    seq = inter.sequence(u)
    np.testing.assert_array_equal(split.test.histories[i], seq[:-1])
    assert split.test.targets[i] == seq[-1]
  assert not set(test_users.tolist()) & set(split.train.users.tolist())
  assert not set(split.sae.users.tolist()) & set(split.train.users.tolist())


def test_training_windows_hold_only_training_items(inter):
  split = splits.leave_one_out_split(inter)
  data = input_pipeline.make_train_data(split.train, kind="sasrec", max_len=10,
                                        global_batch_size=16, seed=0)
  # Every window is a contiguous piece of some training sequence.
  train_text = {tuple(split.train[i].tolist()) for i in range(len(split.train))}
  for w in data.windows[:50]:
    real = tuple(w[w > 0].tolist())
    assert any(_contains(s, real) for s in train_text)
  # Each transition of each training sequence is a label exactly once per epoch.
  labels = data.windows[:, 1:] * (data.windows[:, :-1] > 0)
  assert (labels > 0).sum() == sum(max(len(split.train[i]) - 1, 0) for i in range(len(split.train)))


def _contains(seq, sub):
  n = len(sub)
  return any(seq[i : i + n] == sub for i in range(len(seq) - n + 1))


def test_temporal_split_removes_items_unseen_in_training():
  # Every user holds some of the shared items 1..3 and private items (ids >= 100) that no other
  # user holds, so a held-out user's private items are never seen in training wherever the users
  # fall. Kind 0 ends on a private item; kind 1 keeps a single shared item (so it is dropped when
  # held out); kind 2 has a private item in the middle.
  kinds = {0: lambda p: [p, 1, 2, 3, p + 1], 1: lambda p: [2, p, p + 1], 2: lambda p: [1, p, 3, 2]}
  users, items, times = [], [], []
  for u in range(40):
    seq = kinds[u % 3](100 + 2 * u)
    users += [u] * len(seq)
    items += seq
    times += [1000 * u + t for t in range(len(seq))]  # later users end later
  inter = data.build_interactions(np.array(users), np.array(items), np.array(times))
  result = splits.temporal_split(inter, test_fraction=0.5, sae_fraction=0.5, seed=0)
  original = lambda seq: [int(inter.item_ids[i]) for i in seq]
  row = {int(u): k for k, u in enumerate(inter.user_ids)}  # every user has >= 2 items: u == row

  train_users = set(result.train.users.tolist())
  test_users = set(range(20, 40))  # the latest half by last interaction
  sae_users = set(range(40)) - train_users - test_users
  assert not train_users & test_users
  assert {1, 2, 3} <= {i for u in train_users for i in original(inter.sequence(row[u]))}
  seen = np.zeros(inter.num_items, bool)
  seen[result.train.items] = True
  for held, sequences, evalset in ((sae_users, result.sae, result.val),
                                   (test_users, result.test_sequences, result.test)):
    # Private items go; a user left with fewer than two items is dropped (documented in splits).
    expected = {u: [i for i in original(inter.sequence(row[u])) if i < 100] for u in held}
    expected = {u: seq for u, seq in expected.items() if len(seq) >= 2}
    got = {int(inter.user_ids[u]): original(sequences[k]) for k, u in enumerate(sequences.users)}
    assert got == expected
    for k, u in enumerate(evalset.histories.users):
      u = int(inter.user_ids[u])
      assert original(evalset.histories[k]) == expected[u][:-1]
      assert original([evalset.targets[k]]) == expected[u][-1:]
    assert seen[sequences.items].all() and seen[evalset.targets].all()
  # Not vacuous: held-out users of every kind, so last items went and users were dropped.
  assert all({u % 3 for u in held} == {0, 1, 2} for held in (sae_users, test_users))
  assert len(result.test) == sum(u % 3 != 1 for u in test_users)
