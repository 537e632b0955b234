"""A self-contained HTML report of the interpretation results, with its PNGs beside it.

`report.html` inlines every image as a base64 data URI and uses no script, stylesheet or font from
elsewhere, so it opens offline and can be mailed as one file. Figures are drawn with matplotlib's
Agg canvas on `Figure` objects (no pyplot state); every file is written atomically.
"""

from __future__ import annotations

import base64
import html
import io
import pathlib
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from seqrec_jax.core.files import write_bytes_atomic

REPORT_NAME = "report.html"


def write_report(out_dir, *, attribute_names: Sequence[str], per_attribute: Mapping,
                 latent_auc, fire_rate, labels: Mapping[int, Mapping],
                 top_items: Mapping[int, Sequence[tuple[str, str]]],
                 extra_figures: Mapping[str, Figure] | None = None, heldout: Mapping | None = None,
                 monosemanticity: tuple[np.ndarray, np.ndarray] | None = None,
                 label_counts: Mapping[str, int] | None = None) -> pathlib.Path:
  """Writes the PNGs and `report.html` into `out_dir`; returns the path of `report.html`.

  Args:
    out_dir: directory (created if missing).
    attribute_names: `[G]` names, in the column order of `latent_auc`.
    per_attribute: `interpret.best_per_attribute(...)`: `{"attributes": {name: {...}}, "mean": {...}}`.
    latent_auc: `[M, G]` AUC of every latent for every attribute.
    fire_rate: `[M]` fraction of positions where each latent fires.
    labels: `interpret.label_latents(...)`: `{latent: {attribute, auc, precision, monosemantic}}`;
      one card per entry.
    top_items: per latent, its top items as `(title, attributes)` strings.
    extra_figures: more figures to show (e.g. steering curves), saved as `<name>.png`.
    heldout: `heldout.compare(...)` results (chosen on SAE users, measured on test users, with
      intervals): shown first.
    monosemanticity: `([M], [2d])` monosemanticity of latents and signed dimensions (histogram).
    label_counts: latents labelled per attribute.
  """
  out_dir = pathlib.Path(out_dir)
  attribute_names = list(attribute_names)
  latent_auc = np.asarray(latent_auc, np.float64)
  fire_rate = np.asarray(fire_rate, np.float64)
  if latent_auc.shape != (len(fire_rate), len(attribute_names)):
    raise ValueError(f"latent_auc has shape {latent_auc.shape}, expected "
                     f"({len(fire_rate)}, {len(attribute_names)})")
  ordered = _latents_by_label(labels, attribute_names)

  figures = {
      "best_auc": _comparison_bars(per_attribute, attribute_names, "auc", "ROC AUC"),
      "best_corr": _comparison_bars(per_attribute, attribute_names, "corr", "Pearson correlation"),
      "latent_attribute_auc": _auc_heatmap(latent_auc, ordered, labels, attribute_names),
      "fire_rate": _fire_rate_histogram(fire_rate),
      **({"monosemanticity": _monosemanticity_histogram(*monosemanticity)}
         if monosemanticity is not None else {}),
      **(extra_figures or {}),
  }
  images = {}
  for name, figure in figures.items():
    images[name] = _png_bytes(figure)
    write_bytes_atomic(out_dir / f"{name}.png", images[name])

  page = _page(attribute_names, per_attribute, images, ordered, labels, top_items, fire_rate,
               heldout, label_counts)
  path = out_dir / REPORT_NAME
  write_bytes_atomic(path, page.encode("utf-8"))
  return path


# ---------------------------------------------------------------- figures


def _latents_by_label(labels: Mapping[int, Mapping], attribute_names: Sequence[str]) -> list[int]:
  """Labelled latents grouped by attribute (in attribute order), best AUC first in a group."""
  position = {name: g for g, name in enumerate(attribute_names)}
  return sorted(labels, key=lambda j: (position[labels[j]["attribute"]], -labels[j]["auc"], j))


