"""Training an SAE on captured activations: optimiser, batches, resampling, checkpoints.

Library functions of the `train_sae` stage (`seqrec_jax.stages.sae`): `split_by_sequence` holds
out whole sequences for validation, `init_sae` fits the normaliser and initialises the variables,
`fit` runs (or resumes) the training loop with orbax checkpoints under a directory.
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from seqrec_jax import sae
from seqrec_jax.core import loop, training
from seqrec_jax.core.checkpoints import Checkpointer
from seqrec_jax.core.metric_writer import MetricWriter
from seqrec_jax.recommender import activations as acts_lib
from seqrec_jax.sae import variants
from seqrec_jax.sae.batches import ActivationBatches


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


@dataclasses.dataclass
class TrainingData:
  """The SAE users' activations split into training and validation rows."""

  acts: acts_lib.Activations
  train_rows: np.ndarray
  val_rows: np.ndarray
  val_values: np.ndarray  # [len(val_rows), d] float32, read once


def split_by_sequence(acts: acts_lib.Activations, fraction: float, seed: int) -> TrainingData:
  """All positions of a random `fraction` of the sequences go to validation."""
  num_seqs = int(acts.rows.max()) + 1 if len(acts) else 0
  num_val = int(round(fraction * num_seqs))
  if fraction > 0 and num_seqs > 1:
    num_val = min(max(num_val, 1), num_seqs - 1)
  held = np.zeros(num_seqs, bool)
  held[np.random.default_rng([seed, 1]).permutation(num_seqs)[:num_val]] = True
  is_val = held[acts.rows]
  train_rows, val_rows = np.flatnonzero(~is_val), np.flatnonzero(is_val)
  return TrainingData(acts, train_rows, val_rows, np.asarray(acts.values[val_rows], np.float32))


def init_sae(config, data: TrainingData, input_dim: int):
  """`(SAEConfig, variables, normaliser)`: the normaliser fitted on the training rows, the
  decoder bias on a sample of them."""
  s = config.sae
  norm = sae.fit_normalizer(data.acts.values, s.normalization, rows=data.train_rows)
  cfg = variants.sae_config_from(s, input_dim, int(s.dead_window_tokens) or len(data.train_rows))
  rng = np.random.default_rng([config.seed, 2])
  sample = np.sort(rng.choice(data.train_rows, min(8192, len(data.train_rows)), replace=False))
  variables = sae.init_variables(
      cfg, jax.random.PRNGKey(config.seed),
      np.asarray(norm.normalize(np.asarray(data.acts.values[sample]))), s.decoder_bias_init)
  return cfg, variables, norm


def fit(config, cfg: sae.SAEConfig, variables, norm, data: TrainingData, out_dir: pathlib.Path,
        hparams: dict):
  """Runs (or resumes) the training loop; checkpoints under `out_dir/checkpoints`.

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
    writer.write_hparams(hparams)
  resample = _resampler(config, cfg, data, parallel, progress, total_steps)

  def on_boundary(host_state):
    val = _validate(cfg, host_state, data.val_values, s.dense_threshold, progress.step)
    writer.write(progress.step, "val", val)
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


def _validate(cfg, host_state, val_values, dense_threshold: float, step: int) -> dict:
  """Validation quality and the training window's dead fraction (logged and returned)."""
  trained = sae.trained_sae_from_state(cfg, host_state)
  val = {}
  if len(val_values):
    q = sae.evaluate_quality(trained, val_values, dense_threshold=dense_threshold)
    val = {"explained_variance": q.explained_variance, "mse": q.mse, "l0": q.l0,
           "dead_fraction": q.dead_fraction}
  dead_train = float(np.mean(np.asarray(sae.dead_mask(cfg, host_state.model_state))))
  logging.info("sae step %d  val %s  dead (train window) %.3f", step,
               {k: round(v, 4) for k, v in val.items()}, dead_train)
  return {**val, "dead_fraction_train": dead_train}


def _resampler(config, cfg, data: TrainingData, parallel, progress: Progress, total_steps: int):
  """`after_step(step, device_state)` resampling dead latents on the variant's schedule."""
  s = config.sae
  every = s.resample_every_steps if variants.resamples(cfg.variant) else 0
  until = int(s.resample_stop_fraction * total_steps)

  def resample(step, device_state):
    if not every or step % every or step > until:
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

  return resample
