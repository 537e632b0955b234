"""Tests of seqrec_jax.data: formats, remapping invariants, bad input, cache."""

from __future__ import annotations

import os
import pathlib
import pickle
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from seqrec_jax import data
from seqrec_jax.data import download
from seqrec_jax.data import tokenizer
from seqrec_jax.core.errors import DataError
from seqrec_jax.data import load_dataset

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"
BAD = FIXTURES / "bad"
GOOD = FIXTURES / "good"
RECBOLE_WHEEL_ML100K = "recbole/dataset_example/ml-100k/"


def _write(path: pathlib.Path, text: str, encoding: str = "utf-8") -> pathlib.Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(text.encode(encoding))
  return path


def _sequences(ds) -> dict[str, list[str]]:
  """Original user id -> original item ids in order."""
  x = ds.interactions
  return {str(u): [str(x.item_ids[i]) for i in x.sequence(k)] for k, u in enumerate(x.user_ids)}


def _check_invariants(ds) -> None:
  x = ds.interactions
  assert x.offsets.dtype == np.int64 and x.offsets[0] == 0
  assert np.all(np.diff(x.offsets) >= 2)
  assert x.offsets[-1] == len(x.items) == len(x.timestamps)
  assert x.items.dtype == np.int32 and x.timestamps.dtype == np.int64
  assert x.items.min() >= 1 and x.items.max() == x.num_items - 1
  assert len(np.unique(x.items)) == x.num_items - 1  # every id 1..V-1 is used
  assert len(x.item_ids) == x.num_items and x.item_ids[0] == data.PAD_TOKEN
  assert len(x.user_ids) == x.num_users
  for u in range(x.num_users):
    assert np.all(np.diff(x.timestamps[x.offsets[u]:x.offsets[u + 1]]) >= 0)
  if ds.attributes is not None:
    a = ds.attributes
    assert a.multi_hot.shape == (x.num_items, len(a.names)) and a.multi_hot.dtype == bool
    assert not a.multi_hot[0].any()
    assert len(a.titles) == x.num_items and a.titles[0] == data.PAD_TOKEN


# ----------------------------------------------------------------------------------------------
# Formats.


def test_ml1m_round_trip(tmp_path):
  _write(tmp_path / "ratings.dat",
         "1::20::5::978300760\n1::10::3::978300700\n2::10::4::978301968\n2::30::4::978300000\n"
         "3::10::1::978300000\n", "latin-1")
  _write(tmp_path / "movies.dat",
         "10::Amélie (2001)::Comedy|Romance\n20::Twenty (1995)::Drama\n"
         "30::Thirty (1990)::Drama|Comedy\n99::Never rated (1999)::Horror\n", "latin-1")
  ds = load_dataset("ml-1m", data_dir=tmp_path, cache_dir=tmp_path / "cache", download=False)
  _check_invariants(ds)
  # User 3 has one interaction and is dropped; 99 has no ratings and gets no id.
  assert _sequences(ds) == {"1": ["10", "20"], "2": ["30", "10"]}
  assert list(ds.interactions.item_ids) == ["<pad>", "10", "20", "30"]
  a = ds.attributes
  assert a.names == ("Comedy", "Drama", "Horror", "Romance")
  assert list(a.titles) == ["<pad>", "Amélie (2001)", "Twenty (1995)", "Thirty (1990)"]
  assert a.multi_hot.tolist() == [[False] * 4, [True, False, False, True],
                                  [False, True, False, False], [True, True, False, False]]


def test_ml20m_quoted_titles(tmp_path):
  _write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n"
         "7,1,4.0,1112486027\n7,2,3.5,1112484676\n8,2,3.5,1112484580\n8,3,3.0,1112484727\n")
  _write(tmp_path / "movies.csv", "movieId,title,genres\n"
         '1,"American President, The (1995)",Comedy|Drama|Romance\n'
         "2,Heat (1995),Action|Crime|Thriller\n"
         '3,"Lamerica, ""quoted"" (1994)",(no genres listed)\n')
  ds = load_dataset("ml-20m", data_dir=tmp_path, cache_dir=tmp_path / "cache", download=False)
  _check_invariants(ds)
  assert _sequences(ds) == {"7": ["2", "1"], "8": ["2", "3"]}
  a = ds.attributes
  assert list(a.titles[1:]) == ["American President, The (1995)", "Heat (1995)",
                                'Lamerica, "quoted" (1994)']
  assert not a.multi_hot[3].any()
  assert "(no genres listed)" not in a.names
  assert a.multi_hot[1, a.names.index("Romance")]


