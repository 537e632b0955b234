"""Full-ranking evaluation: NDCG@k, HR@k, MRR@k, coverage, optionally with a layer edited."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from seqrec_jax.recommender import activations, hooks
from seqrec_jax.recommender import input_pipeline
from seqrec_jax.recommender import metrics
from seqrec_jax.recommender.activations import layer_path
from seqrec_jax.recommender.model import PAD_ID, ModelConfig, SequentialRecommender, make_model


# ----------------------------------------------------------------------------- evaluation


# Compiler options of the ranking step per backend. On CPU, XLA's default YNNPACK fusions pull
# the GELU and LayerNorm epilogues of this forward-only graph into the matrix products and
# materialise their scalar constants as full [B, L, 4d] broadcasts; each dot on its own ranks
# ~30 % more users/s (median of 8 alternating passes, 27,000 items; the train steps, measured the
# same way, are faster with the default fusions and keep them).
_COMPILER_OPTIONS = {"cpu": {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}}


def _eval_batch(params, batch, *, model_cfg: ModelConfig, k: int, filter_seen: bool,
                edit: hooks.LayerEdit | None = None, score_bias: jax.Array | None = None):
  """Per-user metrics `[B]` and top-k item ids `[B, k]` of one batch (jitted per backend)."""
  return _compiled_eval_batch(jax.default_backend())(
      params, batch, model_cfg=model_cfg, k=k, filter_seen=filter_seen, edit=edit,
      score_bias=score_bias)


@functools.cache
def _compiled_eval_batch(backend: str):
  return jax.jit(_rank_batch, static_argnames=("model_cfg", "k", "filter_seen"),
                 compiler_options=_COMPILER_OPTIONS.get(backend))


def _rank_batch(params, batch, *, model_cfg: ModelConfig, k: int, filter_seen: bool,
                edit: hooks.LayerEdit | None = None, score_bias: jax.Array | None = None):
  scores = scores_last(params, batch["input_ids"], model_cfg, edit=edit)
  return _rank_scores(scores, batch, k=k, filter_seen=filter_seen, score_bias=score_bias)


def _rank_scores(scores, batch, *, k: int, filter_seen: bool, score_bias=None):
  """Per-user metrics `[B]` and top-k items `[B, k]` from the scores `[B, V]` of one batch."""
  if score_bias is not None:  # re-ranking: `[V]` added to every user's scores
    scores = scores + score_bias
  # Damaged or diverged weights give NaN scores, which top_k would rank first: such a user's
  # list becomes -1 (`check_top`), and the padding item is never ranked whatever the weights.
  broken = ~jnp.isfinite(scores[:, 1:]).all(-1)
  scores = scores.at[:, PAD_ID].set(-jnp.inf)
  if filter_seen:
    scores = metrics.mask_seen(scores, batch["seen"])
  top = jnp.where(broken[:, None], -1, metrics.top_k_items(scores, k))
  return metrics.per_user_metrics(top, batch["targets"]), top


def check_top(top, valid=None) -> None:
  """Raises `FloatingPointError` if a (valid) user's scores were not finite (`top` is -1)."""
  top = np.asarray(top)
  broken = (top < 0).any(-1) if valid is None else (top < 0).any(-1) & np.asarray(valid, bool)
  if broken.any():
    raise FloatingPointError(
        f"the recommender's scores are not finite (NaN or inf) for {int(broken.sum())} user(s): "
        "its parameters are damaged or diverged; retrain it (--config.overwrite=true)")


def scores_last(params, input_ids: jax.Array, model_cfg: ModelConfig,
                edit: hooks.LayerEdit | None = None) -> jax.Array:
  """Scores `[B, V]` of every item as the next one, read at the last position.

  `edit` (optional) rewrites one layer's output during the forward pass (see `hooks`).
  """
  model = make_model(model_cfg)
  # The last block (and final norm) run for the last position only, unless the edit is there:
  # edits see the layer's whole `[B, L, d]` output.
  last_block = f"blocks_{model_cfg.num_blocks - 1}"
  last_only = edit is None or layer_path(edit.layer)[0] not in (last_block, "final_norm")
  hidden = hooks.maybe_edited_apply(model, {"params": params}, input_ids, edit,
                                    last_only=last_only)[:, -1]
  return model.apply({"params": params}, hidden, method=SequentialRecommender.item_logits)


def resume_block(layer: str) -> int | None:
  """The block a forward pass resumes at after `layer`'s output (`blocks_3` -> 4); None for
  layers inside a block or after the blocks, which `LayerInputs` does not cover."""
  path = layer_path(layer)
  if len(path) == 1 and path[0].startswith("blocks_") and path[0][len("blocks_"):].isdigit():
    return int(path[0][len("blocks_"):]) + 1
  return None


