"""Markdown tables of a finished workdir, as pasted into the README.

  python -m experiments.tables --workdir=runs/ml100k [--moderate=8 --strong=32 --min_auc=0.8]
"""

import json
import pathlib

from absl import app, flags

_WORKDIR = flags.DEFINE_string("workdir", None, "A workdir after --experiment=pipeline.", required=True)
_MODERATE = flags.DEFINE_float("moderate", 8.0, "Strength reported as moderate.")
_STRONG = flags.DEFINE_float("strong", 32.0, "Strength reported as strong.")
_MIN_AUC = flags.DEFINE_float("min_auc", 0.8, "Steering rows only for genres whose latent AUC >= this.")


def _load(workdir: pathlib.Path, name: str):
  path = workdir / name
  return json.loads(path.read_text()) if path.exists() else None


def _f(x, digits=3):
  return "n/a" if x is None else f"{x:.{digits}f}"


def recommender_table(r) -> str:
  t, v = r["test"], r["val"]
  return "\n".join([
      "| dataset | model | protocol | seen filtered | test NDCG@10 | test HR@10 | test MRR@10 | "
      "test Coverage@10 | val NDCG@10 | steps | train s |",
      "|---|---|---|---|---|---|---|---|---|---|---|",
      f"| {r['dataset']} | {r['model']} | {r['protocol']} | {r['filter_seen']} | "
      f"{_f(t['ndcg@10'], 4)} | {_f(t['hr@10'], 4)} | {_f(t['mrr@10'], 4)} | "
      f"{_f(t['coverage@10'])} | {_f(v['ndcg@10'], 4)} | {r['steps']} | {r['train_seconds']:.0f} |",
  ])


def interpret_table(r) -> str:
  rows = ["| attribute | best latent | latent AUC | best dim | dim AUC | latent corr | dim corr |",
          "|---|---|---|---|---|---|---|"]
  for name, a in r["attributes"].items():
    rows.append(f"| {name} | {a['best_latent']} | {_f(a['latent_auc'])} | {a['best_neuron']} | "
                f"{_f(a['neuron_auc'])} | {_f(a['latent_corr'])} | {_f(a['neuron_corr'])} |")
  m = r["mean"]
  rows.append(f"| **mean** | | **{_f(m['latent_auc'])}** | | **{_f(m['neuron_auc'])}** | "
              f"**{_f(m['latent_corr'])}** | **{_f(m['neuron_corr'])}** |")
  return "\n".join(rows)


def steer_table(r, moderate: float, strong: float, min_auc: float) -> str:
  base = r["baseline"]
  rows = [f"| genre | latent (AUC) | baseline share | share @ +{moderate:g} | NDCG@10 @ +{moderate:g} "
          f"| share @ +{strong:g} | NDCG@10 @ +{strong:g} | share @ -{strong:g} |",
          "|---|---|---|---|---|---|---|---|"]
  for name, a in r["attributes"].items():
    if (a.get("latent_auc") or 0) < min_auc:
      continue
    at = {s: i for i, s in enumerate(a["strengths"])}
    get = lambda key, s: a[key][at[s]] if s in at else None  # noqa: E731
    rows.append(f"| {name} | {a['latent']} ({_f(a['latent_auc'], 2)}) | {_f(base['share@10'][name])} "
                f"| {_f(get('share@10', moderate))} | {_f(get('ndcg@10', moderate), 4)} "
                f"| {_f(get('share@10', strong))} | {_f(get('ndcg@10', strong), 4)} "
                f"| {_f(get('share@10', -strong))} |")
  rows.append(f"\nBaseline NDCG@10 {base['ndcg@10']:.4f} over {base['num_users']} test users "
              f"({r['mode']} at {r['positions']} positions, error-preserving {r['error_preserving']}).")
  return "\n".join(rows)


def main(argv):
  del argv
  workdir = pathlib.Path(_WORKDIR.value)
  if (r := _load(workdir, "results.json")):
    print("### Recommender\n\n" + recommender_table(r) + "\n")
  if (r := _load(workdir, "sae/results.json")):
    keys = ["variant", "layer", "dict_size", "explained_variance", "mse", "l0", "dead_fraction",
            "dense_fraction"]
    print("### SAE\n\n" + json.dumps({k: r.get(k) for k in keys}) + "\n")
    print("original / spliced / zero-ablated NDCG@10: "
          f"{r['original']['ndcg@10']:.4f} / {r['spliced']['ndcg@10']:.4f} / "
          f"{r['zero_ablated']['ndcg@10']:.4f}\n")
  if (r := _load(workdir, "interpret/results.json")):
    print("### Latents vs dimensions\n\n" + interpret_table(r) + "\n")
  if (r := _load(workdir, "steer/results.json")):
    print("### Steering\n\n" + steer_table(r, _MODERATE.value, _STRONG.value, _MIN_AUC.value))


if __name__ == "__main__":
  app.run(main)
