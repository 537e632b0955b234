import jax.numpy as jnp
import numpy as np
import pytest

from seqrec_jax.recommender import evaluation, hooks, input_pipeline
from seqrec_jax.steer import controls, methods
from seqrec_jax.steer.edits import resolve_edits
from seqrec_jax.steer.methods import Control
from seqrec_jax.steer.sweeps import composite_edits, parse_composites

from tests.helpers import small_steer

D, M, V, L, G = (small_steer.SWEEP_D, small_steer.SWEEP_M, small_steer.SWEEP_V, small_steer.SWEEP_L,
                 small_steer.SWEEP_G)


@pytest.fixture(scope="module")
def setup():
  cfg, params, evalset, trained, attributes, features, _ = small_steer.sweep_setup()
  arrays = input_pipeline.make_eval_arrays(evalset, kind="sasrec", max_len=L, batch_size=16)
  return cfg, params, arrays, trained, attributes, features


def _evaluate(setup, steer):
  cfg, params, arrays, _, _, features = setup
  return evaluation.evaluate(params, cfg, arrays, batch_size=16, edit=steer.edit,
                             score_bias=steer.score_bias, list_features=features)


def test_every_error_preserving_method_at_zero_reproduces_the_baseline_bitwise(setup):
  cfg, params, arrays, trained, attributes, _ = setup
  baseline = _evaluate(setup, methods.Steer())
  hidden = np.random.default_rng(3).normal(size=(200, D)).astype(np.float32)
  labels = np.random.default_rng(4).random(200) < 0.4
  typical = jnp.linspace(0.5, 2.0, M)
  for positions in ("all", "last"):
    settings = [
        methods.sae_steer("blocks_0", trained, typical, Control((3, 7), (1.0, 0.4)).edits(0.0),
                          positions=positions),
        methods.direction_steer("blocks_0", methods.dimension_direction(hidden, 5, -1), 0.0,
                                positions=positions),
        methods.direction_steer("blocks_1", methods.probe_direction(hidden, labels), 0.0,
                                positions=positions),
        methods.rerank_steer(attributes[:, 1], 0.0),
        methods.direction_steer("blocks_0", methods.diff_means_direction(hidden, labels), 0.0,
                                positions=positions),
    ]
    for steer in settings:
      assert _evaluate(setup, steer) == baseline


def test_replace_at_zero_is_the_spliced_sae(setup):
  cfg, params, arrays, trained, _, features = setup
  typical = jnp.ones(M)
  replace = methods.sae_steer("blocks_0", trained, typical, Control.single(4).edits(0.0),
                              error_preserving=False)
  spliced = evaluation.evaluate(params, cfg, arrays, batch_size=16, list_features=features,
                                edit=hooks.sae_splice("blocks_0", trained))
  got = _evaluate(setup, replace)
  for key in ("ndcg@10", "hr@10", "coverage@10"):
    assert got[key] == pytest.approx(spliced[key], abs=1e-6)


def test_rerank_promotes_the_attribute_monotonically(setup):
  _, _, arrays, _, attributes, _ = setup
  shares = [_evaluate(setup, methods.rerank_steer(attributes[:, 2], beta))["share@10"]["c"]
            for beta in (0.0, 0.05, 0.5, 50.0)]
  assert shares == sorted(shares)
  # A huge bias fills each list with the attribute's unseen items first (seen ones are filtered).
  unseen = [len(set(np.flatnonzero(attributes[:, 2])) - set(arrays.seen[i]))
            for i in np.flatnonzero(arrays.valid)]
  assert shares[-1] == pytest.approx(np.mean(np.minimum(unseen, 10)) / 10)


def test_direction_moves_hidden_by_amount_times_direction(setup):
  cfg, params, arrays, *_ = setup
  direction = np.arange(D, dtype=np.float32) / D
  steer = methods.direction_steer("blocks_0", direction, 2.5, positions="last")
  h = jnp.asarray(np.random.default_rng(5).normal(size=(2, L, D)), jnp.float32)
  moved = steer.edit(h) - h
  np.testing.assert_allclose(moved[:, -1], np.broadcast_to(2.5 * direction, (2, D)), rtol=1e-6,
                             atol=1e-6)
  np.testing.assert_array_equal(moved[:, :-1], 0.0)


