"""The `interpret` stage: score SAE latents and raw hidden dimensions against item attributes.

Reads the recommender and SAE from the workdir and captures the SAE's layer at every real position
of the test users and of (at most `interpret.selection_users`) SAE users. Features are *chosen* on
the SAE users and *measured* on the test users (`heldout`), with user-bootstrap intervals. Writes
into `DIR/interpret/`:

* `results.json`: `label_position`, `num_positions`, `attributes` (per attribute name, on the
  test users alone: `best_latent`, `latent_auc`, `best_neuron`, `neuron_auc`, `latent_corr`,
  `neuron_corr`, `latent_precision`, `neuron_precision`), `mean` (those averaged over
  attributes), `labels` (per labelled latent id: `attribute`, `corr`, `f1`, `auc`, `precision`,
  `monosemantic`), `label_counts`, `top_examples` per labelled latent, `heldout` (per attribute
  and averaged: the best latent and the best signed dimension by AUC, correlation and F1 chosen
  on the SAE users, measured on the test users, with 95 % intervals; `difference` = latents minus
  dimensions) and `monosemanticity` (distribution summaries for latents and dimensions);
* `statistics.npz`: the `[M, G]` latent and `[2d, G]` signed-dimension statistics on the test
  users (`latent_*`, `neuron_*`) and on the SAE users (`selection_*`), each feature's
  monosemanticity, each latent's typical activation (mean when active, on the SAE users: the
  steering unit), its logit effect `[M, V]` and attribute effect `[M, G]` (`effects`);
* `dashboards.json`: per latent its label, firing rate, monosemanticity, activation histogram,
  top items and sequences, and the items and attributes its decoder direction promotes;
* `report.html` with its PNGs.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
from absl import logging

from seqrec_jax.sae import trained as sae_trained
from seqrec_jax.recommender import activations as acts_lib
from seqrec_jax import interpret
from seqrec_jax.recommender import stage as recommender_stage
from seqrec_jax.interpret import report
from seqrec_jax.sae import evaluation as sae_evaluation
from seqrec_jax.core import distributed, stage_record
from seqrec_jax.core.files import write_atomic, write_json
from seqrec_jax.data.containers import item_text
from seqrec_jax.data.splits import EvalSet, make_sequences
from seqrec_jax.interpret import effects, heldout
from seqrec_jax.recommender import input_pipeline

LABEL_POSITIONS = ("item", "next_item")
_OUTPUTS = ("results.json", "statistics.npz", "dashboards.json", "report.html")


def position_labels(dataset, acts: acts_lib.Activations, label_position: str):
  """`(labels[N, G] bool, keep[N] bool)`: attributes of the item at (or after) each position."""
  if label_position not in LABEL_POSITIONS:
    raise ValueError(f"label_position must be one of {LABEL_POSITIONS}, got {label_position!r}")
  items = acts.items if label_position == "item" else acts.next_items
  keep = items > 0
  return dataset.attributes.multi_hot[items], keep


def typical_activation(latents: np.ndarray) -> np.ndarray:
  """`[M]` mean of each latent where it fires (1 for latents that never fire): steering's unit."""
  fired = latents > 0
  counts = fired.sum(0)
  sums = np.where(fired, latents, 0).sum(0, dtype=np.float64)
  return np.where(counts > 0, sums / np.maximum(counts, 1), 1.0).astype(np.float32)




def _top_examples_json(dataset, acts, top, labels_by_latent, history: int = 5) -> dict:
  index = _history_index(acts)
  out = {}
  for latent in labels_by_latent:
    out[str(latent)] = {
        "items": [_item_json(dataset, int(i)) for i in top["top_items"][latent] if i > 0],
        "sequences": [_sequence_example(dataset, acts, index, int(r), history)
                      for r in top["top_rows"][latent] if r >= 0],
    }
  return out


