"""TopK with AuxK (Gao et al. 2024) and BatchTopK (Bussmann et al. 2024)."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from seqrec_jax.sae.base import Forward, Setting, SparseAutoencoder, Variant


# On CPU, XLA's TopK runs one row at a time at ~8 us per 512-wide row; numpy's introselect
# (`np.partition`) finds the same k-th value about 5x faster, so on CPU the k-th value comes from
# a host callback. Tests compare both paths; set False to always use `lax.top_k`.
HOST_SELECT_ON_CPU = True


def _kth_largest_host(values: np.ndarray, k: int) -> np.ndarray:
  n = values.shape[-1]
  return np.partition(values, n - k, axis=-1)[..., n - k : n - k + 1]


def kth_largest(values, k: int):
  """The k-th largest entry of every row of `values[..., n]`, as `[..., 1]` (no gradient)."""
  values = jax.lax.stop_gradient(values)
  if HOST_SELECT_ON_CPU and jax.default_backend() == "cpu":
    out = jax.ShapeDtypeStruct((*values.shape[:-1], 1), values.dtype)
    return jax.pure_callback(functools.partial(_kth_largest_host, k=k), out, values,
                             vmap_method="expand_dims")
  # The barrier keeps XLA:CPU from rewriting "last value of top_k" into a full sort (~10x
  # slower). The extra operand stops XLA from folding the barrier's tuple into top_k's own
  # tuple, which crashes its TopK decomposer under pmap.
  vals, _, _ = jax.lax.optimization_barrier(
      (*jax.lax.top_k(values, k), jnp.zeros((), values.dtype)))
  return vals[..., -1:]


def topk_mask(values, k: int):
  """`values >= (k-th largest of each row)`: the top k of every row `[..., M]`.

  Selecting by comparison with the k-th value (instead of scattering top-k indices) keeps the
  graph dense and cheap to differentiate. Rows with ties at the k-th value keep all tied
  entries (measure zero for float pre-activations).
  """
  return values >= kth_largest(values, k)


def _auxk_chosen(pre, dead, k_aux: int):
  """The `k_aux` largest pre-activations among dead latents, per row (bool `[B, M]`)."""
  pre = jax.lax.stop_gradient(pre)
  # Live latents get distinct values below every pre-activation (ties would slow a top-k).
  floor = jnp.min(pre, -1, keepdims=True) - 1.0
  masked = jnp.where(dead, pre, floor - jnp.arange(pre.shape[-1], dtype=pre.dtype))
  return dead & topk_mask(masked, k_aux)


def auxk_reference(pre, residual, w_dec, dead, k_aux: int):
  """AuxK per example, `||residual - relu(pre)[chosen] @ W_dec||^2`, by plain autodiff (tests)."""
  chosen = _auxk_chosen(pre, dead, k_aux)
  residual_hat = jnp.where(chosen, nn.relu(pre), 0.0) @ w_dec
  loss = jnp.sum(jnp.square(residual - residual_hat), -1)
  return jnp.where(jnp.any(dead), loss, 0.0)


def auxk_candidates(mean_pre, dead, k_aux: int):
  """Indices `[k_aux]` of the dead latents AuxK uses, and which of them are real (dead).

  All dead latents when there are at most `k_aux`; otherwise the `k_aux` dead latents with the
  largest mean pre-activation `mean_pre[M]` over the batch.
  """
  score = jnp.where(dead, jax.lax.stop_gradient(mean_pre), -jnp.inf)
  score, index = jax.lax.top_k(score, k_aux)
  return index, score > -jnp.inf


def auxk_loss(x, residual, w_enc, bias, w_dec, dead, k_aux: int):
  """AuxK per example, `[B]`, computed on `k_aux` gathered dead latents only.

  `x[B, d]` (normalised), `residual[B, d]`, `w_enc[d, M]`, `bias[M]` (so that the
  pre-activations are `x @ w_enc + bias`), `w_dec[M, d]`, `dead[M]`. The candidates'
  pre-activations are recomputed from `x` (`[B, d] x [d, k_aux]`), so the cost is small and
  constant, with no branch on the number of dead latents (XLA:CPU runs the neighbours of a
  conditional much slower). Equals `auxk_reference` (the `k_aux` largest dead pre-activations of
  each row) whenever at most `k_aux` latents are dead (tested); with more, the same `k_aux`
  candidates serve the whole batch: the dead latents most active on average.
  """
  index, real = auxk_candidates(jnp.mean(x, 0) @ w_enc + bias, dead, k_aux)
  pre_dead = x @ jnp.take(w_enc, index, axis=1) + jnp.take(bias, index)  # [B, k_aux]
  acts = jnp.where(real, nn.relu(pre_dead), 0.0)
  loss = jnp.sum(jnp.square(residual - acts @ jnp.take(w_dec, index, axis=0)), -1)
  return jnp.where(jnp.any(dead), loss, 0.0)


class TopKSAE(SparseAutoencoder):

  def encode(self, x):
    pre = self.pre_activations(x)
    return jnp.where(topk_mask(pre, self.config.k), nn.relu(pre), 0.0)

  def auxk(self, x, x_hat, dead):
    """AuxK: reconstruct the residual from the `k_aux` most active dead latents."""
    cfg = self.config
    residual = jax.lax.stop_gradient(x - x_hat)
    bias = self.b_enc - self.b_dec @ self.W_enc  # pre-activations = x @ W_enc + bias
    return cfg.aux_coeff * auxk_loss(x, residual, self.W_enc, bias, self.W_dec, dead,
                                     min(cfg.k_aux, cfg.dict_size))

  def train_forward(self, x, dead):
    pre = self.pre_activations(x)
    f = jnp.where(topk_mask(pre, self.config.k), nn.relu(pre), 0.0)
    x_hat = self.decode(f)
    zeros = jnp.zeros(x.shape[:-1], x.dtype)
    return Forward(x_hat, f, zeros, self.auxk(x, x_hat, dead), {})


class BatchTopKSAE(TopKSAE):

  def setup(self):
    super().setup()
    self.threshold = self.variable("state", "threshold", lambda: jnp.zeros((), jnp.float32))
    self.num_updates = self.variable("state", "num_updates", lambda: jnp.zeros((), jnp.int32))

  def encode(self, x):
    pre = nn.relu(self.pre_activations(x))
    return jnp.where(pre > self.threshold.value, pre, 0.0)

  def train_forward(self, x, dead):
    pre = self.pre_activations(x)
    acts = nn.relu(pre)
    budget = min(self.config.k * x.shape[0], acts.size)
    keep = topk_mask(acts.reshape(-1), budget).reshape(acts.shape) & (acts > 0)
    f = jnp.where(keep, acts, 0.0)
    x_hat = self.decode(f)
    smallest_kept = jnp.min(jnp.where(keep, acts, jnp.inf))
    smallest_kept = jnp.where(jnp.isfinite(smallest_kept), smallest_kept, 0.0)
    zeros = jnp.zeros(x.shape[:-1], x.dtype)
    return Forward(x_hat, f, zeros, self.auxk(x, x_hat, dead),
                   {"smallest_kept": jax.lax.stop_gradient(smallest_kept)})


# AuxK revives dead latents, so neither variant is resampled.
_TOPK_SETTINGS = (
    Setting("k", 32, "active latents per activation (batchtopk: on average over the batch)"),
    Setting("k_aux", 32, "dead latents in the AuxK loss (about d / 2)"),
    Setting("aux_coeff", 1 / 32, "weight of the AuxK loss"),
)

TOPK = Variant("topk", TopKSAE, settings=_TOPK_SETTINGS, reports=("k",))

BATCHTOPK = Variant("batchtopk", BatchTopKSAE, settings=(
    *_TOPK_SETTINGS,
    Setting("threshold_momentum", 0.01, "EMA rate of the inference threshold estimate"),
), reports=("k",))
