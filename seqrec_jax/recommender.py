"""Train and evaluate a sequential recommender: `train_and_evaluate(config, workdir)`.

The workdir receives `config.json`, `metrics.jsonl`, `results.json` and orbax checkpoints under
`checkpoints/latest` (newest two; resumed automatically) and `checkpoints/best` (best validation
NDCG@10, used for the test numbers).
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

from seqrec_jax import data as data_lib
from seqrec_jax import hooks, input_pipeline, losses, metrics, splits, training
from seqrec_jax.checkpoints import Checkpointer
from seqrec_jax.io_utils import append_jsonl, write_json
from seqrec_jax.models import ModelConfig, SequentialRecommender, init_params, make_model


# ----------------------------------------------------------------------------- data


def load_data(config: ml_collections.ConfigDict) -> tuple[data_lib.Dataset, splits.Split]:
  """The dataset and split described by `config.data` (deterministic for `config.seed`)."""
  d = config.data
  # "" stands for "not given" on the command line (ConfigDict fields cannot hold None there).
  options = {k: (None if v == "" else v) for k, v in (d.get("options", {}) or {}).items()}
  dataset = data_lib.load_dataset(d.name, data_dir=d.get("dir") or None, **options)
  kwargs = {}
  if d.protocol == "temporal":
    kwargs = dict(test_fraction=d.test_fraction, sae_fraction=d.sae_fraction, seed=config.seed)
  return dataset, splits.split(dataset.interactions, d.protocol, **kwargs)


def model_config(config: ml_collections.ConfigDict, num_items: int) -> ModelConfig:
  m = config.model
  return ModelConfig(
      kind=m.kind, num_items=num_items, max_len=m.max_len, hidden_dim=m.hidden_dim,
      num_blocks=m.num_blocks, num_heads=m.num_heads, mlp_dim=m.mlp_dim,
      dropout_rate=m.dropout_rate, dtype=m.get("dtype", "float32"),
  )


# ----------------------------------------------------------------------------- train step


def make_step_fns(model_cfg: ModelConfig, tx: optax.GradientTransformation,
                  item_loss=None) -> training.StepFns:
  """`item_loss(hidden, table, labels, rng)` defaults to the full softmax (`losses.make_item_loss`)."""
  model = make_model(model_cfg, train=True)
  item_loss = item_loss or losses.make_item_loss("full")

  def loss_fn(params, model_state, batch, rng):
    del model_state
    dropout_rng, loss_rng = jax.random.split(rng)
    hidden, table = model.apply(
        {"params": params}, batch["input_ids"], rngs={"dropout": dropout_rng},
        method=SequentialRecommender.hidden_and_table,
    )
    loss_sum, count = item_loss(hidden, table, batch["labels"], loss_rng)
    return loss_sum, training.LossAux(count=count, metrics={})

  return training.StepFns(loss_fn=loss_fn, tx=tx)


# ----------------------------------------------------------------------------- evaluation


@functools.partial(jax.jit, static_argnames=("model_cfg", "k", "filter_seen"))
def _eval_batch(params, batch, *, model_cfg: ModelConfig, k: int, filter_seen: bool,
                edit: hooks.LayerEdit | None = None):
  scores = scores_last(params, batch["input_ids"], model_cfg, edit=edit)
  if filter_seen:
    scores = metrics.mask_seen(scores, batch["seen"])
  top = metrics.top_k_items(scores, k)
  return metrics.per_user_metrics(top, batch["targets"]), top


def scores_last(params, input_ids: jax.Array, model_cfg: ModelConfig,
                edit: hooks.LayerEdit | None = None) -> jax.Array:
  """Scores `[B, V]` of every item as the next one, read at the last position.

  `edit` (optional) rewrites one layer's output during the forward pass (see `hooks`).
  """
  model = make_model(model_cfg)
  hidden = hooks.maybe_edited_apply(model, {"params": params}, input_ids, edit)[:, -1]
  return model.apply({"params": params}, hidden, method=SequentialRecommender.item_logits)


def evaluate(
    params, model_cfg: ModelConfig, eval_arrays: input_pipeline.EvalArrays, *, batch_size: int,
    k: int = 10, filter_seen: bool = True, edit: hooks.LayerEdit | None = None,
    list_features: metrics.ListFeatures | None = None,
) -> dict[str, float]:
  """NDCG@k, HR@k, MRR@k and Coverage@k over all users (padding rows masked, none dropped).

  `edit` (optional) rewrites one layer's output during the forward pass (see `hooks`);
  `list_features` (optional) adds novelty, intra-list diversity and attribute shares.
  """
  acc = metrics.RankingAccumulator(model_cfg.num_items, k, list_features)
  for batch in eval_arrays.batches(batch_size):
    per_user, top = _eval_batch(params, batch, model_cfg=model_cfg, k=k, filter_seen=filter_seen,
                                edit=edit)
    acc.add(jax.device_get(per_user), jax.device_get(top), batch["valid"])
  return acc.result()


# ----------------------------------------------------------------------------- loop


def item_loss_from_config(config, split: splits.Split, num_items: int):
  t = config.train
  log_q = None
  if t.get("loss", "full") == "sampled" and t.get("negative_sampling", "uniform") == "popularity":
    log_q = losses.popularity_log_q(np.bincount(split.train.items, minlength=num_items))
  return losses.make_item_loss(t.get("loss", "full"), chunk_size=t.get("loss_chunk_size", 8192),
                               num_negatives=t.get("num_negatives", 8192), log_q=log_q)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  t = config.train
  tx = optax.adam(t.learning_rate)
  if t.get("grad_clip_norm"):
    tx = optax.chain(optax.clip_by_global_norm(t.grad_clip_norm), tx)
  return tx


@dataclasses.dataclass
class Progress:
  """Host-side training progress, saved with each checkpoint."""

  step: int = 0
  best_ndcg: float = -1.0
  best_step: int = -1
  evals_without_improvement: int = 0
  train_seconds: float = 0.0
  done: bool = False


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict:
  """Trains the recommender described by `config`, writes results into `workdir`, returns them."""
  workdir = pathlib.Path(workdir)
  is_main = jax.process_index() == 0
  finished = finished_results(workdir, config)
  if finished is not None:
    logging.info("%s already holds results of this config; --config.overwrite=true redoes them",
                 workdir)
    return finished
  if config.get("overwrite") and is_main:
    shutil.rmtree(workdir / "checkpoints", ignore_errors=True)
    for name in ("results.json", "metrics.jsonl"):
      (workdir / name).unlink(missing_ok=True)
  if is_main:
    workdir.mkdir(parents=True, exist_ok=True)
    write_json(workdir / "config.json", config.to_dict())

  dataset, split = load_data(config)
  inter = dataset.interactions
  model_cfg = model_config(config, inter.num_items)
  t = config.train
  logging.info(
      "data %s (%s): %d users, %d items, %d train sequences, %d val, %d test",
      dataset.name, split.protocol, inter.num_users, inter.num_items - 1, len(split.train),
      len(split.val), len(split.test),
  )

  train_data = input_pipeline.make_train_data(
      split.train, kind=model_cfg.kind, max_len=model_cfg.max_len,
      global_batch_size=t.batch_size, seed=config.seed, mask_prob=t.mask_prob,
      last_item_mask_prob=t.last_item_mask_prob, mask_token=model_cfg.mask_token,
  )
  eval_kwargs = dict(kind=model_cfg.kind, max_len=model_cfg.max_len, batch_size=config.eval.batch_size,
                     mask_token=model_cfg.mask_token)
  val_arrays = input_pipeline.make_eval_arrays(split.val, **eval_kwargs)
  test_arrays = input_pipeline.make_eval_arrays(split.test, **eval_kwargs)
  evaluate_fn = functools.partial(
      evaluate, model_cfg=model_cfg, batch_size=config.eval.batch_size, k=config.eval.k,
      filter_seen=config.eval.filter_seen,
  )

  tx = make_optimizer(config)
  parallel = training.Parallel(config.parallel)
  step_fn = parallel.compile(make_step_fns(model_cfg, tx, item_loss_from_config(config, split, inter.num_items)))
  state = training.create_train_state(
      init_params(model_cfg, jax.random.PRNGKey(config.seed)), tx, config.seed
  )
  iterator = train_data.iterator()
  latest = Checkpointer(workdir / "checkpoints" / "latest", max_to_keep=2)
  best = Checkpointer(workdir / "checkpoints" / "best", max_to_keep=1)
  progress = Progress()
  if latest.latest_step() is not None:
    state, extra, step = latest.restore_newest_valid(state)
    iterator.set_state(extra["iterator"])
    progress = Progress(**extra["progress"])
    logging.info("resumed from %s at step %d", latest.directory, step)

  steps_per_epoch = train_data.steps_per_epoch
  eval_every = t.get("eval_every_steps") or steps_per_epoch
  max_steps = t.num_epochs * steps_per_epoch
  if t.get("max_steps"):
    max_steps = min(max_steps, t.max_steps)
  logging.info("training %d steps (%d per epoch, eval every %d) on %d device(s), mode %s",
               max_steps, steps_per_epoch, eval_every, parallel.num_devices, parallel.mode)

  state = parallel.put_state(state)
  window_start, window_steps, window_losses = time.perf_counter(), 0, []
  while not progress.done and progress.step < max_steps:
    batch = next(iterator)
    state, step_metrics = step_fn(state, parallel.put_batch(batch))
    progress.step += 1
    window_steps += 1
    window_losses.append(step_metrics["loss"])
    if progress.step % t.log_every_steps == 0 or progress.step % eval_every == 0:
      # One host transfer per log interval, yet the error names the first bad step.
      training.check_finite_losses(window_losses, first_step=progress.step - len(window_losses) + 1)
      window_losses = []
      step_metrics = parallel.get_metrics(step_metrics)
      elapsed = time.perf_counter() - window_start
      progress.train_seconds += elapsed
      rate = window_steps * t.batch_size / max(elapsed, 1e-9)
      logging.info("step %d/%d  epoch %.2f  loss %.4f  %.0f seq/s", progress.step, max_steps,
                   progress.step / steps_per_epoch, step_metrics["loss"], rate)
      if is_main:
        append_jsonl(workdir / "metrics.jsonl",
                     {"step": progress.step, "split": "train", **step_metrics, "seq_per_s": rate})
      window_start, window_steps = time.perf_counter(), 0

    if progress.step % eval_every == 0 or progress.step == max_steps:
      host_state = jax.device_get(parallel.get_state(state))
      val = evaluate_fn(host_state.params, eval_arrays=val_arrays)
      improved = val["ndcg@10"] > progress.best_ndcg
      if improved:
        progress.best_ndcg, progress.best_step = val["ndcg@10"], progress.step
        progress.evals_without_improvement = 0
        best.save(progress.step, host_state, {"val": val})
      else:
        progress.evals_without_improvement += 1
      progress.done = progress.evals_without_improvement >= t.patience
      logging.info("step %d  val ndcg@10 %.4f  hr@10 %.4f  (best %.4f at step %d)", progress.step,
                   val["ndcg@10"], val["hr@10"], progress.best_ndcg, progress.best_step)
      if is_main:
        append_jsonl(workdir / "metrics.jsonl", {"step": progress.step, "split": "val", **val})
      latest.save(progress.step, host_state,
                  {"iterator": iterator.get_state(), "progress": dataclasses.asdict(progress)})
      window_start, window_steps = time.perf_counter(), 0

  host_state = jax.device_get(parallel.get_state(state))
  best_state, _ = best.restore(host_state)
  latest.close()
  best.close()
  params = best_state.params
  val = evaluate_fn(params, eval_arrays=val_arrays)
  test = evaluate_fn(params, eval_arrays=test_arrays)
  results = {
      "dataset": dataset.name,
      "model": model_cfg.kind,
      "protocol": split.protocol,
      "filter_seen": bool(config.eval.filter_seen),
      "num_users": int(inter.num_users),
      "num_items": int(inter.num_items - 1),
      "num_train_sequences": len(split.train),
      "num_val_users": len(split.val),
      "num_test_users": len(split.test),
      "steps": progress.step,
      "best_step": progress.best_step,
      "train_seconds": progress.train_seconds,
      "seed": config.seed,
      "val": val,
      "test": test,
  }
  logging.info("test %s", {k: round(v, 4) for k, v in test.items()})
  if is_main:
    write_json(workdir / "results.json", results)
  return results


def finished_results(workdir: pathlib.Path, config) -> dict | None:
  """The results of a finished run of the same config in `workdir`, unless overwriting."""
  results, saved = workdir / "results.json", workdir / "config.json"
  if config.get("overwrite") or not (results.exists() and saved.exists()):
    return None
  relevant = ("seed", "data", "model", "train", "eval")  # what this stage's results depend on
  before = json.loads(saved.read_text())
  now = json.loads(json.dumps(config.to_dict()))
  if any(before.get(key) != now.get(key) for key in relevant):
    return None
  return json.loads(results.read_text())


def load_trained(workdir: str | pathlib.Path):
  """`(config, dataset, split, model_cfg, params)` of the best checkpoint in a workdir."""
  workdir = pathlib.Path(workdir)
  config_file = workdir / "config.json"
  if not config_file.exists():
    raise FileNotFoundError(f"{config_file} not found: run --experiment=train_recommender first")
  config = ml_collections.ConfigDict(json.loads(config_file.read_text()))
  dataset, split = load_data(config)
  model_cfg = model_config(config, dataset.interactions.num_items)
  tx = make_optimizer(config)
  target = training.create_train_state(
      init_params(model_cfg, jax.random.PRNGKey(0)), tx, config.seed
  )
  ckpt = Checkpointer(workdir / "checkpoints" / "best", max_to_keep=1)
  state, _ = ckpt.restore(target)
  ckpt.close()
  return config, dataset, split, model_cfg, state.params
