"""The `interpret` stage: score SAE latents and raw hidden dimensions against item attributes.

Reads the recommender and SAE of the workdir and the SAE's layer at every real position of the
test users and of (at most `interpret.selection_users`) SAE users. Features are *chosen* on the
SAE users and *measured* on the test users (`heldout`), with user-bootstrap intervals. Writes
into `DIR/interpret/` (`workdir.Interpretation`):

* `results.json`: `label_position`, `num_positions`, `attributes` (per attribute name, on the
  test users alone: `best_latent`, `latent_auc`, `best_neuron`, `neuron_auc`, `latent_corr`,
  `neuron_corr`, `latent_precision`, `neuron_precision`), `mean` (those averaged over
  attributes), `labels` (per labelled latent id: `attribute`, `corr`, `f1`, `auc`, `precision`,
  `monosemantic`), `label_counts`, `top_examples` per labelled latent, `heldout` (per attribute
  and averaged: the best latent and the best signed dimension by AUC, correlation and F1 chosen
  on the SAE users, measured on the test users, with 95 % intervals; `difference` = latents minus
  dimensions) and `monosemanticity` (distribution summaries for latents and dimensions);
* `statistics.npz` (`workdir.Statistics`): the latent and signed-dimension statistics on the
  test and SAE users, monosemanticity, each latent's typical activation (mean when active, on the
  SAE users: the steering unit), its logit effect `[M, V]` and attribute effect `[M, G]`;
* `dashboards.json`: per latent its label, firing rate, monosemanticity, activation histogram,
  top items and sequences, and the items and attributes its decoder direction promotes;
* `report.html` with its PNGs (`stages.report`).
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
from absl import logging

from seqrec_jax import interpret
from seqrec_jax import workdir as workdir_lib
from seqrec_jax.core import stage_record
from seqrec_jax.data import derived
from seqrec_jax.data.containers import ItemAttributes
from seqrec_jax.data.splits import EvalSet
from seqrec_jax.interpret import dashboards, heldout
from seqrec_jax.recommender import train as rec_train
from seqrec_jax.sae import evaluation as sae_evaluation
from seqrec_jax.stages import report
from seqrec_jax.steer import edits, effects

_OUTPUTS = ("results.json", "statistics.npz", "dashboards.json", "report.html")


@dataclasses.dataclass(frozen=True)
class _Positions:
  """One user group's labelled positions: activations, attribute labels `[N, G]`, latents
  `[N, M]` and hidden states `[N, d]`."""

  acts: object
  labels: np.ndarray
  latents: np.ndarray
  hidden: np.ndarray


def _positions(config, rec, sae, group: str) -> _Positions:
  s = config.sae
  acts = workdir_lib.captured(rec, sae.layer, group, batch_size=s.capture_batch_size,
                              memory_budget_mb=s.memory_budget_mb,
                              max_users=config.interpret.selection_users, seed=config.seed)
  labels, keep = heldout.position_labels(rec.dataset.attributes.multi_hot, acts.items,
                                         acts.next_items, config.interpret.label_position)
  if not keep.all():
    acts, labels = acts.subset(np.flatnonzero(keep)), labels[keep]
  return _Positions(acts, labels, sae_evaluation.latents(sae.trained, acts),
                    np.asarray(acts.values, np.float32))


def run(config, workdir: str | pathlib.Path) -> dict:
  """Runs the interpretation stage; returns (and writes) its results."""
  layout = workdir_lib.Layout.of(workdir, config)
  settings = stage_record.settings_of(config, ("interpret", "sae.subdir"))
  run_ = stage_record.begin("interpret", layout.interpret, layout.root, settings,
                            upstream=[layout.sae_record], outputs=_OUTPUTS,
                            overwrite=bool(config.get("overwrite")))
  if run_.results is not None:  # finished with these settings: skipped
    return run_.results
  rec, sae = workdir_lib.load_recommender(layout), workdir_lib.load_sae(layout)
  rec = workdir_lib.with_attributes(rec, _attributes(config, rec))
  if not rec.dataset.attributes.names:
    raise ValueError(f"dataset {rec.dataset.name} has no item attributes to interpret latents with "
                     "(and interpret.attribute_families adds none)")
  test, selection = _positions(config, rec, sae, "test"), _positions(config, rec, sae, "selection")
  logging.info("interpret: %d test positions, %d latents, %d dimensions, %d attributes",
               len(test.acts), test.latents.shape[1], test.hidden.shape[1], test.labels.shape[1])
  statistics = _statistics(config, rec, sae, test, selection)
  results, labels, top = _results(config, rec, sae, test, selection, statistics)
  cards = dashboards.latent_dashboards(
      rec.dataset, test.latents, statistics.tables["latent"], labels,
      statistics.latent_monosemanticity, top, test.acts, statistics.logit_effect,
      statistics.logit_attribute_effect, statistics.attribute_names)["latents"]
  workdir_lib.save_interpretation(layout, statistics, cards)
  results = stage_record.finish(layout.interpret, run_, results)
  workdir_lib.remember_interpretation(layout, workdir_lib.Interpretation(
      results, statistics, cards, run_.record["run_id"]))
  report.run(config, workdir)
  _log_summary(results)
  return results


def _attributes(config, rec):
  """The dataset's attributes (genres) followed by the derived families of
  `interpret.attribute_families` (`popularity:head`/`tail` from the training counts, `decade:*`
  where the data has release years; `data.derived`)."""
  own = rec.dataset.attributes
  if own is None:
    own = ItemAttributes(np.zeros((rec.dataset.interactions.num_items, 0), bool), (),
                         rec.dataset.interactions.item_ids)
  cfg = config.interpret
  families = [f.strip() for f in cfg.get("attribute_families", "").split(",") if f.strip()]
  counts = derived.train_item_counts(rec.split, rec.dataset.interactions.num_items)
  return derived.with_derived_attributes(own, counts, families=families,
                                         popularity_share=cfg.get("popularity_share", 0.2))


def _statistics(config, rec, sae, test: _Positions, sel: _Positions) -> workdir_lib.Statistics:
  """Every feature's statistics on both groups, the steering unit and the logit effects."""
  tables = {"latent": interpret.attribute_statistics(test.latents, test.labels),
            "neuron": interpret.neuron_statistics(test.hidden, test.labels),
            "selection_latent": interpret.attribute_statistics(sel.latents, sel.labels),
            "selection_neuron": interpret.neuron_statistics(sel.hidden, sel.labels)}
  tables = {g: {k: np.asarray(v) for k, v in t.items()} for g, t in tables.items()}
  # Steering's unit and the logit effects come from the selection users too, so that no
  # control depends on test users.
  typical = edits.typical_activation(sel.latents)
  sel_seqs = workdir_lib.selection_sequences(rec, config.interpret.selection_users, config.seed)
  arrays = rec_train.eval_arrays(rec.config, rec.model_cfg,
                                 EvalSet(sel_seqs, np.zeros(len(sel_seqs), np.int32)))
  logit_effect = effects.logit_effect(
      rec.params, rec.model_cfg, arrays.input_ids, arrays.valid, sae.layer,
      effects.decoder_directions_raw(sae.trained, typical), batch_size=rec.config.eval.batch_size)
  return workdir_lib.Statistics(
      tables=tables, typical_activation=typical,
      attribute_names=[str(n) for n in rec.dataset.attributes.names],
      latent_monosemanticity=heldout.monosemanticity(tables["latent"]["corr"]),
      neuron_monosemanticity=heldout.monosemanticity(tables["neuron"]["corr"]),
      logit_attribute_effect=effects.attribute_effect(
          logit_effect, rec.dataset.attributes.multi_hot).astype(np.float32),
      logit_effect=logit_effect.astype(np.float16),
      attribute_multi_hot=np.asarray(rec.dataset.attributes.multi_hot, bool))