def test_probe_direction_separates_the_classes():
  rng = np.random.default_rng(6)
  labels = rng.random(2000) < 0.3
  hidden = rng.normal(size=(2000, 8))
  hidden[:, 2] += 1.5 * labels  # the attribute lives along dimension 2
  hidden[:, 3] = hidden[:, 2] + rng.normal(size=2000)  # a correlated distractor
  w = methods.probe_direction(hidden, labels)
  assert np.argmax(np.abs(w)) == 2 and w[2] > 0
  assert float((hidden @ w).std()) == pytest.approx(float(np.linalg.norm(w)) ** 2, rel=1e-6)


def _fake_sweep(effects, ndcg_cost):
  """share of attribute 0 rises by effects[j] * s (capped at 1); NDCG falls by cost[j] * |s|."""

  def sweep(control, strength):
    push = sum(w * effects[j] for j, w in zip(control.latents, control.weights)) * strength
    cost = sum(w * ndcg_cost[j] for j, w in zip(control.latents, control.weights)) * abs(strength)
    return np.array([np.clip(0.1 + push, 0, 1)]), max(0.1 - cost, 0.0)

  return sweep


def test_choose_prefers_the_largest_gain_that_keeps_ndcg():
  # Latent 1 pushes hardest but costs NDCG fast; latent 2 pushes less but cheaply.
  sweep = _fake_sweep({1: 0.05, 2: 0.02, 3: 0.0}, {1: 0.01, 2: 0.0005, 3: 0.0})
  out = controls.choose(sweep, [1, 2, 3], 0, [4.0, 8.0, 16.0, 32.0], base_shares=[0.1],
                        base_ndcg=0.1, direction=1, min_ndcg_ratio=0.8)
  # Latent 1 keeps 80 % NDCG only up to strength 2 (none of the sweep's); latent 2 at 32: +0.64.
  assert out["candidates"][1] == -np.inf and out["candidates"][2] == pytest.approx(0.64)
  assert out["control"].latents[0] == 2


def test_choose_suppression_uses_negative_strengths():
  sweep = _fake_sweep({1: 0.002, 2: 0.01}, {1: 0.0, 2: 0.0})
  out = controls.choose(sweep, [1, 2], 0, [-8.0, -4.0, 4.0, 8.0], base_shares=[0.1],
                        base_ndcg=0.1, direction=-1)
  assert out["candidates"] == {1: pytest.approx(0.016), 2: pytest.approx(0.08)}
  # The two together, weighted by their gains (1 and 0.2), push a little further than 2 alone.
  assert out["control"] == Control((2, 1), (1.0, pytest.approx(0.2)))
  assert out["gain"] == pytest.approx(0.08 * 1.04)


def test_resolve_edits_uses_the_promote_or_suppress_control():
  chosen = {"Comedy": {"promote": Control((3, 9), (1.0, 0.5)), "suppress": Control.single(4)}}
  assert resolve_edits(["Comedy:+2"], chosen) == [(3, "add", 2.0), (9, "add", 1.0)]
  assert resolve_edits(["Comedy:-3", "#11:1"], chosen) == [(4, "add", -3.0), (11, "add", 1.0)]


def test_composites_parse_and_expand():
  parts = parse_composites("kids mode=Children's:+1,Animation:+1,Horror:-1;no Horror=Horror:-1")
  assert parts == {"kids mode": [("Children's", 1.0), ("Animation", 1.0), ("Horror", -1.0)],
                   "no Horror": [("Horror", -1.0)]}
  chosen = {n: {"promote": Control.single(i), "suppress": Control.single(10 + i)}
            for i, n in enumerate(["Children's", "Animation", "Horror"])}
  assert composite_edits(parts["kids mode"], chosen, 4.0) == [
      (0, "add", 4.0), (1, "add", 4.0), (12, "add", -4.0)]
  with pytest.raises(ValueError, match="NAME=ATTR"):
    parse_composites("kids mode")
