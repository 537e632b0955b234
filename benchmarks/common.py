"""What every benchmark records beside its figures: machine, device, versions, load average."""

from __future__ import annotations

import os
import pathlib
import platform
import time

import jax

from seqrec_jax.io_utils import write_json

RESULTS_DIR = pathlib.Path(__file__).parent / "results"


def environment() -> dict:
  import flax
  import numpy
  import optax

  return {
      "machine": platform.machine(),
      "cpu_count": os.cpu_count(),
      "device": f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind}",
      "device_count": jax.device_count(),
      "load_average_before": os.getloadavg()[0],
      "versions": {"python": platform.python_version(), "jax": jax.__version__,
                   "flax": flax.__version__, "optax": optax.__version__, "numpy": numpy.__version__},
      "date": time.strftime("%Y-%m-%d %H:%M:%S"),
  }


def time_calls(fn, *, warmup: int = 2, repeats: int = 10, min_seconds: float = 2.0) -> float:
  """Median-free simple timing: seconds per call of `fn()` (which must block until done)."""
  for _ in range(warmup):
    fn()
  count, start = 0, time.perf_counter()
  while count < repeats or time.perf_counter() - start < min_seconds:
    fn()
    count += 1
  return (time.perf_counter() - start) / count


def save(name: str, result: dict) -> pathlib.Path:
  path = RESULTS_DIR / f"{name}.json"
  write_json(path, result)
  return path
