"""Every benchmark in one command, one after another, each in its own process; one table at the end.

    python -m benchmarks.run                       # full sizes; minutes (large_catalog the longest)
    python -m benchmarks.run --quick               # small sizes, unoptimised XLA: a smoke test
    python -m benchmarks.run --only train_throughput,eval_throughput

Each benchmark writes `benchmarks/results/NAME.json` (or `--results_dir/NAME.json`) with `figure`,
`unit`, `reference`, `ratio` (ours / reference, higher is better), the machine, device, versions
and the load average before it started (`benchmarks.common`). On a 2-core machine another busy
process slows a benchmark several-fold: the table repeats each run's load average, and numbers
taken with a load above ~1.5 should be read as such.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

from benchmarks.common import RESULTS_DIR
from seqrec_jax.core import host_memory

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Huge pages for XLA's (and torch's) per-step buffers, as the command line sets them
# (`core.host_memory`); both sides of every comparison get them; --no_hugepages turns it off.
HUGEPAGES = host_memory.TUNABLE

# name -> (extra arguments at full size, extra arguments in quick mode)
BENCHMARKS = {
    "train_throughput": ([], ["--num_items=300,2000", "--batch_size=16", "--max_len=16"]),
    "eval_throughput": ([], ["--num_items=1000", "--num_users=256", "--batch_size=128",
                             "--num_blocks=1"]),
    "sae_throughput": ([], ["--batch_size=256"]),
    "interpret_speed": ([], ["--num_positions=20000", "--sklearn_rows=5000",
                             "--sklearn_pairs=4"]),
    "large_catalog": ([], ["--num_items=5000", "--chunk_size=2048", "--num_negatives=256",
                           "--batch_size=16", "--max_len=16", "--hidden_dim=16",
                           "--num_blocks=1", "--steps=1"]),
}


def available() -> list[str]:
  return [name for name in BENCHMARKS if (ROOT / "benchmarks" / f"{name}.py").exists()]


def run_one(name: str, quick: bool, results_dir: pathlib.Path, timeout: float,
            hugepages: bool = True) -> dict:
  full, small = BENCHMARKS[name]
  cmd = [sys.executable, "-m", f"benchmarks.{name}", *(small if quick else full)]
  if name == "interpret_speed":  # writes to its own --output path
    cmd.append(f"--output={results_dir / 'interpret_speed.json'}")
  env = dict(os.environ, SEQREC_BENCHMARK_RESULTS_DIR=str(results_dir))
  if hugepages:
    env = host_memory.environment_with_huge_pages(env)
  if quick:  # figures are meaningless anyway: compile fast (a third of the time of -O2 on CPU)
    env["SEQREC_BENCHMARK_QUICK"] = "1"
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
  load = os.getloadavg()[0]
  print(f"\n=== {name} (load average {load:.2f}): {' '.join(cmd[1:])}", flush=True)
  start = time.perf_counter()
  try:
    proc = subprocess.run(cmd, cwd=ROOT, env=env, timeout=timeout)
    status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
  except subprocess.TimeoutExpired:
    status = f"timeout {timeout:.0f}s"
  seconds = time.perf_counter() - start
  path = results_dir / f"{name}.json"
  result = json.loads(path.read_text()) if status == "ok" and path.exists() else {}
  if status == "ok" and not result:
    status = "no result file"
  return {"name": name, "status": status, "seconds": seconds, "load": load, **{
      k: result.get(k) for k in ("figure", "unit", "reference", "ratio", "summary")}}


def _fmt(value, spec=".4g") -> str:
  return "-" if value is None else format(value, spec)


def table(rows: list[dict]) -> str:
  header = ("benchmark", "figure", "unit", "reference", "ratio", "load", "time", "status / notes")
  lines = [header]
  for r in rows:
    notes = r["status"] if r["status"] != "ok" else (r.get("summary") or "")
    lines.append((r["name"], _fmt(r["figure"]), r["unit"] or "-", _fmt(r["reference"]),
                  _fmt(r["ratio"], ".3g"), f"{r['load']:.2f}", f"{r['seconds']:.0f}s", notes))
  widths = [max(len(str(line[i])) for line in lines) for i in range(len(header) - 1)]
  out = []
  for i, line in enumerate(lines):
    out.append("  ".join(str(c).ljust(w) for c, w in zip(line, widths)) + "  " + str(line[-1]))
    if i == 0:
      out.append("-" * len(out[0]))
  return "\n".join(out)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
  parser.add_argument("--only", default="", help="comma-separated benchmark names")
  parser.add_argument("--skip", default="", help="comma-separated benchmark names")
  parser.add_argument("--results_dir", type=pathlib.Path, default=RESULTS_DIR)
  parser.add_argument("--timeout", type=float, default=3 * 3600, help="seconds per benchmark")
  parser.add_argument("--no_hugepages", action="store_true",
                      help=f"do not set GLIBC_TUNABLES={HUGEPAGES} for the benchmarks")
  args = parser.parse_args(argv)
  names = available()
  if args.only:
    unknown = set(args.only.split(",")) - set(BENCHMARKS)
    if unknown:
      parser.error(f"unknown benchmarks {sorted(unknown)}; known: {list(BENCHMARKS)}")
    names = [n for n in names if n in args.only.split(",")]
  names = [n for n in names if n not in args.skip.split(",")]
  args.results_dir.mkdir(parents=True, exist_ok=True)
  rows = [run_one(name, args.quick, args.results_dir.resolve(), args.timeout,
                  not args.no_hugepages) for name in names]
  print("\n" + table(rows))
  print(f"\nresults in {args.results_dir}; ratio = ours / reference (higher is better)")
  return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
  sys.exit(main())
