"""Interpretation: how well latents and raw dimensions detect item attributes.

`statistics` (exact per-feature, per-attribute statistics), `selection` (best feature per
attribute, labels, top examples), `report` (the HTML report), `stage` (the `interpret` stage).
"""

from seqrec_jax.interpret.selection import (best_per_attribute, label_counts, label_latents,
                                            top_examples)
from seqrec_jax.interpret.statistics import attribute_statistics, neuron_statistics
