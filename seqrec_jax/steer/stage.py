"""The `steer` stage: controls chosen by measured effect, compared with baselines over strengths.

`run(config, workdir)` writes `DIR/steer/results.json`:

* `mode`, `positions`, `error_preserving`, `layer`, `num_users`, `baseline` (metrics without
  edits on the test users, including the share of every attribute in the top 10);
* `controls`: per attribute, the `promote` and `suppress` SAE controls (`latents`, `weights`)
  chosen on the selection (SAE) users (`controls.py`), with their measured gains there;
* `methods`: per method of `methods.METHODS`, `{"attributes": {name: {"strengths": [...],
  "share@10": [...], "ndcg@10": [...], "hr@10", "mrr@10", "coverage@10", "novelty@10",
  "ild@10"}}, "unit": ...}` on the test users;
* `attributes`: the default method's (`sae_effect`) curves, with `latent` (the control's first
  latent) and `latent_auc` as before;
* `table`: per method and attribute the best share@10 at NDCG@10 >= `min_ndcg_ratio` of the
  baseline, and per method how many attributes at least double their share there;
* `composites`: each composite control of `steer.composites` over `steer.composite_strengths`;
* `selection`: who chose the controls (users, baseline there).

Pareto plots (share against NDCG@10 kept, every method) and the default method's curves are added
to `DIR/interpret/report.html` (PNGs beside it).
"""

from __future__ import annotations

import json
import pathlib

import jax
import numpy as np
from absl import logging

from seqrec_jax.core import distributed, stage_record
from seqrec_jax.data.splits import EvalSet, make_sequences
from seqrec_jax.interpret import stage as interpret_stage
from seqrec_jax.recommender import activations as acts_lib
from seqrec_jax.recommender import evaluation, input_pipeline, metrics
from seqrec_jax.recommender import stage as recommender_stage
from seqrec_jax.sae import trained as sae_trained
from seqrec_jax.steer import controls as controls_lib
from seqrec_jax.steer import figures
from seqrec_jax.steer import methods as methods_lib
from seqrec_jax.steer.edits import parse_edit
from seqrec_jax.steer.methods import Control, Steer

CURVE_KEYS = ("share@10", "ndcg@10", "hr@10", "mrr@10", "coverage@10", "novelty@10", "ild@10")
DEFAULT_METHOD = "sae_effect"


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
  """Attribute name -> its best latent by AUC on the test users (the first version's choice)."""
  return {name: int(a["best_latent"]) for name, a in interpreted["attributes"].items()
          if a.get("best_latent") is not None and (a.get("latent_auc") or 0.0) >= min_auc}


def attribute_controls(workdir) -> dict[str, dict[str, Control]]:
  """Attribute name -> {"promote": Control, "suppress": Control}, the steer stage's choice.

  Before the steer stage has run, each attribute's best-AUC latent serves both directions.
  """
  workdir = pathlib.Path(workdir)
  steer_file = workdir / "steer" / "results.json"
  if steer_file.exists():
    chosen = json.loads(steer_file.read_text()).get("controls")
    if chosen:
      return {name: {d: Control.from_json(c[d]) for d in ("promote", "suppress")}
              for name, c in chosen.items()}
  interpreted = json.loads((workdir / "interpret" / "results.json").read_text())
  return {name: {"promote": Control.single(j), "suppress": Control.single(j)}
          for name, j in attribute_latents(interpreted).items()}


def _list_features(dataset, split) -> metrics.ListFeatures:
  counts = np.bincount(split.train.items, minlength=dataset.interactions.num_items)
  return metrics.ListFeatures(counts, dataset.attributes.multi_hot, dataset.attributes.names)


def selection_evalset(split, max_users: int, seed: int) -> EvalSet:
  """The users controls are chosen on: `split.val` (temporal: the SAE users' last items;
  leave-one-out: every user's second-to-last item), at most `max_users` of them."""
  val = split.val
  if max_users and len(val) > max_users:
    keep = np.sort(np.random.default_rng(seed).choice(len(val), max_users, replace=False))
    val = EvalSet(make_sequences([val.histories[i] for i in keep], val.histories.users[keep]),
                  val.targets[keep])
  return val


def _score_std(params, model_cfg, arrays, batch_size) -> float:
  """Mean over users of the standard deviation of their item scores (the re-ranking unit)."""
  stds = []
  for batch in arrays.batches(batch_size):
    scores = np.asarray(jax.device_get(evaluation.scores_last(params, batch["input_ids"],
                                                              model_cfg)))[:, 1:]
    stds.append(scores.std(axis=1)[batch["valid"]])
  return methods_lib.score_unit(np.concatenate(stds))


def parse_composites(text: str) -> dict[str, list[tuple[str, float]]]:
  """`"kids mode=Children's:+1,Animation:+1;no Horror=Horror:-1"` -> {name: [(attr, sign)]}."""
  out = {}
  for part in filter(None, (p.strip() for p in text.split(";"))):
    name, sep, body = part.partition("=")
    if not sep or not name.strip() or not body.strip():
      raise ValueError(f"steer.composites: {part!r} must look like NAME=ATTR:+1,ATTR:-1")
    out[name.strip()] = [parse_edit(e.strip()) for e in body.split(",") if e.strip()]
  return out


