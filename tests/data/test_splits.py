import numpy as np
import pytest

from seqrec_jax.recommender import input_pipeline
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
