"""Attributes the data holds without labels files: release years and the derived families."""

from __future__ import annotations

import pathlib
import zipfile
from fractions import Fraction

import numpy as np
import pytest

from seqrec_jax.core.errors import DataError
from seqrec_jax.data import cache, default_data_dir, derived, download, load_dataset, splits
from seqrec_jax.data.movielens import title_year


def _write(path: pathlib.Path, text: str, encoding: str = "utf-8") -> pathlib.Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(text.encode(encoding))
  return path


def _years(ds) -> dict[str, int]:
  """Original item id -> release year (0 unknown)."""
  x, years = ds.interactions, ds.attributes.release_years
  assert years.dtype == np.int32 and years.shape == (x.num_items,) and years[0] == 0
  return {str(x.item_ids[i]): int(years[i]) for i in range(1, x.num_items)}


def _ratings(sep: str, items: list[str]) -> str:
  """Two users who each rated every item (so every item gets an id)."""
  return "".join(f"{u}{sep}{item}{sep}3{sep}{100 + k}\n" for u in (1, 2)
                 for k, item in enumerate(items))


# ----------------------------------------------------------------------------------------------
# Release years from every item table the loaders read.


@pytest.mark.parametrize("title,year", [
    ("Heat (1995)", 1995), ("Heat (1995) ", 1995), ("Twelve Monkeys (1995)\t", 1995),
    ("Shanghai Triad (Yao a yao yao dao waipo qiao) (1995)", 1995),
    ("City of Lost Children, The (Cité des enfants perdus, La) (1995)", 1995),
    ("Ghost in the Shell (Kôkaku kidôtai) (a.k.a. GITS) (1995)", 1995),
    ("Land Before Time III: The Time of the Great Giving (1995) (V)", 1995),
    ("(500) Days of Summer (2009)", 2009), ("2001: A Space Odyssey (1968)", 1968),
    ("Fawlty Towers (1975-1979)", 1975), ("Stranger Things (2016– )", 2016),
    ("Babylon 5", 0), ("Class of 1999", 0), ("unknown", 0), ("Heat (1995) remake", 0),
    ("Heat (95)", 0), ("Heat (0995)", 0), ("Heat (١٩٩٥)", 0), ("", 0),
])
def test_title_year(title, year):
  assert title_year(title) == year


def test_grouplens_ml100k_years_from_titles_then_release_dates(tmp_path):
  genres = "".join(f"{g}|{i}\n" for i, g in enumerate(download.ML100K_GENRES))
  flags = "|".join(["0"] * 18 + ["1"])
  _write(tmp_path / "u.genre", genres)
  _write(tmp_path / "u.data", _ratings("\t", ["1", "2", "3", "4", "5"]))
  _write(tmp_path / "u.item",
         f"1|Toy Story (1995)|01-Jan-1995||http://x|{flags}\n"
         f"2|Kolya (1996)|24-Jan-1997||http://x|{flags}\n"  # the title's year comes first
         f"3|Land Before Time III (1995) (V)|01-Jan-1996||http://x|{flags}\n"
         f"4|No year in title|5-Mar-1931||http://x|{flags}\n"  # then the release date
         f"5|unknown|||http://x|{flags}\n", "latin-1")
  ds = load_dataset("ml-100k", data_dir=tmp_path, cache_dir=tmp_path / "cache", download=False)
  assert _years(ds) == {"1": 1995, "2": 1996, "3": 1995, "4": 1931, "5": 0}


def test_recbole_ml100k_years_from_release_year_column(tmp_path):
  _write(tmp_path / "ml-100k.inter", "user_id:token\titem_id:token\trating:float\t"
         "timestamp:float\n" + _ratings("\t", ["1", "267", "1412", "7"]))
  # Item 267 and 1412 as in RecBole 1.2.1's copy: 'unkonwn', and 'V' cut from "(1995) (V)".
  _write(tmp_path / "ml-100k.item", "item_id:token\tmovie_title:token_seq\trelease_year:token\t"
         "class:token_seq\n1\tToy Story\t1995\tComedy\n267\tunkonwn\tunkonwn\tunknown\n"
         "1412\tLand Before Time III: The Time of the Great Giving (1995)\tV\tAnimation\n"
         "7\tNo year\t\tDrama\n")
  ds = load_dataset("ml-100k", data_dir=tmp_path, cache_dir=tmp_path / "cache", download=False)
  assert _years(ds) == {"1": 1995, "267": 0, "1412": 1995, "7": 0}


