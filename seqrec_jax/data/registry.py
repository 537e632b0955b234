"""`load_dataset(name, ...)`: every dataset by name, from the cache when its sources are unchanged."""

from __future__ import annotations

import os
import pathlib
import time
import zipfile

from absl import logging

from seqrec_jax.core import distributed
from seqrec_jax.core.errors import DataError
from seqrec_jax.data.cache import cache_key, load_prepared, save_prepared
from seqrec_jax.data.containers import Dataset, default_data_dir
from seqrec_jax.data.csv_format import csv_sources, load_csv
from seqrec_jax.data.download import movielens_sources
from seqrec_jax.data.movielens import load_movielens
from seqrec_jax.data.synthetic import make_synthetic


DATASETS = ("ml-100k", "ml-1m", "ml-20m", "csv", "synthetic")


# ---------------------------------------------------------------------------------------------
# Entry point.


def load_dataset(name: str, *, data_dir: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None, use_cache: bool = True,
                 **options) -> Dataset:
  """Loads a dataset by name, from the cache of prepared arrays when the sources are unchanged.

  Args:
    name: one of `DATASETS`:
      * "ml-100k": `u.data` + `u.item` (+ `u.genre`) or RecBole's `ml-100k.inter` +
        `ml-100k.item` in `data_dir`; if absent, downloaded from GroupLens, else taken from the
        `recbole==1.2.1` wheel on PyPI (via `pip download`; sha256-checked, never imported).
        Options: `download=True`, `timeout=10.0` (s, GroupLens), `pip_timeout=300.0` (s).
      * "ml-1m": `ratings.dat` + `movies.dat` (`::`-separated, latin-1); "ml-20m":
        `ratings.csv` + `movies.csv`. Downloaded from GroupLens if absent and reachable.
        Same options as ml-100k.
      * "csv": generic delimited files. Options:
        `interactions_file` (required; relative to `data_dir` or absolute),
        `delimiter=","`, `header=True`, `encoding="utf-8"`,
        `user_column="user"`, `item_column="item"`, `timestamp_column="timestamp"` (names,
        or 0-based positions when `header=False`),
        `attributes_file=None`, `attributes_delimiter=None` (default: `delimiter`),
        `attributes_header=None` (default: `header`), `attribute_item_column="item"`,
        `title_column="title"` (None: titles are the raw ids), `attributes_column="attributes"`,
        `attribute_separator="|"`, `none_values=("(no genres listed)",)`,
        `unknown_attribute_items="error"` ("skip" to log and ignore attribute rows for items
        that never occur in the interactions), `dataset_name="csv"` (the Dataset's name).
        Music4All: `interactions_file="listening_history.csv", delimiter="\\t",
        item_column="song", attributes_file="id_genres.csv", attribute_item_column="id",
        title_column=None, attributes_column="genres", attribute_separator=",",
        unknown_attribute_items="skip"` (its timestamps are ISO date-times).
      * "synthetic": `seqrec_jax.data.synthetic.make_synthetic(**options)`; never cached.
    data_dir: folder of the raw files; default `default_data_dir() / name`.
    cache_dir: the prepared arrays go to `cache_dir / "prepared"`; default `default_data_dir()`.
    use_cache: read and write the cache.

  Raises:
    ValueError: unknown name.
    DataError: missing, malformed or undownloadable input.
  """
  if name not in DATASETS:
    raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
  if name == "synthetic":
    return make_synthetic(**options)
  data_dir = pathlib.Path(data_dir).expanduser() if data_dir is not None else (
      default_data_dir() / name)
  if name == "csv":
    sources = csv_sources(data_dir, **options)
    parse = lambda: load_csv(data_dir, **options)
  else:
    sources = movielens_sources(name, data_dir, **options)
    parse = lambda: load_movielens(name, sources)
  for path in sources:
    if not path.is_file():
      raise DataError("file not found", file=path)
  if not use_cache:
    return parse()
  cache_root = pathlib.Path(cache_dir).expanduser() if cache_dir is not None else (
      default_data_dir())
  key = cache_key(name, sources, options)
  cache_path = cache_root / "prepared" / f"{name}-{key[:24]}.npz"
  if cache_path.is_file():
    try:
      ds = load_prepared(cache_path)
      logging.info("Loaded %s from cache %s.", name, cache_path)
      return ds
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
      logging.warning("Ignoring unreadable cache %s (%s); rebuilding.", cache_path, e)
  start = time.perf_counter()
  ds = parse()
  logging.info("Prepared %s in %.1f s: %d users, %d items, %d interactions.", name,
               time.perf_counter() - start, ds.interactions.num_users,
               ds.interactions.num_items - 1, ds.interactions.num_interactions)
  if distributed.is_main_process():  # the others parsed the same files; one writes the cache
    save_prepared(ds, cache_path)
  return ds
