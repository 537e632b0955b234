"""The report: `DIR/interpret/report.html` (with its PNGs) from every finished stage's artefact.

The interpret stage writes it; the steer stage rewrites it with the steering plots. It reads only
artefacts (`seqrec_jax.workdir`), so it can be rerun on any finished workdir.
"""

from __future__ import annotations

import pathlib

from seqrec_jax import workdir as workdir_lib
from seqrec_jax.core import distributed, stage_record
from seqrec_jax.interpret import report
from seqrec_jax.steer import figures


def run(config, workdir: str | pathlib.Path) -> pathlib.Path | None:
  """(Re)writes the report from the interpretation and, when finished, the steering results."""
  layout = workdir_lib.Layout.of(workdir, config)
  if not distributed.is_main_process():
    return None
  interpretation = workdir_lib.load_interpretation(layout)
  steering = None
  if workdir_lib.has_finished(layout.steer):
    try:
      steering = workdir_lib.load_steering(layout)
    except stage_record.StageMismatchError:
      pass  # steered from an interpretation redone since: no plots until it is redone too
  results, stats = interpretation.results, interpretation.statistics
  top_items = {int(j): [(x["title"], x["attributes"]) for x in ex["items"]]
               for j, ex in results["top_examples"].items()}
  return report.write_report(
      layout.interpret, attribute_names=stats.attribute_names,
      per_attribute={"attributes": results["attributes"], "mean": results["mean"]},
      latent_auc=stats.tables["latent"]["auc"], fire_rate=stats.tables["latent"]["fire_rate"],
      labels={int(j): v for j, v in results["labels"].items()}, top_items=top_items,
      extra_figures=figures.steering_figures(steering.results) if steering else None,
      heldout=results.get("heldout"),
      monosemanticity=(stats.latent_monosemanticity, stats.neuron_monosemanticity),
      label_counts=results.get("label_counts"))
