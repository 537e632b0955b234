"""JumpReLU (Rajamanoharan et al. 2024b) and its straight-through estimators."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from seqrec_jax.sae.base import Setting, SparseAutoencoder, Variant


# ----------------------------------------------------------------------------- straight-through


def _rectangle(u):
  return (jnp.abs(u) < 0.5).astype(u.dtype)


def _sum_to(g, shape):
  """Sum a broadcast gradient `g` back to `shape` (trailing axes aligned)."""
  return jnp.sum(g, axis=tuple(range(g.ndim - len(shape)))).reshape(shape)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def jumprelu(z, theta, bandwidth):
  """`z * H(z - theta)`; theta `[M]` broadcasts over the leading axes of `z[..., M]`."""
  return z * (z > theta).astype(z.dtype)


def _jumprelu_fwd(z, theta, bandwidth):
  return jumprelu(z, theta, bandwidth), (z, theta)


def _jumprelu_bwd(bandwidth, res, g):
  z, theta = res
  dz = g * (z > theta).astype(z.dtype)
  dtheta = g * (-(theta / bandwidth) * _rectangle((z - theta) / bandwidth))
  return dz, _sum_to(dtheta, theta.shape)


jumprelu.defvjp(_jumprelu_fwd, _jumprelu_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def heaviside(z, theta, bandwidth):
  """`H(z - theta)` with a straight-through gradient for theta only."""
  return (z > theta).astype(z.dtype)


def _heaviside_fwd(z, theta, bandwidth):
  return heaviside(z, theta, bandwidth), (z, theta)


def _heaviside_bwd(bandwidth, res, g):
  z, theta = res
  dtheta = g * (-(1.0 / bandwidth) * _rectangle((z - theta) / bandwidth))
  return jnp.zeros_like(z), _sum_to(dtheta, theta.shape)


heaviside.defvjp(_heaviside_fwd, _heaviside_bwd)


class JumpReLUSAE(SparseAutoencoder):

  def setup(self):
    super().setup()
    init = float(np.log(self.config.init_threshold))
    self.log_threshold = self.param(
        "log_threshold", lambda rng, shape: jnp.full(shape, init, jnp.float32),
        (self.config.dict_size,))

  def encode(self, x):
    pre = self.pre_activations(x)
    return pre * (pre > jnp.exp(self.log_threshold)).astype(pre.dtype)

  def train_forward(self, x, dead):
    del dead
    cfg = self.config
    pre = self.pre_activations(x)
    theta = jnp.exp(self.log_threshold)
    f = jumprelu(pre, theta, cfg.bandwidth)
    l0 = jnp.sum(heaviside(pre, theta, cfg.bandwidth), -1)
    return self._forward(x, f, cfg.l0_coeff * l0)


VARIANT = Variant("jumprelu", JumpReLUSAE, settings=(
    Setting("l0_coeff", 0.05, "weight of the L0 penalty"),
    Setting("bandwidth", 0.05, "width eps of the straight-through rectangle kernel"),
    Setting("init_threshold", 0.1, "initial threshold theta (normalised units), also of "
            "resampled latents"),
), resamples=True)
