"""Input normalisation fitted on the SAE training activations, and the geometric median."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
from flax import struct



NORMALIZATIONS = ("scalar", "sqrt_d", "none")


@struct.dataclass
class Normalizer:
  """`x_norm = (x - shift) / scale`; statistics of the SAE training activations."""

  shift: jax.Array  # float32 [d]
  scale: jax.Array  # float32 []

  def normalize(self, x):
    return (x - self.shift) / self.scale

  def denormalize(self, x_norm):
    return x_norm * self.scale + self.shift


def identity_normalizer(d: int) -> Normalizer:
  return Normalizer(jnp.zeros((d,), jnp.float32), jnp.ones((), jnp.float32))


def fit_normalizer(values, method: str, rows: np.ndarray | None = None, chunk: int = 65536) -> Normalizer:
  """Statistics of `values[rows]` (`[N, d]`, array or memmap), computed in float64 by chunks.

  * `scalar` (the paper's): one mean and one standard deviation over all entries;
    `x_norm = (x - mean) / std`.
  * `sqrt_d`: no shift, scale so that the mean norm becomes sqrt(d): `x_norm = x sqrt(d) / E||x||`.
  * `none`: identity.
  """
  if method not in NORMALIZATIONS:
    raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {method!r}")
  d = values.shape[1]
  if method == "none":
    return identity_normalizer(d)
  rows = np.arange(len(values)) if rows is None else np.sort(np.asarray(rows))
  if len(rows) == 0:
    raise ValueError("cannot fit a normaliser on zero activations")
  total = total_sq = total_norm = 0.0
  for start in range(0, len(rows), chunk):
    x = np.asarray(values[rows[start : start + chunk]], np.float64)
    total += x.sum()
    total_sq += np.square(x).sum()
    total_norm += np.linalg.norm(x, axis=1).sum()
  n = len(rows)
  if method == "scalar":
    mean = total / (n * d)
    std = np.sqrt(max(total_sq / (n * d) - mean**2, 0.0))
    shift, scale = np.full(d, mean), std
  else:
    shift, scale = np.zeros(d), total_norm / n / np.sqrt(d)
  if not np.isfinite(scale) or scale <= 0:
    raise ValueError(f"degenerate activations: normalisation scale {scale}")
  return Normalizer(jnp.asarray(shift, jnp.float32), jnp.asarray(scale, jnp.float32))


def geometric_median(x: np.ndarray, iterations: int = 50, eps: float = 1e-8) -> np.ndarray:
  """Weiszfeld's algorithm on `x[n, d]` (float64), starting from the mean."""
  x = np.asarray(x, np.float64)
  point = x.mean(0)
  for _ in range(iterations):
    w = 1.0 / np.maximum(np.linalg.norm(x - point, axis=1), eps)
    new = (w[:, None] * x).sum(0) / w.sum()
    if np.linalg.norm(new - point) < 1e-7 * (1 + np.linalg.norm(point)):
      return new
    point = new
  return point
