"""Training a sequential recommender: its data, model config, optimiser, train step and loop.

Library functions of the `train_recommender` stage (`seqrec_jax.stages.recommender`), which only
wires them to the workdir: `load_data` and `model_config` read a config, `make_optimizer` and
`step_fns_from_config` build the step, `fit` runs (or resumes) early-stopped training with
orbax checkpoints under a directory and returns the best parameters.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib

import jax
import ml_collections
import numpy as np
import optax
from absl import logging

from seqrec_jax import data as data_lib
from seqrec_jax.core import loop, sparse_rows, training
from seqrec_jax.core.checkpoints import Checkpointer
from seqrec_jax.core.metric_writer import MetricWriter
from seqrec_jax.data import splits
from seqrec_jax.recommender import evaluation, input_pipeline, losses, sparse_items
from seqrec_jax.recommender.model import ModelConfig, SequentialRecommender, init_params, make_model


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
      dropout_rate=m.dropout_rate, scale_embeddings=bool(m.get("scale_embeddings", False)),
      dtype=m.get("dtype", "float32"),
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


# ----------------------------------------------------------------------------- loop


def _log_q(config, split: splits.Split, num_items: int):
  t = config.train
  if t.get("loss", "full") == "sampled" and t.get("negative_sampling", "uniform") == "popularity":
    return losses.popularity_log_q(np.bincount(split.train.items, minlength=num_items))
  return None


def item_loss_from_config(config, split: splits.Split, num_items: int):
  t = config.train
  return losses.make_item_loss(t.get("loss", "full"), chunk_size=t.get("loss_chunk_size", 8192),
                               num_negatives=t.get("num_negatives", 8192),
                               log_q=_log_q(config, split, num_items))


def step_fns_from_config(config, split: splits.Split, model_cfg: ModelConfig,
                         tx) -> training.StepFns:
  """The train step of `config.train` (`loss`, `item_optimizer`) for `make_optimizer`'s `tx`."""
  if isinstance(tx, sparse_rows.SparseRowsOptimizer):
    return sparse_items.make_step_fns(model_cfg, tx, num_negatives=config.train.num_negatives,
                                      log_q=_log_q(config, split, model_cfg.num_items))
  return make_step_fns(model_cfg, tx, item_loss_from_config(config, split, model_cfg.num_items))


ITEM_OPTIMIZERS = ("dense", "lazy_adam")


def make_optimizer(config: ml_collections.ConfigDict):
  """Adam (`optax`), or with `train.item_optimizer = "lazy_adam"` a
  `sparse_rows.SparseRowsOptimizer`: lazy Adam on the item rows a step uses, Adam on the rest."""
  t = config.train
  item_optimizer = t.get("item_optimizer", "dense")
  if item_optimizer not in ITEM_OPTIMIZERS:
    raise ValueError(f"train.item_optimizer must be one of {ITEM_OPTIMIZERS}, "
                     f"got {item_optimizer!r}")
  if item_optimizer == "lazy_adam":
    if t.get("loss", "full") != "sampled":
      raise ValueError("train.item_optimizer='lazy_adam' needs train.loss='sampled' (the full "
                       f"and chunked losses use every item row each step); got {t.loss!r}")
    return sparse_rows.SparseRowsOptimizer(
        dense=optax.adam(t.learning_rate), rows=sparse_rows.LazyAdam(t.learning_rate),
        path=sparse_items.TABLE_PATH, clip_norm=float(t.get("grad_clip_norm") or 0.0))
  tx = optax.adam(t.learning_rate)
  if t.get("grad_clip_norm"):
    tx = optax.chain(optax.clip_by_global_norm(t.grad_clip_norm), tx)
  return tx


BEST_METRIC = "ndcg@10"  # validation metric for early stopping and the best checkpoint


@dataclasses.dataclass
class Progress:  # satisfies core.loop.Progress
  """Host-side training progress, saved with each checkpoint."""

  step: int = 0
  best_ndcg: float = -1.0
  best_step: int = -1
  evals_without_improvement: int = 0
  train_seconds: float = 0.0
  done: bool = False




def total_steps(config, steps_per_epoch: int) -> int:
  """`train.num_epochs` epochs, capped by `train.max_steps` when set."""
  t = config.train
  steps = t.num_epochs * steps_per_epoch
  return min(steps, t.max_steps) if t.get("max_steps") else steps


