"""Resuming the forward pass at a block's output (`evaluation.LayerInputs`, used by the steering
sweeps) gives the scores and metrics of the full pass, with and without edits."""

import jax.numpy as jnp
import numpy as np
import pytest

from seqrec_jax.data.splits import EvalSet, make_sequences
from seqrec_jax.recommender import activations, evaluation, hooks, input_pipeline
from seqrec_jax.recommender.model import ModelConfig, init_params
from seqrec_jax.steer import methods


def _setup(kind):
  cfg = ModelConfig(kind=kind, num_items=50, max_len=8, hidden_dim=16, num_blocks=3,
                    num_heads=2, mlp_dim=32, dropout_rate=0.0)
  import jax
  params = init_params(cfg, jax.random.PRNGKey(3))
  rng = np.random.default_rng(0)
  seqs = make_sequences([rng.integers(1, 50, rng.integers(2, 12)) for _ in range(21)], range(21))
  evalset = EvalSet(seqs, rng.integers(1, 50, 21).astype(np.int32))
  arrays = input_pipeline.make_eval_arrays(evalset, kind=kind, max_len=8, batch_size=8,
                                           mask_token=cfg.mask_token)
  return cfg, params, arrays


@pytest.mark.parametrize("kind", ["sasrec", "bert4rec"])
@pytest.mark.parametrize("layer", ["blocks_0", "blocks_1", "blocks_2"])
def test_resumed_scores_match_the_full_pass(kind, layer):
  cfg, params, arrays = _setup(kind)
  ids = jnp.asarray(arrays.input_ids[:8])
  hidden = activations.layer_output(params, ids, model_cfg=cfg, layer=layer)
  direction = np.linspace(-1, 1, cfg.hidden_dim).astype(np.float32)
  for edit in (None, methods.direction_steer(layer, direction, 3.0, positions="last").edit,
               methods.direction_steer(layer, direction, -2.0, positions="all").edit,
               hooks.zero_ablation(layer)):
    full = np.asarray(evaluation.scores_last(params, ids, cfg, edit=edit))
    resumed = np.asarray(evaluation.scores_resumed(params, hidden, ids, cfg,
                                                   evaluation.resume_block(layer), edit))
    np.testing.assert_allclose(resumed[:, 1:], full[:, 1:], rtol=1e-5, atol=1e-5)
    assert np.isneginf(resumed[:, 0]).all()


def test_evaluate_with_layer_inputs_matches_without():
  cfg, params, arrays = _setup("sasrec")
  inputs = evaluation.LayerInputs.build(params, cfg, arrays, 8, "blocks_1")
  assert inputs.start == 2 and len(inputs.batches) == 3
  edit = methods.direction_steer("blocks_1", np.ones(cfg.hidden_dim, np.float32), 2.0).edit
  for kwargs in ({}, {"edit": edit}, {"score_bias": jnp.linspace(0, 1, cfg.num_items)}):
    a = evaluation.evaluate(params, cfg, arrays, batch_size=8, **kwargs)
    b = evaluation.evaluate(params, cfg, arrays, batch_size=8, layer_inputs=inputs, **kwargs)
    assert a.keys() == b.keys()
    for key in a:
      assert b[key] == pytest.approx(a[key], abs=1e-6), key


def test_layers_inside_or_after_the_blocks_are_not_resumed():
  assert evaluation.resume_block("blocks_4") == 5
  assert evaluation.resume_block("final_norm") is None
  assert evaluation.resume_block("blocks_0/mlp") is None
  cfg, params, arrays = _setup("sasrec")
  assert evaluation.LayerInputs.build(params, cfg, arrays, 8, "final_norm") is None
  assert not evaluation.LayerInputs("blocks_0", 1, []).covers(hooks.zero_ablation("blocks_1"))


def test_damaged_weights_are_an_error_and_padding_is_never_ranked():
  import jax

  cfg, params, arrays = _setup("sasrec")
  ranked = evaluation.evaluate(params, cfg, arrays, batch_size=8, k=49, filter_seen=False)
  assert ranked["num_users"] == 21
  _, top = evaluation._eval_batch(params, next(arrays.batches(8)), model_cfg=cfg, k=49,
                                  filter_seen=False)
  assert (np.asarray(top) > 0).all()  # every real item but never the padding id 0
  broken = jax.tree_util.tree_map(lambda x: x, params)
  table = np.asarray(broken["item_embedding"]["embedding"]).copy()
  table[7, 3] = np.nan  # one damaged weight: item 7's score is NaN for every user
  broken["item_embedding"]["embedding"] = jnp.asarray(table)
  with pytest.raises(FloatingPointError, match="not finite"):
    evaluation.evaluate(broken, cfg, arrays, batch_size=8)
