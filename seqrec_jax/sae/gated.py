"""Gated SAE (Rajamanoharan et al. 2024a)."""

from __future__ import annotations


import flax.linen as nn
import jax
import jax.numpy as jnp

from seqrec_jax.sae.base import SparseAutoencoder, Variant
from seqrec_jax.sae.relu_l1 import L1_COEFF


class GatedSAE(SparseAutoencoder):

  def setup(self):
    super().setup()
    m = self.config.dict_size
    self.r_mag = self.param("r_mag", nn.initializers.zeros, (m,))
    self.b_mag = self.param("b_mag", nn.initializers.zeros, (m,))

  def _paths(self, x):
    projected = x @ self.W_enc - self.b_dec @ self.W_enc  # (x - b_dec) @ W_enc, see pre_activations
    pi_gate = projected + self.b_enc
    pi_mag = projected * jnp.exp(self.r_mag) + self.b_mag
    return pi_gate, pi_mag

  def encode(self, x):
    pi_gate, pi_mag = self._paths(x)
    return jnp.where(pi_gate > 0, nn.relu(pi_mag), 0.0)

  def train_forward(self, x, dead):
    del dead
    pi_gate, pi_mag = self._paths(x)
    f = jnp.where(pi_gate > 0, nn.relu(pi_mag), 0.0)
    gate = nn.relu(pi_gate)
    sparsity = self.config.l1_coeff * (gate @ self.decoder_norms())
    frozen_hat = gate @ jax.lax.stop_gradient(self.W_dec) + jax.lax.stop_gradient(self.b_dec)
    aux = jnp.sum(jnp.square(x - frozen_hat), -1)
    return self._forward(x, f, sparsity, aux)


VARIANT = Variant("gated", GatedSAE, settings=(L1_COEFF,), resamples=True)
