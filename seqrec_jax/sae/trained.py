"""A trained SAE in raw activation units: encode, decode, quality."""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from seqrec_jax.core import training
from seqrec_jax.sae.config import SAEConfig
from seqrec_jax.sae.normalization import Normalizer
from seqrec_jax.sae.objective import normalizer_of
from seqrec_jax.sae.variants import join_variables, make_sae


# ----------------------------------------------------------------------------- raw-unit interface


class TrainedSAE(NamedTuple):
  """A trained SAE with its normaliser; a pytree (the config is static), so it passes through jit.

  Unpacks as `(config, variables, norm)`. Every method takes and returns raw activation units.
  """

  config: SAEConfig
  variables: dict
  norm: Normalizer

  def encode(self, x):
    """Raw activations `[..., d]` -> latents `[..., M]` (scaled to raw units, see module doc)."""
    f = make_sae(self.config).apply(self.variables, self.norm.normalize(x), method="encode")
    return f * self.norm.scale

  def decode(self, latents):
    """Latents `[..., M]` in raw units -> raw activations `[..., d]`."""
    x_norm = make_sae(self.config).apply(self.variables, latents / self.norm.scale, method="decode")
    return self.norm.denormalize(x_norm)

  def reconstruct(self, x):
    return self.decode(self.encode(x))

  def decoder_directions(self):
    """Unit-norm decoder directions `[M, d]` in raw space (raw = scale x normalised, same dirs)."""
    w = self.variables["params"]["W_dec"]
    return w / jnp.maximum(jnp.linalg.norm(w, axis=-1, keepdims=True), 1e-12)


def trained_sae_from_state(config: SAEConfig, state: training.TrainState) -> TrainedSAE:
  return TrainedSAE(config, join_variables(state.params, state.model_state["state"]),
                    normalizer_of(state.model_state))


@functools.partial(jax.jit, static_argnames=("with_reconstruction",))
def _encode_batch(sae: TrainedSAE, x, with_reconstruction: bool = False):
  f = sae.encode(x)
  return (f, sae.decode(f)) if with_reconstruction else f


def encode_activations(sae: TrainedSAE, values, *, batch_size: int = 4096, out=None) -> np.ndarray:
  """Latents `[N, M]` float32 (raw units) of raw activations `values[N, d]` (array or memmap).

  Batched with a fixed shape (the last batch padded). `out` may be a preallocated `[N, M]`
  array or memmap to write into.
  """
  n, d = values.shape
  m = sae.config.dict_size
  if out is None:
    out = np.empty((n, m), np.float32)
  for start in range(0, n, batch_size):
    x = np.asarray(values[start : start + batch_size], np.float32)
    count = len(x)
    if count < batch_size:
      x = np.concatenate([x, np.zeros((batch_size - count, d), np.float32)])
    out[start : start + count] = np.asarray(_encode_batch(sae, x))[:count]
  return out


@dataclasses.dataclass
class Quality:
  explained_variance: float
  mse: float  # mean squared error per entry, raw units
  l0: float  # mean number of active latents per activation
  dead_fraction: float  # latents that never fire on these activations
  dense_fraction: float  # latents firing on more than `dense_threshold` of the activations
  fire_rate: np.ndarray  # [M] fraction of activations on which each latent fires


def explained_variance(x: np.ndarray, x_hat: np.ndarray) -> float:
  """1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 over the dataset `[N, d]`."""
  x = np.asarray(x, np.float64)
  x_hat = np.asarray(x_hat, np.float64)
  residual = np.sum(np.square(x - x_hat))
  total = np.sum(np.square(x - x.mean(0)))
  return float(1.0 - residual / total)


def evaluate_quality(sae: TrainedSAE, values, *, batch_size: int = 4096,
                     dense_threshold: float = 0.1) -> Quality:
  """Reconstruction and sparsity statistics over all rows of raw `values[N, d]` (float64 sums)."""
  n, d = values.shape
  sq_err = total = total_sq = l0 = 0.0
  sums = np.zeros(d, np.float64)
  fires = np.zeros(sae.config.dict_size, np.int64)
  for start in range(0, n, batch_size):
    x = np.asarray(values[start : start + batch_size], np.float32)
    count = len(x)
    padded = np.concatenate([x, np.zeros((batch_size - count, d), np.float32)]) if count < batch_size else x
    f, x_hat = _encode_batch(sae, padded, with_reconstruction=True)
    f, x_hat = np.asarray(f)[:count], np.asarray(x_hat, np.float64)[:count]
    x64 = x.astype(np.float64)
    sq_err += np.sum(np.square(x64 - x_hat))
    sums += x64.sum(0)
    total_sq += np.sum(np.square(x64))
    active = f > 0
    l0 += active.sum()
    fires += active.sum(0)
  total = total_sq - np.sum(np.square(sums)) / n  # sum ||x - mean||^2
  rate = fires / max(n, 1)
  return Quality(
      explained_variance=float(1.0 - sq_err / total), mse=float(sq_err / (n * d)), l0=float(l0 / n),
      dead_fraction=float(np.mean(fires == 0)), dense_fraction=float(np.mean(rate > dense_threshold)),
      fire_rate=rate,
  )
