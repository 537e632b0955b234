"""The `train_sae` stage: an SAE on one layer of the recommender trained in a workdir.

`train_sae(config, workdir)`:

1. loads the recommender (`recommender_stage.load_trained`), captures `config.sae.layer` at every real
   position of the SAE users' sequences (`split.sae`; the last `max_len` items of each) and holds
   out `config.sae.val_fraction` of those users for validation;
2. fits the normaliser on the training activations and trains the SAE with the shared
   `training.train_step` in the config's compilation mode (`config.parallel`), Adam with linear
   warm-up and final decay, batches drawn from a fresh deterministic permutation every epoch;
   orbax checkpoints (parameters, optimiser state, normaliser, dead-latent counters, batchtopk
   threshold, the SAE config and progress) under `DIR/<subdir>/checkpoints`, resumed
   automatically; progress lines and `DIR/<subdir>/metrics.jsonl`;
3. scores the SAE on the test users' activations (`split.test_sequences`): explained variance,
   MSE, L0, dead and dense fractions, and the recommender's test NDCG / HR with the layer's output
   replaced by the reconstruction at every position ("spliced"), next to the original and to
   zero-ablation, plus the fraction of next-item cross-entropy recovered;
4. writes `DIR/<subdir>/results.json` and the trained SAE to `DIR/<subdir>/model` (read back by
   `load_sae`). `<subdir>` is `config.sae.subdir` (default `sae`).

The stage record (`core.stage_record`) skips a finished SAE of the same settings, resumes an
unfinished one and refuses one of other settings (or redoes it with `config.overwrite`).
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from seqrec_jax.recommender import activations as acts_lib
from seqrec_jax.recommender import input_pipeline
from seqrec_jax.recommender import stage as recommender_stage
from seqrec_jax import sae
from seqrec_jax.core import training
from seqrec_jax.core.checkpoints import Checkpointer
from seqrec_jax.core import distributed, loop, stage_record
from seqrec_jax.core.files import write_json
from seqrec_jax.core.metric_writer import MetricWriter
from seqrec_jax.sae.batches import ActivationBatches
from seqrec_jax.sae.evaluation import spliced_evaluation
from seqrec_jax.sae.trained import save_sae


RESAMPLED_VARIANTS = ("relu_l1", "jumprelu", "gated")


def sae_config(s: ml_collections.ConfigDict, input_dim: int, dead_tokens: int) -> sae.SAEConfig:
  """`SAEConfig` from the `config.sae` block."""
  return sae.SAEConfig(
      variant=s.variant, input_dim=input_dim, dict_size=s.dict_size, k=s.k, k_aux=s.k_aux,
      aux_coeff=float(s.aux_coeff), l1_coeff=float(s.l1_coeff), l0_coeff=float(s.l0_coeff),
      bandwidth=float(s.bandwidth), init_threshold=float(s.init_threshold),
      threshold_momentum=float(s.threshold_momentum), dead_tokens=int(dead_tokens),
  )


def make_optimizer(s: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
  """Adam; learning rate warms up linearly, stays, then decays linearly to 0."""
  lr = s.learning_rate
  warm = min(int(s.warmup_steps), total_steps)
  decay = min(int(s.decay_fraction * total_steps), total_steps - warm)
  flat = total_steps - warm - decay
  schedule = optax.join_schedules(
      [optax.linear_schedule(0.0, lr, max(warm, 1)), optax.constant_schedule(lr),
       optax.linear_schedule(lr, 0.0, max(decay, 1))],
      boundaries=[warm, warm + flat],
  )
  tx = optax.adam(schedule)
  if s.get("grad_clip_norm"):
    tx = optax.chain(optax.clip_by_global_norm(s.grad_clip_norm), tx)
  return tx


@dataclasses.dataclass
class Progress:
  step: int = 0
  train_seconds: float = 0.0
  resampled: int = 0  # latents resampled so far
  done: bool = False


def _split_by_sequence(acts: acts_lib.Activations, fraction: float, seed: int):
  """Row indices `(train, val)`: all positions of a random `fraction` of sequences go to val."""
  num_seqs = int(acts.rows.max()) + 1 if len(acts) else 0
  num_val = int(round(fraction * num_seqs))
  if fraction > 0 and num_seqs > 1:
    num_val = min(max(num_val, 1), num_seqs - 1)
  held = np.zeros(num_seqs, bool)
  held[np.random.default_rng([seed, 1]).permutation(num_seqs)[:num_val]] = True
  is_val = held[acts.rows]
  return np.flatnonzero(~is_val), np.flatnonzero(is_val)


# Config fields that change how the stage runs or logs, not its results.
_NOT_RESULTS = ("sae.subdir", "sae.log_every_steps", "sae.capture_batch_size", "sae.memory_budget_mb")
_OUTPUTS = ("checkpoints", "checkpoints.unreadable", "model", "activations", "results.json",
            "metrics.jsonl", "tensorboard", "config.json", "sae_config.json")


@dataclasses.dataclass
class _Data:
  """The SAE users' activations split into training and validation rows."""

  acts: acts_lib.Activations
  train_rows: np.ndarray
  val_rows: np.ndarray
  val_values: np.ndarray  # [len(val_rows), d] float32, read once