def test_generic_csv_tokens_and_options(tmp_path):
  _write(tmp_path / "hist.tsv", "who\tsong\twhen\nbob\tsZ\t2019-02-20 13:24:11\n"
         "bob\tsA\t2019-02-20 13:20:00\nann\tsA\t2019-01-01 00:00:00\n"
         "ann\tsQ\t2019-01-01 00:00:00\nann\tsB\t2018-12-31 23:59:59\n")
  _write(tmp_path / "genres.tsv", "id\tgenres\nsA\trock,pop\nsZ\tjazz\nsB\t\nunused\tpop\n")
  ds = load_dataset(
      "csv", data_dir=tmp_path, cache_dir=tmp_path / "cache", interactions_file="hist.tsv",
      delimiter="\t", user_column="who", item_column="song", timestamp_column="when",
      attributes_file="genres.tsv", attribute_item_column="id", title_column=None,
      attributes_column="genres", attribute_separator=",", unknown_attribute_items="skip")
  _check_invariants(ds)
  # Equal timestamps keep file order (sA before sQ); non-numeric ids sort as text.
  assert _sequences(ds) == {"ann": ["sB", "sA", "sQ"], "bob": ["sA", "sZ"]}
  assert list(ds.interactions.user_ids) == ["ann", "bob"]
  a = ds.attributes
  assert a.names == ("jazz", "pop", "rock")
  assert list(a.titles) == ["<pad>", "sA", "sB", "sQ", "sZ"]  # no title column: raw ids
  assert a.multi_hot[1].tolist() == [False, True, True]
  assert not a.multi_hot[3].any()  # sQ missing from the attribute file
  assert ds.interactions.timestamps[0] == np.datetime64("2018-12-31T23:59:59", "s").astype(int)


def test_generic_csv_headerless_positions_and_decimal_timestamps(tmp_path):
  _write(tmp_path / "x.csv", "9;a;x;3.75\n9;b;x;3.25\n10;a;x;881250949.0\n10;c;x;881250949\n"
         "2;c;x;1\n2;a;x;1\n")
  ds = load_dataset("csv", data_dir=tmp_path, cache_dir=tmp_path / "cache",
                    interactions_file="x.csv", delimiter=";", header=False, user_column=0,
                    item_column=1, timestamp_column=3)
  _check_invariants(ds)
  # Numeric user ids sort numerically; decimals sort with full precision and are floored.
  assert list(ds.interactions.user_ids) == ["2", "9", "10"]
  assert _sequences(ds) == {"2": ["c", "a"], "9": ["b", "a"], "10": ["a", "c"]}
  assert ds.interactions.timestamps[2:4].tolist() == [3, 3]
  assert ds.attributes is None


def test_recbole_ml100k_files_in_data_dir(tmp_path):
  _write(tmp_path / "ml-100k.inter", "user_id:token\titem_id:token\trating:float\t"
         "timestamp:float\n196\t242\t3\t881250949\n196\t302\t3\t881250940.0\n22\t377\t1\t3\n"
         "22\t242\t1\t2\n5\t1\t1\t1\n")
  _write(tmp_path / "ml-100k.item", "item_id:token\tmovie_title:token_seq\trelease_year:token\t"
         "class:token_seq\n242\tKolya\t1996\tComedy\n302\tL.A. Confidential\t1997\t"
         "Crime Film-Noir Mystery Thriller\n377\tHeavyweights\t1994\tChildren's Comedy\n")
  ds = load_dataset("ml-100k", data_dir=tmp_path, cache_dir=tmp_path / "cache", download=False)
  _check_invariants(ds)
  assert _sequences(ds) == {"22": ["242", "377"], "196": ["302", "242"]}
  a = ds.attributes
  assert a.names == download.ML100K_GENRES
  assert list(a.titles) == ["<pad>", "Kolya (1996)", "L.A. Confidential (1997)",
                            "Heavyweights (1994)"]
  assert a.multi_hot[2, a.names.index("Film-Noir")] and a.multi_hot[2].sum() == 4


