"""Dropout whose mask comes from a keyed integer hash instead of a counter-mode block cipher.

`jax.random` draws bits with Threefry-2x32 (20 rounds per pair of words) or XLA's RngBitGenerator;
on CPU either costs ~7 ns per element (4.7M uint32 bits, the paper model's dropout masks per
step, in 33-38 ms on 2 cores), and the masks were 15 % of the SASRec train step's kernel time.
Dropout needs decorrelated bits, not a cryptographic stream: here each element's bits are a 32-bit
avalanche hash of its position, keyed by two words drawn from the flax `dropout` key (one tiny
Threefry call per call site). Measured alternating in one process: 4.7M masks in 1.3 ms, against
82 ms for `jax.random.bernoulli` (2 cores, loaded; 31 ms when idle).

The position counter is built from `broadcasted_iota`, so a mask sharded over a device mesh is
the same as on one device (XLA partitions iotas by offset).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def _mix32(x: jax.Array) -> jax.Array:
  """A bijective 32-bit finaliser with full avalanche (Wellons' "lowbias32", second version)."""
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x21F0AAAD)
  x = x ^ (x >> 15)
  x = x * jnp.uint32(0x735A2D97)
  return x ^ (x >> 15)


def hashed_bits(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """uint32 `shape` pseudo-random bits: hash(position, key). Same key and shape, same bits."""
  seed = jax.random.bits(key, (2,), jnp.uint32)
  counter = jnp.zeros(shape, jnp.uint32)
  stride = 1
  for dim in reversed(range(len(shape))):  # row-major position, wrapping past 2**32 elements
    counter = counter + jax.lax.broadcasted_iota(jnp.uint32, shape, dim) * jnp.uint32(stride)
    stride = (stride * shape[dim]) % (1 << 32)
  return _mix32(_mix32(counter ^ seed[0]) + seed[1])


def keep_mask(key: jax.Array, rate: float, shape: tuple[int, ...]) -> jax.Array:
  """Boolean `shape`, each element True with probability `1 - rate` (to 2**-32)."""
  threshold = np.uint32(min(round(rate * 2.0**32), 2**32 - 1))
  return hashed_bits(key, shape) >= threshold


def dropout(x: jax.Array, rate: float, key: jax.Array) -> jax.Array:
  """Inverted dropout: zero each element with probability `rate`, scale the rest by 1/(1-rate)."""
  if rate == 0.0:
    return x
  if rate >= 1.0:
    return jnp.zeros_like(x)
  scale = jnp.asarray(1.0 / (1.0 - rate), x.dtype)
  return jnp.where(keep_mask(key, rate, x.shape), x * scale, jnp.zeros((), x.dtype))


class Dropout(nn.Module):
  """`flax.linen.Dropout` with hashed masks (same arguments: rate, deterministic; `dropout` rng)."""

  rate: float

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
    if deterministic or self.rate == 0.0:
      return x
    return dropout(x, self.rate, self.make_rng("dropout"))
