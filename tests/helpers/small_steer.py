"""A small SASRec and an untrained SAE over its width, shared by the steering tests."""

import jax
import jax.numpy as jnp
import numpy as np

from seqrec_jax import sae
from seqrec_jax.recommender.model import ModelConfig, init_params

D, M, V, L = 16, 48, 30, 8  # width, latents, items, length


def trained_sae(seed=0, scale=2.5, decoder_bias=None):
  """An SAE with a shifted and scaled normaliser (so tests see the raw-unit conversion) and
  optionally a decoder bias `[D]`."""
  config = sae.SAEConfig(variant="relu_l1", input_dim=D, dict_size=M)
  variables = sae.init_variables(config, jax.random.PRNGKey(seed))
  if decoder_bias is not None:
    variables["params"]["b_dec"] = jnp.asarray(decoder_bias)
  norm = sae.Normalizer(jnp.linspace(-1, 1, D), jnp.asarray(scale, jnp.float32))
  return sae.TrainedSAE(config, variables, norm)


def small_model():
  """`(config, params)` of a 2-block SASRec without dropout."""
  cfg = ModelConfig(kind="sasrec", num_items=V, max_len=L, hidden_dim=D, num_blocks=2, num_heads=2,
                    mlp_dim=32, dropout_rate=0.0)
  return cfg, init_params(cfg, jax.random.PRNGKey(1))


SWEEP_D, SWEEP_M, SWEEP_V, SWEEP_L, SWEEP_G = 16, 48, 40, 8, 3  # the sweep tests' sizes


def sweep_setup():
  """`(cfg, params, evalset, trained, attributes, features, rng)` of the steering-sweep tests: a
  2-block SASRec without dropout, 37 random histories with targets, an untrained SAE with a
  shifted and scaled normaliser, 3 random item attributes ("a", "b", "c") and the generator
  (drawn from in this order, so tests may keep drawing from it)."""
  from seqrec_jax.data.splits import EvalSet, make_sequences
  from seqrec_jax.recommender import metrics

  d, m, v, length, g = SWEEP_D, SWEEP_M, SWEEP_V, SWEEP_L, SWEEP_G
  cfg = ModelConfig(kind="sasrec", num_items=v, max_len=length, hidden_dim=d, num_blocks=2,
                    num_heads=2, mlp_dim=32, dropout_rate=0.0)
  params = init_params(cfg, jax.random.PRNGKey(1))
  rng = np.random.default_rng(0)
  histories = [rng.integers(1, v, rng.integers(2, 12)) for _ in range(37)]
  evalset = EvalSet(make_sequences(histories, np.arange(37)), rng.integers(1, v, 37).astype(np.int32))
  config = sae.SAEConfig(variant="relu_l1", input_dim=d, dict_size=m)
  trained = sae.TrainedSAE(config, sae.init_variables(config, jax.random.PRNGKey(2)),
                           sae.Normalizer(jnp.linspace(-1, 1, d), jnp.asarray(2.0, jnp.float32)))
  attributes = rng.random((v, g)) < 0.3
  attributes[0] = False
  features = metrics.ListFeatures(rng.integers(1, 50, v), attributes, ["a", "b", "c"])
  return cfg, params, evalset, trained, attributes, features, rng