def composite_edits(parts, chosen: dict[str, dict[str, Control]], strength: float,
                    mode: str = "add") -> list[tuple[int, str, float]]:
  """SAE edits of a composite at `strength`: each part's promote or suppress control."""
  edits = []
  for name, weight in parts:
    control = chosen[name]["promote" if weight > 0 else "suppress"]
    edits += control.edits(strength * weight, mode)
  return edits


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
  stats = np.load(workdir / "interpret" / "statistics.npz")
  s = config.steer
  names = list(dataset.attributes.names)
  multi_hot = np.asarray(dataset.attributes.multi_hot) > 0
  batch_size = rec_config.eval.batch_size
  features = _list_features(dataset, split)

  def arrays_of(evalset):
    return input_pipeline.make_eval_arrays(evalset, kind=model_cfg.kind, max_len=model_cfg.max_len,
                                           batch_size=batch_size, mask_token=model_cfg.mask_token)

  def evaluate(arrays, steer: Steer):
    return evaluation.evaluate(params, model_cfg, arrays, batch_size=batch_size,
                               filter_seen=rec_config.eval.filter_seen, edit=steer.edit,
                               score_bias=steer.score_bias, list_features=features)

  def sae(edit_list, error_preserving=bool(s.error_preserving)):
    return methods_lib.sae_steer(layer, trained, typical, edit_list, positions=s.positions,
                                 error_preserving=error_preserving)

  # --- choose the controls on the selection users
  sel_arrays = arrays_of(selection_evalset(split, s.selection_users, config.seed))
  sel_base = evaluate(sel_arrays, Steer())
  sel_base_shares = np.array([sel_base["share@10"][n] for n in names])

  def sweep(control: Control, strength: float):
    r = evaluate(sel_arrays, sae(control.edits(strength, s.mode)))
    return np.array([r["share@10"][n] for n in names]), r["ndcg@10"]

  candidates = {}
  for g, name in enumerate(names):
    if multi_hot[1:, g].any():
      candidates[name] = controls_lib.candidate_latents(
          stats["logit_attribute_effect"], stats["selection_latent_auc"],
          stats["selection_latent_corr"], g, num=s.num_candidates)
  strengths = [float(v) for v in s.strengths]
  chosen = controls_lib.choose_all(sweep, candidates, names, [v for v in strengths if v],
                                   base_shares=sel_base_shares, base_ndcg=sel_base["ndcg@10"],
                                   min_ndcg_ratio=s.min_ndcg_ratio)
  controls = {n: {d: c[d]["control"] for d in c} for n, c in chosen.items()}
  for name, c in chosen.items():
    logging.info("steer %s: promote %s (gain %.3f), suppress %s (gain %.3f) on %d selection users",
                 name, c["promote"]["control"].to_json(), c["promote"]["gain"],
                 c["suppress"]["control"].to_json(), c["suppress"]["gain"], sel_base["num_users"])

  # --- directions for the baselines, from the selection users' hidden states
  sel_seqs = interpret_stage.selection_sequences(split, config.interpret.selection_users,
                                                 config.seed)
  sel_acts = acts_lib.capture_activations(params, model_cfg, sel_seqs, layer,
                                          batch_size=batch_size)
  sel_labels, keep = interpret_stage.position_labels(dataset, sel_acts,
                                                     config.interpret.label_position)
  sel_hidden = np.asarray(sel_acts.values, np.float32)[keep]
  sel_labels = sel_labels[keep]
  neuron_corr = np.nan_to_num(stats["selection_neuron_corr"], nan=-np.inf)
  score_unit = _score_std(params, model_cfg, sel_arrays, batch_size)
  sel_auc = np.nan_to_num(stats["selection_latent_auc"], nan=-np.inf)

  def steer_of(method: str, name: str, strength: float) -> Steer:
    g = names.index(name)
    direction = "promote" if strength >= 0 else "suppress"
    if method in ("sae_effect", "sae_replace"):
      return sae(controls[name][direction].edits(strength, s.mode),
                 error_preserving=method == "sae_effect" and bool(s.error_preserving))
    if method == "sae_auc":
      return sae(Control.single(int(sel_auc[:, g].argmax())).edits(strength, s.mode))
    if method == "dimension":
      column = int(neuron_corr[:, g].argmax())
      vector = methods_lib.dimension_direction(
          sel_hidden, int(stats["selection_neuron_dimension"][column]),
          int(stats["selection_neuron_sign"][column]))
      return methods_lib.direction_steer(layer, vector, strength, positions=s.positions)
    if method == "probe":
      if g not in probes:
        probes[g] = methods_lib.probe_direction(sel_hidden, sel_labels[:, g])
      vector = probes[g]
      return methods_lib.direction_steer(layer, vector, strength, positions=s.positions)
    if method == "rerank":
      return methods_lib.rerank_steer(multi_hot[:, g], strength * score_unit)
    raise ValueError(f"unknown steering method {method!r}; known: {methods_lib.METHODS}")

  probes: dict[int, np.ndarray] = {}
  grids = {"sae_effect": strengths, "sae_auc": strengths, "sae_replace": strengths,
           "dimension": [float(v) for v in s.direction_strengths],
           "probe": [float(v) for v in s.direction_strengths],
           "rerank": [float(v) for v in s.rerank_strengths]}
  units = {"sae_effect": "typical activations", "sae_auc": "typical activations",
           "sae_replace": "typical activations", "dimension": "standard deviations of the dimension",
           "probe": "standard deviations along the probe",
           "rerank": f"score standard deviations ({score_unit:.4g})"}

  # --- every method on the test users
  test_arrays = arrays_of(split.test)
  baseline = evaluate(test_arrays, Steer())
  methods = {}
  for method in methods_lib.METHODS:
    per_attribute = {}
    for name in candidates:
      curves = {key: [] for key in CURVE_KEYS}
      for strength in grids[method]:
        result = evaluate(test_arrays, steer_of(method, name, strength))
        for key in CURVE_KEYS:
          curves[key].append(result[key][name] if key == "share@10" else result[key])
      per_attribute[name] = {"strengths": grids[method], **curves}
    methods[method] = {"unit": units[method], "attributes": per_attribute}
    logging.info("steer: %s swept over %d attributes", method, len(per_attribute))

  default = {}
  for name, curves in methods[DEFAULT_METHOD]["attributes"].items():
    default[name] = {"latent": controls[name]["promote"].latents[0],
                     "latent_auc": interpreted["attributes"].get(name, {}).get("latent_auc"),
                     **curves}
  composites = {}
  for cname, parts in parse_composites(s.composites).items():
    parts = [(n, w) for n, w in parts if n in controls]
    if not parts:
      continue
    rows = [evaluate(test_arrays, sae(composite_edits(parts, controls, strength, s.mode)))
            for strength in s.composite_strengths]
    floor = s.min_ndcg_ratio * baseline["ndcg@10"]
    usable = [st for st, r in zip(s.composite_strengths, rows) if st > 0 and r["ndcg@10"] >= floor]
    preset = max(usable, default=min((st for st in s.composite_strengths if st > 0), default=0.0))
    composites[cname] = {
        "parts": [[n, w] for n, w in parts],
        # The strongest setting of the sweep keeping NDCG@10 (the explorer's preset).
        "edits": [f"{n}:{preset * w:+g}" for n, w in parts],
        "strengths": [float(v) for v in s.composite_strengths],
        "share@10": {n: [r["share@10"][n] for r in rows] for n, _ in parts},
        **{key: [r[key] for r in rows] for key in CURVE_KEYS if key != "share@10"}}

  results = {"mode": s.mode, "positions": s.positions, "error_preserving": bool(s.error_preserving),
             "layer": layer, "num_users": baseline["num_users"], "baseline": baseline,
             "attributes": default, "default_method": DEFAULT_METHOD,
             "controls": {n: {d: c.to_json() for d, c in cs.items()} for n, cs in controls.items()},
             "selection": {"num_users": sel_base["num_users"], "baseline": sel_base,
                           "min_ndcg_ratio": s.min_ndcg_ratio,
                           "gains": {n: {d: {"gain": c[d]["gain"], "candidates": c[d]["candidates"]}
                                         for d in c} for n, c in chosen.items()}},
             "methods": methods,
             "table": method_table(methods, baseline, s.min_ndcg_ratio),
             "composites": composites}
  stage_record.finish(out_dir, run, results)
  if distributed.is_main_process():
    # The report (and its PNGs, beside it in DIR/interpret/) gains the steering plots.
    interpret_stage.write_interpret_report(workdir, extra_figures=figures.steering_figures(results))
  for method, row in results["table"]["doubled"].items():
    logging.info("steer: %s doubles the share of %d of %d attributes at NDCG@10 >= %.0f%% of "
                 "baseline", method, row, len(candidates), 100 * s.min_ndcg_ratio)
  return results


def method_table(methods: dict, baseline: dict, min_ndcg_ratio: float) -> dict:
  """Per method and attribute: the best share@10 at a positive strength keeping NDCG@10 at
  `min_ndcg_ratio` of the baseline or more (None if none does), and how many attributes at
  least double their baseline share there."""
  floor = min_ndcg_ratio * baseline["ndcg@10"]
  shares, doubled = {}, {}
  for method, m in methods.items():
    shares[method] = {}
    for name, a in m["attributes"].items():
      ok = [sh for st, sh, nd in zip(a["strengths"], a["share@10"], a["ndcg@10"])
            if st > 0 and nd >= floor]
      shares[method][name] = max(ok) if ok else None
    doubled[method] = sum(
        1 for name, v in shares[method].items()
        if v is not None and v > baseline["share@10"][name] and v >= 2 * baseline["share@10"][name])
  return {"min_ndcg_ratio": min_ndcg_ratio, "share_at_min_ndcg": shares, "doubled": doubled}
