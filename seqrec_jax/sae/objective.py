"""The SAE loss and the pieces of the shared train step (dead-latent counters, unit-norm decoder)."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import optax

from seqrec_jax.core import training
from seqrec_jax.sae.config import COUNTER_CAP, SAEConfig
from seqrec_jax.sae.normalization import Normalizer
from seqrec_jax.sae.variants import join_variables, make_sae, split_variables


# ----------------------------------------------------------------------------- losses


def per_example_loss(config: SAEConfig, variables, x, dead=None):
  """Loss terms per example for normalised inputs `x[B, d]`.

  Returns `(loss[B], parts, forward)` with `parts` = {"recon", "sparsity", "aux", "l0"}, each `[B]`;
  recon is `||x - x_hat||^2` (summed over d, normalised units).
  """
  if dead is None:
    dead = jnp.zeros((config.dict_size,), bool)
  fwd = make_sae(config).apply(variables, x, dead, method="train_forward")
  recon = jnp.sum(jnp.square(x - fwd.x_hat), -1)
  parts = {"recon": recon, "sparsity": fwd.sparsity, "aux": fwd.aux,
           "l0": jnp.sum((fwd.latents > 0).astype(jnp.float32), -1)}  # float: a plain reduce
  return recon + fwd.sparsity + fwd.aux, parts, fwd


def loss(config: SAEConfig, variables, x, dead=None) -> tuple[jax.Array, dict]:
  """Mean loss over the batch `x[B, d]` (normalised units) and its named parts (means)."""
  per_example, parts, _ = per_example_loss(config, variables, x, dead)
  return jnp.mean(per_example), {k: jnp.mean(v) for k, v in parts.items()}


# ----------------------------------------------------------------------------- train step


def initial_model_state(config: SAEConfig, state: dict, norm: Normalizer) -> dict:
  """Non-gradient state carried by the train state: normaliser, variable state, counters."""
  return {
      "norm": {"shift": jnp.asarray(norm.shift, jnp.float32), "scale": jnp.asarray(norm.scale, jnp.float32)},
      "state": dict(state),
      "tokens_since_fired": jnp.zeros((config.dict_size,), jnp.int32),
  }


def normalizer_of(model_state) -> Normalizer:
  return Normalizer(model_state["norm"]["shift"], model_state["norm"]["scale"])


def dead_mask(config: SAEConfig, model_state) -> jax.Array:
  return model_state["tokens_since_fired"] >= config.dead_tokens


def project_decoder(params):
  """Unit-norm decoder rows (the constraint of all variants here)."""
  w = params["W_dec"]
  norms = jnp.linalg.norm(w, axis=-1, keepdims=True)
  return {**params, "W_dec": w / jnp.maximum(norms, 1e-12)}


def make_step_fns(config: SAEConfig, tx: optax.GradientTransformation) -> training.StepFns:
  """The SAE pieces of the shared `training.train_step`.

  Batches are `{"x": float32 [B, d]}` of *raw* activations; the normaliser in
  `model_state["norm"]` is applied inside the step.
  """

  def loss_fn(params, model_state, batch, rng):
    del rng
    x = normalizer_of(model_state).normalize(batch["x"])
    variables = join_variables(params, model_state["state"])
    per_ex, parts, fwd = per_example_loss(config, variables, x, dead_mask(config, model_state))
    # 1 where a latent fired on this device's batch: a max over the batch. An int32 count of
    # `latents > 0` costs XLA:CPU a compare pass and two reduce-windows (~1 ms of the ReLU + L1
    # step's ~7 ms of kernel time in a profile).
    stats = {"fired": (jnp.max(fwd.latents, 0) > 0).astype(jnp.int32),
             "num_tokens": jnp.asarray(x.shape[0], jnp.int32), **fwd.extra}
    metrics = {k: jnp.sum(v) for k, v in parts.items()}
    return jnp.sum(per_ex), training.LossAux(count=x.shape[0], metrics=metrics, stats=stats)

  def update_model_state(model_state, stats, psum):
    fired = psum(stats["fired"]) > 0
    seen = psum(stats["num_tokens"])
    counters = model_state["tokens_since_fired"]
    counters = jnp.where(fired, 0, jnp.minimum(counters, COUNTER_CAP - seen) + seen)
    new = {**model_state, "tokens_since_fired": counters}
    if "smallest_kept" in stats:  # batchtopk: running estimate of the inference threshold
      state = model_state["state"]
      n = state["num_updates"]
      value = psum(stats["smallest_kept"]) / psum(jnp.ones((), jnp.float32))
      rate = jnp.maximum(config.threshold_momentum, 1.0 / (n + 1).astype(jnp.float32))
      new["state"] = {"threshold": state["threshold"] + rate * (value - state["threshold"]),
                      "num_updates": n + 1}
    return new

  return training.StepFns(
      loss_fn=loss_fn, tx=tx, update_model_state=update_model_state,
      project_params=project_decoder if config.unit_norm_decoder else None,
  )


def create_train_state(config: SAEConfig, variables, norm: Normalizer, tx, seed: int):
  params, state = split_variables(variables)
  if config.unit_norm_decoder:
    params = project_decoder(params)
  return training.create_train_state(params, tx, seed, initial_model_state(config, state, norm))
