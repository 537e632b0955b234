"""Users/s of full-ranking evaluation (`evaluation.evaluate`), next to PyTorch.

    python -m benchmarks.eval_throughput [--num_items 27000] [--num_users 8192] [--no_torch]

The paper's SASRec (64-d, 2 blocks, 2 heads, length 64) scores every item for each user at the
last position, removes padding and the user's seen items, takes the top 10 and accumulates
NDCG@10, HR@10, MRR@10 and coverage (`evaluation.evaluate`, batches of `--batch_size` users,
timed after a first compiling pass). Users have random histories of 5 to 200 items over a
27,000-item catalogue (MovieLens-20M's size). Reference: the same full ranking in PyTorch
(`torch_reference.recommender_eval_seconds`: GPT2Model forward under `inference_mode`, scores,
seen-item masking by `scatter_`, `topk`, NDCG/HR), same users, same batch size, same run, the
faster of one thread and all threads.
`ratio` = our users/s / PyTorch's. Writes benchmarks/results/eval_throughput.json.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np

from benchmarks import common, torch_reference
from seqrec_jax.recommender import input_pipeline
from seqrec_jax.recommender import evaluation
from seqrec_jax.recommender.model import ModelConfig, init_params
from seqrec_jax.data.splits import EvalSet, Sequences

PAPER = dict(hidden_dim=64, num_blocks=2, num_heads=2, max_len=64)


def eval_arrays(num_users: int, num_items: int, batch_size: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(5, 201, num_users)
  offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
  items = rng.integers(1, num_items, offsets[-1]).astype(np.int32)
  histories = Sequences(offsets, items, np.arange(num_users, dtype=np.int64))
  targets = rng.integers(1, num_items, num_users).astype(np.int32)
  return input_pipeline.make_eval_arrays(EvalSet(histories, targets), kind="sasrec",
                                         max_len=PAPER["max_len"], batch_size=batch_size)


def ours(cfg: ModelConfig, arrays, batch_size: int, k: int) -> tuple[float, dict]:
  params = init_params(cfg, jax.random.PRNGKey(0))
  run = lambda: evaluation.evaluate(params, cfg, arrays, batch_size=batch_size, k=k)
  run()  # compiles
  repeats = 1 if common.quick() else 3
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    metrics = run()
    best = min(best, time.perf_counter() - start)
  return best, metrics


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--num_items", type=int, default=27_000)
  parser.add_argument("--num_users", type=int, default=8192)
  parser.add_argument("--batch_size", type=int, default=256)
  parser.add_argument("--k", type=int, default=10)
  parser.add_argument("--num_blocks", type=int, default=PAPER["num_blocks"])
  parser.add_argument("--no_torch", action="store_true")
  args = parser.parse_args(argv)
  env = common.environment()
  print(f"device {env['device']}, load average before start {env['load_averages_before']}",
        flush=True)
  shape = {**PAPER, "num_blocks": args.num_blocks}
  cfg = ModelConfig(kind="sasrec", num_items=args.num_items, mlp_dim=4 * shape["hidden_dim"],
                    dropout_rate=0.0, **shape)
  arrays = eval_arrays(args.num_users, args.num_items, args.batch_size)
  n = int(arrays.valid.sum())
  seconds, metrics = ours(cfg, arrays, args.batch_size, args.k)
  row = {"users_per_s": n / seconds, "seconds": seconds, "ndcg@10_random_model": metrics["ndcg@10"]}
  print(f"ours: {n} users x {args.num_items} items in {seconds:.3f} s = {n / seconds:,.0f} users/s",
        flush=True)
  reference = ratio = None
  if not args.no_torch and torch_reference.available():
    timings = {threads: torch_reference.recommender_eval_seconds(
        num_items=args.num_items, input_ids=arrays.input_ids[:n], seen=arrays.seen[:n],
        targets=arrays.targets[:n], batch_size=args.batch_size, k=args.k, threads=threads,
        **shape) for threads in torch_reference.thread_options()}
    threads, (torch_seconds, _, kind) = min(timings.items(), key=lambda kv: kv[1][0])
    reference, ratio = n / torch_seconds, torch_seconds / seconds
    row.update(torch_model=kind, torch_users_per_s=reference, torch_seconds=torch_seconds,
               torch_threads=threads, torch_seconds_by_threads={t: v[0] for t, v in timings.items()})
    print(f"torch ({kind}): {torch_seconds:.3f} s = {reference:,.0f} users/s; ratio {ratio:.2f}",
          flush=True)
  else:
    print("torch not installed (or --no_torch): no reference")
  common.record(
      "eval_throughput", env, figure=n / seconds, unit="users/s", reference=reference, ratio=ratio,
      summary=f"{args.num_items:,} items, {n:,} users, batch {args.batch_size}",
      figure_definition="users per second of evaluation.evaluate (full ranking over all items, "
                        "seen items filtered, top-10 metrics), best of repeated passes",
      reference_definition="users per second of the same full ranking in PyTorch",
      config={**shape, "num_items": args.num_items, "num_users": n, "batch_size": args.batch_size,
              "k": args.k, "history_lengths": "uniform 5..200"},
      rows=[row], load_average_before_measuring=os.getloadavg()[0])


if __name__ == "__main__":
  main()
