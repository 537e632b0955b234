"""The headline comparisons over several seeds, with their spread: one command.

  python -m experiments.seeds --workdir=runs/seeds [--seeds=0,1,2] [--config=FILE]
      [--config.FIELD=VALUE ...]

Runs the pipeline once per seed (`DIR/seed_N`, finished stages skipped) and writes `DIR/seeds.json`
and `DIR/seeds.md`: per seed and as mean with standard deviation over seeds, the recommender's test
NDCG@10, the SAE's explained variance, spliced NDCG@10 share and dense fraction, latents against
dimensions (held out, mean over each attribute family), and the steering method table per family:
how many attributes each method doubles at >= 80 % NDCG@10, and how many it doubles while moving
its own attribute most (selectivity >= 1).
"""

from __future__ import annotations

import pathlib

import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from experiments import stages
from seqrec_jax import workdir as workdir_lib
from seqrec_jax.core.files import write_atomic, write_json
from seqrec_jax.data.derived import family_of
from seqrec_jax.steer.sweeps import method_table

_WORKDIR = flags.DEFINE_string("workdir", None, "Folder of the per-seed workdirs.", required=True)
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds to run.")
_CONFIG = config_flags.DEFINE_config_file(
    "config", str(pathlib.Path(__file__).parent / "configs" / "ml100k.py"), "Experiment config file.",
    lock_config=True)


def seed_summary(results: dict[str, dict]) -> dict:
  """The headline numbers of one finished workdir (`workdir.finished_results`)."""
  rec, sae = results["train_recommender"], results["train_sae"]
  interp, steer = results["interpret"], results["steer"]
  out = {"ndcg@10": rec["test"]["ndcg@10"], "explained_variance": sae["explained_variance"],
         "spliced_share": sae["spliced"]["ndcg@10"] / max(sae["original"]["ndcg@10"], 1e-12),
         "dense_fraction": sae["dense_fraction"]}
  families = sorted({family_of(n) for n in interp["heldout"]["attributes"]})
  for family in families:
    names = [n for n in interp["heldout"]["attributes"] if family_of(n) == family]
    for statistic in ("auc", "corr", "f1"):
      pairs = [(a["latent"].get(statistic), a["dimension"].get(statistic))
               for a in (interp["heldout"]["attributes"][n] for n in names)]
      pairs = [(l["value"], d["value"]) for l, d in pairs if l and d]
      if pairs:
        lat, dim = np.mean(pairs, axis=0)
        out[f"{family}/{statistic}/latent"], out[f"{family}/{statistic}/dimension"] = lat, dim
        out[f"{family}/{statistic}/difference"] = lat - dim
    steered = [n for n in names if n in steer["baseline"]["share@10"]]
    subset = {m: {**v, "attributes": {n: a for n, a in v["attributes"].items() if n in steered}}
              for m, v in steer["methods"].items()}
    table = method_table(subset, steer["baseline"], steer["table"]["min_ndcg_ratio"])
    out[f"{family}/steerable"] = sum(1 for n in steered if n in steer["methods"]
                                     [next(iter(steer["methods"]))]["attributes"])
    for method in steer["methods"]:
      out[f"{family}/doubled/{method}"] = table["doubled"][method]
      out[f"{family}/doubled_and_selective/{method}"] = table["doubled_and_selective"][method]
  return out


def aggregate(per_seed: dict[str, dict]) -> dict:
  """`{key: {"mean", "std", "min", "max", "values"}}` over the seeds that report the key."""
  keys = sorted({k for s in per_seed.values() for k in s})
  out = {}
  for key in keys:
    values = [s[key] for s in per_seed.values() if key in s and s[key] is not None]
    out[key] = {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1))
                if len(values) > 1 else 0.0, "min": float(np.min(values)),
                "max": float(np.max(values)), "values": [float(v) for v in values]}
  return out


def markdown(summary: dict, seeds) -> str:
  lines = [f"| quantity | mean ± std over seeds {', '.join(seeds)} | per seed |", "|---|---|---|"]
  for key, v in summary.items():
    digits = 0 if "/doubled" in key or key.endswith("steerable") else 4
    per = " / ".join(f"{x:.{digits}f}" for x in v["values"])
    lines.append(f"| {key} | {v['mean']:.{digits or 1}f} ± {v['std']:.{digits or 1}f} | {per} |")
  return "\n".join(lines)


def main(argv):
  del argv
  root = pathlib.Path(_WORKDIR.value)
  per_seed = {}
  for seed in _SEEDS.value:
    config = _CONFIG.value
    config.seed = int(seed)  # the config is locked: existing fields only
    workdir = root / f"seed_{seed}"
    logging.info("seeds: seed %s in %s", seed, workdir)
    stages.pipeline(config, workdir)
    per_seed[seed] = seed_summary(workdir_lib.finished_results(workdir_lib.Layout.of(workdir,
                                                                                     config)))
  summary = aggregate(per_seed)
  write_json(root / "seeds.json", {"per_seed": per_seed, "summary": summary})
  text = markdown(summary, _SEEDS.value)
  write_atomic(root / "seeds.md", lambda f: f.write(text.encode() + b"\n"))
  print(text)


if __name__ == "__main__":
  app.run(main)
