"""Atomic file writes (a reader never sees a half-written file) and JSON helpers.

Every file the package writes goes through `write_atomic`: a temporary file in the same folder,
flushed to disk, given the usual mode (0666 minus the umask; `mkstemp` alone would leave 0600),
then renamed over the destination. On any failure the temporary file is removed and the
destination is left as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import tempfile
from collections.abc import Callable
from typing import BinaryIO

from seqrec_jax.core.errors import DataError


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
  """Calls `write(file)` on a temporary file beside `path`, then renames it over `path`."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.unlink(tmp)
    raise


def write_bytes_atomic(path: str | os.PathLike, payload: bytes) -> None:
  write_atomic(path, lambda f: f.write(payload))


def write_json(path: str | os.PathLike, obj) -> None:
  write_bytes_atomic(path, (json.dumps(obj, indent=2, default=to_builtin) + "\n").encode())


def read_json(path: str | os.PathLike):
  """The JSON value in `path`; a damaged file is a one-line `DataError` naming it."""
  try:
    return json.loads(pathlib.Path(path).read_text())
  except json.JSONDecodeError as e:
    raise DataError(f"not valid JSON ({e.msg}, column {e.colno}), perhaps cut short: rerun with "
                    "--config.overwrite=true to redo the stage that writes it", file=path,
                    line=e.lineno) from None


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
  """Appends one JSON line (a crash can at worst leave the last line partial)."""
  with open(path, "a") as f:
    f.write(json.dumps(record, default=to_builtin) + "\n")


def to_builtin(x):
  """JSON fallback for numpy / JAX scalars and arrays."""
  if hasattr(x, "tolist"):
    return x.tolist()
  raise TypeError(f"cannot serialise {type(x).__name__} to JSON")


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask
