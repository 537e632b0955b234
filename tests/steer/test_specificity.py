"""Specificity: selectivity and new-item precision against direct computations, the sweeps that
record them, and controls chosen for gain and selectivity (not gain alone)."""

import json

import numpy as np
import pytest

from seqrec_jax.recommender import evaluation, input_pipeline, metrics
from seqrec_jax.steer import controls, methods, specificity, sweeps
from seqrec_jax.steer.methods import Control

# ---------------------------------------------------------------- the definitions, by hand


def test_selectivity_on_a_hand_made_case():
  base = np.array([0.1, 0.2, 0.0])
  shares = np.array([0.3, 0.25, 0.02])
  # Relative gains (s - b) / (b + 1/10): 0.2 / 0.2, 0.05 / 0.3, 0.02 / 0.1.
  r = [1.0, 0.05 / 0.3, 0.2]
  assert specificity.selectivity(shares, base, 0) == pytest.approx(r[0] / max(r[1], r[2]))
  assert specificity.selectivity(shares, base, 1) == pytest.approx(r[1] / r[0])
  assert specificity.selectivity(shares, base, 2) == pytest.approx(r[2] / r[0])
  # Suppression compares drops: attribute 1 falls by a third, nothing else falls, so the floor
  # (a 1 % relative gain) is the denominator and the value stays finite.
  down = np.array([0.3, 0.1, 0.0])
  assert specificity.selectivity(down, base, 1, direction=-1) == pytest.approx(
      (0.1 / 0.3) / specificity.MIN_GAIN)
  # A knob that moves nothing is not selective; one that moves only its own attribute is.
  assert specificity.selectivity(base, base, 0) == 0.0
  assert specificity.selectivity(np.array([0.15, 0.2, 0.0]), base, 0) == pytest.approx(
      (0.05 / 0.2) / specificity.MIN_GAIN)
  # From a sweep's all_shares: one value per strength, in the strength's direction.
  all_shares = {"a": [0.3, 0.1], "b": [0.25, 0.2], "c": [0.02, 0.0]}
  got = specificity.selectivities(all_shares, {"a": 0.1, "b": 0.2, "c": 0.0}, "a", [2.0, -2.0])
  assert got[0] == pytest.approx(5.0)
  assert got[1] == 0.0  # at -2 nothing moves: not selective


def test_selectivity_compares_an_attribute_with_its_own_family():
  names = ["Action", "Sci-Fi", "decade:1970s", "decade:1990s", "popularity:head",
           "popularity:tail"]
  peers = specificity.peer_mask(names)
  assert list(peers[1]) == [True, False, False, False, False, False]
  assert list(peers[2]) == [False, False, False, True, False, False]
  assert list(peers[5]) == [False, False, False, False, True, False]
  base = np.array([0.2, 0.1, 0.0, 0.6, 0.7, 0.05])
  # The Sci-Fi knob brings in 1970s films: Sci-Fi gains 0.1 / 0.2, the 1970s 0.1 / 0.1.
  shares = np.array([0.2, 0.2, 0.1, 0.5, 0.7, 0.05])
  assert specificity.selectivity(shares, base, 1, peers=peers[1]) == pytest.approx(
      0.5 / specificity.MIN_GAIN)  # no other genre moved
  assert specificity.selectivity(shares, base, 1) == pytest.approx(0.5)  # against every attribute
  all_shares = {n: [v] for n, v in zip(names, shares)}
  assert specificity.selectivities(all_shares, dict(zip(names, base)), "Sci-Fi", [4.0]) == [
      pytest.approx(0.5 / specificity.MIN_GAIN)]
  # The 1970s did move most among the decades.
  assert specificity.selectivity(shares, base, 2, peers=peers[2]) == pytest.approx(
      1.0 / specificity.MIN_GAIN)


