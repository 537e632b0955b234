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
0, Adam moments of those weights reset, and counters cleared). `sae_training` calls it every
`resample_every_steps` steps during the first `resample_stop_fraction` of training.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from seqrec_jax import training

VARIANTS = ("relu_l1", "topk", "batchtopk", "jumprelu", "gated")
NORMALIZATIONS = ("scalar", "sqrt_d", "none")
COUNTER_CAP = 2**30  # tokens_since_fired saturates here (int32)


@struct.dataclass
class SAEConfig:
  """Hyperparameters of one SAE (all static; frozen, use `.replace`)."""

  variant: str = struct.field(pytree_node=False, default="relu_l1")  # one of VARIANTS
  input_dim: int = struct.field(pytree_node=False, default=64)  # d, width of the activations
  dict_size: int = struct.field(pytree_node=False, default=512)  # M, number of latents
  k: int = struct.field(pytree_node=False, default=32)  # topk / batchtopk: active latents
  k_aux: int = struct.field(pytree_node=False, default=32)  # AuxK: dead latents used (~ d / 2)
  aux_coeff: float = struct.field(pytree_node=False, default=1 / 32)  # AuxK weight
  l1_coeff: float = struct.field(pytree_node=False, default=0.1)  # relu_l1 / gated sparsity weight
  l0_coeff: float = struct.field(pytree_node=False, default=0.05)  # jumprelu L0 weight
  bandwidth: float = struct.field(pytree_node=False, default=0.05)  # jumprelu STE kernel width eps
  init_threshold: float = struct.field(pytree_node=False, default=0.1)  # jumprelu initial theta
  threshold_momentum: float = struct.field(pytree_node=False, default=0.01)  # batchtopk EMA rate
  dead_tokens: int = struct.field(pytree_node=False, default=100_000)  # dead after this many
  unit_norm_decoder: bool = struct.field(pytree_node=False, default=True)  # renormalise W_dec rows

  def __post_init__(self):
    if self.variant not in VARIANTS:
      raise ValueError(f"SAE variant must be one of {VARIANTS}, got {self.variant!r}")

  def to_dict(self) -> dict:
    return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


# ----------------------------------------------------------------------------- normalisation


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


class ReluL1SAE(SparseAutoencoder):

  def encode(self, x):
    return nn.relu(self.pre_activations(x))

  def train_forward(self, x, dead):
    del dead
    f = self.encode(x)
    return self._forward(x, f, self.config.l1_coeff * (f @ self.decoder_norms()))


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


_MODULES = {"relu_l1": ReluL1SAE, "topk": TopKSAE, "batchtopk": BatchTopKSAE,
            "jumprelu": JumpReLUSAE, "gated": GatedSAE}


def make_sae(config: SAEConfig) -> SparseAutoencoder:
  return _MODULES[config.variant](config)


def init_variables(config: SAEConfig, rng: jax.Array, x_sample=None, decoder_bias_init: str = "mean"):
  """Variables `{"params": ..., "state": ...}` ("state" only for batchtopk).

  `x_sample[n, d]` (normalised units) sets the decoder bias to its mean or geometric median.
  """
  variables = make_sae(config).init(rng, jnp.zeros((1, config.input_dim)), method="encode")
  variables = jax.tree_util.tree_map(jnp.asarray, dict(variables))
  variables = {k: dict(v) for k, v in variables.items()}
  if x_sample is not None and len(x_sample):
    if decoder_bias_init == "mean":
      centre = np.asarray(x_sample, np.float64).mean(0)
    elif decoder_bias_init == "geometric_median":
      centre = geometric_median(x_sample)
    else:
      raise ValueError(f"decoder_bias_init must be mean or geometric_median, got {decoder_bias_init!r}")
    variables["params"]["b_dec"] = jnp.asarray(centre, jnp.float32)
  return variables


def split_variables(variables) -> tuple[dict, dict]:
  """`(params, state)`; state is `{}` for variants without one."""
  return variables["params"], dict(variables.get("state", {}))


def join_variables(params, state) -> dict:
  return {"params": params, "state": state} if state else {"params": params}


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
           "l0": jnp.sum(fwd.latents > 0, -1).astype(jnp.float32)}
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
    stats = {"fire_counts": jnp.sum(fwd.latents > 0, 0).astype(jnp.int32),
             "num_tokens": jnp.asarray(x.shape[0], jnp.int32), **fwd.extra}
    metrics = {k: jnp.sum(v) for k, v in parts.items()}
    return jnp.sum(per_ex), training.LossAux(count=x.shape[0], metrics=metrics, stats=stats)

  def update_model_state(model_state, stats, psum):
    fired = psum(stats["fire_counts"]) > 0
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
