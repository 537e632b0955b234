"""The `steer` stage: controls chosen by measured effect, compared with baselines over strengths.

`run(config, workdir)` writes `DIR/steer/results.json` (`workdir.Steering`):

* `mode`, `positions`, `error_preserving`, `layer`, `num_users`, `baseline` (metrics without
  edits on the test users, including the share of every attribute in the top 10);
* `controls`: per attribute, the `promote` and `suppress` SAE controls (`latents`, `weights`)
  chosen on the selection (SAE) users (`steer.controls`), with their measured gains there;
* `methods`: per method of `steer.methods.METHODS`, `{"attributes": {name: {"strengths": [...],
  "share@10": [...], "ndcg@10": [...], "hr@10", "mrr@10", "coverage@10", "novelty@10",
  "ild@10"}}, "unit": ...}` on the test users;
* `attributes`: the default method's (`sae_effect`) curves, with `latent` (the control's first
  latent) and `latent_auc` as before;
* `table`: per method and attribute the best share@10 at NDCG@10 >= `min_ndcg_ratio` of the
  baseline, and per method how many attributes at least double their share there;
* `composites`: each composite control of `steer.composites` over `steer.composite_strengths`;
* `selection`: who chose the controls (users, baseline there).

The report (`stages.report`) gains the Pareto plots and the default method's curves.
"""

from __future__ import annotations

import pathlib

import numpy as np
from absl import logging

from seqrec_jax import workdir as workdir_lib
from seqrec_jax.core import stage_record
from seqrec_jax.interpret import heldout
from seqrec_jax.recommender import metrics
from seqrec_jax.stages import report
from seqrec_jax.steer import controls as controls_lib
from seqrec_jax.steer import sweeps
from seqrec_jax.steer.methods import METHODS, SteerContext

DEFAULT_METHOD = "sae_effect"


def run(config, workdir: str | pathlib.Path) -> dict:
  layout = workdir_lib.Layout.of(workdir, config)
  settings = stage_record.settings_of(config, ("steer", "sae.subdir"))
  run_ = stage_record.begin("steer", layout.steer, layout.root, settings,
                            upstream=[layout.interpret_record], outputs=("results.json",),
                            overwrite=bool(config.get("overwrite")))
  if run_.results is not None:  # finished with these settings: skipped
    return run_.results
  rec, sae = workdir_lib.load_recommender(layout), workdir_lib.load_sae(layout)
  interpretation = workdir_lib.load_interpretation(layout)
  s, stats = config.steer, interpretation.statistics
  names = stats.attribute_names
  multi_hot = np.asarray(rec.dataset.attributes.multi_hot) > 0
  evaluate = sweeps.Evaluator(
      rec.params, rec.model_cfg, rec.config.eval.batch_size, rec.config.eval.filter_seen,
      metrics.ListFeatures(np.bincount(rec.split.train.items, minlength=len(multi_hot)),
                           rec.dataset.attributes.multi_hot, names))
  # --- choose the controls on the selection users
  sel_users = evaluate.users(sweeps.selection_evalset(rec.split, s.selection_users, config.seed),
                             sae.layer)
  candidates = {name: controls_lib.candidate_latents(
                    stats.logit_attribute_effect, stats.tables["selection_latent"]["auc"],
                    stats.tables["selection_latent"]["corr"], g, num=s.num_candidates)
                for g, name in enumerate(names) if multi_hot[1:, g].any()}
  ctx = _context(config, rec, sae, stats, multi_hot, evaluate.score_unit(sel_users))
  strengths = [float(v) for v in s.strengths]
  chosen, sel_base = sweeps.choose_controls(evaluate, sel_users, candidates, ctx.sae, strengths,
                                            mode=s.mode, min_ndcg_ratio=s.min_ndcg_ratio)
  ctx.controls = {n: {d: c[d]["control"] for d in c} for n, c in chosen.items()}
  for name, c in chosen.items():
    logging.info("steer %s: promote %s (gain %.3f), suppress %s (gain %.3f) on %d selection users",
                 name, c["promote"]["control"].to_json(), c["promote"]["gain"],
                 c["suppress"]["control"].to_json(), c["suppress"]["gain"], sel_base["num_users"])
  # --- every method on the test users
  test_users = evaluate.users(rec.split.test, sae.layer)
  baseline = evaluate(test_users)
  grids = {m: [float(v) for v in s[spec.grid]] for m, spec in METHODS.items()}
  methods = sweeps.sweep_methods(evaluate, test_users, ctx, list(candidates), grids)
  composites = sweeps.sweep_composites(evaluate, test_users, ctx, s.composites,
                                       s.composite_strengths, baseline, s.min_ndcg_ratio)
  results = {
      "mode": s.mode, "positions": s.positions, "error_preserving": bool(s.error_preserving),
      "layer": sae.layer, "num_users": baseline["num_users"], "baseline": baseline,
      "attributes": {name: {"latent": ctx.controls[name]["promote"].latents[0],
                            "latent_auc": interpretation.results["attributes"].get(name, {})
                            .get("latent_auc"), **curves}
                     for name, curves in methods[DEFAULT_METHOD]["attributes"].items()},
      "default_method": DEFAULT_METHOD,
      "controls": {n: {d: c.to_json() for d, c in cs.items()} for n, cs in ctx.controls.items()},
      "selection": {"num_users": sel_base["num_users"], "baseline": sel_base,
                    "min_ndcg_ratio": s.min_ndcg_ratio,
                    "gains": {n: {d: {"gain": c[d]["gain"], "candidates": c[d]["candidates"]}
                                  for d in c} for n, c in chosen.items()}},
      "methods": methods, "table": sweeps.method_table(methods, baseline, s.min_ndcg_ratio),
      "composites": composites}
  results = stage_record.finish(layout.steer, run_, results)
  report.run(config, workdir)
  for method, row in results["table"]["doubled"].items():
    logging.info("steer: %s doubles the share of %d of %d attributes at NDCG@10 >= %.0f%% of "
                 "baseline", method, row, len(candidates), 100 * s.min_ndcg_ratio)
  return results


def _context(config, rec, sae, stats, multi_hot, score_unit: float) -> SteerContext:
  """Everything the methods' steers are built from, measured on the selection users."""
  acts = workdir_lib.captured(rec, sae.layer, "selection", batch_size=config.sae.capture_batch_size,
                              memory_budget_mb=config.sae.memory_budget_mb,
                              max_users=config.interpret.selection_users, seed=config.seed)
  labels, keep = heldout.position_labels(multi_hot, acts.items, acts.next_items,
                                         config.interpret.label_position)
  neurons = stats.tables["selection_neuron"]
  s = config.steer
  return SteerContext(
      layer=sae.layer, trained=sae.trained, typical=stats.typical_activation, controls={},
      multi_hot=multi_hot, selection_auc=stats.tables["selection_latent"]["auc"],
      neuron_corr=neurons["corr"], neuron_dimension=neurons["dimension"],
      neuron_sign=neurons["sign"], hidden=np.asarray(acts.values, np.float32)[keep],
      labels=labels[keep], score_unit=score_unit, mode=s.mode, positions=s.positions,
      error_preserving=bool(s.error_preserving))
