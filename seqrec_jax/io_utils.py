"""Atomic file writes: a reader never sees a half-written result."""

from __future__ import annotations

import json
import os
import pathlib
import tempfile

from absl import logging


def write_bytes_atomic(path: str | pathlib.Path, payload: bytes) -> None:
  """Write `payload` to a temp file beside `path`, then rename it over `path`."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(payload)
    os.replace(tmp, path)
  except BaseException:
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise


def write_json(path: str | pathlib.Path, obj) -> None:
  write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=False, default=_to_builtin) + "\n").encode())


def finished_results(results_file: str | pathlib.Path, overwrite: bool) -> dict | None:
  """The saved results of a finished stage, or None when absent or when overwriting."""
  results_file = pathlib.Path(results_file)
  if overwrite or not results_file.exists():
    return None
  logging.info("%s exists; --config.overwrite=true redoes it", results_file)
  return json.loads(results_file.read_text())


def append_jsonl(path: str | pathlib.Path, record: dict) -> None:
  with open(path, "a") as f:
    f.write(json.dumps(record, default=_to_builtin) + "\n")


def _to_builtin(x):
  if hasattr(x, "tolist"):
    return x.tolist()
  raise TypeError(f"cannot serialise {type(x).__name__} to JSON")
