"""SASRec train steps over catalogues of 100k to 10M items: chunked full softmax and sampled
softmax with a dense or a lazy Adam update of the item table.

    python -m benchmarks.large_catalog [--num_items 100000,1000000,10000000]
        [--variants chunked,sampled,sampled_lazy] [--chunked_max_items 1000000]

The paper's model (64-d, 2 blocks, 2 heads, length 64, batch 128, dropout 0.1, Adam) with a big
item table. The naive full softmax would hold `[128 * 64, V]` float32 logits (33 GB at a million
items) before its gradient; the losses of `seqrec_jax.recommender.losses` avoid that:

* `chunked`: the exact full-softmax cross-entropy over item chunks (`--chunk_size`), so at most
  `[8192, chunk]` logits exist at a time (forward and backward); only run up to
  `--chunked_max_items` (it costs 90 s a step at a million items on 2 cores);
* `sampled`: sampled softmax with `--num_negatives` uniform negatives shared by the batch and
  dense Adam (`train.item_optimizer="dense"`): the gradient, both moments and the update of the
  whole `[V, d]` table every step, so the step time grows with V;
* `sampled_lazy`: the same loss with lazy Adam on the item rows the step uses
  (`train.item_optimizer="lazy_adam"`, `core.sparse_rows`): the step time should not grow with V.

Each (variant, size) runs in a fresh subprocess, so that its peak resident memory (`ru_maxrss` of
that process) is its own: compile, one untimed warm-up step, then `--steps` timed steps (steps/s,
seconds per step), with the peak RSS, the RSS after building the state and XLA's device memory
statistics where the backend has them. Model FLOPs per step are counted analytically
(transformer forward + backward = 3x forward, item softmax = 6 N d V for chunked or 6 N d S for
sampled; the chunked loss's recomputation is not counted); model FLOPs utilisation is printed
only on a GPU/TPU with a known peak, n/a on CPU.

Writes benchmarks/results/large_catalog.json: `by_num_items` maps each catalogue size to
`sampled_steps_per_s` and `peak_rss_mib` (the lazy-Adam sampled step) and the dense-Adam and
chunked figures where they ran; `figure` = lazy sampled steps/s at the largest size, `reference`
= dense sampled steps/s there (`ratio` = lazy / dense; null where the dense one did not run);
`lazy_step_time_growth` = step time at the largest size over the smallest, minus 1 (target:
at most 0.2 from 100k to 10M items), `lazy_step_cpu_time_growth` the same in CPU seconds (all
threads), which another busy process on the machine disturbs less than wall time.
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
  from seqrec_jax.core import sparse_rows, training
  from seqrec_jax.recommender import losses, sparse_items
  from seqrec_jax.recommender import train as recommender_train
  from seqrec_jax.recommender.model import ModelConfig, init_params

  shape = _shape(args)
  cfg = ModelConfig(kind="sasrec", num_items=args.num_items, max_len=shape["max_len"],
                    hidden_dim=shape["hidden_dim"], num_blocks=shape["num_blocks"],
                    num_heads=shape["num_heads"], mlp_dim=4 * shape["hidden_dim"], dropout_rate=0.1)
  parallel = training.Parallel("jit")
  if args.worker == "sampled_lazy":
    tx = sparse_rows.SparseRowsOptimizer(dense=optax.adam(1e-3), rows=sparse_rows.LazyAdam(1e-3),
                                         path=sparse_items.TABLE_PATH)
    fns = sparse_items.make_step_fns(cfg, tx, num_negatives=args.num_negatives)
  else:
    tx = optax.adam(1e-3)
    fns = recommender_train.make_step_fns(cfg, tx, losses.make_item_loss(
        args.worker, chunk_size=args.chunk_size, num_negatives=args.num_negatives))
  step = parallel.compile(fns)
  state = parallel.put_state(
      training.create_train_state(init_params(cfg, jax.random.PRNGKey(0)), tx, seed=0))
  rng = np.random.default_rng(0)
  ids = rng.integers(1, args.num_items, (shape["batch_size"], shape["max_len"] + 1)).astype(np.int32)
  batch = parallel.put_batch({"input_ids": ids[:, :-1], "labels": ids[:, 1:]})
  rss_state = _current_rss_mb()

  start = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_seconds = time.perf_counter() - start
  start = time.perf_counter()
  state, metrics = compiled(state, batch)  # warm-up: first touch of the donated buffers
  losses_seen = [float(metrics["loss"])]
  warmup_seconds = time.perf_counter() - start
  start, cpu_start = time.perf_counter(), time.process_time()
  for _ in range(args.steps):
    state, metrics = compiled(state, batch)
    losses_seen.append(float(metrics["loss"]))
  seconds = (time.perf_counter() - start) / args.steps
  cpu_seconds = (time.process_time() - cpu_start) / args.steps
  flops = model_flops(shape, args.num_items, args.worker, args.num_negatives)
  stats = jax.devices()[0].memory_stats() or {}
  return {
      "variant": args.worker, "num_items": args.num_items, "steps_timed": args.steps,
      "step_seconds": seconds, "warmup_step_seconds": warmup_seconds,
      # CPU seconds (all threads) per step: less sensitive than wall time to other processes.
      "step_cpu_seconds": cpu_seconds,
      "steps_per_s": 1.0 / seconds, "sequences_per_s": shape["batch_size"] / seconds,
      "compile_seconds": compile_seconds, "losses": losses_seen,
      "peak_rss_mb": common.max_rss_mb(), "rss_after_state_mb": rss_state,
      "device_peak_bytes": stats.get("peak_bytes_in_use"),
      "model_flops_per_step": flops, "model_flop_per_s": flops / seconds,
      "mfu": common.model_flops_utilisation(flops, seconds, cfg.dtype),
      "chunk_size": args.chunk_size if args.worker == "chunked" else None,
      "num_negatives": None if args.worker == "chunked" else args.num_negatives,
  }


VARIANTS = ("chunked", "sampled", "sampled_lazy")


def _run_worker(variant: str, num_items: int, args) -> dict:
  cmd = [sys.executable, "-m", "benchmarks.large_catalog", f"--worker={variant}",
         f"--num_items={num_items}", f"--chunk_size={args.chunk_size}",
         f"--num_negatives={args.num_negatives}", f"--steps={args.steps}",
         f"--batch_size={args.batch_size}", f"--max_len={args.max_len}",
         f"--hidden_dim={args.hidden_dim}", f"--num_blocks={args.num_blocks}"]
  load = os.getloadavg()[0]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S,
                        check=False)
  if proc.returncode:
    raise RuntimeError(f"{variant} worker at {num_items:,} items failed ({proc.returncode}):\n"
                       f"{proc.stderr[-4000:]}")
  row = json.loads(proc.stdout.strip().splitlines()[-1])
  row["load_average_before"] = load
  mfu = "n/a (no GPU/TPU peak known)" if row["mfu"] is None else f"{row['mfu']:.1%}"
  print(f"{num_items:>10,} {variant:12s}: {row['steps_per_s']:.4g} steps/s "
        f"({row['step_seconds']:.3f} s/step, {row['step_cpu_seconds']:.3f} CPU s/step, "
        f"{row['sequences_per_s']:.1f} seq/s), peak RSS "
        f"{row['peak_rss_mb']:,.0f} MiB, compile {row['compile_seconds']:.1f} s, model FLOP/s "
        f"{row['model_flop_per_s']:.3g}, MFU {mfu}, load before {load:.2f}", flush=True)
  return row


def by_num_items(rows: list[dict]) -> dict:
  """`{str(V): {"sampled_steps_per_s", "peak_rss_mib", ...}}`: lazy-Adam sampled figures under the
  plain names, dense-Adam (`sampled_dense_*`) and chunked (`chunked_*`) ones where they ran."""
  prefix = {"sampled_lazy": "sampled", "sampled": "sampled_dense", "chunked": "chunked"}
  out = {}
  for r in rows:
    entry = out.setdefault(str(r["num_items"]), {})
    entry[f"{prefix[r['variant']]}_steps_per_s"] = r["steps_per_s"]
    entry[f"{prefix[r['variant']]}_step_cpu_seconds"] = r["step_cpu_seconds"]
    key = "peak_rss_mib" if r["variant"] == "sampled_lazy" else f"{prefix[r['variant']]}_peak_rss_mib"
    entry[key] = r["peak_rss_mb"]
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--num_items", default="100000,1000000,10000000",
                      help="comma-separated catalogue sizes")
  parser.add_argument("--variants", default=",".join(VARIANTS))
  parser.add_argument("--chunked_max_items", type=int, default=1_000_000,
                      help="run the chunked variant only up to this many items")
  parser.add_argument("--dense_max_items", type=int, default=10_000_000,
                      help="run the dense-Adam sampled variant only up to this many items")
  parser.add_argument("--chunk_size", type=int, default=2048)
  parser.add_argument("--num_negatives", type=int, default=8192)
  parser.add_argument("--batch_size", type=int, default=PAPER["batch_size"])
  parser.add_argument("--max_len", type=int, default=PAPER["max_len"])
  parser.add_argument("--hidden_dim", type=int, default=PAPER["hidden_dim"])
  parser.add_argument("--num_blocks", type=int, default=PAPER["num_blocks"])
  parser.add_argument("--steps", type=int, default=0,
                      help="timed steps per variant (default: 2 chunked, 10 sampled)")
  parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.worker:
    args.num_items = int(args.num_items)
    args.steps = args.steps or (2 if args.worker == "chunked" else 10)
    print(json.dumps(worker(args)), flush=True)
    return

  from benchmarks import common

  env = common.environment()
  print(f"device {env['device']}, load average before start {env['load_averages_before']}",
        flush=True)
  shape = _shape(args)
  tokens = shape["batch_size"] * shape["max_len"]
  sizes = sorted(int(v) for v in args.num_items.split(","))
  variants = args.variants.split(",")
  limits = {"chunked": args.chunked_max_items, "sampled": args.dense_max_items}
  rows = []
  for num_items in sizes:
    table_bytes = num_items * shape["hidden_dim"] * 4
    print(f"{num_items:,} items: naive full-softmax logits [{tokens}, {num_items}] float32 = "
          f"{tokens * num_items * 4 / 1e9:.1f} GB (not run); item table "
          f"{table_bytes / 2**20:,.0f} MiB, x3 with its Adam moments (x4 with a dense gradient)",
          flush=True)
    rows += [_run_worker(v, num_items, args) for v in variants
             if num_items <= limits.get(v, num_items)]
  sizes_table = by_num_items(rows)
  largest, smallest = sizes_table[str(sizes[-1])], sizes_table[str(sizes[0])]
  lazy = largest.get("sampled_steps_per_s")
  dense = largest.get("sampled_dense_steps_per_s")
  growth = (smallest["sampled_steps_per_s"] / lazy - 1
            if lazy and smallest.get("sampled_steps_per_s") else None)
  cpu_growth = (largest["sampled_step_cpu_seconds"] / smallest["sampled_step_cpu_seconds"] - 1
                if lazy and smallest.get("sampled_steps_per_s") else None)
  summary = "; ".join(f"{int(v):,} items: " + ", ".join(
      f"{k.removesuffix('_steps_per_s')} {x:.3g} steps/s" for k, x in e.items()
      if k.endswith("steps_per_s")) + f", lazy peak RSS {e.get('peak_rss_mib', 0):,.0f} MiB"
      for v, e in sizes_table.items())
  head = next((r for r in rows if r["variant"] == "sampled_lazy" and r["num_items"] == sizes[-1]),
              rows[-1])
  common.record(
      "large_catalog", env, figure=head["steps_per_s"], unit=f"steps/s ({head['variant']})",
      reference=dense if head["variant"] == "sampled_lazy" else None,
      ratio=(lazy / dense) if (lazy and dense and head["variant"] == "sampled_lazy") else None,
      summary=summary,
      figure_definition=f"train steps per second, {head['variant']}, {sizes[-1]:,} items",
      reference_definition="the same sampled softmax with dense Adam on the whole item table",
      config={**shape, "num_items": sizes, "chunk_size": args.chunk_size,
              "num_negatives": args.num_negatives, "dropout_rate": 0.1},
      by_num_items=sizes_table, lazy_step_time_growth=growth,
      lazy_step_cpu_time_growth=cpu_growth,
      naive_logits_bytes=tokens * sizes[-1] * 4,
      item_table_bytes=sizes[-1] * shape["hidden_dim"] * 4, rows=rows)
  if growth is not None:
    print(f"lazy sampled step time, {sizes[-1]:,} against {sizes[0]:,} items: {growth:+.1%} "
          f"wall, {cpu_growth:+.1%} CPU (target at most +20%)", flush=True)


if __name__ == "__main__":
  main()
