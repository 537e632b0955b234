"""Item-softmax losses over the tied output table.

All losses return the *sum* over labelled positions and the number of labelled positions, so the
shared train step can normalise by the global count across devices. Three forms:

* `full_softmax_ce`: all `[N, V]` logits, one row block at a time, with the gradient computed in
  the forward pass (`fused_ce_sum`; fastest for small catalogues).
* `chunked_softmax_ce`: the same value and gradient computed over item chunks with an online
  log-sum-exp and a custom backward pass that recomputes each chunk's logits; only
  `[N, chunk]` logits exist at any time, forward or backward, so catalogues of millions of items
  fit.
* `sampled_softmax_ce`: the label against `S` negatives shared across the batch, with the logQ
  correction of the sampling distribution (uniform or popularity).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from seqrec_jax.recommender.model import PAD_ID

LOSSES = ("full", "chunked", "sampled")


def _flatten(hidden, labels):
  return hidden.reshape(-1, hidden.shape[-1]), labels.reshape(-1)


def _finish(nll, labels):
  valid = labels != PAD_ID
  return jnp.sum(jnp.where(valid, nll, 0.0)), jnp.sum(valid)


def _logits(hidden, table):
  """`hidden[N, d] @ table[V, d]^T` in the hidden states' dtype, accumulated in float32."""
  return jnp.einsum("nd,vd->nv", hidden, table.astype(hidden.dtype),
                    preferred_element_type=jnp.float32)


def _label_logits(hidden, table, labels):
  """`h · e_label` for each row, `[N]` (float32)."""
  safe = jnp.where(labels != PAD_ID, labels, 1)
  return jnp.sum(hidden.astype(jnp.float32) * table[safe].astype(jnp.float32), axis=-1)


def full_softmax_ce(hidden: jax.Array, table: jax.Array, labels: jax.Array):
  """Cross-entropy over the whole catalogue.

  Args:
    hidden: `[..., d]` hidden states.
    table: `[V, d]` item embeddings (row 0 = padding, never a valid prediction).
    labels: `[...]` int target ids; 0 marks positions without a label.
  Returns:
    `(loss_sum, count)`: summed negative log-likelihood and number of labelled positions.
  """
  hidden, labels = _flatten(hidden, labels)
  return fused_ce_sum(hidden, table, labels), jnp.sum(labels != PAD_ID)


# Rows per block of `fused_ce_sum`: about this many float32 logits per block, so that a block's
# logits, softmax and products stay in cache and XLA's per-step scratch buffer stays small.
_BLOCK_LOGITS = 1 << 20


