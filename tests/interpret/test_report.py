import html
import re

import numpy as np
from matplotlib.figure import Figure

from seqrec_jax import interpret
from seqrec_jax.interpret import report

NAMES = ["Action", "Children's", "Film-Noir", "Sci-Fi & Fantasy", "unknown"]


def _inputs():
  rng = np.random.default_rng(0)
  num_rows = 1500
  labels = rng.random((num_rows, len(NAMES))) < [0.3, 0.1, 0.05, 0.2, 0.0]
  values = np.where(rng.random((num_rows, 12)) < 0.05, rng.exponential(size=(num_rows, 12)), 0)
  values[:, 0] = labels[:, 1] * 2.0
  values[:, 5] = 0.0
  values = values.astype(np.float32)
  latent = interpret.attribute_statistics(values, labels)
  neuron = interpret.neuron_statistics(rng.normal(size=(num_rows, 4)).astype(np.float32), labels)
  labelled = interpret.label_latents(latent, NAMES)
  return {
      "attribute_names": NAMES,
      "per_attribute": interpret.best_per_attribute(latent, neuron, NAMES),
      "latent_auc": latent["auc"], "fire_rate": latent["fire_rate"], "labels": labelled,
      "top_items": {j: [(f"Movie <{j}> (1995)", "Action|Sci-Fi")] for j in labelled},
  }


def test_report_is_self_contained_and_names_every_attribute(tmp_path):
  steering = Figure()
  steering.subplots().plot([0, 1], [1, 0])
  path = report.write_report(tmp_path / "out", **_inputs(), extra_figures={"steering": steering})

  page = path.read_text(encoding="utf-8")
  assert path.name == "report.html"
  assert not re.search(r"(?i)(https?|ftp|file):", page)  # ':' never occurs in base64
  assert not re.search(r"(?i)<(script|link|iframe|object|embed|base)\b|url\(|@import", page)
  sources = re.findall(r'(?i)(?:src|href)\s*=\s*"([^"]*)"', page)
  assert len(sources) == 5 and all(s.startswith("data:image/png;base64,") for s in sources)
  for name in NAMES:
    assert html.escape(name) in page
  assert "Movie &lt;0&gt; (1995)" in page and "monosemantic" in page
  for name in ("best_auc", "best_corr", "latent_attribute_auc", "fire_rate", "steering"):
    png = tmp_path / "out" / f"{name}.png"
    assert png.read_bytes().startswith(b"\x89PNG")
  assert not list((tmp_path / "out").glob("*.tmp"))
