"""Sequences/s of the SASRec train step at the paper's configuration, and FLOP/s efficiency.

    python -m benchmarks.train_throughput [--num_items 1683,27000] [--no_torch]

For each catalogue size: our jitted step (64-d, 2 blocks, 2 heads, length 64, batch 128, full
softmax CE, Adam) in sequences/s; the step's FLOP/s (XLA's cost analysis of the compiled step
divided by its time) next to a plain `jnp.dot` of the item-softmax shapes `[B·L, d] @ [d, V]`
timed in the same run (the machine's practical matmul limit); and, when torch is installed, the
PyTorch reference of the same shape (benchmarks/torch_reference.py). Writes
benchmarks/results/train_throughput.json.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import common, torch_reference
from seqrec_jax import recommender, training
from seqrec_jax.models import ModelConfig, init_params

PAPER = dict(hidden_dim=64, num_blocks=2, num_heads=2, max_len=64, batch_size=128)


def our_step(num_items: int) -> tuple[float, float]:
  """(seconds per step, FLOPs per step)."""
  cfg = ModelConfig(kind="sasrec", num_items=num_items, max_len=PAPER["max_len"],
                    hidden_dim=PAPER["hidden_dim"], num_blocks=PAPER["num_blocks"],
                    num_heads=PAPER["num_heads"], mlp_dim=4 * PAPER["hidden_dim"], dropout_rate=0.1)
  tx = optax.adam(1e-3)
  parallel = training.Parallel("jit")
  step = parallel.compile(recommender.make_step_fns(cfg, tx))
  state = parallel.put_state(training.create_train_state(init_params(cfg, jax.random.PRNGKey(0)), tx, 0))
  rng = np.random.default_rng(0)
  ids = rng.integers(1, num_items, (PAPER["batch_size"], PAPER["max_len"] + 1)).astype(np.int32)
  batch = parallel.put_batch({"input_ids": ids[:, :-1], "labels": ids[:, 1:]})
  flops = step.lower(state, batch).compile().cost_analysis()
  flops = (flops[0] if isinstance(flops, list) else flops).get("flops", float("nan"))
  holder = [state]

  def run():
    holder[0], metrics = step(holder[0], batch)
    jax.block_until_ready(metrics)

  return common.time_calls(run), flops


def matmul_flops_per_second(num_items: int) -> float:
  n, d = PAPER["batch_size"] * PAPER["max_len"], PAPER["hidden_dim"]
  a = jax.random.normal(jax.random.PRNGKey(0), (n, d))
  b = jax.random.normal(jax.random.PRNGKey(1), (d, num_items))
  dot = jax.jit(jnp.dot)
  seconds = common.time_calls(lambda: dot(a, b).block_until_ready())
  return 2 * n * d * num_items / seconds


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--num_items", default="1683,27000")
  parser.add_argument("--no_torch", action="store_true")
  args = parser.parse_args()
  env = common.environment()
  print(f"device {env['device']}, load average before start {env['load_average_before']:.2f}")
  rows = []
  for num_items in [int(v) for v in args.num_items.split(",")]:
    seconds, flops = our_step(num_items)
    peak = matmul_flops_per_second(num_items)
    row = {"num_items": num_items, "seq_per_s": PAPER["batch_size"] / seconds,
           "step_seconds": seconds, "step_flops": flops, "step_flop_per_s": flops / seconds,
           "matmul_flop_per_s": peak, "flop_efficiency": flops / seconds / peak}
    if not args.no_torch and torch_reference.available():
      torch_seconds, kind = torch_reference.recommender_step_seconds(num_items=num_items, **PAPER)
      row.update(torch_model=kind, torch_seq_per_s=PAPER["batch_size"] / torch_seconds,
                 ratio=torch_seconds / seconds)
    rows.append(row)
    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
  if not (not args.no_torch and torch_reference.available()):
    print("torch not installed: no PyTorch column (pip install torch==2.13.0)")
  first = rows[0]
  result = {**env, "config": PAPER, "rows": rows, "figure": first["seq_per_s"], "unit": "sequences/s",
            "reference": first.get("torch_seq_per_s"), "ratio": first.get("ratio")}
  print("wrote", common.save("train_throughput", result))


if __name__ == "__main__":
  main()
