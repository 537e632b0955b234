"""The `train_sae` stage: an SAE on one layer of the recommender trained in a workdir.

`train_sae(config, workdir)`:

1. loads the recommender (`recommender.load_trained`), captures `config.sae.layer` at every real
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

A second run returns the existing results unless `config.overwrite` is set.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
import shutil
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from seqrec_jax import activations as acts_lib
from seqrec_jax import hooks, input_pipeline, recommender, sae, training
from seqrec_jax.checkpoints import Checkpointer
from seqrec_jax.io_utils import append_jsonl, write_json

# Variants whose dead latents are resampled; topk and batchtopk are revived through AuxK.
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


class ActivationBatches:
  """Deterministic batches of rows of `values[N, d]` restricted to `rows`.

  Step t reads batch `t % steps_per_epoch` of the permutation of epoch `t // steps_per_epoch`
  (seeded by `(seed, epoch)`), so the data position is the step number alone. Each process
  returns its slice of the global batch; rows are read in sorted order (memmap friendly).
  """

  def __init__(self, values, rows: np.ndarray, global_batch_size: int, seed: int):
    self.values = values
    self.rows = np.asarray(rows, np.int64)
    self.global_batch_size = global_batch_size
    self.seed = seed
    if global_batch_size > len(self.rows):
      raise ValueError(f"SAE batch size {global_batch_size} exceeds the {len(self.rows)} "
                       "training activations")
    count = jax.process_count()
    if global_batch_size % count:
      raise ValueError(f"SAE batch {global_batch_size} not divisible by {count} processes")
    self.steps_per_epoch = len(self.rows) // global_batch_size
    self._epoch, self._perm = -1, None

  def _permutation(self, epoch: int) -> np.ndarray:
    if epoch != self._epoch:
      self._epoch = epoch
      self._perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.rows))
    return self._perm

  def batch(self, step: int) -> dict[str, np.ndarray]:
    epoch, i = divmod(step, self.steps_per_epoch)
    b = self.global_batch_size
    index = self.rows[self._permutation(epoch)[i * b : (i + 1) * b]]
    local = b // jax.process_count()
    p = jax.process_index()
    index = np.sort(index[p * local : (p + 1) * local])
    return {"x": np.asarray(self.values[index], np.float32)}


@dataclasses.dataclass
class Progress:
  step: int = 0
  train_seconds: float = 0.0
  resampled: int = 0  # latents resampled so far
  done: bool = False


# ----------------------------------------------------------------------------- evaluation


@functools.partial(jax.jit, static_argnames=("model_cfg",))
def _next_item_nll(params, input_ids, targets, *, model_cfg, edit=None):
  scores = recommender.scores_last(params, input_ids, model_cfg, edit=edit)
  picked = jnp.take_along_axis(scores, targets[:, None], axis=-1)[:, 0]
  return jax.nn.logsumexp(scores, axis=-1) - picked


def next_item_cross_entropy(params, model_cfg, eval_arrays: input_pipeline.EvalArrays, *,
                            batch_size: int, edit: hooks.LayerEdit | None = None) -> float:
  """Mean cross-entropy of the true next item over the full catalogue (no seen filtering)."""
  total, count = 0.0, 0
  for batch in eval_arrays.batches(batch_size):
    nll = np.asarray(_next_item_nll(params, batch["input_ids"], batch["targets"],
                                    model_cfg=model_cfg, edit=edit), np.float64)
    total += float(nll[batch["valid"]].sum())
    count += int(batch["valid"].sum())
  return total / max(count, 1)


def spliced_evaluation(rec_params, model_cfg, eval_arrays, trained: sae.TrainedSAE, layer: str, *,
                       batch_size: int, k: int, filter_seen: bool) -> dict:
  """Original, SAE-spliced and zero-ablated ranking metrics and cross-entropies."""
  out = {}
  edits = {"original": None, "spliced": hooks.sae_splice(layer, trained),
           "zero_ablated": hooks.zero_ablation(layer)}
  for name, edit in edits.items():
    m = recommender.evaluate(rec_params, model_cfg, eval_arrays, batch_size=batch_size, k=k,
                             filter_seen=filter_seen, edit=edit)
    m["cross_entropy"] = next_item_cross_entropy(rec_params, model_cfg, eval_arrays,
                                                 batch_size=batch_size, edit=edit)
    out[name] = m
  ce = {name: out[name]["cross_entropy"] for name in out}
  gap = ce["zero_ablated"] - ce["original"]
  out["loss_recovered"] = float((ce["zero_ablated"] - ce["spliced"]) / gap) if gap else float("nan")
  key = f"ndcg@{k}"
  out["ndcg_retained"] = float(out["spliced"][key] / out["original"][key]) if out["original"][key] else float("nan")
  return out


def latents(trained: sae.TrainedSAE, activations: acts_lib.Activations, *,
            batch_size: int = 4096) -> np.ndarray:
  """Latents `[N, M]` float32, in raw units, for captured `activations`."""
  return sae.encode_activations(trained, activations.values, batch_size=batch_size)


# ----------------------------------------------------------------------------- save / load


def _export(directory: pathlib.Path, step: int, trained: sae.TrainedSAE, layer: str, norm_method: str):
  ckpt = Checkpointer(directory, max_to_keep=1)
  state = {"variables": trained.variables,
           "norm": {"shift": trained.norm.shift, "scale": trained.norm.scale}}
  ckpt.save(step, jax.device_get(state),
            {"sae_config": trained.config.to_dict(), "layer": layer, "normalization": norm_method})
  ckpt.close()


def load_sae(workdir: str | pathlib.Path, subdir: str = "sae") -> sae.TrainedSAE:
  """The SAE trained by `train_sae` in `workdir` (unpacks as `(config, variables, norm)`).

  Its layer is in `json.load(open(DIR/<subdir>/results.json))["layer"]` (or `sae_layer`).
  """
  directory = pathlib.Path(workdir) / subdir / "model"
  meta_file = pathlib.Path(workdir) / subdir / "sae_config.json"
  if not meta_file.exists():
    raise FileNotFoundError(f"{meta_file} not found: run --experiment=train_sae first")
  meta = json.loads(meta_file.read_text())
  config = sae.SAEConfig(**meta["sae_config"])
  variables = sae.init_variables(config, jax.random.PRNGKey(0))
  target = {"variables": variables,
            "norm": {"shift": jnp.zeros((config.input_dim,), jnp.float32),
                     "scale": jnp.ones((), jnp.float32)}}
  ckpt = Checkpointer(directory, max_to_keep=1)
  state, _ = ckpt.restore(target)
  ckpt.close()
  norm = sae.Normalizer(jnp.asarray(state["norm"]["shift"]), jnp.asarray(state["norm"]["scale"]))
  variables = {k: dict(v) for k, v in state["variables"].items()}
  return sae.TrainedSAE(config, jax.tree_util.tree_map(jnp.asarray, variables), norm)


def sae_layer(workdir: str | pathlib.Path, subdir: str = "sae") -> str:
  """The layer the SAE in `workdir/<subdir>` was trained on."""
  return json.loads((pathlib.Path(workdir) / subdir / "sae_config.json").read_text())["layer"]


# ----------------------------------------------------------------------------- stage


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


def train_sae(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict:
  """Train and score the SAE described by `config.sae` on the recommender in `workdir`."""
  workdir = pathlib.Path(workdir)
  s = config.sae
  out_dir = workdir / s.subdir
  results_file = out_dir / "results.json"
  is_main = jax.process_index() == 0
  if results_file.exists() and not config.overwrite:
    logging.info("train_sae: %s exists; skipping (set config.overwrite=True to redo)", results_file)
    return json.loads(results_file.read_text())
  settings = {"seed": config.seed, "sae": s.to_dict()}
  config_file = out_dir / "config.json"
  if config.overwrite and out_dir.exists():
    if is_main:
      shutil.rmtree(out_dir)
  elif config_file.exists():
    saved = json.loads(config_file.read_text())
    if saved != json.loads(json.dumps(settings)):
      raise ValueError(f"{out_dir} holds an SAE run with other settings ({config_file}); set "
                       "config.overwrite=True or another config.sae.subdir")
  if is_main:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(config_file, settings)

  rec_config, _, split, model_cfg, rec_params = recommender.load_trained(workdir)
  layer = acts_lib.check_layer(model_cfg, s.layer)
  budget = int(s.memory_budget_mb) << 20
  t0 = time.perf_counter()
  train_acts = acts_lib.capture_activations(
      rec_params, model_cfg, split.sae, layer, batch_size=s.capture_batch_size,
      memory_budget_bytes=budget, out_dir=out_dir / "activations" / "sae")
  train_rows, val_rows = _split_by_sequence(train_acts, s.val_fraction, config.seed)
  logging.info("train_sae: %s activations of %d SAE users in %.1fs: %d train, %d validation",
               layer, len(np.unique(train_acts.users)), time.perf_counter() - t0, len(train_rows),
               len(val_rows))

  norm = sae.fit_normalizer(train_acts.values, s.normalization, rows=train_rows)
  dead_tokens = int(s.dead_window_tokens) or len(train_rows)
  cfg = sae_config(s, model_cfg.hidden_dim, dead_tokens)
  sample_rng = np.random.default_rng([config.seed, 2])
  sample = np.sort(sample_rng.choice(train_rows, min(8192, len(train_rows)), replace=False))
  variables = sae.init_variables(
      cfg, jax.random.PRNGKey(config.seed),
      np.asarray(norm.normalize(np.asarray(train_acts.values[sample]))), s.decoder_bias_init)
  if is_main:
    write_json(out_dir / "sae_config.json", {"sae_config": cfg.to_dict(), "layer": layer,
                                             "normalization": s.normalization})

  batches = ActivationBatches(train_acts.values, train_rows, s.batch_size, config.seed)
  total_steps = s.num_epochs * batches.steps_per_epoch
  if s.get("max_steps"):
    total_steps = min(total_steps, s.max_steps)
  total_steps = max(total_steps, 1)
  eval_every = s.eval_every_steps or max(total_steps // 10, 1)
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

  val_values = np.asarray(train_acts.values[val_rows], np.float32)
  resample = s.resample_every_steps if cfg.variant in RESAMPLED_VARIANTS else 0
  resample_until = int(s.resample_stop_fraction * total_steps)
  logging.info("train_sae: %s SAE, %d latents, %d steps (%d per epoch, batch %d) on %d device(s), "
               "mode %s", cfg.variant, cfg.dict_size, total_steps, batches.steps_per_epoch,
               s.batch_size, parallel.num_devices, parallel.mode)

  def host_state():
    return parallel.host_state(state)

  def save(extra_metrics=None):
    ckpt.save(progress.step, host_state(), {"progress": dataclasses.asdict(progress),
                                            "sae_config": cfg.to_dict(), "layer": layer,
                                            **(extra_metrics or {})})

  state = parallel.put_state(state)
  window_start, window_steps = time.perf_counter(), 0
  while progress.step < total_steps:
    state, step_metrics = step_fn(state, parallel.put_batch(batches.batch(progress.step)))
    progress.step += 1
    window_steps += 1
    boundary = progress.step % eval_every == 0 or progress.step == total_steps
    if progress.step % s.log_every_steps == 0 or boundary:
      step_metrics = parallel.get_metrics(step_metrics)
      training.check_finite(step_metrics, progress.step)
      elapsed = time.perf_counter() - window_start
      progress.train_seconds += elapsed
      rate = window_steps * s.batch_size / max(elapsed, 1e-9)
      logging.info("sae step %d/%d  epoch %.1f  loss %.4f  recon %.4f  l0 %.1f  %.0f act/s",
                   progress.step, total_steps, progress.step / batches.steps_per_epoch,
                   step_metrics["loss"], step_metrics["recon"], step_metrics["l0"], rate)
      if is_main:
        append_jsonl(out_dir / "metrics.jsonl",
                     {"step": progress.step, "split": "train", **step_metrics, "act_per_s": rate})
      window_start, window_steps = time.perf_counter(), 0

    if resample and progress.step % resample == 0 and progress.step <= resample_until:
      rng = np.random.default_rng([config.seed, 3, progress.step])
      pick = np.sort(rng.choice(train_rows, min(s.resample_sample_size, len(train_rows)), replace=False))
      new_state, count = sae.resample_dead(
          host_state(), jnp.asarray(train_acts.values[pick]),
          jax.random.fold_in(jax.random.PRNGKey(config.seed), progress.step), config=cfg)
      count = int(count)
      if count:
        state = parallel.put_state(jax.device_get(new_state))  # same on every process
        progress.resampled += count
        logging.info("sae step %d: resampled %d dead latents", progress.step, count)
      window_start = time.perf_counter()

    if boundary:
      current = host_state()
      trained = sae.trained_sae_from_state(cfg, current)
      val = {}
      if len(val_values):
        q = sae.evaluate_quality(trained, val_values, dense_threshold=s.dense_threshold)
        val = {"explained_variance": q.explained_variance, "mse": q.mse, "l0": q.l0,
               "dead_fraction": q.dead_fraction}
      dead_train = float(np.mean(np.asarray(sae.dead_mask(cfg, current.model_state))))
      logging.info("sae step %d  val %s  dead (train window) %.3f", progress.step,
                   {k: round(v, 4) for k, v in val.items()}, dead_train)
      if is_main:
        append_jsonl(out_dir / "metrics.jsonl", {"step": progress.step, "split": "val", **val,
                                                 "dead_fraction_train": dead_train})
      save()
      window_start, window_steps = time.perf_counter(), 0

  final = host_state()
  ckpt.close()
  trained = sae.trained_sae_from_state(cfg, final)
  _export(out_dir / "model", progress.step, trained, layer, s.normalization)

  # ----- quality on the test users
  test_acts = acts_lib.capture_activations(
      rec_params, model_cfg, split.test_sequences, layer, batch_size=s.capture_batch_size,
      memory_budget_bytes=budget, out_dir=out_dir / "activations" / "test")
  quality = sae.evaluate_quality(trained, test_acts.values, dense_threshold=s.dense_threshold)
  e = rec_config.eval
  eval_arrays = input_pipeline.make_eval_arrays(
      split.test, kind=model_cfg.kind, max_len=model_cfg.max_len, batch_size=e.batch_size,
      mask_token=model_cfg.mask_token)
  spliced = spliced_evaluation(rec_params, model_cfg, eval_arrays, trained, layer,
                               batch_size=e.batch_size, k=e.k, filter_seen=e.filter_seen)
  val_quality = sae.evaluate_quality(trained, val_values, dense_threshold=s.dense_threshold) \
      if len(val_values) else None
  results = {
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
      "dead_fraction_train_window": float(np.mean(np.asarray(sae.dead_mask(cfg, final.model_state)))),
      "original": spliced["original"],
      "spliced": spliced["spliced"],
      "zero_ablated": spliced["zero_ablated"],
      "loss_recovered": spliced["loss_recovered"],
      "ndcg_retained": spliced["ndcg_retained"],
      "validation": None if val_quality is None else {
          "explained_variance": val_quality.explained_variance, "mse": val_quality.mse,
          "l0": val_quality.l0, "dead_fraction": val_quality.dead_fraction},
      "num_train_activations": len(train_rows),
      "num_val_activations": len(val_rows),
      "num_test_activations": len(test_acts),
      "num_test_users": len(split.test),
      "steps": progress.step,
      "resampled_latents": progress.resampled,
      "train_seconds": progress.train_seconds,
      "parallel": config.parallel,
      "num_devices": parallel.num_devices,
      "seed": config.seed,
      "protocol": split.protocol,
      "filter_seen": bool(e.filter_seen),
  }
  logging.info("train_sae: EV %.4f  MSE %.5f  L0 %.1f  dead %.3f  dense %.3f  NDCG@%d original "
               "%.4f spliced %.4f zero %.4f  loss recovered %.3f", quality.explained_variance,
               quality.mse, quality.l0, quality.dead_fraction, quality.dense_fraction, e.k,
               spliced["original"][f"ndcg@{e.k}"], spliced["spliced"][f"ndcg@{e.k}"],
               spliced["zero_ablated"][f"ndcg@{e.k}"], spliced["loss_recovered"])
  if is_main:
    write_json(results_file, results)
  return results
