"""Interaction file parsing: the pyarrow fast path against the tokenizer, timestamps, excerpts."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from seqrec_jax.core.errors import DataError
from seqrec_jax.data import arrow_csv, load_dataset, tokenizer


def _write(path: pathlib.Path, text: str) -> pathlib.Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(text.encode("utf-8"))
  return path


def _read(path, fast_path, **kwargs):
  try:
    return tokenizer.read_interactions(path, fast_path=fast_path, **kwargs)
  except DataError as e:
    return str(e)


# ----------------------------------------------------------------------------------------------
# The fast path.


def test_fast_path_takes_plain_movielens_ratings(tmp_path):
  path = _write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n"
                "7,1,4.0,1112486027\n\n7,20,3.5,1112484676\n8,2,0.5,0\n")
  kwargs = dict(delimiter=",", header=True, encoding="utf-8", user="userId", item="movieId",
                timestamp="timestamp", integer_ids=True, timestamp_kind="integer")
  columns = arrow_csv.read_numeric_columns(tokenizer.read_bytes(path), num_fields=None, **kwargs)
  assert columns is not None, "the fast path declined a plain ratings file"
  assert [c.tolist() for c in columns] == [[7, 7, 8], [1, 20, 2], [1112486027, 1112484676, 0]]
  slow = tokenizer.read_interactions(path, fast_path=False, **kwargs)
  for a, b in zip(columns, slow):
    assert a.dtype == b.dtype == np.int64 and np.array_equal(a, b)


@pytest.mark.parametrize("token", [" 7", "7 ", "0x10", "+7", "-7", "", "7.", "1e3"])
def test_fast_path_declines_what_pyarrow_reads_leniently(tmp_path, token):
  # pyarrow reads " 7" and "0x10" as integers; the contract (and the tokenizer) do not.
  path = _write(tmp_path / "u.data", f"1\t10\t5\t881250949\n{token}\t20\t5\t881250949\n")
  kwargs = dict(delimiter="\t", header=False, encoding="latin-1", user=0, item=1, timestamp=3,
                integer_ids=True, num_fields=4, timestamp_kind="integer")
  assert arrow_csv.read_numeric_columns(tokenizer.read_bytes(path), **kwargs) is None


_NUMERIC_TOKENS = ["0", "1", "7", "07", "12", "3.5", "5.", ".5", "-3", "+4", " 9", "0x1f", "1e3",
                   "", "nan", "1099511627776", "1099511627775", "123456789012345678901234",
                   "2019-02-20", "a", "-07", "-0", "0X1F", "inf", "1.5e3"]
_ROW = st.lists(st.sampled_from(_NUMERIC_TOKENS), min_size=3, max_size=4)


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.one_of(_ROW, st.lists(st.sampled_from(["1", "2", "30"]), min_size=4,
                                               max_size=4)), min_size=1, max_size=6),
       delimiter=st.sampled_from([",", "\t", "::"]), header=st.booleans(),
       integer_ids=st.booleans(), kind=st.sampled_from(sorted(tokenizer.TIMESTAMP_KINDS)),
       crlf=st.booleans())
def test_fast_path_agrees_with_tokenizer(tmp_path_factory, rows, delimiter, header, integer_ids,
                                         kind, crlf):
  """Same values or the same error, whichever path reads the file."""
  lines = ([delimiter.join(["u", "i", "r", "t"])] if header else []) + [
      delimiter.join(r) for r in rows]
  path = tmp_path_factory.mktemp("fuzz") / "x.txt"
  path.write_bytes((("\r\n" if crlf else "\n").join(lines) + "\n").encode())
  kwargs = dict(delimiter=delimiter, header=header, encoding="utf-8",
                user="u" if header else 0, item="i" if header else 1,
                timestamp="t" if header else 3, integer_ids=integer_ids, num_fields=4,
                timestamp_kind=kind)
  fast, slow = _read(path, True, **kwargs), _read(path, False, **kwargs)
  taken = arrow_csv.read_numeric_columns(tokenizer.read_bytes(path), **kwargs) is not None
  event(f"fast path {'taken' if taken else 'declined'}")
  if isinstance(slow, str):
    event("error")
    assert fast == slow
  else:
    event("parsed")
    assert not isinstance(fast, str), fast
    for a, b in zip(fast, slow):
      assert a.tolist() == b.tolist()


# ----------------------------------------------------------------------------------------------
# Timestamps: one-line FILE:LINE errors naming the accepted range, for every loader format.

_ISO_AMONG_EPOCH = "2000-12-31"
_TOO_LONG = "12345678901234567890123"
_INTEGER = "integer epoch seconds in [0, 2**40)"
_NUMBER = "integer or decimal epoch seconds in [0, 2**40)"


def _ml100k(bad):
  return "ml-100k", {"u.data": f"1\t10\t5\t881250949\n1\t20\t5\t{bad}\n",
                     "u.item": "10|A|||x" + "|0" * 19 + "\n"}, "u.data", 2, _INTEGER, {}


def _recbole(bad):
  return "ml-100k", {
      "ml-100k.inter": "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                       f"1\t10\t5\t881250949.5\n1\t20\t5\t{bad}\n",
      "ml-100k.item": "item_id:token\tmovie_title:token_seq\trelease_year:token\t"
                      "class:token_seq\n10\tA\t1999\tDrama\n"}, "ml-100k.inter", 3, _NUMBER, {}


def _ml1m(bad):
  return "ml-1m", {"ratings.dat": f"1::10::5::978300760\n1::20::5::{bad}\n",
                   "movies.dat": "10::A::Drama\n"}, "ratings.dat", 2, _INTEGER, {}


def _ml20m(bad):
  return "ml-20m", {"ratings.csv": f"userId,movieId,rating,timestamp\n1,10,5.0,978300760\n"
                                   f"1,20,4.5,{bad}\n",
                    "movies.csv": "movieId,title,genres\n10,A,Drama\n"}, "ratings.csv", 3, \
      _INTEGER, {}


def _generic(bad):
  return "csv", {"i.csv": f"user,item,timestamp\nu,a,978300760\nu,b,{bad}\n"}, "i.csv", 3, \
      "ISO date-time", {"interactions_file": "i.csv"}


@pytest.mark.parametrize("make", [_ml100k, _recbole, _ml1m, _ml20m, _generic])
@pytest.mark.parametrize("bad", [_ISO_AMONG_EPOCH, _TOO_LONG, "1099511627776", "-5"])
def test_timestamp_outside_the_format_is_a_file_line_error(tmp_path, make, bad):
  name, files, bad_file, line, accepted, options = make(bad)
  for filename, text in files.items():
    _write(tmp_path / filename, text)
  with pytest.raises(DataError) as e:
    load_dataset(name, data_dir=tmp_path, use_cache=False,
                 **(options if name == "csv" else {"download": False}))
  message = str(e.value)
  assert message.startswith(f"{tmp_path / bad_file}:{line}: expected a timestamp in "), message
  assert accepted in message and f"found {bad!r}" in message and "\n" not in message


def test_generic_csv_epoch_among_iso_dates_is_an_error(tmp_path):
  _write(tmp_path / "i.csv", "user,item,timestamp\nu,a,2019-02-20 13:24:11\nu,b,1550669051\n")
  with pytest.raises(DataError, match=r"i.csv:3: expected a timestamp .*one kind per column, "
                                      r"found '1550669051'"):
    load_dataset("csv", data_dir=tmp_path, use_cache=False, interactions_file="i.csv")


def test_in_range_timestamps_of_each_kind_still_load(tmp_path):
  _write(tmp_path / "i.csv", "user,item,timestamp\nu,a,1099511627775\nu,b,0.5\n")
  ds = load_dataset("csv", data_dir=tmp_path, use_cache=False, interactions_file="i.csv")
  assert ds.interactions.timestamps.tolist() == [0, 1099511627775]
  _write(tmp_path / "j.csv", "user,item,timestamp\nu,a,1970-01-01\nu,b,1970-01-01T00:00:01\n")
  ds = load_dataset("csv", data_dir=tmp_path, use_cache=False, interactions_file="j.csv")
  assert ds.interactions.timestamps.tolist() == [0, 1]


# ----------------------------------------------------------------------------------------------
# Excerpts quote the line as it is in the file.


def test_ml1m_excerpt_shows_the_double_colons(tmp_path):
  _write(tmp_path / "ratings.dat", "1::10::5::978300760\n1::20::5::978300760::9\n")
  _write(tmp_path / "movies.dat", "10::A::Drama\n")
  with pytest.raises(DataError) as e:
    load_dataset("ml-1m", data_dir=tmp_path, use_cache=False, download=False)
  message = str(e.value)
  assert message == (f"{tmp_path / 'ratings.dat'}:2: expected 4 fields separated by '::', "
                     "found 5: '1::20::5::978300760::9'")


def test_ml1m_repeated_header_excerpt_shows_the_double_colons(tmp_path):
  _write(tmp_path / "x.dat", "u::i::t\na::b::1\nu::i::t\n")
  with pytest.raises(DataError) as e:
    tokenizer.read_interactions(tmp_path / "x.dat", delimiter="::", header=True,
                                encoding="utf-8", user="u", item="i", timestamp="t",
                                integer_ids=False)
  assert "found the header 'u::i::t' again" in str(e.value) and "\x1f" not in str(e.value)
