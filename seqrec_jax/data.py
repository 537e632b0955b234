"""Interaction data: MovieLens-100k/1M/20M, generic CSV (e.g. Music4All), synthetic; cached.

Every loader ends in the same arrays (`Interactions`, `ItemAttributes`):

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
* Timestamps are int64 seconds. Integer, decimal (``881250949.0``) and ISO date-time
  (``2019-02-20 13:24:11``) columns are accepted; decimals are floored when stored but sort
  with their full precision.

Interaction files are plain delimited text: one interaction per line, no quoted fields, blank
lines ignored, a UTF-8 byte order mark and CRLF line ends tolerated. Attribute files are small
and read with the `csv` module, so their fields may be quoted (ML-20M titles hold commas).

Bad input raises `seqrec_jax.errors.DataError` naming the file, the 1-based line and what was
expected. Large interaction files (ML-20M: 20M rows) are parsed with whole-column NumPy
operations on the raw bytes; only when a column fails to convert does a line-by-line pass run,
to find the offending line.

Prepared arrays are cached as ``.npz`` under ``<cache_dir>/prepared/``, keyed by a sha256 of the
source files' bytes and the options, and written atomically (temporary file + ``os.replace``).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from absl import logging

from seqrec_jax.errors import DataError

PAD_TOKEN = "<pad>"
DATASETS = ("ml-100k", "ml-1m", "ml-20m", "csv", "synthetic")
# Bumped whenever the prepared arrays change meaning, so that old caches are not reused.
_CACHE_VERSION = 1
_MAX_TOKEN_BYTES = 1024
_MAX_TIMESTAMP = 1e18  # decimal timestamps must stay well inside int64 once floored

# ---------------------------------------------------------------------------------------------
# Containers.


@dataclasses.dataclass(frozen=True)
class Interactions:
  """All users' item sequences in CSR form, sorted by time within each user.

  Attributes:
    offsets: int64 [num_users + 1]; user u's interactions are `offsets[u]:offsets[u + 1]`.
    items: int32 [num_interactions], ids in 1..num_items-1 (0 is padding).
    timestamps: int64 [num_interactions], seconds, non-decreasing within each user.
    num_items: V, the size of the item vocabulary including the padding id 0.
    user_ids: str [num_users], the original user ids.
    item_ids: str [V], the original item ids; entry 0 is "<pad>".
  """

  offsets: np.ndarray
  items: np.ndarray
  timestamps: np.ndarray
  num_items: int
  user_ids: np.ndarray
  item_ids: np.ndarray

  @property
  def num_users(self) -> int:
    return len(self.offsets) - 1

  @property
  def num_interactions(self) -> int:
    return int(self.offsets[-1])

  @property
  def lengths(self) -> np.ndarray:
    """int64 [num_users], each user's sequence length."""
    return np.diff(self.offsets)

  def sequence(self, user: int) -> np.ndarray:
    """int32 [length] view of user `user`'s items (row index, not the original id)."""
    return self.items[self.offsets[user]:self.offsets[user + 1]]

  def user_index(self) -> np.ndarray:
    """int64 [num_interactions], the row (user) of each interaction."""
    return np.repeat(np.arange(self.num_users, dtype=np.int64), self.lengths)


@dataclasses.dataclass(frozen=True)
class ItemAttributes:
  """Item attributes aligned with `Interactions.item_ids`.

  Attributes:
    multi_hot: bool [V, G]; row 0 (padding) is all False.
    names: [G] attribute (genre) names.
    titles: str [V]; entry 0 is "<pad>".
  """

  multi_hot: np.ndarray
  names: tuple[str, ...]
  titles: np.ndarray

  @property
  def num_attributes(self) -> int:
    return len(self.names)


@dataclasses.dataclass(frozen=True)
class Dataset:
  name: str
  interactions: Interactions
  attributes: ItemAttributes | None


def default_data_dir() -> pathlib.Path:
  """`$SEQREC_DATA_DIR`, else `~/.cache/seqrec_jax`."""
  env = os.environ.get("SEQREC_DATA_DIR")
  if env:
    return pathlib.Path(env).expanduser()
  return pathlib.Path.home() / ".cache" / "seqrec_jax"


# ---------------------------------------------------------------------------------------------
# Building the arrays from raw columns.


