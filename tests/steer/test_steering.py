import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqrec_jax.recommender import evaluation
from seqrec_jax.steer import edits as steering
from seqrec_jax.recommender.model import ModelConfig, init_params
from tests.helpers.small_steer import D, M, L, V, small_model, trained_sae


@pytest.fixture(scope="module")
def model():
  cfg, params = small_model()
  ids = jnp.asarray(np.random.default_rng(0).integers(1, V, (5, L)), jnp.int32).at[:2, :3].set(0)
  return cfg, params, ids


def _hidden(seed=0):
  return jax.random.normal(jax.random.PRNGKey(seed), (3, L, D)) * 2.0


def test_empty_edit_is_bit_identical(model):
  cfg, params, ids = model
  trained = trained_sae()
  typical = jnp.ones(M)
  plain = evaluation.scores_last(params, ids, cfg)
  for positions in steering.POSITIONS:
    for edits in (steering.Edits.make([]), steering.Edits.make([(3, "add", 0.0)]),
                  steering.Edits.make([(5, "scale", 1.0)])):
      edit = steering.layer_edit("blocks_0", trained, edits, typical, positions=positions)
      steered = evaluation.scores_last(params, ids, cfg, edit=edit)
      np.testing.assert_array_equal(np.asarray(steered), np.asarray(plain))


@pytest.mark.parametrize("positions", steering.POSITIONS)
def test_add_moves_hidden_by_delta_times_decoder_direction(positions):
  trained = trained_sae()
  h = _hidden()
  typical = jnp.linspace(0.5, 2.0, M)
  j, delta = 7, 1.5
  # Make latent j active everywhere so that clipping at 0 cannot interfere.
  f = trained.encode(h)
  edited = steering.steer_hidden(h, trained, steering.Edits.make([(j, "add", delta)]), typical,
                                 positions=positions)
  direction = trained.decode(jnp.zeros(M).at[j].set(1.0)) - trained.decode(jnp.zeros(M))
  expected_move = delta * typical[j] * direction  # raw units, normalisation scale included
  move = edited - h
  rows = slice(None) if positions == "all" else slice(L - 1, L)
  np.testing.assert_allclose(move[:, rows], jnp.broadcast_to(expected_move, move[:, rows].shape),
                             rtol=1e-5, atol=1e-5)
  if positions == "last":
    np.testing.assert_array_equal(move[:, : L - 1], 0.0)
  # In raw units the direction is the decoder row (unit norm for relu_l1's constrained decoder).
  w = trained.variables["params"]["W_dec"][j]
  np.testing.assert_allclose(direction, w, rtol=1e-5, atol=1e-6)
  assert float(f[..., j].min()) >= 0


def test_set_scale_and_negative_add():
  typical = jnp.full(M, 2.0)
  f = jnp.abs(jax.random.normal(jax.random.PRNGKey(0), (4, M)))
  out = steering.edit_latents(f, steering.Edits.make([(1, "set", 3.0), (2, "scale", 0.5),
                                                      (3, "add", -100.0)]), typical)
  np.testing.assert_allclose(out[:, 1], 6.0)
  np.testing.assert_allclose(out[:, 2], f[:, 2] * 0.5, rtol=1e-6)
  np.testing.assert_allclose(out[:, 3], f[:, 3] - 200.0, rtol=1e-6)  # not clipped
  np.testing.assert_array_equal(out[:, 4:], f[:, 4:])


def test_replace_variant_uses_reconstruction():
  trained = trained_sae()
  h = _hidden(1)
  out = steering.steer_hidden(h, trained, steering.Edits.make([]), jnp.ones(M),
                              error_preserving=False)
  np.testing.assert_allclose(out, trained.reconstruct(h), rtol=1e-5, atol=1e-5)


def test_sweep_of_nine_strengths_compiles_once(model):
  cfg, params, ids = model
  trained = trained_sae()
  typical = jnp.ones(M)
  traces = []

  @jax.jit
  def steered_scores(params, ids, edit):
    traces.append(1)
    return evaluation.scores_last(params, ids, cfg, edit=edit)

  results = []
  for strength in np.linspace(-4, 4, 9):
    edit = steering.layer_edit("blocks_0", trained, steering.Edits.make([(2, "add", strength)]),
                               typical)
    results.append(np.asarray(steered_scores(params, ids, edit)))
  assert len(traces) == 1
  assert not np.array_equal(results[0], results[-1])


def test_edit_by_attribute_name_and_errors():
  latents = {"Comedy": 3, "Horror": 9}
  assert steering.resolve_edits(["Comedy:+2", "Horror:-1.5", "#11:4"], latents) == [
      (3, "add", 2.0), (9, "add", -1.5), (11, "add", 4.0)]
  from seqrec_jax.core.errors import DataError
  with pytest.raises(DataError, match="Comedy"):
    steering.resolve_edits(["Comdy:+2"], latents)
  with pytest.raises(DataError, match="NAME:VALUE"):
    steering.resolve_edits(["Comedy"], latents)


def test_bert4rec_steering_changes_scores():
  cfg = ModelConfig(kind="bert4rec", num_items=V, max_len=L, hidden_dim=D, num_blocks=1,
                    num_heads=2, mlp_dim=32, dropout_rate=0.0)
  params = init_params(cfg, jax.random.PRNGKey(2))
  ids = jnp.asarray(np.random.default_rng(1).integers(1, V, (4, L)), jnp.int32).at[:, -1].set(V)
  trained = trained_sae(1)
  plain = evaluation.scores_last(params, ids, cfg)
  edit = steering.layer_edit("blocks_0", trained, steering.Edits.make([(0, "set", 5.0)]),
                             jnp.ones(M), positions="last")
  assert not np.allclose(evaluation.scores_last(params, ids, cfg, edit=edit), plain)