def test_ml1m_years_from_titles(tmp_path):
  _write(tmp_path / "ratings.dat", _ratings("::", ["6", "29", "30"]), "latin-1")
  _write(tmp_path / "movies.dat",
         "6::Heat (1995)::Action|Crime|Thriller\n"
         "29::City of Lost Children, The (Cité des enfants perdus, La) (1995)::Adventure\n"
         "30::Metropolis (1927)::Sci-Fi\n", "latin-1")
  ds = load_dataset("ml-1m", data_dir=tmp_path, cache_dir=tmp_path / "cache", download=False)
  assert _years(ds) == {"6": 1995, "29": 1995, "30": 1927}


def test_ml20m_years_from_titles(tmp_path):
  _write(tmp_path / "ratings.csv",
         "userId,movieId,rating,timestamp\n" + _ratings(",", ["1", "2", "3", "4"]))
  _write(tmp_path / "movies.csv", 'movieId,title,genres\n1,"Heat (1995)",Action\n'
         '2,"American President, The (a.k.a. X) (1995) ",Comedy|Romance\n'
         "3,Babylon 5,Sci-Fi\n4,Fawlty Towers (1975-1979),(no genres listed)\n")
  ds = load_dataset("ml-20m", data_dir=tmp_path, cache_dir=tmp_path / "cache", download=False)
  assert _years(ds) == {"1": 1995, "2": 1995, "3": 0, "4": 1975}


def test_csv_and_synthetic_have_no_years(tmp_path):
  fixtures = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "good"
  ds = load_dataset("csv", data_dir=fixtures, cache_dir=tmp_path,
                    interactions_file="interactions.csv", attributes_file="items.csv")
  assert ds.attributes.release_years is None
  assert load_dataset("synthetic").attributes.release_years is None


@pytest.mark.parametrize("date", ["1995-01-01", "01/01/1995", "1995", "01-jan-1995",
                                  "32-Jan-1995", "01-Jan-95", "unknown"])
def test_unparseable_u_item_release_date_names_file_line_and_form(tmp_path, date):
  flags = "|".join(["0"] * 19)
  _write(tmp_path / "u.data", _ratings("\t", ["1", "2"]))
  _write(tmp_path / "u.item", f"1|Toy Story (1995)|01-Jan-1995||http://x|{flags}\n"
         f"2|Heat (1995)|{date}||http://x|{flags}\n", "latin-1")
  with pytest.raises(DataError) as e:
    load_dataset("ml-100k", data_dir=tmp_path, cache_dir=tmp_path / "cache", download=False)
  message = str(e.value)
  assert message.startswith(f"{tmp_path / 'u.item'}:2: "), message
  assert "DD-Mon-YYYY" in message and repr(date) in message and "\n" not in message
  assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("year", ["19x5", "95", "0995", "V"])
def test_unparseable_recbole_release_year_names_file_line_and_form(tmp_path, year):
  _write(tmp_path / "ml-100k.inter", "user_id:token\titem_id:token\trating:float\t"
         "timestamp:float\n" + _ratings("\t", ["1", "2"]))
  _write(tmp_path / "ml-100k.item", "item_id:token\tmovie_title:token_seq\trelease_year:token\t"
         f"class:token_seq\n1\tToy Story\t1995\tComedy\n2\tHeat\t{year}\tAction\n")
  with pytest.raises(DataError) as e:
    load_dataset("ml-100k", data_dir=tmp_path, cache_dir=tmp_path / "cache", download=False)
  message = str(e.value)
  assert message.startswith(f"{tmp_path / 'ml-100k.item'}:3: "), message
  assert "4 digits" in message and repr(year) in message and "\n" not in message


