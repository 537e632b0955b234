"""Generic delimited interaction files with an optional attribute file (also Music4All)."""

from __future__ import annotations

import csv
import io
import os
import pathlib
from collections.abc import Sequence


from seqrec_jax.core.errors import DataError
from seqrec_jax.data.containers import Dataset, AttributeRecord, build_from_columns, check_attribute_items, require_users, build_attributes
from seqrec_jax.data.tokenizer import add_record, decode_text, read_bytes, read_interactions, shorten


# Generic CSV (also Music4All).


def split_attributes(text: str, separator: str, none_values: Sequence[str]) -> list[str]:
  parts = [p.strip() for p in text.split(separator)] if separator else [text.strip()]
  return [p for p in parts if p and p not in none_values]


def read_attribute_csv(path: pathlib.Path, *, delimiter: str = ",", header: bool = True,
                       encoding: str = "utf-8", item_column: str | int = "item",
                       title_column: str | int | None = "title",
                       attributes_column: str | int = "attributes",
                       attribute_separator: str = "|",
                       none_values: Sequence[str] = ("(no genres listed)",),
                       ) -> dict[str, AttributeRecord]:
  """Item attribute records of a delimited file (quoted fields allowed for 1-char delimiters).

  Returns:
    item id -> record (title, attribute names, line); the title is the id if there is no
    title column.
  """
  text = decode_text(read_bytes(path), path, encoding)
  if not text.strip():
    raise DataError("empty file: expected item attribute lines", file=path, line=1)
  if len(delimiter) == 1:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
  else:
    reader = (line.split(delimiter) for line in text.splitlines())
  records: dict[str, AttributeRecord] = {}
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
                        f"{len(row)}: {shorten(delimiter.join(row))}", file=path, line=line)
      if names is not None and tuple(row) == names:
        raise DataError(f"duplicated header: expected a data line, found the header again "
                        f"(first at line {header_line})", file=path, line=line)
      ji, jt, ja = columns
      item = row[ji].strip()
      title = row[jt] if jt is not None else item
      add_record(records, path, line, item, title,
                  split_attributes(row[ja], attribute_separator, none_values))
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


def csv_sources(data_dir: pathlib.Path, *, interactions_file: str | os.PathLike,
                 attributes_file: str | os.PathLike | None = None, **_) -> list[pathlib.Path]:
  paths = [_resolve(data_dir, interactions_file)]
  if attributes_file is not None:
    paths.append(_resolve(data_dir, attributes_file))
  return paths


def load_csv(
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
  users, items, timestamps = read_interactions(
      path, delimiter=delimiter, header=header, encoding=encoding, user=user_column,
      item=item_column, timestamp=timestamp_column, integer_ids=False)
  interactions, all_item_ids = build_from_columns(users, items, timestamps)
  require_users(interactions, path)
  attributes = None
  if attributes_file is not None:
    apath = _resolve(data_dir, attributes_file)
    records = read_attribute_csv(
        apath, delimiter=attributes_delimiter or delimiter,
        header=header if attributes_header is None else attributes_header, encoding=encoding,
        item_column=attribute_item_column, title_column=title_column,
        attributes_column=attributes_column, attribute_separator=attribute_separator,
        none_values=none_values)
    check_attribute_items(records, all_item_ids, apath, unknown_attribute_items)
    attributes = build_attributes(interactions.item_ids, records)
  return Dataset(name=dataset_name, interactions=interactions, attributes=attributes)