def test_grouplens_ml100k_files_in_data_dir(tmp_path):
  _write(tmp_path / "u.data", "196\t242\t3\t881250949\n196\t302\t3\t881250940\n"
         "22\t377\t1\t3\n22\t242\t1\t2\n")
  genres = "".join(f"{g}|{i}\n" for i, g in enumerate(download.ML100K_GENRES))
  _write(tmp_path / "u.genre", genres)
  flags = lambda *on: "|".join("1" if g in on else "0" for g in download.ML100K_GENRES)
  children = "Children's"
  _write(tmp_path / "u.item",
         f"242|Kolya (1996)|24-Jan-1997||http://x|{flags('Comedy')}\n"
         f"302|L.A. Confidential (1997)|01-Jan-1997||http://x|{flags('Crime', 'Thriller')}\n"
         f"377|Heavyweights (1994)|01-Jan-1994||http://x|{flags('Comedy', children)}\n",
         "latin-1")
  ds = load_dataset("ml-100k", data_dir=tmp_path, cache_dir=tmp_path / "cache", download=False)
  _check_invariants(ds)
  assert _sequences(ds) == {"22": ["242", "377"], "196": ["302", "242"]}
  assert ds.attributes.names == download.ML100K_GENRES
  assert ds.attributes.titles[1] == "Kolya (1996)"


def test_missing_movielens_files_say_where_to_put_them(tmp_path):
  with pytest.raises(DataError) as e:
    load_dataset("ml-1m", data_dir=tmp_path, cache_dir=tmp_path, download=False)
  assert str(tmp_path / "ratings.dat") in str(e.value)
  assert str(tmp_path / "movies.dat") in str(e.value)


def test_ml100k_offline_everywhere_says_where_to_put_files(tmp_path, monkeypatch):
  def offline(*args, **kwargs):
    raise OSError("network unreachable")
  monkeypatch.setattr(download, "_download_grouplens", offline)
  monkeypatch.setattr(download, "_download_recbole_ml100k", offline)
  with pytest.raises(DataError) as e:
    load_dataset("ml-100k", data_dir=tmp_path, cache_dir=tmp_path)
  message = str(e.value)
  assert str(tmp_path / "u.data") in message and str(tmp_path / "ml-100k.inter") in message
  assert "GroupLens: network unreachable" in message and "recbole==1.2.1" in message
  assert "\n" not in message


def test_byte_order_mark_and_crlf_are_accepted(tmp_path):
  (tmp_path / "i.csv").write_bytes(b"\xef\xbb\xbfuser,item,timestamp\r\na,1,1\r\na,2,2\r\n")
  (tmp_path / "a.csv").write_bytes(b"\xef\xbb\xbfitem,title,attributes\r\n1,One,x\r\n")
  ds = load_dataset("csv", data_dir=tmp_path, use_cache=False, interactions_file="i.csv",
                    attributes_file="a.csv")
  assert _sequences(ds) == {"a": ["1", "2"]}
  assert list(ds.attributes.titles) == ["<pad>", "One", "2"]


def test_no_user_with_two_interactions_is_an_error(tmp_path):
  _write(tmp_path / "i.csv", "user,item,timestamp\na,1,1\nb,2,2\n")
  with pytest.raises(DataError, match="i.csv: expected at least one user"):
    load_dataset("csv", data_dir=tmp_path, use_cache=False, interactions_file="i.csv")


def test_unknown_dataset_name_lists_valid_ones():
  with pytest.raises(ValueError, match="ml-100k, ml-1m, ml-20m, csv, synthetic"):
    load_dataset("ml-2m")


