"""The `steer` stage (strength sweeps per attribute) and the `recommend` command (one user).

`run(config, workdir)` writes `DIR/steer/results.json` with `mode`, `positions`,
`error_preserving`, `baseline` (metrics without edits, including the share of every attribute in
the top 10) and `attributes`: per attribute name, its best latent (`latent`, `latent_auc`) and
lists aligned with `strengths`: `share@10`, `ndcg@10`, `hr@10`, `mrr@10`, `coverage@10`,
`novelty@10`, `ild@10`. Plots of share and NDCG@10 against strength and of the trade-off are
added to `DIR/interpret/report.html` (PNGs beside it).
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
from absl import logging
from matplotlib.figure import Figure

from seqrec_jax.sae import trained as sae_trained
from seqrec_jax.recommender import input_pipeline
from seqrec_jax.interpret import stage as interpret_stage
from seqrec_jax.recommender import metrics
from seqrec_jax.recommender import evaluation
from seqrec_jax.recommender import stage as recommender_stage
from seqrec_jax.steer import edits as steering
from seqrec_jax.core import distributed, stage_record


def load_steering_context(config, workdir):
  workdir = pathlib.Path(workdir)
  rec_config, dataset, split, model_cfg, params = recommender_stage.load_trained(workdir)
  interpret_file = workdir / "interpret" / "results.json"
  if not interpret_file.exists():
    raise FileNotFoundError(f"{interpret_file} not found: run --experiment=interpret first")
  interpreted = json.loads(interpret_file.read_text())
  typical = np.load(workdir / "interpret" / "statistics.npz")["typical_activation"]
  trained = sae_trained.load_sae(workdir, config.sae.subdir)
  layer = sae_trained.sae_layer(workdir, config.sae.subdir)
  return rec_config, dataset, split, model_cfg, params, interpreted, typical, trained, layer


def attribute_latents(interpreted: dict, min_auc: float = 0.0) -> dict[str, int]:
  """Attribute name -> its best latent (by AUC), for attributes whose AUC reaches `min_auc`."""
  return {name: int(a["best_latent"]) for name, a in interpreted["attributes"].items()
          if a.get("best_latent") is not None and (a.get("latent_auc") or 0.0) >= min_auc}


def _list_features(dataset, split) -> metrics.ListFeatures:
  counts = np.bincount(split.train.items, minlength=dataset.interactions.num_items)
  return metrics.ListFeatures(counts, dataset.attributes.multi_hot, dataset.attributes.names)


def run(config, workdir: str | pathlib.Path) -> dict:
  workdir = pathlib.Path(workdir)
  out_dir = workdir / "steer"
  settings = stage_record.settings_of(config, ("steer", "sae.subdir"))
  run = stage_record.begin("steer", out_dir, workdir, settings,
                           upstream=[f"interpret/{stage_record.RECORD}"], outputs=("results.json",),
                           overwrite=bool(config.get("overwrite")))
  if run.results is not None:
    logging.info("steer: %s already holds these results; --config.overwrite=true redoes them",
                 out_dir)
    return run.results
  (rec_config, dataset, split, model_cfg, params, interpreted, typical, trained,
   layer) = load_steering_context(config, workdir)
  s = config.steer
  arrays = input_pipeline.make_eval_arrays(split.test, kind=model_cfg.kind, max_len=model_cfg.max_len,
                                           batch_size=rec_config.eval.batch_size,
                                           mask_token=model_cfg.mask_token)
  features = _list_features(dataset, split)

  def evaluate(edit):
    return evaluation.evaluate(params, model_cfg, arrays, batch_size=rec_config.eval.batch_size,
                                filter_seen=rec_config.eval.filter_seen, edit=edit,
                                list_features=features)

  baseline = evaluate(None)
  strengths = [float(v) for v in s.strengths]
  per_attribute = {}
  for name, latent in attribute_latents(interpreted, s.min_auc).items():
    curves = {key: [] for key in ("share@10", "ndcg@10", "hr@10", "mrr@10", "coverage@10",
                                  "novelty@10", "ild@10")}
    for strength in strengths:
      edit = steering.layer_edit(layer, trained, steering.Edits.make([(latent, s.mode, strength)]),
                                 typical, positions=s.positions, error_preserving=s.error_preserving)
      result = evaluate(edit)
      curves["share@10"].append(result["share@10"][name])
      for key in curves:
        if key != "share@10":
          curves[key].append(result[key])
    per_attribute[name] = {"latent": latent,
                           "latent_auc": interpreted["attributes"][name]["latent_auc"],
                           "strengths": strengths, **curves}
    logging.info("steer %s (latent %d): share@10 %s  ndcg@10 %s", name, latent,
                 [round(v, 3) for v in curves["share@10"]], [round(v, 4) for v in curves["ndcg@10"]])

  results = {"mode": s.mode, "positions": s.positions, "error_preserving": bool(s.error_preserving),
             "layer": layer, "num_users": baseline["num_users"], "baseline": baseline,
             "attributes": per_attribute}
  stage_record.finish(out_dir, run, results)
  if distributed.is_main_process():
    # The report (and its PNGs, beside it in DIR/interpret/) gains the steering plots.
    interpret_stage.write_interpret_report(workdir, extra_figures=steering_figures(results))
  return results


def steering_figures(results: dict) -> dict[str, Figure]:
  """Share@10 and NDCG@10 against strength per attribute, and share gained vs NDCG lost."""
  attrs = results["attributes"]
  base = results["baseline"]
  curves = Figure(figsize=(12, 4.5))
  ax_share, ax_ndcg = curves.subplots(1, 2)
  trade = Figure(figsize=(6, 4.5))
  ax_trade = trade.subplots()
  for name, a in attrs.items():
    line, = ax_share.plot(a["strengths"], a["share@10"], marker="o", ms=3, label=name)
    ax_ndcg.plot(a["strengths"], a["ndcg@10"], marker="o", ms=3, color=line.get_color())
    gained = np.asarray(a["share@10"]) - base["share@10"][name]
    lost = base["ndcg@10"] - np.asarray(a["ndcg@10"])
    ax_trade.plot(lost, gained, marker="o", ms=3, color=line.get_color(), label=name)
  ax_share.set(xlabel="edit strength (typical activations)", ylabel="attribute share in top 10",
               title=f"{results['mode']} at {results['positions']} positions")
  ax_ndcg.axhline(base["ndcg@10"], color="gray", ls="--", lw=1, label="no edit")
  ax_ndcg.set(xlabel="edit strength (typical activations)", ylabel="NDCG@10")
  ax_share.legend(fontsize=6, ncol=2)
  ax_trade.set(xlabel="NDCG@10 lost", ylabel="share@10 gained", title="steering trade-off")
  ax_trade.axhline(0, color="gray", lw=0.5)
  ax_trade.axvline(0, color="gray", lw=0.5)
  return {"steer_curves": curves, "steer_tradeoff": trade}


# ----------------------------------------------------------------------------- recommend
