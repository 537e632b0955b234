"""Multi-process (multi-host) start-up: `jax.distributed.initialize` from arguments or environment.

Call `initialize()` once per process, before any JAX computation (never at import time: grain
workers re-import modules, grain #802). Every setting falls back to an environment variable:

    coordinator_address  JAX_COORDINATOR_ADDRESS  host:port of process 0's coordinator service
    num_processes        JAX_NUM_PROCESSES        number of processes in the job
    process_id           JAX_PROCESS_ID           this process's index, 0 .. num_processes - 1

With none of them set, JAX's own cluster detection (Cloud TPU, SLURM, Open MPI, Kubernetes, ...)
fills them in. CPU processes exchange collectives through gloo (`cpu_collectives`), which is how
the multi-process tests run on one machine:

    XLA_FLAGS=--xla_force_host_platform_device_count=2 JAX_COORDINATOR_ADDRESS=127.0.0.1:12345 \\
      JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=0 python -m experiments.main --distributed ...   # and =1

After initialisation `jax.devices()` lists every process's devices; `training.Parallel("mesh")`
spans them all, each process feeds its slice of the global batch (`input_pipeline`), only process
0 writes logs and results, and orbax checkpoints are written by all processes together.
"""

from __future__ import annotations

import os

import jax


def _from_env(value, name: str, cast=str):
  if value is not None:
    return value
  raw = os.environ.get(name)
  return cast(raw) if raw not in (None, "") else None


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, cpu_collectives: str | None = "gloo",
               initialization_timeout: int = 300) -> None:
  """Join the job described by the arguments or the environment (see the module docstring).

  `cpu_collectives` sets `jax_cpu_collectives_implementation` (CPU backends only; "gloo" or
  "mpi"; None leaves JAX's default). A second call in the same process does nothing.
  """
  if jax.distributed.is_initialized():
    return
  coordinator_address = _from_env(coordinator_address, "JAX_COORDINATOR_ADDRESS")
  num_processes = _from_env(num_processes, "JAX_NUM_PROCESSES", int)
  process_id = _from_env(process_id, "JAX_PROCESS_ID", int)
  if num_processes is not None and process_id is not None and not 0 <= process_id < num_processes:
    raise ValueError(f"process_id {process_id} is not in [0, {num_processes})")
  if cpu_collectives:
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
  jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                             process_id=process_id, initialization_timeout=initialization_timeout)


def is_main_process() -> bool:
  """True on the process that writes logs, metrics, results and reports (process 0)."""
  return jax.process_index() == 0
