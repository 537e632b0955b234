"""Finding MovieLens files, or fetching them: GroupLens when reachable, else the copy inside the `recbole==1.2.1` wheel."""

from __future__ import annotations

import hashlib
import pathlib
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Mapping

from absl import logging

from seqrec_jax.core.errors import DataError
from seqrec_jax.core.files import write_atomic


# ---------------------------------------------------------------------------------------------
# MovieLens.

ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                 "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                 "Romance", "Sci-Fi", "Thriller", "War", "Western")
_GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/{}.zip"
_RECBOLE_REQUIREMENT = "recbole==1.2.1"
_RECBOLE_WHEEL = "recbole-1.2.1-py3-none-any.whl"
# sha256 of the wheel on PyPI, computed with `pip download --no-deps recbole==1.2.1`.
_RECBOLE_WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
_RECBOLE_MEMBERS = {
    "recbole/dataset_example/ml-100k/ml-100k.inter": "ml-100k.inter",
    "recbole/dataset_example/ml-100k/ml-100k.item": "ml-100k.item",
}
# zip member -> file name in data_dir, and (ratings member, expected number of data lines).
_GROUPLENS_FILES = {
    "ml-100k": ({"ml-100k/u.data": "u.data", "ml-100k/u.item": "u.item",
                 "ml-100k/u.genre": "u.genre"}, ("ml-100k/u.data", 100_000)),
    "ml-1m": ({"ml-1m/ratings.dat": "ratings.dat", "ml-1m/movies.dat": "movies.dat"},
              ("ml-1m/ratings.dat", 1_000_209)),
    "ml-20m": ({"ml-20m/ratings.csv": "ratings.csv", "ml-20m/movies.csv": "movies.csv"},
               ("ml-20m/ratings.csv", 20_000_263)),
}
_ML_FILES = {
    "ml-100k": [("u.data", "u.item"), ("ml-100k.inter", "ml-100k.item")],
    "ml-1m": [("ratings.dat", "movies.dat")],
    "ml-20m": [("ratings.csv", "movies.csv")],
}


def _extract_members(zf: zipfile.ZipFile, members: Mapping[str, str],
                     data_dir: pathlib.Path) -> None:
  for member, filename in members.items():
    with zf.open(member) as src:
      write_atomic(data_dir / filename, lambda f, src=src: shutil.copyfileobj(src, f))


def _download_grouplens(name: str, data_dir: pathlib.Path, timeout: float) -> None:
  """Downloads the GroupLens zip, verifies CRCs and the row count, extracts the raw files."""
  members, (ratings_member, expected_rows) = _GROUPLENS_FILES[name]
  url = _GROUPLENS_URL.format(name)
  data_dir.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=data_dir, prefix=".download.") as tmp:
    zip_path = pathlib.Path(tmp) / f"{name}.zip"
    with urllib.request.urlopen(url, timeout=timeout) as response, open(zip_path, "wb") as f:
      shutil.copyfileobj(response, f)
    with zipfile.ZipFile(zip_path) as zf:
      bad = zf.testzip()
      if bad is not None:
        raise DataError(f"CRC check failed for member {bad!r} of {url}", file=zip_path)
      with zf.open(ratings_member) as f:
        rows = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
      rows -= 1 if name == "ml-20m" else 0  # header line
      if rows != expected_rows:
        raise DataError(f"expected {expected_rows} ratings in {ratings_member}, found {rows}",
                        file=zip_path)
      _extract_members(zf, members, data_dir)


def file_sha256(path: pathlib.Path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def _download_recbole_ml100k(data_dir: pathlib.Path, timeout: float) -> None:
  """Takes ml-100k from the `recbole==1.2.1` wheel (fetched with pip, read with zipfile)."""
  with tempfile.TemporaryDirectory() as tmp:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--quiet", _RECBOLE_REQUIREMENT, "-d", tmp]
    try:
      proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
      raise OSError(f"pip download timed out after {timeout} s") from None
    wheel = pathlib.Path(tmp) / _RECBOLE_WHEEL
    if proc.returncode != 0 or not wheel.exists():
      raise OSError(f"pip download failed: {(proc.stderr or proc.stdout).strip()[-300:]}")
    digest = file_sha256(wheel)
    if digest != _RECBOLE_WHEEL_SHA256:
      raise DataError(f"expected sha256 {_RECBOLE_WHEEL_SHA256}, found {digest}", file=wheel)
    with zipfile.ZipFile(wheel) as zf:
      for member in _RECBOLE_MEMBERS:
        if zf.testzip() is not None:
          raise DataError(f"CRC check failed for {member}", file=wheel)
      _extract_members(zf, _RECBOLE_MEMBERS, data_dir)


def _present(data_dir: pathlib.Path, name: str) -> tuple[str, ...] | None:
  for files in _ML_FILES[name]:
    if all((data_dir / f).is_file() for f in files):
      return files
  return None


def movielens_sources(name: str, data_dir: pathlib.Path, *, download: bool = True,
                timeout: float = 10.0, pip_timeout: float = 300.0) -> list[pathlib.Path]:
  """Paths of the raw MovieLens files in `data_dir`, downloading them if absent."""
  files = _present(data_dir, name)
  errors = []
  if files is None and download:
    try:
      _download_grouplens(name, data_dir, timeout)
    except (OSError, zipfile.BadZipFile, DataError) as e:
      errors.append(f"GroupLens: {e}")
      logging.info("Could not download %s from GroupLens: %s", name, e)
    files = _present(data_dir, name)
    if files is None and name == "ml-100k":
      try:
        _download_recbole_ml100k(data_dir, pip_timeout)
      except (OSError, zipfile.BadZipFile, DataError) as e:
        errors.append(f"PyPI {_RECBOLE_REQUIREMENT}: {e}")
        logging.info("Could not fetch %s: %s", _RECBOLE_REQUIREMENT, e)
      files = _present(data_dir, name)
  if files is None:
    options = " or ".join(" and ".join(str(data_dir / f) for f in fs) for fs in _ML_FILES[name])
    tried = f" (tried {'; '.join(errors)})" if errors else ""
    raise DataError(f"{name} not found: put {options} there, from "
                    f"{_GROUPLENS_URL.format(name)}{tried}")
  return [data_dir / f for f in files]
