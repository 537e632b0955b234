import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from seqrec_jax import interpret
from seqrec_jax.interpret import bootstrap, heldout


def _data(seed, num_users=60, per_user=30, num_pairs=3):
  rng = np.random.default_rng(seed)
  users = np.repeat(np.arange(num_users), per_user)
  # A user-level taste makes positions of one user dependent, as in real histories.
  taste = rng.random((num_users, num_pairs))[users]
  labels = rng.random((len(users), num_pairs)) < 0.2 + 0.5 * taste
  values = np.where(rng.random(labels.shape) < 0.5, 0.0,
                    rng.integers(0, 4, labels.shape) + 1.5 * labels).astype(np.float32)
  return values, labels, users


def test_unit_weights_give_the_plain_statistics():
  values, labels, _ = _data(0)
  got = bootstrap.weighted_statistics(values, labels, np.ones((1, len(values))))
  plain = interpret.attribute_statistics(values, labels)
  for k in range(values.shape[1]):
    assert got["auc"][0, k] == pytest.approx(roc_auc_score(labels[:, k], values[:, k]), abs=1e-12)
    for name in ("corr", "precision", "frac_fired", "mean_act"):
      assert got[name][0, k] == pytest.approx(plain[name][k, k], abs=1e-9), name
    f1 = interpret.statistics.f1_score(plain["precision"][k, k], plain["frac_fired"][k, k])
    assert got["f1"][0, k] == pytest.approx(f1, abs=1e-12)


def test_integer_weights_equal_repeating_the_rows():
  values, labels, _ = _data(1)
  rng = np.random.default_rng(2)
  counts = rng.integers(0, 4, len(values))
  got = bootstrap.weighted_statistics(values, labels, counts[None].astype(float))
  repeated = np.repeat(np.arange(len(values)), counts)
  want = bootstrap.weighted_statistics(values[repeated], labels[repeated],
                                       np.ones((1, len(repeated))))
  for name in bootstrap.STATISTICS:
    np.testing.assert_allclose(got[name], want[name], rtol=1e-10, atol=1e-12, err_msg=name)
  assert got["auc"][0, 0] == pytest.approx(roc_auc_score(labels[repeated, 0], values[repeated, 0]))


def test_more_users_narrow_the_interval_as_one_over_root_n():
  values, labels, users = _data(3)
  copies = 16
  wide = bootstrap.bootstrap(values, labels, users, num_samples=400, seed=0)
  many = bootstrap.bootstrap(np.tile(values, (copies, 1)), np.tile(labels, (copies, 1)),
                             np.concatenate([users + c * 1000 for c in range(copies)]),
                             num_samples=400, seed=0)
  for name in ("auc", "corr", "precision"):
    # The point estimate is unchanged by duplication; the interval narrows ~ 1/sqrt(16) = 0.25.
    np.testing.assert_allclose(many[name]["value"], wide[name]["value"], rtol=1e-9)
    w_wide = np.diff(bootstrap.interval(wide[name]["samples"]), axis=0)
    w_many = np.diff(bootstrap.interval(many[name]["samples"]), axis=0)
    ratio = w_many / w_wide
    assert np.all((ratio > 0.15) & (ratio < 0.4)), (name, ratio)
    lo, hi = bootstrap.interval(wide[name]["samples"])
    assert np.all((lo <= wide[name]["value"]) & (wide[name]["value"] <= hi))


def test_users_not_positions_are_resampled():
  # Positions of one user repeat the same value: resampling positions would make the interval
  # ~sqrt(30) times too narrow; resampling users keeps it as wide as 60 independent users.
  rng = np.random.default_rng(4)
  users = np.repeat(np.arange(60), 30)
  labels = np.repeat(rng.random(60) < 0.5, 30)[:, None]
  values = np.repeat(rng.normal(size=60) + labels[::30, 0], 30)[:, None].astype(np.float32)
  per_user = bootstrap.bootstrap(values[::30], labels[::30], np.arange(60), num_samples=400)
  per_position = bootstrap.bootstrap(values, labels, users, num_samples=400)
  w_user = np.diff(bootstrap.interval(per_user["corr"]["samples"]), axis=0)
  w_pos = np.diff(bootstrap.interval(per_position["corr"]["samples"]), axis=0)
  assert w_pos / w_user == pytest.approx(1.0, abs=0.25)


def test_heldout_choice_comes_from_the_selection_users_only():
  rng = np.random.default_rng(5)
  n, num_latents = 3000, 6
  labels = rng.random((n, 2)) < 0.3
  users = np.repeat(np.arange(100), 30)
  # On the selection users latent 4 detects attribute 0 perfectly; on the test users latent 2 does.
  sel = np.where(rng.random((n, num_latents)) < 0.1, 1.0, 0.0).astype(np.float32)
  sel[:, 4] = labels[:, 0]
  test = np.where(rng.random((n, num_latents)) < 0.1, 1.0, 0.0).astype(np.float32)
  test[:, 2] = labels[:, 0]
  hidden = rng.normal(size=(n, 3)).astype(np.float32)
  neuron_sel = interpret.neuron_statistics(hidden, labels)
  thresholds = np.concatenate([hidden.mean(0) + hidden.std(0), -hidden.mean(0) + hidden.std(0)])
  out = heldout.compare(latent_selection=interpret.attribute_statistics(sel, labels),
                        neuron_selection=neuron_sel, latents=test, hidden=hidden, labels=labels,
                        users=users, attribute_names=["a", "b"], neuron_thresholds=thresholds,
                        num_samples=200)
  auc = out["attributes"]["a"]["latent"]["auc"]
  assert auc["feature"] == 4  # chosen on the selection users ...
  assert auc["value"] == pytest.approx(roc_auc_score(labels[:, 0], test[:, 4]))  # ... measured here
  assert auc["ci"][0] <= auc["value"] <= auc["ci"][1]
  diff = out["mean"]["difference"]["auc"]
  assert diff["value"] == pytest.approx(out["mean"]["latent"]["auc"]["value"]
                                        - out["mean"]["dimension"]["auc"]["value"])


def test_monosemanticity_known_answers():
  corr = np.array([[0.8, 0.2, 0.0],    # one attribute dominates: 1 - 0.2/0.8
                   [0.4, 0.4, 0.1],    # two tie: 0
                   [0.01, 0.0, -0.5],  # explains nothing positively: undefined
                   [-0.3, 0.6, 0.0]])  # negative correlations do not count
  np.testing.assert_allclose(heldout.monosemanticity(corr), [0.75, 0.0, np.nan, 1.0])
  summary = heldout.distribution(heldout.monosemanticity(corr))
  assert summary["count"] == 3 and summary["share_at_least_0.5"] == pytest.approx(2 / 3)