def _row_blocks(num_rows: int, num_items: int) -> tuple[int, int]:
  """(number of blocks, rows per block, a multiple of 8) covering `num_rows`."""
  max_rows = max(8, _BLOCK_LOGITS // max(num_items, 1))
  num_blocks = -(-num_rows // max_rows)
  rows = -(-num_rows // num_blocks)
  return num_blocks, -(-rows // 8) * 8


def _fused_ce(hidden, table, labels):
  """(loss_sum, d loss_sum / d hidden `[N, d]`, d loss_sum / d table `[V, d]`), one row block at a
  time: each block's logits become its loss and both gradients before the next block starts."""
  n, dim = hidden.shape
  num_blocks, rows = _row_blocks(n, table.shape[0] - 1)
  pad = num_blocks * rows - n
  h_blocks = jnp.pad(hidden, ((0, pad), (0, 0))).reshape(num_blocks, rows, dim)
  y_blocks = jnp.pad(labels, (0, pad)).reshape(num_blocks, rows)  # padding rows: no label
  items = table[1:].astype(hidden.dtype)  # PAD_ID = row 0 never scores

  def block(d_table, h_and_y):
    h, y = h_and_y
    valid = y != PAD_ID
    logits = _logits(h, items)  # [rows, V-1] float32
    lse = jax.nn.logsumexp(logits, axis=-1)
    label_rows = table[jnp.where(valid, y, 1)]
    nll = lse - jnp.sum(h.astype(jnp.float32) * label_rows.astype(jnp.float32), axis=-1)
    probs = (jnp.exp(logits - lse[:, None]) * valid[:, None]).astype(hidden.dtype)
    d_h = jnp.einsum("nv,vd->nd", probs, items, preferred_element_type=jnp.float32)
    d_h = d_h - jnp.where(valid[:, None], label_rows.astype(jnp.float32), 0.0)
    d_items = jnp.einsum("nv,nd->vd", probs, h, preferred_element_type=jnp.float32)
    # Unlabelled rows add zeros to row 0 (PAD_ID), which thus keeps a zero gradient.
    d_table = d_table.at[1:].add(d_items).at[jnp.where(valid, y, PAD_ID)].add(
        -jnp.where(valid[:, None], h.astype(jnp.float32), 0.0))
    return d_table, (_finish(nll, y)[0], d_h)

  d_table, (sums, d_hidden) = jax.lax.scan(
      block, jnp.zeros(table.shape, jnp.float32), (h_blocks, y_blocks))
  d_hidden = d_hidden.reshape(-1, dim)[:n]
  return jnp.sum(sums), d_hidden.astype(hidden.dtype), d_table.astype(table.dtype)


@jax.custom_vjp
def fused_ce_sum(hidden: jax.Array, table: jax.Array, labels: jax.Array) -> jax.Array:
  """Summed softmax cross-entropy `[]` (float32) of `hidden[N, d]` against `table[V, d]` for
  `labels[N]` (0 = no label; item 0 never scores).

  Its gradient is computed with the value: the loss is a sum, so its cotangent is one scalar and
  the forward pass can finish each row block's softmax gradient at once (three matrix products
  in all, like autodiff, but no `[N, V]` array is kept between the passes)."""
  return _fused_ce(hidden, table, labels)[0]


def _fused_ce_fwd(hidden, table, labels):
  loss, d_hidden, d_table = _fused_ce(hidden, table, labels)
  return loss, (d_hidden, d_table, labels)


def _fused_ce_bwd(residuals, g):
  d_hidden, d_table, labels = residuals
  zero_labels = np.zeros(labels.shape, jax.dtypes.float0)
  return (g * d_hidden).astype(d_hidden.dtype), (g * d_table).astype(d_table.dtype), zero_labels


fused_ce_sum.defvjp(_fused_ce_fwd, _fused_ce_bwd)


def chunked_softmax_ce(hidden: jax.Array, table: jax.Array, labels: jax.Array, *, chunk_size: int):
  """`full_softmax_ce` without materialising `[N, V]` logits (same arguments and result)."""
  hidden, labels = _flatten(hidden, labels)
  lse = chunked_logsumexp(hidden, table, chunk_size)
  return _finish(lse - _label_logits(hidden, table, labels), labels)


def _chunks(table, chunk_size):
  """`table[V, d]` -> zero-padded chunks `[C, chunk_size, d]` and each chunk's item ids."""
  num_items, dim = table.shape
  num_chunks = -(-num_items // chunk_size)
  padded = jnp.zeros((num_chunks * chunk_size, dim), table.dtype).at[:num_items].set(table)
  ids = jnp.arange(num_chunks * chunk_size).reshape(num_chunks, chunk_size)
  return padded.reshape(num_chunks, chunk_size, dim), ids


def _chunk_logits(hidden, chunk, ids, num_items):
  """Float32 logits `[N, chunk]`; padding id and the chunk's tail past the catalogue: -inf."""
  return jnp.where((ids != PAD_ID) & (ids < num_items), _logits(hidden, chunk), -jnp.inf)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def chunked_logsumexp(hidden: jax.Array, table: jax.Array, chunk_size: int) -> jax.Array:
  """`logsumexp(hidden @ table[1:].T, -1)` `[N]` (float32), one item chunk at a time.

  The forward pass is an online log-sum-exp over chunks; the backward pass (custom VJP)
  recomputes each chunk's logits and turns them into softmax weights with the saved result, so
  that both passes hold `[N, chunk_size]` logits at most and cost four matrix products in all,
  one more than the full softmax.
  """
  return _chunked_lse_fwd(hidden, table, chunk_size)[0]


def _chunked_lse_fwd(hidden, table, chunk_size):
  num_items = table.shape[0]
  chunks, ids = _chunks(table, chunk_size)

  def body(carry, chunk_and_ids):
    running_max, running_sum = carry
    logits = _chunk_logits(hidden, *chunk_and_ids, num_items)
    new_max = jnp.maximum(running_max, logits.max(-1))
    running_sum = running_sum * jnp.exp(running_max - new_max) + jnp.exp(
        logits - new_max[:, None]).sum(-1)
    return (new_max, running_sum), None

  n = hidden.shape[0]
  # Start from a finite max so that exp(-inf - -inf) never appears.
  init = (jnp.full((n,), -1e30, jnp.float32), jnp.zeros((n,), jnp.float32))
  (row_max, row_sum), _ = jax.lax.scan(body, init, (chunks, ids))
  lse = row_max + jnp.log(row_sum)
  return lse, (hidden, table, lse)


def _chunked_lse_bwd(chunk_size, residuals, g):
  hidden, table, lse = residuals
  num_items, dim = table.shape
  chunks, ids = _chunks(table, chunk_size)

  def body(d_hidden, chunk_and_ids):
    chunk, chunk_ids = chunk_and_ids
    logits = _chunk_logits(hidden, chunk, chunk_ids, num_items)
    weights = (jnp.exp(logits - lse[:, None]) * g[:, None]).astype(hidden.dtype)  # [N, chunk]
    d_hidden = d_hidden + jnp.einsum("nc,cd->nd", weights, chunk.astype(hidden.dtype),
                                     preferred_element_type=jnp.float32)
    d_chunk = jnp.einsum("nc,nd->cd", weights, hidden, preferred_element_type=jnp.float32)
    return d_hidden, d_chunk

  d_hidden, d_chunks = jax.lax.scan(body, jnp.zeros(hidden.shape, jnp.float32), (chunks, ids))
  d_table = d_chunks.reshape(-1, dim)[:num_items]
  return d_hidden.astype(hidden.dtype), d_table.astype(table.dtype)


chunked_logsumexp.defvjp(_chunked_lse_fwd, _chunked_lse_bwd)


def sample_negatives(rng: jax.Array, num_negatives: int, log_q: jax.Array) -> jax.Array:
  """`[S]` item ids drawn with replacement from `exp(log_q)` over ids (log_q[0] = -inf)."""
  return jax.random.categorical(rng, log_q, shape=(num_negatives,)).astype(jnp.int32)


def draw_negatives(rng: jax.Array, num_negatives: int, num_items: int,
                   log_q: jax.Array | None) -> jax.Array:
  """`[S]` negative ids in 1..num_items-1: uniform when `log_q` is None, else from `exp(log_q)`."""
  if log_q is None:
    return jax.random.randint(rng, (num_negatives,), 1, num_items, dtype=jnp.int32)
  return sample_negatives(rng, num_negatives, log_q)


def sampled_softmax_ce(hidden, table, labels, *, negatives: jax.Array, log_q: jax.Array | None):
  """Sampled softmax with negatives `[S]` shared by every row.

  With `log_q` (log sampling probabilities `[V]`), every logit is corrected by `-log(S q(item))`
  so that the estimate is unbiased in the limit (Bengio & Senecal; Yi et al. 2019). Negatives that
  equal the row's label ("accidental hits") are removed. With `negatives` = all items and no
  correction this is exactly `full_softmax_ce`.
  """
  hidden, labels = _flatten(hidden, labels)
  pos = _label_logits(hidden, table, labels)
  neg = _logits(hidden, table[negatives])  # [N, S]
  if log_q is not None:
    log_s = jnp.log(negatives.shape[0])
    pos = pos - (log_s + log_q[jnp.where(labels != PAD_ID, labels, 1)])
    neg = neg - (log_s + log_q[negatives])[None]
  neg = jnp.where((negatives[None] == labels[:, None]) | (negatives[None] == PAD_ID), -jnp.inf, neg)
  lse = jnp.logaddexp(pos, jax.nn.logsumexp(neg, axis=-1))
  return _finish(lse - pos, labels)


def make_item_loss(kind: str = "full", *, chunk_size: int = 8192, num_negatives: int = 8192,
                   log_q: jax.Array | None = None):
  """`loss(hidden, table, labels, rng) -> (loss_sum, count)` of the chosen kind.

  For `"sampled"`, `log_q` `[V]` is the sampling distribution (uniform when None; the correction
  is then a constant and dropped)."""
  if kind == "full":
    return lambda hidden, table, labels, rng: full_softmax_ce(hidden, table, labels)
  if kind == "chunked":
    return lambda hidden, table, labels, rng: chunked_softmax_ce(hidden, table, labels,
                                                                 chunk_size=chunk_size)
  if kind == "sampled":

    def sampled(hidden, table, labels, rng):
      negatives = draw_negatives(rng, num_negatives, table.shape[0], log_q)
      return sampled_softmax_ce(hidden, table, labels, negatives=negatives, log_q=log_q)

    return sampled
  raise ValueError(f"loss must be one of {LOSSES}, got {kind!r}")


def popularity_log_q(item_counts, smoothing: float = 1.0) -> jax.Array:
  """Log sampling probabilities `[V]` proportional to (count + smoothing); padding excluded."""
  counts = jnp.asarray(item_counts, jnp.float32) + smoothing
  counts = counts.at[PAD_ID].set(0.0)
  return jnp.log(counts / counts.sum())
