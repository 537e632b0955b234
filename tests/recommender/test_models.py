import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqrec_jax.recommender.model import ModelConfig, SequentialRecommender, init_params, layer_names, make_model

V, L = 50, 12


def _config(kind):
  return ModelConfig(kind=kind, num_items=V, max_len=L, hidden_dim=16, num_blocks=2, num_heads=2,
                     mlp_dim=32, dropout_rate=0.1)


def _ids(rng, batch=4, pad=5):
  ids = rng.integers(1, V, size=(batch, L)).astype(np.int32)
  ids[:, :pad] = 0
  return jnp.asarray(ids)


@pytest.mark.parametrize("kind", ["sasrec", "bert4rec"])
def test_padded_slots_do_not_change_real_positions(kind):
  cfg = _config(kind)
  params = init_params(cfg, jax.random.PRNGKey(0))
  model = make_model(cfg)
  ids = _ids(np.random.default_rng(0))
  out = model.apply({"params": params}, ids)
  # Replace the padding ids by other padding-position garbage: only ids define the mask, so
  # changing the *embedding* of padding (the pad row's value) must not matter either.
  params2 = jax.tree_util.tree_map(lambda x: x, params)
  params2["item_embedding"]["embedding"] = params["item_embedding"]["embedding"].at[0].set(5.0)
  out2 = model.apply({"params": params2}, ids)
  np.testing.assert_allclose(out[:, 5:], out2[:, 5:], atol=1e-5)


def test_sasrec_is_causal():
  cfg = _config("sasrec")
  params = init_params(cfg, jax.random.PRNGKey(0))
  model = make_model(cfg)
  ids = _ids(np.random.default_rng(2), pad=2)
  t = 7
  changed = ids.at[:, t + 1].set((ids[:, t + 1] % (V - 1)) + 1)
  a = model.apply({"params": params}, ids)
  b = model.apply({"params": params}, changed)
  # Real positions 2..t only: padded rows attend to nothing and their outputs are never read.
  np.testing.assert_allclose(a[:, 2 : t + 1], b[:, 2 : t + 1], atol=1e-6)
  assert not np.allclose(a[:, t + 1 :], b[:, t + 1 :])


def test_bert4rec_is_bidirectional():
  cfg = _config("bert4rec")
  params = init_params(cfg, jax.random.PRNGKey(0))
  model = make_model(cfg)
  ids = _ids(np.random.default_rng(3), pad=2)
  changed = ids.at[:, -1].set(cfg.mask_token)
  a = model.apply({"params": params}, ids)
  b = model.apply({"params": params}, changed)
  assert not np.allclose(a[:, 3], b[:, 3])


@pytest.mark.parametrize("kind", ["sasrec", "bert4rec"])
def test_capture_intermediates_names_every_layer(kind):
  cfg = _config(kind)
  params = init_params(cfg, jax.random.PRNGKey(0))
  model = make_model(cfg)
  ids = _ids(np.random.default_rng(4))
  out, state = model.apply({"params": params}, ids, capture_intermediates=True, mutable=["intermediates"])
  inter = state["intermediates"]
  for name in layer_names(cfg):
    node = inter
    for part in name.split("/"):
      node = node[part]
    assert node["__call__"][0].shape == (4, L, cfg.hidden_dim), name
  np.testing.assert_allclose(inter["final_norm"]["__call__"][0], out)


def test_logits_tied_and_padding_never_scored():
  cfg = _config("bert4rec")
  params = init_params(cfg, jax.random.PRNGKey(0))
  model = make_model(cfg)
  h = jax.random.normal(jax.random.PRNGKey(1), (3, cfg.hidden_dim))
  logits = model.apply({"params": params}, h, method=SequentialRecommender.item_logits)
  assert logits.shape == (3, V)  # the mask token is not a candidate
  assert np.all(np.isneginf(logits[:, 0]))
  np.testing.assert_allclose(logits[:, 1:], h @ params["item_embedding"]["embedding"][1:V].T, rtol=1e-5, atol=1e-5)


def test_dropout_is_active_only_in_training():
  cfg = _config("sasrec")
  params = init_params(cfg, jax.random.PRNGKey(0))
  ids = _ids(np.random.default_rng(5))
  train_model = make_model(cfg, train=True)
  a = train_model.apply({"params": params}, ids, rngs={"dropout": jax.random.PRNGKey(1)})
  b = train_model.apply({"params": params}, ids, rngs={"dropout": jax.random.PRNGKey(2)})
  assert not np.allclose(a, b)
  c = make_model(cfg).apply({"params": params}, ids)
  d = make_model(cfg).apply({"params": params}, ids)
  np.testing.assert_array_equal(c, d)
