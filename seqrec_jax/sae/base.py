"""Sparse autoencoders: five variants behind one interface, their losses and train-step pieces.

Every variant is a Flax linen module with

* `encode(x[..., d]) -> latents[..., M]` (inference; per example, never batch-dependent),
* `decode(latents[..., M]) -> x_hat[..., d]` (`latents @ W_dec + b_dec`, the same for all),
* `__call__(x) -> x_hat`,
* `train_forward(x, dead) -> Forward` (training: reconstruction, per-example penalties, stats),

called through `module.apply(variables, x, method=...)`. `variables` holds `"params"` and, for
BatchTopK, a `"state"` collection with the inference threshold. Modules work in *normalised*
units; `Normalizer` and `TrainedSAE` (below) convert, so that every public function outside this
module's internals (`TrainedSAE.encode / decode / reconstruct`, `encode_activations`) takes and
returns raw activation units. Latents returned by `TrainedSAE.encode` are scaled by the
normaliser's scale, so a latent's value is the length, in raw units, of its (unit-norm) decoder
direction's contribution to the reconstruction.

Variants (`SAEConfig.variant`):

* `relu_l1` (the paper's): `f = relu(W_enc^T (x - b_dec) + b_enc)`, loss
  `||x - x_hat||^2 + l1_coeff * sum_j f_j ||W_dec_j||`. Design choice: the decoder rows are
  *constrained* to unit norm (renormalised after every update inside the train step,
  `project_params`), the classic vanilla SAE; the norm factor in the penalty is then 1, but is kept
  so that the loss stays right with `unit_norm_decoder=False` (Anthropic's later unconstrained
  form).
* `topk` (Gao et al. 2024): the k largest pre-activations (after ReLU), plus AuxK:
  `aux_coeff * ||e - e_hat||^2` where `e = stop_gradient(x - x_hat)` and `e_hat` decodes (without
  bias) the `k_aux` largest pre-activations among the dead latents, also after a ReLU, as in the
  reference implementations (exactly so while at most `k_aux` latents are dead; with more, the
  `k_aux` dead latents most active on average over the batch, see `auxk_loss`). A latent that
  never wins the top k but has positive pre-activations thus gets gradient (tested).
* `batchtopk` (Bussmann et al. 2024): training keeps the `k * B` largest activations over the
  whole batch (under pmap: over the per-device batch); inference keeps activations above a fixed
  threshold, a running estimate (`state.threshold`) of the smallest activation kept in training
  (a plain mean over the first `1 / threshold_momentum` steps, then an EMA).
* `jumprelu` (Rajamanoharan et al. 2024b): `f = z * H(z - theta)`, `theta = exp(log_threshold)`
  per latent, loss `||x - x_hat||^2 + l0_coeff * sum_j H(z_j - theta_j)`. The Heaviside step has
  straight-through gradients for theta through `jax.custom_vjp` with a rectangle kernel of
  bandwidth eps: d/dtheta JumpReLU = -(theta / eps) K((z - theta) / eps),
  d/dtheta H = -(1 / eps) K((z - theta) / eps), K(u) = 1[|u| < 1/2].
* `gated` (Rajamanoharan et al. 2024a): gate `pi_gate = W_enc^T (x - b_dec) + b_enc`, magnitude
  `pi_mag = (exp(r_mag) * W_enc)^T (x - b_dec) + b_mag` (weights shared), `f = 1[pi_gate > 0] *
  relu(pi_mag)`; loss `||x - x_hat||^2 + l1_coeff * sum_j relu(pi_gate_j) ||W_dec_j|| +
  ||x - (relu(pi_gate) @ sg(W_dec) + sg(b_dec))||^2`.

All five keep unit-norm decoder rows (`unit_norm_decoder`). Decoder rows start as random unit
directions and the encoder as their transpose; `init_variables` sets the decoder bias to the
mean or geometric median of (normalised) training activations.

Dead latents: `tokens_since_fired[M]` (int32, in the train state's `model_state`) counts the
activations seen since each latent last fired (`psum` over devices); a latent is dead when it
reaches `dead_tokens` (by default one epoch of SAE training activations). TopK and BatchTopK
revive dead latents through AuxK; the others through `resample_dead` (Anthropic's resampling:
dead latents are re-pointed at training inputs drawn with probability proportional to their
squared reconstruction error, with the encoder at 0.2 x the mean alive encoder norm, encoder bias
0, Adam moments of those weights reset, and counters cleared). `sae.stage` calls it every
`resample_every_steps` steps during the first `resample_stop_fraction` of training.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqrec_jax.sae.config import SAEConfig


# ----------------------------------------------------------------------------- modules


class Forward(NamedTuple):
  """Training forward pass of a batch `x[B, d]` (normalised units)."""

  x_hat: jax.Array  # [B, d]
  latents: jax.Array  # [B, M] as used for the reconstruction
  sparsity: jax.Array  # [B] sparsity penalty, weighted
  aux: jax.Array  # [B] auxiliary loss, weighted (0 when the variant has none)
  extra: dict  # variant statistics for `update_model_state` (e.g. batchtopk's kept minimum)


def _unit_rows(rng, shape):
  w = jax.random.normal(rng, shape)
  return w / jnp.linalg.norm(w, axis=-1, keepdims=True)


class SparseAutoencoder(nn.Module):
  """Shared parameters and decoder; subclasses define the encoder and training forward."""

  config: SAEConfig

  def setup(self):
    cfg = self.config
    d, m = cfg.input_dim, cfg.dict_size
    self.W_dec = self.param("W_dec", _unit_rows, (m, d))
    # The encoder starts as the decoder's transpose.
    self.W_enc = self.param("W_enc", lambda rng, w: jnp.asarray(w).T, self.W_dec)
    self.b_enc = self.param("b_enc", nn.initializers.zeros, (m,))
    self.b_dec = self.param("b_dec", nn.initializers.zeros, (d,))

  def pre_activations(self, x):
    # = (x - b_dec) @ W_enc + b_enc; folding b_dec into the bias spares the backward pass a
    # [B, M] x [M, d] product (the gradient of b_dec then goes through a vector).
    return x @ self.W_enc + (self.b_enc - self.b_dec @ self.W_enc)

  def decode(self, latents):
    return latents @ self.W_dec + self.b_dec

  def decoder_norms(self):
    return jnp.linalg.norm(self.W_dec, axis=-1)

  def encode(self, x):
    raise NotImplementedError

  def __call__(self, x):
    return self.decode(self.encode(x))

  def train_forward(self, x, dead):
    raise NotImplementedError

  def _forward(self, x, latents, sparsity, aux=None, extra=None):
    zeros = jnp.zeros(x.shape[:-1], x.dtype)
    return Forward(self.decode(latents), latents, sparsity, zeros if aux is None else aux,
                   {} if extra is None else extra)


# ----------------------------------------------------------------------------- declaring a variant


@dataclasses.dataclass(frozen=True)
class Setting:
  """One hyperparameter of a variant, as it appears in `config.sae.<variant>.<name>`.

  `name` is also its flat alias `config.sae.<name>` and its `SAEConfig` attribute (a field of
  `SAEConfig`, or else an entry of `SAEConfig.extra`). Variants declaring the same name share one
  value and must declare the same default.
  """

  name: str
  default: Any  # its type is the setting's type (an int default rejects 0.5)
  doc: str  # one line: what it is, in which unit


@dataclasses.dataclass(frozen=True)
class Variant:
  """Everything the library needs to know about one SAE variant (registered in `variants.py`)."""

  name: str  # `config.sae.variant`, `SAEConfig.variant`
  module: type[SparseAutoencoder]
  settings: tuple[Setting, ...] = ()  # its own hyperparameters (`config.sae.<name>` block)
  # Dead latents are revived by `resample_dead` (relu_l1, jumprelu, gated); False where the
  # variant revives them itself (topk / batchtopk through AuxK).
  resamples: bool = False
  reports: tuple[str, ...] = ()  # settings copied into results.json under the same key
