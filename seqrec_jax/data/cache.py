"""The cache of prepared arrays: `.npz` keyed by a sha256 of the sources and options."""

from __future__ import annotations

import hashlib
import json
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from seqrec_jax.data.containers import Dataset, Interactions, ItemAttributes
from seqrec_jax.core.files import write_atomic
from seqrec_jax.data.download import file_sha256


# 2: `release_years` stored (MovieLens). Files of version 1 lack it; the version is part of the
# key, so they are never read and the dataset is prepared again.
_CACHE_VERSION = 2


# ---------------------------------------------------------------------------------------------
# Cache.


# Options that change how files are fetched, not what they hold.
_FETCH_OPTIONS = ("download", "timeout", "pip_timeout")


def cache_key(name: str, sources: Sequence[pathlib.Path], options: Mapping[str, object]) -> str:
  """sha256 over the format version, the name, the options and the source files' bytes."""
  options = {k: v for k, v in options.items() if k not in _FETCH_OPTIONS}
  h = hashlib.sha256()
  h.update(json.dumps({"version": _CACHE_VERSION, "name": name,
                       "options": {k: repr(v) for k, v in sorted(options.items())}},
                      sort_keys=True).encode())
  for path in sources:
    h.update(path.name.encode() + b"\0")
    h.update(bytes.fromhex(file_sha256(path)))
  return h.hexdigest()


def _dataset_arrays(ds: Dataset) -> dict[str, np.ndarray]:
  x = ds.interactions
  arrays = {
      "name": np.array(ds.name), "offsets": x.offsets, "items": x.items,
      "timestamps": x.timestamps, "num_items": np.array(x.num_items, dtype=np.int64),
      "user_ids": x.user_ids.astype(str), "item_ids": x.item_ids.astype(str),
  }
  if ds.attributes is not None:
    arrays.update(multi_hot=ds.attributes.multi_hot,
                  attribute_names=np.array(ds.attributes.names, dtype=str).reshape(-1),
                  titles=ds.attributes.titles.astype(str))
    if ds.attributes.release_years is not None:
      arrays.update(release_years=ds.attributes.release_years.astype(np.int32))
  return arrays


def _dataset_from_arrays(a: Mapping[str, np.ndarray]) -> Dataset:
  interactions = Interactions(
      offsets=a["offsets"], items=a["items"], timestamps=a["timestamps"],
      num_items=int(a["num_items"]), user_ids=a["user_ids"], item_ids=a["item_ids"])
  attributes = None
  if "multi_hot" in a:
    attributes = ItemAttributes(multi_hot=a["multi_hot"],
                                names=tuple(str(n) for n in a["attribute_names"]),
                                titles=a["titles"], release_years=a.get("release_years"))
  return Dataset(name=str(a["name"]), interactions=interactions, attributes=attributes)


def save_prepared(ds: Dataset, path: pathlib.Path) -> None:
  """Writes the dataset's arrays to `path` (.npz) atomically."""
  write_atomic(path, lambda f: np.savez(f, **_dataset_arrays(ds)))


def load_prepared(path: pathlib.Path) -> Dataset:
  """Reads a dataset written by `save_prepared`."""
  with np.load(path, allow_pickle=False) as z:
    return _dataset_from_arrays({k: z[k] for k in z.files})
