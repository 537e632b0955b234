"""Why this item: the SAE latents that contribute most to one item's score for one sequence.

A latent's **contribution** to item i's score is the score change when the latent is ablated:

    contribution_j = s_i(h) - s_i(h - (decode(f with only f_j kept) - decode(0)))

that is, the error-preserving edit that sets f_j to 0 (`edits.steer_hidden` with `set 0`) at the
explained positions, with the rest of the network run on the edited hidden states. Positions:
`"last"` (the position whose output is read) or `"all"` (every real position; in a causal model
earlier positions reach the last one through attention). Every latent active at those positions
is a candidate, and all candidates are ablated in one batched forward pass (one row each, padded
to a power of two so that few shapes compile).

On the final hidden state (`final_norm`, where s_i = h . e_i is linear in h) the definition is the
direct term `f_j (W_dec_j . e_i)` in raw units, and the contributions plus the remainder
`(h - decode(f) + decode(0)) . e_i` (reconstruction error and decoder bias) add up to the score
exactly (up to float rounding). On an earlier block the network after the layer is not linear:
contributions then need not add up, and `remainder` is only `score - sum(contributions)`.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from seqrec_jax.recommender import activations, evaluation, hooks
from seqrec_jax.recommender.model import PAD_ID
from seqrec_jax.steer.edits import POSITIONS


@dataclasses.dataclass(frozen=True)
class Explanation:
  """One item's score split over the latents active at the explained positions."""

  item: int
  score: float  # the item's score (logit), no edits
  latents: np.ndarray  # int [C], candidates by contribution, largest first
  activations: np.ndarray  # float32 [C], each latent's activation at the last position (raw units)
  contributions: np.ndarray  # float32 [C], score change when the latent is ablated
  remainder: float  # score - sum(contributions)

  def top(self, n: int) -> list[tuple[int, float]]:
    """The n largest `(latent, contribution)` pairs."""
    return [(int(j), float(c)) for j, c in zip(self.latents[:n], self.contributions[:n])]


def _ablate_one_latent_per_row(args, h):
  """Row r of `h[C, L, d]` with latent `ablate[r]` removed at the positions `at[L]` (-1: none)."""
  sae, ablate, at = args
  f = sae.encode(h)
  only = jax.nn.one_hot(ablate, f.shape[-1], dtype=f.dtype)[:, None, :]  # [C, 1, M]; -1 -> 0
  removed = sae.decode(f * only) - sae.decode(jnp.zeros_like(f))
  return jnp.where(at[:, None], h - removed, h).astype(h.dtype)


@functools.partial(jax.jit, static_argnames=("model_cfg", "layer"))
def _ablated_scores(params, input_ids, item, sae, ablate, at, *, model_cfg, layer):
  """Scores `[C]` of `item` for `input_ids[L]` repeated, row r with latent `ablate[r]` ablated."""
  ids = jnp.broadcast_to(input_ids, (ablate.shape[0], input_ids.shape[-1]))
  edit = hooks.LayerEdit(layer, _ablate_one_latent_per_row, (sae, ablate, at))
  return evaluation.scores_last(params, ids, model_cfg, edit=edit)[:, item]


@functools.partial(jax.jit, static_argnames=("model_cfg", "layer"))
def _layer_latents(params, input_ids, sae, *, model_cfg, layer):
  """Latents `[L, M]` (raw units) at `layer` for one sequence `input_ids[L]`."""
  h = activations.layer_output(params, input_ids[None], model_cfg=model_cfg, layer=layer)
  return sae.encode(h)[0]


def explain(params, model_cfg, sae, layer: str, input_ids, item: int, *,
            positions: str = "last") -> Explanation:
  """The contribution of every latent active at `positions` to `item`'s score after `input_ids`.

  `input_ids[L]` is one model input (right-aligned, as `input_pipeline.make_eval_arrays` builds
  it; the score is read at position L-1), `sae` a `TrainedSAE` on `layer`.
  """
  if positions not in POSITIONS:
    raise ValueError(f"positions must be one of {POSITIONS}, got {positions!r}")
  input_ids = jnp.asarray(input_ids, jnp.int32).reshape(-1)
  length = input_ids.shape[0]
  at = np.zeros(length, bool)
  if positions == "last":
    at[-1] = True
  else:
    at[:] = np.asarray(input_ids) != PAD_ID  # padding positions never reach the real ones
    at[-1] = True  # BERT4Rec's mask token is real too
  f = np.asarray(_layer_latents(params, input_ids, sae, model_cfg=model_cfg, layer=layer))
  candidates = np.flatnonzero((f[at] != 0).any(axis=0))
  rows = 1 << int(np.ceil(np.log2(len(candidates) + 1)))  # row 0: nothing ablated
  ablate = np.full(rows, -1, np.int32)
  ablate[1 : len(candidates) + 1] = candidates
  scores = np.asarray(_ablated_scores(params, input_ids, int(item), sae, jnp.asarray(ablate),
                                      jnp.asarray(at), model_cfg=model_cfg, layer=layer))
  score = float(scores[0])
  contributions = (scores[0] - scores[1 : len(candidates) + 1]).astype(np.float32)
  order = np.argsort(-contributions, kind="stable")
  return Explanation(item=int(item), score=score, latents=candidates[order],
                     activations=f[-1, candidates[order]].astype(np.float32),
                     contributions=contributions[order],
                     remainder=float(score - contributions.astype(np.float64).sum()))