def test_synthetic_through_load_dataset():
  ds = load_dataset("synthetic", num_users=20, num_items=50, max_len=25, seed=3)
  assert ds.name == "synthetic" and ds.interactions.num_users == 20


# ----------------------------------------------------------------------------------------------
# Remapping invariants.


def test_build_remaps_sorts_stably_and_drops_single_users():
  rng = np.random.default_rng(0)
  n = 2000
  users = rng.integers(0, 300, n)
  items = rng.choice(np.array([b"x7", b"a", b"zz", b"m1", b"q"] + [b"i%d" % k for k in range(40)]),
                     n)
  timestamps = rng.integers(0, 50, n)  # many ties
  x = data.build_interactions(users, items, timestamps)
  counts = np.bincount(users, minlength=300)
  assert x.num_users == np.sum(counts >= 2)
  assert x.user_ids.tolist() == [str(u) for u in np.flatnonzero(counts >= 2)]
  assert x.items.min() >= 1
  for k, u in enumerate(x.user_ids):
    rows = np.flatnonzero(users == int(u))
    expected = rows[np.argsort(timestamps[rows], kind="stable")]  # file order on ties
    got = x.item_ids[x.sequence(k)]
    assert got.tolist() == [items[r].decode() for r in expected]
    assert x.timestamps[x.offsets[k]:x.offsets[k + 1]].tolist() == timestamps[expected].tolist()
  assert list(x.item_ids[1:]) == sorted(x.item_ids[1:])


def test_build_numeric_ids_sort_numerically_but_not_zero_padded_ones():
  x = data.build_interactions(np.array([b"1", b"1", b"1"]), np.array([b"10", b"9", b"100"]),
                              np.array([0, 1, 2]))
  assert list(x.item_ids) == ["<pad>", "9", "10", "100"]
  y = data.build_interactions(np.array([b"1", b"1"]), np.array([b"010", b"9"]), np.array([0, 1]))
  assert list(y.item_ids) == ["<pad>", "010", "9"]  # "010" is not canonical: text order


def test_single_interaction_users_are_logged(tmp_path, caplog):
  from absl import logging as absl_logging
  absl_logging.set_verbosity(absl_logging.INFO)
  x = data.build_interactions(np.array([1, 1, 2, 3]), np.array([5, 6, 5, 6]), np.arange(4))
  assert x.num_users == 1
  assert "Dropped 2 users with a single interaction" in caplog.text


def test_attribute_rows_align_with_item_ids(tmp_path):
  ds = load_dataset("csv", data_dir=GOOD, cache_dir=tmp_path, interactions_file="interactions.csv",
                    attributes_file="items.csv")
  x, a = ds.interactions, ds.attributes
  # u3 has one interaction and is dropped; items 10, 11, 12 remain.
  assert list(x.item_ids) == ["<pad>", "10", "11", "12"]
  assert list(a.titles) == ["<pad>", "Ten, the film", "Eleven", "Twelve"]
  assert a.names == ("A", "B")
  assert a.multi_hot.tolist() == [[False, False], [True, True], [False, True], [False, False]]


# ----------------------------------------------------------------------------------------------
# Bad input.

_BAD_INTERACTIONS = [
    ("wrong_separator.csv", 4, "expected 3 fields separated by ','"),
    ("missing_column.csv", 1, "missing column"),
    ("text_in_timestamp.csv", 5, "expected a timestamp"),
    ("empty.csv", 1, "empty file"),
    ("blank.csv", 1, "empty file"),
    ("header_only.csv", 1, "found none"),
    ("truncated_last_line.csv", 5, "truncated last line"),
    ("duplicated_header.csv", 4, "duplicated header"),
    ("empty_item_id.csv", 3, "expected a item id, found an empty field"),
    ("crlf_extra_field.csv", 4, "expected 3 fields"),
    ("nan_timestamp.csv", 3, "expected a timestamp"),
    ("non_utf8.csv", 3, "expected utf-8 text, found byte 0xe9"),
]

