"""Parse time of an ML-20M-sized `ratings.csv`: this package's NumPy tokenizer against pandas.

    python -m benchmarks.csv_parse [--rows=20000263]

Writes `benchmarks/results/csv_parse.json`. pandas (C engine, and pyarrow engine when installed)
is timed on the same file in the same run, reading the three columns the loader needs with
integer dtypes; neither reports the file and line of a malformed value (the contract
`tests/fixtures/bad/` checks), which the tokenizer keeps.
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile
import time

import numpy as np

from benchmarks import common
from seqrec_jax.data.tokenizer import read_interactions


def write_ratings(path: pathlib.Path, rows: int, seed: int = 0) -> None:
  rng = np.random.default_rng(seed)
  users = np.sort(rng.integers(1, 138_494, rows))
  items = rng.integers(1, 131_263, rows)
  ratings = rng.integers(1, 11, rows) / 2
  times = rng.integers(789_652_009, 1_427_784_002, rows)
  with open(path, "w") as f:
    f.write("userId,movieId,rating,timestamp\n")
    for start in range(0, rows, 1_000_000):
      s = slice(start, start + 1_000_000)
      lines = [f"{u},{i},{r:.1f},{t}" for u, i, r, t in zip(users[s], items[s], ratings[s], times[s])]
      f.write("\n".join(lines) + "\n")


def _best_of(fn, repeats: int) -> float:
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - start)
  return best


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--rows", type=int, default=20_000_263)
  parser.add_argument("--repeats", type=int, default=2)
  args = parser.parse_args()
  env = common.environment()
  with tempfile.TemporaryDirectory() as tmp:
    path = pathlib.Path(tmp) / "ratings.csv"
    write_ratings(path, args.rows)
    ours = _best_of(lambda: read_interactions(
        path, delimiter=",", header=True, encoding="utf-8", user="userId", item="movieId",
        timestamp="timestamp", integer_ids=True), args.repeats)
    result = {"rows": args.rows, "seqrec_jax_s": ours, "rows_per_s": args.rows / ours}
    try:
      import pandas as pd  # pylint: disable=g-import-not-at-top

      columns = dict(usecols=["userId", "movieId", "timestamp"],
                     dtype={"userId": np.int64, "movieId": np.int64, "timestamp": np.int64})
      result["pandas_c_s"] = _best_of(lambda: pd.read_csv(path, engine="c", **columns), args.repeats)
      result["ratio_vs_pandas_c"] = result["pandas_c_s"] / ours
      try:
        import pyarrow  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import

        result["pandas_pyarrow_s"] = _best_of(
            lambda: pd.read_csv(path, engine="pyarrow", **columns), args.repeats)
        result["ratio_vs_pandas_pyarrow"] = result["pandas_pyarrow_s"] / ours
      except ImportError:
        pass
    except ImportError:
      result["pandas"] = "not installed (pip install pandas)"
  reference = result.get("pandas_pyarrow_s", result.get("pandas_c_s"))
  ratio = reference / ours if reference else None
  common.record("csv_parse", env, figure=result["rows_per_s"], unit="rows/s",
                reference=args.rows / reference if reference else None, ratio=ratio,
                summary=f"ratings.csv of {args.rows:,} rows parsed in {ours:.1f} s"
                        + (f" ({ratio:.2f}x the fastest pandas engine)" if ratio else ""),
                **result)


if __name__ == "__main__":
  main()
