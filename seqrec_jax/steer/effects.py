"""Logit effect of SAE latents: what adding a latent's decoder direction does to the item scores.

For latent j with typical activation t_j, the error-preserving edit "add one typical activation"
moves the layer's output h to h + t_j D_j at every position, where D_j = decode(e_j) - decode(0)
is its decoder direction in raw units. The logit effect is the resulting change of the next-item
scores at the last position, averaged over users: `effect[j, v] = mean_u (s_v(h + t_j D_j) - s_v(h))`.
It is *measured* by running the remaining layers of the recommender (the seed code's "downstream"
analysis), so it holds for an SAE on any block; on the final hidden state it equals
`t_j D_j . E_v` exactly (the head is linear there).

`attribute_effect[j, g]` is the mean effect on the items with attribute g minus the mean effect on
all items: how much the latent lifts that attribute above the rest of the catalogue.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from seqrec_jax.core.progress import ProgressLine
from seqrec_jax.recommender import hooks
from seqrec_jax.recommender import evaluation
from seqrec_jax.recommender.activations import layer_output
from seqrec_jax.recommender.model import ModelConfig


def _add_direction(direction, h):
  return h + direction.astype(h.dtype)


@functools.partial(jax.jit, static_argnames=("model_cfg", "layer"))
def _score_sums(params, input_ids, valid, directions, *, model_cfg: ModelConfig, layer: str):
  """`[C, V]` sums over valid rows of the last-position scores with each direction added.

  Where `layer` is a block's output, that output is computed once for all directions and each
  direction runs only the blocks after it (`evaluation.scores_resumed`)."""
  start = evaluation.resume_block(layer)
  hidden = (None if start is None else
            layer_output(params, input_ids, model_cfg=model_cfg, layer=layer))

  def one(direction):
    edit = hooks.LayerEdit(layer, _add_direction, direction)
    if hidden is None:
      scores = evaluation.scores_last(params, input_ids, model_cfg, edit=edit)
    else:
      scores = evaluation.scores_resumed(params, hidden, input_ids, model_cfg, start, edit)
    scores = scores.at[:, 0].set(0.0)  # the padding id scores -inf
    return jnp.where(valid[:, None], scores, 0.0).sum(0)

  return jax.lax.map(one, directions)


def decoder_directions_raw(sae, typical) -> np.ndarray:
  """`[M, d]` t_j D_j: the raw-unit change of h when latent j rises by its typical activation."""
  typical = jnp.asarray(typical, jnp.float32)
  num_latents = typical.shape[0]
  return np.asarray(sae.decode(jnp.diag(typical)) - sae.decode(jnp.zeros((1, num_latents))))


def logit_effect(params, model_cfg: ModelConfig, input_ids: np.ndarray, valid: np.ndarray,
                 layer: str, directions: np.ndarray, *, batch_size: int = 256,
                 chunk: int = 16) -> np.ndarray:
  """`[C, V]` mean score change per direction (`directions[C, d]` added to `layer`'s output).

  Args:
    params, model_cfg: the recommender.
    input_ids: `[n, L]` int32 model inputs (e.g. `EvalArrays.input_ids`), `valid[n]` bool.
    layer: the layer edited.
    directions: `[C, d]` raw-unit offsets.
    batch_size: rows per forward pass; chunk: directions per compiled call.
  """
  directions = np.asarray(directions, np.float32)
  num, dim = directions.shape
  padded = -(-num // chunk) * chunk
  stacked = np.concatenate([np.zeros((1, dim), np.float32), directions,
                            np.zeros((padded - num + chunk - 1, dim), np.float32)])
  n = len(input_ids)
  pad = (-n) % batch_size
  ids = np.concatenate([input_ids, np.zeros((pad, input_ids.shape[1]), input_ids.dtype)])
  mask = np.concatenate([np.asarray(valid, bool), np.zeros(pad, bool)])
  count = max(int(mask.sum()), 1)
  sums = np.zeros((len(stacked), model_cfg.num_items), np.float64)
  progress = ProgressLine("logit effects (forward passes)",
                          -(-len(ids) // batch_size) * (len(stacked) // chunk))
  for start in range(0, len(ids), batch_size):
    rows = slice(start, start + batch_size)
    for c in range(0, len(stacked), chunk):
      sums[c:c + chunk] += np.asarray(_score_sums(
          params, ids[rows], mask[rows], stacked[c:c + chunk], model_cfg=model_cfg, layer=layer))
      progress.step()
  means = sums / count
  return (means[1:num + 1] - means[0]).astype(np.float32)


def attribute_effect(effect: np.ndarray, multi_hot: np.ndarray) -> np.ndarray:
  """`[C, G]` mean effect on each attribute's items minus the mean effect on all real items."""
  effect = np.asarray(effect, np.float64)[:, 1:]  # item 0 is padding
  multi_hot = np.asarray(multi_hot, np.float64)[1:]
  count = multi_hot.sum(0)
  with np.errstate(divide="ignore", invalid="ignore"):
    per_attribute = (effect @ multi_hot) / count
  return np.where(count > 0, per_attribute - effect.mean(1, keepdims=True), np.nan)