_BAD_ATTRIBUTES = [
    ("attributes_unknown_item.csv", 4, "unknown item '999'"),
    ("attributes_wrong_fields.csv", 3, "expected 3 fields"),
    ("attributes_missing_column.csv", 1, "missing column"),
    ("attributes_duplicated_item.csv", 4, "expected each item once"),
    ("attributes_duplicated_header.csv", 3, "duplicated header"),
    ("attributes_unclosed_quote.csv", 4, "malformed"),
    ("attributes_empty.csv", 1, "empty file"),
    ("attributes_non_utf8.csv", 3, "expected utf-8 text"),
]

_BAD_MOVIELENS = [
    ("ml-1m", "ml-1m-wrong-separator", "ratings.dat", 3, "expected 4 fields separated by '::'"),
    ("ml-1m", "ml-1m-text-user", "ratings.dat", 2, "expected an integer user id, found 'abc'"),
    ("ml-1m", "ml-1m-bad-movies", "movies.dat", 2, "expected 3 fields"),
    ("ml-20m", "ml-20m-missing-column", "ratings.csv", 1, "missing column"),
]


def _assert_names(error: DataError, path: pathlib.Path, line: int, fragment: str) -> None:
  assert error.file == str(path) and error.line == line, str(error)
  assert str(error).startswith(f"{path}:{line}: "), str(error)
  assert fragment in str(error), str(error)
  assert "\n" not in str(error)


@pytest.mark.parametrize("filename,line,fragment", _BAD_INTERACTIONS)
def test_bad_interactions_file(tmp_path, filename, line, fragment):
  with pytest.raises(DataError) as e:
    load_dataset("csv", data_dir=BAD, cache_dir=tmp_path, interactions_file=filename)
  _assert_names(e.value, BAD / filename, line, fragment)
  assert not any(tmp_path.rglob("*")), "a failing load must leave nothing in the cache"


@pytest.mark.parametrize("filename,line,fragment", _BAD_ATTRIBUTES)
def test_bad_attributes_file(tmp_path, filename, line, fragment):
  with pytest.raises(DataError) as e:
    load_dataset("csv", data_dir=BAD, cache_dir=tmp_path,
                 interactions_file=GOOD / "interactions.csv", attributes_file=filename)
  _assert_names(e.value, BAD / filename, line, fragment)
  assert not any(tmp_path.rglob("*"))


@pytest.mark.parametrize("name,folder,filename,line,fragment", _BAD_MOVIELENS)
def test_bad_movielens_files(tmp_path, name, folder, filename, line, fragment):
  with pytest.raises(DataError) as e:
    load_dataset(name, data_dir=BAD / folder, cache_dir=tmp_path, download=False)
  _assert_names(e.value, BAD / folder / filename, line, fragment)
  assert not any(tmp_path.rglob("*"))


def test_every_bad_fixture_is_tested():
  tested = {f for f, _, _ in _BAD_INTERACTIONS + _BAD_ATTRIBUTES}
  tested |= {folder for _, folder, _, _, _ in _BAD_MOVIELENS}
  assert tested == {p.name for p in BAD.iterdir()}


def test_unknown_attribute_items_can_be_skipped(tmp_path):
  ds = load_dataset("csv", data_dir=BAD, cache_dir=tmp_path,
                    interactions_file=GOOD / "interactions.csv",
                    attributes_file="attributes_unknown_item.csv", unknown_attribute_items="skip")
  assert "999" not in set(ds.interactions.item_ids)


def test_data_error_format_and_pickling():
  assert str(DataError("bad", file="f.csv", line=3)) == "f.csv:3: bad"
  assert str(DataError("bad", file="f.csv")) == "f.csv: bad"
  assert str(DataError("two\nlines")) == "two lines"
  assert isinstance(DataError("x"), ValueError)
  e = pickle.loads(pickle.dumps(DataError("bad", file="f.csv", line=3)))
  assert (e.file, e.line, str(e)) == ("f.csv", 3, "f.csv:3: bad")


