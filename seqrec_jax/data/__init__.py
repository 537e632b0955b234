"""Interaction data: containers, one reader per file format, downloads, cache, synthetic data, splits.

`load_dataset(name, ...)` picks the reader and the cache; splits into train / SAE / test users
are in `splits`. Every loader ends in the same arrays (`Interactions`, `ItemAttributes`, see `containers`):

* Item ids are remapped to 1..V-1 contiguous, 0 is padding. Ids are assigned in the order of
  the sorted original ids: numeric order when every original id is a canonical integer
  (``"7"`` but not ``"07"``), byte order of the UTF-8 text otherwise. Users are numbered the
  same way.
* Each user's interactions are sorted by timestamp; ties keep file order (stable sort).
* Users with a single interaction are dropped (the count is logged) *before* items are
  numbered, so every id 1..V-1 occurs in some sequence.
* Item attributes are aligned with these ids: an item missing from the attribute file gets an
  all-False row and its raw id as title; an item that appears only in the attribute file gets no
  id (MovieLens lists movies nobody rated: they are skipped and counted in the log; in a generic
  CSV this is an error unless ``unknown_attribute_items="skip"``).
* Timestamps are int64 seconds in [0, 2**40) (1970 to year 36812). MovieLens files hold integer
  epoch seconds; RecBole's ``.inter`` also decimals (``881250949.0``); a generic CSV column holds
  either epoch seconds (integer or decimal) or ISO date-times (``2019-02-20 13:24:11``), not a
  mix. Anything else is a FILE:LINE error naming the accepted form (`tokenizer.TIMESTAMP_KINDS`).
  Decimals are floored when stored but sort with their full precision.

Attribute files are small and read with the `csv` module, so their fields may be quoted (ML-20M
titles hold commas).

MovieLens items also carry release years (`ItemAttributes.release_years`); `derived` turns them
and the training interaction counts into attributes of their own (`decade:1990s`,
`popularity:head`, `popularity:tail`).
"""

from seqrec_jax.data.containers import (PAD_TOKEN, Dataset, Interactions, ItemAttributes,
                                        build_attributes, build_interactions, default_data_dir,
                                        item_text)
from seqrec_jax.data.csv_format import read_attribute_csv
from seqrec_jax.data.registry import DATASETS, load_dataset
from seqrec_jax.data.synthetic import make_synthetic, make_synthetic_with_truth
