"""Parse time of an ML-20M-sized `ratings.csv`: `read_interactions` against its own tokenizer.

    python -m benchmarks.csv_parse [--rows=20000263]

Writes `benchmarks/results/csv_parse.json`. The headline ratio is `read_interactions` (the
pyarrow fast path, `seqrec_jax.data.arrow_csv`) against the same function with `fast_path=False`
(the NumPy tokenizer alone, the parser before the fast path), both timed in this run on this file.
pyarrow's CSV reader and pandas' C reader are timed directly too (the three columns the loader
needs, as int64), to show which library is the faster on this data.
"""

from __future__ import annotations

import argparse
import io
import pathlib
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from benchmarks import common
from seqrec_jax.data import arrow_csv
from seqrec_jax.data.tokenizer import read_interactions

_COLUMNS = ("userId", "movieId", "timestamp")


def write_ratings(path: pathlib.Path, rows: int, seed: int = 0) -> None:
  """ML-20M-format ratings (`userId,movieId,rating,timestamp`, ratings like `3.5`)."""
  rng = np.random.default_rng(seed)
  users = np.sort(rng.integers(1, 138_494, rows))
  items = rng.integers(1, 131_263, rows)
  ratings = rng.integers(1, 11, rows) / 2
  times = rng.integers(789_652_009, 1_427_784_002, rows)
  text = pa.array([f"{r:.1f}" for r in np.arange(11) / 2])  # "0.0" .. "5.0" by twice the value
  rating_text = pa.DictionaryArray.from_arrays(pa.array((ratings * 2).astype(np.int32)), text)
  table = pa.table({"userId": users, "movieId": items, "rating": rating_text.cast(pa.string()),
                    "timestamp": times})
  with open(path, "wb") as f:
    f.write(b"userId,movieId,rating,timestamp\n")
    pa_csv.write_csv(table, f, write_options=pa_csv.WriteOptions(include_header=False,
                                                                  quoting_style="none"))


def _best_of(fns: dict, repeats: int) -> dict[str, tuple[float, float]]:
  """name -> (best wall s, best CPU s of this process), the functions taking turns each repeat
  so that they meet the same load on a shared machine."""
  best = {name: (float("inf"), float("inf")) for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      wall, cpu = time.perf_counter(), time.process_time()
      fn()
      wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
      best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
  return best


def _pyarrow_direct(path: pathlib.Path) -> None:
  names = [f"f{j}" for j in range(4)]
  table = pa_csv.read_csv(
      pa.py_buffer(path.read_bytes()).slice(len(b"userId,movieId,rating,timestamp\n")),
      read_options=pa_csv.ReadOptions(column_names=names, use_threads=arrow_csv.USE_THREADS),
      parse_options=pa_csv.ParseOptions(quote_char=False),
      convert_options=pa_csv.ConvertOptions(include_columns=["f0", "f1", "f3"],
                                            column_types=dict.fromkeys(names, pa.int64())))
  [c.to_numpy() for c in table.columns]


def _pandas_c(path: pathlib.Path, pd) -> None:
  df = pd.read_csv(io.BytesIO(path.read_bytes()), engine="c", usecols=list(_COLUMNS),
                   dtype=dict.fromkeys(_COLUMNS, np.int64))
  [df[c].to_numpy() for c in _COLUMNS]


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--rows", type=int, default=20_000_263)
  parser.add_argument("--repeats", type=int, default=2)
  args = parser.parse_args()
  env = common.environment()
  kwargs = dict(delimiter=",", header=True, encoding="utf-8", user="userId", item="movieId",
                timestamp="timestamp", integer_ids=True, timestamp_kind="integer")
  with tempfile.TemporaryDirectory() as tmp:
    path = pathlib.Path(tmp) / "ratings.csv"
    write_ratings(path, args.rows)
    fns = {"seqrec_jax": lambda: read_interactions(path, **kwargs),
           "tokenizer": lambda: read_interactions(path, fast_path=False, **kwargs),
           "pyarrow_csv": lambda: _pyarrow_direct(path)}
    try:
      import pandas as pd  # pylint: disable=g-import-not-at-top

      fns["pandas_c"] = lambda: _pandas_c(path, pd)
    except ImportError:
      pass
    best = _best_of(fns, args.repeats)
  ours, tokenizer = best["seqrec_jax"][0], best["tokenizer"][0]
  result = {"rows": args.rows, "seqrec_jax_s": ours, "rows_per_s": args.rows / ours,
            "tokenizer_s": tokenizer, "ratio_vs_tokenizer": tokenizer / ours,
            "cpu_ratio_vs_tokenizer": best["tokenizer"][1] / best["seqrec_jax"][1]}
  for name, (wall, cpu) in best.items():
    result[f"{name}_s"], result[f"{name}_cpu_s"] = wall, cpu
  if "pandas_c" in best:
    result["ratio_vs_pandas_c"] = best["pandas_c"][0] / ours
  else:
    result["pandas"] = "not installed (pip install pandas)"
  ratio = tokenizer / ours
  print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                 for k, v in result.items()), flush=True)
  common.record("csv_parse", env, figure=result["rows_per_s"], unit="rows/s",
                reference=args.rows / tokenizer, ratio=ratio,
                summary=f"ratings.csv of {args.rows:,} rows parsed in {ours:.1f} s ({ratio:.2f}x "
                        f"the tokenizer alone, {tokenizer:.1f} s)",
                **result)


if __name__ == "__main__":
  main()