_TOKENS = list("ab1,;\t\n\r\" .-|x9:0") + ["\u00e9", "\x00", "\udcff", "::", "12", "3.5"]
_FUZZ = st.lists(st.sampled_from(_TOKENS), max_size=40).map("".join)
_FORMATS = {  # name -> (interactions file, header, attributes file, header, load options)
    "csv": ("i.csv", "user,item,timestamp\n", "a.csv", "item,title,attributes\n",
            dict(interactions_file="i.csv", attributes_file="a.csv")),
    "csv-positions": ("i.csv", "", "a.csv", "item,title,attributes\n",
                      dict(interactions_file="i.csv", attributes_file="a.csv", header=False,
                           attributes_header=True, user_column=0, item_column=1,
                           timestamp_column=2)),
    "ml-1m": ("ratings.dat", "", "movies.dat", "", dict(download=False)),
    "ml-20m": ("ratings.csv", "userId,movieId,rating,timestamp\n", "movies.csv",
               "movieId,title,genres\n", dict(download=False)),
    "ml-100k": ("u.data", "", "u.item", "", dict(download=False)),
    "ml-100k-recbole": ("ml-100k.inter", "user_id:token\titem_id:token\trating:float\t"
                        "timestamp:float\n", "ml-100k.item", "item_id:token\t"
                        "movie_title:token_seq\trelease_year:token\tclass:token_seq\n",
                        dict(download=False)),
}


@settings(max_examples=120, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fmt=st.sampled_from(sorted(_FORMATS)), text=_FUZZ,
       attrs=_FUZZ, latin1=st.booleans(), seed_rows=st.booleans())
def test_loaders_raise_only_data_error(tmp_path_factory, fmt, text, attrs, latin1, seed_rows):
  folder = tmp_path_factory.mktemp("fuzz")
  inter_file, inter_header, attr_file, attr_header, options = _FORMATS[fmt]
  sep = {"ml-1m": "::", "ml-100k": "\t", "ml-100k-recbole": "\t"}.get(fmt, ",")
  if seed_rows:  # start from valid rows so that deeper code paths are reached
    inter_header += "".join(sep.join(["1", str(i), "5", str(i)][:3 if fmt.startswith("csv")
                                                                  else 4]) + "\n"
                            for i in (1, 2))
  encode = (lambda s: s.encode("latin-1", "replace")) if latin1 else (
      lambda s: s.encode("utf-8", "surrogateescape"))
  (folder / inter_file).write_bytes(encode(inter_header + text))
  (folder / attr_file).write_bytes(encode(attr_header + attrs))
  name = "ml-100k" if fmt.startswith("ml-100k") else fmt.split("-positions")[0]
  try:
    ds = load_dataset(name, data_dir=folder, use_cache=False, **options)
  except DataError:
    event(f"{fmt}: DataError")
    return
  event(f"{fmt}: loaded")
  _check_invariants(ds)


# ----------------------------------------------------------------------------------------------
# Cache.


def _arrays_equal(a, b) -> None:
  for field in ("offsets", "items", "timestamps", "user_ids", "item_ids"):
    x, y = getattr(a.interactions, field), getattr(b.interactions, field)
    assert x.dtype == y.dtype and np.array_equal(x, y), field
  assert a.interactions.num_items == b.interactions.num_items and a.name == b.name
  assert a.attributes.names == b.attributes.names
  assert np.array_equal(a.attributes.multi_hot, b.attributes.multi_hot)
  assert np.array_equal(a.attributes.titles, b.attributes.titles)


