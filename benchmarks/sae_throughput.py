"""Activations/s of the SAE train step (d = 64, 512 latents, batch 4096), next to PyTorch.

    python -m benchmarks.sae_throughput [--batch_size 4096] [--no_torch]

Ours: the library's jitted step (`training.train_step` with `sae.make_step_fns`: normalisation,
forward, loss, backward, Adam, decoder renormalisation and dead-latent counters), for ReLU + L1
and TopK k = 32; TopK three times: with no dead latent (AuxK skipped at run time), with 1 % of
the latents dead (5 <= k_aux = 32: AuxK on the gathered dead columns, the usual case in training)
and with 10 % dead (51 > k_aux: AuxK's dense path with a top-k over the dead latents). PyTorch: minimal steps of the same
shapes written here (forward, loss, backward, Adam, decoder renormalisation; TopK with
`torch.topk` + `scatter`, AuxK the same way), measured in the same run with one thread and with
all CPU threads; the better of the two is the reference.
Skipped with a message if torch is absent (`pip install torch==2.13.0`). Prints the load average
before starting; writes benchmarks/results/sae_throughput.json (`figure`: ours for ReLU + L1,
`reference`: PyTorch for ReLU + L1, `ratio` = figure / reference; all rows under `rows`).
`python -m benchmarks.run --only sae_throughput` runs it with glibc's huge-page tunable.
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import common
from seqrec_jax import sae
from seqrec_jax.core import training

D, M, K, K_AUX, DEAD_FRACTION = 64, 512, 32, 32, 0.1
CASES = {  # name -> (variant, fraction of latents dead)
    "relu_l1": ("relu_l1", 0.0),
    "topk": ("topk", 0.0),
    "topk_auxk_1pct_dead": ("topk", 0.01),  # typical: 0-1.4 % dead in the ML-100k TopK run
    "topk_auxk_10pct_dead": ("topk", DEAD_FRACTION),  # more dead latents than k_aux
}


def _data(batch_size: int) -> np.ndarray:
  rng = np.random.default_rng(0)
  return (rng.normal(size=(batch_size, D)) * 0.5 + 0.1).astype(np.float32)


def ours(variant: str, dead_fraction: float, batch_size: int) -> float:
  """Seconds per step of the library's SAE train step."""
  cfg = sae.SAEConfig(variant=variant, input_dim=D, dict_size=M, k=K, k_aux=K_AUX, l1_coeff=1.0,
                      dead_tokens=1_000_000)
  x = _data(batch_size)
  norm = sae.fit_normalizer(x, "scalar")
  tx = optax.adam(1e-4)
  variables = sae.init_variables(cfg, jax.random.PRNGKey(0))
  dead = np.arange(M) < int(dead_fraction * M)
  # Dead latents: marked dead and kept from firing (so that AuxK runs on every timed step).
  variables["params"]["b_enc"] = jnp.where(dead, -100.0, variables["params"]["b_enc"])
  state = sae.create_train_state(cfg, variables, norm, tx, 0)
  counters = np.where(dead, 2 * cfg.dead_tokens, 0).astype(np.int32)
  state = state.replace(model_state={**state.model_state, "tokens_since_fired": jnp.asarray(counters)})
  parallel = training.Parallel("jit")
  step = parallel.compile(sae.make_step_fns(cfg, tx))
  holder = [parallel.put_state(state)]
  batch = parallel.put_batch({"x": x})

  def run():
    holder[0], metrics = step(holder[0], batch)
    jax.block_until_ready(metrics)

  seconds = common.time_calls(run, warmup=3, repeats=10, min_seconds=3.0)
  if dead_fraction:  # the dead latents stay dead (they cannot fire within a few steps' window)
    assert float(np.mean(np.asarray(sae.dead_mask(cfg, holder[0].model_state)))) > 0
  return seconds


