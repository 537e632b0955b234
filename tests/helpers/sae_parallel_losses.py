"""Run SAE train steps in each compilation mode and print losses and final counters as JSON.

Used by tests/sae/test_sae_training.py in a subprocess, so that XLA_FLAGS can give the CPU 4 devices
before jax is imported: `python -m tests.helpers.sae_parallel_losses jit pmap mesh` (jit uses one device).
"""

import json
import sys

import jax
import numpy as np
import optax

from seqrec_jax import sae
from seqrec_jax.core import training

VARIANTS = ("relu_l1", "topk")


def run(mode: str, variant: str, steps: int = 6) -> dict:
  d, m = 8, 32
  cfg = sae.SAEConfig(variant=variant, input_dim=d, dict_size=m, k=3, k_aux=4, dead_tokens=24,
                      l1_coeff=0.5, l0_coeff=0.1, bandwidth=0.5, init_threshold=0.2)
  rng = np.random.default_rng(0)
  data = (rng.normal(size=(steps, 16, d)) * 2 + 0.5).astype(np.float32)
  norm = sae.fit_normalizer(data.reshape(-1, d), "scalar")
  variables = sae.init_variables(cfg, jax.random.PRNGKey(0), np.asarray(norm.normalize(data[0])))
  params = dict(variables["params"])
  params["b_enc"] = params["b_enc"].at[:6].set(-50.0)  # some latents die: counters and AuxK matter
  variables = sae.join_variables(params, variables.get("state", {}))
  tx = optax.adam(1e-2)
  parallel = training.Parallel(mode)
  step = parallel.compile(sae.make_step_fns(cfg, tx))
  state = parallel.put_state(sae.create_train_state(cfg, variables, norm, tx, seed=0))
  losses = []
  for t in range(steps):
    state, metrics = step(state, parallel.put_batch({"x": data[t]}))
    losses.append(parallel.get_metrics(metrics)["loss"])
  final = jax.device_get(parallel.get_state(state))
  return {"losses": losses, "counters": np.asarray(final.model_state["tokens_since_fired"]).tolist(),
          "w_dec": np.asarray(final.params["W_dec"]).ravel()[:16].tolist()}


if __name__ == "__main__":
  out = {mode: {v: run(mode, v) for v in VARIANTS} for mode in sys.argv[1:]}
  print(json.dumps({"devices": jax.device_count(), **out}))
