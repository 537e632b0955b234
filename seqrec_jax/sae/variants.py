"""The variant registry: module by name, variable initialisation."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np

from seqrec_jax.sae.base import SparseAutoencoder
from seqrec_jax.sae.config import SAEConfig
from seqrec_jax.sae.gated import GatedSAE
from seqrec_jax.sae.jumprelu import JumpReLUSAE
from seqrec_jax.sae.normalization import geometric_median
from seqrec_jax.sae.relu_l1 import ReluL1SAE
from seqrec_jax.sae.topk import BatchTopKSAE, TopKSAE


_MODULES = {"relu_l1": ReluL1SAE, "topk": TopKSAE, "batchtopk": BatchTopKSAE,
            "jumprelu": JumpReLUSAE, "gated": GatedSAE}


def make_sae(config: SAEConfig) -> SparseAutoencoder:
  return _MODULES[config.variant](config)


def init_variables(config: SAEConfig, rng: jax.Array, x_sample=None, decoder_bias_init: str = "mean"):
  """Variables `{"params": ..., "state": ...}` ("state" only for batchtopk).

  `x_sample[n, d]` (normalised units) sets the decoder bias to its mean or geometric median.
  """
  variables = make_sae(config).init(rng, jnp.zeros((1, config.input_dim)), method="encode")
  variables = jax.tree_util.tree_map(jnp.asarray, dict(variables))
  variables = {k: dict(v) for k, v in variables.items()}
  if x_sample is not None and len(x_sample):
    if decoder_bias_init == "mean":
      centre = np.asarray(x_sample, np.float64).mean(0)
    elif decoder_bias_init == "geometric_median":
      centre = geometric_median(x_sample)
    else:
      raise ValueError(f"decoder_bias_init must be mean or geometric_median, got {decoder_bias_init!r}")
    variables["params"]["b_dec"] = jnp.asarray(centre, jnp.float32)
  return variables


def split_variables(variables) -> tuple[dict, dict]:
  """`(params, state)`; state is `{}` for variants without one."""
  return variables["params"], dict(variables.get("state", {}))


def join_variables(params, state) -> dict:
  return {"params": params, "state": state} if state else {"params": params}
