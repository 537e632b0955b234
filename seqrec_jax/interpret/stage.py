"""The `interpret` stage: score SAE latents and raw hidden dimensions against item attributes.

Reads the recommender and SAE from the workdir, captures the SAE's layer at every real position of
the test users, and writes into `DIR/interpret/`:

* `results.json`: `label_position`, `num_positions`, `attributes` (per attribute name:
  `best_latent`, `latent_auc`, `best_neuron`, `neuron_auc`, `latent_corr`, `neuron_corr`,
  `latent_precision`, `neuron_precision`), `mean` (those averaged over attributes), `labels` (per
  latent id: `attribute`, `auc`, `precision`, `monosemantic`), and `top_examples` per labelled
  latent;
* `statistics.npz`: the full `[M, G]` latent statistics, `[2d, G]` signed-dimension statistics,
  and each latent's typical activation (mean when active), used by steering;
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
from seqrec_jax.core.files import write_atomic
from seqrec_jax.data.containers import item_text

LABEL_POSITIONS = ("item", "next_item")
_OUTPUTS = ("results.json", "statistics.npz", "report.html")


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
    items = [int(i) for i in top["top_items"][latent] if i > 0]
    rows = [int(r) for r in top["top_rows"][latent] if r >= 0]
    out[str(latent)] = {
        "items": [{"item": i, "title": item_text(dataset, i)[0],
                   "attributes": item_text(dataset, i)[1]} for i in items],
        "sequences": [_sequence_example(dataset, acts, index, r, history) for r in rows],
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
  label_position = config.interpret.label_position

  acts = acts_lib.capture_activations(params, model_cfg, split.test_sequences, layer,
                                      batch_size=rec_config.eval.batch_size)
  labels, keep = position_labels(dataset, acts, label_position)
  if not keep.all():
    acts = acts.subset(np.flatnonzero(keep))
    labels = labels[keep]
  latents = sae_evaluation.latents(trained, acts)
  values = np.asarray(acts.values, np.float32)
  logging.info("interpret: %d positions, %d latents, %d dimensions, %d attributes",
               len(acts), latents.shape[1], values.shape[1], labels.shape[1])

  latent_stats = interpret.attribute_statistics(latents, labels)
  neuron_stats = interpret.neuron_statistics(values, labels)
  names = list(dataset.attributes.names)
  per_attribute = interpret.best_per_attribute(latent_stats, neuron_stats, names)
  latent_labels = interpret.label_latents(latent_stats, names,
                                          min_auc=config.interpret.min_auc,
                                          min_precision=config.interpret.min_precision)
  top = interpret.top_examples(latents, acts.items, acts.users, acts.positions,
                               k=config.interpret.top_k)
  typical = typical_activation(latents)

  arrays = {f"latent_{k}": v for k, v in latent_stats.items()}
  arrays.update({f"neuron_{k}": np.asarray(v) for k, v in neuron_stats.items()})
  arrays["typical_activation"] = typical
  arrays["attribute_names"] = np.asarray(names)
  if distributed.is_main_process():
    write_atomic(out_dir / "statistics.npz", lambda f: np.savez(f, **arrays))

  labelled = {int(j): v for j, v in latent_labels.items()}
  results = {
      "label_position": label_position,
      "num_positions": int(len(acts)),
      "layer": layer,
      "dict_size": int(latents.shape[1]),
      "attributes": per_attribute["attributes"],
      "mean": per_attribute["mean"],
      "num_labelled": len(labelled),
      "num_monosemantic": int(sum(bool(v.get("monosemantic")) for v in labelled.values())),
      "labels": {str(j): v for j, v in labelled.items()},
      "top_examples": _top_examples_json(dataset, acts, top, labelled),
  }
  stage_record.finish(out_dir, run, results)
  if distributed.is_main_process():
    write_interpret_report(workdir)
  m = results["mean"]
  logging.info("interpret: mean best AUC latents %.3f vs dimensions %.3f; corr %.3f vs %.3f",
               m.get("latent_auc", float("nan")), m.get("neuron_auc", float("nan")),
               m.get("latent_corr", float("nan")), m.get("neuron_corr", float("nan")))
  return results


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
      top_items=top_items, extra_figures=extra_figures,
  )
