"""Interaction data: containers, one reader per file format, downloads, cache, synthetic data, splits.

Every loader ends in the same arrays (`Interactions`, `ItemAttributes`, see `containers`);
`load_dataset(name, ...)` picks the reader and the cache. Splits into train / SAE / test users
are in `splits`.
"""

from seqrec_jax.data.containers import (PAD_TOKEN, Dataset, Interactions, ItemAttributes,
                                        build_attributes, build_interactions, default_data_dir,
                                        item_text)
from seqrec_jax.data.csv_format import read_attribute_csv
from seqrec_jax.data.registry import DATASETS, load_dataset
from seqrec_jax.data.synthetic import make_synthetic, make_synthetic_with_truth