def torch_step_seconds(variant: str, dead_fraction: float, batch_size: int, threads: int) -> float:
  """Seconds per step of a minimal PyTorch SAE step of the same shapes."""
  import torch

  torch.manual_seed(0)
  torch.set_num_threads(threads)
  w_dec = torch.randn(M, D)
  w_dec /= w_dec.norm(dim=1, keepdim=True)
  w_dec = torch.nn.Parameter(w_dec)
  w_enc = torch.nn.Parameter(w_dec.detach().T.clone())
  b_enc = torch.nn.Parameter(torch.zeros(M))
  b_dec = torch.nn.Parameter(torch.zeros(D))
  opt = torch.optim.Adam([w_enc, b_enc, w_dec, b_dec], lr=1e-4)
  x = torch.from_numpy(_data(batch_size))
  x = (x - x.mean()) / x.std()
  dead = torch.arange(M) < int(dead_fraction * M)

  def step():
    pre = (x - b_dec) @ w_enc + b_enc
    if variant == "relu_l1":
      f = torch.relu(pre)
      x_hat = f @ w_dec + b_dec
      loss = (x - x_hat).pow(2).sum(-1).mean() + 1.0 * (f @ w_dec.norm(dim=1)).mean()
    else:
      vals, idx = pre.topk(K, dim=-1)
      f = torch.zeros_like(pre).scatter(-1, idx, torch.relu(vals))
      x_hat = f @ w_dec + b_dec
      loss = (x - x_hat).pow(2).sum(-1).mean()
      if dead.any():
        residual = (x - x_hat).detach()
        aux_vals, aux_idx = pre.masked_fill(~dead, -float("inf")).topk(K_AUX, dim=-1)
        aux = torch.zeros_like(pre).scatter(-1, aux_idx, torch.relu(aux_vals))
        loss = loss + (residual - aux @ w_dec).pow(2).sum(-1).mean() / 32
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    with torch.no_grad():
      w_dec.div_(w_dec.norm(dim=1, keepdim=True))

  return common.time_calls(step, warmup=3, repeats=10, min_seconds=3.0)


def torch_available() -> bool:
  try:
    import torch  # noqa: F401
  except ImportError:
    return False
  return True


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--batch_size", type=int, default=4096)
  parser.add_argument("--no_torch", action="store_true")
  args = parser.parse_args()
  env = common.environment()
  print(f"device {env['device']}, load average before start {os.getloadavg()}")
  use_torch = not args.no_torch and torch_available()
  if not use_torch:
    print("torch not installed (or --no_torch): no PyTorch column (pip install torch==2.13.0)")
  b = args.batch_size
  rows = []
  for name, (variant, dead_fraction) in CASES.items():
    seconds = ours(variant, dead_fraction, b)
    row = {"case": name, "variant": variant, "dead_fraction": dead_fraction,
           "activations_per_s": b / seconds, "step_seconds": seconds}
    if use_torch:
      # Torch's thread pool degrades badly when the machine is busy; the reference is the
      # better of one thread and all threads.
      by_threads = {t: torch_step_seconds(variant, dead_fraction, b, t)
                    for t in sorted({1, os.cpu_count() or 1})}
      threads, torch_seconds = min(by_threads.items(), key=lambda kv: kv[1])
      row.update(torch_activations_per_s=b / torch_seconds, torch_step_seconds=torch_seconds,
                 torch_threads=threads, ratio=torch_seconds / seconds,
                 torch_activations_per_s_by_threads={str(t): b / v for t, v in by_threads.items()})
    rows.append(row)
    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                   if not isinstance(v, dict)), flush=True)
  first = rows[0]
  summary = ", ".join(
      f"{r['case']} {r['activations_per_s'] / 1e3:.0f}k" +
      (f" vs torch {r['torch_activations_per_s'] / 1e3:.0f}k" if "torch_activations_per_s" in r else "")
      for r in rows) + " act/s"
  common.record(
      "sae_throughput", env, figure=first["activations_per_s"], unit="activations/s",
      reference=first.get("torch_activations_per_s"), ratio=first.get("ratio"), summary=summary,
      figure_definition="activations per second of our ReLU + L1 SAE train step",
      reference_definition="the same for a minimal PyTorch ReLU + L1 step, same run",
      config={"input_dim": D, "dict_size": M, "batch_size": b, "k": K, "k_aux": K_AUX}, rows=rows)


if __name__ == "__main__":
  main()
