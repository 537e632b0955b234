"""The `train_recommender` stage: train and evaluate a sequential recommender in `DIR`.

Writes `stage.json` (the stage record), `config.json`, `metrics.jsonl`, `tensorboard/`,
`results.json` and orbax checkpoints under `checkpoints/` (the newest two, resumed automatically,
and the one of best validation NDCG@10, used for the test numbers).
"""

from __future__ import annotations

import pathlib

import ml_collections
from absl import logging

from seqrec_jax import workdir as workdir_lib
from seqrec_jax.core import stage_record
from seqrec_jax.recommender import train

# Config fields that change how a run is logged or laid out, not its results.
_NOT_RESULTS = ("train.log_every_steps",)
_OUTPUTS = ("checkpoints", "checkpoints.unreadable", "results.json", "metrics.jsonl", "tensorboard")


def run(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict:
  """Trains the recommender described by `config` in `workdir`; returns its results.

  A finished run of the same settings is skipped; an unfinished one resumes from its latest
  checkpoint; a workdir holding a run of other settings is refused (`stage_record`).
  """
  layout = workdir_lib.Layout.of(workdir, config)
  settings = stage_record.settings_of(config, ("seed", "data", "model", "train", "eval"),
                                      exclude=_NOT_RESULTS)
  run_ = stage_record.begin("train_recommender", layout.recommender, layout.root, settings,
                            outputs=_OUTPUTS, overwrite=bool(config.get("overwrite")),
                            extendable=("train.max_steps", "train.num_epochs"))
  if run_.results is not None:  # finished with these settings: skipped
    return run_.results
  workdir_lib.save_recommender_config(layout, config)
  dataset, split = train.load_data(config)
  model_cfg = train.model_config(config, dataset.interactions.num_items)
  logging.info("data %s (%s): %d users, %d items, %d train sequences, %d val, %d test",
               dataset.name, split.protocol, dataset.interactions.num_users,
               dataset.interactions.num_items - 1, len(split.train), len(split.val),
               len(split.test))
  params, progress = train.fit(config, split, model_cfg, layout.recommender, settings)
  val = train.evaluate(config, model_cfg, train.eval_arrays(config, model_cfg, split.val), params)
  test = train.evaluate(config, model_cfg, train.eval_arrays(config, model_cfg, split.test), params)
  results = {
      "dataset": dataset.name, "model": model_cfg.kind, "protocol": split.protocol,
      "filter_seen": bool(config.eval.filter_seen),
      "num_users": int(dataset.interactions.num_users),
      "num_items": int(dataset.interactions.num_items - 1),
      "num_train_sequences": len(split.train), "num_val_users": len(split.val),
      "num_test_users": len(split.test), "steps": progress.step, "best_step": progress.best_step,
      "train_seconds": progress.train_seconds, "seed": config.seed, "val": val, "test": test,
  }
  logging.info("test %s", {k: round(v, 4) for k, v in test.items()})
  results = stage_record.finish(layout.recommender, run_, results)
  workdir_lib.remember_recommender(layout, workdir_lib.Recommender(
      config, dataset, split, model_cfg, params, results, run_.record["run_id"]))
  return results
