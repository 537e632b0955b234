"""Byte-level reader of delimited interaction files, with FILE:LINE errors.

Interaction files are plain delimited text: one interaction per line, no quoted fields, blank
lines ignored, a UTF-8 byte order mark and CRLF line ends tolerated. Bad input raises
`seqrec_jax.core.errors.DataError` naming the file, the 1-based line and what was expected.

`read_interactions` first tries the fast path, `arrow_csv` (pyarrow's CSV reader, for files whose
data lines are all numeric: every MovieLens ratings file). When it declines a file or a value fails
its validation, this module's tokenizer runs: whole-column NumPy operations on the raw bytes, and
only when a column fails to convert a line-by-line pass, to find the offending line. The tokenizer
is what reports errors (pyarrow reports neither the file and line of a bad value nor the other
cases of `tests/fixtures/bad/`), and it also parses what the fast path does not take (text ids,
ISO date-times).

Timestamps (`timestamp_kind`; every kind bounds them to [0, 2**40) seconds, 1970 to year 36812):

* "integer": integer epoch seconds, digits only (MovieLens `u.data`, `ratings.dat`,
  `ratings.csv`);
* "number": integer or decimal epoch seconds (RecBole `.inter`, whose column is `timestamp:float`);
* "number_or_iso": as "number", or ISO 8601 date-times (`YYYY-MM-DD[ hh:mm:ss]`, read as UTC);
  one kind per column, so that an ISO date among epoch seconds is an error rather than a year
  (generic CSV).

Measured (`python -m benchmarks.csv_parse`, 20,000,263 rows in the ML-20M format, shared 2-core
AMD EPYC): before the fast path, this tokenizer 9.1 s (load average 3); with it, in runs under a
load average of 4-8, 5.9-7.2 s against 15-18 s for the tokenizer alone in the same run (2.3-2.6x
in wall time, 2.6x in CPU time).
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from seqrec_jax.core.errors import DataError
from seqrec_jax.data.arrow_csv import MAX_TIMESTAMP, read_numeric_columns
from seqrec_jax.data.containers import AttributeRecord


_MAX_TOKEN_BYTES = 1024
_MAX_TIMESTAMP = MAX_TIMESTAMP
TIMESTAMP_KINDS = {
    "integer": "integer epoch seconds in [0, 2**40)",
    "number": "integer or decimal epoch seconds in [0, 2**40)",
    "number_or_iso": ("integer or decimal epoch seconds in [0, 2**40) or an ISO date-time "
                      "(YYYY-MM-DD[ hh:mm:ss]) from 1970, one kind per column"),
}


# ---------------------------------------------------------------------------------------------
# Reading files.


def read_bytes(path: pathlib.Path) -> bytes:
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


def decode_text(data: bytes, path: pathlib.Path, encoding: str) -> str:
  _check_encoding(data, path, encoding)
  return data.decode(encoding)


def shorten(text: str | bytes, limit: int = 60) -> str:
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
  # (sentinel, delimiter) when a multi-byte delimiter was replaced by one byte for splitting.
  restore: tuple[bytes, bytes] | None = None

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
    """Line i as it is in the file (the original delimiter, not the splitting byte)."""
    text = self.buf[self.line_start[i]:self.line_end[i]].tobytes()
    return text.replace(*self.restore) if self.restore else text


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
  restore = None
  if len(delim) > 1:
    sentinel = _pick_sentinel(data)
    data = data.replace(delim, sentinel)
    restore = (sentinel, delim)
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
    text = data[line_start[i]:line_end[i]]
    raise DataError(
        f"expected {num_fields} fields separated by {delimiter!r}, found {found}{hint}: "
        f"{shorten(text.replace(*restore) if restore else text)}", file=path,
        line=int(line_numbers[i]))
  if header:
    line_start, line_end, line_numbers, first_sep = (
        line_start[1:], line_end[1:], line_numbers[1:], first_sep[1:])
  return _Table(path=path, buf=buf, line_start=line_start, line_end=line_end,
                first_sep=first_sep, seps=seps, num_fields=num_fields,
                line_numbers=line_numbers, header=header_names, header_line=header_line,
                restore=restore)


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
                    f"{shorten(table.line_text(i))} again (first at line {table.header_line})",
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
    raise DataError(f"expected an integer {what}, found {shorten(col[i])}", file=table.path,
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


def _in_range(x: float) -> bool:
  return 0 <= x < _MAX_TIMESTAMP  # False for NaN


def _parse_epoch_integer(v: bytes) -> int:
  if not (v.isdigit() and _in_range(int(v))):
    raise ValueError(v)
  return int(v)


def _parse_epoch_number(v: bytes) -> float:
  x = float(np.array([v]).astype(np.float64)[0])  # numpy's parser, as in `_bulk_timestamps`
  if not _in_range(x):
    raise ValueError(v)
  return x


def _parse_iso_token(v: bytes) -> int:
  if not _iso_shape(np.array([v])):
    raise ValueError(v)
  x = int(np.datetime64(v.decode("utf-8"), "s").astype(np.int64))  # NaT is below 0
  if not _in_range(x):
    raise ValueError(v)
  return x


def _iso_shape(col: np.ndarray) -> bool:
  """Whether every entry of bytes [n] starts with YYYY-MM-DD (numpy alone reads "978300760" as a
  year)."""
  width = col.dtype.itemsize
  if width < 10 or len(col) == 0:
    return False
  chars = col.view(np.uint8).reshape(len(col), width)
  digits = chars[:, [0, 1, 2, 3, 5, 6, 8, 9]]
  return bool(((digits >= ord("0")) & (digits <= ord("9"))).all()
              and (chars[:, [4, 7]] == ord("-")).all())


def _bulk_timestamps(col: np.ndarray, kind: str) -> np.ndarray | None:
  """int64 or float64 [n] seconds from bytes [n] if every entry is of `kind` and in range."""
  if kind == "integer":
    return None  # digits-only columns are parsed by `int_column`; anything else is wrong
  try:
    values = col.astype(np.float64)
  except ValueError:
    values = None
  if values is None and kind == "number_or_iso" and _iso_shape(col):
    try:
      values = col.astype("datetime64[s]").astype(np.int64)  # NaT is below 0
    except ValueError:
      return None
  if values is None or not ((values >= 0) & (values < _MAX_TIMESTAMP)).all():
    return None
  return values


def _timestamp_column(table: _Table, col: np.ndarray | None, ints: np.ndarray | None,
                      kind: str, what: str = "timestamp") -> np.ndarray:
  """int64 or float64 [n] seconds of a timestamp column of `kind` (see the module docstring).

  Args:
    col: bytes [n], the column's text; None if `ints` holds it.
    ints: int64 [n] when every entry is 1-18 digits and below 2**40, else None.
  """
  if ints is not None:
    return ints
  values = _bulk_timestamps(col, kind)
  if values is not None:
    return values
  # Judge the column's kind by its first line, then find the first line not of it.
  if kind == "integer":
    parse = _parse_epoch_integer
  elif kind == "number" or _parses(_parse_epoch_number, col[0]):
    parse = _parse_epoch_number
  else:
    parse = _parse_iso_token
  i = _first_failure(col, parse)
  raise DataError(f"expected a {what} in {TIMESTAMP_KINDS[kind]}, found {shorten(col[i])}",
                  file=table.path, line=int(table.line_numbers[i]))


def read_interactions(path: pathlib.Path, *, delimiter: str, header: bool, encoding: str,
                       user: str | int, item: str | int, timestamp: str | int,
                       integer_ids: bool, num_fields: int | None = None,
                       timestamp_kind: str = "number_or_iso", fast_path: bool = True,
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(users, items, timestamps) [n] columns of an interactions file.

  Args:
    timestamp_kind: what the timestamp column holds, a key of `TIMESTAMP_KINDS`.
    fast_path: try `arrow_csv` first; False runs the tokenizer alone (the reference of
      `benchmarks.csv_parse`).
  """
  if timestamp_kind not in TIMESTAMP_KINDS:
    raise ValueError(f"timestamp_kind must be one of {sorted(TIMESTAMP_KINDS)}, found "
                     f"{timestamp_kind!r}")
  data = read_bytes(path)
  if fast_path:
    columns = read_numeric_columns(
        data, delimiter=delimiter, header=header, encoding=encoding, user=user, item=item,
        timestamp=timestamp, integer_ids=integer_ids, num_fields=num_fields,
        timestamp_kind=timestamp_kind)
    if columns is not None:
      return columns
  table = _split_table(path, data, delimiter=delimiter, header=header,
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
  if ints[jt] is not None and not (ints[jt] < _MAX_TIMESTAMP).all():
    text[jt] = table.column(jt)  # digits, but too many: the error quotes the text
  timestamps = _timestamp_column(table, text.get(jt), ints[jt] if jt not in text else None,
                                 timestamp_kind)
  return users, items, timestamps


def text_lines(path: pathlib.Path, encoding: str) -> list[tuple[int, str]]:
  """(1-based line number, text) of the non-empty lines of a small text file."""
  text = decode_text(read_bytes(path), path, encoding)
  lines = [(n, s) for n, s in enumerate(text.splitlines(), start=1) if s.strip()]
  if not lines:
    raise DataError("empty file: expected item attribute lines", file=path, line=1)
  return lines


def add_record(records: dict[str, AttributeRecord], path: pathlib.Path, line: int, item: str,
                title: str, attributes: Sequence[str], year: int = 0) -> None:
  if not item:
    raise DataError("expected an item id, found an empty field", file=path, line=line)
  if item in records:
    raise DataError(f"expected each item once, found item {item!r} again (first at line "
                    f"{records[item].line})", file=path, line=line)
  records[item] = AttributeRecord(title=title, attributes=tuple(attributes), line=line,
                                  year=year)


# ---------------------------------------------------------------------------------------------
