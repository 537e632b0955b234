"""ReLU + L1, the paper's (vanilla) SAE."""

from __future__ import annotations


import flax.linen as nn

from seqrec_jax.sae.base import Setting, SparseAutoencoder, Variant


class ReluL1SAE(SparseAutoencoder):

  def encode(self, x):
    return nn.relu(self.pre_activations(x))

  def train_forward(self, x, dead):
    del dead
    f = self.encode(x)
    return self._forward(x, f, self.config.l1_coeff * (f @ self.decoder_norms()))


L1_COEFF = Setting("l1_coeff", 0.5, "weight of the L1 penalty (normalised units)")  # gated too

VARIANT = Variant("relu_l1", ReluL1SAE, settings=(L1_COEFF,), resamples=True)