def train_sae(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict:
  """Train and score the SAE described by `config.sae` on the recommender in `workdir`."""
  workdir = pathlib.Path(workdir)
  s = config.sae
  out_dir = workdir / s.subdir
  settings = stage_record.settings_of(config, ("seed", "sae"), exclude=_NOT_RESULTS)
  run = stage_record.begin("train_sae", out_dir, workdir, settings,
                           upstream=[stage_record.RECORD], outputs=_OUTPUTS,
                           overwrite=bool(config.get("overwrite")),
                           other_ways="another --workdir or --config.sae.subdir")
  if run.results is not None:
    logging.info("train_sae: %s already holds this SAE; --config.overwrite=true redoes it", out_dir)
    return run.results
  if distributed.is_main_process():
    write_json(out_dir / "config.json", {"seed": config.seed, "sae": s.to_dict()})

  rec_config, _, split, model_cfg, rec_params = recommender_stage.load_trained(workdir)
  layer = acts_lib.check_layer(model_cfg, s.layer)
  data = _capture_training_data(config, rec_params, model_cfg, split, layer, out_dir)
  norm = sae.fit_normalizer(data.acts.values, s.normalization, rows=data.train_rows)
  cfg = sae_config(s, model_cfg.hidden_dim, int(s.dead_window_tokens) or len(data.train_rows))
  sample_rng = np.random.default_rng([config.seed, 2])
  sample = np.sort(sample_rng.choice(data.train_rows, min(8192, len(data.train_rows)), replace=False))
  variables = sae.init_variables(
      cfg, jax.random.PRNGKey(config.seed),
      np.asarray(norm.normalize(np.asarray(data.acts.values[sample]))), s.decoder_bias_init)
  if distributed.is_main_process():
    write_json(out_dir / "sae_config.json", {"sae_config": cfg.to_dict(), "layer": layer,
                                             "normalization": s.normalization})

  trained, progress, num_devices, dead_window = _train(config, cfg, variables, norm, data, out_dir, settings)
  save_sae(out_dir / "model", progress.step, trained, layer, s.normalization)
  results = _score(config, rec_config, rec_params, model_cfg, split, layer, trained, data, out_dir)
  results.update(
      dead_fraction_train_window=dead_window, num_train_activations=len(data.train_rows), num_val_activations=len(data.val_rows),
      steps=progress.step, resampled_latents=progress.resampled,
      train_seconds=progress.train_seconds, parallel=config.parallel, num_devices=num_devices,
      seed=config.seed, protocol=split.protocol, filter_seen=bool(rec_config.eval.filter_seen))
  return stage_record.finish(out_dir, run, results)


def _capture_training_data(config, rec_params, model_cfg, split, layer, out_dir) -> _Data:
  s = config.sae
  t0 = time.perf_counter()
  acts = acts_lib.capture_activations(
      rec_params, model_cfg, split.sae, layer, batch_size=s.capture_batch_size,
      memory_budget_bytes=int(s.memory_budget_mb) << 20, out_dir=out_dir / "activations" / "sae")
  train_rows, val_rows = _split_by_sequence(acts, s.val_fraction, config.seed)
  logging.info("train_sae: %s activations of %d SAE users in %.1fs: %d train, %d validation",
               layer, len(np.unique(acts.users)), time.perf_counter() - t0, len(train_rows),
               len(val_rows))
  return _Data(acts, train_rows, val_rows, np.asarray(acts.values[val_rows], np.float32))


def _train(config, cfg: sae.SAEConfig, variables, norm, data: _Data, out_dir, settings):
  """Runs (or resumes) the training loop.

  Returns `(TrainedSAE, Progress, num_devices, dead fraction over the last training window)`.
  """
  s = config.sae
  batches = ActivationBatches(data.acts.values, data.train_rows, s.batch_size, config.seed)
  total_steps = s.num_epochs * batches.steps_per_epoch
  if s.get("max_steps"):
    total_steps = min(total_steps, s.max_steps)
  total_steps = max(total_steps, 1)
  tx = make_optimizer(s, total_steps)
  parallel = training.Parallel(config.parallel)
  step_fn = parallel.compile(sae.make_step_fns(cfg, tx))
  state = sae.create_train_state(cfg, variables, norm, tx, config.seed)
  ckpt = Checkpointer(out_dir / "checkpoints", max_to_keep=2)
  progress = Progress()
  if ckpt.latest_step() is not None:
    state, extra, _ = ckpt.restore_newest_valid(state)
    progress = Progress(**extra["progress"])
    logging.info("train_sae: resumed from %s at step %d", ckpt.directory, progress.step)
  cadence = loop.Cadence(total_steps=total_steps, log_every=s.log_every_steps,
                         eval_every=s.eval_every_steps or max(total_steps // 10, 1),
                         examples_per_step=s.batch_size, unit="act", name="sae step")
  logging.info("train_sae: %s SAE, %d latents, %d steps (%d per epoch, batch %d) on %d device(s), "
               "mode %s", cfg.variant, cfg.dict_size, total_steps, batches.steps_per_epoch,
               s.batch_size, parallel.num_devices, parallel.mode)
  writer = MetricWriter(out_dir)
  if progress.step == 0:
    writer.write_hparams(settings)
  val_values = data.val_values
  resample_every = s.resample_every_steps if cfg.variant in RESAMPLED_VARIANTS else 0
  resample_until = int(s.resample_stop_fraction * total_steps)

  def resample(step, device_state):
    if not resample_every or step % resample_every or step > resample_until:
      return None
    rng = np.random.default_rng([config.seed, 3, step])
    pick = np.sort(rng.choice(data.train_rows, min(s.resample_sample_size, len(data.train_rows)),
                              replace=False))
    new_state, count = sae.resample_dead(
        parallel.host_state(device_state), jnp.asarray(data.acts.values[pick]),
        jax.random.fold_in(jax.random.PRNGKey(config.seed), step), config=cfg)
    count = int(count)
    if not count:
      return None
    progress.resampled += count
    logging.info("sae step %d: resampled %d dead latents", step, count)
    return jax.device_get(new_state)  # the same on every process

  def on_boundary(host_state):
    trained = sae.trained_sae_from_state(cfg, host_state)
    val = {}
    if len(val_values):
      q = sae.evaluate_quality(trained, val_values, dense_threshold=s.dense_threshold)
      val = {"explained_variance": q.explained_variance, "mse": q.mse, "l0": q.l0,
             "dead_fraction": q.dead_fraction}
    dead_train = float(np.mean(np.asarray(sae.dead_mask(cfg, host_state.model_state))))
    logging.info("sae step %d  val %s  dead (train window) %.3f", progress.step,
                 {k: round(v, 4) for k, v in val.items()}, dead_train)
    writer.write(progress.step, "val", {**val, "dead_fraction_train": dead_train})
    ckpt.save(progress.step, host_state, {"progress": dataclasses.asdict(progress),
                                          "sae_config": cfg.to_dict()})

  final = loop.train_loop(state, step_fn=step_fn, parallel=parallel,
                          next_batch=lambda step: batches.batch(step), progress=progress,
                          cadence=cadence, writer=writer, on_boundary=on_boundary,
                          after_step=resample)
  writer.close()
  ckpt.close()
  dead_window = float(np.mean(np.asarray(sae.dead_mask(cfg, final.model_state))))
  return sae.trained_sae_from_state(cfg, final), progress, parallel.num_devices, dead_window


def _score(config, rec_config, rec_params, model_cfg, split, layer, trained, data: _Data,
           out_dir) -> dict:
  """Quality on the test users' activations and the recommender with the SAE spliced in."""
  s = config.sae
  cfg = trained.config
  test_acts = acts_lib.capture_activations(
      rec_params, model_cfg, split.test_sequences, layer, batch_size=s.capture_batch_size,
      memory_budget_bytes=int(s.memory_budget_mb) << 20, out_dir=out_dir / "activations" / "test")
  quality = sae.evaluate_quality(trained, test_acts.values, dense_threshold=s.dense_threshold)
  e = rec_config.eval
  eval_arrays = input_pipeline.make_eval_arrays(
      split.test, kind=model_cfg.kind, max_len=model_cfg.max_len, batch_size=e.batch_size,
      mask_token=model_cfg.mask_token)
  spliced = spliced_evaluation(rec_params, model_cfg, eval_arrays, trained, layer,
                               batch_size=e.batch_size, k=e.k, filter_seen=e.filter_seen)
  val_values = data.val_values
  val_quality = sae.evaluate_quality(trained, val_values, dense_threshold=s.dense_threshold) \
      if len(val_values) else None
  logging.info("train_sae: EV %.4f  MSE %.5f  L0 %.1f  dead %.3f  dense %.3f  NDCG@%d original "
               "%.4f spliced %.4f zero %.4f  loss recovered %.3f", quality.explained_variance,
               quality.mse, quality.l0, quality.dead_fraction, quality.dense_fraction, e.k,
               spliced["original"][f"ndcg@{e.k}"], spliced["spliced"][f"ndcg@{e.k}"],
               spliced["zero_ablated"][f"ndcg@{e.k}"], spliced["loss_recovered"])
  return {
      "variant": cfg.variant,
      "layer": layer,
      "dict_size": cfg.dict_size,
      "input_dim": cfg.input_dim,
      "k": cfg.k if cfg.variant in ("topk", "batchtopk") else None,
      "normalization": s.normalization,
      "explained_variance": quality.explained_variance,
      "mse": quality.mse,
      "l0": quality.l0,
      "dead_fraction": quality.dead_fraction,
      "dense_fraction": quality.dense_fraction,
      "dense_threshold": s.dense_threshold,
      "original": spliced["original"],
      "spliced": spliced["spliced"],
      "zero_ablated": spliced["zero_ablated"],
      "loss_recovered": spliced["loss_recovered"],
      "ndcg_retained": spliced["ndcg_retained"],
      "validation": None if val_quality is None else {
          "explained_variance": val_quality.explained_variance, "mse": val_quality.mse,
          "l0": val_quality.l0, "dead_fraction": val_quality.dead_fraction},
      "num_test_activations": len(test_acts),
      "num_test_users": len(split.test),
  }