def test_new_item_precision_on_a_hand_made_case():
  attributes = np.zeros((8, 2), bool)
  attributes[7, 0] = True
  attributes[[2, 7], 1] = True
  base_top = np.array([[1, 2, 3], [4, 5, 6]])
  top = np.array([[1, 7, 3], [6, 5, 2]])  # new: 7 for user 0, 2 for user 1 (reordering is not new)
  np.testing.assert_array_equal(metrics.new_items(base_top, top),
                                [[False, True, False], [False, False, True]])
  np.testing.assert_allclose(metrics.new_item_precision(base_top, top, attributes), [0.5, 1.0])
  assert np.isnan(metrics.new_item_precision(base_top, base_top[:, ::-1], attributes)).all()
  assert specificity.finite_or_none([0.5, np.nan]) == [0.5, None]


# ---------------------------------------------------------------- sweeps on a small model

from tests.helpers import small_steer

D, M, V, L, G = (small_steer.SWEEP_D, small_steer.SWEEP_M, small_steer.SWEEP_V, small_steer.SWEEP_L,
                 small_steer.SWEEP_G)


@pytest.fixture(scope="module")
def setup():
  cfg, params, evalset, trained, attributes, features, rng = small_steer.sweep_setup()
  evaluate = sweeps.Evaluator(params, cfg, 16, True, features)
  users = evaluate.users(evalset, "blocks_0")
  hidden = rng.normal(size=(300, D)).astype(np.float32)
  labels = rng.random((300, G)) < 0.3
  ctx = methods.SteerContext(
      layer="blocks_0", trained=trained, typical=np.linspace(0.5, 2.0, M).astype(np.float32),
      controls={n: {"promote": Control.single(i), "suppress": Control.single(i + 3)}
                for i, n in enumerate("abc")},
      multi_hot=attributes, selection_auc=rng.random((M, G)), neuron_corr=rng.random((2 * D, G)),
      neuron_dimension=np.concatenate([np.arange(D), np.arange(D)]),
      neuron_sign=np.repeat([1, -1], D), hidden=hidden, labels=labels, score_unit=0.5,
      random_latents=controls.random_latents(np.ones(M), list("abc"), list("abc"), seed=0))
  return evaluate, users, ctx, attributes, evalset, cfg, params


def test_return_top_keeps_the_metrics_and_gives_each_users_list(setup):
  evaluate, users, _, attributes, evalset, cfg, params = setup
  arrays = input_pipeline.make_eval_arrays(evalset, kind="sasrec", max_len=L, batch_size=16)
  plain = evaluation.evaluate(params, cfg, arrays, batch_size=16,
                              list_features=evaluate.list_features)
  result, top = evaluation.evaluate(params, cfg, arrays, batch_size=16,
                                    list_features=evaluate.list_features, return_top=True)
  assert result == plain
  assert top.shape == (len(evalset), 10)
  assert result["share@10"]["b"] == pytest.approx(attributes[top, 1].mean())
  hits = (top == evalset.targets[:, None]).any(1)
  assert result["hr@10"] == pytest.approx(hits.mean())


def test_sweeps_record_every_share_selectivity_and_new_item_precision(setup):
  evaluate, users, ctx, attributes, *_ = setup
  grids = {m: [0.0, 2.0, -2.0] if spec.grid != "rerank_strengths" else [0.0, 1.0, -1.0]
           for m, spec in methods.METHODS.items()}
  base, base_top = evaluate.ranked(users)
  out = sweeps.sweep_methods(evaluate, users, ctx, ["b"], grids, baseline=(base, base_top))
  assert {"diff_means", "random_latent"} <= set(out)
  json.dumps(out, allow_nan=False)  # every value is JSON
  for method, m in out.items():
    a = m["attributes"]["b"]
    assert set(a["all_shares@10"]) == {"a", "b", "c"}
    assert a["all_shares@10"]["b"] == a["share@10"]
    assert a["baseline_share@10"] == base["share@10"]["b"]
    for i, strength in enumerate(a["strengths"]):
      row = np.array([a["all_shares@10"][n][i] for n in "abc"])
      assert a["selectivity"][i] == pytest.approx(specificity.selectivity(
          row, evaluate.shares(base), 1, int(np.sign(strength)),
          peers=specificity.peer_mask(list("abc"))[1]))
    if method != "sae_replace":  # the others leave the lists unchanged at strength 0
      assert a["all_shares@10"]["a"][0] == base["share@10"]["a"]
      assert a["new_item_precision"][0] is None and a["selectivity"][0] == 0.0
  # The re-ranking bias lifts attribute b's items only: what it brings in at +1 is directly
  # countable from the lists.
  _, top = evaluate.ranked(users, methods.rerank_steer(attributes[:, 1], 1.0 * ctx.score_unit))
  new = ~(top[:, :, None] == base_top[:, None, :]).any(-1)
  expected = attributes[top[new], 1].mean()
  assert out["rerank"]["attributes"]["b"]["new_item_precision"][1] == pytest.approx(expected)


