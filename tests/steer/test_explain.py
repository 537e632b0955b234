"""`explain`: on the final hidden state contributions + remainder add up to the score; on an
earlier block each contribution is the score change of the `set 0` steering edit."""

import jax.numpy as jnp
import numpy as np
import pytest

from seqrec_jax.recommender import activations, evaluation
from seqrec_jax.steer import edits as steering
from seqrec_jax.steer.explain import explain
from tests.helpers.small_steer import D, M, small_model, trained_sae



def _trained_sae(seed=0, scale=2.5):
  return trained_sae(seed, scale, decoder_bias=jnp.linspace(-0.3, 0.3, D))  # a bias that matters


@pytest.fixture(scope="module")
def model():
  cfg, params = small_model()
  ids = jnp.asarray([0, 0, 3, 17, 5, 9, 22, 4], jnp.int32)
  return cfg, params, ids


@pytest.mark.parametrize("positions", steering.POSITIONS)
def test_final_layer_contributions_plus_remainder_are_the_score(model, positions):
  cfg, params, ids = model
  trained = _trained_sae()
  item = 11
  result = explain(params, cfg, trained, "final_norm", ids, item, positions=positions)
  # Direct computation: h . e_i split into the latents' decoder terms, error and decoder bias.
  h = activations.layer_output(params, ids[None], model_cfg=cfg, layer="final_norm")[0, -1]
  table = params["item_embedding"]["embedding"][item]
  f = trained.encode(h)
  direct = np.asarray(f[:, None] * (trained.decode(jnp.eye(M)) - trained.decode(jnp.zeros(M))) @ table)
  remainder = float((h - trained.decode(f) + trained.decode(jnp.zeros(M))) @ table)
  score = float(evaluation.scores_last(params, ids[None], cfg)[0, item])
  assert np.count_nonzero(np.asarray(f)) >= 5  # something to explain
  np.testing.assert_allclose(result.score, score, rtol=1e-5, atol=1e-5)
  # "all" adds latents active only earlier, whose direct term at the last position is 0.
  assert set(np.flatnonzero(np.asarray(f)).tolist()) <= set(result.latents.tolist())
  np.testing.assert_allclose(result.contributions, direct[result.latents], rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(result.contributions.sum() + remainder, score, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(result.remainder, remainder, rtol=1e-4, atol=1e-4)
  assert np.all(np.diff(result.contributions) <= 0)  # largest first


@pytest.mark.parametrize("positions", steering.POSITIONS)
def test_earlier_block_contribution_is_the_ablation_edit(model, positions):
  cfg, params, ids = model
  trained = _trained_sae(seed=3)
  item = 7
  result = explain(params, cfg, trained, "blocks_0", ids, item, positions=positions)
  assert len(result.latents) >= 5
  plain = float(evaluation.scores_last(params, ids[None], cfg)[0, item])
  for j, contribution in zip(result.latents[[0, 1, -1]], result.contributions[[0, 1, -1]]):
    edit = steering.layer_edit("blocks_0", trained, steering.Edits.make([(int(j), "set", 0.0)]),
                               jnp.ones(M), positions=positions)
    ablated = float(evaluation.scores_last(params, ids[None], cfg, edit=edit)[0, item])
    np.testing.assert_allclose(contribution, plain - ablated, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(result.remainder, plain - result.contributions.sum(), rtol=1e-5,
                             atol=1e-5)
