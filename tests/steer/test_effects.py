"""Logit effects (`steer.effects.logit_effect`) against a direct computation, on a block (the
resumed path) and on the final norm (where the effect is exactly the direction times the table)."""

import jax
import numpy as np
import pytest

from seqrec_jax.recommender import evaluation, hooks
from seqrec_jax.steer import effects
from tests.helpers.small_steer import D, L, V, small_model


def _direct(params, cfg, ids, valid, layer, direction):
  edit = hooks.LayerEdit(layer, effects._add_direction, direction)
  before = np.asarray(evaluation.scores_last(params, ids, cfg), np.float64)
  after = np.asarray(evaluation.scores_last(params, ids, cfg, edit=edit), np.float64)
  with np.errstate(invalid="ignore"):  # the padding item: -inf - -inf
    diff = np.where(np.isfinite(after - before), after - before, 0.0)
  return diff[valid].mean(0)


@pytest.mark.parametrize("layer", ["blocks_0", "blocks_1", "final_norm"])
def test_logit_effect_matches_the_direct_difference(layer):
  cfg, params = small_model()
  rng = np.random.default_rng(0)
  ids = rng.integers(1, V, (12, L)).astype(np.int32)
  ids[:3, :4] = 0  # some padding
  valid = np.arange(12) < 10
  directions = rng.normal(size=(5, D)).astype(np.float32)
  measured = effects.logit_effect(params, cfg, ids, valid, layer, directions, batch_size=8,
                                  chunk=2)
  for c, direction in enumerate(directions):
    expected = _direct(params, cfg, ids, valid, layer, direction)
    np.testing.assert_allclose(measured[c, 1:], expected[1:], rtol=1e-4, atol=1e-4)


def test_logit_effect_at_the_final_hidden_state_is_the_direction_times_the_table():
  cfg, params = small_model()
  ids = np.random.default_rng(1).integers(1, V, (8, L)).astype(np.int32)
  direction = np.linspace(-1, 1, D).astype(np.float32)[None]
  measured = effects.logit_effect(params, cfg, ids, np.ones(8, bool), "final_norm", direction)
  table = np.asarray(jax.tree_util.tree_leaves(
      {k: v for k, v in params.items() if k == "item_embedding"})[0])[:V]
  np.testing.assert_allclose(measured[0, 1:], (table @ direction[0])[1:], rtol=1e-4, atol=1e-5)
