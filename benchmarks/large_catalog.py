"""SASRec train steps over a 1,000,000-item catalogue: chunked full softmax and sampled softmax.

    python -m benchmarks.large_catalog [--num_items 1000000] [--variants chunked,sampled]

The paper's model (64-d, 2 blocks, 2 heads, length 64, batch 128, dropout 0.1, Adam) with a
million-row item table. The naive full softmax would hold `[128 * 64, 10^6]` float32 logits, 33 GB,
before its gradient; the two losses of `seqrec_jax.recommender.losses` avoid that:

* `chunked`: the exact full-softmax cross-entropy over item chunks (`--chunk_size`) under
  `jax.checkpoint`, so at most `[8192, chunk]` logits exist at a time (forward and backward);
* `sampled`: sampled softmax with `--num_negatives` uniform negatives shared by the batch.

Each variant runs in a fresh subprocess (so that its peak resident memory, `ru_maxrss`, is its
own): compile, then `--steps` timed steps (steps/s, seconds per step), with the peak RSS, the
RSS after building the state, and XLA's device memory statistics where the backend has them.
Model FLOPs per step are counted analytically (transformer forward + backward = 3x forward, item
softmax = 6 N d V for chunked or 6 N d S for sampled; the chunked loss's recomputation is not
counted); model FLOPs utilisation is printed only on a GPU/TPU with a known peak, n/a on CPU.
`figure` = chunked steps/s; there is no reference implementation that fits (`reference` is
null, `ratio` null). Writes benchmarks/results/large_catalog.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

PAPER = dict(hidden_dim=64, num_blocks=2, num_heads=2, max_len=64, batch_size=128)
WORKER_TIMEOUT_S = 3600


def model_flops(shape: dict, num_items: int, variant: str, num_negatives: int) -> float:
  """Useful FLOPs of one train step (multiply-adds count 2)."""
  d, L, blocks = shape["hidden_dim"], shape["max_len"], shape["num_blocks"]
  tokens = shape["batch_size"] * L
  per_token_block = 2 * 4 * d * d + 2 * 2 * d * 4 * d + 2 * 2 * L * d  # qkv+out, mlp, attention
  transformer = 3 * tokens * blocks * per_token_block
  scored = num_items if variant == "chunked" else num_negatives
  return float(transformer + 6 * tokens * d * scored)


def _shape(args) -> dict:
  return {**PAPER, "batch_size": args.batch_size, "max_len": args.max_len,
          "hidden_dim": args.hidden_dim, "num_blocks": args.num_blocks}


def _current_rss_mb() -> float:
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker(args) -> dict:
  """One variant in this process: compile, time `steps` steps, report memory."""
  import jax
  import numpy as np
  import optax

  from benchmarks import common
  from seqrec_jax.core import training
  from seqrec_jax.recommender import losses
  from seqrec_jax.recommender import stage as recommender_stage
  from seqrec_jax.recommender.model import ModelConfig, init_params

  shape = _shape(args)
  cfg = ModelConfig(kind="sasrec", num_items=args.num_items, max_len=shape["max_len"],
                    hidden_dim=shape["hidden_dim"], num_blocks=shape["num_blocks"],
                    num_heads=shape["num_heads"], mlp_dim=4 * shape["hidden_dim"], dropout_rate=0.1)
  tx = optax.adam(1e-3)
  item_loss = losses.make_item_loss(args.worker, chunk_size=args.chunk_size,
                                    num_negatives=args.num_negatives)
  parallel = training.Parallel("jit")
  step = parallel.compile(recommender_stage.make_step_fns(cfg, tx, item_loss))
  state = parallel.put_state(
      training.create_train_state(init_params(cfg, jax.random.PRNGKey(0)), tx, seed=0))
  rng = np.random.default_rng(0)
  ids = rng.integers(1, args.num_items, (shape["batch_size"], shape["max_len"] + 1)).astype(np.int32)
  batch = parallel.put_batch({"input_ids": ids[:, :-1], "labels": ids[:, 1:]})
  rss_state = _current_rss_mb()

  start = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_seconds = time.perf_counter() - start
  losses_seen = []
  start = time.perf_counter()
  for _ in range(args.steps):
    state, metrics = compiled(state, batch)
    losses_seen.append(float(metrics["loss"]))
  seconds = (time.perf_counter() - start) / args.steps
  flops = model_flops(shape, args.num_items, args.worker, args.num_negatives)
  stats = jax.devices()[0].memory_stats() or {}
  return {
      "variant": args.worker, "steps_timed": args.steps, "step_seconds": seconds,
      "steps_per_s": 1.0 / seconds, "sequences_per_s": shape["batch_size"] / seconds,
      "compile_seconds": compile_seconds, "losses": losses_seen,
      "peak_rss_mb": common.max_rss_mb(), "rss_after_state_mb": rss_state,
      "device_peak_bytes": stats.get("peak_bytes_in_use"),
      "model_flops_per_step": flops, "model_flop_per_s": flops / seconds,
      "mfu": common.model_flops_utilisation(flops, seconds, cfg.dtype),
      "chunk_size": args.chunk_size if args.worker == "chunked" else None,
      "num_negatives": args.num_negatives if args.worker == "sampled" else None,
  }


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--num_items", type=int, default=1_000_000)
  parser.add_argument("--variants", default="chunked,sampled")
  parser.add_argument("--chunk_size", type=int, default=2048)
  parser.add_argument("--num_negatives", type=int, default=8192)
  parser.add_argument("--batch_size", type=int, default=PAPER["batch_size"])
  parser.add_argument("--max_len", type=int, default=PAPER["max_len"])
  parser.add_argument("--hidden_dim", type=int, default=PAPER["hidden_dim"])
  parser.add_argument("--num_blocks", type=int, default=PAPER["num_blocks"])
  parser.add_argument("--steps", type=int, default=0,
                      help="timed steps per variant (default: 2 chunked, 10 sampled)")
  parser.add_argument("--worker", choices=("chunked", "sampled"), help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.worker:
    args.steps = args.steps or (2 if args.worker == "chunked" else 10)
    print(json.dumps(worker(args)), flush=True)
    return

  from benchmarks import common

  env = common.environment()
  print(f"device {env['device']}, load average before start {env['load_averages_before']}",
        flush=True)
  shape = _shape(args)
  tokens = shape["batch_size"] * shape["max_len"]
  naive_logits_bytes = tokens * args.num_items * 4
  table_bytes = args.num_items * shape["hidden_dim"] * 4
  print(f"{args.num_items:,} items: naive full-softmax logits [{tokens}, {args.num_items}] float32 "
        f"= {naive_logits_bytes / 1e9:.1f} GB (not run); item table {table_bytes / 2**20:.0f} MiB, "
        f"x4 with its gradient and Adam moments", flush=True)
  rows = []
  for variant in args.variants.split(","):
    cmd = [sys.executable, "-m", "benchmarks.large_catalog", f"--worker={variant}",
           f"--num_items={args.num_items}", f"--chunk_size={args.chunk_size}",
           f"--num_negatives={args.num_negatives}", f"--steps={args.steps}",
           f"--batch_size={args.batch_size}", f"--max_len={args.max_len}",
           f"--hidden_dim={args.hidden_dim}", f"--num_blocks={args.num_blocks}"]
    load = os.getloadavg()[0]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)
    if proc.returncode:
      raise RuntimeError(f"{variant} worker failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row["load_average_before"] = load
    rows.append(row)
    mfu = "n/a (no GPU/TPU peak known)" if row["mfu"] is None else f"{row['mfu']:.1%}"
    print(f"{variant:8s}: {row['steps_per_s']:.4g} steps/s ({row['step_seconds']:.2f} s/step, "
          f"{row['sequences_per_s']:.1f} seq/s), peak RSS {row['peak_rss_mb']:,.0f} MiB, "
          f"compile {row['compile_seconds']:.1f} s, model FLOP/s {row['model_flop_per_s']:.3g}, "
          f"MFU {mfu}, load before {load:.2f}", flush=True)
  by_variant = {r["variant"]: r for r in rows}
  head = by_variant.get("chunked", rows[0])
  summary = "; ".join(f"{r['variant']} {r['steps_per_s']:.3g} steps/s, {r['peak_rss_mb']:,.0f} MiB"
                      for r in rows)
  common.record(
      "large_catalog", env, figure=head["steps_per_s"], unit=f"steps/s ({head['variant']})",
      reference=None, ratio=None, summary=f"{args.num_items:,} items: {summary}",
      figure_definition=f"train steps per second, {head['variant']} loss, {args.num_items:,} items",
      reference_definition="none: the naive full softmax needs "
                           f"{naive_logits_bytes / 1e9:.1f} GB of logits alone",
      config={**shape, "num_items": args.num_items, "chunk_size": args.chunk_size,
              "num_negatives": args.num_negatives, "dropout_rate": 0.1},
      naive_logits_bytes=naive_logits_bytes, item_table_bytes=table_bytes, rows=rows)


if __name__ == "__main__":
  main()
