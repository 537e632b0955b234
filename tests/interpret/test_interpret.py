import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from seqrec_jax import interpret
from seqrec_jax.interpret import statistics


def _sae_like(seed, num_rows=1500, num_columns=9, num_attributes=5):
  """Mostly zeros, negative values, repeated nonzero values, a dense and a constant column."""
  rng = np.random.default_rng(seed)
  values = np.zeros((num_rows, num_columns), np.float32)
  nonzero = rng.random(values.shape) < 0.08
  values[nonzero] = rng.choice(np.array([-2.0, -0.5, 0.25, 1.0, 1.0, 3.0], np.float32),
                               nonzero.sum())
  values[:, 0] = rng.normal(size=num_rows)       # dense, no zero block
  values[:, 1] = 0.0                             # never fires
  values[:, 2] = np.float32(1.5)                 # constant, dense
  values[:, 3] = rng.integers(0, 3, num_rows)    # heavy ties, all >= 0
  labels = rng.random((num_rows, num_attributes)) < np.geomspace(0.01, 0.6, num_attributes)
  labels[:2, 0] = True                           # at least two positives in the rarest
  return values, labels


def _direct(values, labels, threshold):
  """The firing statistics and mean activation computed the obvious way."""
  fired = values > np.broadcast_to(threshold, values.shape[1:])
  fired_with_label = fired.T.astype(float) @ labels.astype(float)
  label_count = labels.sum(axis=0)
  fired_count = fired.sum(axis=0)
  with np.errstate(invalid="ignore", divide="ignore"):
    return {
        "precision": np.nan_to_num(fired_with_label / fired_count[:, None]),
        "frac_fired": fired_with_label / label_count,
        "mean_act": values.T.astype(float) @ labels / label_count,
        "fire_rate": fired_count / len(values),
    }


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_auc_matches_sklearn_with_heavy_ties(seed):
  values, labels = _sae_like(seed)
  auc = interpret.attribute_statistics(values, labels)["auc"]
  expected = np.array([[roc_auc_score(labels[:, g], values[:, j]) for g in range(labels.shape[1])]
                       for j in range(values.shape[1])])
  np.testing.assert_allclose(auc, expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
def test_corr_matches_corrcoef_and_is_zero_for_constant_columns(seed):
  values, labels = _sae_like(seed)
  corr = interpret.attribute_statistics(values, labels)["corr"]
  for j in range(values.shape[1]):
    for g in range(labels.shape[1]):
      expected = (0.0 if values[:, j].std() == 0
                  else np.corrcoef(values[:, j].astype(float), labels[:, g])[0, 1])
      assert corr[j, g] == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("threshold", [0.0, 0.5, -1.0, "per_column"])
def test_firing_statistics_match_direct_computation(threshold):
  values, labels = _sae_like(5)
  if threshold == "per_column":
    threshold = np.linspace(-1.0, 2.0, values.shape[1])
  stats = interpret.attribute_statistics(values, labels, fire_threshold=threshold)
  for name, expected in _direct(values, labels, threshold).items():
    np.testing.assert_allclose(stats[name], expected, rtol=0, atol=1e-12, err_msg=name)


def test_chunked_path_equals_one_chunk(monkeypatch):
  values, labels = _sae_like(7, num_columns=24)
  thresholds = np.linspace(-0.5, 0.5, values.shape[1])
  whole = interpret.attribute_statistics(values, labels, fire_threshold=thresholds)
  monkeypatch.setattr(statistics, "_ENTRIES_PER_CHUNK", 300)
  monkeypatch.setattr(statistics, "_ENTRIES_PER_SEGMENT", 70)
  monkeypatch.setattr(statistics, "ELEMENTS_PER_BLOCK", 500)
  chunked = interpret.attribute_statistics(values, labels, fire_threshold=thresholds)
  for name in whole:
    np.testing.assert_allclose(chunked[name], whole[name], rtol=0, atol=1e-12, err_msg=name)


def test_many_attributes_use_wide_label_patterns():
  rng = np.random.default_rng(3)
  values = np.where(rng.random((400, 3)) < 0.3, rng.normal(size=(400, 3)), 0).astype(np.float32)
  labels = rng.random((400, 70)) < 0.3
  auc = interpret.attribute_statistics(values, labels)["auc"]
  for g in (0, 63, 64, 69):
    assert auc[1, g] == pytest.approx(roc_auc_score(labels[:, g], values[:, 1]), abs=1e-12)


def test_undefined_auc_is_nan_and_left_out_of_the_means():
  values, labels = _sae_like(0)
  labels[:, 1] = False
  labels[:, 2] = True
  latent = interpret.attribute_statistics(values, labels)
  neuron = interpret.neuron_statistics(values, labels)
  assert np.isnan(latent["auc"][:, 1]).all() and np.isnan(latent["auc"][:, 2]).all()
  assert (latent["corr"][:, 1] == 0).all()
  names = [f"a{g}" for g in range(labels.shape[1])]
  best = interpret.best_per_attribute(latent, neuron, names)
  assert set(best["attributes"]["a1"].values()) == {None}
  defined = [best["attributes"][name]["latent_auc"] for name in ("a0", "a3", "a4")]
  assert best["mean"]["latent_auc"] == pytest.approx(np.mean(defined))


def test_planted_latent_is_found_and_labelled_monosemantic():
  rng = np.random.default_rng(11)
  num_rows = 4000
  labels = rng.random((num_rows, 4)) < [0.05, 0.2, 0.3, 0.5]
  values = np.where(rng.random((num_rows, 16)) < 0.03, rng.exponential(size=(num_rows, 16)), 0)
  values[:, 9] = labels[:, 2] * (1.0 + rng.exponential(size=num_rows))  # a detector of attribute 2
  values = values.astype(np.float32)
  hidden = rng.normal(size=(num_rows, 8)).astype(np.float32)
  names = ["w", "x", "y", "z"]

  latent = interpret.attribute_statistics(values, labels)
  neuron = interpret.neuron_statistics(hidden, labels)
  best = interpret.best_per_attribute(latent, neuron, names)["attributes"]["y"]
  assert best["best_latent"] == 9
  assert best["latent_auc"] > 0.99 and best["latent_precision"] == pytest.approx(1.0)
  assert best["latent_corr"] == pytest.approx(latent["corr"][9, 2])
  assert best["latent_auc"] > best["neuron_auc"]

  labelled = interpret.label_latents(latent, names)
  assert labelled[9] == {"attribute": "y", "auc": pytest.approx(latent["auc"][9, 2]),
                         "precision": pytest.approx(1.0), "corr": pytest.approx(latent["corr"][9, 2]),
                         "f1": pytest.approx(1.0), "monosemantic": True}
  assert sum(label["monosemantic"] for label in labelled.values()) == 1
  # Latents firing at random on 3 % of positions explain no attribute: they stay unlabelled.
  assert set(labelled) == {9}
  counts = interpret.label_counts(labelled, names)
  assert counts == {"w": 0, "x": 0, "y": 1, "z": 0}


def test_labels_weigh_coverage_so_a_rare_attribute_does_not_win_by_auc():
  rng = np.random.default_rng(8)
  num_rows = 20000
  common = rng.random(num_rows) < 0.3
  rare = common & (rng.random(num_rows) < 0.02)  # ~0.6 % of positions, all within `common`
  fires = rare | (common & (rng.random(num_rows) < 0.6))
  values = np.where(fires, 1.0 + rng.random(num_rows), 0.0).astype(np.float32)[:, None]
  labels = np.stack([common, rare], axis=1)
  stats = interpret.attribute_statistics(values, labels)
  assert stats["auc"][0, 1] > stats["auc"][0, 0]  # by AUC alone the rare attribute would win
  labelled = interpret.label_latents(stats, ["common", "rare"])
  assert labelled[0]["attribute"] == "common"
  assert labelled[0]["f1"] == pytest.approx(2 * 0.6 / 1.6, abs=0.02)


def test_label_latents_skips_latents_that_never_fire():
  values, labels = _sae_like(2)
  labelled = interpret.label_latents(interpret.attribute_statistics(values, labels),
                                     [f"a{g}" for g in range(labels.shape[1])], min_corr=-1.0)
  assert 1 not in labelled and 0 in labelled and 4 in labelled


def test_neuron_statistics_find_a_negatively_encoding_dimension():
  rng = np.random.default_rng(4)
  num_rows = 3000
  labels = rng.random((num_rows, 3)) < [0.1, 0.3, 0.5]
  hidden = rng.normal(size=(num_rows, 6)).astype(np.float32)
  hidden[:, 4] -= 3.0 * labels[:, 1]
  stats = interpret.neuron_statistics(hidden, labels)
  assert stats["auc"].shape == (12, 3)
  np.testing.assert_array_equal(stats["dimension"], np.tile(np.arange(6), 2))
  np.testing.assert_array_equal(stats["sign"], np.repeat([1, -1], 6))

  minus = stats["sign"] == -1
  expected_auc = [[roc_auc_score(labels[:, g], -hidden[:, j]) for g in range(3)] for j in range(6)]
  np.testing.assert_allclose(stats["auc"][minus], expected_auc, atol=1e-9)
  np.testing.assert_allclose(stats["corr"][minus], -stats["corr"][~minus], atol=1e-12)
  negated = -hidden.astype(np.float64)
  threshold = negated.mean(axis=0) + negated.std(axis=0)
  for name, expected in _direct(negated, labels, threshold).items():
    np.testing.assert_allclose(stats[name][minus], expected, atol=1e-9, err_msg=name)
  threshold = hidden.mean(axis=0, dtype=np.float64) + hidden.std(axis=0, dtype=np.float64)
  for name, expected in _direct(hidden.astype(np.float64), labels, threshold).items():
    np.testing.assert_allclose(stats[name][~minus], expected, atol=1e-9, err_msg=name)

  values = np.maximum(rng.normal(size=(num_rows, 4)), 0).astype(np.float32)
  best = interpret.best_per_attribute(interpret.attribute_statistics(values, labels), stats,
                                      ["a", "b", "c"])["attributes"]["b"]
  assert best["best_neuron"] == 4 and best["neuron_auc"] > 0.95
  assert best["neuron_corr"] == pytest.approx(-stats["corr"][4, 1])


def test_top_examples_match_brute_force():
  rng = np.random.default_rng(6)
  num_rows = 2000
  item_ids = rng.integers(1, 60, num_rows)
  user_ids = rng.integers(0, 100, num_rows)
  positions = rng.integers(0, 50, num_rows)
  values = np.where(rng.random((num_rows, 5)) < 0.2, rng.exponential(size=(num_rows, 5)), 0)
  values[:, 3] = 0.0
  values[[5, 9, 700], 3] = [1.0, 3.0, 2.0]  # fewer than k positive activations
  values = values.astype(np.float32)
  top = interpret.top_examples(values, item_ids, user_ids, positions, k=6, min_item_count=4)

  for j in range(values.shape[1]):
    order = np.argsort(-values[:, j], kind="stable")[:6]
    found = values[order, j] > 0
    np.testing.assert_array_equal(top["top_rows"][j], np.where(found, order, -1))
    np.testing.assert_array_equal(top["top_row_user"][j], np.where(found, user_ids[order], -1))
    np.testing.assert_array_equal(top["top_row_position"][j],
                                  np.where(found, positions[order], -1))
    count = np.bincount(item_ids, minlength=60)
    mean = np.bincount(item_ids, weights=values[:, j], minlength=60) / np.maximum(count, 1)
    mean[count < 4] = -np.inf
    best = np.argsort(-mean, kind="stable")[:6]
    found = mean[best] > 0
    np.testing.assert_array_equal(top["top_items"][j], np.where(found, best, -1))
    np.testing.assert_allclose(top["top_item_activation"][j], np.where(found, mean[best], 0),
                               rtol=1e-5)
    np.testing.assert_array_equal(top["top_item_count"][j], np.where(found, count[best], 0))
  np.testing.assert_array_equal(top["top_rows"][3], [9, 700, 5, -1, -1, -1])


def test_bad_values_are_rejected():
  labels = np.ones((3, 1), bool)
  with pytest.raises(ValueError, match="finite"):
    interpret.attribute_statistics(np.array([[0.0], [np.nan], [1.0]], np.float32), labels)
  with pytest.raises(ValueError, match="float32"):
    interpret.attribute_statistics(np.array([[0.1], [0.2], [0.3]], np.float64), labels)
  with pytest.raises(ValueError, match="labels"):
    interpret.attribute_statistics(np.zeros((3, 2), np.float32), np.ones((4, 1), bool))