# ----------------------------------------------------------------------------------------------
# The cache of prepared arrays.


def _ml1m(tmp_path: pathlib.Path) -> pathlib.Path:
  src = tmp_path / "src"
  _write(src / "ratings.dat", _ratings("::", ["6", "30"]), "latin-1")
  _write(src / "movies.dat", "6::Heat (1995)::Action\n30::Metropolis (1927)::Sci-Fi\n", "latin-1")
  return src


def test_cache_keeps_release_years(tmp_path):
  kwargs = dict(data_dir=_ml1m(tmp_path), cache_dir=tmp_path / "c", download=False)
  first = load_dataset("ml-1m", **kwargs)
  (path,) = (tmp_path / "c" / "prepared").glob("*.npz")
  mtime = path.stat().st_mtime_ns
  second = load_dataset("ml-1m", **kwargs)
  assert path.stat().st_mtime_ns == mtime  # read from the cache
  assert second.attributes.release_years.dtype == np.int32
  assert np.array_equal(first.attributes.release_years, second.attributes.release_years)
  assert _years(second) == {"6": 1995, "30": 1927}


def test_cache_written_before_release_years_is_rebuilt(tmp_path, monkeypatch):
  kwargs = dict(data_dir=_ml1m(tmp_path), cache_dir=tmp_path / "c", download=False)
  with monkeypatch.context() as m:  # a cache file as the code before release years wrote it
    m.setattr(cache, "_CACHE_VERSION", 1)
    load_dataset("ml-1m", **kwargs)
  (old,) = (tmp_path / "c" / "prepared").glob("*.npz")
  with np.load(old) as z:
    arrays = {k: z[k] for k in z.files if k != "release_years"}
  with open(old, "wb") as f:
    np.savez(f, **arrays)
  assert cache.load_prepared(old).attributes.release_years is None  # still readable
  ds = load_dataset("ml-1m", **kwargs)
  assert _years(ds) == {"6": 1995, "30": 1927}
  assert len(list((tmp_path / "c" / "prepared").glob("*.npz"))) == 2
  assert zipfile.is_zipfile(old)


def test_offline_default_ml100k_has_years_for_nearly_all_items(tmp_path):
  """The RecBole copy the default pipeline reads: 1681 of 1682 items (all but 267 'unknown')."""
  raw = default_data_dir() / "ml-100k"
  if not (raw / "ml-100k.item").is_file() and not (raw / "u.item").is_file():
    pytest.skip(f"ml-100k not in {raw}")
  ds = load_dataset("ml-100k", data_dir=raw, cache_dir=tmp_path, download=False)
  years = ds.attributes.release_years
  known = years[1:] > 0
  assert known.sum() >= 1680, known.sum()
  assert years[known.nonzero()[0] + 1].min() >= 1920 and years.max() <= 1998
  assert _years(ds)["1"] == 1995  # Toy Story


# ----------------------------------------------------------------------------------------------
# Popularity groups.


def _direct_popularity(counts: list[int], share: Fraction) -> tuple[set[int], set[int]]:
  """Head and tail by the documented rule, with Python loops and exact fractions."""
  ranking = sorted(range(1, len(counts)), key=lambda i: (-counts[i], i))
  total = sum(counts[1:])
  head, held = set(), 0
  for i in ranking:
    if total == 0 or held >= share * total:
      break
    head.add(i)
    held += counts[i]
  tail, held = set(), 0
  for i in reversed(ranking):
    if held + counts[i] > share * total:
      break
    tail.add(i)
    held += counts[i]
  return head, tail