def _results(config, rec, sae, test: _Positions, sel: _Positions, stats) -> tuple[dict, dict, dict]:
  """`(results, labels by latent, top examples)`."""
  cfg, names = config.interpret, stats.attribute_names
  latent_stats, neuron_stats = stats.tables["latent"], stats.tables["neuron"]
  labels = interpret.label_latents(latent_stats, names, min_corr=cfg.min_label_corr,
                                   min_auc=cfg.min_auc, min_precision=cfg.min_precision)
  labels = {int(j): v for j, v in labels.items()}
  top = interpret.top_examples(test.latents, test.acts.items, test.acts.users,
                               test.acts.positions, k=cfg.top_k)
  compared = heldout.compare(
      latent_selection=stats.tables["selection_latent"],
      neuron_selection=stats.tables["selection_neuron"], latents=test.latents,
      hidden=test.hidden, labels=test.labels, users=test.acts.users, attribute_names=names,
      neuron_thresholds=heldout.signed_thresholds(sel.hidden), num_samples=cfg.num_bootstrap,
      seed=config.seed)
  per_attribute = interpret.best_per_attribute(latent_stats, neuron_stats, names)
  results = {
      "label_position": cfg.label_position, "num_positions": int(len(test.acts)),
      "layer": sae.layer, "dict_size": int(test.latents.shape[1]),
      "attributes": per_attribute["attributes"], "mean": per_attribute["mean"],
      "num_labelled": len(labels),
      "num_monosemantic": int(sum(bool(v.get("monosemantic")) for v in labels.values())),
      "label_counts": interpret.label_counts(labels, names),
      "labels": {str(j): v for j, v in labels.items()},
      "top_examples": dashboards.top_examples_json(rec.dataset, test.acts, top, labels),
      "heldout": {"selection_users": int(len(np.unique(sel.acts.rows))),
                  "selection_positions": int(len(sel.acts)),
                  "test_users": int(len(np.unique(test.acts.users))), **compared},
      "monosemanticity": {
          "latent": heldout.distribution(
              stats.latent_monosemanticity[latent_stats["fire_rate"] > 0]),
          "dimension": heldout.distribution(stats.neuron_monosemanticity)},
  }
  return results, labels, top


def _log_summary(results: dict) -> None:
  mean = results["heldout"]["mean"]
  for statistic in ("auc", "corr", "f1"):
    if statistic in mean["latent"]:
      lat, dim, diff = (mean[f][statistic] for f in ("latent", "dimension", "difference"))
      logging.info("interpret (chosen on %d SAE users, measured on %d test users): mean best %s "
                   "latents %.3f [%.3f, %.3f] vs dimensions %.3f [%.3f, %.3f]; difference %.3f "
                   "[%.3f, %.3f]", results["heldout"]["selection_users"],
                   results["heldout"]["test_users"], statistic, lat["value"], *lat["ci"],
                   dim["value"], *dim["ci"], diff["value"], *diff["ci"])
  logging.info("interpret: %d of %d latents labelled (correlation >= threshold), %d monosemantic",
               results["num_labelled"], results["dict_size"], results["num_monosemantic"])
