"""Speed of `interpret.attribute_statistics` against a loop of scikit-learn `roc_auc_score` calls.

    python -m benchmarks.interpret_speed                      # 1,000,000 positions (issue 4)
    python -m benchmarks.interpret_speed --num_positions 100000

Synthetic SAE-like data: `num_latents` latents, ~`nonzero_fraction` of the entries nonzero
(exponential activations at random places), plus one latent per attribute that fires, with
probability 0.8, where its attribute is present (so that the statistics have something to find).
Labels are item attributes, as in the real data: `num_items` items with multi-hot attributes whose
rates run from rare (0.2 %) to common (40 %) like MovieLens genres, and positions that draw items
with a Zipf-like popularity.

Timed: `attribute_statistics` (all statistics: AUC, correlation, precision, fraction fired, mean
activation) over all positions, and a loop of `roc_auc_score` over a random subset of
(latent, attribute) pairs on a random subsample of `sklearn_rows` rows (the paper's code samples
200,000 rows and loops over pairs). The loop time is extrapolated linearly to all pairs.
`ratio` = (sklearn seconds per pair-row) / (our seconds per pair-row), where a pair-row is one
(latent, attribute) pair scored on one row; ours computes five statistics per pair, sklearn one.
Results go to `benchmarks/results/interpret_speed.json`.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import sys
import time

import numpy as np
import scipy
import sklearn
from sklearn.metrics import roc_auc_score

from seqrec_jax import interpret
from seqrec_jax.core.files import write_json

RESULTS_PATH = pathlib.Path(__file__).parent / "results" / "interpret_speed.json"


def synthetic_activations(rng, *, num_positions, num_latents, num_attributes, num_items,
                          nonzero_fraction):
  """-> (`values[N, M]` float32 mostly zero, `labels[N, G]` bool, `item_ids[N]`)."""
  attribute_rate = np.geomspace(0.002, 0.4, num_attributes)
  item_attributes = rng.random((num_items, num_attributes)) < attribute_rate
  popularity = 1.0 / np.arange(1, num_items + 1) ** 0.8
  item_ids = rng.choice(num_items, size=num_positions, p=popularity / popularity.sum())
  labels = item_attributes[item_ids]

  values = np.zeros((num_positions, num_latents), np.float32)
  flat = values.reshape(-1)
  num_nonzero = int(nonzero_fraction * values.size)
  flat[rng.integers(0, values.size, num_nonzero)] = rng.exponential(size=num_nonzero)
  planted = min(num_latents, num_attributes)
  fires = labels[:, :planted] & (rng.random((num_positions, planted)) < 0.8)
  values[:, :planted] = np.where(fires, 1.0 + rng.exponential(size=fires.shape), 0.0)
  return values, labels, item_ids


def time_sklearn_loop(rng, values, labels, *, rows, pairs):
  """Seconds for `pairs` roc_auc_score calls on a `rows` subsample, and the AUCs and pairs."""
  sample = rng.choice(len(values), size=min(rows, len(values)), replace=False)
  latent = rng.integers(0, values.shape[1], pairs)
  attribute = rng.integers(0, labels.shape[1], pairs)
  sample_values, sample_labels = values[sample], labels[sample]
  keep = sample_labels[:, attribute].any(axis=0) & ~sample_labels[:, attribute].all(axis=0)
  latent, attribute = latent[keep], attribute[keep]
  start = time.perf_counter()
  aucs = [roc_auc_score(sample_labels[:, g], sample_values[:, j])
          for j, g in zip(latent, attribute)]
  seconds = time.perf_counter() - start
  return seconds, np.array(aucs), (sample_values, sample_labels, latent, attribute)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--num_positions", type=int, default=1_000_000)
  parser.add_argument("--num_latents", type=int, default=512)
  parser.add_argument("--num_attributes", type=int, default=19)
  parser.add_argument("--num_items", type=int, default=3700)
  parser.add_argument("--nonzero_fraction", type=float, default=0.03)
  parser.add_argument("--sklearn_rows", type=int, default=200_000)
  parser.add_argument("--sklearn_pairs", type=int, default=48)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--output", type=pathlib.Path, default=RESULTS_PATH)
  args = parser.parse_args(argv)

  rng = np.random.default_rng(args.seed)
  values, labels, _ = synthetic_activations(
      rng, num_positions=args.num_positions, num_latents=args.num_latents,
      num_attributes=args.num_attributes, num_items=args.num_items,
      nonzero_fraction=args.nonzero_fraction)
  num_rows, num_latents = values.shape
  num_attributes = labels.shape[1]
  measured_nonzero = float(np.count_nonzero(values) / values.size)

  loadavg_before = os.getloadavg()
  print(f"load average before: {loadavg_before[0]:.2f} {loadavg_before[1]:.2f} "
        f"{loadavg_before[2]:.2f} on {os.cpu_count()} CPUs", flush=True)
  start = time.perf_counter()
  interpret.attribute_statistics(values, labels)
  ours_seconds = time.perf_counter() - start
  print(f"attribute_statistics: {num_rows:,} positions x {num_latents} latents x "
        f"{num_attributes} attributes ({measured_nonzero:.1%} nonzero): {ours_seconds:.2f} s",
        flush=True)

  sklearn_seconds, sklearn_auc, (sample_values, sample_labels, latent, attribute) = (
      time_sklearn_loop(rng, values, labels, rows=args.sklearn_rows, pairs=args.sklearn_pairs))
  sample_rows, pairs_timed = len(sample_values), len(latent)
  all_pairs = num_latents * num_attributes
  reference_seconds = sklearn_seconds / pairs_timed * all_pairs
  ours_per_pair_row = ours_seconds / (all_pairs * num_rows)
  sklearn_per_pair_row = sklearn_seconds / (pairs_timed * sample_rows)
  ratio = sklearn_per_pair_row / ours_per_pair_row
  ours_on_sample = interpret.attribute_statistics(sample_values, sample_labels)["auc"]
  max_auc_difference = float(np.abs(ours_on_sample[latent, attribute] - sklearn_auc).max())
  loadavg_after = os.getloadavg()
  print(f"sklearn roc_auc_score: {pairs_timed} pairs x {sample_rows:,} rows in "
        f"{sklearn_seconds:.2f} s; extrapolated to all {all_pairs} pairs: "
        f"{reference_seconds:.1f} s (on the {sample_rows:,}-row subsample)")
  print(f"speed-up per pair-row (sklearn s / (pair*row) over ours): {ratio:.0f}x; "
        f"max |AUC ours - sklearn| on the timed pairs: {max_auc_difference:.1e}")
  print(f"load average after: {loadavg_after[0]:.2f} {loadavg_after[1]:.2f} "
        f"{loadavg_after[2]:.2f}")

  write_json(args.output, {
      "figure": ours_seconds,
      "unit": "s",
      "figure_definition": "wall seconds of interpret.attribute_statistics (auc, corr, precision, "
                           "frac_fired, mean_act, fire_rate) over all positions, one run",
      "reference": reference_seconds,
      "reference_definition": "wall seconds of a loop of sklearn.metrics.roc_auc_score over all "
                              "latent x attribute pairs on the sklearn_rows subsample, "
                              "extrapolated linearly from sklearn_pairs_timed pairs",
      "ratio": ratio,
      "ratio_definition": "(sklearn seconds per pair-row) / (ours seconds per pair-row); a "
                          "pair-row is one (latent, attribute) pair on one row; ours computes "
                          "five statistics per pair, sklearn only the AUC",
      "num_positions": num_rows, "num_latents": num_latents, "num_attributes": num_attributes,
      "nonzero_fraction": measured_nonzero, "sklearn_rows": sample_rows,
      "sklearn_pairs_timed": pairs_timed, "sklearn_seconds_timed": sklearn_seconds,
      "max_auc_difference_vs_sklearn": max_auc_difference,
      "loadavg_before": list(loadavg_before), "loadavg_after": list(loadavg_after),
      "machine": {"platform": platform.platform(), "processor": platform.processor(),
                  "cpu_count": os.cpu_count()},
      "versions": {"python": sys.version.split()[0], "numpy": np.__version__,
                   "scipy": scipy.__version__, "sklearn": sklearn.__version__},
      "command": "python -m benchmarks.interpret_speed " + " ".join(sys.argv[1:] if argv is None
                                                                    else argv),
  })
  print(f"wrote {args.output}")


if __name__ == "__main__":
  main()
