"""MovieLens-100k, -1M and -20M readers (ratings and item tables).

Release years (`ItemAttributes.release_years`, 0 = unknown) come from what each item table holds:

* the title's year, in every format (ML-1M `movies.dat`, ML-20M `movies.csv`, ML-100k `u.item`):
  a title ending in a parenthesised year, `Heat (1995)`, `City of Lost Children, The (Cité des
  enfants perdus, La) (1995)`, trailing spaces allowed; a span `(2006-2007)` gives its first
  year; later parenthesised parts are passed over, `... (1995) (V)` (`title_year`). A title
  without one is simply unknown;
* ML-100k `u.item` where the title has no year: its release date, `DD-Mon-YYYY`
  (`01-Jan-1995`). A non-empty date is checked on every line, year in the title or not. The
  title comes first so that both copies of ML-100k (and ML-1M/-20M) give the same years;
* RecBole's `ml-100k.item`: its `release_year` column (RecBole cut it from the GroupLens title,
  so it is the same year as above). Empty or `unknown` (also RecBole's spelling `unkonwn`, item
  267) is unknown. RecBole took the last parenthesised part of the title, so for a title ending
  in `(1995) (V)` (item 1412) the column holds `V` and the year is still in `movie_title`: a
  field that is not a year is read from the title, and is an error where the title has none.

Years are 4 digits from 1000 to 2999; a date or year field outside that is a FILE:LINE
`DataError` naming the accepted form.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from collections.abc import Sequence


from seqrec_jax.core.errors import DataError
from seqrec_jax.data.containers import Dataset, AttributeRecord, build_from_columns, check_attribute_items, require_users, build_attributes
from seqrec_jax.data.csv_format import split_attributes, read_attribute_csv
from seqrec_jax.data.download import ML100K_GENRES
from seqrec_jax.data.tokenizer import add_record, read_interactions, shorten, text_lines


# "(1995)", "(1975-1979)", "(2014- )", then any further parenthesised parts ("(1995) (V)").
_TITLE_YEAR = re.compile(
    r"\(([12][0-9]{3})(?:\s*[-\u2013]\s*(?:[12][0-9]{3})?\s*)?\)(?:\s*\([^()]*\))*\s*$")
_YEAR = re.compile(r"[12][0-9]{3}")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DATE = re.compile(r"([0-9]{1,2})-(" + "|".join(_MONTHS) + r")-([12][0-9]{3})")
_UNKNOWN_YEARS = ("", "unknown", "unkonwn")


def title_year(title: str) -> int:
  """The year of a title ending in `(YYYY)`, else 0.

  Also a span `(YYYY-YYYY)` or `(YYYY-)` (its first year), and a year followed by more
  parenthesised parts (ML-100k's `... (1995) (V)`).
  """
  match = _TITLE_YEAR.search(title)
  return int(match.group(1)) if match else 0


def _date_year(text: str, path: pathlib.Path, line: int) -> int:
  """Year of a u.item release date `DD-Mon-YYYY`; 0 for an empty field."""
  text = text.strip()
  if not text:
    return 0
  match = _DATE.fullmatch(text)
  if match is None or not 1 <= int(match.group(1)) <= 31:
    raise DataError(f"expected a release date DD-Mon-YYYY (like 01-Jan-1995) or an empty field, "
                    f"found {shorten(text)}", file=path, line=line)
  return int(match.group(3))


def _recbole_year(text: str, title: str, path: pathlib.Path, line: int) -> int:
  """Year of a RecBole `release_year` field; see the module docstring for the rules."""
  text = text.strip()
  if _YEAR.fullmatch(text):
    return int(text)
  year = title_year(title)
  if year or text.lower() in _UNKNOWN_YEARS:
    return year
  raise DataError(f"expected a release_year of 4 digits (like 1995), empty or 'unknown', "
                  f"found {shorten(text)}", file=path, line=line)


def _u_genre_names(path: pathlib.Path) -> tuple[str, ...]:
  names = []
  for line, text in text_lines(path, "latin-1"):
    parts = text.split("|")
    if len(parts) != 2 or parts[1].strip() != str(len(names)):
      raise DataError(f"expected 'name|{len(names)}', found {shorten(text)}", file=path,
                      line=line)
    names.append(parts[0])
  return tuple(names)


def _read_u_item(path: pathlib.Path, genres: Sequence[str]) -> dict[str, AttributeRecord]:
  """ml-100k `u.item`: id|title|release|video release|url|<len(genres) 0/1 flags>."""
  records: dict[str, AttributeRecord] = {}
  expected = 5 + len(genres)
  for line, text in text_lines(path, "latin-1"):
    parts = text.split("|")
    if len(parts) != expected:
      raise DataError(f"expected {expected} fields separated by '|', found {len(parts)}",
                      file=path, line=line)
    flags = parts[5:]
    if any(f not in ("0", "1") for f in flags):
      raise DataError(f"expected {len(genres)} genre flags 0 or 1, found {flags}", file=path,
                      line=line)
    year = _date_year(parts[2], path, line)
    add_record(records, path, line, parts[0], parts[1],
                [g for g, f in zip(genres, flags) if f == "1"], title_year(parts[1]) or year)
  return records


def _read_recbole_item(path: pathlib.Path) -> dict[str, AttributeRecord]:
  """RecBole `ml-100k.item`: item_id, movie_title, release_year, class (space-separated)."""
  header = ("item_id:token", "movie_title:token_seq", "release_year:token", "class:token_seq")
  lines = text_lines(path, "utf-8")
  first_line, first = lines[0]
  names = tuple(first.split("\t"))
  for column in header:
    if column not in names:
      raise DataError(f"missing column: expected a column {column!r}, found {list(names)}",
                      file=path, line=first_line)
  ji, jt, jy, jc = (names.index(c) for c in header)
  records: dict[str, AttributeRecord] = {}
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
    add_record(records, path, line, parts[ji], title, parts[jc].split(),
               _recbole_year(year, parts[jt], path, line))
  return records


def _read_ml1m_movies(path: pathlib.Path) -> dict[str, AttributeRecord]:
  """ml-1m `movies.dat`: MovieID::Title::Genres (genres '|'-separated), latin-1."""
  records: dict[str, AttributeRecord] = {}
  for line, text in text_lines(path, "latin-1"):
    parts = text.split("::")
    if len(parts) != 3:
      raise DataError(f"expected 3 fields separated by '::' (MovieID::Title::Genres), found "
                      f"{len(parts)}: {shorten(text)}", file=path, line=line)
    add_record(records, path, line, parts[0].strip(), parts[1],
                split_attributes(parts[2], "|", ()), title_year(parts[1]))
  return records


def load_movielens(name: str, sources: Sequence[pathlib.Path]) -> Dataset:
  ratings, movies = sources
  if ratings.name == "u.data":
    users, items, ts = read_interactions(ratings, delimiter="\t", header=False,
                                          encoding="latin-1", user=0, item=1, timestamp=3,
                                          integer_ids=True, num_fields=4,
                                          timestamp_kind="integer")
    genre_path = ratings.parent / "u.genre"
    genres = _u_genre_names(genre_path) if genre_path.is_file() else ML100K_GENRES
    records, names = _read_u_item(movies, genres), genres
  elif ratings.name == "ml-100k.inter":
    users, items, ts = read_interactions(ratings, delimiter="\t", header=True, encoding="utf-8",
                                          user="user_id:token", item="item_id:token",
                                          timestamp="timestamp:float", integer_ids=True,
                                          timestamp_kind="number")
    records = _read_recbole_item(movies)
    names = ML100K_GENRES + tuple(sorted(
        {g for r in records.values() for g in r.attributes} - set(ML100K_GENRES)))
  elif ratings.name == "ratings.dat":
    users, items, ts = read_interactions(ratings, delimiter="::", header=False,
                                          encoding="latin-1", user=0, item=1, timestamp=3,
                                          integer_ids=True, num_fields=4,
                                          timestamp_kind="integer")
    records, names = _read_ml1m_movies(movies), None
  else:
    users, items, ts = read_interactions(ratings, delimiter=",", header=True, encoding="utf-8",
                                          user="userId", item="movieId", timestamp="timestamp",
                                          integer_ids=True, timestamp_kind="integer")
    records = read_attribute_csv(movies, delimiter=",", header=True, encoding="utf-8",
                                 item_column="movieId", title_column="title",
                                 attributes_column="genres", attribute_separator="|",
                                 none_values=("(no genres listed)",))
    records = {k: dataclasses.replace(r, year=title_year(r.title)) for k, r in records.items()}
    names = None
  interactions, all_item_ids = build_from_columns(users, items, ts)
  require_users(interactions, ratings)
  check_attribute_items(records, all_item_ids, movies, "skip")
  return Dataset(name=name, interactions=interactions,
                 attributes=build_attributes(interactions.item_ids, records, names,
                                             release_years=True))