def test_cache_hit_equals_fresh_load(tmp_path):
  kwargs = dict(data_dir=GOOD, cache_dir=tmp_path, interactions_file="interactions.csv",
                attributes_file="items.csv")
  fresh = load_dataset("csv", use_cache=False, **kwargs)
  first = load_dataset("csv", **kwargs)
  cached = list((tmp_path / "prepared").glob("*.npz"))
  assert len(cached) == 1 and not list((tmp_path / "prepared").glob("*.tmp"))
  assert cached[0].stat().st_mode & 0o777 == 0o666 & ~_umask()
  mtime = cached[0].stat().st_mtime_ns
  second = load_dataset("csv", **kwargs)
  assert cached[0].stat().st_mtime_ns == mtime  # read, not rewritten
  _arrays_equal(fresh, first)
  _arrays_equal(fresh, second)


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def test_cache_key_follows_source_bytes_and_options(tmp_path):
  src = tmp_path / "src"
  _write(src / "i.csv", "user,item,timestamp\na,1,1\na,2,2\n")
  kwargs = dict(data_dir=src, cache_dir=tmp_path / "c", interactions_file="i.csv")
  assert _sequences(load_dataset("csv", **kwargs)) == {"a": ["1", "2"]}
  _write(src / "i.csv", "user,item,timestamp\na,1,3\na,2,2\n")
  assert _sequences(load_dataset("csv", **kwargs)) == {"a": ["2", "1"]}
  load_dataset("csv", dataset_name="other", **kwargs)
  assert len(list((tmp_path / "c" / "prepared").glob("*.npz"))) == 3


def test_failed_cache_write_leaves_nothing(tmp_path, monkeypatch):
  def exploding_savez(f, **arrays):
    f.write(b"PK partial")
    raise OSError("disk full")
  monkeypatch.setattr(np, "savez", exploding_savez)
  with pytest.raises(OSError, match="disk full"):
    load_dataset("csv", data_dir=GOOD, cache_dir=tmp_path, interactions_file="interactions.csv")
  assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_corrupt_cache_is_rebuilt(tmp_path):
  kwargs = dict(data_dir=GOOD, cache_dir=tmp_path, interactions_file="interactions.csv")
  fresh = load_dataset("csv", **kwargs)
  (path,) = (tmp_path / "prepared").glob("*.npz")
  path.write_bytes(path.read_bytes()[:50])
  again = load_dataset("csv", **kwargs)
  assert np.array_equal(fresh.interactions.items, again.interactions.items)
  assert zipfile.is_zipfile(path)


def test_default_data_dir_follows_env(monkeypatch, tmp_path):
  monkeypatch.setenv("SEQREC_DATA_DIR", str(tmp_path))
  assert data.default_data_dir() == tmp_path
  monkeypatch.delenv("SEQREC_DATA_DIR")
  assert data.default_data_dir() == pathlib.Path.home() / ".cache" / "seqrec_jax"


# ----------------------------------------------------------------------------------------------
# The real MovieLens-100k through the offline fallback (needs pip to reach PyPI).


@pytest.mark.network
def test_real_ml100k_via_recbole_wheel(tmp_path, monkeypatch):
  def no_grouplens(*args, **kwargs):
    raise OSError("GroupLens disabled in this test")
  monkeypatch.setattr(download, "_download_grouplens", no_grouplens)
  ds = load_dataset("ml-100k", data_dir=tmp_path / "raw", cache_dir=tmp_path / "cache")
  x = ds.interactions
  assert (x.num_users, x.num_items, x.num_interactions) == (943, 1683, 100_000)
  assert ds.attributes.multi_hot.shape == (1683, 19)
  assert sorted(os.listdir(tmp_path / "raw")) == ["ml-100k.inter", "ml-100k.item"]
  _check_invariants(ds)


@settings(max_examples=100, deadline=None, database=None)
@given(st.lists(st.text("0123456789x-+ _", min_size=0, max_size=20), min_size=1, max_size=30),
       st.booleans())
def test_vectorised_field_parsers_match_python(fields, canonical):
  text = "".join(f + "," for f in fields).encode()
  buf = np.frombuffer(text, dtype=np.uint8)
  ends = np.flatnonzero(buf == ord(","))
  starts = np.concatenate([[0], ends[:-1] + 1])
  assert tokenizer._gather_fields(buf, starts, ends - starts).tolist() == [f.encode() for f in fields]
  got = tokenizer._parse_digits(buf, starts, ends - starts, canonical=canonical)
  ok = all(f.isdigit() and len(f) <= 18 and not (canonical and len(f) > 1 and f[0] == "0")
           for f in fields)
  if ok:
    assert got.tolist() == [int(f) for f in fields]
  else:
    assert got is None
