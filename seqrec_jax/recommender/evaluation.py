"""Full-ranking evaluation: NDCG@k, HR@k, MRR@k, coverage, optionally with a layer edited."""

from __future__ import annotations

import functools

import jax

from seqrec_jax.recommender import hooks
from seqrec_jax.recommender import input_pipeline
from seqrec_jax.recommender import metrics
from seqrec_jax.recommender.activations import layer_path
from seqrec_jax.recommender.model import ModelConfig, SequentialRecommender, make_model


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
  if score_bias is not None:  # re-ranking: `[V]` added to every user's scores
    scores = scores + score_bias
  if filter_seen:
    scores = metrics.mask_seen(scores, batch["seen"])
  top = metrics.top_k_items(scores, k)
  return metrics.per_user_metrics(top, batch["targets"]), top


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


def evaluate(
    params, model_cfg: ModelConfig, eval_arrays: input_pipeline.EvalArrays, *, batch_size: int,
    k: int = 10, filter_seen: bool = True, edit: hooks.LayerEdit | None = None,
    score_bias=None, list_features: metrics.ListFeatures | None = None,
) -> dict[str, float]:
  """NDCG@k, HR@k, MRR@k and Coverage@k over all users (padding rows masked, none dropped).

  `edit` (optional) rewrites one layer's output during the forward pass (see `hooks`);
  `score_bias` (optional, `[V]`) is added to every user's scores before ranking (re-ranking);
  `list_features` (optional) adds novelty, intra-list diversity and attribute shares.
  """
  acc = metrics.RankingAccumulator(model_cfg.num_items, k, list_features)
  for batch in eval_arrays.batches(batch_size):
    per_user, top = _eval_batch(params, batch, model_cfg=model_cfg, k=k, filter_seen=filter_seen,
                                edit=edit, score_bias=score_bias)
    acc.add(jax.device_get(per_user), jax.device_get(top), batch["valid"])
  return acc.result()
