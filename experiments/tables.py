"""Markdown tables of a finished workdir, as pasted into the README.

  python -m experiments.tables --workdir=runs/ml100k [--moderate=8 --strong=32 --min_auc=0.8]
"""

import json
import pathlib

from absl import app, flags

from seqrec_jax import workdir as workdir_lib

_WORKDIR = flags.DEFINE_string("workdir", None, "A workdir after --experiment=pipeline.", required=True)
_MODERATE = flags.DEFINE_float("moderate", 8.0, "Strength reported as moderate.")
_STRONG = flags.DEFINE_float("strong", 32.0, "Strength reported as strong.")
_MIN_AUC = flags.DEFINE_float("min_auc", 0.8, "Steering rows only for genres whose latent AUC >= this.")


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


def _ci(entry, digits=3) -> str:
  if not entry:
    return "n/a"
  lo, hi = entry["ci"]
  return f"{entry['value']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def heldout_table(r) -> str:
  """Mean best statistic over attributes, chosen on SAE users and measured on test users."""
  h = r["heldout"]
  rows = [f"Chosen on {h['selection_users']} SAE users, measured on {h['test_users']} test users; "
          f"95 % intervals from {h['num_samples']} user-bootstrap replicates.\n",
          "| statistic | best latents | best dimensions | latents − dimensions |", "|---|---|---|---|"]
  for statistic in h["mean"]["latent"]:
    rows.append(f"| {statistic} | " + " | ".join(_ci(h["mean"][f].get(statistic)) for f in
                                               ("latent", "dimension", "difference")) + " |")
  m = r.get("monosemanticity", {})
  if m:
    rows.append(f"\nMonosemanticity (median [q25, q75]): latents {_f(m['latent'].get('median'), 2)} "
                f"[{_f(m['latent'].get('q25'), 2)}, {_f(m['latent'].get('q75'), 2)}] over "
                f"{m['latent'].get('count')}, dimensions {_f(m['dimension'].get('median'), 2)} "
                f"[{_f(m['dimension'].get('q25'), 2)}, {_f(m['dimension'].get('q75'), 2)}] over "
                f"{m['dimension'].get('count')}.")
  if r.get("label_counts"):
    rows.append(f"\n{r['num_labelled']} latents labelled: " + ", ".join(
        f"{n} {c}" for n, c in r["label_counts"].items() if c) + ".")
  return "\n".join(rows)


def method_table(r) -> str:
  """Per method: best share@10 at NDCG@10 >= the floor, per attribute, with the knob's
  selectivity there, and the doubled and doubled-and-selective counts."""
  t = r["table"]
  methods = list(t["share_at_min_ndcg"])
  base = r["baseline"]["share@10"]
  sel = t.get("selectivity_at_min_ndcg", {})

  def cell(m, name):
    share = _f(t["share_at_min_ndcg"][m].get(name))
    if sel.get(m, {}).get(name) is None:
      return share
    return f"{share} ({_f(sel[m][name], 1)})"

  rows = ["| attribute | baseline | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
  for name in t["share_at_min_ndcg"][methods[0]] if methods else ():
    rows.append(f"| {name} | {_f(base[name])} | " + " | ".join(cell(m, name) for m in methods)
                + " |")
  rows.append("| **doubled** | | " + " | ".join(f"**{t['doubled'][m]}**" for m in methods) + " |")
  if "doubled_and_selective" in t:
    rows.append("| **doubled and selective** | | " + " | ".join(
        f"**{t['doubled_and_selective'][m]}**" for m in methods) + " |")
  rows.append(f"\nBest share@10 at a positive strength keeping NDCG@10 ≥ "
              f"{100 * t['min_ndcg_ratio']:.0f} % of the baseline ({r['baseline']['ndcg@10']:.4f}, "
              f"{r['num_users']} test users); '**doubled**' counts attributes whose share at least "
              "doubles there.")
  if "doubled_and_selective" in t:
    rows.append("In brackets the knob's selectivity there (its attribute's relative share gain "
                "over the largest of any other attribute, `seqrec_jax.steer.specificity`); "
                "'**doubled and selective**' counts attributes whose share doubles at a strength "
                "where the selectivity is ≥ 1.")
  if r.get("no_control"):
    rows.append(f"No control (in no unedited top 10 of the selection users): "
                f"{', '.join(r['no_control'])}.")
  for direction, groups in r.get("shared_controls", {}).items():
    for group in groups:
      rows.append(f"Shared {direction} control (measured best for each): {', '.join(group)}.")
  return "\n".join(rows)


def composite_table(r) -> str:
  rows = ["| composite | strength | target shares@10 | NDCG@10 | coverage@10 | novelty@10 | ILD@10 |",
          "|---|---|---|---|---|---|---|"]
  for name, c in r.get("composites", {}).items():
    for i, strength in enumerate(c["strengths"]):
      shares = ", ".join(f"{n} {_f(v[i], 2)}" for n, v in c["share@10"].items())
      rows.append(f"| {name} | {strength:g} | {shares} | {_f(c['ndcg@10'][i], 4)} | "
                  f"{_f(c['coverage@10'][i])} | {_f(c['novelty@10'][i], 2)} | {_f(c['ild@10'][i])} |")
  return "\n".join(rows)


def main(argv):
  del argv
  results = workdir_lib.finished_results(workdir_lib.Layout(pathlib.Path(_WORKDIR.value)))
  if (r := results.get("train_recommender")):
    print("### Recommender\n\n" + recommender_table(r) + "\n")
  if (r := results.get("train_sae")):
    keys = ["variant", "layer", "dict_size", "explained_variance", "mse", "l0", "dead_fraction",
            "dense_fraction"]
    print("### SAE\n\n" + json.dumps({k: r.get(k) for k in keys}) + "\n")
    print("original / spliced / zero-ablated NDCG@10: "
          f"{r['original']['ndcg@10']:.4f} / {r['spliced']['ndcg@10']:.4f} / "
          f"{r['zero_ablated']['ndcg@10']:.4f}\n")
  if (r := results.get("interpret")):
    print("### Latents vs dimensions\n\n" + interpret_table(r) + "\n")
    if "heldout" in r:
      print(heldout_table(r) + "\n")
  if (r := results.get("steer")):
    print("### Steering\n\n" + steer_table(r, _MODERATE.value, _STRONG.value, _MIN_AUC.value))
    if "table" in r:
      print("\n" + method_table(r) + "\n")
    if r.get("composites"):
      print(composite_table(r) + "\n")


if __name__ == "__main__":
  app.run(main)
