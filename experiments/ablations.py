"""Ablations: which recommender and SAE settings make latents monosemantic, at what accuracy.

  python -m experiments.ablations --workdir=runs/ablations/ml100k
  python -m experiments.ablations --workdir=runs/ablations/synthetic_multi \
      --config=experiments/configs/synthetic.py --config.data.options.second_genre_prob=0.5

Each row of `ABLATIONS` is a set of config overrides. Rows that change only SAE settings share the
baseline recommender (its files are copied into the row's workdir); rows that change the
recommender train their own. Every row runs train_recommender, train_sae and interpret (not steer)
and reports recommender test NDCG@10, SAE explained variance, L0, dense share, spliced NDCG@10 (as a
share of the original), held-out mean best AUC and correlation of latents and dimensions with
their 95 % intervals, and the latents' median monosemanticity. Writes `ablations.json` and
`ablations.md` into --workdir; `--rows` picks a subset (comma-separated names).
"""

from __future__ import annotations

import copy
import json
import pathlib

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import stages
from seqrec_jax import workdir as workdir_lib
from seqrec_jax.core.files import write_atomic, write_json

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/configs/default.py")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for every row's workdir.", required=True)
_ROWS = flags.DEFINE_string("rows", "", "Comma-separated row names (default: all).")

# name -> overrides (dotted config paths). "model."/"train."/"data." keys retrain the recommender.
ABLATIONS = {
    "baseline": {},
    "sae: topk k=32": {"sae.variant": "topk"},
    "sae: topk k=16": {"sae.variant": "topk", "sae.k": 16},
    "sae: topk k=24": {"sae.variant": "topk", "sae.k": 24},
    "sae: topk k=32 M=1024": {"sae.variant": "topk", "sae.dict_size": 1024},
    "sae: topk k=24 M=1024": {"sae.variant": "topk", "sae.k": 24, "sae.dict_size": 1024},
    "sae: batchtopk k=32": {"sae.variant": "batchtopk"},
    "sae: l1 x2": {"sae.l1_coeff": 1.0},
    "sae: l1 x0.5": {"sae.l1_coeff": 0.25},
    "sae: no resampling": {"sae.resample_every_steps": 0},
    "sae: mean bias init": {"sae.decoder_bias_init": "mean"},
    "sae: sqrt_d normalisation": {"sae.normalization": "sqrt_d"},
    "sae: no lr decay": {"sae.decay_fraction": 0.0},
    "layer: blocks_1": {"sae.layer": "blocks_1"},
    "layer: final_norm": {"sae.layer": "final_norm"},
    "recommender: dropout 0.1": {"model.dropout_rate": 0.1},
    "recommender: embeddings x sqrt(d)": {"model.scale_embeddings": True},
    "recommender: sqrt(d) and dropout 0.1": {"model.scale_embeddings": True,
                                             "model.dropout_rate": 0.1},
}
_RECOMMENDER_PREFIXES = ("model.", "train.", "data.", "seed")


def _apply(config, overrides: dict):
  config = copy.deepcopy(config)  # keeps the SAE settings' flat aliases tied to their blocks
  for key, value in overrides.items():
    node = config
    *path, last = key.split(".")
    for part in path:
      node = node[part]
    node[last] = value
  return config


def _row_summary(workdir: pathlib.Path) -> dict:
  results = workdir_lib.finished_results(workdir_lib.Layout(workdir))
  rec, sae, interp = (results[s] for s in ("train_recommender", "train_sae", "interpret"))
  mean = interp["heldout"]["mean"]
  return {
      "ndcg@10": rec["test"]["ndcg@10"],
      "explained_variance": sae.get("explained_variance"), "l0": sae.get("l0"),
      "dense_fraction": sae.get("dense_fraction"), "dead_fraction": sae.get("dead_fraction"),
      "spliced_ratio": sae["spliced"]["ndcg@10"] / max(sae["original"]["ndcg@10"], 1e-12),
      **{f"{family}_{stat}": mean[family].get(stat) for family in ("latent", "dimension", "difference")
         for stat in ("auc", "corr")},
      "latent_monosemanticity": interp["monosemanticity"]["latent"].get("median"),
      "dimension_monosemanticity": interp["monosemanticity"]["dimension"].get("median"),
      "num_labelled": interp["num_labelled"],
  }


def _ci(entry) -> str:
  if not entry:
    return "–"
  lo, hi = entry["ci"]
  return f"{entry['value']:.3f} [{lo:.3f}, {hi:.3f}]"


def table(rows: dict) -> str:
  head = ("| setting | NDCG@10 | EV | L0 | dense | spliced | AUC latents | AUC dims | AUC diff | "
          "corr latents | corr dims | mono (lat / dim) |")
  lines = [head, "|" + "---|" * 12]
  for name, r in rows.items():
    lines.append(
        f"| {name} | {r['ndcg@10']:.4f} | {r['explained_variance']:.3f} | {r['l0']:.1f} | "
        f"{r['dense_fraction']:.2f} | {r['spliced_ratio']:.2f} | {_ci(r['latent_auc'])} | "
        f"{_ci(r['dimension_auc'])} | {_ci(r['difference_auc'])} | {_ci(r['latent_corr'])} | "
        f"{_ci(r['dimension_corr'])} | {r['latent_monosemanticity']:.2f} / "
        f"{r['dimension_monosemanticity']:.2f} |")
  return "\n".join(lines)


def main(argv):
  del argv
  root = pathlib.Path(_WORKDIR.value)
  chosen = [n.strip() for n in _ROWS.value.split(",") if n.strip()] or list(ABLATIONS)
  unknown = sorted(set(chosen) - set(ABLATIONS))
  if unknown:
    raise app.UsageError(f"unknown rows {unknown}; known: {list(ABLATIONS)}")
  base_dir = root / "baseline"
  results_file = root / "ablations.json"
  rows = json.loads(results_file.read_text()) if results_file.exists() else {}
  for name in chosen:
    overrides = ABLATIONS[name]
    config = _apply(_CONFIG.value, overrides)
    workdir = base_dir if name == "baseline" else root / name.replace(": ", "_").replace(" ", "_")
    retrain = any(k.startswith(_RECOMMENDER_PREFIXES) for k in overrides)
    if name != "baseline" and not retrain and not workdir_lib.has_finished(workdir):
      stages.STAGES["train_recommender"](_apply(_CONFIG.value, {}), base_dir)  # skipped when done
      workdir_lib.copy_recommender(workdir_lib.Layout(base_dir), workdir_lib.Layout(workdir))
    logging.info("ablation %r in %s", name, workdir)
    for stage in ("train_recommender", "train_sae", "interpret"):
      stages.STAGES[stage](config, workdir)
    rows[name] = {"overrides": overrides, **_row_summary(workdir)}
    write_json(results_file, rows)
    write_atomic(root / "ablations.md", lambda f: f.write(table(rows).encode() + b"\n"))
  print(table({n: rows[n] for n in rows}))


if __name__ == "__main__":
  app.run(main)