def fit(config: ml_collections.ConfigDict, split: splits.Split, model_cfg: ModelConfig,
        out_dir: pathlib.Path, hparams: dict) -> tuple[dict, Progress]:
  """Trains (or resumes) with early stopping on validation NDCG@10; returns the best checkpoint's
  parameters and the progress. Checkpoints (newest two and the best) go to `out_dir/checkpoints`,
  metrics to `out_dir/metrics.jsonl` and TensorBoard (`hparams` logged once)."""
  t = config.train
  train_data = input_pipeline.make_train_data(
      split.train, kind=model_cfg.kind, max_len=model_cfg.max_len,
      global_batch_size=t.batch_size, seed=config.seed, mask_prob=t.mask_prob,
      last_item_mask_prob=t.last_item_mask_prob, mask_token=model_cfg.mask_token,
  )
  val_arrays = eval_arrays(config, model_cfg, split.val)
  tx = make_optimizer(config)
  parallel = training.Parallel(config.parallel)
  step_fn = parallel.compile(step_fns_from_config(config, split, model_cfg, tx))
  state = training.create_train_state(
      init_params(model_cfg, jax.random.PRNGKey(config.seed)), tx, config.seed)
  iterator = train_data.iterator()
  ckpt = Checkpointer(out_dir / "checkpoints", max_to_keep=2, best_metric=BEST_METRIC)
  progress = Progress()
  if ckpt.latest_step() is not None:
    state, extra, step = ckpt.restore_newest_valid(state)
    iterator.set_state(extra["iterator"])
    progress = Progress(**extra["progress"])
    logging.info("resumed from %s at step %d", ckpt.directory, step)

  steps_per_epoch = train_data.steps_per_epoch
  cadence = loop.Cadence(total_steps=total_steps(config, steps_per_epoch),
                         log_every=t.log_every_steps,
                         eval_every=t.get("eval_every_steps") or steps_per_epoch,
                         examples_per_step=t.batch_size, unit="seq")
  logging.info("training %d steps (%d per epoch, eval every %d) on %d device(s), mode %s",
               cadence.total_steps, steps_per_epoch, cadence.eval_every, parallel.num_devices,
               parallel.mode)
  writer = MetricWriter(out_dir)
  if progress.step == 0:
    writer.write_hparams(hparams)
  validate = functools.partial(evaluate, config, model_cfg, val_arrays, check_finite=False)

  def on_boundary(host_state):
    val = validate(host_state.params)
    _record_validation(progress, val, t.patience)
    writer.write(progress.step, "val", val)
    ckpt.save(progress.step, host_state,
              {"iterator": iterator.get_state(), "progress": dataclasses.asdict(progress)},
              metrics={BEST_METRIC: val[BEST_METRIC]})

  final = loop.train_loop(state, step_fn=step_fn, parallel=parallel,
                          next_batch=lambda step: next(iterator), progress=progress,
                          cadence=cadence, writer=writer, on_boundary=on_boundary)
  writer.close()
  best_state, _ = ckpt.restore(final, ckpt.best_step())
  ckpt.close()
  return best_state.params, progress


def _record_validation(progress: Progress, val: dict, patience: int) -> None:
  """Updates the best score and the early-stopping count with one validation."""
  if val[BEST_METRIC] > progress.best_ndcg:
    progress.best_ndcg, progress.best_step = val[BEST_METRIC], progress.step
    progress.evals_without_improvement = 0
  else:
    progress.evals_without_improvement += 1
  progress.done = progress.evals_without_improvement >= patience
  logging.info("step %d  val ndcg@10 %.4f  hr@10 %.4f  (best %.4f at step %d)", progress.step,
               val["ndcg@10"], val["hr@10"], progress.best_ndcg, progress.best_step)


def eval_arrays(config, model_cfg: ModelConfig, evalset, batch_size: int | None = None):
  """Fixed-shape evaluation arrays of `evalset` for this model (`config.eval.batch_size`)."""
  return input_pipeline.make_eval_arrays(
      evalset, kind=model_cfg.kind, max_len=model_cfg.max_len,
      batch_size=batch_size or config.eval.batch_size, mask_token=model_cfg.mask_token)


def evaluate(config, model_cfg: ModelConfig, arrays, params, **kwargs) -> dict:
  """`evaluation.evaluate` with the config's batch size, cut-off and seen-item filter."""
  e = config.eval
  return evaluation.evaluate(params, model_cfg, arrays, batch_size=e.batch_size, k=e.k,
                             filter_seen=e.filter_seen, **kwargs)


def abstract_train_state(config, model_cfg: ModelConfig):
  """The train state's shapes and dtypes (nothing computed): the restore target of a trained
  recommender's checkpoint, which holds the optimiser state beside the parameters."""
  def build():
    return training.create_train_state(init_params(model_cfg, jax.random.PRNGKey(0)),
                                       make_optimizer(config), config.seed)
  return jax.eval_shape(build)
