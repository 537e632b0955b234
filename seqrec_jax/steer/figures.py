"""Steering plots: the default method's curves, and every method's Pareto front per attribute."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

METHOD_STYLES = {"sae_effect": ("C0", "o"), "sae_auc": ("C1", "s"), "sae_replace": ("C2", "^"),
                 "dimension": ("C3", "v"), "probe": ("C4", "D"), "rerank": ("k", "x"),
                 "diff_means": ("C5", "P"), "random_latent": ("C7", "*")}


def steering_figures(results: dict) -> dict[str, Figure]:
  """The default method's curves, its trade-off, and the per-attribute Pareto plots."""
  out = curve_figures(results)
  if results.get("methods"):
    out["steer_pareto"] = pareto_figure(results)
  return out


def curve_figures(results: dict) -> dict[str, Figure]:
  """Share@10 and NDCG@10 against strength per attribute, and share gained vs NDCG lost."""
  attrs = results["attributes"]
  base = results["baseline"]
  curves = Figure(figsize=(12, 4.5))
  ax_share, ax_ndcg = curves.subplots(1, 2)
  trade = Figure(figsize=(6, 4.5))
  ax_trade = trade.subplots()
  for name, a in attrs.items():
    line, = ax_share.plot(a["strengths"], a["share@10"], marker="o", ms=3, label=name)
    ax_ndcg.plot(a["strengths"], a["ndcg@10"], marker="o", ms=3, color=line.get_color())
    gained = np.asarray(a["share@10"]) - base["share@10"][name]
    lost = base["ndcg@10"] - np.asarray(a["ndcg@10"])
    ax_trade.plot(lost, gained, marker="o", ms=3, color=line.get_color(), label=name)
  ax_share.set(xlabel="edit strength (typical activations)", ylabel="attribute share in top 10",
               title=f"{results['mode']} at {results['positions']} positions")
  ax_ndcg.axhline(base["ndcg@10"], color="gray", ls="--", lw=1, label="no edit")
  ax_ndcg.set(xlabel="edit strength (typical activations)", ylabel="NDCG@10")
  ax_share.legend(fontsize=6, ncol=2)
  ax_trade.set(xlabel="NDCG@10 lost", ylabel="share@10 gained", title="steering trade-off")
  ax_trade.axhline(0, color="gray", lw=0.5)
  ax_trade.axvline(0, color="gray", lw=0.5)
  return {"steer_curves": curves, "steer_tradeoff": trade}


def pareto_figure(results: dict) -> Figure:
  """Per attribute: share@10 against the fraction of baseline NDCG@10 kept, one line per method
  (positive strengths, the unsteered point included); the dashed line marks 80 %, the dotted one
  twice the baseline share, and a black ring the selective points (selectivity >= 1: the knob
  moves its own attribute most there)."""
  base = results["baseline"]
  names = list(results["attributes"])
  cols = 4
  rows = max(1, math.ceil(len(names) / cols))
  figure = Figure(figsize=(4 * cols, 3 * rows), layout="constrained")
  axes = np.atleast_1d(figure.subplots(rows, cols, squeeze=False)).ravel()
  ratio = results.get("table", {}).get("min_ndcg_ratio", 0.8)
  for ax, name in zip(axes, names):
    for method, m in results["methods"].items():
      a = m["attributes"].get(name)
      if a is None:
        continue
      keep = [i for i, st in enumerate(a["strengths"]) if st >= 0]
      kept = np.asarray(a["ndcg@10"])[keep] / max(base["ndcg@10"], 1e-12)
      color, marker = METHOD_STYLES.get(method, (None, "."))
      share = np.asarray(a["share@10"])[keep]
      ax.plot(kept, share, marker=marker, ms=3, lw=1, color=color, label=method)
      if "selectivity" in a:
        selective = np.array([a["selectivity"][i] >= 1.0 for i in keep])
        ax.scatter(kept[selective], share[selective], s=40, facecolors="none",
                   edgecolors="k", linewidths=0.8, zorder=3)
    ax.axvline(ratio, color="gray", ls="--", lw=0.8)
    ax.axhline(base["share@10"][name], color="gray", lw=0.5)
    ax.axhline(2 * base["share@10"][name], color="gray", ls=":", lw=0.8)
    ax.set_title(name, fontsize=9)
    ax.set_xlabel("NDCG@10 kept (fraction of baseline)", fontsize=7)
    ax.set_ylabel("share@10", fontsize=7)
    ax.tick_params(labelsize=6)
  for ax in axes[len(names):]:
    ax.set_visible(False)
  axes[0].legend(fontsize=6)
  figure.suptitle("share@10 against NDCG@10 kept; ringed: selectivity >= 1", fontsize=9)
  return figure
