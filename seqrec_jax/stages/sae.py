"""The `train_sae` stage: an SAE on one layer of the recommender trained in a workdir.

1. captures `config.sae.layer` at every real position of the SAE users' sequences (`split.sae`;
   the last `max_len` items of each) and holds out `config.sae.val_fraction` of those users;
2. fits the normaliser on the training activations and trains the SAE (`sae.train.fit`): Adam
   with linear warm-up and final decay, orbax checkpoints under `DIR/<subdir>/checkpoints`,
   resumed automatically; progress lines and `DIR/<subdir>/metrics.jsonl`;
3. scores it on the test users' activations: explained variance, MSE, L0, dead and dense
   fractions, and the recommender's test NDCG / HR with the layer's output replaced by the
   reconstruction ("spliced"), beside the original and zero-ablation;
4. writes `DIR/<subdir>/results.json` and the SAE (`workdir.load_sae` reads it back).

The stage record covers the seed, the shared `sae` fields and the active variant's own fields
only (`sae.variants.fingerprint_fields`), so another variant's settings never refuse this SAE.
"""

from __future__ import annotations

import pathlib
import time

import ml_collections
from absl import logging

from seqrec_jax import workdir as workdir_lib
from seqrec_jax.core import stage_record
from seqrec_jax.recommender import activations as acts_lib
from seqrec_jax.recommender import train as rec_train
from seqrec_jax.sae import evaluation, train, variants

# Config fields that change how the stage runs or logs, not its results.
_NOT_RESULTS = ("sae.subdir", "sae.log_every_steps", "sae.capture_batch_size", "sae.memory_budget_mb")
_OUTPUTS = ("checkpoints", "checkpoints.unreadable", "model", "activations", "results.json",
            "metrics.jsonl", "tensorboard", "config.json", "sae_config.json")


def settings(config: ml_collections.ConfigDict) -> dict:
  """The fields the SAE's results depend on: the seed, shared and active-variant `sae` fields."""
  fields = ("seed", *variants.fingerprint_fields(config.sae))
  return stage_record.settings_of(config, fields, exclude=_NOT_RESULTS)


def run(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict:
  """Trains and scores the SAE described by `config.sae` on the recommender in `workdir`."""
  layout = workdir_lib.Layout.of(workdir, config)
  s = config.sae
  hparams = settings(config)
  run_ = stage_record.begin("train_sae", layout.sae, layout.root, hparams,
                            upstream=[layout.recommender_record], outputs=_OUTPUTS,
                            overwrite=bool(config.get("overwrite")),
                            other_ways="another --workdir or --config.sae.subdir")
  if run_.results is not None:  # finished with these settings: skipped
    return run_.results
  rec = workdir_lib.load_recommender(layout)
  layer = acts_lib.check_layer(rec.model_cfg, s.layer)
  capture = dict(batch_size=s.capture_batch_size, memory_budget_mb=s.memory_budget_mb,
                 out_dir=layout.sae_activations)
  t0 = time.perf_counter()
  data = train.split_by_sequence(workdir_lib.captured(rec, layer, "sae", **capture),
                                 s.val_fraction, config.seed)
  logging.info("train_sae: %s activations of %d SAE users in %.1fs: %d train, %d validation",
               layer, len(rec.split.sae), time.perf_counter() - t0, len(data.train_rows),
               len(data.val_rows))
  cfg, variables, norm = train.init_sae(config, data, rec.model_cfg.hidden_dim)
  workdir_lib.save_sae_config(layout, config)
  workdir_lib.save_sae_meta(layout, cfg, layer, s.normalization)
  trained, progress, num_devices, dead_window = train.fit(config, cfg, variables, norm, data,
                                                          layout.sae, hparams)
  workdir_lib.save_sae(layout, progress.step, trained, layer, s.normalization)
  test_acts = workdir_lib.captured(rec, layer, "test", **capture)
  scores = evaluation.score(
      trained, rec.params, rec.model_cfg,
      rec_train.eval_arrays(rec.config, rec.model_cfg, rec.split.test), test_acts.values,
      layer=layer, eval_config=rec.config.eval, dense_threshold=s.dense_threshold)
  results = {
      "variant": cfg.variant, "layer": layer, "dict_size": cfg.dict_size,
      "input_dim": cfg.input_dim, **variants.reported(cfg), "normalization": s.normalization,
      **scores,
      "validation": evaluation.quality_json(trained, data.val_values, s.dense_threshold),
      "num_test_activations": len(test_acts), "num_test_users": len(rec.split.test),
      "dead_fraction_train_window": dead_window, "num_train_activations": len(data.train_rows),
      "num_val_activations": len(data.val_rows), "steps": progress.step,
      "resampled_latents": progress.resampled, "train_seconds": progress.train_seconds,
      "parallel": config.parallel, "num_devices": num_devices, "seed": config.seed,
      "protocol": rec.split.protocol, "filter_seen": bool(rec.config.eval.filter_seen),
  }
  results = stage_record.finish(layout.sae, run_, results)
  workdir_lib.remember_sae(layout, workdir_lib.SAE(trained, layer, s.normalization, results,
                                                   run_.record["run_id"]))
  return results
