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
  rows = json.loads((tmp_path / "large_catalog.json").read_text())["rows"]
  assert {r["variant"] for r in rows} == {"chunked", "sampled"}
  assert all(r["peak_rss_mb"] > 0 and r["mfu"] is None for r in rows)  # CPU: no MFU