def _comparison_bars(per_attribute: Mapping, attribute_names: Sequence[str], statistic: str,
                     title: str) -> Figure:
  """Per attribute: the best latent's statistic beside the best raw dimension's."""
  rows = per_attribute["attributes"]
  latent = np.array([_number(rows[name][f"latent_{statistic}"]) for name in attribute_names])
  neuron = np.array([_number(rows[name][f"neuron_{statistic}"]) for name in attribute_names])
  mean = per_attribute["mean"]
  figure = Figure(figsize=(max(6.0, 0.45 * len(attribute_names) + 2), 4.0), layout="constrained")
  axes = figure.subplots()
  where = np.arange(len(attribute_names))
  axes.bar(where - 0.2, latent, 0.4, label=f"best SAE latent (mean "
           f"{_format(mean.get(f'latent_{statistic}'))})", color="tab:orange")
  axes.bar(where + 0.2, neuron, 0.4, label=f"best hidden dimension (mean "
           f"{_format(mean.get(f'neuron_{statistic}'))})", color="tab:blue")
  if statistic == "auc":
    axes.axhline(0.5, color="grey", linewidth=0.8, linestyle="--")
    axes.set_ylim(0.0, 1.0)
  axes.set_xticks(where, attribute_names, rotation=60, ha="right")
  axes.set_ylabel(title)
  axes.set_title(f"{title}: best latent vs best hidden dimension, per attribute")
  axes.legend(loc="lower right", fontsize="small")
  return figure


def _auc_heatmap(latent_auc: np.ndarray, ordered: Sequence[int], labels: Mapping[int, Mapping],
                 attribute_names: Sequence[str]) -> Figure:
  """AUC of the labelled latents (rows, grouped by label) for every attribute (columns)."""
  figure = Figure(figsize=(max(6.0, 0.4 * len(attribute_names) + 3),
                           float(np.clip(0.02 * len(ordered) + 3, 4, 16))), layout="constrained")
  axes = figure.subplots()
  if not ordered:
    axes.text(0.5, 0.5, "no latent fires", ha="center", va="center")
    axes.set_axis_off()
    return figure
  cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="lightgrey")  # grey: undefined AUC
  image = axes.imshow(latent_auc[list(ordered)], aspect="auto", cmap=cmap, vmin=0.0,
                      vmax=1.0, interpolation="nearest")
  axes.set_xticks(np.arange(len(attribute_names)), attribute_names, rotation=60, ha="right")
  label_of_row = np.array([labels[j]["attribute"] for j in ordered])
  group_start = np.flatnonzero(np.r_[True, label_of_row[1:] != label_of_row[:-1]])
  group_end = np.r_[group_start[1:], len(ordered)]
  axes.set_yticks((group_start + group_end - 1) / 2,
                  [f"{label_of_row[s]} ({e - s})" for s, e in zip(group_start, group_end)],
                  fontsize="small")
  for boundary in group_start[1:]:
    axes.axhline(boundary - 0.5, color="black", linewidth=0.5)
  axes.set_ylabel("latents, grouped by their label (count)")
  axes.set_title("ROC AUC of each labelled latent for each attribute")
  figure.colorbar(image, ax=axes, label="ROC AUC")
  return figure


def _fire_rate_histogram(fire_rate: np.ndarray) -> Figure:
  """Histogram of the latents' firing frequencies on a log axis; dead latents counted apart."""
  figure = Figure(figsize=(6.0, 4.0), layout="constrained")
  axes = figure.subplots()
  alive = fire_rate[fire_rate > 0]
  if len(alive):
    low, high = alive.min(), alive.max()
    bins = np.geomspace(low, high * (1 + 1e-9), 40) if high > low else np.array([low / 2, low * 2])
    axes.hist(alive, bins=bins, color="tab:orange")
    axes.set_xscale("log")
  axes.set_xlabel("fraction of positions where the latent fires")
  axes.set_ylabel("latents")
  axes.yaxis.set_major_locator(MaxNLocator(integer=True))
  axes.set_title(f"Firing frequency of {len(fire_rate)} latents "
                 f"({len(fire_rate) - len(alive)} never fire)")
  return figure


