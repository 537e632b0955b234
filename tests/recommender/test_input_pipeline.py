import numpy as np
import pytest

from seqrec_jax.recommender import input_pipeline
from seqrec_jax.data import splits
from seqrec_jax.data.synthetic import make_synthetic


@pytest.fixture(scope="module")
def split():
  inter = make_synthetic(num_users=200, num_items=80, min_len=5, max_len=40, seed=1).interactions
  return splits.leave_one_out_split(inter)


def _take(data, n):
  it = data.iterator()
  return [next(it) for _ in range(n)]


@pytest.mark.parametrize("kind", ["sasrec", "bert4rec"])
def test_batches_are_fixed_shape_and_deterministic(split, kind):
  kw = dict(kind=kind, max_len=12, global_batch_size=16, seed=5, mask_token=81)
  a = _take(input_pipeline.make_train_data(split.train, **kw), 5)
  b = _take(input_pipeline.make_train_data(split.train, **kw), 5)
  c = _take(input_pipeline.make_train_data(split.train, **{**kw, "seed": 6}), 5)
  for x, y in zip(a, b):
    assert x["input_ids"].shape == x["labels"].shape == (16, 12)
    assert x["input_ids"].dtype == np.int32
    np.testing.assert_array_equal(x["input_ids"], y["input_ids"])
    np.testing.assert_array_equal(x["labels"], y["labels"])
  assert not all(np.array_equal(x["input_ids"], z["input_ids"]) for x, z in zip(a, c))


def test_iterator_state_resumes_exactly(split):
  data = input_pipeline.make_train_data(split.train, kind="bert4rec", max_len=12,
                                        global_batch_size=8, seed=0, mask_token=81)
  it = data.iterator()
  for _ in range(3):
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(4)]
  it2 = data.iterator()
  it2.set_state(state)
  for want in expected:
    got = next(it2)
    np.testing.assert_array_equal(got["input_ids"], want["input_ids"])
    np.testing.assert_array_equal(got["labels"], want["labels"])


def test_bert4rec_masking(split):
  data = input_pipeline.make_train_data(split.train, kind="bert4rec", max_len=12,
                                        global_batch_size=64, seed=0, mask_token=81,
                                        mask_prob=0.2, last_item_mask_prob=0.25)
  batches = _take(data, 20)
  ids = np.concatenate([b["input_ids"] for b in batches])
  labels = np.concatenate([b["labels"] for b in batches])
  masked = ids == 81
  np.testing.assert_array_equal(masked, labels > 0)  # labels exactly where masked
  assert masked.any(1).all()  # every row trains on something
  only_last = masked[:, -1] & (masked.sum(1) == 1)
  assert 0.2 < only_last.mean() < 0.45  # last-item rows (plus a few natural ones)
  real = ids > 0
  rate = masked[~only_last].sum() / real[~only_last].sum()
  assert 0.15 < rate < 0.3


def test_sasrec_labels_are_next_items(split):
  data = input_pipeline.make_train_data(split.train, kind="sasrec", max_len=12,
                                        global_batch_size=16, seed=0)
  b = _take(data, 1)[0]
  has_label = b["labels"][:, :-1] > 0
  np.testing.assert_array_equal(b["input_ids"][:, 1:][has_label], b["labels"][:, :-1][has_label])
  assert (b["labels"][:, -1] > 0).all()
  np.testing.assert_array_equal(b["labels"] > 0, b["input_ids"] > 0)  # no label after padding


def test_eval_arrays_read_last_position(split):
  arrays = input_pipeline.make_eval_arrays(split.test, kind="bert4rec", max_len=6, batch_size=7,
                                           mask_token=81)
  assert len(arrays.targets) % 7 == 0 and arrays.valid.sum() == len(split.test)
  assert (arrays.input_ids[arrays.valid, -1] == 81).all()
  h = split.test.histories[0]
  np.testing.assert_array_equal(arrays.input_ids[0, -6:-1][-min(5, len(h)):], h[-5:])
  s = input_pipeline.make_eval_arrays(split.test, kind="sasrec", max_len=6, batch_size=7)
  assert s.input_ids[0, -1] == h[-1]
  assert set(s.seen[0][s.seen[0] > 0]) == set(h)