def _token_codes(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Numbers raw id tokens in sorted order.

  Args:
    tokens: [n] integer array, or bytes (`S`) / str (`U`) array of id tokens.

  Returns:
    codes: int64 [n] in 0..k-1; vocab: str [k], the distinct tokens, `vocab[codes] == tokens`.
    The order is numeric if every token is a canonical integer, else lexicographic.
  """
  ints = tokens if tokens.dtype.kind in "iu" else _canonical_ints(tokens)
  if ints is not None:
    codes, uniq = _dense_codes(ints)
    return codes, uniq.astype(str)
  uniq, codes = np.unique(tokens, return_inverse=True)
  if uniq.dtype.kind == "S":
    uniq = np.char.decode(uniq, "utf-8")
  return codes.astype(np.int64).reshape(-1), uniq.astype(str)


def _dense_codes(ints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """`np.unique(ints, return_inverse=True)` reversed: (codes int64 [n], sorted distinct [k]).

  Small non-negative ids (the usual case) are numbered with a presence table in O(n).
  """
  if len(ints) and ints.min() >= 0 and ints.max() <= 4 * len(ints) + 1024:
    present = np.zeros(int(ints.max()) + 1, dtype=bool)
    present[ints] = True
    rank = np.cumsum(present) - 1
    return rank[ints].astype(np.int64), np.flatnonzero(present).astype(ints.dtype)
  uniq, codes = np.unique(ints, return_inverse=True)
  return codes.astype(np.int64).reshape(-1), uniq


def _sort_order(user_codes: np.ndarray, timestamps: np.ndarray) -> np.ndarray | None:
  """int64 [n] stable order by (user, timestamp), or None if the rows are already in it."""
  if timestamps.dtype.kind in "iu" and len(timestamps):
    t0, t1 = int(timestamps.min()), int(timestamps.max())
    span = t1 - t0 + 1
    if (int(user_codes.max()) + 1) * span < 2**62:
      key = user_codes * span + (timestamps - t0)
      if np.all(key[1:] >= key[:-1]):
        return None
      return np.argsort(key, kind="stable")
  order = np.argsort(timestamps, kind="stable")
  return order[np.argsort(user_codes[order], kind="stable")]


def _canonical_ints(tokens: np.ndarray) -> np.ndarray | None:
  """int64 [n] if every token is the canonical text of an integer ("7", "-3"), else None."""
  if len(tokens) == 0:
    return None
  try:
    ints = tokens.astype(np.int64)
  except (ValueError, OverflowError):
    return None
  # int() also accepts "07", " 7", "+7", "7_0"; each is longer than the canonical text.
  magnitude = np.abs(ints)
  digits = np.searchsorted(10 ** np.arange(1, 19, dtype=np.int64), magnitude, side="right") + 1
  canonical_len = digits + (ints < 0)
  if not np.array_equal(np.char.str_len(tokens), canonical_len):
    return None
  return ints


def _build(users: np.ndarray, items: np.ndarray, timestamps: np.ndarray,
           ) -> tuple[Interactions, np.ndarray]:
  """Raw columns -> `Interactions`, plus str [k] every item token seen before dropping users."""
  n = len(users)
  if not (len(items) == n and len(timestamps) == n):
    raise ValueError(f"columns differ in length: {n}, {len(items)}, {len(timestamps)}")
  user_codes, user_vocab = _token_codes(users)
  item_codes, all_item_ids = _token_codes(items)

  counts = np.bincount(user_codes, minlength=len(user_vocab))
  keep_user = counts >= 2
  num_dropped = int(np.sum(~keep_user))
  if num_dropped:
    logging.info("Dropped %d users with a single interaction (of %d users).", num_dropped,
                 len(user_vocab))
    keep_row = keep_user[user_codes]
    user_codes, item_codes, timestamps = (
        user_codes[keep_row], item_codes[keep_row], timestamps[keep_row])
    user_codes = (np.cumsum(keep_user) - 1)[user_codes]
  user_ids = user_vocab[keep_user]

  item_codes, used_items = _dense_codes(item_codes)
  item_ids = np.concatenate([np.array([PAD_TOKEN]), all_item_ids[used_items]]).astype(str)

  # Equal (user, time) keep file order: the sort is stable.
  order = _sort_order(user_codes, timestamps)
  if order is not None:
    item_codes, timestamps = item_codes[order], timestamps[order]
  stored_ts = timestamps
  if stored_ts.dtype.kind == "f":
    stored_ts = np.floor(stored_ts)
  offsets = np.zeros(len(user_ids) + 1, dtype=np.int64)
  np.cumsum(np.bincount(user_codes, minlength=len(user_ids)), out=offsets[1:])
  interactions = Interactions(
      offsets=offsets,
      items=(item_codes + 1).astype(np.int32),
      timestamps=stored_ts.astype(np.int64),
      num_items=len(item_ids),
      user_ids=user_ids.astype(str),
      item_ids=item_ids,
  )
  return interactions, all_item_ids


def _require_users(interactions: Interactions, path: pathlib.Path) -> Interactions:
  if interactions.num_users == 0:
    raise DataError("expected at least one user with two or more interactions, found none",
                    file=path)
  return interactions


def build_interactions(users: np.ndarray, items: np.ndarray,
                       timestamps: np.ndarray) -> Interactions:
  """Builds `Interactions` from raw columns (see the module docstring for the rules).

  Args:
    users: [n] user id tokens (int, bytes or str array).
    items: [n] item id tokens.
    timestamps: [n] int or float timestamps.
  """
  return _build(np.asarray(users), np.asarray(items), np.asarray(timestamps))[0]


@dataclasses.dataclass(frozen=True)
class _AttributeRecord:
  title: str
  attributes: tuple[str, ...]
  line: int


def build_attributes(item_ids: np.ndarray, records: Mapping[str, _AttributeRecord | tuple],
                     names: Sequence[str] | None = None) -> ItemAttributes:
  """Aligns per-item attribute records with the item ids.

  Args:
    item_ids: str [V], entry 0 the padding token.
    records: original item id -> `(title, attribute names)`.
    names: the attribute names in column order; default: sorted union over `records`.

  Returns:
    `ItemAttributes` with `multi_hot` bool [V, G]; items without a record get an all-False row
    and their raw id as title.
  """
  recs = {k: (v.title, v.attributes) if isinstance(v, _AttributeRecord) else tuple(v)
          for k, v in records.items()}
  if names is None:
    names = sorted({a for _, attrs in recs.values() for a in attrs})
  names = tuple(names)
  column = {a: j for j, a in enumerate(names)}
  multi_hot = np.zeros((len(item_ids), len(names)), dtype=bool)
  titles = np.array(item_ids, dtype=object)
  titles[0] = PAD_TOKEN
  rows, cols = [], []
  for i in range(1, len(item_ids)):  # loops over items (thousands), not interactions
    rec = recs.get(str(item_ids[i]))
    if rec is None:
      continue
    titles[i] = rec[0]
    for a in rec[1]:
      rows.append(i)
      cols.append(column[a])
  multi_hot[np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)] = True
  return ItemAttributes(multi_hot=multi_hot, names=names, titles=titles.astype(str))


def _check_attribute_items(records: Mapping[str, _AttributeRecord], all_item_ids: np.ndarray,
                           path: pathlib.Path, policy: str) -> None:
  """Errors on (or logs and skips) attribute records whose item never occurs in interactions."""
  known = set(all_item_ids.tolist())
  unknown = [(rec.line, item) for item, rec in records.items() if item not in known]
  if not unknown:
    return
  if policy == "error":
    line, item = min(unknown)
    raise DataError(
        f"unknown item {item!r}: expected an item id that occurs in the interactions file "
        f"({len(unknown)} such items; pass unknown_attribute_items='skip' to ignore them)",
        file=path, line=line)
  logging.info("%s: skipped %d items that have no interactions.", path, len(unknown))


# ---------------------------------------------------------------------------------------------
# Reading files.


def _read_bytes(path: pathlib.Path) -> bytes:
  """The file's bytes, without a UTF-8 byte order mark (spreadsheets write one)."""
  try:
    data = path.read_bytes()
    return data[3:] if data.startswith(b"\xef\xbb\xbf") else data
  except FileNotFoundError:
    raise DataError("file not found", file=path) from None
  except IsADirectoryError:
    raise DataError("expected a file, found a directory", file=path) from None


def _check_encoding(data: bytes, path: pathlib.Path, encoding: str) -> None:
  """Raises DataError at the first line that is not valid `encoding`."""
  if encoding.lower().replace("_", "-") in ("latin-1", "latin1", "iso-8859-1"):
    return
  if encoding.lower().replace("_", "-") in ("utf-8", "utf8") and data.isascii():
    return
  try:
    data.decode(encoding)
  except UnicodeDecodeError as e:
    line = data.count(b"\n", 0, e.start) + 1
    raise DataError(f"expected {encoding} text, found byte 0x{data[e.start]:02x} ({e.reason})",
                    file=path, line=line) from None


def _decode_text(data: bytes, path: pathlib.Path, encoding: str) -> str:
  _check_encoding(data, path, encoding)
  return data.decode(encoding)


def _shorten(text: str | bytes, limit: int = 60) -> str:
  if isinstance(text, bytes):
    text = text.decode("utf-8", errors="replace")
  return repr(text if len(text) <= limit else text[:limit] + "...")


@dataclasses.dataclass(frozen=True)
class _Table:
  """A delimited file split into fields without copying: field (i, j) is `buf[start:end]`.

  `line_numbers` int64 [n] are the 1-based line numbers of the n non-empty data lines.
  """

  path: pathlib.Path
  buf: np.ndarray  # uint8 [num_bytes]
  line_start: np.ndarray  # int64 [n]
  line_end: np.ndarray  # int64 [n], exclusive
  first_sep: np.ndarray  # int64 [n], index into `seps` of each line's first separator
  seps: np.ndarray  # int64 [num_separators], byte positions of delimiters and newlines
  num_fields: int
  line_numbers: np.ndarray
  header: tuple[str, ...] | None
  header_line: int | None

  def __len__(self) -> int:
    return len(self.line_start)

  def bounds(self, j: int) -> tuple[np.ndarray, np.ndarray]:
    """int64 [n] start and end byte positions of field j on every line."""
    start = self.line_start if j == 0 else self.seps[self.first_sep + j - 1] + 1
    end = self.seps[self.first_sep + j]
    return start, end

  def column(self, j: int) -> np.ndarray:
    """bytes (`S`) [n], field j of every line."""
    start, end = self.bounds(j)
    lengths = end - start
    if len(lengths) and lengths.max() > _MAX_TOKEN_BYTES:
      i = int(np.argmax(lengths))
      raise DataError(f"expected a field of at most {_MAX_TOKEN_BYTES} bytes in column {j + 1}, "
                      f"found {int(lengths[i])} bytes", file=self.path,
                      line=int(self.line_numbers[i]))
    return _gather_fields(self.buf, start, lengths)

  def int_column(self, j: int, *, canonical: bool) -> np.ndarray | None:
    """int64 [n] if every field j is 1-18 ASCII digits, else None (then use `column`).

    With `canonical`, "0" is accepted but leading zeros ("07") are not, so that the numbers
    print back as the original tokens.
    """
    start, end = self.bounds(j)
    return _parse_digits(self.buf, start, end - start, canonical=canonical)

  def line_text(self, i: int) -> bytes:
    return self.buf[self.line_start[i]:self.line_end[i]].tobytes()


def _parse_digits(buf: np.ndarray, start: np.ndarray, lengths: np.ndarray, *,
                  canonical: bool) -> np.ndarray | None:
  """int64 [n] from decimal digit fields `buf[start:start + lengths]`; None if any is not one."""
  if len(start) == 0:
    return None
  shortest, longest = int(lengths.min()), int(lengths.max())
  if shortest < 1 or longest > 18:
    return None
  if canonical and longest > 1 and ((buf[start] == ord("0")) & (lengths > 1)).any():
    return None
  # Right to left: the k-th last digit is worth 10**k; fields shorter than k + 1 add nothing.
  value = np.zeros(len(start), dtype=np.int64)
  pos = start + lengths - 1
  zero = np.uint8(ord("0"))
  for k in range(longest):  # loops over digit positions, not rows
    digit = np.take(buf, np.maximum(pos, 0) if k >= shortest else pos)
    digit -= zero  # wraps around for bytes below "0"
    if k >= shortest:
      digit *= lengths > k
    if digit.max() > 9:
      return None
    value += digit * np.int64(10**k)
    pos -= 1
  return value


def _gather_fields(buf: np.ndarray, start: np.ndarray, lengths: np.ndarray) -> np.ndarray:
  """bytes (`S`) [n] from byte ranges `buf[start:start + lengths]`, vectorised per column."""
  n = len(start)
  width = int(lengths.max()) if n else 0
  if width == 0:
    return np.zeros(n, dtype="S1")
  out = np.empty((n, width), dtype=np.uint8)
  last = len(buf) - 1
  for k in range(width):  # loops over character positions (a few), not rows
    byte = np.take(buf, np.minimum(start + k, last))
    byte *= lengths > k  # NUL pads the short fields, as the `S` dtype expects
    out[:, k] = byte
  return out.view(f"S{width}").reshape(n)


def _pick_sentinel(data: bytes) -> bytes:
  for code in (0x1F, 0x1E, 0x1D, 0x1C, 0x01, 0x02, 0x03, 0x04):
    if bytes([code]) not in data:
      return bytes([code])
  raise DataError("file holds every control byte; cannot split on a multi-character delimiter")


def _split_table(path: pathlib.Path, data: bytes, *, delimiter: str, header: bool,
                 encoding: str, num_fields: int | None = None, what: str = "") -> _Table:
  """Splits delimited text into fields with whole-array operations.

  Args:
    data: the file's bytes.
    delimiter: field separator, one or more characters.
    header: whether the first non-empty line holds column names.
    num_fields: the expected number of fields per line; default: the header's (or first line's).
    what: describes the expected content for the empty-file error.
  """
  _check_encoding(data, path, encoding)
  if not data or data.isspace():
    raise DataError(f"empty file: expected {what or 'delimited lines'}", file=path, line=1)
  if b"\r" in data:
    data = data.replace(b"\r\n", b"\n")
  delim = delimiter.encode(encoding)
  if not delim:
    raise ValueError("delimiter must not be empty")
  if len(delim) > 1:
    sentinel = _pick_sentinel(data)
    data = data.replace(delim, sentinel)
    delim = sentinel
  missing_final_newline = not data.endswith(b"\n")
  if missing_final_newline:
    data += b"\n"
  buf = np.frombuffer(data, dtype=np.uint8)
  # One scan finds every separator; line i's are seps[first_sep[i]:last_sep[i] + 1], the
  # last one its newline.
  seps = np.flatnonzero((buf == ord("\n")) | (buf == delim[0]))
  last_sep = np.flatnonzero(buf[seps] == ord("\n"))
  first_sep = np.concatenate([[0], last_sep[:-1] + 1])
  line_start = np.concatenate([[0], seps[last_sep[:-1]] + 1])
  line_numbers = np.arange(1, len(last_sep) + 1, dtype=np.int64)
  nonblank = seps[last_sep] > line_start
  line_start, first_sep, last_sep, line_numbers = (
      line_start[nonblank], first_sep[nonblank], last_sep[nonblank], line_numbers[nonblank])
  line_end = seps[last_sep]
  fields_per_line = last_sep - first_sep + 1

  header_names, header_line = None, None
  if header:
    header_text = data[line_start[0]:line_end[0]].decode(encoding)
    header_names = tuple(header_text.split(delim.decode(encoding)))
    header_line = int(line_numbers[0])
    if num_fields is None:
      num_fields = len(header_names)
  if num_fields is None:
    num_fields = int(fields_per_line[0])
  bad = np.flatnonzero(fields_per_line != num_fields)
  if len(bad):
    i = int(bad[0])
    found = int(fields_per_line[i])
    hint = ""
    if i == len(line_start) - 1 and missing_final_newline and found < num_fields:
      hint = " (truncated last line?)"
    raise DataError(
        f"expected {num_fields} fields separated by {delimiter!r}, found {found}{hint}: "
        f"{_shorten(data[line_start[i]:line_end[i]])}", file=path, line=int(line_numbers[i]))
  if header:
    line_start, line_end, line_numbers, first_sep = (
        line_start[1:], line_end[1:], line_numbers[1:], first_sep[1:])
  return _Table(path=path, buf=buf, line_start=line_start, line_end=line_end,
                first_sep=first_sep, seps=seps, num_fields=num_fields,
                line_numbers=line_numbers, header=header_names, header_line=header_line)


def _column_index(table: _Table, column: str | int, what: str) -> int:
  """Index of a column given by header name or 0-based position."""
  if isinstance(column, str):
    if table.header is None:
      raise ValueError(f"column {column!r} given by name but the file has no header")
    if column not in table.header:
      raise DataError(f"missing column: expected a {what} column {column!r}, found columns "
                      f"{list(table.header)}", file=table.path, line=table.header_line)
    return table.header.index(column)
  if not 0 <= column < table.num_fields:
    line = int(table.line_numbers[0]) if len(table) else table.header_line
    raise DataError(f"missing column: expected a {what} in field {column + 1}, found "
                    f"{table.num_fields} fields", file=table.path, line=line)
  return column


def _check_duplicated_header(table: _Table, columns: Mapping[int, np.ndarray]) -> None:
  """Raises at the first line whose fields in `columns` (index -> bytes [n]) equal the header."""
  if table.header is None:
    return
  repeated = np.ones(len(table), dtype=bool)
  for j, col in columns.items():
    repeated &= col == table.header[j].encode()
  if repeated.any():
    i = int(np.argmax(repeated))
    raise DataError(f"duplicated header: expected a data line, found the header "
                    f"{_shorten(table.line_text(i))} again (first at line {table.header_line})",
                    file=table.path, line=int(table.line_numbers[i]))


def _id_column(table: _Table, col: np.ndarray, what: str, *, integer: bool) -> np.ndarray:
  """bytes [n] tokens (or int64 [n] if `integer`) of a column; empty or malformed ids raise."""
  empty = col == b""
  if empty.any():
    i = int(np.argmax(empty))
    raise DataError(f"expected a {what}, found an empty field", file=table.path,
                    line=int(table.line_numbers[i]))
  if not integer:
    return col
  try:
    return col.astype(np.int64)
  except (ValueError, OverflowError):
    i = _first_failure(col, _parse_int_token)
    raise DataError(f"expected an integer {what}, found {_shorten(col[i])}", file=table.path,
                    line=int(table.line_numbers[i])) from None


def _first_failure(values: np.ndarray, parse: Callable[[bytes], object]) -> int:
  """Index of the first value that `parse` rejects (the slow path, only run after a failure)."""
  for i, v in enumerate(values.tolist()):
    try:
      parse(v)
    except (ValueError, OverflowError):
      return i
  raise AssertionError("bulk conversion failed but every value parses")


def _parses(parse: Callable[[bytes], object], value: bytes) -> bool:
  try:
    parse(value)
  except (ValueError, OverflowError):
    return False
  return True


def _parse_int_token(v: bytes) -> int:
  x = int(v)
  if not -2**63 <= x < 2**63:
    raise OverflowError(v)
  return x


def _parse_float_token(v: bytes) -> float:
  x = float(v)
  if not abs(x) < _MAX_TIMESTAMP:
    raise ValueError(v)
  return x


def _parse_datetime_token(v: bytes) -> np.datetime64:
  x = np.datetime64(v.decode("utf-8"), "s")
  if np.isnat(x):
    raise ValueError(v)
  return x


def _timestamp_column(table: _Table, col: np.ndarray, what: str = "timestamp") -> np.ndarray:
  """int64 or float64 [n] seconds from integer, decimal or ISO date-time text (bytes [n])."""
  try:
    return col.astype(np.int64)
  except (ValueError, OverflowError):
    pass
  try:
    values = col.astype(np.float64)
    if (np.abs(values) < _MAX_TIMESTAMP).all():  # also rejects NaN
      return values
  except ValueError:
    pass
  try:
    values = col.astype("datetime64[s]")
    if not np.isnat(values).any():
      return values.astype(np.int64)
  except ValueError:
    pass
  # Judge the intended format by the first line, then find the first line not in it.
  parse = _parse_float_token if _parses(_parse_float_token, col[0]) else _parse_datetime_token
  i = _first_failure(col, parse)
  raise DataError(f"expected a {what} (integer, decimal below 1e18 or ISO date-time), found "
                  f"{_shorten(col[i])}", file=table.path, line=int(table.line_numbers[i]))


def _read_interactions(path: pathlib.Path, *, delimiter: str, header: bool, encoding: str,
                       user: str | int, item: str | int, timestamp: str | int,
                       integer_ids: bool, num_fields: int | None = None,
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(users, items, timestamps) [n] columns of an interactions file."""
  table = _split_table(path, _read_bytes(path), delimiter=delimiter, header=header,
                       encoding=encoding, num_fields=num_fields,
                       what="interaction lines (user, item, timestamp)")
  ju = _column_index(table, user, "user id")
  ji = _column_index(table, item, "item id")
  jt = _column_index(table, timestamp, "timestamp")
  if len(table) == 0:
    raise DataError("expected interaction lines after the header, found none", file=path,
                    line=table.header_line)
  # Digits-only columns are parsed straight from the bytes; the others go through `column`.
  ints = {j: table.int_column(j, canonical=not integer_ids and j != jt) for j in (ju, ji, jt)}
  text = {j: table.column(j) for j, v in ints.items() if v is None}
  if len(text) == 3:  # a repeated header can only hide in non-numeric columns
    _check_duplicated_header(table, text)
  users = ints[ju] if ints[ju] is not None else _id_column(table, text[ju], "user id",
                                                           integer=integer_ids)
  items = ints[ji] if ints[ji] is not None else _id_column(table, text[ji], "item id",
                                                           integer=integer_ids)
  timestamps = ints[jt] if ints[jt] is not None else _timestamp_column(table, text[jt])
  return users, items, timestamps


def _text_lines(path: pathlib.Path, encoding: str) -> list[tuple[int, str]]:
  """(1-based line number, text) of the non-empty lines of a small text file."""
  text = _decode_text(_read_bytes(path), path, encoding)
  lines = [(n, s) for n, s in enumerate(text.splitlines(), start=1) if s.strip()]
  if not lines:
    raise DataError("empty file: expected item attribute lines", file=path, line=1)
  return lines


def _add_record(records: dict[str, _AttributeRecord], path: pathlib.Path, line: int, item: str,
                title: str, attributes: Sequence[str]) -> None:
  if not item:
    raise DataError("expected an item id, found an empty field", file=path, line=line)
  if item in records:
    raise DataError(f"expected each item once, found item {item!r} again (first at line "
                    f"{records[item].line})", file=path, line=line)
  records[item] = _AttributeRecord(title=title, attributes=tuple(attributes), line=line)


# ---------------------------------------------------------------------------------------------
# Generic CSV (also Music4All).


def _split_attributes(text: str, separator: str, none_values: Sequence[str]) -> list[str]:
  parts = [p.strip() for p in text.split(separator)] if separator else [text.strip()]
  return [p for p in parts if p and p not in none_values]


def read_attribute_csv(path: pathlib.Path, *, delimiter: str = ",", header: bool = True,
                       encoding: str = "utf-8", item_column: str | int = "item",
                       title_column: str | int | None = "title",
                       attributes_column: str | int = "attributes",
                       attribute_separator: str = "|",
                       none_values: Sequence[str] = ("(no genres listed)",),
                       ) -> dict[str, _AttributeRecord]:
  """Item attribute records of a delimited file (quoted fields allowed for 1-char delimiters).

  Returns:
    item id -> record (title, attribute names, line); the title is the id if there is no
    title column.
  """
  text = _decode_text(_read_bytes(path), path, encoding)
  if not text.strip():
    raise DataError("empty file: expected item attribute lines", file=path, line=1)
  if len(delimiter) == 1:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
  else:
    reader = (line.split(delimiter) for line in text.splitlines())
  records: dict[str, _AttributeRecord] = {}
  names: tuple[str, ...] | None = None
  header_line = None
  num_fields = None
  line = 0
  try:
    for row in reader:
      line = reader.line_num if len(delimiter) == 1 else line + 1
      if not row or not any(f.strip() for f in row):
        continue
      if header and names is None:
        names, header_line, num_fields = tuple(row), line, len(row)
        columns = [_header_index(names, c, w, path, line) for c, w in
                   ((item_column, "item id"), (title_column, "title"),
                    (attributes_column, "attributes"))]
        continue
      if num_fields is None:
        num_fields = len(row)
        columns = [_field_index(num_fields, c, w, path, line) for c, w in
                   ((item_column, "item id"), (title_column, "title"),
                    (attributes_column, "attributes"))]
      if len(row) != num_fields:
        raise DataError(f"expected {num_fields} fields separated by {delimiter!r}, found "
                        f"{len(row)}: {_shorten(delimiter.join(row))}", file=path, line=line)
      if names is not None and tuple(row) == names:
        raise DataError(f"duplicated header: expected a data line, found the header again "
                        f"(first at line {header_line})", file=path, line=line)
      ji, jt, ja = columns
      item = row[ji].strip()
      title = row[jt] if jt is not None else item
      _add_record(records, path, line, item, title,
                  _split_attributes(row[ja], attribute_separator, none_values))
  except csv.Error as e:
    raise DataError(f"malformed delimited line: {e}", file=path,
                    line=getattr(reader, "line_num", line) or None) from None
  if not records:
    raise DataError("expected item attribute lines after the header, found none", file=path,
                    line=header_line)
  return records


def _header_index(names: tuple[str, ...], column: str | int | None, what: str,
                  path: pathlib.Path, line: int) -> int | None:
  if column is None:
    return None
  if isinstance(column, int):
    return _field_index(len(names), column, what, path, line)
  if column not in names:
    raise DataError(f"missing column: expected a {what} column {column!r}, found columns "
                    f"{list(names)}", file=path, line=line)
  return names.index(column)


def _field_index(num_fields: int, column: str | int | None, what: str, path: pathlib.Path,
                 line: int) -> int | None:
  if column is None:
    return None
  if isinstance(column, str):
    raise ValueError(f"column {column!r} given by name but header=False")
  if not 0 <= column < num_fields:
    raise DataError(f"missing column: expected a {what} in field {column + 1}, found "
                    f"{num_fields} fields", file=path, line=line)
  return column


def _resolve(data_dir: pathlib.Path, path: str | os.PathLike) -> pathlib.Path:
  path = pathlib.Path(path).expanduser()
  return path if path.is_absolute() else data_dir / path


def _csv_sources(data_dir: pathlib.Path, *, interactions_file: str | os.PathLike,
                 attributes_file: str | os.PathLike | None = None, **_) -> list[pathlib.Path]:
  paths = [_resolve(data_dir, interactions_file)]
  if attributes_file is not None:
    paths.append(_resolve(data_dir, attributes_file))
  return paths


def _load_csv(
    data_dir: pathlib.Path,
    *,
    interactions_file: str | os.PathLike,
    attributes_file: str | os.PathLike | None = None,
    delimiter: str = ",",
    header: bool = True,
    encoding: str = "utf-8",
    user_column: str | int = "user",
    item_column: str | int = "item",
    timestamp_column: str | int = "timestamp",
    attributes_delimiter: str | None = None,
    attributes_header: bool | None = None,
    attribute_item_column: str | int = "item",
    title_column: str | int | None = "title",
    attributes_column: str | int = "attributes",
    attribute_separator: str = "|",
    none_values: Sequence[str] = ("(no genres listed)",),
    unknown_attribute_items: str = "error",
    dataset_name: str = "csv",
) -> Dataset:
  """Generic delimited files; see `load_dataset` for the options."""
  if unknown_attribute_items not in ("error", "skip"):
    raise ValueError("unknown_attribute_items must be 'error' or 'skip', found "
                     f"{unknown_attribute_items!r}")
  path = _resolve(data_dir, interactions_file)
  users, items, timestamps = _read_interactions(
      path, delimiter=delimiter, header=header, encoding=encoding, user=user_column,
      item=item_column, timestamp=timestamp_column, integer_ids=False)
  interactions, all_item_ids = _build(users, items, timestamps)
  _require_users(interactions, path)
  attributes = None
  if attributes_file is not None:
    apath = _resolve(data_dir, attributes_file)
    records = read_attribute_csv(
        apath, delimiter=attributes_delimiter or delimiter,
        header=header if attributes_header is None else attributes_header, encoding=encoding,
        item_column=attribute_item_column, title_column=title_column,
        attributes_column=attributes_column, attribute_separator=attribute_separator,
        none_values=none_values)
    _check_attribute_items(records, all_item_ids, apath, unknown_attribute_items)
    attributes = build_attributes(interactions.item_ids, records)
  return Dataset(name=dataset_name, interactions=interactions, attributes=attributes)


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


def _atomic_write_from(dest: pathlib.Path, write: Callable[[io.BufferedWriter], None]) -> None:
  """Writes `dest` via a temporary file in the same folder and `os.replace`; no partial file."""
  dest.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual mode
    os.replace(tmp, dest)
  except BaseException:
    with contextlib.suppress(OSError):
      os.unlink(tmp)
    raise


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def _extract_members(zf: zipfile.ZipFile, members: Mapping[str, str],
                     data_dir: pathlib.Path) -> None:
  for member, filename in members.items():
    with zf.open(member) as src:
      _atomic_write_from(data_dir / filename, lambda f, src=src: shutil.copyfileobj(src, f))


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


def _file_sha256(path: pathlib.Path) -> str:
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
    digest = _file_sha256(wheel)
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


def _ml_sources(name: str, data_dir: pathlib.Path, *, download: bool = True,
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


def _u_genre_names(path: pathlib.Path) -> tuple[str, ...]:
  names = []
  for line, text in _text_lines(path, "latin-1"):
    parts = text.split("|")
    if len(parts) != 2 or parts[1].strip() != str(len(names)):
      raise DataError(f"expected 'name|{len(names)}', found {_shorten(text)}", file=path,
                      line=line)
    names.append(parts[0])
  return tuple(names)


def _read_u_item(path: pathlib.Path, genres: Sequence[str]) -> dict[str, _AttributeRecord]:
  """ml-100k `u.item`: id|title|release|video release|url|<len(genres) 0/1 flags>."""
  records: dict[str, _AttributeRecord] = {}
  expected = 5 + len(genres)
  for line, text in _text_lines(path, "latin-1"):
    parts = text.split("|")
    if len(parts) != expected:
      raise DataError(f"expected {expected} fields separated by '|', found {len(parts)}",
                      file=path, line=line)
    flags = parts[5:]
    if any(f not in ("0", "1") for f in flags):
      raise DataError(f"expected {len(genres)} genre flags 0 or 1, found {flags}", file=path,
                      line=line)
    _add_record(records, path, line, parts[0], parts[1],
                [g for g, f in zip(genres, flags) if f == "1"])
  return records


def _read_recbole_item(path: pathlib.Path) -> dict[str, _AttributeRecord]:
  """RecBole `ml-100k.item`: item_id, movie_title, release_year, class (space-separated)."""
  header = ("item_id:token", "movie_title:token_seq", "release_year:token", "class:token_seq")
  lines = _text_lines(path, "utf-8")
  first_line, first = lines[0]
  names = tuple(first.split("\t"))
  for column in header:
    if column not in names:
      raise DataError(f"missing column: expected a column {column!r}, found {list(names)}",
                      file=path, line=first_line)
  ji, jt, jy, jc = (names.index(c) for c in header)
  records: dict[str, _AttributeRecord] = {}
  for line, text in lines[1:]:
    parts = text.split("\t")
    if len(parts) != len(names):
      raise DataError(f"expected {len(names)} fields separated by '\\t', found {len(parts)}",
                      file=path, line=line)
    if tuple(parts) == names:
      raise DataError(f"duplicated header: expected a data line, found the header again "
                      f"(first at line {first_line})", file=path, line=line)
    year = parts[jy].strip()
    title = f"{parts[jt]} ({year})" if year else parts[jt]
    _add_record(records, path, line, parts[ji], title, parts[jc].split())
  return records


def _read_ml1m_movies(path: pathlib.Path) -> dict[str, _AttributeRecord]:
  """ml-1m `movies.dat`: MovieID::Title::Genres (genres '|'-separated), latin-1."""
  records: dict[str, _AttributeRecord] = {}
  for line, text in _text_lines(path, "latin-1"):
    parts = text.split("::")
    if len(parts) != 3:
      raise DataError(f"expected 3 fields separated by '::' (MovieID::Title::Genres), found "
                      f"{len(parts)}: {_shorten(text)}", file=path, line=line)
    _add_record(records, path, line, parts[0].strip(), parts[1],
                _split_attributes(parts[2], "|", ()))
  return records


def _load_movielens(name: str, sources: Sequence[pathlib.Path]) -> Dataset:
  ratings, movies = sources
  if ratings.name == "u.data":
    users, items, ts = _read_interactions(ratings, delimiter="\t", header=False,
                                          encoding="latin-1", user=0, item=1, timestamp=3,
                                          integer_ids=True, num_fields=4)
    genre_path = ratings.parent / "u.genre"
    genres = _u_genre_names(genre_path) if genre_path.is_file() else ML100K_GENRES
    records, names = _read_u_item(movies, genres), genres
  elif ratings.name == "ml-100k.inter":
    users, items, ts = _read_interactions(ratings, delimiter="\t", header=True, encoding="utf-8",
                                          user="user_id:token", item="item_id:token",
                                          timestamp="timestamp:float", integer_ids=True)
    records = _read_recbole_item(movies)
    names = ML100K_GENRES + tuple(sorted(
        {g for r in records.values() for g in r.attributes} - set(ML100K_GENRES)))
  elif ratings.name == "ratings.dat":
    users, items, ts = _read_interactions(ratings, delimiter="::", header=False,
                                          encoding="latin-1", user=0, item=1, timestamp=3,
                                          integer_ids=True, num_fields=4)
    records, names = _read_ml1m_movies(movies), None
  else:
    users, items, ts = _read_interactions(ratings, delimiter=",", header=True, encoding="utf-8",
                                          user="userId", item="movieId", timestamp="timestamp",
                                          integer_ids=True)
    records = read_attribute_csv(movies, delimiter=",", header=True, encoding="utf-8",
                                 item_column="movieId", title_column="title",
                                 attributes_column="genres", attribute_separator="|",
                                 none_values=("(no genres listed)",))
    names = None
  interactions, all_item_ids = _build(users, items, ts)
  _require_users(interactions, ratings)
  _check_attribute_items(records, all_item_ids, movies, "skip")
  return Dataset(name=name, interactions=interactions,
                 attributes=build_attributes(interactions.item_ids, records, names))


# ---------------------------------------------------------------------------------------------
# Cache.


# Options that change how files are fetched, not what they hold.
_FETCH_OPTIONS = ("download", "timeout", "pip_timeout")


def _cache_key(name: str, sources: Sequence[pathlib.Path], options: Mapping[str, object]) -> str:
  """sha256 over the format version, the name, the options and the source files' bytes."""
  options = {k: v for k, v in options.items() if k not in _FETCH_OPTIONS}
  h = hashlib.sha256()
  h.update(json.dumps({"version": _CACHE_VERSION, "name": name,
                       "options": {k: repr(v) for k, v in sorted(options.items())}},
                      sort_keys=True).encode())
  for path in sources:
    h.update(path.name.encode() + b"\0")
    h.update(bytes.fromhex(_file_sha256(path)))
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
  return arrays


def _dataset_from_arrays(a: Mapping[str, np.ndarray]) -> Dataset:
  interactions = Interactions(
      offsets=a["offsets"], items=a["items"], timestamps=a["timestamps"],
      num_items=int(a["num_items"]), user_ids=a["user_ids"], item_ids=a["item_ids"])
  attributes = None
  if "multi_hot" in a:
    attributes = ItemAttributes(multi_hot=a["multi_hot"],
                                names=tuple(str(n) for n in a["attribute_names"]),
                                titles=a["titles"])
  return Dataset(name=str(a["name"]), interactions=interactions, attributes=attributes)


def save_prepared(ds: Dataset, path: pathlib.Path) -> None:
  """Writes the dataset's arrays to `path` (.npz) atomically."""
  _atomic_write_from(path, lambda f: np.savez(f, **_dataset_arrays(ds)))


def load_prepared(path: pathlib.Path) -> Dataset:
  """Reads a dataset written by `save_prepared`."""
  with np.load(path, allow_pickle=False) as z:
    return _dataset_from_arrays({k: z[k] for k in z.files})


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
      * "synthetic": `seqrec_jax.synthetic.make_synthetic(**options)`; never cached.
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
    from seqrec_jax.synthetic import make_synthetic  # pylint: disable=g-import-not-at-top
    return make_synthetic(**options)
  data_dir = pathlib.Path(data_dir).expanduser() if data_dir is not None else (
      default_data_dir() / name)
  if name == "csv":
    sources = _csv_sources(data_dir, **options)
    parse = lambda: _load_csv(data_dir, **options)
  else:
    sources = _ml_sources(name, data_dir, **options)
    parse = lambda: _load_movielens(name, sources)
  for path in sources:
    if not path.is_file():
      raise DataError("file not found", file=path)
  if not use_cache:
    return parse()
  cache_root = pathlib.Path(cache_dir).expanduser() if cache_dir is not None else (
      default_data_dir())
  key = _cache_key(name, sources, options)
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
  save_prepared(ds, cache_path)
  return ds
