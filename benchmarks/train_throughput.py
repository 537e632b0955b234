"""Sequences/s of the SASRec train step at the paper's configuration, and FLOP/s efficiency.

    python -m benchmarks.train_throughput [--num_items 1683,27000] [--no_torch]

For each catalogue size: our jitted step (64-d, 2 blocks, 2 heads, length 64, batch 128, dropout
0.1, full softmax CE, Adam) in sequences/s; the step's FLOP/s (its matrix-product FLOPs,
`step_matmul_flops`, divided by its time) next to a plain `jnp.dot` of the item-softmax shapes
`[B·L, d] @ [d, V]` timed in the same run (the machine's practical matmul rate for these
shapes), both with all CPU threads and, in a subprocess pinned to one CPU, with one thread,
keeping the faster step (a loaded 2-core machine often runs one thread faster than two); and,
when torch is installed, the PyTorch reference of the same shape and dropout
(benchmarks/torch_reference.py: HuggingFace GPT2Model with a tied item embedding when
`transformers` is installed), also the faster of one thread and all threads. `figure` = our
sequences/s at the first size, `reference` = PyTorch's, `ratio` = ours / PyTorch; each row also
has `flop_efficiency` = step FLOP/s / matmul FLOP/s. Writes benchmarks/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import common, torch_reference
from seqrec_jax.recommender import train as recommender_train
from seqrec_jax.core import training
from seqrec_jax.recommender.model import ModelConfig, init_params

PAPER = dict(hidden_dim=64, num_blocks=2, num_heads=2, max_len=64, batch_size=128)
DROPOUT = 0.1


def our_step(num_items: int, shape: dict = PAPER, dtype: str = "float32") -> tuple[float, float]:
  """(seconds per step, FLOPs per step)."""
  cfg = ModelConfig(kind="sasrec", num_items=num_items, max_len=shape["max_len"],
                    hidden_dim=shape["hidden_dim"], num_blocks=shape["num_blocks"],
                    num_heads=shape["num_heads"], mlp_dim=4 * shape["hidden_dim"],
                    dropout_rate=DROPOUT, dtype=dtype)
  tx = optax.adam(1e-3)
  parallel = training.Parallel("jit")
  step = parallel.compile(recommender_train.make_step_fns(cfg, tx))
  state = parallel.put_state(training.create_train_state(init_params(cfg, jax.random.PRNGKey(0)), tx, 0))
  rng = np.random.default_rng(0)
  ids = rng.integers(1, num_items, (shape["batch_size"], shape["max_len"] + 1)).astype(np.int32)
  batch = parallel.put_batch({"input_ids": ids[:, :-1], "labels": ids[:, 1:]})
  compiled = step.lower(state, batch).compile()
  flops = step_matmul_flops(num_items, shape)
  holder = [state]

  def run():
    holder[0], metrics = compiled(holder[0], batch)
    jax.block_until_ready(metrics)

  return common.time_calls(run), flops


def step_matmul_flops(num_items: int, shape: dict = PAPER) -> float:
  """Matrix-product FLOPs of one train step: 3x the forward's (forward, and backward with respect
  to activations and weights). XLA's cost analysis counts a scanned loss body once, not per block.
  """
  tokens, d, length = shape["batch_size"] * shape["max_len"], shape["hidden_dim"], shape["max_len"]
  per_block = 2 * (4 * d * d + 2 * d * 4 * d) + 2 * 2 * length * d  # projections, MLP, attention
  forward = tokens * (shape["num_blocks"] * per_block + 2 * d * (num_items - 1))
  return 3.0 * forward


def matmul_flops_per_second(num_items: int, shape: dict = PAPER) -> float:
  n, d = shape["batch_size"] * shape["max_len"], shape["hidden_dim"]
  a = jax.random.normal(jax.random.PRNGKey(0), (n, d))
  b = jax.random.normal(jax.random.PRNGKey(1), (d, num_items))
  dot = jax.jit(jnp.dot)
  seconds = common.time_calls(lambda: dot(a, b).block_until_ready())
  return 2 * n * d * num_items / seconds


def measure(num_items: int, shape: dict, dtype: str) -> dict:
  seconds, flops = our_step(num_items, shape, dtype)
  return {"step_seconds": seconds, "step_flops": flops,
          "matmul_flop_per_s": matmul_flops_per_second(num_items, shape)}


def measure_one_thread(num_items: int, args) -> dict:
  """`measure` in a subprocess pinned to one CPU (XLA sizes its thread pool at start-up)."""
  cmd = [sys.executable, "-m", "benchmarks.train_throughput", "--one_thread_worker",
         f"--num_items={num_items}", f"--batch_size={args.batch_size}",
         f"--max_len={args.max_len}", f"--dtype={args.dtype}"]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
  if proc.returncode:
    raise RuntimeError(f"one-thread worker failed:\n{proc.stderr[-3000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--num_items", default="1683,27000")
  parser.add_argument("--batch_size", type=int, default=PAPER["batch_size"])
  parser.add_argument("--max_len", type=int, default=PAPER["max_len"])
  parser.add_argument("--dtype", default="float32", help="model.dtype (bfloat16 on accelerators)")
  parser.add_argument("--no_torch", action="store_true")
  parser.add_argument("--one_thread_worker", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  shape = {**PAPER, "batch_size": args.batch_size, "max_len": args.max_len}
  if args.one_thread_worker:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # before the CPU backend starts
    print(json.dumps(measure(int(args.num_items), shape, args.dtype)))
    return
  env = common.environment()
  print(f"device {env['device']}, load average before start {env['load_averages_before']}",
        flush=True)
  use_torch = not args.no_torch and torch_reference.available()
  rows = []
  for num_items in [int(v) for v in args.num_items.split(",")]:
    load = os.getloadavg()[0]
    # Like torch below: the faster of all CPU threads (this process) and one thread.
    ours = {os.cpu_count(): measure(num_items, shape, args.dtype)}
    if os.cpu_count() > 1 and not common.quick():
      ours[1] = measure_one_thread(num_items, args)
    our_threads, best = min(ours.items(), key=lambda kv: kv[1]["step_seconds"])
    seconds, flops, peak = best["step_seconds"], best["step_flops"], best["matmul_flop_per_s"]
    row = {"num_items": num_items, "threads": our_threads,
           "step_seconds_by_threads": {t: m["step_seconds"] for t, m in ours.items()},
           "seq_per_s": shape["batch_size"] / seconds,
           "step_seconds": seconds, "step_flops": flops, "step_flop_per_s": flops / seconds,
           "matmul_flop_per_s": peak, "flop_efficiency": flops / seconds / peak,
           "mfu": common.model_flops_utilisation(flops, seconds, args.dtype),
           "load_average_before": load}
    if use_torch:
      timings = {threads: torch_reference.recommender_step_seconds(
          num_items=num_items, dropout_rate=DROPOUT, steps=1 if common.quick() else 5,
          threads=threads, **shape) for threads in torch_reference.thread_options()}
      threads, (torch_seconds, kind) = min(timings.items(), key=lambda kv: kv[1][0])
      row.update(torch_model=kind, torch_seq_per_s=shape["batch_size"] / torch_seconds,
                 torch_step_seconds=torch_seconds, torch_threads=threads,
                 torch_step_seconds_by_threads={t: v[0] for t, v in timings.items()},
                 ratio=torch_seconds / seconds)
    rows.append(row)
    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
          flush=True)
  if not use_torch:
    print("torch not installed (or --no_torch): no PyTorch column (pip install torch==2.13.0)")
  first, last = rows[0], rows[-1]
  summary = f"{first['num_items']:,} items; {last['num_items']:,} items: " \
            f"{last['flop_efficiency']:.0%} of matmul FLOP/s"
  if last.get("ratio") is not None and last is not first:
    summary += f", {last['ratio']:.2f}x torch"
  common.record(
      "train_throughput", env, figure=first["seq_per_s"], unit="sequences/s",
      reference=first.get("torch_seq_per_s"), ratio=first.get("ratio"), summary=summary,
      figure_definition=f"sequences/s of our train step at {first['num_items']} items",
      reference_definition="sequences/s of the PyTorch reference of the same shape and dropout",
      config={**shape, "dropout_rate": DROPOUT, "dtype": args.dtype}, rows=rows)


if __name__ == "__main__":
  main()