def _groups(counts, share=0.2) -> tuple[set[int], set[int]]:
  multi_hot, names = derived.popularity_groups(np.asarray(counts), share)
  assert names == ("popularity:head", "popularity:tail")
  assert multi_hot.dtype == bool and multi_hot.shape == (len(counts), 2)
  assert not multi_hot[0].any()
  head, tail = (set(np.flatnonzero(column).tolist()) for column in multi_hot.T)
  return head, tail


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("share", [0.2, 0.1, 0.35, 0.5])
def test_popularity_groups_hold_the_stated_share(seed, share):
  rng = np.random.default_rng(seed)
  num_items = int(rng.integers(2, 400))
  counts = rng.zipf(1.6, num_items).clip(max=10_000) * (rng.random(num_items) < 0.9)
  counts[0] = 12345  # the padding's count is ignored
  head, tail = _groups(counts, share)
  assert (head, tail) == _direct_popularity(counts.tolist(), Fraction(str(share)))
  c, total, s = counts.tolist(), int(counts[1:].sum()), Fraction(str(share))
  head_sum, tail_sum = sum(c[i] for i in head), sum(c[i] for i in tail)
  assert head_sum >= s * total and head_sum - min(c[i] for i in head) < s * total
  assert tail_sum <= s * total
  assert not head & tail
  assert {i for i in range(1, num_items) if c[i] == 0} <= tail  # never seen: tail
  assert min(c[i] for i in head) >= max(c[i] for i in range(1, num_items) if i not in head)
  rest = [c[i] for i in range(1, num_items) if i not in tail]
  if rest:  # one more item would push the tail over the share
    assert max(c[i] for i in tail) <= min(rest) and tail_sum + min(rest) > s * total


def test_popularity_groups_break_ties_by_item_id():
  # Total 20, 20 % = 4: ranking 7 (6), 3, 5 (4 each), 1, 2, 6 (2 each), 4 (0).
  assert _groups([0, 2, 2, 4, 0, 4, 2, 6]) == ({7}, {4, 6, 2})
  # Total 18, 20 % = 3.6: ranking 1, 2, 5 (4 each), 3, 6, 7 (2 each), 4 (0).
  assert _groups([0, 4, 4, 2, 0, 4, 2, 2]) == ({1}, {4, 7})
  # Every count equal: the head is the lowest ids, the tail the highest.
  assert _groups([0] + [5] * 10) == ({1, 2}, {9, 10})


def test_popularity_cut_landing_exactly_on_the_share_is_exact():
  # 35 % of 180 is 63, but 0.35 * 180 is 62.99999999999999 in floating point: a float cut
  # would leave the tail one item short. Item 1 alone holds exactly 35 %.
  head, tail = _groups([0, 63] + [1] * 117, share=0.35)
  assert head == {1}
  assert tail == set(range(119 - 63, 119))  # the 63 highest ids of count 1
  # 0.2 * 10 = 2: one item of two is the head, one the tail.
  assert _groups([0, 2, 2, 2, 2, 2]) == ({1}, {5})


def test_popularity_edge_cases():
  assert _groups([0, 0, 0]) == (set(), {1, 2})  # nothing seen in training: all tail
  assert _groups([7, 9]) == ({1}, set())  # one item: all of the head, more than the tail holds
  with pytest.raises(ValueError, match="share"):
    derived.popularity_groups(np.array([0, 1, 2]), share=0.6)
  with pytest.raises(ValueError, match="integer"):
    derived.popularity_groups(np.array([0.0, 1.0]))


def test_train_item_counts_reads_the_training_sequences_only():
  ds = load_dataset("synthetic", num_users=60, num_items=80, seed=3)
  split = splits.split(ds.interactions, "temporal", seed=0)
  counts = derived.train_item_counts(split, ds.interactions.num_items)
  assert counts.shape == (ds.interactions.num_items,) and counts.dtype == np.int64
  assert counts.sum() == len(split.train.items) < ds.interactions.num_interactions
  assert np.array_equal(counts, np.bincount(split.train.items, minlength=len(counts)))


# ----------------------------------------------------------------------------------------------
# Decades and the combined attributes.


