"""The `steer` stage: controls chosen by measured effect, compared with baselines over strengths.

`run(config, workdir)` writes `DIR/steer/results.json` (`workdir.Steering`):

* `mode`, `positions`, `error_preserving`, `layer`, `num_users`, `baseline` (metrics without
  edits on the test users, including the share of every attribute in the top 10);
* `controls`: per attribute, the `promote` and `suppress` SAE controls (`latents`, `weights`)
  chosen on the selection (SAE) users for gain and selectivity (`steer.controls`), with their
  measured gains there; `no_control`: the attributes carried by no item of any unedited top 10
  on the selection users (no control, no slider, swept by no method); `shared_controls`:
  `{direction: [[name, ...], ...]}` the attributes whose chosen control is the same (measured
  best for each); `random_latents`: the `random_latent` baseline's latent per attribute;
* `methods`: per method of `steer.methods.METHODS`, `{"attributes": {name: {"strengths": [...],
  "share@10": [...], "ndcg@10": [...], "hr@10", "mrr@10", "coverage@10", "novelty@10",
  "ild@10", "all_shares@10": {attribute: [...]}, "selectivity": [...],
  "new_item_precision": [...], "baseline_share@10"}}, "unit": ...}` on the test users
  (`steer.specificity` defines selectivity and new-item precision);
* `attributes`: the default method's (`sae_effect`) curves, with `latent` (the control's first
  latent) and `latent_auc` as before;
* `table`: per method and attribute the best share@10 at NDCG@10 >= `min_ndcg_ratio` of the
  baseline and the selectivity there, and per method how many attributes at least double their
  share there (`doubled`) and how many double it with selectivity >= 1 at the same strength
  (`doubled_and_selective`);
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
  rec = workdir_lib.interpreted(rec, interpretation)  # genres and the derived families
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
  sel_base = evaluate(sel_users)
  with_control, no_control = controls_lib.steerable(evaluate.shares(sel_base), names)
  if no_control:
    logging.info("steer: no control for %s (in no unedited top 10 of the %d selection users)",
                 ", ".join(no_control), sel_base["num_users"])
  candidates = {name: controls_lib.candidate_latents(
                    stats.logit_attribute_effect, stats.tables["selection_latent"]["auc"],
                    stats.tables["selection_latent"]["corr"], names.index(name),
                    num=s.num_candidates) for name in with_control}
  solved = _solved_controls(stats, multi_hot, rec.split.train.items, with_control)
  ctx = _context(config, rec, sae, stats, multi_hot, evaluate.score_unit(sel_users))
  ctx.random_latents = controls_lib.random_latents(
      stats.tables["selection_latent"]["fire_rate"], with_control, names, config.seed)
  strengths = [float(v) for v in s.strengths]
  chosen, sel_base = sweeps.choose_controls(evaluate, sel_users, candidates, ctx.sae, strengths,
                                            mode=s.mode, min_ndcg_ratio=s.min_ndcg_ratio,
                                            solved=solved, baseline=sel_base)
  ctx.controls = {n: {d: c[d]["control"] for d in c} for n, c in chosen.items()}
  shared = controls_lib.shared_controls(ctx.controls)
  _log_choices(chosen, shared, sel_base["num_users"])
  # --- every method on the test users
  test_users = evaluate.users(rec.split.test, sae.layer)
  baseline, base_top = evaluate.ranked(test_users)
  grids = {m: [float(v) for v in s[spec.grid]] for m, spec in METHODS.items()}
  methods = sweeps.sweep_methods(evaluate, test_users, ctx, list(candidates), grids,
                                 baseline=(baseline, base_top))
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
      "no_control": no_control, "shared_controls": shared, "random_latents": ctx.random_latents,
      "selection": {"num_users": sel_base["num_users"], "baseline": sel_base,
                    "min_ndcg_ratio": s.min_ndcg_ratio,
                    "gains": {n: {d: {k: c[d][k] for k in _SELECTION_KEYS} for d in c}
                              for n, c in chosen.items()}},
      "methods": methods, "table": sweeps.method_table(methods, baseline, s.min_ndcg_ratio),
      "composites": composites}
  results = stage_record.finish(layout.steer, run_, results)
  report.run(config, workdir)
  table = results["table"]
  for method, row in table["doubled"].items():
    logging.info("steer: %s doubles the share of %d of %d attributes at NDCG@10 >= %.0f%% of "
                 "baseline, %d of them with selectivity >= 1", method, row, len(candidates),
                 100 * s.min_ndcg_ratio, table["doubled_and_selective"][method])
  return results


# What `selection.gains[name][direction]` records of each choice (`controls.choose`).
_SELECTION_KEYS = ("gain", "candidates", "kind", "selectivity", "strength", "candidate_selectivity")


def _log_choices(chosen: dict, shared: dict, num_users: int) -> None:
  for name, c in chosen.items():
    logging.info("steer %s: promote %s %s (gain %.3f, selectivity %s), suppress %s %s (gain %.3f, "
                 "selectivity %s) on %d selection users", name, c["promote"]["kind"],
                 c["promote"]["control"].to_json(), c["promote"]["gain"],
                 _g(c["promote"]["selectivity"]), c["suppress"]["kind"],
                 c["suppress"]["control"].to_json(), c["suppress"]["gain"],
                 _g(c["suppress"]["selectivity"]), num_users)
  for direction, groups in shared.items():
    for group in groups:
      logging.info("steer: %s share their %s control (measured best for each)",
                   ", ".join(group), direction)


def _g(value) -> str:
  return "n/a" if value is None else f"{value:.2f}"


def _solved_controls(stats, multi_hot, train_items, names) -> dict:
  """`{name: [Control]}`: the weighted set over the `controls.SOLVED_LATENTS` latents lifting
  each attribute most, solved from the logit effects (`controls.solved_control`), items weighted
  by log(1 + training interactions) so that the items that can reach a top 10 count most; empty
  where the artefact has no logit effects."""
  if stats.logit_effect is None:
    return {}
  weights = np.log1p(np.bincount(train_items, minlength=len(multi_hot)))
  out = {}
  for name in names:
    control = controls_lib.solved_control(stats.logit_effect, stats.logit_attribute_effect,
                                          multi_hot, stats.attribute_names.index(name),
                                          item_weights=weights)
    if control is not None:
      out[name] = [control]
  return out


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