def test_random_latent_baseline_edits_its_latent(setup):
  evaluate, users, ctx, *_ = setup
  latent = ctx.random_latents["b"]
  steer = methods.METHODS["random_latent"].steer(ctx, "b", 1, 4.0)
  expected = ctx.sae(Control.single(latent).edits(4.0, ctx.mode))
  assert evaluate(users, steer) == evaluate(users, expected)


def test_method_table_counts_doubled_and_selective():
  baseline = {"ndcg@10": 0.1, "share@10": {"a": 0.1, "b": 0.1}}

  def attribute(share, sel, ndcg=0.1):
    return {"strengths": [0.0, 4.0], "share@10": [0.1, share], "ndcg@10": [0.1, ndcg],
            "selectivity": [0.0, sel]}

  m = {"x": {"attributes": {"a": attribute(0.3, 2.0), "b": attribute(0.3, 0.5)}},
       "y": {"attributes": {"a": attribute(0.3, 2.0, ndcg=0.05), "b": attribute(0.15, 3.0)}}}
  table = sweeps.method_table(m, baseline, 0.8)
  assert table["doubled"] == {"x": 2, "y": 0}
  assert table["doubled_and_selective"] == {"x": 1, "y": 0}
  assert table["selectivity_at_min_ndcg"]["x"] == {"a": 2.0, "b": 0.5}


# ---------------------------------------------------------------- choosing for specificity


def _planted_sweep(effects):
  """Two attributes: the target (0, baseline share 0.1) and a distractor (1, 0.05) that co-occurs
  with it. `effects[latent] = (target push, distractor push)` per unit strength; NDCG barely
  moves."""

  def sweep(control, strength):
    push = sum(w * np.asarray(effects[j]) for j, w in zip(control.latents, control.weights))
    shares = np.clip(np.array([0.1, 0.05]) + push * strength, 0, 1)
    return shares, 0.1 - 1e-4 * abs(strength)

  return sweep


def test_the_specific_latent_wins_where_gain_alone_picks_the_shared_one():
  # Latent 1 is shared: it lifts the target twice as much as latent 2 does, but lifts the
  # distractor even more (relatively). Latent 2 lifts the target only.
  sweep = _planted_sweep({1: (0.02, 0.03), 2: (0.01, 0.0), 3: (0.0, 0.0)})
  kwargs = dict(base_shares=[0.1, 0.05], base_ndcg=0.1, direction=1, min_ndcg_ratio=0.8)
  out = controls.choose(sweep, [1, 2, 3], 0, [2.0, 4.0, 8.0], **kwargs)
  by_gain = max(out["candidates"], key=out["candidates"].get)  # today's choice: gain alone
  assert by_gain == 1 and out["candidates"] == {1: pytest.approx(0.16), 2: pytest.approx(0.08),
                                                 3: 0.0}
  assert out["control"] == Control.single(2) and out["kind"] == "single"
  assert out["selectivity"] >= 1 and out["gain"] == pytest.approx(0.08)
  assert out["candidate_selectivity"][1] < 1
  # The distractor's own choice may be the shared latent: it moves the distractor most.
  other = controls.choose(sweep, [1, 2, 3], 1, [2.0, 4.0, 8.0], **kwargs)
  assert other["control"] == Control.single(1)
  chosen = {"target": {"promote": out["control"]}, "distractor": {"promote": other["control"]}}
  assert controls.shared_controls(chosen) == {"promote": [], "suppress": []}