def _history_index(acts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """`(order, rank, block_start)` `[N]` each, built once in O(N log N): `order` sorts the
  activations by sequence then position, `rank[i]` is activation i's place in that order and
  `block_start[k]` where the sequence of the k-th sorted activation begins."""
  order = np.lexsort((acts.positions, acts.rows))
  rank = np.empty_like(order)
  rank[order] = np.arange(len(order))
  sorted_rows = acts.rows[order]
  starts = np.flatnonzero(np.r_[True, sorted_rows[1:] != sorted_rows[:-1]])
  block_start = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
  return order, rank, block_start


def _sequence_example(dataset, acts, index, row: int, history: int) -> dict:
  """The user, position and the last few items up to that position of one activation row
  (`index` from `_history_index`: O(history) per example, not O(N))."""
  order, rank, block_start = index
  k = rank[row]
  items = acts.items[order[max(block_start[k], k - history + 1):k + 1]]
  return {"user": str(dataset.interactions.user_ids[acts.users[row]]),
          "position": int(acts.positions[row]),
          "items": [str(dataset.attributes.titles[i]) for i in items]}


def selection_sequences(split, max_users: int, seed: int):
  """The users features are chosen on: the SAE users (temporal), or every user's history without
  its last two items (leave-one-out: the validation and test targets are never read); at most
  `max_users` of them, drawn with `seed`."""
  seqs = split.sae
  if max_users and len(seqs) > max_users:
    keep = np.sort(np.random.default_rng(seed).choice(len(seqs), max_users, replace=False))
    seqs = make_sequences([seqs[i] for i in keep], seqs.users[keep])
  return seqs


def _labelled_activations(params, model_cfg, dataset, seqs, layer, label_position, batch_size):
  acts = acts_lib.capture_activations(params, model_cfg, seqs, layer, batch_size=batch_size)
  labels, keep = position_labels(dataset, acts, label_position)
  if not keep.all():
    acts = acts.subset(np.flatnonzero(keep))
    labels = labels[keep]
  return acts, labels


def _signed_thresholds(hidden: np.ndarray, fire_z: float = 1.0) -> np.ndarray:
  """`[2d]` firing thresholds of +x and -x (as `neuron_statistics`), from these positions."""
  mean = hidden.mean(0, dtype=np.float64)
  std = hidden.std(0, dtype=np.float64)
  return np.concatenate([mean + fire_z * std, -mean + fire_z * std])


def run(config, workdir: str | pathlib.Path) -> dict:
  """Runs the interpretation stage; returns (and writes) its results."""
  workdir = pathlib.Path(workdir)
  out_dir = workdir / "interpret"
  settings = stage_record.settings_of(config, ("interpret", "sae.subdir"))
  run = stage_record.begin("interpret", out_dir, workdir, settings,
                           upstream=[f"{config.sae.subdir}/{stage_record.RECORD}"],
                           outputs=_OUTPUTS, overwrite=bool(config.get("overwrite")))
  if run.results is not None:
    logging.info("interpret: %s already holds these results; --config.overwrite=true redoes them",
                 out_dir)
    return run.results
  rec_config, dataset, split, model_cfg, params = recommender_stage.load_trained(workdir)
  if dataset.attributes is None or not dataset.attributes.names:
    raise ValueError(f"dataset {dataset.name} has no item attributes to interpret latents with")
  trained = sae_trained.load_sae(workdir, config.sae.subdir)
  layer = sae_trained.sae_layer(workdir, config.sae.subdir)
  cfg = config.interpret
  batch_size = rec_config.eval.batch_size

  acts, labels = _labelled_activations(params, model_cfg, dataset, split.test_sequences, layer,
                                       cfg.label_position, batch_size)
  latents = sae_evaluation.latents(trained, acts)
  values = np.asarray(acts.values, np.float32)
  logging.info("interpret: %d test positions, %d latents, %d dimensions, %d attributes",
               len(acts), latents.shape[1], values.shape[1], labels.shape[1])
  latent_stats = interpret.attribute_statistics(latents, labels)
  neuron_stats = interpret.neuron_statistics(values, labels)
  names = list(dataset.attributes.names)
  per_attribute = interpret.best_per_attribute(latent_stats, neuron_stats, names)
  latent_labels = interpret.label_latents(latent_stats, names, min_corr=cfg.min_label_corr,
                                          min_auc=cfg.min_auc, min_precision=cfg.min_precision)
  top = interpret.top_examples(latents, acts.items, acts.users, acts.positions, k=cfg.top_k)

  # Choose on the selection users, measure on the test users.
  sel_seqs = selection_sequences(split, cfg.selection_users, config.seed)
  sel_acts, sel_labels = _labelled_activations(params, model_cfg, dataset, sel_seqs, layer,
                                               cfg.label_position, batch_size)
  sel_values = np.asarray(sel_acts.values, np.float32)
  sel_latents = sae_evaluation.latents(trained, sel_acts)
  sel_latent_stats = interpret.attribute_statistics(sel_latents, sel_labels)
  # Steering's unit comes from the selection users too, so that no control depends on test users.
  typical = typical_activation(sel_latents)
  sel_neuron_stats = interpret.neuron_statistics(sel_values, sel_labels)
  compared = heldout.compare(
      latent_selection=sel_latent_stats, neuron_selection=sel_neuron_stats, latents=latents,
      hidden=values, labels=labels, users=acts.users, attribute_names=names,
      neuron_thresholds=_signed_thresholds(sel_values), num_samples=cfg.num_bootstrap,
      seed=config.seed)
  latent_mono = heldout.monosemanticity(latent_stats["corr"])
  neuron_mono = heldout.monosemanticity(neuron_stats["corr"])

  # What each latent's decoder direction promotes, measured on the selection users.
  sel_eval = input_pipeline.make_eval_arrays(
      _eval_set_of(sel_seqs), kind=model_cfg.kind, max_len=model_cfg.max_len,
      batch_size=batch_size, mask_token=model_cfg.mask_token)
  directions = effects.decoder_directions_raw(trained, typical)
  logit_effect = effects.logit_effect(params, model_cfg, sel_eval.input_ids, sel_eval.valid,
                                      layer, directions, batch_size=batch_size)
  attribute_effect = effects.attribute_effect(logit_effect, dataset.attributes.multi_hot)

  arrays = {f"latent_{k}": v for k, v in latent_stats.items()}
  arrays.update({f"neuron_{k}": np.asarray(v) for k, v in neuron_stats.items()})
  arrays.update({f"selection_latent_{k}": v for k, v in sel_latent_stats.items()})
  arrays.update({f"selection_neuron_{k}": np.asarray(v) for k, v in sel_neuron_stats.items()})
  arrays.update(typical_activation=typical, attribute_names=np.asarray(names),
                latent_monosemanticity=latent_mono, neuron_monosemanticity=neuron_mono,
                logit_attribute_effect=attribute_effect.astype(np.float32),
                logit_effect=logit_effect.astype(np.float16))
  if distributed.is_main_process():
    write_atomic(out_dir / "statistics.npz", lambda f: np.savez(f, **arrays))

  labelled = {int(j): v for j, v in latent_labels.items()}
  results = {
      "label_position": cfg.label_position,
      "num_positions": int(len(acts)),
      "layer": layer,
      "dict_size": int(latents.shape[1]),
      "attributes": per_attribute["attributes"],
      "mean": per_attribute["mean"],
      "num_labelled": len(labelled),
      "num_monosemantic": int(sum(bool(v.get("monosemantic")) for v in labelled.values())),
      "label_counts": interpret.label_counts(labelled, names),
      "labels": {str(j): v for j, v in labelled.items()},
      "top_examples": _top_examples_json(dataset, acts, top, labelled),
      "heldout": {"selection_users": int(len(sel_seqs)), "selection_positions": int(len(sel_acts)),
                  "test_users": int(len(np.unique(acts.users))), **compared},
      "monosemanticity": {"latent": heldout.distribution(latent_mono[latent_stats["fire_rate"] > 0]),
                          "dimension": heldout.distribution(neuron_mono)},
  }
  dashboards = latent_dashboards(dataset, latents, latent_stats, latent_labels, latent_mono, top,
                                 acts, logit_effect, attribute_effect, names)
  if distributed.is_main_process():
    write_json(out_dir / "dashboards.json", dashboards)
  stage_record.finish(out_dir, run, results)
  if distributed.is_main_process():
    write_interpret_report(workdir)
  _log_summary(results)
  return results


def _eval_set_of(seqs):
  # Scores are read after each whole sequence; the target is never used.
  return EvalSet(seqs, np.zeros(len(seqs), np.int32))


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


def latent_dashboards(dataset, latents, stats, labels, mono, top, acts, logit_effect,
                      attribute_effect, names, *, num_bins: int = 20, history: int = 5) -> dict:
  """Per latent (keyed by its id): label, firing rate, monosemanticity, top items and sequences, a histogram of its
  positive activations, and its logit effect (the items and attributes it promotes)."""
  index = _history_index(acts)
  # One sort over all latents: the 10 items each promotes most (item 0 pads) and its attributes
  # by effect.
  promoted_items = np.argsort(-logit_effect[:, 1:], axis=1, kind="stable")[:, :10] + 1
  attributes_by_effect = np.argsort(-np.nan_to_num(attribute_effect, nan=-np.inf), axis=1,
                                    kind="stable")
  out = {}
  for j in range(latents.shape[1]):
    column = latents[:, j]
    positive = column[column > 0]
    counts, edges = np.histogram(positive, bins=num_bins) if len(positive) else ([], [])
    promoted, by_effect = promoted_items[j], attributes_by_effect[j]
    label = labels.get(j)
    out[str(j)] = {
        "latent": j,
        "label": label["attribute"] if label else None,
        "label_corr": label["corr"] if label else None,
        "fire_rate": float(stats["fire_rate"][j]),
        "monosemanticity": None if np.isnan(mono[j]) else float(mono[j]),
        "best_auc_attribute": (names[int(np.nanargmax(stats["auc"][j]))]
                               if np.isfinite(stats["auc"][j]).any() else None),
        "histogram": {"edges": [float(x) for x in edges], "counts": [int(c) for c in counts]},
        "top_items": [_item_json(dataset, int(i)) for i in top["top_items"][j] if i > 0],
        "top_sequences": [_sequence_example(dataset, acts, index, int(r), history)
                          for r in top["top_rows"][j] if r >= 0],
        "logit_effect": {
            "items": [{**_item_json(dataset, int(i)), "effect": float(logit_effect[j, i])}
                      for i in promoted],
            "attributes": [{"attribute": names[g], "effect": float(attribute_effect[j, g])}
                           for g in by_effect[:5] if np.isfinite(attribute_effect[j, g])],
        },
    }
  return {"num_latents": int(latents.shape[1]), "latents": out}


def _item_json(dataset, item: int) -> dict:
  title, attributes = item_text(dataset, item)
  return {"item": item, "title": title, "attributes": attributes}


def write_interpret_report(workdir: str | pathlib.Path, extra_figures=None) -> pathlib.Path:
  """(Re)writes `DIR/interpret/report.html` from the stage's saved outputs (plus extra figures)."""
  out_dir = pathlib.Path(workdir) / "interpret"
  results = json.loads((out_dir / "results.json").read_text())
  stats = np.load(out_dir / "statistics.npz")
  names = [str(n) for n in stats["attribute_names"]]
  labels = {int(j): v for j, v in results["labels"].items()}
  top_items = {int(j): [(x["title"], x["attributes"]) for x in ex["items"]]
               for j, ex in results["top_examples"].items()}
  return report.write_report(
      out_dir, attribute_names=names,
      per_attribute={"attributes": results["attributes"], "mean": results["mean"]},
      latent_auc=stats["latent_auc"], fire_rate=stats["latent_fire_rate"], labels=labels,
      top_items=top_items, extra_figures=extra_figures, heldout=results.get("heldout"),
      monosemanticity=((stats["latent_monosemanticity"], stats["neuron_monosemanticity"])
                       if "latent_monosemanticity" in stats else None),
      label_counts=results.get("label_counts"),
  )
