"""Resampling dead latents (Anthropic's recipe) for relu_l1, jumprelu and gated."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from seqrec_jax.core import training
from seqrec_jax.sae.config import SAEConfig
from seqrec_jax.sae.objective import dead_mask, normalizer_of
from seqrec_jax.sae.variants import join_variables, make_sae


# ----------------------------------------------------------------------------- resampling


def _reset_adam(opt_state, masks):
  """Zero Adam's moments where `masks` (a params-shaped tree of bools, broadcastable) is True."""

  def reset(node):
    if isinstance(node, optax.ScaleByAdamState):
      zero = lambda t: jax.tree_util.tree_map(lambda a, m: jnp.where(m, 0.0, a), t, masks)
      return node._replace(mu=zero(node.mu), nu=zero(node.nu))
    return node

  return jax.tree_util.tree_map(reset, opt_state,
                                is_leaf=lambda n: isinstance(n, optax.ScaleByAdamState))


@functools.partial(jax.jit, static_argnames=("config",))
def resample_dead(state: training.TrainState, x_raw: jax.Array, rng: jax.Array, *, config: SAEConfig):
  """Re-point dead latents at inputs `x_raw[S, d]` that reconstruct badly (see module docstring).

  Returns `(state, number_resampled)`; a no-op when no latent is dead.
  """
  model_state = state.model_state
  dead = dead_mask(config, model_state)
  params = state.params
  x = normalizer_of(model_state).normalize(x_raw)
  variables = join_variables(params, model_state["state"])
  x_hat = make_sae(config).apply(variables, x)
  err = jnp.sum(jnp.square(x - x_hat), -1)
  logits = jnp.log(jnp.maximum(err, 1e-12))
  picks = jax.random.categorical(rng, logits, shape=(config.dict_size,))
  directions = x[picks] - params["b_dec"]
  directions = directions / jnp.maximum(jnp.linalg.norm(directions, axis=-1, keepdims=True), 1e-12)
  enc_norms = jnp.linalg.norm(params["W_enc"], axis=0)
  num_alive = jnp.sum(~dead)
  alive_norm = jnp.where(num_alive > 0, jnp.sum(jnp.where(dead, 0.0, enc_norms)) / jnp.maximum(num_alive, 1), 1.0)
  new = dict(params)
  new["W_dec"] = jnp.where(dead[:, None], directions, params["W_dec"])
  new["W_enc"] = jnp.where(dead[None, :], directions.T * 0.2 * alive_norm, params["W_enc"])
  new["b_enc"] = jnp.where(dead, 0.0, params["b_enc"])
  masks = {name: False for name in params}
  masks.update({"W_dec": dead[:, None], "W_enc": dead[None, :], "b_enc": dead})
  if "log_threshold" in params:
    new["log_threshold"] = jnp.where(dead, np.log(config.init_threshold), params["log_threshold"])
    masks["log_threshold"] = dead
  if "r_mag" in params:
    new["r_mag"] = jnp.where(dead, 0.0, params["r_mag"])
    new["b_mag"] = jnp.where(dead, 0.0, params["b_mag"])
    masks.update({"r_mag": dead, "b_mag": dead})
  opt_state = _reset_adam(state.opt_state, masks)
  counters = jnp.where(dead, 0, model_state["tokens_since_fired"])
  state = state.replace(params=new, opt_state=opt_state,
                        model_state={**model_state, "tokens_since_fired": counters})
  return state, jnp.sum(dead)
