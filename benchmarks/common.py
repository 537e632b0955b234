"""What every benchmark records beside its figures: machine, device, versions, load average.

Every benchmark module writes `benchmarks/results/NAME.json` through `save` (or `record`) with at
least `figure`, `unit`, `reference` and `ratio` (ours / reference, higher is better) and the
`environment()` taken before it started. Two environment variables, set by `benchmarks.run`:

* `SEQREC_BENCHMARK_RESULTS_DIR`: write results there instead of `benchmarks/results`;
* `SEQREC_BENCHMARK_QUICK=1`: `time_calls` takes one warm-up and two timed calls (smoke tests).
"""

from __future__ import annotations

import importlib.metadata
import os
import pathlib
import platform
import resource
import sys
import time

import jax

from seqrec_jax.core.files import write_json

RESULTS_DIR = pathlib.Path(__file__).parent / "results"

# Vendor peak dense matmul FLOP/s by device kind (substring of `device_kind`, lower case) and
# dtype; float32 matmuls run as TF32 on these GPUs under JAX's default precision.
PEAK_FLOPS = {
    "h100 pcie": {"bfloat16": 756e12, "float32": 378e12},
    "h100": {"bfloat16": 989e12, "float32": 495e12},  # SXM
    "h200": {"bfloat16": 989e12, "float32": 495e12},
    "a100": {"bfloat16": 312e12, "float32": 156e12},
    "l4": {"bfloat16": 121e12, "float32": 60e12},
    "tpu v4": {"bfloat16": 275e12, "float32": 275e12},
    "tpu v5 lite": {"bfloat16": 197e12, "float32": 197e12},
    "tpu v5e": {"bfloat16": 197e12, "float32": 197e12},
    "tpu v5p": {"bfloat16": 459e12, "float32": 459e12},
    "tpu v6": {"bfloat16": 918e12, "float32": 918e12},
}


def quick() -> bool:
  return os.environ.get("SEQREC_BENCHMARK_QUICK") == "1"


def results_dir() -> pathlib.Path:
  return pathlib.Path(os.environ.get("SEQREC_BENCHMARK_RESULTS_DIR") or RESULTS_DIR)


def _cpu_model() -> str:
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor()


def environment() -> dict:
  import flax
  import numpy
  import optax

  versions = {"python": platform.python_version(), "jax": jax.__version__,
              "flax": flax.__version__, "optax": optax.__version__, "numpy": numpy.__version__}
  for name in ("jaxlib", "torch", "transformers", "scikit-learn"):
    try:  # from the installed metadata: importing torch or transformers takes seconds
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      pass
  device = jax.devices()[0]
  return {
      "machine": platform.machine(),
      "platform": platform.platform(),
      "cpu_model": _cpu_model(),
      "cpu_count": os.cpu_count(),
      "device": f"{device.platform}:{device.device_kind}",
      "device_count": jax.device_count(),
      "load_average_before": os.getloadavg()[0],
      "load_averages_before": list(os.getloadavg()),  # 1, 5 and 15 minutes
      "versions": versions,
      "quick": quick(),
      "glibc_tunables": os.environ.get("GLIBC_TUNABLES"),  # benchmarks.run sets hugetlb=1
      "date": time.strftime("%Y-%m-%d %H:%M:%S"),
  }


def peak_flops_per_second(dtype: str = "float32") -> float | None:
  """Vendor peak dense FLOP/s of device 0 for `dtype` matmuls; None when unknown (e.g. CPU)."""
  device = jax.devices()[0]
  if device.platform == "cpu":
    return None
  kind = device.device_kind.lower()
  for key, peaks in PEAK_FLOPS.items():
    if key in kind:
      return peaks.get(dtype)
  return None


def model_flops_utilisation(flops: float, seconds: float, dtype: str = "float32") -> float | None:
  """`flops / seconds` over the device's peak, or None when the peak is unknown."""
  peak = peak_flops_per_second(dtype)
  return None if peak is None else flops / seconds / peak


def max_rss_mb() -> float:
  """Peak resident memory of this process so far, MiB (Linux reports KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_calls(fn, *, warmup: int = 2, repeats: int = 10, min_seconds: float = 2.0) -> float:
  """Seconds per call of `fn()` (which must block until done): the mean over at least `repeats`
  calls and `min_seconds`, after `warmup` calls. Quick mode: 1 warm-up and 2 calls."""
  if quick():
    warmup, repeats, min_seconds = min(warmup, 1), min(repeats, 2), 0.0
  for _ in range(warmup):
    fn()
  count, start = 0, time.perf_counter()
  while count < repeats or time.perf_counter() - start < min_seconds:
    fn()
    count += 1
  return (time.perf_counter() - start) / count


def save(name: str, result: dict) -> pathlib.Path:
  path = results_dir() / f"{name}.json"
  write_json(path, result)
  return path


def record(name: str, env: dict, *, figure, unit: str, reference, ratio, summary: str,
           **details) -> pathlib.Path:
  """Save `NAME.json`: the headline (`figure` in `unit`, `reference`, `ratio` = ours / reference,
  higher is better; None where there is no reference), a one-line `summary` for the table,
  `details`, the environment before the run and the load average after it."""
  result = {"name": name, "figure": figure, "unit": unit, "reference": reference, "ratio": ratio,
            "summary": summary, **details, **env, "load_average_after": os.getloadavg()[0],
            "command": " ".join([f"python -m benchmarks.{name}", *sys.argv[1:]])}
  path = save(name, result)
  print("wrote", path, flush=True)
  return path