def test_a_solved_set_is_tried_and_kept_when_more_selective():
  sweep = _planted_sweep({1: (0.02, 0.03), 2: (0.004, 0.0), 3: (0.004, 0.0), 4: (0.004, 0.0)})
  solved = Control((2, 3, 4), (1.0, 1.0, 1.0))
  out = controls.choose(sweep, [1, 2, 3, 4], 0, [2.0, 4.0, 8.0], base_shares=[0.1, 0.05],
                        base_ndcg=0.1, direction=1, solved=[solved])
  assert out["control"] == solved and out["kind"] == "solved"
  assert out["gain"] == pytest.approx(0.096)  # the best pair (two of 2, 3, 4) gains 0.064


def test_solved_control_weights_the_specific_latents_not_the_shared_one():
  # Items 1-4 carry the target only, 5-8 the distractor only, 9-12 both, 13-20 neither.
  attributes = np.zeros((21, 2), bool)
  attributes[1:5, 0] = attributes[9:13, 0] = True
  attributes[5:13, 1] = True
  effect = np.zeros((4, 21))
  effect[0, 1:13] = 2.0  # shared: every target or distractor item
  effect[1, [1, 2, 9, 10]] = 1.0  # half of the target's items each
  effect[2, [3, 4, 11, 12]] = 1.0
  effect[3, 13:] = 1.0  # neither
  attribute_effect = np.stack([effect[:, 1:][:, attributes[1:, g]].mean(1)
                               - effect[:, 1:].mean(1) for g in range(2)], 1)
  assert attribute_effect[:, 0].argmax() == 0  # by effect alone, the shared latent comes first
  control = controls.solved_control(effect, attribute_effect, attributes, 0, num=3)
  assert set(control.latents) == {1, 2}
  assert control.weights[0] == pytest.approx(control.weights[1])
  # Scaled so that the set lifts the target as much as the best single latent does.
  lift = sum(w * attribute_effect[j, 0] for j, w in zip(control.latents, control.weights))
  assert lift == pytest.approx(attribute_effect[0, 0])
  assert controls.solved_control(effect, attribute_effect, attributes, 0, num=1) is None


def test_attributes_in_no_unedited_list_get_no_control():
  assert controls.steerable(np.array([0.2, 0.0, 0.01]), ["a", "unknown", "c"]) == (
      ["a", "c"], ["unknown"])


def test_random_latents_are_alive_seeded_and_independent_of_other_attributes():
  fire_rate = np.zeros(100)
  fire_rate[[3, 17, 42, 77]] = 0.1
  names = ["x", "y", "z"]
  got = controls.random_latents(fire_rate, names, names, seed=0)
  assert set(got.values()) <= {3, 17, 42, 77}
  assert got == controls.random_latents(fire_rate, names, names, seed=0)
  assert controls.random_latents(fire_rate, ["z"], names, seed=0) == {"z": got["z"]}
  draws = [controls.random_latents(fire_rate, ["x"], names, seed=s)["x"] for s in range(20)]
  assert len(set(draws)) > 1


def test_diff_means_direction_points_from_the_rest_to_the_attribute():
  rng = np.random.default_rng(6)
  labels = rng.random(2000) < 0.3
  hidden = rng.normal(size=(2000, 8))
  hidden[:, 2] += 1.5 * labels
  w = methods.diff_means_direction(hidden, labels)
  mu = hidden[labels].mean(0) - hidden[~labels].mean(0)
  np.testing.assert_allclose(w / np.linalg.norm(w), mu / np.linalg.norm(mu), rtol=1e-5, atol=1e-6)
  assert float((hidden @ w).std()) == pytest.approx(float(np.linalg.norm(w)) ** 2, rel=1e-5)
  assert not methods.diff_means_direction(hidden, np.ones(2000, bool)).any()


def test_a_direction_without_strengths_falls_back_to_the_first_candidate():
  sweep = _planted_sweep({1: (0.02, 0.03), 2: (0.01, 0.0)})
  out = controls.choose(sweep, [1, 2], 0, [4.0], base_shares=[0.1, 0.05], base_ndcg=0.1,
                        direction=-1)
  assert out["control"] == Control.single(1) and out["gain"] == -np.inf
  assert out["selectivity"] is None
