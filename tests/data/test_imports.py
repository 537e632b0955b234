"""The data package's public names (its import graph is checked by `tests/test_imports.py`)."""

from __future__ import annotations

import seqrec_jax.data


def test_public_names_are_unchanged():
  for name in ("PAD_TOKEN", "Dataset", "Interactions", "ItemAttributes", "build_attributes",
               "build_interactions", "default_data_dir", "item_text", "read_attribute_csv",
               "DATASETS", "load_dataset", "make_synthetic", "make_synthetic_with_truth"):
    assert hasattr(seqrec_jax.data, name), name