@dataclasses.dataclass
class LayerInputs:
  """The batches of some evaluation arrays with one block's output computed once: a sweep of
  edits at that layer (and of score biases) then runs only the blocks after it."""

  layer: str
  start: int  # the first block run again
  batches: list  # [(batch, layer output [B, L, d])]

  @classmethod
  def build(cls, params, model_cfg: ModelConfig, eval_arrays, batch_size: int, layer: str,
            max_bytes: int = 1 << 30) -> LayerInputs | None:
    """None where `layer` is not a block's output or the outputs would exceed `max_bytes`."""
    start = resume_block(layer)
    size = eval_arrays.input_ids.size * model_cfg.hidden_dim * 4
    if start is None or size > max_bytes:
      return None
    return cls(layer, start, [
        (batch, activations.layer_output(params, batch["input_ids"], model_cfg=model_cfg,
                                         layer=layer))
        for batch in eval_arrays.batches(batch_size)])

  def covers(self, edit: hooks.LayerEdit | None) -> bool:
    return edit is None or edit.layer == self.layer


def _rank_resumed(params, batch, hidden, *, model_cfg: ModelConfig, start: int, k: int,
                  filter_seen: bool, edit: hooks.LayerEdit | None = None, score_bias=None):
  """`_rank_batch` from the output `hidden[B, L, d]` of block `start - 1`, edited by `edit`."""
  scores = scores_resumed(params, hidden, batch["input_ids"], model_cfg, start, edit)
  return _rank_scores(scores, batch, k=k, filter_seen=filter_seen, score_bias=score_bias)


def scores_resumed(params, hidden, input_ids, model_cfg: ModelConfig, start: int,
                   edit: hooks.LayerEdit | None = None) -> jax.Array:
  """`scores_last` from the output `hidden[B, L, d]` of block `start - 1` (edited by `edit`)."""
  if edit is not None:
    hidden = edit(hidden).astype(hidden.dtype)
  model = make_model(model_cfg)
  last = model.apply({"params": params}, hidden, input_ids, start,
                     method=SequentialRecommender.resume)[:, -1]
  return model.apply({"params": params}, last, method=SequentialRecommender.item_logits)


@functools.cache
def _compiled_resumed(backend: str):
  return jax.jit(_rank_resumed, static_argnames=("model_cfg", "start", "k", "filter_seen"),
                 compiler_options=_COMPILER_OPTIONS.get(backend))


def evaluate(
    params, model_cfg: ModelConfig, eval_arrays: input_pipeline.EvalArrays, *, batch_size: int,
    k: int = 10, filter_seen: bool = True, edit: hooks.LayerEdit | None = None,
    score_bias=None, list_features: metrics.ListFeatures | None = None,
    layer_inputs: LayerInputs | None = None, return_top: bool = False, check_finite: bool = True,
) -> dict[str, float] | tuple[dict[str, float], np.ndarray]:
  """NDCG@k, HR@k, MRR@k and Coverage@k over all users (padding rows masked, none dropped).

  `edit` (optional) rewrites one layer's output during the forward pass (see `hooks`);
  `score_bias` (optional, `[V]`) is added to every user's scores before ranking (re-ranking);
  `list_features` (optional) adds novelty, intra-list diversity and attribute shares;
  `layer_inputs` (optional, built from the same `eval_arrays` and `batch_size`) skips the
  layers before the edited one; `return_top` returns `(metrics, top[U, k])` with every valid
  user's top-k items in the order of `eval_arrays` (the metrics unchanged); `check_finite`
  makes non-finite scores an error (training's own validation turns it off: a diverging run is
  stopped by its loss check, which names the step).
  """
  acc = metrics.RankingAccumulator(model_cfg.num_items, k, list_features, keep_top=return_top)
  if layer_inputs is not None and layer_inputs.covers(edit):
    rank = _compiled_resumed(jax.default_backend())
    ranked = (rank(params, batch, hidden, model_cfg=model_cfg, start=layer_inputs.start, k=k,
                   filter_seen=filter_seen, edit=edit, score_bias=score_bias) + (batch,)
              for batch, hidden in layer_inputs.batches)
  else:
    ranked = (_eval_batch(params, batch, model_cfg=model_cfg, k=k, filter_seen=filter_seen,
                          edit=edit, score_bias=score_bias) + (batch,)
              for batch in eval_arrays.batches(batch_size))
  for per_user, top, batch in ranked:
    top = jax.device_get(top)
    if check_finite:
      check_top(top, batch["valid"])
    acc.add(jax.device_get(per_user), top, batch["valid"])
  return (acc.result(), acc.top_items()) if return_top else acc.result()