def _monosemanticity_histogram(latent: np.ndarray, dimension: np.ndarray) -> Figure:
  """Distributions of monosemanticity (1 - c2/c1) for latents and signed dimensions."""
  figure = Figure(figsize=(6.0, 4.0), layout="constrained")
  axes = figure.subplots()
  bins = np.linspace(0, 1, 21)
  for values, name, color in ((latent, "SAE latents", "tab:orange"),
                              (dimension, "signed hidden dimensions", "tab:blue")):
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if len(v):
      axes.hist(v, bins=bins, density=True, alpha=0.55, color=color,
                label=f"{name} (n={len(v)}, median {np.median(v):.2f})")
  axes.set_xlabel("monosemanticity: 1 - (2nd best / best attribute correlation)")
  axes.set_ylabel("density")
  axes.legend(fontsize="small")
  axes.set_title("How much of each feature's association goes to one attribute")
  return figure


def _png_bytes(figure: Figure) -> bytes:
  buffer = io.BytesIO()
  FigureCanvasAgg(figure)  # draws with Agg whatever pyplot backend made the figure
  figure.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
  return buffer.getvalue()


# ---------------------------------------------------------------- HTML


_STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 80em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 100%; display: block; margin: 1em 0; }
.cards { display: flex; flex-wrap: wrap; gap: 0.8em; }
.card { border: 1px solid #ccc; border-radius: 6px; padding: 0.6em; width: 22em; }
.card h3 { margin: 0 0 0.3em 0; font-size: 1em; }
.mono { color: #1a7f37; font-weight: bold; }
.card ol { margin: 0.3em 0 0 1.2em; padding: 0; font-size: 0.9em; }
.attrs { color: #666; }
"""

_CAPTIONS = {
    "best_auc": "Best latent vs best hidden dimension: ROC AUC",
    "best_corr": "Best latent vs best hidden dimension: Pearson correlation",
    "latent_attribute_auc": "Latent x attribute ROC AUC, latents grouped by label",
    "fire_rate": "Firing frequency of the latents",
    "monosemanticity": "Monosemanticity of latents and hidden dimensions",
    "steer_pareto": "Steering methods per attribute: share@10 against NDCG@10 kept",
}


def _heldout_table(heldout: Mapping, attribute_names: Sequence[str]) -> str:
  """Mean best statistic (chosen on SAE users, measured on test users) with 95 % intervals."""
  e = html.escape
  mean = heldout.get("mean", {})
  rows = ["<table><tr><th>statistic</th><th>best latents</th><th>best dimensions</th>"
          "<th>latents &minus; dimensions</th></tr>"]
  for statistic in mean.get("latent", {}):
    cells = [_interval(mean[f].get(statistic)) for f in ("latent", "dimension", "difference")]
    rows.append(f"<tr><td>{e(statistic)}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
  rows.append("</table>")
  return "".join(rows)


def _interval(entry) -> str:
  if not entry:
    return "&ndash;"
  lo, hi = entry["ci"]
  return f"{_format(entry['value'])} [{_format(lo)}, {_format(hi)}]"

_COLUMNS = (("best_latent", "best latent"), ("latent_auc", "latent AUC"),
            ("best_neuron", "best dimension"), ("neuron_auc", "dimension AUC"),
            ("latent_corr", "latent corr"), ("neuron_corr", "dimension corr"),
            ("latent_precision", "latent precision"), ("neuron_precision", "dimension precision"))


def _page(attribute_names, per_attribute, images, ordered, labels, top_items, fire_rate,
          heldout=None, label_counts=None) -> str:
  e = html.escape
  rows = per_attribute["attributes"]
  table = ["<table><tr><th>attribute</th>"
           + "".join(f"<th>{e(title)}</th>" for _, title in _COLUMNS) + "</tr>"]
  for name in attribute_names:
    table.append(f"<tr><td>{e(name)}</td>"
                 + "".join(f"<td>{_format(rows[name][key])}</td>" for key, _ in _COLUMNS) + "</tr>")
  mean = per_attribute["mean"]
  table.append("<tr><th>mean</th>" + "".join(
      f"<th>{_format(mean.get(key)) if key in mean else ''}</th>" for key, _ in _COLUMNS) + "</tr>")
  table.append("</table>")

  monosemantic = sum(bool(labels[j].get("monosemantic")) for j in labels)
  cards = [_card(j, labels[j], top_items.get(j, ())) for j in ordered]
  figures = "".join(
      f'<h3>{e(_CAPTIONS.get(name, name))}</h3><img alt="{e(name)}" src="data:image/png;base64,'
      f'{base64.b64encode(png).decode("ascii")}">' for name, png in images.items())
  return (
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      f"<title>SAE latents vs hidden dimensions</title><style>{_STYLE}</style></head><body>"
      "<h1>SAE latents vs raw hidden dimensions</h1>"
      f"<p>{len(fire_rate)} latents, {int((fire_rate > 0).sum())} fire at least once; "
      f"{len(labels)} labelled with their best-correlated attribute, {monosemantic} monosemantic. "
      f"Attributes: {e(', '.join(attribute_names))}.</p>"
      + (f"<h2>Chosen on {heldout.get('selection_users', '?')} SAE users, measured on "
         f"{heldout.get('test_users', '?')} test users (95 % bootstrap intervals over users)</h2>"
         + _heldout_table(heldout, attribute_names) if heldout else "")
      + ("<p>Latents labelled per attribute: " + e(", ".join(
          f"{name} {count}" for name, count in label_counts.items())) + "</p>"
         if label_counts else "") +
      f"<p>On the test users alone (chosen and measured there): mean over attributes of the best ROC AUC: latents {_format(mean.get('latent_auc'))}, "
      f"hidden dimensions {_format(mean.get('neuron_auc'))}; of the best correlation: latents "
      f"{_format(mean.get('latent_corr'))}, hidden dimensions {_format(mean.get('neuron_corr'))}. "
      "A hidden dimension is scored as x and as &minus;x. A latent is monosemantic when the AUC and "
      "the precision for its best attribute pass the thresholds of "
      "<code>interpret.label_latents</code>.</p>"
      "<h2>Best latent vs best hidden dimension, per attribute</h2>" + "".join(table)
      + "<h2>Figures</h2>" + figures
      + f"<h2>Labelled latents ({len(labels)})</h2><div class=\"cards\">" + "".join(cards)
      + "</div></body></html>\n")


def _card(latent: int, label: Mapping, items: Sequence[tuple[str, str]]) -> str:
  e = html.escape
  badge = ' <span class="mono">monosemantic</span>' if label.get("monosemantic") else ""
  entries = "".join(f'<li>{e(title)} <span class="attrs">{e(attributes)}</span></li>'
                    for title, attributes in items)
  return (f'<div class="card"><h3>latent {int(latent)}: {e(label["attribute"])}{badge}</h3>'
          f'corr {_format(label.get("corr"))}, AUC {_format(label["auc"])}, '
          f'precision {_format(label["precision"])}'
          f"{'<ol>' + entries + '</ol>' if entries else ''}</div>")


def _number(x) -> float:
  return np.nan if x is None else float(x)


def _format(x) -> str:
  if x is None or (isinstance(x, float) and np.isnan(x)):
    return "&ndash;"
  if isinstance(x, (int, np.integer)):
    return str(int(x))
  return f"{float(x):.3f}"
