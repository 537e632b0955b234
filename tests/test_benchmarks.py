"""Smoke test: `python -m benchmarks.run --quick` on the cheap benchmarks still runs end to end."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHEAP = ("interpret_speed", "eval_throughput", "large_catalog")


def test_quick_benchmarks_write_results(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run(
      [sys.executable, "-m", "benchmarks.run", "--quick", f"--only={','.join(CHEAP)}",
       f"--results_dir={tmp_path}", "--timeout=240"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
  for name in CHEAP:
    assert name in proc.stdout  # a row of the table
    result = json.loads((tmp_path / f"{name}.json").read_text())
    assert {"figure", "unit", "reference", "ratio"} <= set(result)
    assert result["figure"] > 0
    if name != "interpret_speed":  # written through benchmarks.common
      assert {"load_average_before", "versions", "device", "summary"} <= set(result)
      assert result["quick"]
  large = json.loads((tmp_path / "large_catalog.json").read_text())
  rows = large["rows"]
  assert {r["variant"] for r in rows} == {"chunked", "sampled", "sampled_lazy"}
  assert all(r["peak_rss_mb"] > 0 and r["mfu"] is None for r in rows)  # CPU: no MFU
  for entry in large["by_num_items"].values():
    assert entry["sampled_steps_per_s"] > 0 and entry["peak_rss_mib"] > 0


def test_scale_rehearsal_writes_ml20m_files_the_real_loader_reads(tmp_path):
  from benchmarks import scale_rehearsal

  full = scale_rehearsal._sizes(1.0)
  assert (full["users"], full["rated_items"], full["listed_items"], full["ratings"]) == (
      138_493, 26_744, 27_278, 20_000_263)
  env = dict(os.environ, JAX_PLATFORMS="cpu", SEQREC_BENCHMARK_RESULTS_DIR=str(tmp_path))
  proc = subprocess.run(
      [sys.executable, "-m", "benchmarks.scale_rehearsal", "--scale=0.002", "--stages=parse",
       f"--workdir={tmp_path / 'work'}"], cwd=ROOT, env=env, capture_output=True, text=True,
      timeout=120, check=False)
  assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
  result = json.loads((tmp_path / "scale_rehearsal.json").read_text())
  sizes, parsed = result["sizes"], result["stages"]["parse"]
  assert not parsed["from_cache"]
  assert (parsed["interactions"], parsed["users"]) == (sizes["ratings"], sizes["users"])
  assert parsed["items"] == sizes["rated_items"]  # every rated movie occurs; unrated ones skipped
  header = (tmp_path / "work" / "ml-20m" / "ratings.csv").read_text().split("\n", 1)[0]
  assert header == "userId,movieId,rating,timestamp"
