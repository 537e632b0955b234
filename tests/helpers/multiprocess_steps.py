"""10 recommender and 10 SAE train steps over a device mesh, in one process or as one of several.

Used by tests/core/test_multiprocess.py in subprocesses (XLA_FLAGS gives each process its CPU devices):

    python -m tests.helpers.multiprocess_steps --workdir=DIR                       # one process
    python -m tests.helpers.multiprocess_steps --workdir=DIR --coordinator=127.0.0.1:PORT \\
        --num_processes=2 --process_id=I                                   # one of two

Both runs see the same global batches: the recommender's come from `input_pipeline.make_train_data`
(which gives each process its rows of every global batch), the SAE's from
`sae_batches.ActivationBatches` (likewise). Each process writes the final states with orbax
(`DIR/recommender`, `DIR/sae`, all processes taking part); process 0 also writes the states'
leaves to `DIR/recommender_leaves.npz`, `DIR/sae_leaves.npz` and the losses to `DIR/losses.json`.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import jax
import numpy as np
import optax

from seqrec_jax.core import distributed
from seqrec_jax.recommender import input_pipeline
from seqrec_jax.recommender import train as recommender_train
from seqrec_jax import sae
from seqrec_jax.sae import batches as sae_batches
from seqrec_jax.core import training
from seqrec_jax.core.checkpoints import Checkpointer
from seqrec_jax.core.files import write_json
from seqrec_jax.recommender.model import ModelConfig, init_params
from seqrec_jax.data.splits import Sequences

STEPS = 10
MODEL = ModelConfig(kind="sasrec", num_items=60, max_len=10, hidden_dim=16, num_blocks=1,
                    num_heads=2, mlp_dim=32, dropout_rate=0.1)
SAE = sae.SAEConfig(variant="topk", input_dim=16, dict_size=64, k=4, k_aux=8, dead_tokens=256)


def sequences(seed: int = 0, num: int = 64) -> Sequences:
  rng = np.random.default_rng(seed)
  lengths = rng.integers(2, 25, num)  # uneven padding: per-device token counts differ
  offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
  items = rng.integers(1, MODEL.num_items, offsets[-1]).astype(np.int32)
  return Sequences(offsets, items, np.arange(num, dtype=np.int64))


def recommender_state():
  tx = optax.adam(1e-2)
  return tx, training.create_train_state(init_params(MODEL, jax.random.PRNGKey(0)), tx, seed=0)


def sae_state(values: np.ndarray):
  tx = optax.adam(1e-2)
  norm = sae.fit_normalizer(values, "scalar")
  variables = sae.init_variables(SAE, jax.random.PRNGKey(1), np.asarray(norm.normalize(values[:256])))
  return tx, sae.create_train_state(SAE, variables, norm, tx, seed=0)


def run_recommender(parallel: training.Parallel) -> tuple[list[float], object]:
  tx, state = recommender_state()
  step = parallel.compile(recommender_train.make_step_fns(MODEL, tx))
  data = input_pipeline.make_train_data(sequences(), kind="sasrec", max_len=MODEL.max_len,
                                        global_batch_size=16, seed=0)
  batches = data.iterator()
  state = parallel.put_state(state)
  losses = []
  for _ in range(STEPS):
    state, metrics = step(state, parallel.put_batch(next(batches)))
    losses.append(parallel.get_metrics(metrics)["loss"])
  return losses, state


def run_sae(parallel: training.Parallel) -> tuple[list[float], object]:
  values = np.random.default_rng(2).normal(size=(4096, SAE.input_dim)).astype(np.float32)
  values[:, :4] *= 3.0
  tx, state = sae_state(values)
  step = parallel.compile(sae.make_step_fns(SAE, tx))
  batches = sae_batches.ActivationBatches(values, np.arange(len(values)), 64, seed=0)
  state = parallel.put_state(state)
  losses = []
  for i in range(STEPS):
    state, metrics = step(state, parallel.put_batch(batches.batch(i)))
    losses.append(parallel.get_metrics(metrics)["loss"])
  return losses, state


def save(directory: pathlib.Path, parallel: training.Parallel, state) -> None:
  """An orbax checkpoint (all processes) and, from process 0, the leaves as `.npz` to compare."""
  host = parallel.host_state(state)
  ckpt = Checkpointer(directory, max_to_keep=1)
  ckpt.save(STEPS, host, {"steps": STEPS})
  ckpt.close()
  if distributed.is_main_process():
    np.savez(f"{directory}_leaves.npz", *jax.tree_util.tree_leaves(host))


def main(argv=None):
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdir", type=pathlib.Path, required=True)
  parser.add_argument("--coordinator", default=None)
  parser.add_argument("--num_processes", type=int, default=1)
  parser.add_argument("--process_id", type=int, default=0)
  args = parser.parse_args(argv)
  if args.num_processes > 1:
    distributed.initialize(args.coordinator, args.num_processes, args.process_id,
                           initialization_timeout=60)
  parallel = training.Parallel("mesh")
  rec_losses, rec_state = run_recommender(parallel)
  sae_losses, sae_final = run_sae(parallel)
  save(args.workdir / "recommender", parallel, rec_state)
  save(args.workdir / "sae", parallel, sae_final)
  if distributed.is_main_process():
    write_json(args.workdir / "losses.json", {
        "process_count": jax.process_count(), "device_count": jax.device_count(),
        "local_device_count": jax.local_device_count(), "recommender": rec_losses, "sae": sae_losses})
  if args.num_processes > 1:
    jax.distributed.shutdown()
  print(json.dumps({"process": jax.process_index(), "done": True}), flush=True)


if __name__ == "__main__":
  main()
