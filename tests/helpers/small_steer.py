"""A small SASRec and an untrained SAE over its width, shared by the steering tests."""

import jax
import jax.numpy as jnp

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
