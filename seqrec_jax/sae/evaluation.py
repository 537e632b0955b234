"""The recommender with an SAE spliced in: ranking metrics and next-item cross-entropy."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from seqrec_jax.recommender import activations as acts_lib
from seqrec_jax.recommender import hooks
from seqrec_jax.recommender import input_pipeline
from seqrec_jax.recommender import evaluation
from seqrec_jax import sae


# ----------------------------------------------------------------------------- evaluation


@functools.partial(jax.jit, static_argnames=("model_cfg",))
def _next_item_nll(params, input_ids, targets, *, model_cfg, edit=None):
  scores = evaluation.scores_last(params, input_ids, model_cfg, edit=edit)
  picked = jnp.take_along_axis(scores, targets[:, None], axis=-1)[:, 0]
  return jax.nn.logsumexp(scores, axis=-1) - picked


def next_item_cross_entropy(params, model_cfg, eval_arrays: input_pipeline.EvalArrays, *,
                            batch_size: int, edit: hooks.LayerEdit | None = None) -> float:
  """Mean cross-entropy of the true next item over the full catalogue (no seen filtering)."""
  total, count = 0.0, 0
  for batch in eval_arrays.batches(batch_size):
    nll = np.asarray(_next_item_nll(params, batch["input_ids"], batch["targets"],
                                    model_cfg=model_cfg, edit=edit), np.float64)
    total += float(nll[batch["valid"]].sum())
    count += int(batch["valid"].sum())
  return total / max(count, 1)


def spliced_evaluation(rec_params, model_cfg, eval_arrays, trained: sae.TrainedSAE, layer: str, *,
                       batch_size: int, k: int, filter_seen: bool) -> dict:
  """Original, SAE-spliced and zero-ablated ranking metrics and cross-entropies."""
  out = {}
  edits = {"original": None, "spliced": hooks.sae_splice(layer, trained),
           "zero_ablated": hooks.zero_ablation(layer)}
  for name, edit in edits.items():
    m = evaluation.evaluate(rec_params, model_cfg, eval_arrays, batch_size=batch_size, k=k,
                             filter_seen=filter_seen, edit=edit)
    m["cross_entropy"] = next_item_cross_entropy(rec_params, model_cfg, eval_arrays,
                                                 batch_size=batch_size, edit=edit)
    out[name] = m
  ce = {name: out[name]["cross_entropy"] for name in out}
  gap = ce["zero_ablated"] - ce["original"]
  out["loss_recovered"] = float((ce["zero_ablated"] - ce["spliced"]) / gap) if gap else float("nan")
  key = f"ndcg@{k}"
  out["ndcg_retained"] = float(out["spliced"][key] / out["original"][key]) if out["original"][key] else float("nan")
  return out


def latents(trained: sae.TrainedSAE, activations: acts_lib.Activations, *,
            batch_size: int = 4096) -> np.ndarray:
  """Latents `[N, M]` float32, in raw units, for captured `activations`."""
  return sae.encode_activations(trained, activations.values, batch_size=batch_size)


def score(trained: sae.TrainedSAE, rec_params, model_cfg, eval_arrays, test_values, *,
          layer: str, eval_config, dense_threshold: float) -> dict:
  """The SAE's quality on held-out activations `test_values[N, d]` and the recommender's ranking
  with the SAE spliced in at `layer` (beside the original and zero-ablation), as results keys."""
  quality = sae.evaluate_quality(trained, test_values, dense_threshold=dense_threshold)
  e = eval_config
  spliced = spliced_evaluation(rec_params, model_cfg, eval_arrays, trained, layer,
                               batch_size=e.batch_size, k=e.k, filter_seen=e.filter_seen)
  key = f"ndcg@{e.k}"
  logging.info("train_sae: EV %.4f  MSE %.5f  L0 %.1f  dead %.3f  dense %.3f  NDCG@%d original "
               "%.4f spliced %.4f zero %.4f  loss recovered %.3f", quality.explained_variance,
               quality.mse, quality.l0, quality.dead_fraction, quality.dense_fraction, e.k,
               spliced["original"][key], spliced["spliced"][key], spliced["zero_ablated"][key],
               spliced["loss_recovered"])
  return {
      "explained_variance": quality.explained_variance, "mse": quality.mse, "l0": quality.l0,
      "dead_fraction": quality.dead_fraction, "dense_fraction": quality.dense_fraction,
      "dense_threshold": dense_threshold, **spliced,
  }


def quality_json(trained: sae.TrainedSAE, values, dense_threshold: float) -> dict | None:
  """`explained_variance`, `mse`, `l0`, `dead_fraction` on `values[N, d]` (None if empty)."""
  if not len(values):
    return None
  q = sae.evaluate_quality(trained, values, dense_threshold=dense_threshold)
  return {"explained_variance": q.explained_variance, "mse": q.mse, "l0": q.l0,
          "dead_fraction": q.dead_fraction}