def test_release_decades():
  multi_hot, names = derived.release_decades(np.array([0, 1995, 1990, 1929, 0, 2003, 1999],
                                                      dtype=np.int32))
  assert names == ("decade:1920s", "decade:1990s", "decade:2000s")
  assert multi_hot.dtype == bool
  assert multi_hot.astype(int).tolist() == [[0, 0, 0], [0, 1, 0], [0, 1, 0], [1, 0, 0],
                                            [0, 0, 0], [0, 0, 1], [0, 1, 0]]
  _, names = derived.release_decades(np.array([0, 1995, 1990, 1929, 0, 2003, 1999]), min_items=2)
  assert names == ("decade:1990s",)
  empty, none = derived.release_decades(np.zeros(4, dtype=np.int32))
  assert empty.shape == (4, 0) and none == ()


def test_decades_from_every_loader(tmp_path):
  """u.item dates, RecBole's column and ML-1M/-20M titles all end in the same decade names."""
  test_grouplens_ml100k_years_from_titles_then_release_dates(tmp_path / "a")
  ds = load_dataset("ml-100k", data_dir=tmp_path / "a", use_cache=False)
  _, names = derived.release_decades(ds.attributes.release_years)
  assert names == ("decade:1930s", "decade:1990s")
  test_ml20m_years_from_titles(tmp_path / "b")
  ds = load_dataset("ml-20m", data_dir=tmp_path / "b", use_cache=False)
  multi_hot, names = derived.release_decades(ds.attributes.release_years)
  assert names == ("decade:1970s", "decade:1990s")
  assert multi_hot.sum(axis=0).tolist() == [1, 2]


def test_with_derived_attributes(tmp_path):
  test_ml1m_years_from_titles(tmp_path)
  ds = load_dataset("ml-1m", data_dir=tmp_path, use_cache=False)
  base = ds.attributes
  counts = np.array([0, 5, 1, 0])  # ids 1, 2, 3 are items 6, 29, 30
  out = derived.with_derived_attributes(base, counts)
  assert out.names == base.names + ("popularity:head", "popularity:tail", "decade:1920s",
                                    "decade:1990s")
  assert np.array_equal(out.multi_hot[:, :len(base.names)], base.multi_hot)
  assert out.multi_hot[:, len(base.names):].astype(int).tolist() == [
      [0, 0, 0, 0], [1, 0, 0, 1], [0, 1, 0, 1], [0, 1, 1, 0]]
  assert np.array_equal(out.titles, base.titles)
  assert out.release_years is base.release_years
  assert [derived.family_of(n) for n in out.names] == (
      ["genre"] * len(base.names) + ["popularity"] * 2 + ["decade"] * 2)
  only = derived.with_derived_attributes(base, None, families=("decade",))
  assert only.names == base.names + ("decade:1920s", "decade:1990s")
  only = derived.with_derived_attributes(base, None, families=("decade",), decade_min_items=2)
  assert only.names == base.names + ("decade:1990s",)
  shares = derived.with_derived_attributes(base, counts, families=("popularity",),
                                           popularity_share=0.5)
  assert shares.names[-2:] == derived.POPULARITY_NAMES
  with pytest.raises(ValueError, match="already"):
    derived.with_derived_attributes(out, counts)
  with pytest.raises(ValueError, match="families"):
    derived.with_derived_attributes(base, counts, families=("genre",))
  with pytest.raises(ValueError, match="shape"):
    derived.with_derived_attributes(base, counts[:3])


def test_with_derived_attributes_without_years_adds_popularity_only():
  ds = load_dataset("synthetic", num_users=40, num_items=60, seed=1)
  counts = np.bincount(ds.interactions.items, minlength=ds.interactions.num_items)
  out = derived.with_derived_attributes(ds.attributes, counts)
  assert out.names == ds.attributes.names + derived.POPULARITY_NAMES
  assert out.multi_hot.shape == (ds.interactions.num_items, len(out.names))
  assert derived.family_of("decade:1990s") == "decade" and derived.family_of("Sci-Fi") == "genre"
  assert derived.family_of("popularity") == "genre"  # the prefix is "popularity:"
